//! The checker as a whole: good files, and bad ones reported at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::health::{OnFailure, MIN_PROBE_PERIOD};
use crate::name::AgentName;
use crate::notify::{NotifyTarget, DEFAULT_NOTIFY_TIMEOUT};
use crate::signal::Signal;

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse("roster.toml", text, Path::new("/srv/app"))
}

#[test]
fn minimal_agent_gets_defaults() {
    let config =
        parse_text("[agents.web]\ncommand = \"python3 -u main.py --name 'a b'\"\n").expect("valid");
    let spec = &config.agents[&AgentName::new("web").expect("name")];
    assert_eq!(spec.command, ["python3", "-u", "main.py", "--name", "a b"]);
    assert_eq!(spec.cwd, Path::new("/srv/app"));
    assert_eq!(spec.restart.mode, RestartMode::Always);
    assert_eq!(spec.restart.delay, Duration::ZERO);
    assert_eq!(spec.stop.signal, Signal::Term);
    assert_eq!(config.log, LogConfig::default());
}

#[test]
fn the_documented_example_parses() {
    let text = r#"
[log]
max_size = "10MiB"
keep = 14
compress = true

[agents.customer-support]
command = ["python3", "main.py"]
cwd = "agents/customer-support"
env = { MODEL = "small" }
restart = "always"
restart_delay = "0s"
backoff_max = "30s"
stop_signal = "SIGTERM"
stop_timeout = "10s"
"#;
    let config = parse_text(text).expect("valid");
    let spec = &config.agents[&AgentName::new("customer-support").expect("name")];
    assert_eq!(spec.cwd, Path::new("/srv/app/agents/customer-support"));
    assert_eq!(spec.env["MODEL"], "small");
    assert_eq!(
        spec.environment(),
        [
            ("MODEL".to_owned(), "small".to_owned()),
            ("PYTHONUNBUFFERED".to_owned(), "1".to_owned())
        ]
    );
}

#[test]
fn reports_every_problem_with_line_and_column() {
    let text = "[agents.ok]\ncommand = \"true\"\ncomand = \"x\"\n\n[agents.\"bad name\"]\ncommand = []\nrestart_delay = \"soon\"\nstop_signal = \"SIGFOO\"\n\n[agents.quiet]\ncwd = \"x\"\n";
    let error = parse_text(text).expect_err("invalid");
    let lines: Vec<String> = error.to_string().lines().map(str::to_owned).collect();
    let rendered = error.to_string();
    assert!(
        rendered.contains("roster.toml:3:1: unknown key `comand` in agent `ok`"),
        "{rendered}"
    );
    assert!(
        rendered.contains("hint: did you mean `command`?"),
        "{rendered}"
    );
    assert!(
        rendered.contains("roster.toml:5:9: bad agent name \"bad name\""),
        "{rendered}"
    );
    assert!(
        rendered.contains("roster.toml:6:11: `command` is empty"),
        "{rendered}"
    );
    assert!(
        rendered.contains("roster.toml:7:17: bad duration for `restart_delay`"),
        "{rendered}"
    );
    assert!(
        rendered.contains("roster.toml:8:15: unknown signal \"SIGFOO\""),
        "{rendered}"
    );
    assert!(
        rendered.contains("roster.toml:10:9: agent `quiet` has no `command`"),
        "{rendered}"
    );
    assert!(lines.len() >= 6);
}

#[test]
fn duplicate_agents_are_a_located_error() {
    let error = parse_text("[agents.a]\ncommand = \"true\"\n[agents.a]\ncommand = \"false\"\n")
        .expect_err("duplicate");
    let rendered = error.to_string();
    assert!(rendered.starts_with("roster.toml:3:"), "{rendered}");
    assert!(rendered.contains("duplicate"), "{rendered}");
}

#[test]
fn unknown_top_level_and_log_keys() {
    let error =
        parse_text("[logs]\nkeep = 1\n[log]\nkep = 3\nmax_size = \"1KiB\"\n").expect_err("invalid");
    let rendered = error.to_string();
    assert!(
        rendered.contains("roster.toml:1:2: unknown key `logs` in the top level"),
        "{rendered}"
    );
    assert!(
        rendered.contains("roster.toml:4:1: unknown key `kep` in [log]"),
        "{rendered}"
    );
    assert!(
        rendered.contains("roster.toml:5:12: `max_size` must be at least 4KiB"),
        "{rendered}"
    );
}

