//! What `GET /v1/status` answers, and the web dashboard's snapshot too:
//! the loop's views of the agents with their CPU and memory, either sampled
//! in /proc now (`status`) or as the sampler last published them (the
//! dashboard, which asks every second: a scan of /proc per page tick would
//! cost more than the page).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use roster_core::api::{AgentStatus, StatusReply};

use super::Published;
use crate::inbox::{Inbox, Input, Request};
use crate::procfs;

/// Where an answer's CPU and memory figures come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figures {
    /// Sampled in /proc for this answer (CPU since the caller's previous
    /// answer).
    Sampled,
    /// The sampler's newest sample of each agent (every 5 s; none for an
    /// agent it does not sample, one with `watch = []`).
    Published,
}

/// An agent's process group's CPU ticks at one status.
#[derive(Clone, Copy)]
pub struct CpuSample {
    pid: u32,
    ticks: u64,
    at: Instant,
}

/// The CPU ticks each agent's process group had at the caller's previous
/// status, for the CPU share since then (each caller keeps its own).
pub type CpuMemo = Arc<Mutex<HashMap<String, CpuSample>>>;

/// Why no status could be built.
pub enum StatusFailure {
    /// The loop is gone (shutting down).
    Gone,
    /// Sampling /proc failed.
    Sampling(String),
}

/// What `GET /v1/status` answers: the loop's views, sampled in /proc (on
/// the blocking pool), with `base` and the published warnings. The web
/// dashboard builds its snapshot from the same answer.
pub async fn status_reply(
    inbox: &Inbox,
    cpu: &CpuMemo,
    published: &Published,
    base: &[String],
    figures: Figures,
) -> Result<StatusReply, StatusFailure> {
    let (reply, answer) = oneshot::channel();
    if !inbox.send(Input::Request(Request::Status(reply))) {
        return Err(StatusFailure::Gone);
    }
    let Ok(views) = answer.await else {
        return Err(StatusFailure::Gone);
    };
    // Sampling /proc is blocking work: keep it off the runtime's workers.
    let cpu = cpu.clone();
    let mut warnings = base.to_vec();
    if let Some(web) = published
        .web_warning
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
    {
        warnings.push(web);
    }
    let as_root: Vec<&str> = views
        .iter()
        .filter(|line| line.warning.is_some())
        .map(|line| line.view.name.as_str())
        .collect();
    warnings.extend(roster_core::api::root_summary(&as_root));
    warnings.extend(views.iter().filter_map(|line| line.watch_warning.clone()));
    let sampled: std::collections::BTreeMap<
        roster_core::AgentName,
        roster_core::watch::AgentSample,
    > = published
        .history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter_map(|(agent, points)| Some((agent.clone(), points.back()?.1.clone())))
        .collect();
    let agents = tokio::task::spawn_blocking(move || {
        let wanted =
            figures == Figures::Sampled && views.iter().any(|line| line.view.pid.is_some());
        let samples = if wanted {
            procfs::sample_all()
        } else {
            HashMap::new()
        };
        let mut by_group: HashMap<u32, (u64, u64)> = HashMap::new();
        for sample in samples.values() {
            let entry = by_group.entry(sample.pgid).or_default();
            entry.0 += sample.rss_pages;
            entry.1 += sample.cpu_ticks;
        }
        let page = procfs::page_size();
        let ticks_per_second = procfs::ticks_per_second() as f64;
        let now = Instant::now();
        let mut previous = cpu.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        views
            .into_iter()
            .map(|line| {
                let crate::inbox::StatusLine {
                    view,
                    dropped,
                    user,
                    limits,
                    warning,
                    ..
                } = line;
                let name = view.name.to_string();
                let group = view.pid.and_then(|pid| by_group.get(&pid).copied());
                let newest = sampled.get(&view.name).filter(|_| view.pid.is_some());
                let (cpu_percent, memory_bytes) = match figures {
                    Figures::Sampled => (
                        cpu_since(&mut previous, &name, &view, group, now, ticks_per_second),
                        group.map(|(pages, _)| pages * page),
                    ),
                    Figures::Published => (
                        newest
                            .and_then(|sample| sample.cpu_percent)
                            .map(|percent| (percent * 10.0).round() / 10.0),
                        newest
                            .and_then(|sample| sample.memory_bytes)
                            .map(|bytes| bytes as u64),
                    ),
                };
                AgentStatus {
                    name,
                    state: view.state,
                    pid: view.pid,
                    restarts: view.restarts,
                    uptime_secs: view.uptime.map(|uptime| uptime.as_secs()),
                    memory_bytes,
                    cpu_percent,
                    health: view.health,
                    last_exit: view.last_exit,
                    log_dropped_lines: dropped,
                    last_error: view.last_error,
                    release: view.release,
                    user,
                    limits,
                    warning,
                    tenant: view.tenant,
                    instance_of: view.instance.as_ref().map(|copy| copy.of.to_string()),
                    instance: view.instance.map(|copy| copy.number),
                    memory_percent: sampled
                        .get(&view.name)
                        .and_then(|sample| sample.memory_percent)
                        .map(|percent| (percent * 10.0).round() / 10.0),
                    open_files: sampled
                        .get(&view.name)
                        .and_then(|sample| sample.open_files)
                        .map(|files| files as u64),
                    connections: sampled
                        .get(&view.name)
                        .and_then(|sample| sample.connections)
                        .map(|tcp| tcp as u64),
                    threads: sampled
                        .get(&view.name)
                        .and_then(|sample| sample.threads)
                        .map(|threads| threads as u64),
                }
            })
            .collect::<Vec<_>>()
    })
    .await;
    match agents {
        Ok(agents) => {
            let config = published
                .applied
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
                .map(|path| path.display().to_string());
            Ok(StatusReply {
                agents,
                warnings,
                config,
            })
        }
        Err(join_error) => Err(StatusFailure::Sampling(format!(
            "sampling failed: {join_error}"
        ))),
    }
}

/// The CPU share of `view`'s process group since the caller's previous
/// answer (or since it started), in % of one core to a tenth.
fn cpu_since(
    previous: &mut HashMap<String, CpuSample>,
    name: &str,
    view: &roster_core::supervisor::AgentView,
    group: Option<(u64, u64)>,
    now: Instant,
    ticks_per_second: f64,
) -> Option<f64> {
    match (view.pid, group) {
        (Some(pid), Some((_, ticks))) => {
            let last = previous.insert(
                name.to_owned(),
                CpuSample {
                    pid,
                    ticks,
                    at: now,
                },
            );
            let (delta_ticks, seconds) = match last {
                Some(last)
                    if last.pid == pid && now.duration_since(last.at).as_secs_f64() >= 0.05 =>
                {
                    (
                        ticks.saturating_sub(last.ticks),
                        now.duration_since(last.at).as_secs_f64(),
                    )
                }
                _ => (
                    ticks,
                    view.uptime
                        .map(|uptime| uptime.as_secs_f64())
                        .unwrap_or(0.0),
                ),
            };
            (seconds > 0.0).then(|| {
                let percent = delta_ticks as f64 / ticks_per_second / seconds * 100.0;
                (percent * 10.0).round() / 10.0
            })
        }
        _ => None,
    }
}
