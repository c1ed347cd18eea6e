//! What is left when processes end: the daemon's children that are no
//! agent's main process and none of its own commands (orphans inherited as
//! subreaper), the strays of agents whose main process died, and what exec
//! probes and notifiers left behind (`leftovers.rs`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use roster_core::api::EventKind;
use roster_core::{AgentName, Signal};

use super::leftovers::Leftovers;
use crate::journal::{Journal, Row};
use crate::{procfs, spawn};

/// The shortest time between two looks for strays (see `Strays::sweep_due`).
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Sweeps due and done.
#[derive(Default)]
pub(super) struct Strays {
    /// Agents whose main process died: (agent, its pid), to look for strays.
    pending: Vec<(AgentName, u32)>,
    last_sweep: Option<Instant>,
    /// Whether exec probes and notifiers may have left processes behind.
    pub leftovers: Leftovers,
}

impl Strays {
    /// When the next sweep is due. A sweep looks for the strays of agents
    /// whose main process died and for what ended exec probes and
    /// notifiers left behind, [`SWEEP_INTERVAL`] after the last one, so a
    /// burst of exits (5000 agents stopping) costs one /proc scan per
    /// interval, not one per wake-up.
    pub(super) fn sweep_due(&self) -> Option<Instant> {
        (!self.pending.is_empty() || self.leftovers.is_pending()).then(|| {
            self.last_sweep
                .map_or_else(Instant::now, |last| last + SWEEP_INTERVAL)
        })
    }

    /// `agent`'s main process `pid` died: members of its group get SIGKILL
    /// now; a stray (a process that left the group) is looked for once the
    /// burst of exits has been reaped.
    pub(super) fn cleanup(&mut self, agent: AgentName, pid: u32) {
        let _ = spawn::signal_group(pid, libc::SIGKILL);
        self.pending.push((agent, pid));
    }

    /// Kills what ended exec probes and notifiers left behind (see
    /// `leftovers.rs`; `running` names the helper runs going on), and
    /// processes that escaped the group of an agent's dead main process, so
    /// no second copy runs beside the next one. `untracked` lists the
    /// daemon's children that are no agent's main process and none of its
    /// commands; it is called for each of the two looks.
    pub(super) fn sweep(
        &mut self,
        now: Instant,
        untracked: impl Fn() -> Vec<u32>,
        running: impl FnOnce() -> HashSet<String>,
        agent_uids: &[u32],
        journal: &Journal,
    ) {
        self.last_sweep = Some(now);
        if self.leftovers.is_pending() {
            let running = running();
            let killed = self.leftovers.sweep(&untracked(), &running, agent_uids);
            if !killed.is_empty() {
                tracing::info!(
                    "killed {} process(es) that ended health checks or notifiers left running: {killed:?}",
                    killed.len()
                );
            }
        }
        if self.pending.is_empty() {
            return;
        }
        let sweeps = std::mem::take(&mut self.pending);
        let strays = strays_by_agent(untracked(), agent_uids);
        let pgid = |pid: u32| procfs::sample(pid).map(|sample| sample.pgid);
        for (agent, stray) in escaped(&sweeps, &strays, pgid) {
            journal.record(Row::now(
                Some(agent.as_str()),
                EventKind::StrayKilled,
                Some(stray),
                format!("pid {stray} outlived its agent's main process: SIGKILL"),
            ));
            spawn::signal_process(stray, libc::SIGKILL);
        }
    }
}

/// Sends `signal` to an agent's main process group `pid`.
pub(super) fn signal_main(agent: &AgentName, pid: u32, signal: Signal) {
    if let Err(error) = spawn::signal_group(pid, signal.number()) {
        tracing::error!(%agent, pid, "sending {signal}: {error}");
    }
}

/// After [`signal_main`]: sends `signal` to the agent's strays (`strays`,
/// the processes outside its group that carry its marker). A stopped
/// (SIGSTOP, ^Z) agent cannot run the handler of its stop signal until it
/// is continued, so those signals are followed by SIGCONT to all.
pub(super) fn signal_strays(pid: u32, signal: Signal, strays: &[u32]) {
    for stray in strays {
        spawn::signal_process(*stray, signal.number());
    }
    if signal.resumes_stopped() {
        let _ = spawn::signal_group(pid, libc::SIGCONT);
        for stray in strays {
            spawn::signal_process(*stray, libc::SIGCONT);
        }
    }
}

