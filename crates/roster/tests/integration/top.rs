//! Issue #10 (part): `roster top` and `roster tmux`, driven the way an
//! operator uses them, through a real tmux server of the test's own
//! (send-keys, capture-pane) against a real daemon.

use std::path::PathBuf;

use crate::util::*;

/// The table rows of a `top` screen: lines that name one of `agents` as
/// their first word (the selection marker aside).
fn rows<'a>(screen: &'a str, agents: &[&str]) -> Vec<&'a str> {
    screen
        .lines()
        .filter(|line| {
            let first = line.trim_start_matches('>').split_whitespace().next();
            first.is_some_and(|word| agents.contains(&word))
        })
        .collect()
}

/// A row's words: name, state, health, uptime, restarts, ...
fn fields(row: &str) -> Vec<&str> {
    row.trim_start_matches('>').split_whitespace().collect()
}

const AGENTS: [&str; 3] = ["worker-one", "worker-two", "support"];

fn three_agents(roster: &Roster) {
    let mut config = String::new();
    for name in AGENTS {
        config.push_str(&sh_agent(
            name,
            "while true; do echo tick $$; sleep 0.3; done",
            "",
        ));
    }
    roster.config(&config);
    roster.up();
}

#[test]
fn top_shows_filters_restarts_resizes_survives_the_daemon_and_quits() {
    let Some(tmux) = Tmux::new("top_in_tmux") else {
        return;
    };
    let roster = Roster::new();
    three_agents(&roster);
    let home = roster.home_path().display().to_string();
    let command = format!("{BIN} --home {home} top");
    tmux.ok(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ]);
    // Every agent, with its state.
    let screen = tmux.wait_screen("top", "every agent running", |screen| {
        let rows = rows(screen, &AGENTS);
        rows.len() == 3 && rows.iter().all(|row| row.contains("running"))
    });
    assert!(screen.contains("3 agents, 3 running"), "{screen}");
    assert!(screen.contains("q quit"), "the keys are shown: {screen}");
    // CPU and memory sparklines from the daemon's samples (every 5 s).
    tmux.wait_screen("top", "sparklines on every row", |screen| {
        let rows = rows(screen, &AGENTS);
        rows.len() == 3
            && rows
                .iter()
                .all(|row| row.chars().filter(|c| ('▁'..='█').contains(c)).count() >= 2)
    });
    // `/` filters by name.
    tmux.keys("top", &["/", "two", "Enter"]);
    let screen = tmux.wait_screen("top", "only worker-two", |screen| {
        rows(screen, &AGENTS).len() == 1
    });
    assert!(rows(&screen, &AGENTS)[0].contains("worker-two"), "{screen}");
    assert!(screen.contains("log: worker-two"), "{screen}");
    // The log pane follows the selected agent's lines.
    tmux.wait_screen("top", "worker-two's log lines", |screen| {
        screen
            .lines()
            .filter(|line| line.starts_with("tick "))
            .count()
            >= 2
    });
    // `r` asks first; `y` restarts (the journal shows it).
    let before = roster.agent("worker-two").pid;
    tmux.keys("top", &["r"]);
    tmux.wait_screen("top", "the restart question", |screen| {
        screen.contains("Restart worker-two? y/n")
    });
    tmux.keys("top", &["y"]);
    wait_for("worker-two restarted", SECS(20), || {
        let kinds = roster.event_kinds("worker-two");
        let started = kinds.iter().filter(|kind| *kind == "started").count();
        (started >= 2 && kinds.iter().any(|kind| kind == "stopping")).then_some(())
    });
    let after = roster.wait_state(
        "worker-two",
        roster_core::api::AgentState::Running,
        SECS(10),
    );
    assert_ne!(after.pid, before, "a new process");
    for other in ["worker-one", "support"] {
        assert_eq!(
            roster
                .event_kinds(other)
                .iter()
                .filter(|kind| *kind == "started")
                .count(),
            1,
            "{other} was left alone"
        );
    }
    tmux.wait_screen("top", "one restart counted", |screen| {
        rows(screen, &AGENTS)
            .first()
            .is_some_and(|row| fields(row).get(4) == Some(&"1"))
    });
    // `x` then `n` stops nothing.
    tmux.keys("top", &["x"]);
    tmux.wait_screen("top", "the stop question", |screen| {
        screen.contains("Stop worker-two? y/n")
    });
    tmux.keys("top", &["n"]);
    tmux.wait_screen("top", "the question gone", |screen| !screen.contains("y/n"));
    // Esc clears the filter; then a resize to 80x24 keeps every row.
    tmux.keys("top", &["Escape"]);
    tmux.ok(&["resize-window", "-t", "top", "-x", "80", "-y", "24"]);
    let screen = tmux.wait_screen("top", "every row at 80x24", |screen| {
        screen.lines().count() <= 24
            && rows(screen, &AGENTS).len() == 3
            && screen.contains("q quit")
    });
    assert!(
        screen.lines().all(|line| line.chars().count() <= 80),
        "{screen}"
    );
    assert!(
        rows(&screen, &AGENTS)
            .iter()
            .all(|row| row.contains("running")),
        "{screen}"
    );
    // A daemon that hangs (stopped, not gone) reads as away too, within
    // the answer timeout, and as back once it answers again.
    let daemon = roster.daemon_pid().expect("the daemon's pid");
    kill(daemon, Signal::SIGSTOP);
    let hung = std::panic::catch_unwind(|| {
        tmux.wait_screen("top", "the hung daemon away", |screen| {
            screen.contains("daemon not answering")
        })
    });
    kill(daemon, Signal::SIGCONT);
    if let Err(panic) = hung {
        std::panic::resume_unwind(panic);
    }
    tmux.wait_screen("top", "the daemon back after the hang", |screen| {
        screen.contains("daemon back after") && rows(screen, &AGENTS).len() == 3
    });
    // The daemon goes away: said clearly; it comes back: said too.
    roster.ok(&["down"]);
    tmux.wait_screen("top", "the daemon away", |screen| {
        screen.contains("daemon not answering")
    });
    roster.up();
    tmux.wait_screen("top", "the daemon back", |screen| {
        screen.contains("daemon back after") && rows(screen, &AGENTS).len() == 3
    });
    // `q` quits: the pane's process ends, and with it the session.
    tmux.keys("top", &["q"]);
    wait_for("top to quit", SECS(10), || {
        (!tmux.has_session("top")).then_some(())
    });
}

