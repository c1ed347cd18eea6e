//! Faults in the log pipeline and the log readers, each reproduced as a
//! user meets it: a follower across compressed rotations, a full disk, a
//! deleted logs directory, a lowered `keep`, escape sequences, unknown
//! agents, and `events -f` with an empty window.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    let rotated = roster_daemon::logs::log_files(&roster.log_path("counter")).len();
    assert!(rotated > 20, "expected many rotations, got {rotated} files");
    if compress {
        assert!(
            roster_daemon::logs::log_files(&roster.log_path("counter"))
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
