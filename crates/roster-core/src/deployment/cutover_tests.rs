//! The cutover, verification and going back, on a fake clock.

use super::*;
use crate::deploy::Strategy;
use crate::ExitStatus;

#[test]
fn a_new_release_never_ready_is_given_up_and_the_old_process_serves_on() {
    let health = "[agents.a.health]\nhttp = \"http://127.0.0.1:8001/\"\ninterval = \"1s\"\nstart_period = \"60s\"";
    let mut h = deploy(health, DEPLOY);
    // The old process is healthy.
    h.run_to(1.5);
    let old = h.pid().expect("v1 runs");
    // The new process's checks never answer.
    h.probes_pass = None;
    h.through_to_cutover(2.0);
    let new = h.pid().expect("v2 starts");
    assert_eq!(h.dep.poll_timeout(), Some(h.at(7.0)), "ready_timeout = 5s");
    h.run_to(6.9);
    assert_eq!(
        h.steps().last().map(String::as_str),
        Some("cutover running")
    );
    h.run_to(7.0);
    let why = "the new process was not ready within 5s";
    assert!(h.log.contains(&Action::Handback { reason: why.into() }));
    assert_eq!(h.pid(), Some(old), "the old process is the agent's again");
    assert_eq!(h.sup.outgoing_pid(&name()), Some(new), "the new one drains");
    assert_eq!(
        h.next(),
        Action::Discard {
            version: "v2".into(),
            detail: format!("cutover: {why}")
        }
    );
    h.answer(h.at(7.0), Done::Recorded(Ok(())));
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::Failed),
            format!("cutover failed; the live release is untouched: {why}")
        )
    );
    assert!(!h
        .log
        .iter()
        .any(|a| matches!(a, Action::SwitchCurrent { .. })));
}

#[test]
fn a_new_process_that_dies_before_it_is_ready_hands_back() {
    let mut h = deploy("", DEPLOY);
    let old = h.pid().expect("v1");
    h.through_to_cutover(2.0);
    let new = h.pid().expect("v2");
    h.exit(h.at(2.5), new, ExitStatus::Code(1));
    assert_eq!(h.pid(), Some(old));
    assert_eq!(
        h.detail("cutover"),
        format!("the new process (pid {new}) died before it was ready")
    );
    assert!(matches!(h.next(), Action::Discard { .. }));
}

#[test]
fn a_new_process_outside_its_release_hands_back() {
    let mut h = deploy("", DEPLOY);
    h.through_to_cutover(2.0);
    h.run_to(3.0);
    assert!(matches!(h.next(), Action::CheckRelease { .. }));
    h.answer(h.at(3.0), Done::InRelease(Err("runs in /old".into())));
    assert!(h.log.contains(&Action::Handback {
        reason: "runs in /old".into()
    }));
    assert!(matches!(h.next(), Action::Discard { .. }));
}

#[test]
fn a_switch_the_supervisor_refuses_leaves_the_release_untouched() {
    let mut h = deploy("", DEPLOY);
    // A cutover is already under way (another switch by hand).
    h.sup
        .handle_switch(h.at(1.5), &name(), "v9", Strategy::BlueGreen)
        .expect("switch");
    h.drive(h.at(1.5));
    h.through_to_cutover(2.0);
    assert_eq!(
        h.detail("cutover"),
        "a is in the middle of a cutover; wait until it ends"
    );
    assert!(matches!(h.next(), Action::Discard { .. }));
}

/// Goes through a blue-green cutover of v2 to its verification.
fn verifying(extra: &str) -> Harness {
    let mut h = deploy(extra, DEPLOY);
    h.run_to(1.5);
    let old = h.pid().expect("v1");
    h.through_to_cutover(2.0);
    h.run_to(3.0);
    h.in_release_and_current(h.at(3.0));
    assert_eq!(h.steps().last().map(String::as_str), Some("verify running"));
    // The old process drains and ends.
    h.exit(h.at(3.2), old, ExitStatus::Signal(15));
    assert_eq!(h.sup.outgoing_pid(&name()), None);
    h
}

