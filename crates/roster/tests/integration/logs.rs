//! Logs: every line kept in order across rotation, restart and floods; long
//! lines cut; full disks counted; `roster logs` interleaving and following.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use roster_core::api::AgentState;

use crate::util::*;

/// A Python writer of `count` numbered lines of exactly 100 bytes, as fast
/// as it can (big writes, so the pipe and roster are the bottleneck).
const FLOOD: &str = r#"
import sys
count = int(sys.argv[1])
out = sys.stdout.buffer
batch = []
for i in range(count):
    batch.append(b"%08d " % i + b"x" * 90 + b"\n")
    if len(batch) == 2000:
        out.write(b"".join(batch)); batch = []
out.write(b"".join(batch)); out.flush()
print("done", flush=True)
import time
time.sleep(1000)
"#;

fn check_sequence(lines: &[String], count: usize) {
    let mut expected = 0usize;
    for line in lines {
        if line == "done" {
            continue;
        }
        assert_eq!(line.len(), 99, "a split or merged line: {line:?}");
        let number: usize = line[..8]
            .parse()
            .unwrap_or_else(|_| panic!("a damaged line: {line:?}"));
        assert_eq!(
            number, expected,
            "lines out of order, lost or doubled at {expected}"
        );
        expected += 1;
    }
    assert_eq!(expected, count, "lines lost");
}

#[test]
fn a_million_line_flood_survives_rotation_intact() {
    let roster = Roster::new();
    roster.write("flood.py", FLOOD);
    roster.config(
        "[log]\nmax_size = \"1MiB\"\nkeep = 200\ncompress = true\n\
         [agents.flood]\ncommand = \"python3 flood.py 1000000\"\n",
    );
    roster.up();
    let log = roster.log_path("flood");
    wait_for("the flood to finish", SECS(240), || {
        let lines = roster_store::logs::read_lines(&log, 1).ok()?;
        (lines.last()?.text == "done").then_some(())
    });
    let files = roster_store::logs::log_files(&log);
    assert!(
        files.len() > 50,
        "expected many rotations at 1 MiB, got {} files",
        files.len()
    );
    assert!(
        files
            .iter()
            .any(|file| file.extension().is_some_and(|extension| extension == "gz")),
        "nothing was compressed"
    );
    for file in &files {
        if file.extension().is_none_or(|extension| extension != "gz") {
            let size = std::fs::metadata(file).expect("stat").len();
            assert!(
                size <= 1024 * 1024,
                "{} is {size} bytes, over max_size",
                file.display()
            );
        }
    }
    check_sequence(&log_lines(&log), 1_000_000);
    assert_eq!(roster.agent("flood").log_dropped_lines, 0);
}

#[test]
fn lines_survive_restarts() {
    let roster = Roster::new();
    let runs = roster.path("runs");
    // Each run prints 500 lines and exits; the agent is restarted 4 times.
    roster.config(&sh_agent(
        "restarter",
        &format!(
            "echo x >> {r}; n=$(wc -l < {r}); if [ $n -gt 5 ]; then exec sleep 1000; fi; i=0; while [ $i -lt 500 ]; do echo \"run $n line $i\"; i=$((i+1)); done; printf \"partial $n\"; exit 0",
            r = runs.display()
        ),
        "stable_after = \"0s\"\nready_after = \"0s\"",
    ));
    let _ = roster.run(&["up", "--timeout", "1s"]);
    let log = roster.log_path("restarter");
    let lines = wait_for("five runs of lines", SECS(20), || {
        let lines = log_lines(&log);
        (lines.len() >= 5 * 501).then_some(lines)
    });
    let mut expected = Vec::new();
    for run in 1..=5 {
        for line in 0..500 {
            expected.push(format!("run {run} line {line}"));
        }
        // A last line without a newline is kept, as a line of its own.
        expected.push(format!("partial {run}"));
    }
    assert_eq!(lines, expected);
}

#[test]
fn stdout_and_stderr_share_one_log_in_order() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "mixed",
        "echo one; echo two >&2; echo three; echo four >&2; exec sleep 1000",
        "",
    ));
    roster.up();
    let log = roster.log_path("mixed");
    let lines = wait_for("four lines", SECS(10), || {
        let lines = log_lines(&log);
        (lines.len() == 4).then_some(lines)
    });
    assert_eq!(lines, ["one", "two", "three", "four"]);
}

#[test]
fn an_endless_line_is_cut_with_a_marker() {
    let roster = Roster::new();
    roster.write("long.py", "import sys, time\nsys.stdout.write('y' * 200000 + '\\nafter\\n'); sys.stdout.flush()\ntime.sleep(1000)\n");
    roster.config("[agents.long]\ncommand = \"python3 long.py\"\n");
    roster.up();
    let log = roster.log_path("long");
    let lines = wait_for("the long line", SECS(10), || {
        let lines = log_lines(&log);
        lines.contains(&"after".to_owned()).then_some(lines)
    });
    assert_eq!(
        lines.len(),
        5,
        "200000 bytes in 64 KiB pieces, plus `after`"
    );
    let marker = std::str::from_utf8(roster_store::logs::CUT_MARKER).expect("ascii");
    assert!(
        lines[..3].iter().all(|line| line.ends_with(marker)),
        "cuts are marked"
    );
    let total: usize = lines[..4]
        .iter()
        .map(|line| line.trim_end_matches(marker).len())
        .sum();
    assert_eq!(total, 200_000, "nothing lost at the cuts");
}