#[test]
fn top_refuses_without_a_terminal() {
    let roster = Roster::new();
    let output = roster.run(&["top"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a terminal"), "{stderr}");
}

/// What tmux says of a session's panes: (start command, current path).
fn panes(tmux: &Tmux, session: &str) -> Vec<(String, PathBuf)> {
    tmux.ok(&[
        "list-panes",
        "-s",
        "-t",
        &format!("={session}"),
        "-F",
        "#{pane_start_command}\t#{pane_current_path}",
    ])
    .lines()
    .filter_map(|line| line.split_once('\t'))
    // tmux shows a start command quoted.
    .map(|(command, path)| (command.trim_matches('"').to_owned(), PathBuf::from(path)))
    .collect()
}

#[test]
fn roster_tmux_lays_out_top_logs_and_a_shell_in_the_config_directory() {
    let Some(tmux) = Tmux::new("roster_tmux") else {
        return;
    };
    let roster = Roster::new();
    three_agents(&roster);
    let config_dir = roster
        .dir
        .path()
        .canonicalize()
        .expect("the config directory");
    // Run from elsewhere: the panes still start where the config is.
    let elsewhere = tempfile::tempdir().expect("another directory");
    let run = |session: &str| {
        let mut command = roster.command();
        tmux.apply(&mut command);
        command
            .args(["tmux", "--session", session])
            .current_dir(elsewhere.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("roster tmux")
    };
    let output = run("ops");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("tmux attach -t ops"), "{stdout}");
    let layout = panes(&tmux, "ops");
    assert_eq!(layout.len(), 3, "{layout:?}");
    let top = layout
        .iter()
        .find(|(command, _)| command.ends_with(" top"))
        .unwrap_or_else(|| panic!("a top pane: {layout:?}"));
    let logs = layout
        .iter()
        .find(|(command, _)| command.ends_with(" logs -f"))
        .unwrap_or_else(|| panic!("a logs pane: {layout:?}"));
    assert!(
        layout.iter().any(|(command, _)| command.is_empty()),
        "a shell pane (the default command): {layout:?}"
    );
    for (command, path) in &layout {
        assert_eq!(
            path.canonicalize().ok().as_ref(),
            Some(&config_dir),
            "{command:?} starts in the config's directory"
        );
    }
    assert!(top.0.contains(&roster.home_path().display().to_string()));
    assert!(logs.0.contains(&roster.home_path().display().to_string()));
    // The panes really run: top shows the agents, logs -f their lines.
    let ids: Vec<String> = tmux
        .ok(&["list-panes", "-s", "-t", "=ops", "-F", "#{pane_id}"])
        .lines()
        .map(str::to_owned)
        .collect();
    tmux.wait_screen(&ids[0], "top's rows", |screen| {
        rows(screen, &AGENTS).len() == 3
    });
    tmux.wait_screen(&ids[1], "followed log lines", |screen| {
        screen.contains("| tick ")
    });
    // The shell has ROSTER_HOME: `roster status` there needs no --home.
    // (The pane is narrow: a short answer, not the table.)
    tmux.keys(
        &ids[2],
        &[
            &format!("{BIN} status --json >/dev/null 2>&1 && echo STATUS-$((40+2))"),
            "Enter",
        ],
    );
    tmux.wait_screen(&ids[2], "status in the shell pane", |screen| {
        screen.lines().any(|line| line.trim() == "STATUS-42")
    });
    // A second run finds the session instead of laying it out again.
    let again = run("ops");
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("exists"),
        "{again:?}"
    );
    assert_eq!(panes(&tmux, "ops").len(), 3);
    // Names tmux cannot take are refused before anything happens.
    let bad = run("a:b");
    assert_eq!(bad.status.code(), Some(1));
    assert!(!tmux.has_session("a:b"));
}

#[test]
fn roster_tmux_without_tmux_says_so() {
    let roster = Roster::new();
    let empty = tempfile::tempdir().expect("an empty PATH");
    let output = roster
        .command()
        .args(["tmux"])
        .env("PATH", empty.path())
        .output()
        .expect("roster tmux");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tmux is not installed"), "{stderr}");
}

/// Runs `command` (a shell command that starts `roster top` for
/// `roster`'s home) in a new 100x30 tmux session; once top shows every
/// agent, its pid.
fn top_in_session(tmux: &Tmux, roster: &Roster, session: &str, command: &str) -> u32 {
    let home = roster.home_path().display().to_string();
    tmux.ok(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "100",
        "-y",
        "30",
        "sh",
        "-c",
        command,
    ]);
    tmux.wait_screen(session, "top's rows", |screen| {
        rows(screen, &AGENTS).len() == 3
    });
    wait_for("top's pid", SECS(10), || {
        roster_daemon::tools::all_pids().into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| {
                let line = String::from_utf8_lossy(&line);
                line.contains(&home) && line.ends_with("top\0")
            })
        })
    })
}