/// Answers the rollback's cutover to v1 up to `current` and readiness.
fn roll_back_to_v1(h: &mut Harness, seconds: f64) {
    assert_eq!(
        h.next(),
        Action::Record {
            version: "v2".into(),
            result: ReleaseResult::RolledBack,
            detail: Some(h.detail("verify"))
        }
    );
    h.answer(h.at(seconds), Done::Recorded(Ok(())));
    assert!(h
        .log
        .iter()
        .any(|a| matches!(a, Action::Switch { release, .. } if release == "v1")));
}

#[test]
fn a_crash_during_verification_rolls_back() {
    let mut h = verifying("");
    let new = h.pid().expect("v2");
    h.exit(h.at(5.0), new, ExitStatus::Signal(11));
    let why = format!("the new process (pid {new}) died within the verification window");
    assert_eq!(h.detail("verify"), why);
    roll_back_to_v1(&mut h, 5.0);
    // v2 was restarted at once: v1 starts beside it, blue-green again.
    let restarted = h.sup.outgoing_pid(&name()).expect("v2 serves meanwhile");
    assert_ne!(restarted, new);
    let back = h.pid().expect("v1 starts");
    h.run_to(6.5);
    assert_eq!(
        h.next(),
        Action::CheckRelease {
            pid: back,
            release: "v1".into()
        }
    );
    h.answer(h.at(6.5), Done::InRelease(Ok(())));
    assert!(matches!(h.next(), Action::SwitchCurrent { release } if release == "v1"));
    h.answer(h.at(6.5), Done::Current(Ok(())));
    assert_eq!(
        h.next(),
        Action::Record {
            version: "v1".into(),
            result: ReleaseResult::Deployed,
            detail: None
        }
    );
    h.answer(h.at(6.5), Done::Recorded(Ok(())));
    assert_eq!(
        h.steps(),
        [
            "stage ok",
            "build skipped",
            "smoke_test skipped",
            "cutover ok",
            "verify failed",
            "rollback ok"
        ]
    );
    assert_eq!(h.detail("rollback"), "v1 is live again");
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::RolledBack),
            format!("v2 was rolled back ({why}); v1 is live again")
        )
    );
    assert_eq!(
        h.alerts(),
        [format!("a: release v2 rolled back to v1: {why}")]
    );
    assert_eq!(
        h.crash_points(),
        ["stage", "cutover", "current", "verify", "rollback", "cutover", "current"]
    );
    assert!(h
        .notes()
        .last()
        .is_some_and(|n| n.starts_with("rolled_back: ")));
}

#[test]
fn an_unhealthy_new_process_rolls_back_blue_green() {
    let health = "[agents.a.health]\nhttp = \"http://127.0.0.1:8001/\"\ninterval = \"1s\"\ntimeout = \"1s\"\nretries = 2\nstart_period = \"0s\"\non_failure = \"alert\"";
    let mut h = verifying(health);
    let new = h.pid().expect("v2");
    h.probes_pass = Some(false);
    h.run_to(8.0);
    assert_eq!(
        h.detail("verify"),
        "the new process became unhealthy within the verification window"
    );
    roll_back_to_v1(&mut h, 8.0);
    // Blue-green again: v1 starts beside the unhealthy v2.
    assert_eq!(h.sup.outgoing_pid(&name()), Some(new));
    h.probes_pass = Some(true);
    h.run_to(10.0);
    h.in_release_and_current(h.at(10.0));
    assert!(
        matches!(h.next(), Action::Record { version, result: ReleaseResult::Deployed, .. } if version == "v1")
    );
    h.answer(h.at(10.0), Done::Recorded(Ok(())));
    assert_eq!(h.dep.progress().outcome, Some(DeployOutcome::RolledBack));
}

