use std::path::Path;

use super::*;
use crate::AgentName;

fn spec(text: &str) -> AgentSpec {
    let config = crate::config::parse("roster.toml", text, Path::new("/srv")).expect("valid");
    config.agents[&AgentName::new("web").expect("name")].clone()
}

fn event(id: i64, kind: &str, pid: Option<u32>, detail: &str) -> EventRecord {
    EventRecord {
        id,
        time: format!("2026-12-06T10:00:{id:02}.000Z"),
        agent: Some("web".into()),
        kind: kind.into(),
        pid,
        detail: detail.into(),
    }
}

#[test]
fn each_variable_keeps_the_source_that_set_it_last() {
    let spec = spec(
        "[defaults]\nenv = { LEVEL = \"info\" }\n\
         [agents.web]\ncommand = \"true\"\nenv = { MODEL = \"small\", SHARED = \"env\" }\n",
    );
    let mut environment = Environment::default();
    environment.set("PATH", "/usr/bin", EnvSource::Inherited);
    environment.set("SHARED", "daemon", EnvSource::Inherited);
    environment.set_config(&spec);
    environment.set("FROM_FILE", "yes", EnvSource::EnvFile);
    environment.set("SHARED", "file", EnvSource::EnvFile);
    environment.set("ROSTER_AGENT", "web", EnvSource::Default);
    let described = environment.described(&[]);
    let of = |name: &str| {
        described
            .iter()
            .find(|variable| variable.name == name)
            .map(|variable| (variable.value.as_str(), variable.source))
    };
    assert_eq!(of("PATH"), Some(("/usr/bin", EnvSource::Inherited)));
    assert_eq!(of("MODEL"), Some(("small", EnvSource::Env)));
    assert_eq!(
        of("LEVEL"),
        Some(("info", EnvSource::Env)),
        "[defaults] env"
    );
    assert_eq!(of("PYTHONUNBUFFERED"), Some(("1", EnvSource::Default)));
    assert_eq!(of("SHARED"), Some(("file", EnvSource::EnvFile)));
    assert_eq!(of("ROSTER_AGENT"), Some(("web", EnvSource::Default)));
    let names: Vec<&str> = described.iter().map(|v| v.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "by name");
}

#[test]
fn secrets_and_secret_looking_values_are_masked_everywhere() {
    let secret = "s3cr3t-value-42".to_owned();
    let mut environment = Environment::default();
    environment.set("API_KEY", secret.clone(), EnvSource::Secret);
    environment.set("SHORT", "ab", EnvSource::Secret);
    environment.set("DB_PASSWORD", "hunter2", EnvSource::EnvFile);
    environment.set("OPENAI", "sk-abcdefghijklmnop", EnvSource::Env);
    environment.set("URL", format!("https://u:{secret}@db"), EnvSource::Env);
    environment.set("LETTERS", "abc", EnvSource::Env);
    environment.set("MODEL", "small", EnvSource::Env);
    let debug = format!("{environment:?}");
    assert!(
        !debug.contains(&secret) && !debug.contains("hunter2"),
        "{debug}"
    );
    let secrets = vec![secret.clone(), "ab".to_owned()];
    let described = environment.described(&secrets);
    for variable in &described {
        let expect_masked = variable.name != "MODEL" && variable.name != "LETTERS";
        assert_eq!(variable.masked, expect_masked, "{variable:?}");
        if expect_masked {
            assert_eq!(variable.value, MASKED);
        }
    }
    let json = serde_json::to_string(&described).expect("json");
    assert!(!json.contains(&secret) && !json.contains("hunter2"));
    assert_eq!(mask_text(&format!("--key={secret}"), &secrets), MASKED);
    assert_eq!(mask_text("main.py", &secrets), "main.py");
}

#[test]
fn checks_show_defaults_in_force() {
    let plain = spec("[agents.web]\ncommand = \"true\"\n");
    let described = checks(&plain, &[]);
    assert!(described.health.is_none());
    assert!(described.watch_defaults);
    assert_eq!(described.watch.len(), 4);
    assert_eq!(described.watch[0].metric, "memory_percent");
    assert_eq!(described.watch[0].threshold, "above");
    assert_eq!(described.watch[0].value, 85.0);
    assert_eq!(described.watch[0].hold, "1m");
    assert_eq!(described.watch[1].action, "restart");

    let probed = spec(
        "[agents.web]\ncommand = \"true\"\nwatch = []\n\
         [agents.web.health]\nhttp = \"http://127.0.0.1:8001/health\"\n",
    );
    let described = checks(&probed, &[]);
    let health = described.health.clone().expect("health");
    assert_eq!(health.kind, "http");
    assert_eq!(health.check, "GET http://127.0.0.1:8001/health");
    assert_eq!(
        (
            health.interval.as_str(),
            health.timeout.as_str(),
            health.retries
        ),
        ("10s", "2s", 3)
    );
    assert_eq!(health.start_period, "10s");
    assert_eq!(health.on_failure, "restart");
    assert!(described.watch.is_empty() && !described.watch_defaults);
}