#[test]
fn failed_retry_accepts_never() {
    let config =
        parse_text("[agents.a]\ncommand = \"true\"\nfailed_retry = \"never\"\n").expect("valid");
    assert_eq!(
        config.agents[&AgentName::new("a").expect("name")]
            .restart
            .failed_retry,
        None
    );
}

#[test]
fn metrics_tables_are_validated_and_located() {
    let none = parse_text("[agents.a]\ncommand = \"true\"\n").expect("valid");
    assert_eq!(none.metrics, None);
    let default = parse_text("[metrics]\n").expect("valid");
    assert_eq!(
        default
            .metrics
            .as_ref()
            .map(|metrics| metrics.listen.to_string()),
        Some("127.0.0.1:9464".to_owned())
    );
    let token =
        parse_text("[metrics]\nbearer_token_file = \"secrets/metrics.token\"\n").expect("valid");
    assert_eq!(
        token
            .metrics
            .as_ref()
            .and_then(|metrics| metrics.bearer_token_file.as_ref())
            .map(|path| path.ends_with("secrets/metrics.token") && path.is_absolute()),
        Some(true),
        "relative to the config's directory"
    );
    let empty = parse_text("[metrics]\nbearer_token_file = \"\"\n")
        .expect_err("invalid")
        .to_string();
    assert!(empty.contains("`bearer_token_file` is empty"), "{empty}");
    let six = parse_text("[metrics]\nlisten = \"[::1]:9100\"\n").expect("valid");
    assert_eq!(
        six.metrics
            .as_ref()
            .map(|metrics| metrics.listen.to_string()),
        Some("[::1]:9100".to_owned())
    );

    let text = "[metrics]\nlisten = \"localhost:9464\"\nlisen = 1\n";
    let rendered = parse_text(text).expect_err("invalid").to_string();
    for expected in [
        "roster.toml:2:10: bad metrics address \"localhost:9464\": expected an IP address and a port",
        "hint: write e.g. \"127.0.0.1:9464\"",
        "roster.toml:3:1: unknown key `lisen` in [metrics]",
        "hint: did you mean `listen`?",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in:\n{rendered}"
        );
    }
    for (text, expected) in [
        (
            "metrics = 1\n",
            "roster.toml:1:11: `metrics` must be a table",
        ),
        (
            "[metrics]\nlisten = 9464\n",
            "roster.toml:2:10: `listen` must be a string",
        ),
        (
            "[metrics]\nlisten = \"127.0.0.1:0\"\n",
            "roster.toml:2:10: bad metrics address \"127.0.0.1:0\": port 0",
        ),
    ] {
        let rendered = parse_text(text).expect_err("invalid").to_string();
        assert!(rendered.contains(expected), "{rendered}");
    }
}

#[test]
fn debug_output_hides_environment_values() {
    let config = parse_text("[agents.a]\ncommand = \"true\"\nenv = { API_KEY = \"sk-secret\" }\n")
        .expect("valid");
    let debug = format!("{:?}", config);
    assert!(debug.contains("API_KEY"));
    assert!(!debug.contains("sk-secret"), "{debug}");
}