#[test]
fn a_rollback_that_fails_too_says_so() {
    let mut h = verifying("");
    let new = h.pid().expect("v2");
    h.exit(h.at(5.0), new, ExitStatus::Code(3));
    roll_back_to_v1(&mut h, 5.0);
    // v1, started beside the restarted v2, dies before it is ready.
    let back = h.pid().expect("v1 starts");
    h.exit(h.at(5.5), back, ExitStatus::Code(1));
    let why = format!("the new process (pid {new}) died within the verification window");
    let error = format!("the new process (pid {back}) died before it was ready");
    assert_eq!(
        h.steps().last().map(String::as_str),
        Some("rollback failed")
    );
    assert_eq!(h.detail("rollback"), error);
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::RolledBack),
            format!("v2 was rolled back ({why}), but v1 did not come up either: {error}; `roster status a` shows what runs")
        )
    );
    assert_eq!(
        h.alerts(),
        [format!("a: release v2 rolled back to v1: {why}")]
    );
    // Nothing recorded v1 as deployed.
    assert!(!h
        .log
        .iter()
        .any(|a| matches!(a, Action::Record { version, .. } if version == "v1")));
}

#[test]
fn with_no_earlier_release_a_failed_verification_fails_the_deploy() {
    let mut h = Harness::new("", DEPLOY, None, deploy_job());
    assert_eq!(h.pid(), None, "undeployed: nothing runs");
    h.through_to_cutover(2.0);
    // The undeployed agent starts with its first release.
    assert!(matches!(h.next(), Action::SwitchCurrent { release } if release == "v2"));
    h.answer(h.at(2.0), Done::Current(Ok(())));
    h.run_to(3.5);
    let new = h.pid().expect("v2");
    assert!(matches!(h.next(), Action::CheckRelease { .. }));
    h.answer(h.at(3.5), Done::InRelease(Ok(())));
    assert_eq!(h.steps().last().map(String::as_str), Some("verify running"));
    h.exit(h.at(4.0), new, ExitStatus::Code(1));
    h.next();
    h.answer(h.at(4.0), Done::Recorded(Ok(())));
    let why = format!("the new process (pid {new}) died within the verification window");
    assert_eq!(
        h.steps().last().map(String::as_str),
        Some("rollback failed")
    );
    assert_eq!(h.detail("rollback"), "no earlier release to go back to");
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::Failed),
            format!("v2 failed ({why}) and there is no earlier release to go back to")
        )
    );
    assert_eq!(h.alerts(), [format!("a: release v2 failed: {why}")]);
}

#[test]
fn a_restart_cutover_moves_current_first_and_rolls_back_when_not_ready() {
    let health = "[agents.a.health]\nhttp = \"http://127.0.0.1:8001/\"\ninterval = \"1s\"\nstart_period = \"60s\"";
    let mut h = deploy(health, &format!("{DEPLOY}strategy = \"restart\"\n"));
    let old = h.pid().expect("v1");
    // The new process's checks never answer.
    h.probes_pass = None;
    h.through_to_cutover(2.0);
    assert!(matches!(h.next(), Action::SwitchCurrent { release } if release == "v2"));
    h.answer(h.at(2.0), Done::Current(Ok(())));
    assert_eq!(h.crash_points(), ["stage", "cutover"]);
    // The old process is stopping; it ends; v2 starts.
    h.exit(h.at(2.2), old, ExitStatus::Signal(15));
    let new = h.pid().expect("v2 starts");
    assert_ne!(new, old);
    h.run_to(7.0);
    assert_eq!(
        h.detail("cutover"),
        "the new process was not ready within 5s"
    );
    // The old process is gone: only a rollback helps.
    assert!(!h.log.iter().any(|a| matches!(a, Action::Handback { .. })));
    assert_eq!(
        h.next(),
        Action::Record {
            version: "v2".into(),
            result: ReleaseResult::RolledBack,
            detail: Some("the new process was not ready within 5s".into())
        }
    );
}

#[test]
fn a_restart_cutover_whose_new_release_cannot_start_fails_at_once() {
    let mut h = deploy("", &format!("{DEPLOY}strategy = \"restart\"\n"));
    let old = h.pid().expect("v1");
    h.through_to_cutover(2.0);
    assert!(matches!(h.next(), Action::SwitchCurrent { release } if release == "v2"));
    h.answer(h.at(2.0), Done::Current(Ok(())));
    // v2's process cannot be started (its user may not enter its folder).
    h.spawn_error = Some("cannot enter /srv/a as a\n  hint: let a through".into());
    h.exit(h.at(2.2), old, ExitStatus::Signal(15));
    assert_eq!(h.pid(), None);
    // Well before ready_timeout (5 s): the cutover has failed.
    h.run_to(2.5);
    assert_eq!(
        h.detail("cutover"),
        "the new release could not start: cannot enter /srv/a as a"
    );
    h.spawn_error = None;
    assert_eq!(
        h.next(),
        Action::Record {
            version: "v2".into(),
            result: ReleaseResult::RolledBack,
            detail: Some("the new release could not start: cannot enter /srv/a as a".into())
        }
    );
}