#[test]
fn the_restart_policy_reads_as_the_config_writes_it() {
    let policy = restart(
        &spec(
            "[agents.web]\ncommand = \"true\"\nrestart = \"on-failure\"\nrestart_delay = \"2s\"\n",
        ),
        Vec::new(),
    );
    assert_eq!(policy.restart, "on-failure");
    assert_eq!(policy.restart_delay, "2s");
    assert_eq!(policy.backoff_max, "30s");
    assert_eq!(policy.stop_signal, "SIGTERM");
    assert_eq!(policy.stop_timeout, "10s");
    assert_eq!(policy.drain_signal, "SIGTERM");
}

#[test]
fn exit_texts_read_back() {
    for status in [
        crate::api::ExitStatus::Code(3),
        crate::api::ExitStatus::Code(0),
        crate::api::ExitStatus::Signal(9),
        crate::api::ExitStatus::Signal(15),
    ] {
        let detail = format!("pid 7 {status} after 3s");
        let expected = match status {
            crate::api::ExitStatus::Code(code) => (Some(code), None),
            crate::api::ExitStatus::Signal(number) => (None, Some(name_of_number(number))),
        };
        assert_eq!(parse_exit(&detail), Some(expected.clone()), "{detail}");
        assert_eq!(parse_exit(&format!("stopped ({status})")), Some(expected));
    }
    assert_eq!(parse_exit("stopped"), None);
}

#[test]
fn exits_carry_their_reasons_newest_first() {
    let events = vec![
        event(1, "started", Some(10), "started, pid 10"),
        event(2, "exited", Some(10), "pid 10 exit code 3 after 1s"),
        event(3, "restarting", None, "restarting now"),
        event(4, "started", Some(11), "started, pid 11"),
        event(5, "exited", Some(11), "pid 11 killed by SIGKILL after 9s"),
        event(6, "oom_killed", Some(11), "pid 11 was killed by the kernel"),
        event(7, "started", Some(12), "started, pid 12"),
        event(8, "unhealthy", None, "unhealthy: 3 failed health checks"),
        event(9, "stopping", Some(12), "stopping pid 12 with SIGTERM"),
        event(
            10,
            "killed",
            Some(12),
            "pid 12 outlived stop_timeout: SIGKILL",
        ),
        event(11, "stopped", None, "stopped (killed by SIGKILL)"),
        event(12, "started", Some(13), "started, pid 13"),
        event(13, "stopping", Some(13), "stopping pid 13 with SIGTERM"),
        event(14, "stopped", None, "stopped (exit code 0)"),
        event(15, "stopped", None, "stopped"),
    ];
    // The journal hands them newest first; order does not matter.
    let mut reversed = events.clone();
    reversed.reverse();
    let exits = last_exits(&reversed);
    let summary: Vec<(Option<u32>, Option<i32>, Option<&str>)> = exits
        .iter()
        .map(|exit| (exit.pid, exit.code, exit.signal.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some(13), Some(0), None),
            (Some(12), None, Some("SIGKILL")),
            (Some(11), None, Some("SIGKILL")),
            (Some(10), Some(3), None),
        ]
    );
    assert!(
        exits[0].reason.starts_with("stopped by roster"),
        "{:?}",
        exits[0]
    );
    assert!(exits[1].reason.contains("health check failed"));
    assert!(exits[1].reason.contains("SIGKILL"));
    assert!(exits[2].reason.contains("memory_max"));
    assert_eq!(exits[3].reason, "ended on its own");
    assert_eq!(exits[3].time, "2026-12-06T10:00:02.000Z");

    let many: Vec<EventRecord> = (0..20)
        .map(|index| {
            event(
                index,
                "exited",
                Some(index as u32),
                &format!("pid {index} exit code 1 after 1s"),
            )
        })
        .collect();
    let exits = last_exits(&many);
    assert_eq!(exits.len(), LAST_EXITS);
    assert_eq!(exits[0].pid, Some(19));
}
