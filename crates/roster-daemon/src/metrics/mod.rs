//! Prometheus metrics: the snapshot the loop publishes, what a scrape
//! samples from /proc, the text encoding, and the `/metrics` server.
//!
//! A scrape never asks the loop. The loop publishes a [`MetricsSnapshot`]
//! (only what it already knows: state, pid, restarts, health, and handles
//! on the log counters) through a `watch` channel after each pass in which
//! something changed, and only while `/metrics` is served; a scrape reads
//! the latest one, samples the agents' process groups in /proc on the
//! blocking pool within a time budget, and encodes. So a slow or hostile
//! scraper cannot delay a restart.

mod encode;
mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use roster_core::api::Health;
use roster_core::supervisor::AgentView;
use roster_core::AgentName;

pub use encode::{encode, CONTENT_TYPE};
pub use serve::MetricsServer;

use crate::procfs;

/// What the loop knows about every agent, as of its last pass.
#[derive(Debug, Default)]
pub struct MetricsSnapshot {
    /// Every agent, sorted by name.
    pub agents: Vec<AgentMetrics>,
    /// Alerts that hold now (0 until rules and alerts exist).
    pub alerts_firing: u64,
    /// Per notify target: alert events not delivered after every attempt,
    /// and dropped from its full queue, since the daemon started.
    pub notify_failures: Vec<(String, u64, u64)>,
}

/// One agent in a [`MetricsSnapshot`].
#[derive(Clone, Debug, Default)]
pub struct AgentMetrics {
    /// The name (the `agent` label).
    pub name: String,
    /// Its `tenant` (the `tenant` label, when set).
    pub tenant: Option<String>,
    /// The main process, which leads the agent's process group, while one runs.
    pub pid: Option<u32>,
    /// Start attempts after the first.
    pub restarts: u64,
    /// The health check's verdict; `None` without a check or a verdict.
    pub healthy: Option<bool>,
    /// The agent's log counters, read at scrape time: lines arrive
    /// without the loop knowing.
    pub log: LogCounters,
}

impl AgentMetrics {
    /// Whether a process of the agent runs.
    pub fn is_up(&self) -> bool {
        self.pid.is_some()
    }
}

/// An agent's log counters, shared with its writer.
#[derive(Clone, Debug, Default)]
pub struct LogCounters {
    /// Lines stored.
    pub lines: Arc<AtomicU64>,
    /// Lines dropped (a full disk, a planted link).
    pub dropped: Arc<AtomicU64>,
}

impl MetricsSnapshot {
    /// The snapshot of `views`, with each agent's log counters.
    pub fn from_views(
        views: Vec<AgentView>,
        mut counters: impl FnMut(&AgentName) -> LogCounters,
    ) -> Self {
        let agents = views
            .into_iter()
            .map(|view| AgentMetrics {
                log: counters(&view.name),
                name: view.name.to_string(),
                tenant: view.tenant,
                pid: view.pid,
                restarts: view.restarts,
                healthy: match view.health {
                    Health::Healthy => Some(true),
                    Health::Unhealthy => Some(false),
                    Health::Unknown => None,
                },
            })
            .collect();
        Self {
            agents,
            alerts_firing: 0,
            notify_failures: Vec::new(),
        }
    }
}

/// What a scrape measured of one agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentSample {
    /// CPU time of the process group, in seconds.
    pub cpu_seconds_total: Option<f64>,
    /// Resident memory of the process group.
    pub memory_bytes: Option<u64>,
    /// Open descriptors of the process group.
    pub open_files: Option<u64>,
    /// TCP sockets of the process group.
    pub connections: Option<u64>,
    /// Threads of the process group.
    pub threads: Option<u64>,
    /// Log lines stored.
    pub log_lines_total: u64,
    /// Log lines dropped.
    pub log_dropped_lines_total: u64,
}

/// Samples every running agent's process group (blocking: call it on the
/// blocking pool) with `reader`, which remembers members and counts from
/// the previous scrape. One entry per agent of `snapshot`, in its order;
/// the descriptors of groups not reached by `deadline` stay unknown.
pub fn sample(
    reader: &mut procfs::GroupReader,
    snapshot: &MetricsSnapshot,
    deadline: Instant,
) -> Vec<AgentSample> {
    let groups: HashMap<u32, procfs::Wanted> = snapshot
        .agents
        .iter()
        .filter_map(|agent| Some((agent.pid?, procfs::Wanted::ALL)))
        .collect();
    let usage = reader.read(&groups, deadline);
    let page = procfs::page_size();
    let ticks_per_second = procfs::ticks_per_second().max(1) as f64;
    snapshot
        .agents
        .iter()
        .map(|agent| {
            let group = agent.pid.and_then(|pid| usage.get(&pid));
            AgentSample {
                cpu_seconds_total: group.map(|group| group.cpu_ticks as f64 / ticks_per_second),
                memory_bytes: group.map(|group| group.rss_pages * page),
                open_files: group.and_then(|group| group.open_files),
                connections: group.and_then(|group| group.tcp_sockets),
                threads: group.map(|group| group.threads),
                log_lines_total: agent.log.lines.load(Ordering::Relaxed),
                log_dropped_lines_total: agent.log.dropped.load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// The loop's side: the server, and the channel it publishes snapshots on.
pub struct Metrics {
    published: watch::Sender<Arc<MetricsSnapshot>>,
    server: MetricsServer,
    changed: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Nothing served yet.
    pub fn new() -> Self {
        let (published, snapshots) = watch::channel(Arc::new(MetricsSnapshot::default()));
        Self {
            published,
            server: MetricsServer::new(snapshots),
            changed: true,
        }
    }

    /// Serves `/metrics` on `listen` (or stops serving); see
    /// [`MetricsServer::apply`].
    pub fn apply(
        &mut self,
        runtime: &tokio::runtime::Handle,
        listen: Option<SocketAddr>,
        token: Option<String>,
    ) -> Result<(), String> {
        self.changed = true;
        self.server.apply(runtime, listen, token)
    }

    /// Something the snapshot shows may have changed (an event was
    /// journaled).
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Publishes `build()` when something changed since the last time and
    /// `/metrics` is served; otherwise costs nothing.
    pub fn publish_if_changed(&mut self, build: impl FnOnce() -> MetricsSnapshot) {
        if !self.changed || self.server.address().is_none() {
            return;
        }
        self.changed = false;
        self.published.send_replace(Arc::new(build()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_only_while_served_and_changed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut metrics = Metrics::new();
        let mut snapshots = metrics.published.subscribe();
        let one = || MetricsSnapshot {
            agents: vec![AgentMetrics {
                name: "a".into(),
                ..AgentMetrics::default()
            }],
            ..MetricsSnapshot::default()
        };
        metrics.publish_if_changed(one);
        assert!(!snapshots.has_changed().expect("open"), "not served");
        let listen = "127.0.0.1:0".parse().expect("address");
        // Port 0 is refused by the config; the server itself accepts it.
        metrics
            .apply(runtime.handle(), Some(listen), None)
            .expect("bind");
        metrics.publish_if_changed(one);
        assert_eq!(snapshots.borrow_and_update().agents.len(), 1);
        metrics.publish_if_changed(|| panic!("nothing changed"));
        metrics.mark_changed();
        metrics.publish_if_changed(MetricsSnapshot::default);
        assert_eq!(snapshots.borrow_and_update().agents.len(), 0);
        metrics.apply(runtime.handle(), None, None).expect("stop");
    }
}
