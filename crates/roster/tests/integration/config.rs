//! Config errors: located, complete, and never applied.

use roster_core::api::AgentState;

use crate::util::*;

#[test]
fn check_names_line_and_column_of_an_unknown_key() {
    let roster = Roster::new();
    roster.config("[agents.web]\ncommand = \"sleep 1\"\nrestart_dealy = \"1s\"\n");
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("roster.toml:3:1: unknown key `restart_dealy` in agent `web`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: did you mean `restart_delay`?"),
        "{stderr}"
    );
}

#[test]
fn check_reports_every_kind_of_problem_at_once() {
    let roster = Roster::new();
    roster.config(
        "[log]\nmax_size = \"ten megs\"\n\
         [agents.\"bad/name\"]\ncommand = \"x\"\n\
         [agents.empty]\ncommand = []\n\
         [agents.times]\ncommand = \"x\"\nstop_timeout = \"10 parsecs\"\nstop_signal = \"SIGNOPE\"\n",
    );
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "roster.toml:2:12: bad size for `max_size`",
        "roster.toml:3:9: bad agent name \"bad/name\"",
        "roster.toml:6:11: `command` is empty",
        "roster.toml:9:16: bad duration for `stop_timeout`",
        "roster.toml:10:15: unknown signal \"SIGNOPE\"",
        "5 problems found",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn duplicate_agents_and_broken_toml_are_located() {
    let roster = Roster::new();
    roster.config("[agents.a]\ncommand = \"x\"\n\n[agents.a]\ncommand = \"y\"\n");
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("roster.toml:4:") && stderr.contains("duplicate"),
        "{stderr}"
    );

    roster.config("[agents.a\ncommand = \"x\"\n");
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("roster.toml:1:"));

    let missing = roster.run(&["check", "-f", "nope.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no config file"));
}

#[test]
fn up_with_an_invalid_file_starts_nothing() {
    let roster = Roster::new();
    roster.config(&format!(
        "{}bogus = 1\n",
        sh_agent("never-started", "exec sleep 1000", "")
    ));
    let output = roster.run(&["up"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("roster.toml:4:1: unknown key `bogus`")
    );
    assert!(roster.processes().is_empty());
    assert!(
        !roster.home_path().join("roster.sock").exists(),
        "no daemon for an invalid file"
    );
}

#[test]
fn apply_of_a_bad_file_keeps_the_running_config() {
    let roster = Roster::new();
    roster.config(&sh_agent("steady", "exec sleep 1000", ""));
    roster.up();
    let pid = roster.agent("steady").pid.expect("pid");
    roster.config(&format!(
        "{}{}",
        sh_agent("steady", "exec sleep 999", "stop_timeout = \"forever\""),
        sh_agent("new", "exec sleep 1000", "")
    ));
    let output = roster.run(&["apply"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("roster.toml:3:16: bad duration for `stop_timeout`"));
    let status = roster.status();
    assert_eq!(
        status.agents.len(),
        1,
        "nothing from the bad file was applied"
    );
    assert_eq!(status.agents[0].pid, Some(pid));
    assert_eq!(status.agents[0].state, AgentState::Running);

    // The daemon validates too: the same file sent straight to the API (no
    // CLI check in front) is refused there, located, and journaled.
    let (code, body) = api_apply(&roster, &roster.path("roster.toml"));
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("roster.toml:3:16: bad duration for `stop_timeout`"),
        "{body}"
    );
    assert!(roster
        .events(&[])
        .iter()
        .any(|event| event.kind == "config_rejected"));
    assert_eq!(roster.status().agents.len(), 1);
    assert_eq!(roster.agent("steady").pid, Some(pid));
}

#[test]
fn a_file_that_is_not_a_config_is_refused_without_reading_it_all() {
    let roster = Roster::new();
    let output = roster.run(&["check", "-f", "/dev/zero"]);
    assert_eq!(output.status.code(), Some(1));
    let big = roster.write("big.toml", &"# padding\n".repeat(500_000));
    let output = roster.run(&["check", "-f", big.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("larger than 4 MiB"));
    std::fs::write(roster.path("binary.toml"), [0xff, 0xfe, 0x00, 0x41]).expect("write");
    let output = roster.run(&["check", "-f", "binary.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
}

/// `check` warns (exit 0) where a blue-green cutover on a shared socket
/// could not tell the new release from the old: an exec health check that
/// does not ask `$ROSTER_PID`. HTTP checks and pid-aware exec checks pass
/// silently.
#[test]
fn check_warns_about_an_exec_check_that_cannot_judge_a_cutover() {
    let roster = Roster::new();
    let config = |check: &str| {
        format!(
            "[agents.web]\ncommand = [\"sleep\", \"1\"]\n\
             [agents.web.deploy]\nsmoke_test = [\"true\"]\n\
             [agents.web.listen]\nhttp = \"127.0.0.1:18080\"\n\
             [agents.web.health]\n{check}\n"
        )
    };
    let run = |check: &str| {
        roster.config(&config(check));
        let output = roster.run(&["check"]);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let blind = run("exec = [\"curl\", \"-f\", \"http://127.0.0.1:18080/health\"]");
    assert!(
        blind.contains("agent `web`") && blind.contains("cannot tell the new release from the old"),
        "{blind}"
    );
    assert!(
        blind.contains("ROSTER_PID"),
        "the hint names the fix: {blind}"
    );
    let aware = run("exec = [\"sh\", \"-c\", \"kill -0 $ROSTER_PID\"]");
    assert!(!aware.contains("cannot tell"), "{aware}");
    let http = run("http = \"http://127.0.0.1:18080/health\"");
    assert!(!http.contains("cannot tell"), "{http}");
}
