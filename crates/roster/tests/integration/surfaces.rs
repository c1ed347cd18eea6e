//! Issue #10 (part): shell completions and the manual page, generated
//! from the CLI definition.

use std::process::Command;

use crate::util::*;

#[test]
fn the_bash_completion_is_valid_and_completes_subcommands() {
    let roster = Roster::new();
    let script = roster.ok(&["completions", "bash"]);
    let path = roster.write("roster.bash", &script);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash");
    assert!(syntax.status.success(), "{syntax:?}");
    // Through bash's own completion machinery: what <TAB> after `roster sta` offers.
    let completed = Command::new("bash")
        .arg("-c")
        .arg(
            "source \"$1\"; spec=$(complete -p roster); \
             COMP_WORDS=(roster sta); COMP_CWORD=1; COMP_LINE='roster sta'; COMP_POINT=${#COMP_LINE}; \
             _roster roster sta roster; echo \"$spec\"; printf '%s\\n' \"${COMPREPLY[@]}\"",
        )
        .arg("bash")
        .arg(&path)
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&completed.stdout);
    assert!(
        text.contains("complete") && text.contains("_roster"),
        "{text}"
    );
    let offered: Vec<&str> = text.lines().skip(1).collect();
    assert!(
        offered.contains(&"start") && offered.contains(&"status"),
        "{offered:?}"
    );
    assert!(!offered.contains(&"stop"), "only what matches: {offered:?}");
    for shell in ["zsh", "fish"] {
        let script = roster.ok(&["completions", shell]);
        assert!(script.contains("roster"), "{shell}: {script}");
    }
    let refused = roster.run(&["completions", "tcsh"]);
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn the_manual_page_is_roff_that_man_renders() {
    let roster = Roster::new();
    let page = roster.ok(&["man"]);
    assert!(
        page.contains(".TH roster 1"),
        "{}",
        &page[..page.len().min(300)]
    );
    for command in ["deploy", "rollback", "install", "secret", "status"] {
        assert!(page.contains(command), "the page names {command}");
    }
    if Command::new("man").arg("--version").output().is_err() {
        skip("manual_page", "man is not installed");
        return;
    }
    let path = roster.write("roster.1", &page);
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .expect("man");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(text.contains("NAME") && text.contains("roster"), "{text}");
}

fn doctor(roster: &Roster, root: &std::path::Path) -> (i32, serde_json::Value) {
    let output = roster.run(&["doctor", "--json", "--root", root.to_str().expect("utf-8")]);
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("doctor --json prints JSON");
    (output.status.code().unwrap_or(-1), report)
}

