//! Faults in the log pipeline and the log readers, each reproduced as a
//! user meets it: a follower across compressed rotations, a full disk, a
//! deleted logs directory, a lowered `keep`, escape sequences, unknown
//! agents, and `events -f` with an empty window.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use roster_core::api::AgentState;

use crate::util::*;

/// A `logs -f` (or `events -f`) process whose stdout lines arrive on a
/// channel; killed on drop.
struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tail {
    fn start(roster: &Roster, args: &[&str]) -> Self {
        let mut child = roster
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the follower");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Collects lines until `done` says so (true: stop after this line) or
    /// the deadline passes; returns what was printed.
    fn collect_until(&self, timeout: Duration, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let stop = done(&line);
                    seen.push(line);
                    if stop {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        seen
    }

    /// Lines printed within `quiet` of now (nothing is expected).
    fn drain_for(&self, quiet: Duration) -> Vec<String> {
        self.collect_until(quiet, |_| false)
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The numbers of `NAME | N` lines, in the order printed.
fn numbers(lines: &[String], name: &str) -> Vec<u64> {
    let prefix = format!("{name} | ");
    lines
        .iter()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect()
}

/// `roster logs -f` from the start of a fast numbered flood with 64 KiB
/// rotations: the follower prints 1..=N, each once, in order. Before the
/// fix it printed about 21,000 of 73,000 with compression (39 gaps): a
/// rotated file compressed before the next poll was skipped.
fn follower_prints_every_line(compress: bool) {
    const COUNT: u64 = 73_000;
    let roster = Roster::new();
    roster.config(&format!(
        "[log]\nmax_size = \"64KiB\"\nkeep = 500\ncompress = {compress}\n{}",
        sh_agent(
            "counter",
            &format!(
                "echo waiting; while [ ! -e go ]; do sleep 0.01; done; seq 1 {COUNT}; exec sleep 1000"
            ),
            ""
        )
    ));
    roster.up();
    let tail = Tail::start(&roster, &["logs", "-f", "-n", "1", "counter"]);
    let started = tail.collect_until(SECS(20), |line| line.ends_with("waiting"));
    assert!(
        started.last().is_some_and(|line| line.ends_with("waiting")),
        "the follower did not start: {started:?}"
    );
    std::fs::write(roster.path("go"), "").expect("go");
    let last = format!("counter | {COUNT}");
    let seen = tail.collect_until(SECS(60), |line| line == last);
    let printed = numbers(&seen, "counter");
    let rotated = roster_store::logs::log_files(&roster.log_path("counter")).len();
    assert!(rotated > 20, "expected many rotations, got {rotated} files");
    if compress {
        assert!(
            roster_store::logs::log_files(&roster.log_path("counter"))
                .iter()
                .any(|file| file.extension().is_some_and(|extension| extension == "gz")),
            "nothing was compressed"
        );
    }
    let gaps = printed
        .windows(2)
        .filter(|pair| pair[1] != pair[0] + 1)
        .count();
    assert_eq!(
        (printed.len() as u64, printed.first(), printed.last(), gaps),
        (COUNT, Some(&1), Some(&COUNT), 0),
        "the follower must print 1..={COUNT} once each, in order"
    );
    // Nothing more follows (no duplicates printed late).
    assert_eq!(
        numbers(&tail.drain_for(Duration::from_millis(500)), "counter"),
        Vec::<u64>::new()
    );
}

#[test]
fn logs_follow_prints_every_line_across_compressed_rotations() {
    follower_prints_every_line(true);
}

#[test]
fn logs_follow_prints_every_line_across_plain_rotations() {
    follower_prints_every_line(false);
}

fn is_root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(what, "needs root to mount a small tmpfs");
    false
}

/// Numbered lines of 100 bytes, `argv[1]` of them every 20 ms (200: about
/// 1 MB/s), forever.
const FLOOD_FOREVER: &str = r#"
import sys, time
batch = int(sys.argv[1])
out = sys.stdout.buffer
i = 0
while True:
    out.write(b"".join(b"%08d " % (i + k) + b"z" * 90 + b"\n" for k in range(batch)))
    out.flush()
    i += batch
    time.sleep(0.02)
"#;

/// The highest number among a flood log's lines, across rotated files.
fn highest_line(roster: &Roster, agent: &str) -> Option<u64> {
    roster_store::logs::read_lines(&roster.log_path(agent), usize::MAX)
        .ok()?
        .iter()
        .filter_map(|line| line.text.get(..8)?.parse().ok())
        .max()
}

/// Fills the filesystem `path` is on with that file, until ENOSPC.
fn fill_with_file(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create filler");
    let block = vec![0u8; 64 * 1024];
    loop {
        if file.write_all(&block).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
}

/// While the disk is full (and a crash-looping agent makes the daemon log
/// into daemon.log on that disk): the daemon lives, answers, leaves the
/// quiet agent alone and counts the flooder's dropped lines. Returns the highest
/// line stored so far.
fn check_alive_while_full(roster: &Roster, daemon_pid: u32, quiet_pid: Option<u32>) -> u64 {
    let status = roster.wait_status("dropped lines to be counted", SECS(20), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "flood" && agent.log_dropped_lines > 0)
    });
    // Keep it full a while: the crash-looping agent makes the daemon log
    // a few lines per restart into daemon.log, on the same full disk.
    let restarts = |status: &roster_core::api::StatusReply| {
        status
            .agents
            .iter()
            .find(|agent| agent.name == "crasher")
            .map(|agent| agent.restarts)
            .unwrap_or(0)
    };
    let restarts_then = restarts(&status);
    roster.wait_status("the crasher to restart 20 times", SECS(20), |status| {
        restarts(status) >= restarts_then + 20
    });
    let before = highest_line(roster, "flood").unwrap_or(0);
    let dropped_then = status
        .agents
        .iter()
        .find(|agent| agent.name == "flood")
        .map(|agent| agent.log_dropped_lines)
        .unwrap_or(0);
    roster.wait_status("more lines to be dropped", SECS(20), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "flood" && agent.log_dropped_lines > dropped_then + 1000)
    });
    assert!(alive(daemon_pid), "the daemon died on a full disk");
    let status = roster.status();
    for agent in status.agents.iter().filter(|agent| agent.name != "crasher") {
        assert_eq!(
            agent.state,
            AgentState::Running,
            "{} is not running",
            agent.name
        );
    }
    let quiet = status
        .agents
        .iter()
        .find(|agent| agent.name == "quiet")
        .expect("quiet");
    assert_eq!(quiet.pid, quiet_pid, "the quiet agent was restarted");
    assert_eq!(quiet.restarts, 0);
    let highest = highest_line(roster, "flood").unwrap_or(0);
    assert!(
        highest >= before,
        "stored lines went backwards ({before} then {highest})"
    );
    highest
}