#[test]
fn health_tables_are_validated_and_located() {
    let good = parse_text(
        "[agents.web]\ncommand = \"true\"\ndrain_signal = \"SIGUSR1\"\n[agents.web.health]\nhttp = \"http://127.0.0.1:8001/health\"\nretries = 5\non_failure = \"alert\"\n",
    )
    .expect("valid");
    let web = &good.agents[&AgentName::new("web").expect("name")];
    let health = web.health.as_ref().expect("a health check");
    assert_eq!(health.retries, 5);
    assert_eq!(health.on_failure, OnFailure::Alert);
    assert_eq!(health.interval, Duration::from_secs(10), "default");
    assert_eq!(web.stop.drain_signal, Some(Signal::Usr1));
    assert_eq!(web.stop.drain_timeout, Duration::from_secs(30), "default");

    let text = "[agents.a]\ncommand = \"true\"\n[agents.a.health]\nhttp = \"https://x/\"\n\n[agents.b]\ncommand = \"true\"\n[agents.b.health]\nhttp = \"http://x/\"\ntcp = \"x:1\"\n\n[agents.c]\ncommand = \"true\"\n[agents.c.health]\ninterval = \"0s\"\nretires = 2\non_failure = \"reboot\"\ntcp = \"nohost\"\n";
    let rendered = parse_text(text).expect_err("invalid").to_string();
    for expected in [
        "roster.toml:4:8: bad health URL \"https://x/\": https is not supported",
        "roster.toml:10:7: [agents.b.health] names more than one check",
        "roster.toml:15:12: `interval` must be at least 100ms",
        "roster.toml:16:1: unknown key `retires` in [agents.c.health]",
        "hint: did you mean `retries`?",
        "roster.toml:17:14: unknown on_failure \"reboot\"",
        "roster.toml:18:7: bad health address \"nohost\": expected HOST:PORT",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in:\n{rendered}"
        );
    }
    assert!(!rendered.contains("names no check"), "{rendered}");
}

/// Issue #14: a 1 ms `interval` or `timeout` was accepted and flapped
/// several times a second for ever; 100 ms is the floor.
#[test]
fn health_interval_and_timeout_have_a_floor_of_100ms() {
    let text = "[agents.a]\ncommand = \"true\"\n[agents.a.health]\nexec = [\"true\"]\ninterval = \"1ms\"\ntimeout = \"99ms\"\n";
    let rendered = parse_text(text).expect_err("below the floor").to_string();
    for expected in [
        "roster.toml:5:12: `interval` must be at least 100ms",
        "hint: probing more often only adds load",
        "roster.toml:6:11: `timeout` must be at least 100ms",
        "hint: a shorter cut fails answers that are merely a little slow",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in:\n{rendered}"
        );
    }
    let good = parse_text(
        "[agents.a]\ncommand = \"true\"\n[agents.a.health]\nexec = [\"true\"]\ninterval = \"100ms\"\ntimeout = \"100ms\"\n",
    )
    .expect("the floor itself is fine");
    let health = good.agents[&AgentName::new("a").expect("name")]
        .health
        .clone()
        .expect("health");
    assert_eq!(health.interval, MIN_PROBE_PERIOD);
    assert_eq!(health.timeout, MIN_PROBE_PERIOD);
}

#[test]
fn defaults_users_and_limits() {
    let good = parse_text(
        "[defaults]\nuser = \"tenant-{name}\"\ncreate_user = true\nmemory_max = \"512MiB\"\ncpu_quota = \"50%\"\nenv = { A = \"1\", B = \"1\" }\n\n[agents.acme]\ncommand = \"true\"\nenv = { B = \"2\" }\nenv_file = \"acme.env\"\n\n[agents.ops]\ncommand = \"true\"\nuser = \"root\"\nmemory_max = \"2GiB\"\ntasks_max = 64\nnofile = 4096\n",
    )
    .expect("valid");
    let acme = &good.agents[&AgentName::new("acme").expect("name")];
    assert_eq!(acme.identity.user.as_deref(), Some("tenant-acme"));
    assert!(acme.identity.create_user);
    assert_eq!(acme.limits.memory_max, Some(512 * 1024 * 1024));
    assert_eq!(acme.limits.cpu_quota, Some(50));
    assert_eq!(
        acme.env.get("A").map(String::as_str),
        Some("1"),
        "from defaults"
    );
    assert_eq!(
        acme.env.get("B").map(String::as_str),
        Some("2"),
        "its own wins"
    );
    assert_eq!(
        acme.env_file.as_deref(),
        Some(Path::new("/srv/app/acme.env"))
    );
    let ops = &good.agents[&AgentName::new("ops").expect("name")];
    assert!(ops.identity.root_intended());
    assert_eq!(ops.limits.memory_max, Some(2 << 30), "its own wins");
    assert_eq!(
        (ops.limits.tasks_max, ops.limits.nofile),
        (Some(64), Some(4096))
    );

    let text = "[defaults]\nuser = \"tenant/{name}\"\ncommand = \"x\"\n\n[agents.a]\ncommand = \"true\"\n\n[agents.b]\ncommand = \"true\"\nmemory_max = \"1KiB\"\ncpu_quota = \"0%\"\n";
    let rendered = parse_text(text).expect_err("invalid").to_string();
    assert_eq!(
        rendered.matches("bad user").count(),
        2,
        "one per agent (the names differ): {rendered}"
    );
    for expected in [
        "roster.toml:3:1: unknown key `command` in [defaults]",
        "`memory_max` below 1MiB",
        "bad cpu_quota: it must be above 0%",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in:\n{rendered}"
        );
    }
}

