//! Restart policy: fast restarts, policies, exponential backoff, crash loops
//! ending in `failed`, the cool-down, and unbuffered Python output.

use std::time::{Duration, Instant};

use roster_core::api::AgentState;

use crate::util::*;

#[test]
fn a_killed_agent_has_a_new_pid_within_100ms() {
    let roster = Roster::new();
    let pids = roster.path("pids");
    roster.config(&sh_agent(
        "quick",
        &format!("echo $$ >> {}; exec sleep 1000", pids.display()),
        "restart_delay = \"0s\"",
    ));
    roster.up();
    let read_pids = || pids_in(&pids);
    let before = read_pids();
    let victim = *before.last().expect("a pid");
    let killed_at = Instant::now();
    kill(victim, Signal::SIGKILL);
    while read_pids().len() == before.len() {
        assert!(killed_at.elapsed() < SECS(5), "no new pid after 5 s");
        std::thread::sleep(Duration::from_micros(200));
    }
    let worst = killed_at.elapsed();
    assert!(worst < Duration::from_millis(100), "restart took {worst:?}");
    let agent = roster.agent("quick");
    assert_eq!(agent.restarts, 1);
    assert!(agent
        .last_exit
        .is_some_and(|exit| exit.to_string().contains("SIGKILL")));
}

#[test]
fn restart_policies_decide_what_happens_after_an_exit() {
    let roster = Roster::new();
    roster.config(&format!(
        "{}{}{}{}",
        sh_agent(
            "onfail-ok",
            "sleep 0.2; exit 0",
            "restart = \"on-failure\"\nready_after = \"0s\""
        ),
        sh_agent(
            "onfail-bad",
            "sleep 0.2; exit 3",
            "restart = \"on-failure\"\nready_after = \"0s\"\ncrash_loop = 0"
        ),
        sh_agent(
            "never",
            "sleep 0.2; exit 3",
            "restart = \"never\"\nready_after = \"0s\""
        ),
        sh_agent(
            "always",
            "sleep 0.2; exit 0",
            "restart = \"always\"\nready_after = \"0s\"\ncrash_loop = 0"
        ),
    ));
    let _ = roster.run(&["up", "--timeout", "1s"]);
    roster.wait_state("onfail-ok", AgentState::Exited, SECS(10));
    let never = roster.wait_state("never", AgentState::Exited, SECS(10));
    assert_eq!(
        never.last_exit.map(|exit| exit.to_string()),
        Some("exit code 3".to_owned())
    );
    roster.wait_status("restarts of onfail-bad and always", SECS(10), |status| {
        status
            .agents
            .iter()
            .filter(|agent| agent.name == "onfail-bad" || agent.name == "always")
            .all(|agent| agent.restarts >= 2)
    });
    assert_eq!(roster.agent("never").restarts, 0);
    assert_eq!(roster.agent("onfail-ok").restarts, 0);
}

#[test]
fn crash_loop_backs_off_then_fails_and_restart_clears_it() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "crasher",
        "echo dying; exit 1",
        "crash_loop = 5\ncrash_window = \"60s\"\nfailed_retry = \"never\"",
    ));
    let output = roster.run(&["up"]);
    assert_eq!(output.status.code(), Some(1));
    let agent = roster.wait_state("crasher", AgentState::Failed, SECS(10));
    assert_eq!(agent.pid, None);
    let events = roster.wait_event("crasher", "failed", SECS(10));
    let delays: Vec<&str> = events
        .iter()
        .filter(|event| event.kind == "restarting")
        .map(|event| event.detail.as_str())
        .collect();
    assert_eq!(
        delays,
        [
            "restarting now",
            "restarting in 100ms",
            "restarting in 200ms",
            "restarting in 400ms"
        ],
        "exponential backoff"
    );
    let failed = events
        .iter()
        .find(|event| event.kind == "failed")
        .expect("failed event");
    assert!(
        failed.detail.contains("5 quick deaths"),
        "{}",
        failed.detail
    );
    let exits = events.iter().filter(|event| event.kind == "exited").count();
    assert_eq!(exits, 5, "no busy loop: exactly the allowed deaths");

    // Failed stays failed (no retry configured): no timer is pending...
    assert_eq!(roster.agent("crasher").state, AgentState::Failed);
    let before = roster.events(&["crasher"]).len();
    // ...until an operator restarts it: that is at once.
    let _ = roster.run(&["restart", "crasher"]);
    assert!(
        roster.agent("crasher").restarts >= 5,
        "restart did not start it"
    );
    wait_for("a `started` event after the restart", SECS(10), || {
        let after = roster.events(&["crasher"]);
        after[before..]
            .iter()
            .any(|event| event.kind == "started")
            .then_some(())
    });
}

#[test]
fn failed_is_retried_after_the_cool_down() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "crasher",
        "exit 1",
        "crash_loop = 2\nfailed_retry = \"1s\"",
    ));
    let _ = roster.run(&["up"]);
    roster.wait_state("crasher", AgentState::Failed, SECS(10));
    roster.wait_event("crasher", "retrying", SECS(10));
}

#[test]
fn backoff_resets_after_a_stable_run() {
    let roster = Roster::new();
    let marker = roster.path("runs");
    // Dies quickly twice, then runs "stable" (past stable_after) and dies.
    roster.config(&sh_agent(
        "flaky",
        &format!("echo run >> {m}; n=$(wc -l < {m}); if [ $n -le 2 ]; then exit 1; fi; sleep 0.6; exit 1", m = marker.display()),
        "stable_after = \"500ms\"\ncrash_loop = 0\nready_after = \"0s\"",
    ));
    let _ = roster.run(&["up", "--timeout", "1s"]);
    let events = wait_for("four restarts", SECS(15), || {
        let events = roster.events(&["flaky"]);
        (events
            .iter()
            .filter(|event| event.kind == "restarting")
            .count()
            >= 4)
            .then_some(events)
    });
    let delays: Vec<&str> = events
        .iter()
        .filter(|event| event.kind == "restarting")
        .map(|event| event.detail.as_str())
        .take(4)
        .collect();
    assert_eq!(
        delays,
        [
            "restarting now",
            "restarting in 100ms",
            "restarting now",
            "restarting now"
        ]
    );
}

#[test]
fn python_output_is_unbuffered_and_env_is_passed() {
    let roster = Roster::new();
    roster.write(
        "agent.py",
        "import os, time\nprint('model is', os.environ['MODEL'])\nprint('unbuffered is', os.environ.get('PYTHONUNBUFFERED'))\ntime.sleep(1000)\n",
    );
    roster.write(
        "custom.py",
        "import os, time\nprint('unbuffered is', os.environ.get('PYTHONUNBUFFERED'), flush=True)\ntime.sleep(1000)\n",
    );
    roster.config(
        "[agents.py]\ncommand = \"python3 agent.py\"\nenv = { MODEL = \"small\" }\n\
         [agents.custom]\ncommand = \"python3 custom.py\"\nenv = { PYTHONUNBUFFERED = \"\" }\n",
    );
    roster.up();
    let log = roster.log_path("py");
    // Without PYTHONUNBUFFERED these lines would sit in Python's buffer
    // until the process exits.
    wait_for("python's print to reach the log", SECS(10), || {
        let lines = log_lines(&log);
        (lines.len() >= 2).then_some(())
    });
    assert_eq!(log_lines(&log), ["model is small", "unbuffered is 1"]);
    wait_for("custom env to reach the log", SECS(10), || {
        (log_lines(&roster.log_path("custom")) == ["unbuffered is "]).then_some(())
    });
}