fn start_flood_and_quiet(roster: &Roster, log: &str, batch: u32) -> (u32, Option<u32>) {
    roster.write("flood.py", FLOOD_FOREVER);
    roster.config(&format!(
        "{log}\n[agents.flood]\ncommand = \"python3 flood.py {batch}\"\n\
         [agents.quiet]\ncommand = \"sleep 1000\"\n{}",
        sh_agent(
            "crasher",
            "echo crashing; sleep 0.1; exit 1",
            "restart_delay = \"0s\"\nstable_after = \"0s\"\ncrash_loop = 0"
        )
    ));
    // `up` waits for every agent to run; the crasher never settles.
    let _ = roster.run(&["up", "--timeout", "1s"]);
    roster.wait_state("flood", AgentState::Running, SECS(10));
    let quiet_pid = roster
        .wait_state("quiet", AgentState::Running, SECS(10))
        .pid;
    let daemon_pid = roster.daemon_pid().expect("daemon pid");
    assert!(quiet_pid.is_some());
    (daemon_pid, quiet_pid)
}

/// The flooding agent fills the disk itself (its rotated files and the
/// current one). Before the fix the daemon's warning to daemon.log (same
/// disk) failed with ENOSPC, `eprintln!` panicked, the daemon exited 101
/// and every agent died of SIGPIPE.
#[test]
fn a_full_disk_filled_by_the_agent_keeps_the_daemon_and_resumes_capture() {
    if !is_root_or_skip("a full disk") {
        return;
    }
    let disk = Tmpfs::mount("1m");
    let roster = disk.roster();
    let (daemon_pid, quiet_pid) = start_flood_and_quiet(
        &roster,
        "[log]\nmax_size = \"128KiB\"\nkeep = 20\ncompress = false\n",
        200,
    );
    let highest = check_alive_while_full(&roster, daemon_pid, quiet_pid);
    // The operator frees space by removing old rotated logs.
    for file in roster_store::logs::log_files(&roster.log_path("flood")) {
        if file.extension().is_some_and(|extension| extension != "log") {
            std::fs::remove_file(&file).expect("remove a rotated log");
        }
    }
    wait_for("capture to resume after space came back", SECS(15), || {
        (highest_line(&roster, "flood")? > highest + 1000).then_some(())
    });
    assert!(alive(daemon_pid));
    assert_eq!(roster.agent("quiet").pid, quiet_pid);
}