#[test]
fn a_restart_cutover_that_goes_well_verifies_the_new_process() {
    let mut h = deploy("", &format!("{DEPLOY}strategy = \"restart\"\n"));
    let old = h.pid().expect("v1");
    h.through_to_cutover(2.0);
    h.next();
    h.answer(h.at(2.0), Done::Current(Ok(())));
    h.exit(h.at(2.2), old, ExitStatus::Signal(15));
    let new = h.pid().expect("v2");
    h.run_to(3.3);
    assert_eq!(
        h.next(),
        Action::CheckRelease {
            pid: new,
            release: "v2".into()
        }
    );
    h.answer(h.at(3.3), Done::InRelease(Ok(())));
    assert_eq!(h.detail("cutover"), format!("v2 is live (pid {new})"));
    h.run_to(13.3);
    assert!(matches!(
        h.next(),
        Action::Record {
            result: ReleaseResult::Deployed,
            ..
        }
    ));
}

#[test]
fn a_stopped_agent_gets_the_release_for_its_next_start() {
    let mut h = deploy("", DEPLOY);
    h.sup.handle_stop(h.at(1.5), &name());
    let pid = h.pid().expect("stopping");
    h.exit(h.at(1.6), pid, ExitStatus::Signal(15));
    h.through_to_cutover(2.0);
    assert!(matches!(h.next(), Action::SwitchCurrent { .. }));
    h.answer(h.at(2.0), Done::Current(Ok(())));
    assert_eq!(
        h.detail("cutover"),
        "v2 is live; the agent is not running, it starts with it"
    );
    assert_eq!(h.detail("verify"), "the agent is not running");
    assert!(matches!(
        h.next(),
        Action::Record {
            result: ReleaseResult::Deployed,
            ..
        }
    ));
    h.answer(h.at(2.0), Done::Recorded(Ok(())));
    assert_eq!(h.next(), Action::Cleanup { keep: 2 });
    h.answer(h.at(2.0), Done::Cleaned(Ok(Vec::new())));
    assert_eq!(h.detail("cleanup"), "2 releases kept, none removed");
    assert_eq!(
        h.steps(),
        [
            "stage ok",
            "build skipped",
            "smoke_test skipped",
            "cutover ok",
            "verify skipped",
            "cleanup ok"
        ]
    );
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::Deployed),
            "v2 is live (the agent is stopped: `roster start a` runs it)".into()
        )
    );
    assert_eq!(h.pid(), None, "still stopped");
    assert!(!h.crash_points().contains(&"cleanup"));
}

#[test]
fn cleanup_that_fails_does_not_fail_the_deploy() {
    let mut h = verifying("");
    h.run_to(13.0);
    h.next();
    h.answer(h.at(13.0), Done::Recorded(Ok(())));
    h.next();
    h.answer(h.at(13.0), Done::Cleaned(Err("permission denied".into())));
    assert_eq!(h.detail("cleanup"), "nothing removed: permission denied");
    assert_eq!(h.dep.progress().outcome, Some(DeployOutcome::Deployed));
}

