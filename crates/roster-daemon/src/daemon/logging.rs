//! The daemon's side of agents' logs: each agent's writers (`NAME.log`,
//! and `NAME.err.log` for a separate stderr) and the pumps that feed them, the log settings and `log_matches` patterns handed to the
//! writers, the counts the writers add up, and the troubles they report.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use roster_core::api::EventKind;
use roster_core::name::STDERR_SUFFIX;
use roster_core::watch::Watcher;
use roster_core::{AgentName, LogConfig};

use super::context::Context;
use super::home_watch;
use super::log_matches::LogMatchCounts;
use crate::journal::{Journal, Row};
use crate::logs::pump::{pump, LogTrouble, PumpContext};
use crate::logs::{LogRules, LogWriter, SharedLogRules};

/// One agent's log: its writer, shared by the pumps of its runs, and with
/// `stderr = "separate"` a second one for `NAME.err.log`.
pub(super) struct AgentIo {
    out: Stream,
    /// Its stderr's own log, while its config says `separate`.
    err: Option<Stream>,
    /// The writers' `log_matches` patterns (both writers read them).
    log_rules: SharedLogRules,
    /// Lines dropped from either file.
    dropped: Arc<AtomicU64>,
    /// Lines stored in either file, for `/metrics`.
    lines: Arc<AtomicU64>,
}

/// One log file of an agent: its writer, and the pump of the latest run
/// feeding it (each pump waits for its predecessor).
struct Stream {
    writer: Arc<Mutex<LogWriter>>,
    last_pump: Option<JoinHandle<()>>,
}

impl Stream {
    fn new(writer: LogWriter) -> Self {
        Stream {
            writer: Arc::new(Mutex::new(writer)),
            last_pump: None,
        }
    }
}

impl AgentIo {
    fn streams(&self) -> impl Iterator<Item = &Stream> {
        std::iter::once(&self.out).chain(self.err.as_ref())
    }
}

/// Every agent's log and what the loop does for it.
pub(super) struct Logs {
    io: BTreeMap<AgentName, AgentIo>,
    /// The applied `[log]` settings, which pumps pass to their writer.
    config: watch::Sender<LogConfig>,
    /// Compiled `log_matches` patterns per agent, handed to its writer.
    rules: BTreeMap<AgentName, Option<Arc<LogRules>>>,
    /// Agents whose `log_matches` counts wait for the loop to take them.
    matches: LogMatchCounts,
    troubles: Troubles,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            io: BTreeMap::new(),
            config: watch::channel(LogConfig::default()).0,
            rules: BTreeMap::new(),
            matches: LogMatchCounts::default(),
            troubles: Troubles::default(),
        }
    }
}

impl Logs {
    /// The applied `[log]` settings.
    pub(super) fn log_config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// A config's `[log]` settings. Pumps hand new settings to their writer
    /// with the next output; a quiet agent's writer gets them now, so a
    /// lower `keep` removes its surplus files at once. Never waits here: a
    /// busy or compressing writer is left to its pump.
    pub(super) fn apply(&mut self, config: &LogConfig) {
        self.config.send_replace(config.clone());
        for stream in self.io.values().flat_map(AgentIo::streams) {
            if let Ok(mut writer) = stream.writer.try_lock() {
                if !writer.is_compressing() {
                    writer.set_config(config.clone());
                }
            }
        }
    }

    /// The applied config's `log_matches` patterns, per agent.
    pub(super) fn set_rules(&mut self, rules: BTreeMap<AgentName, Option<Arc<LogRules>>>) {
        for (name, compiled) in &rules {
            if let Some(io) = self.io.get(name) {
                // Never waits on the writer: the pump reads the handle.
                *io.log_rules
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = compiled.clone();
            }
        }
        self.rules = rules;
    }

    /// A writer's notice that `agent`'s counts wait in `rules`.
    pub(super) fn handle_matches_notice(
        &mut self,
        now: Instant,
        agent: AgentName,
        rules: Arc<LogRules>,
    ) {
        self.matches.handle_notice(now, agent, rules);
    }