/// Something else fills the disk; the flooder's lines are dropped until
/// that file is removed, then capture resumes by itself.
#[test]
fn a_full_disk_filled_by_a_foreign_file_keeps_the_daemon_and_resumes_capture() {
    if !is_root_or_skip("a full disk") {
        return;
    }
    let disk = Tmpfs::mount("1m");
    let roster = disk.roster();
    // 500 lines a second: the filler, not the agent, fills the disk.
    let (daemon_pid, quiet_pid) = start_flood_and_quiet(&roster, "", 10);
    wait_for("the flood to be captured", SECS(10), || {
        highest_line(&roster, "flood")
    });
    let filler = disk.path().join("filler");
    fill_with_file(&filler);
    let highest = check_alive_while_full(&roster, daemon_pid, quiet_pid);
    std::fs::remove_file(&filler).expect("remove the filler");
    wait_for("capture to resume after space came back", SECS(15), || {
        (highest_line(&roster, "flood")? > highest + 1000).then_some(())
    });
    assert!(alive(daemon_pid));
    assert_eq!(roster.agent("quiet").pid, quiet_pid);
}

/// Prints `tick N` every 10 ms, forever, padded with `argv[1]` dots.
const TICKER: &str = "import sys, time\npad = ' ' + '.' * int(sys.argv[1]) if len(sys.argv) > 1 else ''\ni = 0\nwhile True:\n    i += 1\n    print('tick %d%s' % (i, pad), flush=True)\n    time.sleep(0.01)\n";

