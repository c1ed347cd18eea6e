//! `roster add` and `roster remove` (issue #19): the file stays the one
//! source of truth, edited without disturbing a line of it, checked whole
//! before it is replaced, then applied.

use roster_core::api::AgentState;

use crate::util::*;

/// A hand-written file: comments above, between and after tables, odd
/// spacing, an agent with sub-tables.
const COMMENTED: &str = "# the support team's agents
#   (edited by hand; keep the comments)

[log]
max_size   =   \"10MiB\"    # per file
keep=3

# ---- agents ----

# answers the chat
[agents.chat]
command = [\"sh\", \"-c\", \"echo chat up; exec sleep 1000\"]   # the bot
ready_after = \"200ms\"
  # the poller is next

[agents.chat.health]
exec = [\"true\"]

# polls the queue
[agents.poller]
command   = \"sleep 1000\"
ready_after = \"200ms\"

[[agents.poller.watch]]
metric = \"memory_bytes\"
above = 1000000000
action = \"alert\"
# the end
";

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).expect("read the config")
}

/// Files in the config's folder: nothing temporary may be left there.
fn files_in(roster: &Roster) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(roster.dir.path())
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn running_pid(roster: &Roster, name: &str) -> u32 {
    let agent = roster.wait_state(name, AgentState::Running, SECS(20));
    let pid = agent
        .pid
        .unwrap_or_else(|| panic!("{name} runs without a pid"));
    assert!(alive(pid), "{name}'s pid {pid} is not alive");
    pid
}

#[test]
fn add_keeps_every_line_of_a_commented_file_and_runs_the_agent() {
    let roster = Roster::new();
    let config = roster.config(COMMENTED);
    std::fs::create_dir(roster.path("work")).expect("mkdir");
    let output = roster.run(&[
        "add",
        "greeter",
        "--cwd",
        "work",
        "--env",
        "GREETING=hello there",
        "--env",
        "EMPTY=",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING from $(pwd)\"; exec sleep 1000",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("added [agents.greeter] to roster.toml"),
        "{stdout}"
    );

    let text = read(&config);
    let appended = text
        .strip_prefix(COMMENTED)
        .unwrap_or_else(|| panic!("the old text is no longer a prefix:\n{text}"));
    assert_eq!(
        appended,
        "\n[agents.greeter]\n\
         command = [\"sh\", \"-c\", 'echo \"$GREETING from $(pwd)\"; exec sleep 1000']\n\
         cwd = \"work\"\n\
         env = { GREETING = \"hello there\", EMPTY = \"\" }\n"
    );
    assert_eq!(files_in(&roster), ["roster.toml", "work"]);

    // What a user checks: the new agent runs, where and how it was told,
    // and so do the others (`up`).
    running_pid(&roster, "greeter");
    running_pid(&roster, "chat");
    running_pid(&roster, "poller");
    let work = std::fs::canonicalize(roster.path("work")).expect("canonical");
    let log = roster.log_path("greeter");
    wait_for("greeter's greeting in its log", SECS(10), || {
        log_lines(&log)
            .iter()
            .any(|line| *line == format!("hello there from {}", work.display()))
            .then_some(())
    });
    roster.ok(&["check"]);
}

#[test]
fn add_without_a_file_creates_it_and_starts_the_agent() {
    let roster = Roster::new();
    let config = roster.path("roster.toml");
    let stdout = roster.ok(&["add", "solo", "--", "sleep", "1000"]);
    assert!(stdout.contains("created roster.toml"), "{stdout}");
    assert!(stdout.contains("solo"), "the status table: {stdout}");
    // Run in the file's folder: no cwd to write.
    assert_eq!(
        read(&config),
        "[agents.solo]\ncommand = [\"sleep\", \"1000\"]\n"
    );
    running_pid(&roster, "solo");
    // A second one, from another folder: it runs where it was added.
    std::fs::create_dir(roster.path("elsewhere")).expect("mkdir");
    let output = roster
        .command()
        .current_dir(roster.path("elsewhere"))
        .args(["add", "duo", "-f", "../roster.toml", "--", "sleep", "1001"])
        .output()
        .expect("run roster");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        read(&config)
            .ends_with("\n\n[agents.duo]\ncommand = [\"sleep\", \"1001\"]\ncwd = \"elsewhere\"\n"),
        "{}",
        read(&config)
    );
    running_pid(&roster, "duo");
    running_pid(&roster, "solo");
}