    /// When counts are due to be taken.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.matches.poll_timeout()
    }

    /// Hands the `log_matches` counts that are due to the watcher.
    pub(super) fn take_log_matches(&mut self, watcher: &mut Watcher) {
        let now = Instant::now();
        for (agent, rules) in self.matches.take_due(now) {
            let counts = rules.take();
            // Counts for rules an apply has since replaced would land on
            // other rules' indices.
            let current = self.rules.get(&agent).and_then(Option::as_ref);
            if current.is_some_and(|current| Arc::ptr_eq(current, &rules)) {
                for (index, count) in counts {
                    watcher.handle_log_matches(now, &agent, index, count);
                }
            }
        }
    }

    /// Opens `agent`'s writer, unless it is open, and with `separate` its
    /// stderr writer (`NAME.err.log`), unless that is open; without
    /// `separate`, forgets the stderr writer (its pumps keep it until their
    /// pipes close).
    pub(super) fn open(&mut self, agent: &AgentName, separate: bool, context: &Context) {
        if !self.io.contains_key(agent) {
            let dropped = Arc::new(AtomicU64::new(0));
            let lines = Arc::new(AtomicU64::new(0));
            let writer = self.writer(agent, &format!("{agent}.log"), &dropped, &lines, context);
            let log_rules = writer.log_rules();
            *log_rules
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                self.rules.get(agent).cloned().flatten();
            self.io.insert(
                agent.clone(),
                AgentIo {
                    out: Stream::new(writer),
                    err: None,
                    log_rules,
                    dropped,
                    lines,
                },
            );
        }
        let wants_err = separate && self.io.get(agent).is_some_and(|io| io.err.is_none());
        if wants_err {
            let Some(io) = self.io.get(agent) else {
                return;
            };
            let (dropped, lines, log_rules) =
                (io.dropped.clone(), io.lines.clone(), io.log_rules.clone());
            let file = format!("{agent}{STDERR_SUFFIX}.log");
            let mut writer = self.writer(agent, &file, &dropped, &lines, context);
            writer.share_log_rules(log_rules);
            if let Some(io) = self.io.get_mut(agent) {
                io.err = Some(Stream::new(writer));
            }
        } else if !separate {
            if let Some(io) = self.io.get_mut(agent) {
                io.err = None;
            }
        }
    }

    /// A writer of `agent`'s `file` in the logs directory, reached through
    /// the held home, counting into `dropped` and `lines`.
    fn writer(
        &self,
        agent: &AgentName,
        file: &str,
        dropped: &Arc<AtomicU64>,
        lines: &Arc<AtomicU64>,
        context: &Context,
    ) -> LogWriter {
        let mut writer = LogWriter::open_shown(
            agent.as_str(),
            home_watch::anchored(&context.home_dir)
                .join("logs")
                .join(file),
            context.home.logs().join(file),
            self.config.borrow().clone(),
            dropped.clone(),
        );
        writer.count_written_lines(lines.clone());
        writer
    }

    /// Pumps a new run's output into `agent`'s writers (opened before):
    /// `out` (stdout, and stderr when merged) and, with `stderr =
    /// "separate"`, `err`. Beside a cutover's outgoing process, whose
    /// output goes on, the two runs' lines interleave, whole; else each new
    /// pump waits for the last of its file.
    pub(super) fn start_pumps(
        &mut self,
        agent: &AgentName,
        out: OwnedFd,
        err: Option<OwnedFd>,
        beside: bool,
        context: &Context,
    ) {
        let config = &self.config;
        let Some(io) = self.io.get_mut(agent) else {
            return;
        };
        let start = |stream: &mut Stream, read: OwnedFd| {
            let pump_context = PumpContext {
                agent: agent.to_string(),
                writer: stream.writer.clone(),
                config: config.subscribe(),
                trouble: context.inbox.clone(),
                previous: if beside {
                    None
                } else {
                    stream.last_pump.take()
                },
            };
            stream.last_pump = Some(context.runtime.spawn(pump(read, pump_context)));
        };
        start(&mut io.out, out);
        if let (Some(stream), Some(read)) = (io.err.as_mut(), err) {
            start(stream, read);
        }
    }

    /// The agent is gone: the pumps hold the writer until their pipes close.
    pub(super) fn forget(&mut self, agent: &AgentName) {
        self.io.remove(agent);
    }

    /// Lines dropped from `agent`'s log so far.
    pub(super) fn dropped(&self, agent: &AgentName) -> u64 {
        self.io
            .get(agent)
            .map(|io| io.dropped.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Handles on `agent`'s log counters, for `/metrics`.
    pub(super) fn counters(&self, agent: &AgentName) -> crate::metrics::LogCounters {
        self.io
            .get(agent)
            .map(|io| crate::metrics::LogCounters {
                lines: io.lines.clone(),
                dropped: io.dropped.clone(),
            })
            .unwrap_or_default()
    }

    /// A pump's trouble writing a log: the first is journaled, then at most
    /// one summary a minute per agent, and the daemon's own log gets at
    /// most one warning per agent every 10 s.
    pub(super) fn report_trouble(&mut self, trouble: LogTrouble, journal: &Journal) {
        let verdict = self.troubles.handle(Instant::now(), &trouble.agent);
        if let Some(held_back) = verdict.warn {
            tracing::warn!(
                agent = %trouble.agent,
                dropped = trouble.dropped_lines,
                held_back,
                "log: {}",
                trouble.error
            );
        }
        if verdict.journal {
            let total = AgentName::new(&trouble.agent)
                .ok()
                .and_then(|name| self.io.get(&name))
                .map(|io| io.dropped.load(Ordering::Relaxed))
                .unwrap_or(trouble.dropped_lines);
            journal.record(Row::now(
                Some(&trouble.agent),
                EventKind::LogDropped,
                None,
                format!("{}; {total} line(s) dropped so far", trouble.error),
            ));
        }
    }

    /// On the way out, after every agent stopped: lets the pumps drain (10
    /// s at most) and closes every writer.
    pub(super) fn drain(&mut self) {
        let agents: Vec<AgentIo> = std::mem::take(&mut self.io).into_values().collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let pending = |agents: &[AgentIo]| {
            agents.iter().flat_map(AgentIo::streams).any(|stream| {
                stream
                    .last_pump
                    .as_ref()
                    .is_some_and(|pump| !pump.is_finished())
            })
        };
        while pending(&agents) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let drained: Result<(), ()> = if pending(&agents) { Err(()) } else { Ok(()) };
        for stream in agents.iter().flat_map(AgentIo::streams) {
            stream
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .close();
        }
        if drained.is_err() {
            tracing::warn!(
                "some log pipes are still held open by processes outside roster's reach"
            );
        }
    }
}

/// How often a trouble is journaled per agent, at most.
const TROUBLE_JOURNAL_EVERY: Duration = Duration::from_secs(60);
/// How often a trouble is logged per agent, at most.
const TROUBLE_WARN_EVERY: Duration = Duration::from_secs(10);

/// What to do with a log trouble.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TroubleVerdict {
    /// Warn in the daemon's log, saying how many warnings were held back
    /// since the last.
    pub warn: Option<u64>,
    /// Journal it.
    pub journal: bool,
}

