//! `roster logs`: reads the log files directly (no daemon needed), merges
//! agents by time, and follows across rotations.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use roster_daemon::logs::follow::Follower;
use roster_daemon::logs::{read_lines, LogLine};
use roster_daemon::Home;

use crate::client::Reach;

fn agent_names(home: &Home, names: &[String]) -> Result<Vec<String>> {
    let mut known: Vec<String> = Vec::new();
    let client = super::client(home);
    if matches!(client.reach(), Reach::Up) {
        if let Ok(status) = super::status::fetch(home, &[]) {
            known.extend(status.agents.into_iter().map(|agent| agent.name));
        }
    }
    if let Ok(entries) = std::fs::read_dir(home.logs()) {
        for entry in entries.flatten() {
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_suffix(".log"))
            {
                if !known.iter().any(|known| known == name) {
                    known.push(name.to_owned());
                }
            }
        }
    }
    known.sort();
    if names.is_empty() || names.iter().any(|name| name == "all") {
        return Ok(known);
    }
    let unknown: Vec<&str> = names
        .iter()
        .filter(|name| !known.contains(name))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        bail!(
            "no agent or log named {} in {}\n  hint: known: {}",
            unknown.join(", "),
            home.logs().display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    Ok(names.to_vec())
}

struct Printer {
    width: usize,
    timestamps: bool,
    out: io::BufWriter<io::Stdout>,
}

impl Printer {
    /// Prints lines; `false` when stdout is gone (e.g. piped into `head`).
    fn print(&mut self, lines: &[(String, LogLine)]) -> bool {
        for (name, line) in lines {
            let result = match (&line.time, self.timestamps) {
                (Some(time), true) => writeln!(
                    self.out,
                    "{name:<width$} | {time} {}",
                    line.text,
                    width = self.width
                ),
                _ => writeln!(
                    self.out,
                    "{name:<width$} | {}",
                    line.text,
                    width = self.width
                ),
            };
            if result.is_err() {
                return false;
            }
        }
        self.out.flush().is_ok()
    }
}

fn merge(mut lines: Vec<(String, LogLine)>) -> Vec<(String, LogLine)> {
    // Stable: lines of one agent keep their order; stamps order the rest.
    lines.sort_by(|a, b| a.1.time.cmp(&b.1.time));
    lines
}

/// Runs `roster logs`.
pub fn run(
    home: &Home,
    names: &[String],
    count: usize,
    follow: bool,
    timestamps: bool,
) -> Result<ExitCode> {
    let names = agent_names(home, names)?;
    let mut tail = Vec::new();
    for name in &names {
        let path = home.agent_log(name);
        let lines =
            read_lines(&path, count).with_context(|| format!("reading {}", path.display()))?;
        tail.extend(lines.into_iter().map(|line| (name.clone(), line)));
    }
    let mut merged = merge(tail);
    let skip = merged.len().saturating_sub(count);
    merged.drain(..skip);
    let mut printer = Printer {
        width: names.iter().map(String::len).max().unwrap_or(0),
        timestamps,
        out: io::BufWriter::new(io::stdout()),
    };
    if !printer.print(&merged) || !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut followers: Vec<(String, Follower)> = names
        .iter()
        .map(|name| (name.clone(), Follower::at_end(home.agent_log(name))))
        .collect();
    loop {
        let mut fresh = Vec::new();
        for (name, follower) in &mut followers {
            fresh.extend(follower.poll().into_iter().map(|line| (name.clone(), line)));
        }
        if !fresh.is_empty() && !printer.print(&merge(fresh)) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
