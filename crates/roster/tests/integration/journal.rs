//! The journal: events recorded with time, readable with the daemon down,
//! intact after the daemon is SIGKILLed, and convergence without duplicates.

use roster_core::api::AgentState;

use crate::util::*;

#[test]
fn events_record_the_life_of_an_agent() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "life",
        "exec sleep 1000",
        "ready_after = \"100ms\"",
    ));
    roster.up();
    let pid = roster.agent("life").pid.expect("pid");
    kill(pid, Signal::SIGKILL);
    roster.wait_event("life", "exited", SECS(10));
    roster.wait_status("the restart", SECS(10), |status| {
        status.agents[0].restarts == 1 && status.agents[0].pid.is_some()
    });
    roster.ok(&["stop", "life"]);
    roster.ok(&["down"]);

    // Readable with the daemon gone.
    let events = roster.events(&[]);
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    for expected in [
        "daemon_started",
        "config_applied",
        "added",
        "started",
        "running",
        "exited",
        "restarting",
        "stopping",
        "stopped",
        "daemon_stopping",
        "daemon_stopped",
    ] {
        assert!(
            kinds.contains(&expected),
            "no {expected} event in {kinds:?}"
        );
    }
    let exited = events
        .iter()
        .find(|event| event.kind == "exited")
        .expect("exited");
    assert_eq!(exited.pid, Some(pid));
    assert!(
        exited.detail.contains("killed by SIGKILL"),
        "{}",
        exited.detail
    );
    assert!(
        exited.time.ends_with('Z') && exited.time.len() == 24,
        "{}",
        exited.time
    );
    assert!(events
        .windows(2)
        .all(|pair| pair[0].id < pair[1].id && pair[0].time <= pair[1].time));

    // Filters.
    let only_agent = roster.events(&["life"]);
    assert!(only_agent
        .iter()
        .all(|event| event.agent.as_deref() == Some("life")));
    let limited = roster.events(&["-n", "2"]);
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[1].kind, "daemon_stopped");
    let recent = roster.events(&["--since", "1h"]);
    assert_eq!(recent.len(), events.len());
    let table = roster.ok(&["events", "life"]);
    assert!(table.contains("killed by SIGKILL"), "{table}");
}

#[test]
fn a_killed_daemon_leaves_an_intact_journal_and_up_converges_without_duplicates() {
    let roster = Roster::new();
    roster.config(&format!(
        "{}{}",
        sh_agent("one", "exec sleep 1000", ""),
        sh_agent("two", "exec sleep 1000", "")
    ));
    roster.up();
    let old_pids: Vec<u32> = roster
        .status()
        .agents
        .iter()
        .filter_map(|agent| agent.pid)
        .collect();
    let daemon = roster.daemon_pid().expect("daemon pid");
    let events_before = roster.events(&[]).len();
    kill(daemon, Signal::SIGKILL);
    wait_for("the daemon to die", SECS(5), || {
        (!alive(daemon)).then_some(())
    });
    assert!(
        old_pids.iter().all(|pid| alive(*pid)),
        "agents outlive a SIGKILLed daemon"
    );

    roster.up();
    let status = roster.status();
    assert!(status
        .agents
        .iter()
        .all(|agent| agent.state == AgentState::Running));
    let new_pids: Vec<u32> = status.agents.iter().filter_map(|agent| agent.pid).collect();
    for pid in &old_pids {
        assert!(
            !alive(*pid),
            "the agent left by the dead daemon still runs beside the new one"
        );
        assert!(!new_pids.contains(pid));
    }
    let processes = roster.processes();
    assert_eq!(
        processes.len(),
        2,
        "exactly one process per agent: {processes:?}"
    );

    let events = roster.events(&[]);
    assert!(
        events.len() > events_before,
        "the journal kept its history and goes on"
    );
    let stale = events
        .iter()
        .filter(|event| event.kind == "stale_stopped")
        .count();
    assert_eq!(stale, 2, "each left-over agent is journaled as stopped");
    assert_eq!(journal_integrity(roster.home_path()), "ok");
}

#[test]
fn a_second_daemon_for_the_same_home_is_refused() {
    let roster = Roster::new();
    roster.config(&sh_agent("solo", "exec sleep 1000", ""));
    roster.up();
    let second = roster.run(&["daemon"]);
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already runs"), "{stderr}");
    assert_eq!(roster.agent("solo").state, AgentState::Running);
}