/// Per agent, when its log troubles were last journaled and logged: a full
/// disk must not turn into a flood of events, and a broken disk or a
/// deleted logs directory fails on every chunk while the daemon's own log
/// often sits on the same disk.
#[derive(Default)]
pub(super) struct Troubles {
    last_journaled: HashMap<String, Instant>,
    /// When the daemon last logged one, and how many it held back since.
    warnings: HashMap<String, (Option<Instant>, u64)>,
}

impl Troubles {
    /// A trouble of `agent`'s log at `now`.
    pub(super) fn handle(&mut self, now: Instant, agent: &str) -> TroubleVerdict {
        let journal = self
            .last_journaled
            .get(agent)
            .is_none_or(|last| now.duration_since(*last) >= TROUBLE_JOURNAL_EVERY);
        if journal {
            self.last_journaled.insert(agent.to_owned(), now);
        }
        let warning = self.warnings.entry(agent.to_owned()).or_insert((None, 0));
        let warn = if warning
            .0
            .is_none_or(|last| now.duration_since(last) >= TROUBLE_WARN_EVERY)
        {
            warning.0 = Some(now);
            Some(std::mem::take(&mut warning.1))
        } else {
            warning.1 += 1;
            None
        };
        TroubleVerdict { warn, journal }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_trouble_is_journaled_and_logged() {
        let mut troubles = Troubles::default();
        let t0 = Instant::now();
        assert_eq!(
            troubles.handle(t0, "web"),
            TroubleVerdict {
                warn: Some(0),
                journal: true
            }
        );
    }

    #[test]
    fn a_flood_is_logged_every_ten_seconds_and_journaled_every_minute() {
        let mut troubles = Troubles::default();
        let t0 = Instant::now();
        troubles.handle(t0, "web");
        // Every second for a minute: held back, then one warning saying
        // how many were, and no journal row until the minute is up.
        let mut warnings = Vec::new();
        let mut journaled = 0;
        for second in 1..=60 {
            let verdict = troubles.handle(t0 + Duration::from_secs(second), "web");
            warnings.extend(verdict.warn.map(|held_back| (second, held_back)));
            journaled += u32::from(verdict.journal);
        }
        assert_eq!(
            warnings,
            vec![(10, 9), (20, 9), (30, 9), (40, 9), (50, 9), (60, 9)]
        );
        assert_eq!(journaled, 1, "once, at the minute");
    }

    #[test]
    fn each_agent_has_its_own_limits() {
        let mut troubles = Troubles::default();
        let t0 = Instant::now();
        troubles.handle(t0, "web");
        let other = troubles.handle(t0 + Duration::from_secs(1), "db");
        assert_eq!(
            other,
            TroubleVerdict {
                warn: Some(0),
                journal: true
            }
        );
        let again = troubles.handle(t0 + Duration::from_secs(1), "web");
        assert_eq!(
            again,
            TroubleVerdict {
                warn: None,
                journal: false
            }
        );
    }
}
