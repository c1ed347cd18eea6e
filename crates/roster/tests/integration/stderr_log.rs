//! Issue #19 part 4: `stderr = "separate"`: an agent's stderr in
//! `NAME.err.log`, each stream complete and in order in its own file across
//! rotation; `roster logs NAME --stderr` (and `-f`); a merged agent's stderr
//! still in `NAME.log`; names ending in `.err` refused.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use crate::util::*;

/// Waits for `go` to exist, then writes `count` numbered lines to stdout
/// and to stderr in turn (each flushed, so the two really interleave),
/// then `done` on both.
const INTERLEAVED: &str = r#"
import os, sys, time
count = int(sys.argv[1])
while not os.path.exists("go"):
    time.sleep(0.01)
for i in range(count):
    sys.stdout.write("out %06d %s\n" % (i, "o" * 30)); sys.stdout.flush()
    sys.stderr.write("err %06d %s\n" % (i, "e" * 30)); sys.stderr.flush()
print("done", flush=True)
print("done", file=sys.stderr, flush=True)
time.sleep(1000)
"#;

const LINES: usize = 3000;

/// `lines` are exactly `PREFIX 000000 ...` to `PREFIX {LINES - 1} ...`,
/// then `done`: none lost, doubled, split, reordered or from the other
/// stream.
fn assert_one_stream(lines: &[String], prefix: &str, filler: char) {
    let expected: Vec<String> = (0..LINES)
        .map(|index| format!("{prefix} {index:06} {}", filler.to_string().repeat(30)))
        .chain(["done".to_owned()])
        .collect();
    assert_eq!(lines.len(), expected.len(), "{prefix}: lines lost or added");
    if let Some(at) = (0..lines.len()).find(|&at| lines[at] != expected[at]) {
        panic!(
            "{prefix}: at line {at}, {:?} instead of {:?}",
            lines[at], expected[at]
        );
    }
}

