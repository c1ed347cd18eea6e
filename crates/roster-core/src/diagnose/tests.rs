//! Every mode from hand-built facts, and the order of findings; the
//! machine's modes and the kernel's OOM kills in `tests/host.rs`.

use std::collections::BTreeMap;

use super::*;
use crate::api::{AgentState, AgentStatus, AlertState, ExitStatus, Health};

fn agent(name: &str, state: AgentState) -> AgentStatus {
    AgentStatus {
        name: name.into(),
        state,
        pid: matches!(state, AgentState::Running | AgentState::Starting).then_some(100),
        restarts: 0,
        uptime_secs: Some(3600),
        memory_bytes: None,
        cpu_percent: None,
        health: Health::Unknown,
        last_exit: None,
        log_dropped_lines: 0,
        last_error: None,
        memory_percent: None,
        open_files: None,
        connections: None,
        threads: None,
        release: None,
        user: None,
        limits: None,
        warning: None,
        tenant: None,
        instance_of: None,
        instance: None,
    }
}

fn status(agents: Vec<AgentStatus>) -> StatusReply {
    StatusReply {
        agents,
        warnings: Vec::new(),
        config: Some("/srv/p/roster.toml".into()),
    }
}

fn event(agent: Option<&str>, kind: &str, detail: &str) -> EventRecord {
    EventRecord {
        id: 1,
        time: "2026-12-06T01:00:00.000Z".into(),
        agent: agent.map(str::to_owned),
        kind: kind.into(),
        pid: None,
        detail: detail.into(),
    }
}

fn alert(name: &str, agent: Option<&str>) -> AlertRecord {
    AlertRecord {
        fingerprint: "f".into(),
        name: name.into(),
        agent: agent.map(str::to_owned),
        severity: "warning".into(),
        state: AlertState::Firing,
        summary: format!("{name} summary"),
        details: String::new(),
        starts_at: "2026-12-06T00:59:00.000Z".into(),
        ends_at: None,
        labels: BTreeMap::new(),
    }
}

fn healthy_host() -> Host {
    Host {
        disk: Some(Disk {
            path: "/var/lib/roster".into(),
            total_bytes: 100 << 30,
            available_bytes: 50 << 30,
            used_percent: 50.0,
            usage: vec![("rotated logs".into(), 1 << 20)],
        }),
        memory: Some(Memory {
            total_bytes: 8 << 30,
            available_bytes: 4 << 30,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        }),
        load: Some([0.1, 0.1, 0.1]),
        cpus: Some(2),
        open_files_limit: Some((1024, 4096)),
        clock_synchronised: Some(true),
        daemon_open_files_limit: Some((4096, 4096)),
        daemon_open_files: Some(40),
    }
}

fn facts(agents: Vec<AgentStatus>) -> Facts {
    Facts {
        daemon: Daemon::Answered(status(agents)),
        events: Vec::new(),
        alerts: Vec::new(),
        logs: BTreeMap::new(),
        port_holders: BTreeMap::new(),
        oom_kills: BTreeMap::new(),
        kernel_oom: Vec::new(),
        home_cgroup: Some("roster-ab12cd34".into()),
        host: healthy_host(),
        config: ConfigCheck::Valid {
            path: "/srv/p/roster.toml".into(),
            memory_max: BTreeMap::new(),
            nofile: BTreeMap::new(),
        },
        window: "1h".into(),
    }
}

fn modes(found: &[Finding]) -> Vec<(Mode, Severity, Option<&str>)> {
    found
        .iter()
        .map(|found| (found.mode, found.severity, found.agent.as_deref()))
        .collect()
}

fn only(found: Vec<Finding>, mode: Mode) -> Finding {
    assert_eq!(found.len(), 1, "{found:#?}");
    let one = found.into_iter().next().unwrap_or_else(|| unreachable!());
    assert_eq!(one.mode, mode, "{one:#?}");
    one
}

#[test]
fn a_healthy_home_has_nothing_wrong() {
    let mut web = agent("web", AgentState::Running);
    web.health = Health::Healthy;
    let found = classify(&facts(vec![web]));
    assert!(found.is_empty(), "{found:#?}");
    assert_eq!(render(&found), "nothing wrong found\n");
}

