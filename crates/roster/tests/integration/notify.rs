//! `[[notify]]` (issue #7 point 6): bad notifier configs are `check` errors
//! with line and column; good ones are applied by the daemon, which keeps
//! supervising. (Delivery itself is tested in roster-daemon's `notify`
//! module, against loopback receivers and a real Alertmanager.)

use std::time::Duration;

use roster_core::api::AgentState;

use crate::util::*;

#[test]
fn notify_check_locates_bad_notifiers() {
    let roster = Roster::new();
    roster.config(
        "[[notify]]\nwebhook = \"https://hooks.example/x\"\n\
         [[notify]]\nexec = []\n\
         [[notify]]\nfile = \"a.jsonl\"\nalertmanager = \"http://127.0.0.1:9093\"\n\
         [[notify]]\nwebhok = \"http://127.0.0.1:5001/\"\n",
    );
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "roster.toml:2:11: bad webhook URL \"https://hooks.example/x\": https is not supported for notifiers yet",
        "roster.toml:4:8: `exec` is empty",
        "roster.toml:7:16: [[notify]] #3 names more than one target",
        "roster.toml:9:1: unknown key `webhok` in [[notify]] #4",
        "hint: did you mean `webhook`?",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn notify_targets_are_applied_and_supervision_goes_on() {
    let roster = Roster::new();
    roster.config(&format!(
        "[[notify]]\nwebhook = \"http://127.0.0.1:1/alerts\"\ntimeout = \"1s\"\n\
         [[notify]]\nalertmanager = \"http://127.0.0.1:1\"\n\
         [[notify]]\nexec = [\"sh\", \"-c\", \"true\"]\n\
         [[notify]]\nfile = \"alerts.jsonl\"\n\
         {}",
        sh_agent("web", "sleep 1000", "")
    ));
    roster.up();
    roster.wait_state("web", AgentState::Running, Duration::from_secs(10));
    let events = roster.events(&[]);
    assert!(
        events.iter().any(|event| event.kind == "config_applied"),
        "{events:?}"
    );
    roster.ok(&["down"]);
}

/// Up with the daemon sampling every 200 ms (rules judge sooner).
fn up_sampling_fast(roster: &Roster) {
    let output = roster
        .command()
        .env("ROSTER_SAMPLE_INTERVAL", "200ms")
        .arg("up")
        .output()
        .expect("up");
    assert!(
        output.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A rule that holds as long as the agent runs and sends its alert again
/// every second: a steady flow of alert events.
const ALERT_EVERY_SECOND: &str = "[[agents.web.watch]]\nmetric = \"threads\"\nabove = 0\n\
     action = \"alert\"\nrepeat_every = \"1s\"\n";

/// Issue #14: an exec notifier that starts a background process in a
/// session of its own leaked one per alert. Now what a run leaves behind
/// is killed once it ends.
#[test]
fn what_an_exec_notifier_leaves_running_dies_with_the_run() {
    let roster = Roster::new();
    roster.config(&format!(
        "[[notify]]\nexec = [\"sh\", \"-c\", \"setsid sleep 3630 & echo sent >> sent; exit 0\"]\n\
         {}{ALERT_EVERY_SECOND}",
        sh_agent("web", "exec sleep 3631", "")
    ));
    up_sampling_fast(&roster);
    let sent = || {
        std::fs::read_to_string(roster.path("sent"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    wait_for("ten notifications", Duration::from_secs(60), || {
        (sent() >= 10).then_some(())
    });
    let until = std::time::Instant::now() + Duration::from_secs(2);
    let mut most = 0;
    while std::time::Instant::now() < until {
        most = most.max(processes_running(&["sleep", "3630"]).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(most <= 2, "{most} leftovers after {} notifications", sent());
    assert_eq!(roster.agent("web").state, AgentState::Running);
    roster.ok(&["down"]);
    assert!(processes_running(&["sleep", "3630"]).is_empty());
}
