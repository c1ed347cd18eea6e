//! Watch rules and what they decide: the watcher fed with samples, health
//! and log counts; alert records journaled, published for the API and
//! handed to the notifiers; rule responses performed; and `file_sd.json`,
//! which lists the agents that serve their own metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roster_core::api::{AlertRecord, AlertState, EventKind as JournalKind};
use roster_core::config::Config;
use roster_core::delivery_log::DeliveryLog;
use roster_core::watch::{AlertEvent, Response, Watcher};
use roster_core::{Event, EventKind, Supervisor};

use super::context::Context;
use super::home_watch;
use super::logging::Logs;
use super::notify_exec::{self, NotifyCommands};
use crate::alerts::AlertBook;
use crate::inbox::{Input, SampleTargets};
use crate::journal::{Journal, Row};
use crate::logs::LogRules;
use crate::metrics::Metrics;
use crate::notify::{DeliveryReport, Notifier};

/// The file listing agents' own metrics endpoints for Prometheus
/// (`file_sd_configs`), in the home.
pub const FILE_SD: &str = "file_sd.json";

/// Rules, alerts and their delivery.
pub(super) struct Alerting {
    /// Watch rules and alert decisions.
    pub watcher: Watcher,
    /// Alerts raised, published for the API.
    book: Arc<Mutex<AlertBook>>,
    /// Paths that `disk_percent` host rules watch.
    host_disks: Vec<PathBuf>,
    /// What `file_sd.json` was last written with.
    file_sd: Option<String>,
    /// Delivers alerts; its targets follow the applied config.
    notifier: Notifier,
    /// Exec notifiers' commands running (see `notify_exec.rs`).
    pub notify_commands: NotifyCommands,
    /// Failed deliveries, counted per target and journaled in summaries.
    pub deliveries: DeliveryLog,
}

impl Alerting {
    pub(super) fn new(book: Arc<Mutex<AlertBook>>, notifier: Notifier) -> Alerting {
        Alerting {
            watcher: Watcher::new(),
            book,
            host_disks: Vec::new(),
            file_sd: None,
            notifier,
            notify_commands: NotifyCommands::default(),
            deliveries: DeliveryLog::default(),
        }
    }

    /// Hands an applied config's rules to the watcher and the log writers,
    /// keeps `file_sd.json` current, and points the notifier at the
    /// config's targets.
    pub(super) fn apply(
        &mut self,
        now: Instant,
        config: &Config,
        logs: &mut Logs,
        context: &Context,
    ) {
        let mut agents = BTreeMap::new();
        let mut log_rules = BTreeMap::new();
        for (name, spec) in &config.agents {
            let rules = spec.rules();
            let patterns: Vec<(usize, String)> = rules
                .iter()
                .enumerate()
                .filter_map(|(index, rule)| Some((index, rule.pattern.clone()?)))
                .collect();
            log_rules.insert(name.clone(), LogRules::new(&patterns).map(Arc::new));
            agents.insert(name.clone(), rules);
        }
        logs.set_rules(log_rules);
        self.host_disks = config
            .host_watch
            .iter()
            .filter_map(|rule| rule.path.clone())
            .collect();
        self.watcher
            .set_rules(now, agents, config.host_watch.clone());
        self.write_file_sd(config, context);
        self.notifier.reconfigure(config.notify.clone());
        self.deliveries
            .retain_targets(now, &self.notifier.targets());
        notify_exec::journal_delivery_notes(&mut self.deliveries, &context.journal);
    }