#[test]
fn crash_loop_from_backoff_and_failed_with_the_deaths_and_the_log() {
    let mut web = agent("web", AgentState::Backoff);
    web.restarts = 7;
    web.last_exit = Some(ExitStatus::Code(1));
    let mut facts = facts(vec![web]);
    for _ in 0..4 {
        facts.events.push(event(
            Some("web"),
            "exited",
            "exited (exit code 1) after 12ms",
        ));
    }
    facts.logs.insert(
        "web".into(),
        vec!["Traceback".into(), "KeyError: 'MODEL'".into()],
    );
    let found = only(classify(&facts), Mode::CrashLoop);
    assert_eq!(
        found.severity,
        Severity::Critical,
        "4 deaths within the window"
    );
    assert!(
        found.evidence[0].contains("backoff after 7 restarts, last exit code 1"),
        "{found:#?}"
    );
    assert!(found.evidence[0].contains("4 deaths in the last 1h"));
    assert!(found
        .evidence
        .iter()
        .any(|line| line == "log: KeyError: 'MODEL'"));
    assert_eq!(
        found
            .evidence
            .iter()
            .filter(|line| line.contains("exited (exit code 1)"))
            .count(),
        3,
        "three quoted"
    );
    assert!(found.action.contains("roster logs web"));

    let mut failed = agent("bot", AgentState::Failed);
    failed.restarts = 5;
    let found = only(classify(&self::facts(vec![failed])), Mode::CrashLoop);
    assert_eq!(found.severity, Severity::Critical);
    assert!(found.action.contains("roster start bot"));

    let mut new_loop = agent("web", AgentState::Backoff);
    new_loop.restarts = 1;
    let found = only(classify(&self::facts(vec![new_loop])), Mode::CrashLoop);
    assert_eq!(
        found.severity,
        Severity::Warning,
        "one death is not yet critical"
    );
}

#[test]
fn agent_down_when_it_cannot_start_or_ended_and_info_when_stopped() {
    let mut cannot = agent("web", AgentState::Failed);
    cannot.last_error = Some("program not found: pyhton3".into());
    let found = only(classify(&facts(vec![cannot])), Mode::AgentDown);
    assert_eq!(found.severity, Severity::Critical);
    assert!(found.evidence[0].contains("program not found: pyhton3"));

    let mut ended = agent("job", AgentState::Exited);
    ended.last_exit = Some(ExitStatus::Signal(9));
    let found = only(classify(&facts(vec![ended])), Mode::AgentDown);
    assert_eq!(found.severity, Severity::Warning);
    assert!(
        found.evidence[0].contains("killed by SIGKILL"),
        "{found:#?}"
    );

    let mut done = agent("job", AgentState::Exited);
    done.last_exit = Some(ExitStatus::Code(0));
    assert!(
        classify(&facts(vec![done])).is_empty(),
        "a job that ended well is fine"
    );

    let found = only(
        classify(&facts(vec![agent("web", AgentState::Stopped)])),
        Mode::AgentDown,
    );
    assert_eq!(found.severity, Severity::Info);
    assert!(!found.is_problem());
}

#[test]
fn port_taken_names_the_holder_from_proc() {
    let mut web = agent("web", AgentState::Backoff);
    web.restarts = 3;
    let mut facts = facts(vec![web]);
    facts.logs.insert(
        "web".into(),
        vec![
            "starting".into(),
            "OSError: [Errno 98] Address already in use".into(),
        ],
    );
    facts.port_holders.insert(
        "web".into(),
        vec![PortHolder {
            address: "127.0.0.1:8080".into(),
            pid: Some(4242),
            command: Some("python3".into()),
        }],
    );
    let found = classify(&facts);
    assert_eq!(
        modes(&found),
        [
            (Mode::PortTaken, Severity::Critical, Some("web")),
            (Mode::CrashLoop, Severity::Warning, Some("web")),
        ]
    );
    let port = &found[0];
    assert!(port
        .evidence
        .contains(&"log: OSError: [Errno 98] Address already in use".to_owned()));
    assert!(port
        .evidence
        .contains(&"127.0.0.1:8080 is held by pid 4242 (python3)".to_owned()));
    assert!(port.action.contains("pid 4242 (python3)"));
    assert!(
        found[1].action.contains("see port_taken"),
        "the crash loop points to its cause: {found:#?}"
    );

    let mut refused = agent("api", AgentState::Failed);
    refused.last_error = Some("bind 0.0.0.0:9000: EADDRINUSE".into());
    let mut facts = self::facts(vec![refused]);
    facts.port_holders.insert(
        "api".into(),
        vec![PortHolder {
            address: "0.0.0.0:9000".into(),
            pid: None,
            command: None,
        }],
    );
    let found = classify(&facts);
    let port = found
        .iter()
        .find(|f| f.mode == Mode::PortTaken)
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(port
        .evidence
        .iter()
        .any(|line| line.contains("no holder visible")));
    assert!(port.action.contains("ss -ltnp"));
}