/// The highest `tick N` among an agent's stored lines.
fn highest_tick(roster: &Roster, agent: &str) -> Option<u64> {
    roster_store::logs::read_lines(&roster.log_path(agent), usize::MAX)
        .ok()?
        .iter()
        .filter_map(|line| {
            line.text
                .strip_prefix("tick ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .max()
}

/// `rm -rf <home>/logs` while an agent runs. Before the fix its lines went
/// to the unlinked file, after the next rotation every line was dropped,
/// the folder never came back (not even with `restart`), and daemon.log
/// grew by about 20 warnings a second.
#[test]
fn a_deleted_logs_directory_is_recreated_and_capture_resumes() {
    let roster = Roster::new();
    roster.write("ticker.py", TICKER);
    roster.config(
        "[log]\nmax_size = \"4KiB\"\nkeep = 3\ncompress = true\n\
         [agents.ticker]\ncommand = \"python3 ticker.py\"\n",
    );
    roster.up();
    wait_for("the ticker's first lines", SECS(10), || {
        (highest_tick(&roster, "ticker")? > 20).then_some(())
    });
    let daemon_log = roster.home_path().join("daemon.log");
    let warnings = || {
        std::fs::read_to_string(&daemon_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("WARN") || line.contains("ERROR"))
            .count()
    };
    let warnings_before = warnings();
    let logs = roster.home_path().join("logs");
    std::fs::remove_dir_all(&logs).expect("rm -rf logs");
    let first_after = wait_for(
        "logs/ticker.log to be recreated with lines",
        SECS(10),
        || highest_tick(&roster, "ticker"),
    );
    // Several rotations in the new directory: nothing is dropped.
    wait_for("the ticker to keep being captured", SECS(15), || {
        (highest_tick(&roster, "ticker")? > first_after + 400).then_some(())
    });
    let files = roster_store::logs::log_files(&roster.log_path("ticker"));
    assert!(files.len() > 1, "no rotation after recreation: {files:?}");
    assert_eq!(roster.agent("ticker").log_dropped_lines, 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&logs)
        .expect("logs dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the recreated logs dir is private");
    let new_warnings = warnings() - warnings_before;
    assert!(
        new_warnings <= 5,
        "daemon.log got {new_warnings} warnings:\n{}",
        std::fs::read_to_string(&daemon_log).unwrap_or_default()
    );
}

/// Lowering `[log] keep` removes rotated files beyond it, for a busy agent
/// (at its next rotation or sooner) and for one that has gone quiet (at the
/// apply); before the fix they stayed forever.
#[test]
fn lowering_keep_removes_surplus_rotated_files() {
    let roster = Roster::new();
    roster.write("ticker.py", TICKER);
    let config = |keep: u32| {
        roster.config(&format!(
            "[log]\nmax_size = \"4KiB\"\nkeep = {keep}\ncompress = true\n\
             [agents.ticker]\ncommand = \"python3 ticker.py 100\"\n{}",
            sh_agent("burst", "seq 1 20000; exec sleep 1000", "")
        ))
    };
    config(8);
    roster.up();
    let names_of = |agent: &str| -> Vec<String> {
        roster_store::logs::log_files(&roster.log_path(agent))
            .iter()
            .filter_map(|file| Some(file.file_name()?.to_string_lossy().into_owned()))
            .collect()
    };
    for agent in ["ticker", "burst"] {
        wait_for(&format!("eight rotated files of {agent}"), SECS(20), || {
            (names_of(agent).len() == 9).then_some(())
        });
    }
    wait_for("burst to finish", SECS(20), || {
        log_lines(&roster.log_path("burst"))
            .last()
            .is_some_and(|line| line == "20000")
            .then_some(())
    });
    let pid = roster.agent("ticker").pid;
    config(2);
    roster.ok(&["apply"]);
    for agent in ["ticker", "burst"] {
        let names = wait_for(&format!("two rotated files of {agent}"), SECS(10), || {
            let names = names_of(agent);
            (names.len() == 3).then_some(names)
        });
        assert_eq!(
            names,
            [
                format!("{agent}.log.2.gz"),
                format!("{agent}.log.1"),
                format!("{agent}.log")
            ]
        );
    }
    assert_eq!(
        roster.agent("ticker").pid,
        pid,
        "a log setting restarts nobody"
    );
    // And it stays that way across further rotations.
    let highest = highest_tick(&roster, "ticker").expect("ticks");
    wait_for("more rotations", SECS(10), || {
        (highest_tick(&roster, "ticker")? > highest + 100).then_some(())
    });
    assert_eq!(names_of("ticker").len(), 3);
}

/// Piped (not a terminal), `roster logs` prints agents' bytes unchanged,
/// escape sequences included; on a terminal they are shown escaped (see
/// also the unit test of `escape_controls` in `commands/logs.rs`). Before,
/// a terminal got the agent's raw escape sequences.
#[test]
fn logs_escape_control_characters_on_a_terminal_only() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "colour",
        "printf '\\033[31mred\\033[0m\\tand a bell\\007\\n'; exec sleep 1000",
        "",
    ));
    roster.up();
    let out = wait_for("the coloured line", SECS(10), || {
        let out = roster.run(&["logs", "colour"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("red").then_some(text)
    });
    assert_eq!(
        out, "colour | \u{1b}[31mred\u{1b}[0m\tand a bell\u{7}\n",
        "piped output must be the agent's bytes"
    );
    // On a terminal (a pty made by util-linux `script`) they are escaped.
    let command = format!("{BIN} --home {} logs colour", roster.home_path().display());
    let Ok(on_terminal) = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
    else {
        skip("escapes_on_a_terminal", "needs util-linux `script`");
        return;
    };
    let shown = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(
        shown.contains("colour | \\x1b[31mred\\x1b[0m\tand a bell\\x07"),
        "not escaped on a terminal: {shown:?}"
    );
    assert!(
        !shown.contains('\u{1b}'),
        "a raw escape reached the terminal: {shown:?}"
    );
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `logs` and `events` for an unknown agent, or in a home where nothing
/// ever ran, used to exit 0 silently while `status` failed.
#[test]
fn logs_and_events_reject_unknown_agents_and_empty_homes() {
    let roster = Roster::new();
    let home = roster.home_path().display().to_string();
    for args in [
        &["logs"][..],
        &["logs", "ghost"],
        &["events"],
        &["events", "ghost"],
    ] {
        let output = roster.run(args);
        assert_eq!(output.status.code(), Some(1), "{args:?} in an empty home");
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains(&format!("nothing has run in {home}")) && stderr.contains("hint:"),
            "{args:?}: {stderr}"
        );
    }
    roster.config(&format!(
        "{}{}",
        sh_agent("ticker", "echo hello; exec sleep 1000", ""),
        sh_agent("quiet", "exec sleep 1000", "")
    ));
    roster.up();
    wait_for("ticker's line", SECS(10), || {
        log_lines(&roster.log_path("ticker")).first().cloned()
    });
    let check_unknown = |args: &[&str]| {
        let output = roster.run(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains(&format!("error: no agent named ghost in {home}"))
                && stderr.contains("hint: known agents: quiet, ticker"),
            "{args:?}: {stderr}"
        );
    };
    check_unknown(&["logs", "ghost"]);
    check_unknown(&["events", "ghost"]);
    check_unknown(&["logs", "ticker", "ghost"]);
    assert_eq!(roster.ok(&["logs", "ticker"]), "ticker | hello\n");
    // An agent that never printed is known from the journal.
    assert_eq!(roster.ok(&["logs", "quiet"]), "");
    assert!(roster.ok(&["events", "quiet"]).contains("started"));
    // With the daemon down both still read the files.
    roster.ok(&["down"]);
    assert_eq!(roster.ok(&["logs", "ticker"]), "ticker | hello\n");
    assert!(roster.ok(&["events", "ticker"]).contains("started"));
    check_unknown(&["logs", "ghost"]);
    check_unknown(&["events", "ghost"]);
}

/// `events -f` whose starting window is empty used to print the whole
/// journal; it must print only events newer than its start.
fn events_follow_starts_after_the_newest(window: &[&str]) {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "quiet",
        "exec sleep 1000",
        "ready_after = \"0s\"",
    ));
    roster.up();
    if window.contains(&"--since") {
        wait_for("two quiet seconds in the journal", SECS(15), || {
            roster.events(&["--since", "2s"]).is_empty().then_some(())
        });
    }
    let newest_before = roster.events(&[]).last().expect("events").id;
    let mut args = vec!["events", "-f", "--json"];
    args.extend_from_slice(window);
    let tail = Tail::start(&roster, &args);
    // Make new events until the follower shows one (it may not have read
    // its starting point yet when the first restart happens).
    let mut printed = Vec::new();
    wait_for("the follower to print a new event", SECS(20), || {
        roster.ok(&["restart", "quiet"]);
        printed.extend(tail.drain_for(Duration::from_millis(700)));
        printed
            .iter()
            .any(|line| line.contains("\"started\""))
            .then_some(())
    });
    for line in &printed {
        let event: roster_core::api::EventRecord =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{line}: {error}"));
        assert!(
            event.id > newest_before,
            "printed an event from before it started ({window:?}): {line}"
        );
    }
}