    /// Keeps `<home>/file_sd.json` listing the agents that serve their own
    /// metrics, in Prometheus' file_sd format (labels `agent`, and the
    /// path), so application metrics are scraped beside roster's own.
    /// Written off the loop, atomically, only when it changes.
    fn write_file_sd(&mut self, config: &Config, context: &Context) {
        let targets: Vec<serde_json::Value> = config
            .agents
            .iter()
            .filter_map(|(name, spec)| {
                let target = spec.metrics.as_ref()?;
                Some(serde_json::json!({
                    "targets": [target.address],
                    "labels": {"agent": name.as_str(), "__metrics_path__": target.path},
                }))
            })
            .collect();
        let Ok(mut text) = serde_json::to_string_pretty(&targets) else {
            return;
        };
        text.push('\n');
        if self.file_sd.as_deref() == Some(text.as_str()) {
            return;
        }
        self.file_sd = Some(text.clone());
        let home = context.home_dir.clone();
        context.runtime.spawn_blocking(move || {
            let written = home.write_atomically(FILE_SD, text.as_bytes());
            if let Err(error) = written {
                tracing::warn!("writing {FILE_SD}: {error}");
            }
        });
    }

    /// What the sampler should sample: the main processes of agents with
    /// rules, and the disks host rules watch.
    pub(super) fn sample_targets(&self, supervisor: &Supervisor) -> SampleTargets {
        let agents: Vec<_> = supervisor
            .main_pids()
            .into_iter()
            .filter(|(agent, _)| !self.watcher.rules_of(agent).is_empty())
            .map(|(agent, pid)| {
                let readings = self.watcher.readings_of(&agent);
                (agent, pid, readings)
            })
            .collect();
        let wanted =
            !agents.is_empty() || !self.host_disks.is_empty() || self.watcher.has_host_rules();
        SampleTargets {
            agents,
            disks: self.host_disks.clone(),
            wanted,
        }
    }

    /// Tells the watcher what a supervisor event means for its rules.
    pub(super) fn handle_event(&mut self, now: Instant, event: &Event, supervisor: &Supervisor) {
        let interval = || {
            supervisor
                .spec(&event.agent)
                .and_then(|spec| spec.health.as_ref())
                .map_or(Duration::ZERO, |health| health.interval)
        };
        match &event.kind {
            EventKind::Unhealthy { error, action, .. }
                if *action != roster_core::health::OnFailure::None =>
            {
                let interval = interval();
                self.watcher
                    .handle_health(now, &event.agent, false, interval, error);
            }
            EventKind::Healthy => {
                let interval = interval();
                self.watcher
                    .handle_health(now, &event.agent, true, interval, "");
            }
            EventKind::Started { .. } => self.watcher.handle_new_process(now, &event.agent),
            _ => {}
        }
    }

    /// Performs what a watch rule decided.
    pub(super) fn respond(
        &mut self,
        response: Response,
        supervisor: &mut Supervisor,
        metrics: &mut Metrics,
        context: &Context,
    ) {
        let now = Instant::now();
        match response {
            Response::Alert(event) => {
                let record = alert_record(&event, String::new());
                self.record(record, &context.journal, metrics);
            }
            Response::Investigate(event) => {
                let record = alert_record(&event, String::new());
                let leader = event
                    .agent
                    .as_ref()
                    .and_then(|agent| {
                        supervisor
                            .main_pids()
                            .into_iter()
                            .find(|(name, _)| name == agent)
                    })
                    .map(|(_, pid)| pid);
                let home = context.home.clone();
                let inbox = context.inbox.clone();
                let agent = event
                    .agent
                    .as_ref()
                    .map(|agent| agent.to_string())
                    .unwrap_or_default();
                context.runtime.spawn_blocking(move || {
                    let mut record = record;
                    // Off the loop: finding a stderr log lists the logs
                    // directory.
                    let logs = if agent.is_empty() {
                        Vec::new()
                    } else {
                        home.agent_logs(&agent)
                    };
                    record.details = crate::sample::investigate(&agent, leader, &logs);
                    inbox.send(Input::Investigated(record));
                });
            }
            Response::Restart { agent, reason } => {
                supervisor.handle_rule_restart(now, &agent, &reason);
            }
            Response::Stop { agent, reason } => {
                context.journal.record(Row::now(
                    Some(agent.as_str()),
                    JournalKind::RuleStop,
                    None,
                    format!("stopping: {reason}"),
                ));
                supervisor.handle_stop(now, &agent);
            }
            Response::CleanLogs { path, percent } => {
                // Through the held home: never another home at the path.
                let logs = home_watch::anchored(&context.home_dir).join("logs");
                let inbox = context.inbox.clone();
                context.runtime.spawn_blocking(move || {
                    let (removed, bytes, after) = crate::logs::clean_oldest(&logs, &path, percent);
                    inbox.send(Input::Note {
                        agent: None,
                        kind: JournalKind::LogsCleaned,
                        detail: format!(
                            "{} is {}% full: removed {removed} rotated log file(s), {}; now {}",
                            path.display(),
                            percent,
                            crate::sample::human_bytes(bytes),
                            after
                                .map(|after| format!("{after:.1}% used"))
                                .unwrap_or_else(|| "unknown".into())
                        ),
                    });
                });
            }
        }
    }