#[test]
fn separate_stderr_keeps_both_streams_complete_and_in_order_across_rotation() {
    let roster = Roster::new();
    roster.write("both.py", INTERLEAVED);
    roster.config(&format!(
        "[log]\nmax_size = \"4KiB\"\nkeep = 1000\ncompress = true\nstderr = \"separate\"\n\
         [agents.both]\ncommand = \"python3 both.py {LINES}\"\n\
         {}",
        sh_agent(
            "merged",
            "echo one; echo two >&2; exec sleep 1000",
            "stderr = \"merge\""
        )
    ));
    roster.up();
    let out_log = roster.log_path("both");
    let err_log = roster.home_path().join("logs/both.err.log");
    wait_for("the stderr log to be opened", SECS(10), || {
        err_log.exists().then_some(())
    });

    // A follower of the stderr log, started before the first line: with
    // its tail (whatever it found written), it must print every stderr
    // line once, in order, across every rotation.
    let mut follower = roster
        .command()
        .args(["logs", "both", "--stderr", "-f", "-n", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("roster logs -f");
    let (sender, followed) = mpsc::channel();
    let stdout = follower.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    roster.write("go", "");

    let done = |path: &std::path::Path| {
        roster_store::logs::read_lines(path, 1)
            .ok()
            .and_then(|lines| (lines.last()?.text == "done").then_some(()))
    };
    wait_for("both streams to end", SECS(60), || {
        done(&out_log).and(done(&err_log))
    });

    for log in [&out_log, &err_log] {
        let files = roster_store::logs::log_files(log);
        assert!(
            files.len() > 5,
            "{} rotated only {} times at 4 KiB",
            log.display(),
            files.len() - 1
        );
        assert!(
            files
                .iter()
                .any(|file| file.extension().is_some_and(|extension| extension == "gz")),
            "{}: nothing compressed",
            log.display()
        );
    }
    assert_one_stream(&log_lines(&out_log), "out", 'o');
    assert_one_stream(&log_lines(&err_log), "err", 'e');
    assert_eq!(roster.agent("both").log_dropped_lines, 0);

    let mut seen = Vec::new();
    wait_for(
        "the follower to print the last stderr line",
        SECS(30),
        || {
            while let Ok(line) = followed.try_recv() {
                seen.push(line);
            }
            seen.last()
                .is_some_and(|line| line == "both | done")
                .then_some(())
        },
    );
    let _ = follower.kill();
    let _ = follower.wait();
    let followed: Vec<String> = seen
        .iter()
        .map(|line| line.trim_start_matches("both | ").to_owned())
        .collect();
    assert_one_stream(&followed, "err", 'e');

    // `roster logs --stderr` prints the stderr log; without it, stdout's.
    let tail = roster.ok(&["logs", "both", "--stderr", "-n", "2"]);
    assert_eq!(
        tail,
        format!(
            "both | err {:06} {}\nboth | done\n",
            LINES - 1,
            "e".repeat(30)
        )
    );
    let tail = roster.ok(&["logs", "both", "-n", "2"]);
    assert_eq!(
        tail,
        format!(
            "both | out {:06} {}\nboth | done\n",
            LINES - 1,
            "o".repeat(30)
        )
    );

    // An agent that keeps `merge` has both streams in NAME.log, in order.
    let merged = roster.log_path("merged");
    let lines = wait_for("the merged agent's two lines", SECS(10), || {
        let lines = log_lines(&merged);
        (lines.len() == 2).then_some(lines)
    });
    assert_eq!(lines, ["one", "two"]);
    assert!(!roster.home_path().join("logs/merged.err.log").exists());
    let refused = roster.run(&["logs", "merged", "--stderr"]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("merged's stderr goes to merged.log: set [log] stderr = \"separate\""),
        "{message}"
    );

    // `both.err.log` is not taken for an agent of its own.
    let every = roster.ok(&["logs", "-n", "100"]);
    assert!(!every.contains("both.err"), "{every}");
    let every_stderr = roster.ok(&["logs", "--stderr", "-n", "1"]);
    assert_eq!(
        every_stderr, "both | done\n",
        "only agents with a stderr log"
    );
}

#[test]
fn check_refuses_a_bad_stderr_mode_and_a_name_ending_in_err() {
    let roster = Roster::new();
    roster.config(
        "[log]\nstderr = \"apart\"\n\
         [agents.web]\ncommand = \"sleep 1\"\n\
         [agents.\"web.err\"]\ncommand = \"sleep 1\"\nstderr = \"separate\"\n",
    );
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "roster.toml:2:10: unknown stderr mode \"apart\"",
        "hint: use \"merge\" (stderr into NAME.log, with stdout) or \"separate\" (into NAME.err.log)",
        "roster.toml:5:9: bad agent name \"web.err\": the name ends in \".err\": web.err.log is where agent `web` writes its stderr with stderr = \"separate\"",
        "hint: rename it, e.g. `web-err`",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    // Fixed, it checks clean, and the agent's own key is accepted.
    roster.config(
        "[log]\nstderr = \"merge\"\n\
         [agents.web]\ncommand = \"sleep 1\"\nstderr = \"separate\"\n",
    );
    roster.ok(&["check"]);
}

/// Turning `separate` on (or off) in `[log]` is a change of the agents it
/// reaches: applied, they restart with their stderr in the new place.
#[test]
fn switching_stderr_to_separate_and_back_restarts_the_agent_into_the_new_place() {
    let roster = Roster::new();
    let agent = |log: &str| {
        format!(
            "[log]\nstderr = \"{log}\"\n{}",
            sh_agent(
                "flip",
                "echo out-$$; echo err-$$ >&2; exec sleep 1000",
                "stop_timeout = \"1s\""
            )
        )
    };
    let err_log = roster.home_path().join("logs/flip.err.log");
    roster.config(&agent("merge"));
    roster.up();
    let first = wait_for("the merged run's two lines", SECS(10), || {
        let lines = log_lines(&roster.log_path("flip"));
        (lines.len() == 2).then_some(lines)
    });
    assert!(
        first[0].starts_with("out-") && first[1].starts_with("err-"),
        "{first:?}"
    );
    assert!(!err_log.exists());

    roster.config(&agent("separate"));
    let summary = roster.ok(&["apply"]);
    assert!(summary.contains("flip"), "{summary}");
    wait_for("the separate run's stderr line", SECS(10), || {
        (log_lines(&err_log).len() == 1).then_some(())
    });
    let stdout_lines = wait_for("the separate run's stdout line", SECS(10), || {
        let lines = log_lines(&roster.log_path("flip"));
        (lines.len() == 3).then_some(lines)
    });
    assert!(stdout_lines[2].starts_with("out-"), "{stdout_lines:?}");
    let pid = stdout_lines[2].trim_start_matches("out-");
    assert_eq!(log_lines(&err_log), [format!("err-{pid}")]);
    let printed = roster.ok(&["logs", "flip", "--stderr"]);
    assert_eq!(printed, format!("flip | err-{pid}\n"));

    // Back to merge: the next run's stderr is in flip.log again.
    roster.config(&agent("merge"));
    roster.ok(&["apply"]);
    let lines = wait_for("the merged run again", SECS(10), || {
        let lines = log_lines(&roster.log_path("flip"));
        (lines.len() == 5).then_some(lines)
    });
    assert!(
        lines[3].starts_with("out-") && lines[4].starts_with("err-"),
        "{lines:?}"
    );
    assert_eq!(log_lines(&err_log).len(), 1, "nothing more in flip.err.log");
}