#[test]
fn watch_rules_parse_with_defaults_and_bad_ones_are_located() {
    let good = parse_text(
        "[agents.web]\ncommand = \"true\"\n[[agents.web.watch]]\nmetric = \"memory_percent\"\nabove = 85\nfor = \"1m\"\naction = \"alert\"\n[[agents.web.watch]]\nmetric = \"log_matches\"\npattern = \"(?i)\\\\berror\\\\b\"\nabove = 5\nwithin = \"5m\"\n\n[agents.plain]\ncommand = \"true\"\n\n[agents.none]\ncommand = \"true\"\nwatch = []\n\n[[host.watch]]\nmetric = \"disk_percent\"\npath = \"/\"\nabove = 80\naction = \"clean_logs\"\n",
    )
    .expect("valid");
    let web = &good.agents[&AgentName::new("web").expect("name")];
    let rules = web.rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].hold, Duration::from_secs(60));
    assert_eq!(rules[1].within, Duration::from_secs(300));
    assert_eq!(rules[1].pattern.as_deref(), Some("(?i)\\berror\\b"));
    let plain = &good.agents[&AgentName::new("plain").expect("name")];
    assert_eq!(plain.rules().len(), 4, "the graded defaults");
    let none = &good.agents[&AgentName::new("none").expect("name")];
    assert!(none.rules().is_empty(), "watch = [] means no rules");
    assert_eq!(good.host_watch.len(), 1);

    let text = "[agents.a]\ncommand = \"true\"\n[[agents.a.watch]]\nmetric = \"memory_precent\"\nabove = 1\n[[agents.a.watch]]\nmetric = \"cpu_percent\"\nabove = -5\n[[agents.a.watch]]\nmetric = \"log_matches\"\npattern = \"(unclosed\"\nabove = 1\n[[agents.a.watch]]\nmetric = \"disk_percent\"\nabove = 1\n[[agents.a.watch]]\nmetric = \"threads\"\nabove = 1\naction = \"reboot\"\n[[host.watch]]\nmetric = \"load1\"\nabove = 4\naction = \"restart\"\n";
    let rendered = parse_text(text).expect_err("invalid").to_string();
    for expected in [
        "roster.toml:4:10: unknown metric \"memory_precent\"",
        "did you mean `memory_percent`?",
        "roster.toml:8:9: `above` must not be negative",
        "roster.toml:11:11: `pattern` is not a valid regular expression",
        "roster.toml:14:10: `disk_percent` is a host metric",
        "roster.toml:19:10: unknown action \"reboot\"",
        "roster.toml:23:10: action \"restart\" does not go with a `load1` rule",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in:\n{rendered}"
        );
    }
}

#[test]
fn notify_tables_parse_with_defaults_and_resolved_paths() {
    let text = r#"
[[notify]]
webhook = "http://127.0.0.1:5001/alerts"

[[notify]]
alertmanager = "http://127.0.0.1:9093"
timeout = "2s"

[[notify]]
exec = ["./page-me", "--loud"]

[[notify]]
file = "alerts.jsonl"
"#;
    let config = parse_text(text).expect("valid");
    assert_eq!(config.notify.len(), 4);
    let webhook = &config.notify[0];
    assert_eq!(webhook.timeout, DEFAULT_NOTIFY_TIMEOUT);
    match &webhook.target {
        NotifyTarget::Webhook(target) => {
            assert_eq!(target.address, "127.0.0.1:5001");
            assert_eq!(target.path, "/alerts");
        }
        other => panic!("not a webhook: {other:?}"),
    }
    assert_eq!(config.notify[1].timeout, Duration::from_secs(2));
    assert!(matches!(
        &config.notify[1].target,
        NotifyTarget::Alertmanager(target) if target.address == "127.0.0.1:9093"
    ));
    assert_eq!(
        config.notify[2].target,
        NotifyTarget::Exec {
            argv: vec!["./page-me".into(), "--loud".into()],
            cwd: PathBuf::from("/srv/app"),
        }
    );
    assert_eq!(
        config.notify[3].target,
        NotifyTarget::File(PathBuf::from("/srv/app/alerts.jsonl"))
    );
    assert!(parse_text("").expect("valid").notify.is_empty());
}

