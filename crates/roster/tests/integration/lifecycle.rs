//! Commands: up, status (table and JSON), start/stop/restart, apply, down,
//! and two homes side by side.

use roster_core::api::AgentState;

use crate::util::*;

fn two_sleepers() -> String {
    format!(
        "{}{}",
        sh_agent(
            "alpha",
            "echo alpha up; exec sleep 1000",
            "ready_after = \"200ms\""
        ),
        sh_agent(
            "beta",
            "echo beta up; exec sleep 1000",
            "ready_after = \"200ms\""
        )
    )
}

#[test]
fn up_status_and_down() {
    let roster = Roster::new();
    roster.config(&two_sleepers());
    let table = roster.up();
    assert!(
        table.contains("alpha") && table.contains("running"),
        "{table}"
    );

    // The JSON contract: every documented key, with the documented types.
    let raw: serde_json::Value =
        serde_json::from_str(&roster.ok(&["status", "--json"])).expect("json");
    let agents = raw["agents"].as_array().expect("agents array");
    assert_eq!(agents.len(), 2);
    for agent in agents {
        for key in [
            "name",
            "state",
            "pid",
            "restarts",
            "uptime_secs",
            "memory_bytes",
            "cpu_percent",
            "health",
        ] {
            assert!(
                agent.get(key).is_some(),
                "status --json lacks {key}: {agent}"
            );
        }
        assert_eq!(agent["state"], "running");
        assert!(agent["pid"].as_u64().is_some());
        assert!(
            agent["memory_bytes"]
                .as_u64()
                .is_some_and(|bytes| bytes > 0),
            "{agent}"
        );
        assert_eq!(agent["health"], "unknown");
    }
    let pids: Vec<u32> = roster
        .status()
        .agents
        .iter()
        .filter_map(|agent| agent.pid)
        .collect();
    assert!(pids.iter().all(|pid| alive(*pid)));

    let only_beta = roster.ok(&["status", "beta"]);
    assert!(
        only_beta.contains("beta") && !only_beta.contains("alpha"),
        "{only_beta}"
    );
    let unknown = roster.run(&["status", "gamma"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no agent named gamma"));

    roster.ok(&["down"]);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived roster down");
    }
    assert!(
        roster.processes().is_empty(),
        "processes left: {:?}",
        roster.processes()
    );
    let after = roster.run(&["status"]);
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("no roster daemon runs"));
}