    /// Journals an alert event and publishes it.
    pub(super) fn record(&mut self, record: AlertRecord, journal: &Journal, metrics: &mut Metrics) {
        let kind = match record.state {
            AlertState::Firing => JournalKind::AlertFiring,
            AlertState::Resolved => JournalKind::AlertResolved,
        };
        tracing::warn!(alert = %record.name, "{}", record.summary);
        journal.record(Row::now(
            record.agent.as_deref(),
            kind,
            None,
            format!("{}: {}", record.name, record.summary),
        ));
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record(&record);
        metrics.mark_changed();
        // Repeats (repeat_every) and new firings alike go to the notifiers;
        // they never wait for a target.
        self.notifier.send(record);
    }

    /// The alert `fingerprint`, if it fires, resolved at `at` (as `roster
    /// alerts resolve` asks).
    pub(super) fn resolve(
        &mut self,
        fingerprint: &str,
        at: String,
        journal: &Journal,
        metrics: &mut Metrics,
    ) {
        let firing = self
            .book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .firing(fingerprint)
            .cloned();
        if let Some(mut record) = firing {
            record.state = AlertState::Resolved;
            record.ends_at = Some(at);
            self.record(record, journal, metrics);
        }
    }

    /// Alerts firing now.
    pub(super) fn firing_count(&self) -> u64 {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .firing_count() as u64
    }

    /// A delivery's final outcome.
    pub(super) fn delivered(
        &mut self,
        report: DeliveryReport,
        journal: &Journal,
        metrics: &mut Metrics,
    ) {
        notify_exec::journal_delivery(&mut self.deliveries, report, journal, metrics);
    }

    /// Journals the delivery failures whose summary is due.
    pub(super) fn journal_due_deliveries(&mut self, journal: &Journal) {
        let now = Instant::now();
        if self.deliveries.poll_timeout().is_some_and(|due| due <= now) {
            self.deliveries.handle_timeout(now);
            notify_exec::journal_delivery_notes(&mut self.deliveries, journal);
        }
    }
}

/// An alert with wall-clock times, for the journal, `roster alerts` and
/// notifiers.
fn alert_record(event: &AlertEvent, details: String) -> AlertRecord {
    let now = Instant::now();
    let wall = |at: Instant| {
        let ago = now.saturating_duration_since(at).as_millis() as i64;
        crate::clock::rfc3339_millis(crate::clock::unix_millis() - ago)
    };
    let mut labels = event.labels.clone();
    labels.insert("alertname".into(), event.name.clone());
    AlertRecord {
        fingerprint: event.fingerprint.clone(),
        name: event.name.clone(),
        agent: event.agent.as_ref().map(|agent| agent.to_string()),
        severity: event.severity.to_owned(),
        state: if event.firing {
            AlertState::Firing
        } else {
            AlertState::Resolved
        },
        summary: event.summary.clone(),
        details,
        starts_at: wall(event.since),
        ends_at: event.until.map(wall),
        labels,
    }
}