#[test]
fn an_old_bind_error_of_an_agent_up_for_a_while_is_history() {
    let mut web = agent("web", AgentState::Running);
    web.health = Health::Healthy;
    let mut facts = facts(vec![web]);
    facts.logs.insert(
        "web".into(),
        vec!["Address already in use".into(), "retried, serving".into()],
    );
    assert!(classify(&facts).is_empty());
}

#[test]
fn unhealthy_quotes_the_probes_last_answers() {
    let mut web = agent("web", AgentState::Running);
    web.health = Health::Unhealthy;
    let mut facts = facts(vec![web]);
    facts.events.push(event(
        Some("web"),
        "unhealthy",
        "unhealthy: 3 failed health checks in a row, last: HTTP 500",
    ));
    facts.alerts.push(alert("AgentUnhealthy", Some("web")));
    let found = only(classify(&facts), Mode::Unhealthy);
    assert_eq!(found.severity, Severity::Warning);
    assert!(
        found
            .evidence
            .iter()
            .any(|line| line.ends_with("last: HTTP 500")),
        "{found:#?}"
    );
    assert!(found
        .evidence
        .iter()
        .any(|line| line.contains("alert AgentUnhealthy")));

    let mut facts = self::facts(vec![agent("web", AgentState::Running)]);
    facts.alerts.push(alert("AgentUnhealthy", Some("web")));
    let found = only(classify(&facts), Mode::Unhealthy);
    assert!(found
        .evidence
        .iter()
        .any(|line| line.contains("no unhealthy event")));
}

#[test]
fn oom_kills_from_the_cgroup_or_the_journal() {
    let mut facts = facts(vec![agent("web", AgentState::Running)]);
    facts.events.push(event(
        Some("web"),
        "oom_killed",
        "pid 7 was killed by the kernel: it reached memory_max (64.0MiB)",
    ));
    let found = only(classify(&facts), Mode::OomKilled);
    assert_eq!(found.severity, Severity::Warning, "running again");
    assert!(found
        .evidence
        .iter()
        .any(|line| line.contains("reached memory_max")));

    let mut facts = self::facts(vec![agent("web", AgentState::Backoff)]);
    facts.oom_kills.insert("web".into(), 2);
    let found = classify(&facts);
    let looping = found
        .iter()
        .find(|f| f.mode == Mode::CrashLoop)
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(looping.action.contains("see oom_killed"), "{looping:#?}");
    let oom = found
        .iter()
        .find(|f| f.mode == Mode::OomKilled)
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(oom.severity, Severity::Critical, "and it is down");
    assert!(oom.evidence[0].contains("counts 2 OOM kills"));

    let mut facts = self::facts(Vec::new());
    facts.daemon = Daemon::NotRunning {
        socket: "/h/roster.sock".into(),
    };
    facts
        .events
        .push(event(Some("web"), "oom_killed", "pid 7 was killed"));
    let found = classify(&facts);
    assert_eq!(
        modes(&found),
        [
            (Mode::DaemonUnreachable, Severity::Critical, None),
            (Mode::OomKilled, Severity::Warning, Some("web"))
        ]
    );
}

