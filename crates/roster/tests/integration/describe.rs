//! Issue #19: `roster describe NAME [--json]` shows what exactly runs for
//! an agent as the daemon has it applied, and never a secret's value.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::util::{kill, wait_for, Roster, Signal, SECS};

const SECRET: &str = "describe-secret-7f3a9c51";

/// The program `name` is in PATH, found independently of roster: the first
/// directory of the test's PATH (which the daemon, started by `roster up`
/// from here, passes on) holding an executable file of that name.
fn in_path(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").expect("PATH");
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| panic!("no {name} in PATH"))
}

fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn variable<'a>(reply: &'a Value, name: &str) -> &'a Value {
    reply["environment"]
        .as_array()
        .expect("environment")
        .iter()
        .find(|variable| variable["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the environment:\n{reply:#}"))
}

fn main_pid(roster: &Roster) -> u32 {
    roster.agent("worker").pid.expect("a pid")
}

#[test]
fn describe_shows_each_effective_value_and_never_the_secret() {
    let roster = Roster::new();
    roster.write(
        "worker.env",
        "FROM_FILE=file-value\nMODEL=overridden-by-file\n",
    );
    let source = roster.path("src-v1");
    std::fs::create_dir_all(&source).expect("source dir");
    std::fs::write(source.join("run.sh"), "echo up\nexec sleep 600\n").expect("run.sh");
    roster.config(
        r#"
[defaults]
env = { LEVEL = "info" }

[agents.worker]
command = ["sh", "run.sh"]
env = { MODEL = "small", GREETING = "hello" }
env_file = "worker.env"
ready_after = "200ms"
restart_delay = "100ms"

[agents.worker.health]
exec = ["true"]

[agents.worker.deploy]
strategy = "restart"
verify_for = "1s"
"#,
    );
    roster.up();
    let deployed = roster.run(&[
        "deploy",
        "worker",
        source.to_str().expect("utf-8"),
        "--version",
        "v1",
    ]);
    assert_eq!(deployed.status.code(), Some(0), "{}", both(&deployed));
    let secret = roster.run_with_stdin(&["secret", "set", "worker", "API_KEY"], SECRET.as_bytes());
    assert!(secret.status.success(), "{}", both(&secret));

    // Two exits for the journal: one the agent did not choose (SIGKILL
    // from outside), one roster made (a restart).
    let first = main_pid(&roster);
    kill(first, Signal::SIGKILL);
    let second = wait_for("a new process after the kill", SECS(20), || {
        let agent = roster.agent("worker");
        (agent.state == roster_core::api::AgentState::Running)
            .then_some(agent.pid)
            .flatten()
            .filter(|pid| *pid != first)
    });
    roster.ok(&["restart", "worker"]);
    wait_for("a new process after the restart", SECS(20), || {
        let agent = roster.agent("worker");
        (agent.state == roster_core::api::AgentState::Running)
            .then_some(agent.pid)
            .flatten()
            .filter(|pid| *pid != second)
    });

    let json_output = roster.run(&["describe", "worker", "--json"]);
    assert!(json_output.status.success(), "{}", both(&json_output));
    let text_output = roster.run(&["describe", "worker"]);
    assert!(text_output.status.success(), "{}", both(&text_output));
    for output in [&json_output, &text_output] {
        assert!(
            !both(output).contains(SECRET),
            "the secret's value was printed:\n{}",
            both(output)
        );
    }
    let reply: Value = serde_json::from_slice(&json_output.stdout).expect("describe --json");
    let text = String::from_utf8_lossy(&text_output.stdout).into_owned();

    let home = roster.home_path();
    let release_dir = home.join("agents/worker/releases/v1");
    let release = release_dir.display().to_string();
    let sh = in_path("sh").display().to_string();

    // The command, the resolved program and where it runs.
    assert_eq!(reply["name"], "worker");
    assert_eq!(reply["state"], "running");
    assert_eq!(
        reply["command"]["argv"],
        serde_json::json!(["sh", "run.sh"])
    );
    assert_eq!(reply["command"]["program"], sh.as_str(), "{reply:#}");
    assert_eq!(reply["command"]["cwd"], release.as_str());
    // The release and its path.
    assert_eq!(reply["release"]["version"], "v1");
    assert_eq!(reply["release"]["path"], release.as_str());
    assert_eq!(reply["release"]["strategy"], "restart");
    // Who it runs as: this test's user.
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(reply["user"]["uid"], uid);
    assert_eq!(reply["user"]["switched"], false);

    // The environment with sources: the config's env, [defaults]' env, the
    // env_file over the config, the secret masked, roster's defaults.
    let of = |name: &str| {
        let found = variable(&reply, name);
        (
            found["value"].as_str().unwrap_or_default().to_owned(),
            found["source"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let pair = |value: &str, source: &str| (value.to_owned(), source.to_owned());
    assert_eq!(of("GREETING"), pair("hello", "env"));
    assert_eq!(of("LEVEL"), pair("info", "env"));
    assert_eq!(of("FROM_FILE"), pair("file-value", "env_file"));
    assert_eq!(of("MODEL"), pair("overridden-by-file", "env_file"));
    assert_eq!(of("API_KEY"), pair("********", "secret"));
    assert_eq!(variable(&reply, "API_KEY")["masked"], true);
    assert_eq!(of("PYTHONUNBUFFERED"), pair("1", "default"));
    assert_eq!(of("ROSTER_RELEASE"), pair("v1", "default"));
    assert_eq!(of("ROSTER_AGENT"), pair("worker", "default"));
    assert_eq!(of("PATH").1, "inherited");

    // The health check with its defaults, the default watch rules.
    let health = &reply["checks"]["health"];
    assert_eq!(health["kind"], "exec");
    assert_eq!(health["interval"], "10s");
    assert_eq!(health["timeout"], "2s");
    assert_eq!(health["retries"], 3);
    assert_eq!(health["start_period"], "10s");
    assert_eq!(health["on_failure"], "restart");
    assert_eq!(reply["checks"]["watch_defaults"], true);
    let rules = reply["checks"]["watch"].as_array().expect("watch");
    assert_eq!(rules.len(), 4, "{rules:#?}");
    assert_eq!(rules[0]["metric"], "memory_percent");

    // The log and its rotation, the restart policy.
    let log = home.join("logs/worker.log").display().to_string();
    assert_eq!(reply["log"]["path"], log.as_str());
    assert_eq!(reply["log"]["max_size_bytes"], 10 * 1024 * 1024);
    assert_eq!(reply["log"]["keep"], 14);
    assert_eq!(reply["log"]["compress"], true);
    assert_eq!(
        reply["log"]["stderr_path"],
        serde_json::Value::Null,
        "stderr merged by default"
    );
    assert_eq!(reply["restart"]["restart"], "always");
    assert_eq!(reply["restart"]["restart_delay"], "100ms");
    assert_eq!(reply["restart"]["stop_signal"], "SIGTERM");

    // The last exits, newest first: the restart, then the kill.
    let exits = reply["restart"]["last_exits"].as_array().expect("exits");
    assert!(exits.len() >= 2, "{exits:#?}");
    assert_eq!(exits[0]["pid"], second, "{exits:#?}");
    assert!(
        exits[0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("by roster")),
        "{exits:#?}"
    );
    assert_eq!(exits[1]["pid"], first, "{exits:#?}");
    assert_eq!(exits[1]["signal"], "SIGKILL");
    assert_eq!(exits[1]["reason"], "ended on its own");

    // The text shows the same values, section by section.
    for expected in [
        "Name:   worker",
        "Command:",
        sh.as_str(),
        release.as_str(),
        "GREETING",
        "hello  [env]",
        "file-value  [env_file]",
        "********  [secret]",
        "v1  [default]",
        "Watch (defaults):",
        "memory_percent above 85% for 1m",
        "interval",
        log.as_str(),
        "SIGKILL: ended on its own",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }

    // An unknown agent: exit 1 with the known names.
    let unknown = roster.run(&["describe", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", both(&unknown));
    assert!(
        both(&unknown).contains("known agents: worker"),
        "{}",
        both(&unknown)
    );
}