#[test]
fn notify_problems_are_located() {
    let text = "[[notify]]\nwebhook = \"https://hooks.example/x\"\n\n[[notify]]\ntimeout = \"5s\"\n\n[[notify]]\nfile = \"a.jsonl\"\nexec = [\"notify-send\"]\n\n[[notify]]\nexec = []\ntimout = \"1s\"\n\n[[notify]]\nalertmanager = \"127.0.0.1:9093\"\ntimeout = \"soon\"\n\n[[notify]]\nfile = \"b.jsonl\"\ntimeout = \"0s\"\n";
    let rendered = parse_text(text).expect_err("invalid").to_string();
    for expected in [
        "roster.toml:2:11: bad webhook URL \"https://hooks.example/x\": https is not supported for notifiers yet",
        "roster.toml:4:1: [[notify]] #2 names no target",
        "hint: give exactly one of webhook",
        "roster.toml:9:8: [[notify]] #3 names more than one target",
        "roster.toml:12:8: `exec` is empty",
        "roster.toml:13:1: unknown key `timout` in [[notify]] #4",
        "hint: did you mean `timeout`?",
        "roster.toml:16:16: bad alertmanager URL \"127.0.0.1:9093\": the URL must start with http://",
        "roster.toml:17:11: bad duration for `timeout`",
        "roster.toml:21:11: `timeout` must be above 0s",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in:\n{rendered}"
        );
    }
    assert!(!rendered.contains("#4 names no target"), "{rendered}");

    let not_tables = parse_text("notify = \"http://x/\"\n")
        .expect_err("invalid")
        .to_string();
    assert!(
        not_tables.contains("roster.toml:1:10: `notify` must be an array of tables"),
        "{not_tables}"
    );
    let empty = parse_text("[[notify]]\nexec = \"  \"\n")
        .expect_err("invalid")
        .to_string();
    assert!(
        empty.contains("roster.toml:2:8: `exec` is empty"),
        "{empty}"
    );
    let inline = parse_text("notify = [{ file = \"x.jsonl\" }, 3]\n")
        .expect_err("invalid")
        .to_string();
    assert!(
        inline.contains("roster.toml:1:33: every `notify` entry must be a table"),
        "{inline}"
    );
}

#[test]
fn web_is_read_with_its_defaults_and_its_paths_resolved() {
    use crate::web::{TlsFiles, DEFAULT_SESSION_TTL};
    let config = parse_text("").expect("valid");
    assert_eq!(config.web, None, "no [web]: no dashboard");
    let config = parse_text("[web]\nsession_ttl = \"1h\"\n").expect("valid");
    assert_eq!(config.web, None, "no listen: no dashboard");
    let web = parse_text("[web]\nlisten = \"127.0.0.1:9400\"\n")
        .expect("valid")
        .web
        .expect("web");
    assert_eq!(web.listen.to_string(), "127.0.0.1:9400");
    assert_eq!((web.tls, web.insecure_http), (None, false));
    assert_eq!(web.session_ttl, DEFAULT_SESSION_TTL);
    let web = parse_text(
        "[web]\nlisten = \"0.0.0.0:9400\"\ntls_cert = \"tls/web.crt\"\ntls_key = \"/etc/k.pem\"\nsession_ttl = \"30d\"\n",
    )
    .expect("valid")
    .web
    .expect("web");
    assert_eq!(
        web.tls,
        Some(TlsFiles {
            cert: PathBuf::from("/srv/app/tls/web.crt"),
            key: PathBuf::from("/etc/k.pem"),
        })
    );
    assert_eq!(web.session_ttl, Duration::from_secs(30 * 86400));
    let web =
        parse_text("[web]\nlisten = \"[::]:9400\"\ninsecure_http = true\nsession_ttl = \"1m\"\n")
            .expect("valid: a proxy terminates TLS")
            .web
            .expect("web");
    assert!(web.insecure_http && web.plain_beyond_loopback());
    assert!(parse_text("[web]\nlisten = \"[::1]:9400\"\n").is_ok());
}