#[test]
fn start_stop_restart_and_all() {
    let roster = Roster::new();
    roster.config(&two_sleepers());
    roster.up();
    let first = roster.agent("alpha").pid.expect("pid");

    roster.ok(&["stop", "alpha"]);
    let alpha = roster.agent("alpha");
    assert_eq!(alpha.state, AgentState::Stopped);
    assert_eq!(alpha.pid, None, "no pid while stopped");
    assert!(!alive(first));
    assert_eq!(
        roster.agent("beta").state,
        AgentState::Running,
        "beta untouched"
    );

    roster.ok(&["start", "alpha"]);
    let second = roster.agent("alpha").pid.expect("pid");
    assert_ne!(first, second);

    roster.ok(&["restart", "alpha"]);
    let third = roster
        .wait_state("alpha", AgentState::Running, SECS(10))
        .pid
        .expect("pid");
    assert_ne!(second, third);
    assert!(!alive(second));

    roster.ok(&["stop", "all"]);
    assert!(roster
        .status()
        .agents
        .iter()
        .all(|agent| agent.state == AgentState::Stopped));
    roster.ok(&["start", "all"]);
    assert!(roster
        .status()
        .agents
        .iter()
        .all(|agent| agent.pid.is_some()));

    let bad = roster.run(&["stop", "nosuch"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no agent named nosuch"));
}

#[test]
fn apply_converges_without_touching_unchanged_agents() {
    let roster = Roster::new();
    roster.config(&format!(
        "{}{}{}",
        sh_agent("keep", "exec sleep 1000", ""),
        sh_agent("change", "exec sleep 1000", ""),
        sh_agent("remove", "exec sleep 1000", "")
    ));
    roster.up();
    let keep = roster.agent("keep").pid.expect("pid");
    let change = roster.agent("change").pid.expect("pid");
    let remove = roster.agent("remove").pid.expect("pid");

    roster.config(&format!(
        "{}{}{}",
        sh_agent("keep", "exec sleep 1000", ""),
        sh_agent("change", "exec sleep 999", ""),
        sh_agent("added", "exec sleep 1000", "")
    ));
    let summary = roster.ok(&["apply"]);
    assert!(summary.contains("added:     added"), "{summary}");
    assert!(summary.contains("changed:   change"), "{summary}");
    assert!(summary.contains("removed:   remove"), "{summary}");
    assert!(summary.contains("unchanged: keep"), "{summary}");

    let status = roster.wait_status("convergence", SECS(10), |status| {
        let names: Vec<&str> = status
            .agents
            .iter()
            .map(|agent| agent.name.as_str())
            .collect();
        names == ["added", "change", "keep"]
            && status
                .agents
                .iter()
                .all(|agent| agent.state == AgentState::Running)
            && status
                .agents
                .iter()
                .any(|agent| agent.name == "change" && agent.pid != Some(change))
    });
    let pid_of = |name: &str| {
        status
            .agents
            .iter()
            .find(|agent| agent.name == name)
            .and_then(|agent| agent.pid)
    };
    assert_eq!(pid_of("keep"), Some(keep), "unchanged agent was restarted");
    assert_ne!(
        pid_of("change"),
        Some(change),
        "changed agent was not restarted"
    );
    wait_for("the removed agent to die", SECS(10), || {
        (!alive(remove)).then_some(())
    });
    roster.wait_event("remove", "removed", SECS(10));
}

#[test]
fn two_homes_run_side_by_side() {
    let first = Roster::new();
    let second = Roster::new();
    first.config(&sh_agent("same-name", "exec sleep 1000", ""));
    second.config(&sh_agent("same-name", "exec sleep 1000", ""));
    first.up();
    second.up();
    let a = first.agent("same-name").pid.expect("pid");
    let b = second.agent("same-name").pid.expect("pid");
    assert_ne!(a, b);
    first.ok(&["down"]);
    assert!(!alive(a));
    assert!(alive(b), "stopping one home touched the other");
    assert_eq!(second.agent("same-name").state, AgentState::Running);
}

#[test]
fn home_from_environment_variable() {
    let roster = Roster::new();
    roster.config(&sh_agent("env-home", "exec sleep 1000", ""));
    let output = std::process::Command::new(BIN)
        .env("ROSTER_HOME", roster.home_path())
        .current_dir(roster.dir.path())
        .arg("up")
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(roster.home_path().join("roster.sock").exists());
    assert_eq!(roster.agent("env-home").state, AgentState::Running);
}

#[test]
fn up_reports_an_agent_that_cannot_start() {
    let roster = Roster::new();
    roster.config(&format!(
        "{}[agents.broken]\ncommand = [\"/nonexistent/program\"]\ncrash_loop = 3\n",
        sh_agent("fine", "exec sleep 1000", "")
    ));
    let output = roster.run(&["up"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "up must fail when an agent failed"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("broken") && stdout.contains("failed"),
        "{stdout}"
    );
    let events = roster.wait_event("broken", "spawn_failed", SECS(10));
    let failure = events
        .iter()
        .find(|event| event.kind == "spawn_failed")
        .expect("spawn_failed event");
    assert!(
        failure.detail.contains("/nonexistent/program"),
        "{}",
        failure.detail
    );
    assert_eq!(roster.agent("fine").state, AgentState::Running);
}

#[test]
fn foreground_daemon_applies_its_file_and_stops_gracefully_on_sigterm() {
    let roster = Roster::new();
    let trapped = roster.path("trapped");
    roster.config(&sh_agent(
        "fg",
        &format!(
            "trap 'echo bye > {}; exit 0' TERM; echo hi; while true; do sleep 0.05; done",
            trapped.display()
        ),
        "",
    ));
    let mut daemon = roster.foreground_daemon(&[]);
    let agent = wait_for(
        "the agent to run under the foreground daemon",
        SECS(10),
        || {
            let output = roster.run(&["status", "--json"]);
            let status: roster_core::api::StatusReply =
                serde_json::from_slice(&output.stdout).ok()?;
            let agent = status.agents.into_iter().next()?;
            (agent.state == AgentState::Running).then_some(agent)
        },
    );
    let pid = agent.pid.expect("pid");
    kill(daemon.id(), Signal::SIGTERM);
    let exit = wait_for("the daemon to exit", SECS(15), || {
        daemon.try_wait().ok().flatten()
    });
    assert!(exit.success(), "daemon exit: {exit}");
    assert!(!alive(pid), "the agent outlived the daemon");
    assert_eq!(
        std::fs::read_to_string(&trapped).expect("trap ran").trim(),
        "bye",
        "stopped gracefully, not killed"
    );
    let kinds: Vec<String> = roster
        .events(&[])
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert!(
        kinds.ends_with(&[
            "stopping".to_owned(),
            "stopped".to_owned(),
            "daemon_stopped".to_owned()
        ]),
        "{kinds:?}"
    );
}
