//! The shipped example: it validates, runs, and its agents do their work
//! and answer /health.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use roster_core::api::AgentState;

use crate::util::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read example").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn health(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.starts_with("HTTP/1.0 200").then_some(answer)
}

#[test]
fn the_three_agents_example_runs_and_works() {
    let roster = Roster::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-agents");
    let copy = roster.dir.path().join("three-agents");
    copy_dir(&source, &copy);
    // Runtime folders from a local run of the example must not leak in.
    for leftover in [
        "customer-support/inbox",
        "customer-support/outbox",
        "customer-support/done",
        "data-processor/incoming",
        "data-processor/processed",
        "data-processor/archive",
        "report-generator/reports",
    ] {
        let _ = std::fs::remove_dir_all(copy.join(leftover));
    }
    for seeded in ["customer-support/.seeded", "data-processor/.seeded"] {
        let _ = std::fs::remove_file(copy.join(seeded));
    }
    let config = copy.join("roster.toml");
    let config = config.to_str().expect("utf-8 path");
    roster.ok(&["check", "-f", config]);
    roster.ok(&["up", "-f", config]);
    let status = roster.status();
    let names: Vec<&str> = status
        .agents
        .iter()
        .map(|agent| agent.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["customer-support", "data-processor", "report-generator"]
    );
    assert!(status
        .agents
        .iter()
        .all(|agent| agent.state == AgentState::Running));
    // roster's own health checks see what /health says.
    roster.wait_status("every agent healthy", SECS(20), |status| {
        status
            .agents
            .iter()
            .all(|agent| agent.health == roster_core::api::Health::Healthy)
    });
    for port in [8701, 8702, 8703] {
        let answer = wait_for(&format!("/health on port {port}"), SECS(10), || {
            health(port)
        });
        assert!(answer.contains("\"status\""), "{answer}");
    }
    std::fs::write(
        copy.join("customer-support/inbox/t1.txt"),
        "Subject: refund please\n\nI want my money back.\n",
    )
    .expect("ticket");
    wait_for("a reply to the ticket", SECS(15), || {
        std::fs::read_dir(copy.join("customer-support/outbox"))
            .ok()?
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().starts_with("t1"))
            .then_some(())
    });
    // A fault mode makes roster respond: an error flood in data-processor
    // fires its log rule.
    std::fs::write(copy.join("data-processor/FAULT"), "errors\n").expect("fault");
    wait_for("the example's log alert", SECS(20), || {
        roster
            .events(&["data-processor"])
            .into_iter()
            .find(|event| event.kind == "alert_firing" && event.detail.contains("AgentLogMatches"))
    });
    std::fs::remove_file(copy.join("data-processor/FAULT")).expect("no fault");
    let logs = roster.ok(&["logs", "-n", "50"]);
    assert!(
        logs.contains("customer-support | ") && logs.contains("t1"),
        "{logs}"
    );
    roster.ok(&["down"]);
    assert!(roster.processes().is_empty());
}