#[test]
fn add_of_a_name_already_there_is_refused_and_the_file_stays_byte_identical() {
    let roster = Roster::new();
    let config = roster.config(COMMENTED);
    let output = roster.run(&["add", "poller", "--", "sleep", "1000"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("agent `poller` is already in roster.toml")
            && stderr.contains("roster remove poller"),
        "{stderr}"
    );
    assert_eq!(read(&config), COMMENTED);
    assert_eq!(files_in(&roster), ["roster.toml"]);
    assert_eq!(roster.daemon_pid(), None, "nothing was applied");
}

#[test]
fn an_invalid_add_leaves_the_file_untouched() {
    let roster = Roster::new();
    let config = roster.config(COMMENTED);
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("chmod");
    let before = std::fs::metadata(&config).expect("stat");
    let refused = [
        // Checked with the whole file: located, and the file kept.
        (
            vec!["add", "web", "--user", "bad user", "--", "sleep", "1"],
            "bad user \"bad user\" for agent `web`",
        ),
        (
            vec!["add", "web", "--health-http", "ftp://x", "--", "sleep", "1"],
            "bad health URL \"ftp://x\"",
        ),
        (
            vec!["add", "web", "--cwd", "no-such-dir", "--", "sleep", "1"],
            "does not exist",
        ),
        // Refused before the file is read.
        (
            vec!["add", "bad/name", "--", "sleep", "1"],
            "bad agent name",
        ),
        (vec!["add", "all", "--", "sleep", "1"], "reserved"),
        (vec!["add", "web", "--", ""], "has no command"),
        (
            vec!["add", "web", "--env", "NOEQUALS", "--", "sleep", "1"],
            "has no `=`",
        ),
        (vec!["add", "web"], "COMMAND"),
    ];
    for (args, expected) in refused {
        let output = roster.run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(expected),
            "{args:?}: missing {expected:?} in:\n{stderr}"
        );
        assert_eq!(read(&config), COMMENTED, "{args:?} changed the file");
        assert_eq!(files_in(&roster), ["roster.toml"], "{args:?} left a file");
    }
    let output = roster.run(&["add", "web", "--user", "bad user", "--", "sleep", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nothing was written: roster.toml is as it was"),
        "{stderr}"
    );
    let after = std::fs::metadata(&config).expect("stat");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((after.ino(), after.mode()), (before.ino(), before.mode()));
    assert_eq!(roster.daemon_pid(), None, "nothing was applied");
}

#[test]
fn remove_stops_the_agent_and_leaves_the_rest_of_the_file() {
    let roster = Roster::new();
    let config = roster.config(COMMENTED);
    roster.up();
    let chat = running_pid(&roster, "chat");
    let poller = running_pid(&roster, "poller");

    let stdout = roster.ok(&["remove", "chat"]);
    assert!(
        stdout.contains("removed [agents.chat] from roster.toml"),
        "{stdout}"
    );
    assert!(stdout.contains("removed:   chat"), "{stdout}");
    // Its table, its health sub-table (with the comment above that) and the
    // comment right above it are gone; the section comment above a blank
    // line stays, and so does every other line.
    let expected = COMMENTED.replace(
        "# answers the chat\n[agents.chat]\n\
         command = [\"sh\", \"-c\", \"echo chat up; exec sleep 1000\"]   # the bot\n\
         ready_after = \"200ms\"\n  # the poller is next\n\n[agents.chat.health]\nexec = [\"true\"]\n\n",
        "",
    );
    assert_ne!(expected, COMMENTED, "the test's text is out of date");
    assert_eq!(read(&config), expected);
    assert_eq!(files_in(&roster), ["roster.toml"]);

    wait_for("chat's process to end", SECS(15), || {
        (!alive(chat)).then_some(())
    });
    let status = roster.status();
    assert_eq!(
        status
            .agents
            .iter()
            .map(|agent| agent.name.as_str())
            .collect::<Vec<_>>(),
        ["poller"]
    );
    assert_eq!(
        roster.agent("poller").pid,
        Some(poller),
        "poller was touched"
    );

    // An unknown name: what there is, and nothing written.
    let output = roster.run(&["remove", "chat"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no agent `chat` in roster.toml") && stderr.contains("its agents: poller"),
        "{stderr}"
    );
    assert_eq!(read(&config), expected);

    // And back: added again, it runs again.
    roster.ok(&["add", "chat", "--", "sleep", "1002"]);
    running_pid(&roster, "chat");
}

/// A file edited on Windows (CRLF) stays CRLF through `add` and `remove`:
/// no file of mixed line endings.
#[test]
fn a_crlf_file_keeps_its_line_endings() {
    let roster = Roster::new();
    let original = COMMENTED.replace('\n', "\r\n");
    let config = roster.config(&original);
    roster.ok(&["add", "extra", "--", "sleep", "1000"]);
    let text = read(&config);
    assert!(text.starts_with(&original), "{text:?}");
    assert!(
        text.ends_with("[agents.extra]\r\ncommand = [\"sleep\", \"1000\"]\r\n"),
        "{text:?}"
    );
    assert_eq!(
        text.matches('\n').count(),
        text.matches("\r\n").count(),
        "{text:?}"
    );
    running_pid(&roster, "extra");
    roster.ok(&["remove", "extra"]);
    assert_eq!(read(&config), original);
}