/// Direct children of the daemon (orphans inherited as subreaper
/// included) for which `tracked` is false.
pub(super) fn untracked_children(tracked: impl Fn(u32) -> bool) -> Vec<u32> {
    procfs::own_children()
        .into_iter()
        .filter(|pid| !tracked(*pid))
        .collect()
}

/// `untracked` by the agent their marker names. Only descendants are
/// reparented to a subreaper; one without a marker (it cleared its
/// environment) is kept under "".
pub(super) fn strays_by_agent(
    untracked: Vec<u32>,
    agent_uids: &[u32],
) -> HashMap<String, Vec<u32>> {
    by_marker(untracked, |pid| {
        procfs::roster_markers_of(pid, agent_uids).map(|(_, name)| name)
    })
}

fn by_marker(
    untracked: Vec<u32>,
    agent_of: impl Fn(u32) -> Option<String>,
) -> HashMap<String, Vec<u32>> {
    let mut strays: HashMap<String, Vec<u32>> = HashMap::new();
    for pid in untracked {
        strays
            .entry(agent_of(pid).unwrap_or_default())
            .or_default()
            .push(pid);
    }
    strays
}

/// The strays to kill after `sweeps` (agents and their dead main
/// processes): an agent's strays (`strays`, by agent) that are not in the
/// dead main's process group (`pgid_of`), which got SIGKILL already. One
/// whose group cannot be read is gone.
fn escaped(
    sweeps: &[(AgentName, u32)],
    strays: &HashMap<String, Vec<u32>>,
    pgid_of: impl Fn(u32) -> Option<u32>,
) -> Vec<(AgentName, u32)> {
    let mut doomed = Vec::new();
    for (agent, dead_main) in sweeps {
        for stray in strays.get(agent.as_str()).into_iter().flatten() {
            if pgid_of(*stray).is_some_and(|pgid| pgid != *dead_main) {
                doomed.push((agent.clone(), *stray));
            }
        }
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> AgentName {
        AgentName::new(text).expect("name")
    }

    #[test]
    fn strays_are_grouped_by_the_agent_their_marker_names() {
        let markers = HashMap::from([(10, "web"), (11, "web"), (12, "db")]);
        let strays = by_marker(vec![10, 11, 12, 13], |pid| {
            markers.get(&pid).map(|name| name.to_string())
        });
        assert_eq!(strays["web"], vec![10, 11]);
        assert_eq!(strays["db"], vec![12]);
        assert_eq!(strays[""], vec![13], "one without a marker is kept apart");
    }

    #[test]
    fn only_strays_outside_the_dead_mains_group_are_killed() {
        let strays = HashMap::from([
            ("web".to_owned(), vec![21, 22, 23]),
            ("db".to_owned(), vec![31]),
        ]);
        // 21 is still in the dead main's group (it got SIGKILL with it),
        // 22 left it, 23 is gone already; db's main did not die.
        let groups = HashMap::from([(21, 20), (22, 22), (31, 31)]);
        let doomed = escaped(&[(name("web"), 20)], &strays, |pid| {
            groups.get(&pid).copied()
        });
        assert_eq!(doomed, vec![(name("web"), 22)]);
    }

    #[test]
    fn a_sweep_is_due_once_a_main_died_and_not_before_the_interval() {
        let mut strays = Strays::default();
        assert_eq!(strays.sweep_due(), None, "nothing died: no sweep");
        strays.pending.push((name("web"), 1));
        let due = strays.sweep_due().expect("a sweep is due");
        assert!(due <= Instant::now(), "the first sweep is due at once");
        let swept = Instant::now();
        strays.last_sweep = Some(swept);
        assert_eq!(strays.sweep_due(), Some(swept + SWEEP_INTERVAL));
    }
}
