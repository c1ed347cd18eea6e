//! Watch rules end to end: real agents that leak, spin, flood their log or
//! flap; real samples of their process groups; alerts and responses.

use std::process::Command;

use roster_core::api::{AlertState, AlertsReply};

use crate::util::*;

/// A roster whose daemon samples every 200 ms.
fn fast_roster() -> Roster {
    Roster::new()
}

fn up_fast(roster: &Roster) {
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

fn alerts(roster: &Roster) -> AlertsReply {
    let text = roster.ok(&["alerts", "--json"]);
    serde_json::from_str(&text).expect("alerts --json")
}

/// Python that grows its memory by `step` MiB every 100 ms up to `cap` MiB,
/// then holds.
fn leaker(step: u32, cap: u32) -> String {
    format!(
        "import time\nheap = []\nwhile True:\n    if len(heap) < {cap} // {step}:\n        heap.append(bytearray({step} * 1024 * 1024))\n    time.sleep(0.1)\n"
    )
}

#[test]
fn a_leaking_agent_crosses_the_alert_then_the_restart_threshold() {
    let roster = fast_roster();
    let (port, received) = webhook_receiver();
    roster.write("leak.py", &leaker(8, 200));
    roster.config(&format!(
        "[agents.leaky]\ncommand = [\"python3\", \"leak.py\"]\nready_after = \"100ms\"\ndrain_timeout = \"5s\"\n\
         [[agents.leaky.watch]]\nmetric = \"memory_bytes\"\nabove = 60_000_000\nfor = \"400ms\"\naction = \"alert\"\n\
         [[agents.leaky.watch]]\nmetric = \"memory_bytes\"\nabove = 150_000_000\nfor = \"400ms\"\naction = \"restart\"\n\
         [[notify]]\nwebhook = \"http://127.0.0.1:{port}/alerts\"\n"
    ));
    up_fast(&roster);
    let first = roster.agent("leaky").pid.expect("pid");
    roster.wait_event("leaky", "alert_firing", SECS(20));
    let restarted = roster.wait_status("a restart for memory", SECS(30), |status| {
        status.agents[0].pid.is_some_and(|pid| pid != first)
    });
    assert!(restarted.agents[0].restarts >= 1);
    let events = roster.events(&["leaky"]);
    let firing: Vec<&str> = events
        .iter()
        .filter(|event| event.kind == "alert_firing")
        .map(|event| event.detail.as_str())
        .collect();
    assert!(
        firing
            .iter()
            .any(|detail| detail.contains("memory_bytes above 57 MiB for 400ms")),
        "{firing:?}"
    );
    assert!(
        firing
            .iter()
            .any(|detail| detail.contains("memory_bytes above 143 MiB")),
        "{firing:?}"
    );
    // Restarted: the memory dropped, the alerts resolved.
    roster.wait_event("leaky", "alert_resolved", SECS(20));
    let listed = alerts(&roster);
    assert!(listed
        .recent
        .iter()
        .any(|alert| alert.name == "AgentMemoryHigh" && alert.state == AlertState::Firing));
    // Both thresholds reached the webhook receiver, in Alertmanager's shape,
    // and resolved.
    let payloads = wait_for(
        "both alerts and a resolution at the webhook",
        SECS(20),
        || {
            let got = received.lock().expect("received").clone();
            let rules: std::collections::BTreeSet<String> = got
                .iter()
                .filter(|payload| payload["status"] == "firing")
                .filter_map(|payload| {
                    payload["alerts"][0]["labels"]["rule"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect();
            let resolved = got.iter().any(|payload| payload["status"] == "resolved");
            (rules.len() == 2 && resolved).then_some(got)
        },
    );
    assert!(payloads
        .iter()
        .all(|payload| payload["alerts"][0]["labels"]["alertname"] == "AgentMemoryHigh"));
    // status --json carries the sampled figures.
    let agent = roster.agent("leaky");
    assert!(
        agent.memory_percent.is_some() && agent.threads.is_some(),
        "{agent:?}"
    );
}

#[test]
fn an_error_flood_fires_a_log_alert_that_resolves() {
    let roster = fast_roster();
    roster.config(&sh_agent(
        "noisy",
        "i=0; while [ $i -lt 20 ]; do echo \"ERROR: upstream timeout $i\"; i=$((i+1)); done; echo fine; exec sleep 3600",
        "[[agents.noisy.watch]]\nmetric = \"log_matches\"\npattern = \"(?i)\\\\berror\\\\b\"\nabove = 5\nwithin = \"2s\"\naction = \"alert\"",
    ));
    up_fast(&roster);
    roster.wait_event("noisy", "alert_firing", SECS(10));
    let firing = alerts(&roster);
    let alert = firing
        .firing
        .iter()
        .chain(firing.recent.iter())
        .find(|alert| alert.name == "AgentLogMatches")
        .expect("a log alert");
    assert_eq!(alert.agent.as_deref(), Some("noisy"));
    assert!(
        alert.summary.contains("above 5 within 2s"),
        "{}",
        alert.summary
    );
    // No more errors: the window slides past them and the alert resolves.
    roster.wait_event("noisy", "alert_resolved", SECS(10));
    assert!(alerts(&roster).firing.is_empty());
}

#[test]
fn a_flapping_metric_restarts_no_more_than_the_limit() {
    let roster = fast_roster();
    roster.write("leak.py", &leaker(50, 100));
    roster.config(
        "[agents.flappy]\ncommand = [\"python3\", \"leak.py\"]\nready_after = \"100ms\"\nstable_after = \"0s\"\n\
         [[agents.flappy.watch]]\nmetric = \"memory_bytes\"\nabove = 60_000_000\naction = \"restart\"\n",
    );
    up_fast(&roster);
    roster.wait_event("flappy", "restart_suppressed", SECS(40));
    let events = roster.event_kinds("flappy");
    let stops = events.iter().filter(|kind| *kind == "stopping").count();
    assert_eq!(stops, 3, "restarts beyond the limit: {events:?}");
    // It keeps running, with its alert firing.
    let agent = roster.agent("flappy");
    assert!(agent.pid.is_some());
    assert!(alerts(&roster)
        .firing
        .iter()
        .any(|alert| alert.agent.as_deref() == Some("flappy")));
}

#[test]
fn investigate_attaches_the_process_tree_and_the_last_log_lines() {
    let roster = fast_roster();
    roster.config(&sh_agent(
        "spinner",
        "echo starting the spin; while :; do :; done",
        "[[agents.spinner.watch]]\nmetric = \"cpu_percent\"\nabove = 30\nfor = \"400ms\"\naction = \"investigate\"",
    ));
    up_fast(&roster);
    roster.wait_event("spinner", "alert_firing", SECS(20));
    let alert = wait_for("the investigated alert", SECS(10), || {
        alerts(&roster)
            .firing
            .into_iter()
            .find(|alert| alert.name == "AgentCpuHigh" && !alert.details.is_empty())
    });
    assert!(alert.details.contains("process group"), "{}", alert.details);
    assert!(
        alert.details.contains("starting the spin"),
        "{}",
        alert.details
    );
    let table = roster.ok(&["alerts"]);
    assert!(
        table.contains("FIRING") && table.contains("AgentCpuHigh"),
        "{table}"
    );
    // The spinner is not restarted: investigate only reports.
    assert!(!roster
        .event_kinds("spinner")
        .contains(&"stopping".to_owned()));
}

#[test]
fn a_full_disk_rule_cleans_the_oldest_rotated_logs() {
    if !needs_root("clean_logs", "mount a small tmpfs") {
        return;
    }
    let roster = fast_roster();
    let home = roster.home_path().to_path_buf();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&home)
        .status()
        .expect("mount");
    assert!(mounted.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(home.clone());
    // Old rotated logs fill most of the disk.
    std::fs::create_dir_all(home.join("logs")).expect("logs");
    std::fs::set_permissions(
        home.join("logs"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    for number in 1..=6 {
        std::fs::write(
            home.join(format!("logs/old.log.{number}")),
            vec![b'x'; 500 * 1024],
        )
        .expect("old log");
    }
    roster.config(&format!(
        "[agents.quiet]\ncommand = [\"sleep\", \"3630\"]\nwatch = []\n\
         [[host.watch]]\nmetric = \"disk_percent\"\npath = \"{}\"\nabove = 40\naction = \"clean_logs\"\n",
        home.display()
    ));
    up_fast(&roster);
    wait_for("a logs_cleaned event", SECS(20), || {
        roster
            .events(&[])
            .into_iter()
            .any(|event| event.kind == "logs_cleaned")
            .then_some(())
    });
    let left = std::fs::read_dir(home.join("logs"))
        .expect("logs")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("old.log."))
        .count();
    assert!(left < 6, "nothing was cleaned");
    assert!(
        roster_store::disk::used_percent(&home).is_some_and(|used| used < 40.0),
        "still above the threshold"
    );
    assert!(
        home.join("logs/quiet.log").exists(),
        "a current log was removed"
    );
    roster.ok(&["down"]);
}

#[test]
fn agents_own_metrics_are_listed_for_prometheus_file_sd() {
    let roster = Roster::new();
    roster.config(
        "[agents.app]\ncommand = [\"sleep\", \"3631\"]\nmetrics = \"http://127.0.0.1:9101/metrics\"\n\
         [agents.plain]\ncommand = [\"sleep\", \"3631\"]\n",
    );
    roster.up();
    let path = roster.home_path().join("file_sd.json");
    let listed: serde_json::Value = wait_for("file_sd.json", SECS(10), || {
        serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
    });
    assert_eq!(
        listed,
        serde_json::json!([{
            "targets": ["127.0.0.1:9101"],
            "labels": {"agent": "app", "__metrics_path__": "/metrics"}
        }])
    );
    roster.config("[agents.plain]\ncommand = [\"sleep\", \"3631\"]\n");
    roster.ok(&["apply"]);
    wait_for("file_sd.json without app", SECS(10), || {
        let listed: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        (listed == serde_json::json!([])).then_some(())
    });
    let bad = roster.write(
        "bad.toml",
        "[agents.x]\ncommand = \"true\"\nmetrics = \"tcp://x\"\n",
    );
    let output = roster.run(&["check", "-f", bad.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.toml:3:11: bad metrics URL"));
}

/// A webhook receiver on loopback: records each POST body, answers 200.
fn webhook_receiver() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(value) = serde_json::from_slice(&body) {
                    store.lock().expect("store").push(value);
                }
            }
            let mut stream = reader.into_inner();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, received)
}

#[test]
fn alerts_reach_a_webhook_in_alertmanager_shape_and_resolve() {
    let roster = fast_roster();
    let (port, received) = webhook_receiver();
    roster.config(&format!(
        "{}\n[[notify]]\nwebhook = \"http://127.0.0.1:{port}/alerts\"\n",
        sh_agent(
            "noisy",
            "i=0; while [ $i -lt 20 ]; do echo \"error: upstream timeout $i\"; i=$((i+1)); done; exec sleep 3600",
            "[[agents.noisy.watch]]\nmetric = \"log_matches\"\npattern = \"(?i)\\\\berror\\\\b\"\nabove = 5\nwithin = \"2s\"\naction = \"alert\"",
        )
    ));
    up_fast(&roster);
    let statuses = wait_for("a firing and a resolved webhook", SECS(20), || {
        let got = received.lock().expect("received").clone();
        let statuses: Vec<String> = got
            .iter()
            .filter_map(|payload| payload["status"].as_str().map(str::to_owned))
            .collect();
        (statuses.contains(&"firing".to_owned()) && statuses.contains(&"resolved".to_owned()))
            .then_some(got)
    });
    let firing = statuses
        .iter()
        .find(|payload| payload["status"] == "firing")
        .expect("firing");
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["receiver"], "roster");
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "AgentLogMatches");
    assert_eq!(alert["labels"]["agent"], "noisy");
    assert!(alert["annotations"]["summary"]
        .as_str()
        .is_some_and(|summary| summary.contains("above 5 within 2s")));
    assert!(alert["startsAt"]
        .as_str()
        .is_some_and(|at| at.ends_with('Z')));
    let resolved = statuses
        .iter()
        .find(|payload| payload["status"] == "resolved")
        .expect("resolved");
    assert_eq!(resolved["alerts"][0]["fingerprint"], alert["fingerprint"]);
    // Delivery is journaled.
    assert!(roster
        .events(&["noisy"])
        .iter()
        .any(|event| event.kind == "notified"));
}

/// GET on loopback: (status, body).
fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(SECS(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

#[test]
fn a_real_alertmanager_shows_an_agents_alert_then_its_resolution() {
    const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
    if !std::path::Path::new(ALERTMANAGER).exists() {
        skip(
            "alertmanager_end_to_end",
            "prometheus-alertmanager is not installed (.ci/run installs it)",
        );
        return;
    }
    let roster = fast_roster();
    let data = tempfile::tempdir().expect("tempdir");
    let config = data.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .expect("alertmanager config");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _alertmanager = Kill(
        Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                data.path().join("data").display()
            ))
            .arg("--cluster.listen-address=")
            .arg(format!("--web.listen-address={address}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the Alertmanager"),
    );
    wait_for("the Alertmanager to be ready", SECS(15), || {
        http_get(&address, "/-/ready").filter(|(status, _)| *status == 200)
    });
    roster.config(&format!(
        "{}\n[[notify]]\nalertmanager = \"http://{address}\"\n",
        sh_agent(
            "noisy",
            "i=0; while [ $i -lt 20 ]; do echo \"error: upstream timeout $i\"; i=$((i+1)); done; exec sleep 3600",
            "[[agents.noisy.watch]]\nmetric = \"log_matches\"\npattern = \"(?i)\\\\berror\\\\b\"\nabove = 5\nwithin = \"3s\"\naction = \"alert\"",
        )
    ));
    up_fast(&roster);
    let shown = wait_for("roster's alert in the Alertmanager", SECS(15), || {
        let (_, body) = http_get(&address, "/api/v2/alerts?active=true")?;
        let alerts: serde_json::Value = serde_json::from_str(&body).ok()?;
        alerts
            .as_array()?
            .iter()
            .find(|alert| alert["labels"]["alertname"] == "AgentLogMatches")
            .cloned()
    });
    assert_eq!(shown["labels"]["agent"], "noisy");
    assert_eq!(shown["status"]["state"], "active");
    wait_for("the resolution in the Alertmanager", SECS(20), || {
        let (_, body) = http_get(&address, "/api/v2/alerts?active=true")?;
        let alerts: serde_json::Value = serde_json::from_str(&body).ok()?;
        (!alerts
            .as_array()?
            .iter()
            .any(|alert| alert["labels"]["alertname"] == "AgentLogMatches"))
        .then_some(())
    });
}

#[test]
fn the_sample_history_is_served_bounded() {
    let roster = fast_roster();
    roster.config("[agents.sampled]\ncommand = [\"sleep\", \"3632\"]\n");
    up_fast(&roster);
    let history: serde_json::Value = wait_for("a few samples", SECS(10), || {
        let (status, body) = api(&roster, "GET", "/v1/history?agent=sampled&points=3", "");
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && value["sampled"].as_array()?.len() == 3).then_some(value)
    });
    let point = &history["sampled"][2];
    assert!(
        point["memory_bytes"]
            .as_u64()
            .is_some_and(|bytes| bytes > 0),
        "{point}"
    );
    assert!(point["time"]
        .as_str()
        .is_some_and(|time| time.ends_with('Z')));
    let (status, body) = api(&roster, "GET", "/v1/history?agent=ghost", "");
    assert_eq!(status, 404, "{body}");
    let (status, _) = api(&roster, "GET", "/v1/history?points=lots", "");
    assert_eq!(status, 400);
}
