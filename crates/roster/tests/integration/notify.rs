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
     for = \"0s\"\naction = \"alert\"\nrepeat_every = \"1s\"\n";

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

/// A receiver that answers every request 200, on `port`, from now on.
fn accept_on(port: u16) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the port");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buffer = [0u8; 65536];
            let _ = stream.read(&mut buffer);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
}

/// Issue #14: a notifier outage became a journal storm (21,000
/// `notify_failed` rows a minute with 6 broken targets: each final failure
/// and each alert dropped from a full queue was a row). Now each target
/// gets its first failure at once, then a row a minute that counts what
/// failed and was dropped, and a row when it delivers again.
#[test]
fn a_notifier_outage_is_summarised_not_journaled_alert_by_alert() {
    let roster = Roster::new();
    let (webhook_a, webhook_b, alertmanager) = (free_port(), free_port(), free_port());
    // 40 alerts a second: each queue (1000) is full within half a minute,
    // and from then on every new alert drops the oldest, at every target.
    let rules = ALERT_EVERY_SECOND.repeat(40);
    roster.config(&format!(
        "[[notify]]\nwebhook = \"http://127.0.0.1:{webhook_a}/alerts\"\n\
         [[notify]]\nwebhook = \"http://127.0.0.1:{webhook_b}/alerts\"\n\
         [[notify]]\nalertmanager = \"http://127.0.0.1:{alertmanager}\"\n\
         [[notify]]\nexec = [\"sh\", \"-c\", \"exit 3\"]\n\
         [[notify]]\nexec = [\"no-such-notifier-3635\"]\n\
         [[notify]]\nfile = \"missing/alerts.jsonl\"\n\
         {}{rules}",
        sh_agent("web", "exec sleep 3634", "")
    ));
    let targets = [
        format!("127.0.0.1:{webhook_a}/"),
        format!("127.0.0.1:{webhook_b}/"),
        format!("alertmanager http://127.0.0.1:{alertmanager}"),
        "exit 3".to_owned(),
        "no-such-notifier-3635".to_owned(),
        "missing/alerts.jsonl".to_owned(),
    ];
    up_sampling_fast(&roster);
    let failed_rows = |events: &[roster_core::api::EventRecord], target: &str| {
        events
            .iter()
            .filter(|event| event.kind == "notify_failed" && event.detail.contains(target))
            .map(|event| event.detail.clone())
            .collect::<Vec<String>>()
    };
    // Wait until every target has its minute's summary (one events read a
    // second: the journal is busy).
    let mut last_read = std::time::Instant::now();
    let events = wait_for(
        "a summary row for every target",
        Duration::from_secs(200),
        || {
            if last_read.elapsed() < Duration::from_secs(1) {
                return None;
            }
            last_read = std::time::Instant::now();
            let events = roster.events(&[]);
            // Never a row per alert, meanwhile.
            for target in &targets {
                let rows = failed_rows(&events, target);
                assert!(rows.len() <= 3, "{} rows for {target}", rows.len());
            }
            targets
                .iter()
                .all(|target| {
                    failed_rows(&events, target)
                        .iter()
                        .any(|detail| detail.contains("alert event(s) not delivered"))
                })
                .then_some(events)
        },
    );
    let mut dropped_seen = false;
    for target in &targets {
        let rows = failed_rows(&events, target);
        // The first failure at once, then one summary a minute.
        assert!(
            (2..=3).contains(&rows.len()),
            "{} notify_failed rows for {target}: {rows:#?}",
            rows.len()
        );
        assert!(!rows[0].contains("alert event(s)"), "{}", rows[0]);
        let summary = &rows[1];
        assert!(summary.contains("in the last "), "{summary}");
        assert!(summary.contains("still failing"), "{summary}");
        dropped_seen |= !summary.contains(" 0 dropped");
    }
    assert!(dropped_seen, "no summary counted drops: {events:#?}");
    let all_failed = events
        .iter()
        .filter(|event| event.kind == "notify_failed")
        .count();
    assert!(all_failed <= 18, "{all_failed} notify_failed rows");

    // The first webhook's receiver comes up: one row says so, with what
    // failed since the last row.
    accept_on(webhook_a);
    let recovered = wait_for("a notify_recovered row", Duration::from_secs(60), || {
        roster
            .events(&[])
            .into_iter()
            .find(|event| event.kind == "notify_recovered" && event.detail.contains(&targets[0]))
    });
    assert!(
        recovered.detail.contains("delivers again"),
        "{}",
        recovered.detail
    );
    assert_eq!(roster.agent("web").state, AgentState::Running);
    let rows = roster
        .events(&[])
        .into_iter()
        .filter(|event| event.kind == "notify_recovered")
        .count();
    assert_eq!(rows, 1);
}
