//! A hundred agents: up, status listing all, down leaving nothing.

use roster_core::api::AgentState;

use crate::util::*;

#[test]
fn a_hundred_agents_up_status_down() {
    let roster = Roster::new();
    let mut text = String::new();
    for index in 0..100 {
        text.push_str(&format!("[agents.worker-{index:03}]\ncommand = [\"sleep\", \"1000\"]\nready_after = \"100ms\"\n"));
    }
    roster.config(&text);
    let started = std::time::Instant::now();
    roster.up();
    let took = started.elapsed();
    assert!(took < SECS(20), "up of 100 agents took {took:?}");
    let status = roster.status();
    assert_eq!(status.agents.len(), 100);
    assert!(status
        .agents
        .iter()
        .all(|agent| agent.state == AgentState::Running && agent.pid.is_some()));
    assert_eq!(roster.processes().len(), 100);
    let daemon = roster.daemon_pid().expect("daemon");
    roster.ok(&["down"]);
    assert!(
        roster.processes().is_empty(),
        "left behind: {:?}",
        roster.processes()
    );
    // `down` returns once the daemon let go of its home (its lock); the
    // process itself ends a moment later.
    wait_for("the daemon to exit after down", SECS(5), || {
        (!alive(daemon)).then_some(())
    });
}