/// `kill` from another pane ends `roster top` like `q`: the terminal is
/// left as it was (canonical mode, the normal screen), and the exit code
/// says which signal (128 + 15).
#[test]
fn a_terminated_top_restores_the_terminal() {
    let Some(tmux) = Tmux::new("top_sigterm") else {
        return;
    };
    let roster = Roster::new();
    three_agents(&roster);
    let home = roster.home_path().display().to_string();
    let script = format!(
        "echo BEFORE; {BIN} --home {home} top; echo EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -- '-\\{{0,1\\}}icanon'; sleep 600"
    );
    let top = top_in_session(&tmux, &roster, "term", &script);
    kill(top, Signal::SIGTERM);
    // (The terminal's mode is printed after the exit code: wait for it.)
    let screen = tmux.wait_screen("term", "top ended and the mode printed", |screen| {
        screen.contains("EXIT=")
            && screen
                .lines()
                .any(|line| matches!(line.trim(), "icanon" | "-icanon"))
    });
    assert!(screen.contains("EXIT=143"), "{screen}");
    assert!(
        screen.lines().any(|line| line.trim() == "icanon"),
        "the terminal is back in canonical mode: {screen}"
    );
    assert!(
        screen.contains("BEFORE"),
        "the normal screen is back (the alternate one is left): {screen}"
    );
}

/// A terminal that goes away (the tmux server killed, an SSH session
/// dropped) ends `roster top` within seconds: it must not linger, spinning
/// on a terminal that answers end-of-file forever.
#[test]
fn top_ends_when_its_terminal_hangs_up() {
    let Some(tmux) = Tmux::new("top_hangup") else {
        return;
    };
    let roster = Roster::new();
    three_agents(&roster);
    let home = roster.home_path().display().to_string();
    let top = top_in_session(
        &tmux,
        &roster,
        "hup",
        &format!("exec {BIN} --home {home} top"),
    );
    tmux.ok(&["kill-server"]);
    wait_for("top to end with its terminal", SECS(10), || {
        let state = std::fs::read_to_string(format!("/proc/{top}/stat")).unwrap_or_default();
        let gone = state.is_empty()
            || state
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        gone.then_some(())
    });
}