#[test]
fn logs_command_interleaves_by_time_with_prefixes() {
    let roster = Roster::new();
    roster.config(&format!(
        "{}{}",
        sh_agent(
            "first",
            "echo first-1; sleep 0.3; echo first-2; exec sleep 1000",
            ""
        ),
        sh_agent(
            "second",
            "sleep 0.15; echo second-1; sleep 0.3; echo second-2; exec sleep 1000",
            ""
        )
    ));
    roster.up();
    wait_for("all four lines", SECS(10), || {
        let out = roster.ok(&["logs"]);
        (out.lines().count() == 4).then_some(())
    });
    let out = roster.ok(&["logs"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "first  | first-1",
            "second | second-1",
            "first  | first-2",
            "second | second-2"
        ]
    );
    let last = roster.ok(&["logs", "-n", "1", "first"]);
    assert_eq!(last.trim_end(), "first | first-2");
    let stamped = roster.ok(&["logs", "-t", "-n", "1", "second"]);
    assert!(
        stamped.starts_with("second | 20") && stamped.contains("Z second-2"),
        "{stamped}"
    );
    let missing = roster.run(&["logs", "nosuch"]);
    assert!(!missing.status.success());
}

#[test]
fn logs_follow_keeps_going_across_rotation() {
    let roster = Roster::new();
    roster.write(
        "ticker.py",
        "import os, time\nprint('waiting')\nwhile not os.path.exists('go'):\n    time.sleep(0.01)\nfor i in range(3000):\n    print('tick %05d' % i + ' ' * 60)\n    time.sleep(0.0005)\nprint('end')\ntime.sleep(1000)\n",
    );
    roster.config("[log]\nmax_size = \"8KiB\"\nkeep = 100\ncompress = false\n[agents.ticker]\ncommand = \"python3 ticker.py\"\n");
    roster.up();
    let mut follower = roster
        .command()
        .args(["logs", "-f", "-n", "1", "ticker"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let stdout = follower.stdout.take().expect("stdout");
    let go = roster.path("go");
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            if line.as_deref().is_ok_and(|line| line.ends_with("waiting")) {
                // The follower runs: let the ticker go.
                let _ = std::fs::write(&go, "");
            }
            let Ok(line) = line else { break };
            let done = line.contains("end");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    wait_for("the follower to reach the end", SECS(60), || {
        reader.is_finished().then_some(())
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let seen = reader.join().expect("reader");
    assert!(
        seen.last().is_some_and(|line| line.ends_with("end")),
        "the follower did not see the end"
    );
    let files = roster_store::logs::log_files(&roster.log_path("ticker"));
    assert!(
        files.len() > 5,
        "the log did not rotate while followed ({} files)",
        files.len()
    );
    // Everything the follower printed is whole and in order.
    let numbers: Vec<u32> = seen
        .iter()
        .filter_map(|line| line.strip_prefix("ticker | tick "))
        .map(|rest| rest.trim_end().parse().expect("whole line"))
        .collect();
    assert_eq!(numbers.len(), 3000, "the follower lost or doubled lines");
    let misplaced = numbers
        .iter()
        .enumerate()
        .find(|(index, number)| *index as u32 != **number);
    assert_eq!(misplaced, None, "the follower reordered lines");
}

#[test]
fn a_full_disk_drops_lines_counts_them_and_the_daemon_lives() {
    if !needs_root("a_full_disk_drops_lines", "mount a small tmpfs") {
        return;
    }
    let roster = Roster::new();
    let logs = roster.home_path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&logs)
        .status()
        .expect("mount");
    assert!(mounted.success(), "could not mount a tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(logs.clone());
    roster.write("fill.py", "import time\nfor i in range(20000):\n    print('fill %06d ' % i + 'z' * 80)\nprint('filled', flush=True)\ntime.sleep(1000)\n");
    roster.config("[log]\nmax_size = \"10MiB\"\n[agents.fill]\ncommand = \"python3 fill.py\"\n[agents.calm]\ncommand = \"sleep 1000\"\n");
    roster.up();
    let status = roster.wait_status("dropped lines to be counted", SECS(30), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "fill" && agent.log_dropped_lines > 0)
    });
    let fill = status
        .agents
        .iter()
        .find(|agent| agent.name == "fill")
        .expect("fill");
    assert_eq!(fill.state, AgentState::Running, "the agent keeps running");
    roster.wait_event("fill", "log_dropped", SECS(10));
    // What did get written is whole lines only.
    for line in log_lines(&roster.log_path("fill")) {
        assert!(
            line.len() == 92 || line == "filled",
            "a torn line: {line:?}"
        );
    }
    // The daemon still answers and still supervises.
    roster.ok(&["restart", "calm"]);
    assert_eq!(roster.agent("calm").state, AgentState::Running);
    let _ = Duration::ZERO;
}