#[test]
fn doctor_names_every_planted_problem() {
    if !needs_root(
        "doctor_sloppy",
        "run agents as root, as a sloppy setup does",
    ) {
        return;
    }
    let roster = Roster::new();
    let empty_root = tempfile::tempdir().expect("scratch root");
    let metrics_port = free_port();
    roster.config(&format!(
        "[metrics]\nlisten = \"0.0.0.0:{metrics_port}\"\n\n\
         [log]\nmax_size = \"2GiB\"\n\n\
         [agents.loose]\ncommand = [\"sleep\", \"3600\"]\nwatch = []\nenv = {{ OPENAI_API_KEY = \"sk-test-0123456789abcdef\" }}\n\n\
         [agents.crashy]\ncommand = [\"false\"]\ncrash_loop = 2\ncrash_window = \"1m\"\nfailed_retry = \"never\"\nallow_root = true\nmemory_max = \"64MiB\"\nhealth = {{ exec = [\"true\"] }}\n",
    ));
    let _ = roster.run(&["up", "--timeout", "5s"]);
    roster.wait_state(
        "crashy",
        roster_core::api::AgentState::Failed,
        std::time::Duration::from_secs(10),
    );
    let (code, report) = doctor(&roster, empty_root.path());
    assert_eq!(code, 1, "{report:#}");
    let findings = report["findings"].as_array().expect("findings");
    let has = |check: &str, agent: Option<&str>| {
        findings.iter().any(|finding| {
            finding["check"] == check
                && agent.is_none_or(|agent| finding["agent"] == agent)
                && !finding["fix"].as_str().unwrap_or_default().is_empty()
        })
    };
    for (check, agent) in [
        ("root", Some("loose")),
        ("health", Some("loose")),
        ("memory", Some("loose")),
        ("secrets", Some("loose")),
        ("logs", None),
        ("metrics", None),
        ("failing", Some("crashy")),
        ("boot", None),
    ] {
        assert!(has(check, agent), "{check} {agent:?} not named: {report:#}");
    }
    assert!(
        !has("root", Some("crashy")),
        "allow_root says root is meant"
    );
    assert!(
        !report.to_string().contains("sk-test-0123456789abcdef"),
        "the value is never printed"
    );
    let text = roster.run(&[
        "doctor",
        "--root",
        empty_root.path().to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("fix: roster secret set loose OPENAI_API_KEY"),
        "{text}"
    );
}

#[test]
fn doctor_on_a_clean_setup_finds_nothing() {
    if !needs_root("doctor_clean", "switch agents to another user") {
        return;
    }
    let roster = Roster::new();
    let root = tempfile::tempdir().expect("scratch root");
    let unit = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&unit).expect("unit dir");
    std::fs::write(unit.join("roster.service"), "[Unit]\n").expect("unit");
    roster.config(
        "[agents.tidy]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"/\"\nuser = \"nobody\"\nmemory_max = \"256MiB\"\nhealth = { exec = [\"true\"], interval = \"1s\", start_period = \"0s\" }\n",
    );
    roster.up();
    let (code, report) = doctor(&roster, root.path());
    let disk_full = report["findings"]
        .as_array()
        .is_some_and(|findings| findings.iter().any(|finding| finding["check"] == "disk"));
    if disk_full {
        skip("doctor_clean", "this machine's disk is above 80%");
        return;
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(roster.home_path())
            .expect("home")
            .permissions(),
    );
    assert_eq!(code, 0, "home mode {mode:o}: {report:#}");
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(0));
}

/// Issue #14, item 14: `doctor` where there is no `roster.toml` judges the
/// config the daemon runs (the one `status` names), not nothing.
#[test]
fn doctor_without_a_roster_toml_here_judges_the_config_the_daemon_runs() {
    let roster = Roster::new();
    let applied = roster.write(
        "app.toml",
        "[agents.unwatched]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"/\"\n",
    );
    roster.ok(&["up", "-f", "app.toml"]);
    assert!(!roster.path("roster.toml").exists());
    let root = tempfile::tempdir().expect("scratch root");
    let (_, report) = doctor(&roster, root.path());
    assert_eq!(
        report["config"].as_str(),
        applied.to_str(),
        "names what it judged: {report:#}"
    );
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings
            .iter()
            .any(|finding| finding["check"] == "health" && finding["agent"] == "unwatched"),
        "the daemon's config was judged: {report:#}"
    );
    let text = roster.run(&["doctor", "--root", root.path().to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with(&format!("config: {}\n", applied.display())),
        "{text}"
    );
    // -f still wins, and a named file that is missing is an error.
    roster.write(
        "other.toml",
        "[agents.other]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"/\"\n",
    );
    let output = roster.run(&[
        "doctor",
        "--json",
        "-f",
        "other.toml",
        "--root",
        root.path().to_str().expect("utf-8"),
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("doctor --json prints JSON");
    let findings = report["findings"].as_array().expect("findings");
    let health_of = |agent: &str| {
        findings
            .iter()
            .any(|finding| finding["check"] == "health" && finding["agent"] == agent)
    };
    assert!(health_of("other") && !health_of("unwatched"), "{report:#}");
    let missing = roster.run(&["doctor", "-f", "missing.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no config file at"),
        "{missing:?}"
    );
    // The daemon's file gone: said, not silently skipped.
    std::fs::remove_file(&applied).expect("rm");
    let (_, report) = doctor(&roster, root.path());
    assert!(
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|finding| finding["check"] == "config"
                && finding["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("no longer there"))),
        "{report:#}"
    );
}
