//! The OOM verdict: whether an agent's main process that died was killed
//! by the kernel at its `memory_max`.
//!
//! The kernel's OOM killer sends SIGKILL, and counts each kill in the
//! memory cgroup (`memory.events`' `oom_kill`, or v1's
//! `memory.oom_control`). The runtime reads that counter when a process
//! starts (the baseline) and again when one dies of SIGKILL; a count that
//! grew means the kernel killed it, anything else (a `kill -9`, roster's
//! own escalation) does not.

use crate::api::ExitStatus;

/// SIGKILL's number (9 on every Linux architecture).
const SIGKILL: i32 = 9;

/// Whether a process that ended with `status` may have been killed by the
/// OOM killer, so that its cgroup's counter is worth reading.
pub fn may_be_oom(status: ExitStatus) -> bool {
    status == ExitStatus::Signal(SIGKILL)
}

/// The verdict on a process that ended with `status`, given the OOM kills
/// its memory cgroup counted when it started (`before`) and now (`after`),
/// either unknown when there is no such cgroup or it could not be read:
/// the new count (the next baseline) when the kernel killed it, else none.
pub fn verdict(status: ExitStatus, before: Option<u64>, after: Option<u64>) -> Option<u64> {
    let (before, after) = (before?, after?);
    (may_be_oom(status) && after > before).then_some(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILLED: ExitStatus = ExitStatus::Signal(SIGKILL);

    #[test]
    fn a_sigkill_while_the_counter_grew_is_an_oom_kill() {
        assert_eq!(verdict(KILLED, Some(0), Some(1)), Some(1));
        assert_eq!(verdict(KILLED, Some(3), Some(5)), Some(5));
    }

    #[test]
    fn a_sigkill_without_a_new_oom_kill_is_someone_elses() {
        // `kill -9`, or roster's own escalation after the stop timeout.
        assert_eq!(verdict(KILLED, Some(2), Some(2)), None);
        // A counter that went down (a new cgroup) is no kill either.
        assert_eq!(verdict(KILLED, Some(2), Some(0)), None);
    }

    #[test]
    fn other_deaths_are_never_oom_kills() {
        for status in [
            ExitStatus::Code(0),
            ExitStatus::Code(137),
            ExitStatus::Signal(15),
            ExitStatus::Signal(6),
        ] {
            assert!(!may_be_oom(status), "{status:?}");
            assert_eq!(verdict(status, Some(0), Some(1)), None, "{status:?}");
        }
        assert!(may_be_oom(KILLED));
    }

    #[test]
    fn without_both_counts_there_is_no_verdict() {
        // No memory cgroup (limits fell back to rlimits), or it was gone.
        assert_eq!(verdict(KILLED, None, Some(1)), None);
        assert_eq!(verdict(KILLED, Some(0), None), None);
        assert_eq!(verdict(KILLED, None, None), None);
    }
}