#[test]
fn memory_pressure_from_the_host_and_from_an_agent_near_its_limit() {
    let mut facts = facts(vec![{
        let mut web = agent("web", AgentState::Running);
        web.memory_bytes = Some(300 << 20);
        web
    }]);
    if let Some(memory) = facts.host.memory.as_mut() {
        memory.available_bytes = 300 << 20;
        memory.swap_total_bytes = 1 << 30;
        memory.swap_free_bytes = 512 << 20;
    }
    let found = only(classify(&facts), Mode::MemoryPressure);
    assert_eq!(found.severity, Severity::Critical, "3.7% available");
    assert!(
        found.evidence[0].starts_with("MemAvailable is 300.0MiB of 8.0GiB"),
        "{found:#?}"
    );
    assert!(found
        .evidence
        .iter()
        .any(|line| line == "swap: 512.0MiB used of 1.0GiB"));
    assert!(found
        .evidence
        .iter()
        .any(|line| line == "largest agents: web 300.0MiB"));

    let mut web = agent("web", AgentState::Running);
    web.memory_bytes = Some(95 << 20);
    let mut facts = self::facts(vec![web]);
    facts.config = ConfigCheck::Valid {
        path: "roster.toml".into(),
        memory_max: [("web".to_owned(), 100 << 20)].into_iter().collect(),
        nofile: BTreeMap::new(),
    };
    let found = only(classify(&facts), Mode::MemoryPressure);
    assert_eq!(
        (found.severity, found.agent.as_deref()),
        (Severity::Warning, Some("web"))
    );
    assert!(found.evidence[0].contains("95.0MiB of its memory_max 100.0MiB (95%)"));

    let mut facts = self::facts(vec![agent("web", AgentState::Running)]);
    facts.alerts.push(alert("AgentMemoryHigh", Some("web")));
    let found = only(classify(&facts), Mode::MemoryPressure);
    assert!(found.evidence[0].contains("alert AgentMemoryHigh"));
}

#[test]
fn disk_full_and_nearly_full_say_what_takes_the_space() {
    let mut facts = facts(Vec::new());
    let disk = Disk {
        path: "/h".into(),
        total_bytes: 10 << 30,
        available_bytes: 800 << 20,
        used_percent: 92.0,
        usage: vec![
            ("rotated logs".into(), 6 << 30),
            ("releases".into(), 1 << 30),
            ("other files in the home".into(), 0),
        ],
    };
    facts.host.disk = Some(disk.clone());
    let found = only(classify(&facts), Mode::DiskNearlyFull);
    assert_eq!(found.severity, Severity::Warning);
    assert_eq!(
        found.evidence[0],
        "the filesystem of /h is 92% used: 800.0MiB free of 10.0GiB"
    );
    assert_eq!(
        found.evidence[1..],
        ["rotated logs: 6.0GiB", "releases: 1.0GiB"]
    );
    assert!(found.action.contains("rotated logs"));

    facts.host.disk = Some(Disk {
        used_percent: 98.0,
        ..disk.clone()
    });
    facts.events.push(event(
        Some("web"),
        "log_dropped",
        "12 lines dropped: No space left on device",
    ));
    let found = only(classify(&facts), Mode::DiskFull);
    assert_eq!(found.severity, Severity::Critical);
    assert!(found
        .evidence
        .iter()
        .any(|line| line.contains("No space left")));

    // A small filesystem below the absolute floors, whatever its percentage.
    facts.host.disk = Some(Disk {
        total_bytes: 1 << 20,
        available_bytes: 1 << 19,
        used_percent: 50.0,
        ..disk.clone()
    });
    assert_eq!(
        only(classify(&facts), Mode::DiskFull).severity,
        Severity::Critical
    );
    facts.host.disk = Some(Disk {
        total_bytes: 16 << 20,
        available_bytes: 4 << 20,
        used_percent: 50.0,
        usage: vec![("releases".into(), 10 << 20)],
        ..disk
    });
    let found = only(classify(&facts), Mode::DiskNearlyFull);
    assert!(found.action.contains("releases"));
}

#[test]
fn daemon_unreachable_whether_absent_or_hung() {
    let mut facts = facts(Vec::new());
    facts.daemon = Daemon::TimedOut {
        socket: "/h/roster.sock".into(),
        waited_ms: 3000,
    };
    let found = only(classify(&facts), Mode::DaemonUnreachable);
    assert!(found.evidence[0].contains("gave no answer within 3000 ms"));
    assert!(found.action.contains("daemon.log"));
    facts.daemon = Daemon::NotRunning {
        socket: "/h/roster.sock".into(),
    };
    let found = only(classify(&facts), Mode::DaemonUnreachable);
    assert!(found.action.contains("roster up"));
    facts.daemon = Daemon::Failed {
        socket: "/h/roster.sock".into(),
        error: "HTTP 500".into(),
    };
    assert_eq!(
        only(classify(&facts), Mode::DaemonUnreachable).severity,
        Severity::Critical
    );
}

