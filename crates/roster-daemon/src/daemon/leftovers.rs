//! What the daemon's helpers leave behind. Exec health checks and exec
//! notifiers are processes the daemon runs for itself, often; one that
//! starts a background process (`setsid cmd &`, a double fork) used to leak
//! it on every run for as long as the daemon ran (issue #14: 50 leftovers
//! after 55 s of a check every second).
//!
//! Every helper run carries `ROSTER_HELPER=probe:ID` or `notify:ID`
//! ([`spawn::HELPER_MARKER`]), which all it starts inherits. Then:
//! 1. When the loop reaps a helper, what is left of its process group gets
//!    SIGKILL at once, and a sweep is due.
//! 2. A sweep (at most one per `SWEEP_INTERVAL`, with the agents' stray
//!    sweep) looks at the daemon's own children: as a subreaper it
//!    inherits the orphans of its helpers. One that is no agent's main
//!    process and no running helper, and whose marker names a run that is
//!    not running any more, gets SIGKILL, with its process group when it
//!    leads one.
//! 3. Reaping any stray makes another sweep due: the children of what was
//!    killed are the daemon's now.
//!
//! What a run still in progress started is left alone (a check may start a
//! helper of its own and wait for it). Agents never carry the marker
//! (`spawn` removes it from their environment), so nothing of an agent is
//! touched. A descendant that clears its environment is not recognised
//! here; it is stopped with the other strays at `down`.

use std::collections::HashSet;

use crate::{procfs, spawn};

/// The marker value of exec health check `id` (the supervisor's probe id).
pub(super) fn probe_run(id: u64) -> String {
    format!("probe:{id}")
}

/// The marker value of exec notifier run `id` (the notifier's run id).
pub(super) fn notify_run(id: u64) -> String {
    format!("notify:{id}")
}

/// Whether a look for helpers' leftovers is due.
#[derive(Debug, Default)]
pub(super) struct Leftovers {
    pending: bool,
}

impl Leftovers {
    /// A helper's process `pid` was reaped: the rest of its group goes now;
    /// what escaped the group is looked for at the next sweep.
    pub(super) fn helper_ended(&mut self, pid: u32) {
        // The group id stays reserved while any member lives, so this
        // reaches no one else.
        let _ = spawn::signal_group(pid, libc::SIGKILL);
        self.pending = true;
    }

    /// A process that was neither an agent's main process nor a helper
    /// was reaped: its children, if any, are the daemon's now.
    pub(super) fn stray_reaped(&mut self) {
        self.pending = true;
    }

    /// Whether a sweep is due.
    pub(super) fn is_pending(&self) -> bool {
        self.pending
    }

    /// Kills the leftovers of ended runs among `untracked` (the daemon's
    /// children that are neither agents' main processes nor running
    /// helpers), given the runs still going on (`running`). Returns the
    /// pids killed.
    pub(super) fn sweep(
        &mut self,
        untracked: &[u32],
        running: &HashSet<String>,
        agent_uids: &[u32],
    ) -> Vec<u32> {
        self.pending = false;
        let marked: Vec<(u32, Option<String>)> = untracked
            .iter()
            .map(|pid| (*pid, procfs::helper_run_of(*pid, agent_uids)))
            .collect();
        let doomed = of_ended_runs(&marked, running);
        for pid in &doomed {
            // A `setsid` leftover leads a group (and a session) of its own.
            let leads_group = procfs::sample(*pid).is_some_and(|sample| sample.pgid == *pid);
            if leads_group {
                let _ = spawn::signal_group(*pid, libc::SIGKILL);
            } else {
                spawn::signal_process(*pid, libc::SIGKILL);
            }
        }
        doomed
    }
}

/// The processes among `marked` (pid, its helper marker) that a helper run
/// no longer in `running` left behind.
fn of_ended_runs(marked: &[(u32, Option<String>)], running: &HashSet<String>) -> Vec<u32> {
    marked
        .iter()
        .filter(|(_, run)| run.as_ref().is_some_and(|run| !running.contains(run)))
        .map(|(pid, _)| *pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_leftovers_of_ended_runs_are_chosen() {
        let running: HashSet<String> = [probe_run(7), notify_run(3)].into_iter().collect();
        let marked = vec![
            (10, Some(probe_run(6))),  // its check ended
            (11, Some(probe_run(7))),  // its check still runs
            (12, None),                // an agent's stray, or unmarked
            (13, Some(notify_run(2))), // its notifier ended
            (14, Some(notify_run(3))), // its notifier still runs
        ];
        assert_eq!(of_ended_runs(&marked, &running), vec![10, 13]);
        assert!(of_ended_runs(&[], &running).is_empty());
    }

    #[test]
    fn sweeps_are_due_after_a_helper_or_a_stray_is_reaped() {
        let mut leftovers = Leftovers::default();
        assert!(!leftovers.is_pending());
        leftovers.stray_reaped();
        assert!(leftovers.is_pending());
        assert!(leftovers.sweep(&[], &HashSet::new(), &[]).is_empty());
        assert!(!leftovers.is_pending(), "a sweep clears it");
    }
}
