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

/// Thousands of agents applied at once start in slices between turns of
/// the loop: `status` keeps answering while they start, and `up` succeeds
/// (issue #14, item 7: 5,000 agents made the API deaf for ~12 s).
#[test]
fn thousands_of_agents_start_while_status_keeps_answering() {
    const AGENTS: usize = 3000;
    let roster = Roster::new();
    let mut text = String::new();
    for index in 0..AGENTS {
        text.push_str(&format!(
            "[agents.w{index:04}]\ncommand = [\"sleep\", \"100000\"]\nready_after = \"0s\"\n"
        ));
    }
    roster.config(&text);
    let started = std::time::Instant::now();
    let up = roster
        .command()
        .arg("up")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("roster up");
    // Once the daemon answers at all, every status answers promptly.
    wait_for("the daemon to answer", SECS(30), || {
        roster
            .run(&["status", "--json"])
            .status
            .success()
            .then_some(())
    });
    let mut worst = std::time::Duration::ZERO;
    let mut running = 0;
    while running < AGENTS && started.elapsed() < SECS(120) {
        let asked = std::time::Instant::now();
        let (code, body) = api(&roster, "GET", "/v1/status", "");
        worst = worst.max(asked.elapsed());
        assert_eq!(code, 200, "status while agents start: {body}");
        let status: roster_core::api::StatusReply =
            serde_json::from_str(&body).expect("status JSON");
        running = status
            .agents
            .iter()
            .filter(|agent| agent.state == AgentState::Running)
            .count();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let output = up.wait_with_output().expect("up ends");
    let took = started.elapsed();
    eprintln!("{AGENTS} agents: all running after {took:?}; slowest status {worst:?}");
    assert!(
        output.status.success(),
        "up of {AGENTS} agents failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(running, AGENTS, "not all running after {took:?}");
    // What it added is a count and the first names, not 3,000 names.
    let said = String::from_utf8_lossy(&output.stdout);
    let added = said
        .lines()
        .find(|line| line.starts_with("added:"))
        .expect("an added: line");
    assert!(
        added.contains("3000 agents: w0000, w0001") && added.ends_with("and 2980 more"),
        "{added}"
    );
    assert!(
        worst < SECS(3),
        "a status took {worst:?} while agents started"
    );
    roster.ok(&["down"]);
    assert!(roster.processes().is_empty(), "agents outlived down");
}
