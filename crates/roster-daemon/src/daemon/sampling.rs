//! Sampling for watch rules (a task on the runtime, asking the loop what
//! to sample) and the snapshots the loop publishes for `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use roster_core::delivery_log::DeliveryLog;
use roster_core::Supervisor;

use super::logging::Logs;
use crate::inbox::{Inbox, Input, Request};
use crate::metrics::Metrics;
use crate::server;

/// Publishes what `/metrics` shows, when something changed in the pass and
/// metrics are served: state, pids, restarts and health as the supervisor
/// has them, and handles on the log counters. No /proc here: scrapes
/// sample that themselves.
pub(super) fn publish_metrics(
    metrics: &mut Metrics,
    supervisor: &Supervisor,
    logs: &Logs,
    deliveries: &DeliveryLog,
    firing: u64,
) {
    metrics.publish_if_changed(|| {
        let mut snapshot =
            crate::metrics::MetricsSnapshot::from_views(supervisor.views(Instant::now()), |name| {
                logs.counters(name)
            });
        snapshot.alerts_firing = firing;
        snapshot.notify_failures = deliveries
            .totals()
            .map(|(target, totals)| (target.to_owned(), totals.failed, totals.dropped))
            .collect();
        snapshot
    });
}

/// How much sample history is kept per agent.
pub const HISTORY: Duration = Duration::from_secs(3600);

/// How often agents and the host are sampled for watch rules, unless
/// `ROSTER_SAMPLE_INTERVAL` (a duration, at least 100ms) says otherwise.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

fn sample_interval() -> Duration {
    std::env::var("ROSTER_SAMPLE_INTERVAL")
        .ok()
        .and_then(|raw| roster_core::units::parse_duration(&raw).ok())
        .filter(|interval| *interval >= Duration::from_millis(100))
        .unwrap_or(SAMPLE_INTERVAL)
}

/// Samples every [`SAMPLE_INTERVAL`] what the loop says is watched (nothing
/// when no rule needs samples), on the blocking pool, and hands the figures
/// to the loop and to status readers.
pub(super) async fn sample_task(inbox: Inbox, history: Arc<Mutex<server::History>>) {
    let interval = sample_interval();
    let keep = (HISTORY.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
    let sampler = Arc::new(Mutex::new(crate::sample::Sampler::new()));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (reply, answer) = oneshot::channel();
        if !inbox.send(Input::Request(Request::SampleTargets(reply))) {
            return;
        }
        let Ok(targets) = answer.await else {
            return;
        };
        if !targets.wanted {
            continue;
        }
        let sampler = sampler.clone();
        let sampled = tokio::task::spawn_blocking(move || {
            sampler
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .sample(&targets.agents, &targets.disks)
        })
        .await;
        let Ok((agents, host)) = sampled else {
            continue;
        };
        {
            let now_ms = crate::clock::unix_millis();
            let mut history = history
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            history.retain(|agent, _| agents.contains_key(agent));
            for (agent, sample) in &agents {
                let points = history.entry(agent.clone()).or_default();
                points.push_back((now_ms, sample.clone()));
                while points.len() > keep {
                    points.pop_front();
                }
            }
        }
        inbox.send(Input::Samples { agents, host });
    }
}