#[test]
fn a_rollback_job_switches_to_the_release_asked_for() {
    let mut h = Harness::new("", DEPLOY, Some("v2"), Job::Rollback { to: "v1".into() });
    assert_eq!(h.dep.progress().version.as_deref(), Some("v1"));
    assert_eq!(h.steps(), ["cutover running"]);
    h.run_to(2.5);
    let pid = h.pid().expect("v1 beside v2");
    h.in_release_and_current(h.at(2.5));
    assert_eq!(h.detail("cutover"), format!("v1 is live (pid {pid})"));
    assert!(
        matches!(h.next(), Action::Record { version, result: ReleaseResult::Deployed, .. } if version == "v1")
    );
    h.answer(h.at(2.5), Done::Recorded(Ok(())));
    assert_eq!(
        h.outcome(),
        (Some(DeployOutcome::Deployed), "v1 is live again".into())
    );
    let notes = h.notes();
    assert_eq!(
        notes.first().map(String::as_str),
        Some("rollback_started: rolling back to v1")
    );
    assert_eq!(
        notes.last().map(String::as_str),
        Some("rollback_done: v1 is live again")
    );
    assert!(h.crash_points().is_empty() || h.crash_points() == ["cutover", "current"]);
}

#[test]
fn a_rollback_job_that_cannot_cut_over_fails() {
    let mut h = Harness::new("", DEPLOY, Some("v2"), Job::Rollback { to: "v1".into() });
    let new = h.pid().expect("v1 starting");
    h.exit(h.at(1.5), new, ExitStatus::Code(1));
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::Failed),
            format!("rollback to v1 failed: the new process (pid {new}) died before it was ready")
        )
    );
    assert!(h
        .notes()
        .last()
        .is_some_and(|n| n.starts_with("rollback_failed: ")));
}

#[test]
fn with_a_shared_socket_only_the_new_processs_answers_count() {
    let extra = "[agents.a.listen]\nhttp = \"127.0.0.1:8001\"\n[agents.a.health]\nhttp = \"http://127.0.0.1:8001/\"\ninterval = \"1s\"\nretries = 2\nstart_period = \"0s\"";
    let mut h = deploy(extra, DEPLOY);
    h.run_to(1.5);
    let old = h.pid().expect("v1");
    h.through_to_cutover(2.0);
    let new = h.pid().expect("v2");
    // Healthy by the supervisor's probe (maybe answered by the old one):
    // not enough, the deploy asks itself, naming the groups.
    h.run_to(3.5);
    let probe = h.next();
    assert!(
        matches!(&probe, Action::Probe { groups, .. } if *groups == vec![new, old]),
        "{probe:?}"
    );
    // The old process answered: no count, ask again 50 ms later.
    h.answer(
        h.at(3.5),
        Done::Probed {
            group: Some(old),
            verdict: Ok(()),
        },
    );
    assert!(h.work.is_empty());
    assert_eq!(h.dep.poll_timeout(), Some(h.at(3.5) + PROBE_AGAIN));
    h.tick(h.at(3.55));
    assert!(matches!(h.next(), Action::Probe { .. }));
    // One failure of the new one is below retries = 2 ...
    h.answer(
        h.at(3.6),
        Done::Probed {
            group: Some(new),
            verdict: Err("503".into()),
        },
    );
    h.tick(h.at(3.65));
    assert!(matches!(h.next(), Action::Probe { .. }));
    // ... a pass starts the count over and makes it ready.
    h.answer(
        h.at(3.7),
        Done::Probed {
            group: Some(new),
            verdict: Ok(()),
        },
    );
    assert!(matches!(h.next(), Action::CheckRelease { pid, .. } if pid == new));
}

#[test]
fn with_a_shared_socket_retries_failures_of_the_new_process_give_up() {
    let extra = "[agents.a.listen]\nhttp = \"127.0.0.1:8001\"\n[agents.a.health]\ntcp = \"127.0.0.1:8001\"\ninterval = \"1s\"\nretries = 2\nstart_period = \"0s\"";
    let mut h = deploy(extra, DEPLOY);
    h.run_to(1.5);
    h.through_to_cutover(2.0);
    let new = h.pid().expect("v2");
    h.run_to(3.5);
    for (at, error) in [(3.5, "refused"), (3.6, "reset")] {
        assert!(matches!(h.next(), Action::Probe { .. }));
        h.answer(
            h.at(at),
            Done::Probed {
                group: Some(new),
                verdict: Err(error.into()),
            },
        );
        h.tick(h.at(at + 0.05));
    }
    assert_eq!(
        h.detail("cutover"),
        "the new process failed its health check 2 times: reset"
    );
    assert!(h.log.iter().any(|a| matches!(a, Action::Handback { .. })));
}