#[test]
fn events_follow_with_zero_lines_prints_only_new_events() {
    events_follow_starts_after_the_newest(&["-n", "0"]);
}

#[test]
fn events_follow_with_an_empty_since_window_prints_only_new_events() {
    events_follow_starts_after_the_newest(&["--since", "2s"]);
}

/// A symlink planted as `NAME.log` is refused (counted like a failed
/// write), never written through; `roster logs` does not print its target.
#[test]
fn a_symlink_planted_as_the_log_is_never_followed() {
    let roster = Roster::new();
    let target = roster.write("target", "TARGET CONTENT\n");
    let logs = roster.home_path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    std::os::unix::fs::symlink(&target, logs.join("talker.log")).expect("plant a symlink");
    roster.config(&sh_agent(
        "talker",
        "while :; do echo secret; sleep 0.05; done",
        "",
    ));
    roster.up();
    roster.wait_status("the talker's lines to be dropped", SECS(10), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "talker" && agent.log_dropped_lines > 0)
    });
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "TARGET CONTENT\n",
        "the daemon wrote through the symlink"
    );
    let output = roster.run(&["logs", "talker"]);
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("TARGET"),
        "roster logs printed the symlink's target"
    );
    roster.wait_event("talker", "log_dropped", SECS(10));
}

/// `roster logs -f -n N` started in the middle of a flood: the tail and the
/// followed lines meet exactly (before, the tail was read by name and the
/// follower opened afterwards, so lines written in between were lost).
#[test]
fn logs_follow_started_mid_flood_joins_tail_and_follow_exactly() {
    let roster = Roster::new();
    roster.config(&format!(
        "[log]\nmax_size = \"64KiB\"\nkeep = 500\ncompress = true\n{}",
        sh_agent(
            "counter",
            "i=0; while [ $i -lt 400 ]; do seq $((i*500+1)) $((i*500+500)); i=$((i+1)); sleep 0.01; done; exec sleep 1000",
            ""
        )
    ));
    roster.up();
    wait_for("the flood to be under way", SECS(10), || {
        (log_lines(&roster.log_path("counter")).len() > 5_000).then_some(())
    });
    let tail = Tail::start(&roster, &["logs", "-f", "-n", "1000", "counter"]);
    let seen = tail.collect_until(SECS(60), |line| line == "counter | 200000");
    let printed = numbers(&seen, "counter");
    assert!(printed.len() >= 1000, "only {} lines", printed.len());
    let first = printed[0];
    let expected: Vec<u64> = (first..=200_000).collect();
    assert!(
        printed == expected,
        "a gap or a duplicate after line {first}: {} printed, {} expected",
        printed.len(),
        expected.len()
    );
}
