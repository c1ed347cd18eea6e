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