#[test]
fn config_invalid_quotes_the_checker() {
    let mut facts = facts(Vec::new());
    facts.config = ConfigCheck::Invalid {
        path: "/srv/p/roster.toml".into(),
        error: "/srv/p/roster.toml:3:1: unknown key `comand`\n  hint: did you mean `command`?\n"
            .into(),
    };
    let found = only(classify(&facts), Mode::ConfigInvalid);
    assert_eq!(found.severity, Severity::Critical);
    assert_eq!(
        found.evidence[1],
        "/srv/p/roster.toml:3:1: unknown key `comand`"
    );
    assert!(found.action.contains("roster check -f /srv/p/roster.toml"));
}

#[test]
fn a_notifier_failing_until_it_recovers() {
    let mut facts = facts(Vec::new());
    facts.events.push(event(None, "notify_failed", "AgentUnhealthy firing (web) not delivered to webhook http://127.0.0.1:1/: connect: refused"));
    let found = only(classify(&facts), Mode::NotifierFailing);
    assert!(found
        .evidence
        .iter()
        .any(|line| line.contains("connect: refused")));
    facts.events.push(event(
        None,
        "notify_recovered",
        "webhook http://127.0.0.1:1/ delivers again",
    ));
    assert!(classify(&facts).is_empty(), "recovered since");
}

#[test]
fn journal_reset_from_status_warnings_or_events() {
    let mut facts = facts(Vec::new());
    if let Daemon::Answered(status) = &mut facts.daemon {
        status.warnings.push("the journal was corrupt (file is not a database) and was moved aside to /h/journal.db.corrupt-x; earlier events are there".into());
    }
    let found = only(classify(&facts), Mode::JournalReset);
    assert!(found.evidence[0].contains("moved aside"));
    let mut facts = self::facts(Vec::new());
    facts
        .events
        .push(event(None, "journal_reset", "the journal was corrupt"));
    only(classify(&facts), Mode::JournalReset);
}

#[test]
fn findings_are_sorted_by_severity_then_mode_then_agent() {
    let mut b = agent("b", AgentState::Backoff);
    b.restarts = 1;
    let mut a = agent("a", AgentState::Backoff);
    a.restarts = 1;
    let mut unhealthy = agent("c", AgentState::Running);
    unhealthy.health = Health::Unhealthy;
    let mut facts = facts(vec![b, unhealthy, a, agent("z", AgentState::Stopped)]);
    facts.config = ConfigCheck::Invalid {
        path: "r.toml".into(),
        error: "bad".into(),
    };
    facts.events.push(event(None, "notify_failed", "x"));
    if let Some(disk) = facts.host.disk.as_mut() {
        disk.used_percent = 99.0;
    }
    let found = classify(&facts);
    assert_eq!(
        modes(&found),
        [
            (Mode::DiskFull, Severity::Critical, None),
            (Mode::ConfigInvalid, Severity::Critical, None),
            (Mode::CrashLoop, Severity::Warning, Some("a")),
            (Mode::CrashLoop, Severity::Warning, Some("b")),
            (Mode::Unhealthy, Severity::Warning, Some("c")),
            (Mode::NotifierFailing, Severity::Warning, None),
            (Mode::AgentDown, Severity::Info, Some("z")),
        ]
    );
    let text = render(&found);
    assert!(
        text.starts_with("CRITICAL disk_full:\n  the filesystem of"),
        "{text}"
    );
    assert!(text.contains("WARNING crash_loop [a]:\n"));
    assert!(text.contains("  action: "));
    assert!(text.ends_with("7 finding(s), 6 to act on\n"));
}

#[test]
fn modes_and_severities_have_their_contract_names() {
    let names: Vec<&str> = Mode::ALL.iter().map(|mode| mode.as_str()).collect();
    assert_eq!(
        names,
        [
            "crash_loop",
            "agent_down",
            "port_taken",
            "unhealthy",
            "oom_killed",
            "memory_pressure",
            "disk_full",
            "disk_nearly_full",
            "daemon_unreachable",
            "config_invalid",
            "notifier_failing",
            "journal_reset",
            "file_limit",
            "high_load",
            "clock_unsynced"
        ]
    );
    for mode in Mode::ALL {
        assert_eq!(
            serde_json::to_value(mode).ok(),
            Some(serde_json::json!(mode.as_str()))
        );
    }
    let json = serde_json::to_value(Finding {
        mode: Mode::PortTaken,
        severity: Severity::Critical,
        agent: None,
        evidence: vec!["e".into()],
        action: "a".into(),
    })
    .unwrap_or_default();
    assert_eq!(
        json,
        serde_json::json!({"mode": "port_taken", "severity": "critical", "evidence": ["e"], "action": "a"})
    );
}

mod host;