/// `stderr`: `[log]`'s is every agent's; `[defaults]` replaces it, and an
/// agent's own replaces both, wherever `[log]` sits in the file.
#[test]
fn stderr_comes_from_the_agent_then_defaults_then_log() {
    let stderr_of =
        |config: &Config, name: &str| config.agents[&AgentName::new(name).expect("name")].stderr;
    let plain = parse_text("[agents.web]\ncommand = \"true\"\n").expect("valid");
    assert_eq!(plain.log.stderr, StderrMode::Merge, "today's behaviour");
    assert_eq!(stderr_of(&plain, "web"), StderrMode::Merge);

    let text = "[agents.web]\ncommand = \"true\"\n\n[agents.db]\ncommand = \"true\"\nstderr = \"merge\"\n\n[log]\nstderr = \"separate\"\n";
    let from_log = parse_text(text).expect("valid");
    assert_eq!(from_log.log.stderr, StderrMode::Separate);
    assert_eq!(
        stderr_of(&from_log, "web"),
        StderrMode::Separate,
        "[log] below the agents still counts"
    );
    assert_eq!(
        stderr_of(&from_log, "db"),
        StderrMode::Merge,
        "its own wins"
    );

    let text = "[log]\nstderr = \"merge\"\n[defaults]\nstderr = \"separate\"\n[agents.web]\ncommand = \"true\"\n[agents.db]\ncommand = \"true\"\nstderr = \"merge\"\n";
    let from_defaults = parse_text(text).expect("valid");
    assert_eq!(stderr_of(&from_defaults, "web"), StderrMode::Separate);
    assert_eq!(stderr_of(&from_defaults, "db"), StderrMode::Merge);
}

#[test]
fn watch_paths_is_off_by_default_and_read_as_written() {
    let config = parse_text("[agents.web]\ncommand = \"true\"\n").expect("valid");
    let web = AgentName::new("web").expect("name");
    assert!(config.agents[&web].watch_paths.is_empty());
    let config =
        parse_text("[agents.web]\ncommand = \"true\"\nwatch_paths = [\"src\", \"*.py\"]\n")
            .expect("valid");
    assert_eq!(config.agents[&web].watch_paths, ["src", "*.py"]);
}

#[test]
fn watch_paths_must_be_a_list_of_non_empty_strings() {
    let text = "[agents.a]\ncommand = \"true\"\nwatch_paths = \"src\"\n\
                [agents.b]\ncommand = \"true\"\nwatch_paths = [\"src\", \"\", 3]\n\
                [agents.c]\ncommand = \"true\"\nwatch_path = [\"src\"]\n";
    let rendered = parse_text(text).expect_err("invalid").to_string();
    for expected in [
        "roster.toml:3:15: `watch_paths` must be a list of paths",
        "roster.toml:6:23: an empty path in `watch_paths`",
        "roster.toml:6:27: every element of `watch_paths` must be a string",
        "hint: e.g. watch_paths = [\"src\", \"*.py\"] (relative to the agent's cwd)",
        "roster.toml:9:1: unknown key `watch_path` in agent `c`",
        "hint: did you mean `watch_paths`?",
    ] {
        assert!(rendered.contains(expected), "{expected}\nin:\n{rendered}");
    }
}

#[test]
fn watch_paths_cannot_restart_an_agent_shipped_as_releases() {
    let text = "[agents.a]\ncommand = \"true\"\nwatch_paths = [\"src\"]\n[agents.a.deploy]\n";
    let rendered = parse_text(text).expect_err("invalid").to_string();
    assert!(
        rendered.contains(
            "roster.toml:3:15: agent `a` is shipped as releases: `watch_paths` cannot restart it"
        ),
        "{rendered}"
    );
}
