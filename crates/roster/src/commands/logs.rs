//! `roster logs`: reads the log files directly (no daemon needed), merges
//! agents by time, and follows across rotations.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use roster_daemon::logs::files::for_each_line_or_compressed;
use roster_daemon::logs::{log_files, read_lines, split_timestamp, LogLine};
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
    let mut followers: Vec<Follower> = names
        .iter()
        .map(|name| Follower::at_end(name.clone(), home.agent_log(name)))
        .collect();
    loop {
        let mut fresh = Vec::new();
        for follower in &mut followers {
            follower.poll(&mut fresh);
        }
        if !fresh.is_empty() && !printer.print(&merge(fresh)) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Follows one agent's current log file across rotations: it reads its open
/// file to the end, and when the path names a new file (rotation renamed the
/// old one away), switches to it from the start.
struct Follower {
    name: String,
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    partial: Vec<u8>,
}

impl Follower {
    fn at_end(name: String, path: PathBuf) -> Self {
        let mut follower = Self {
            name,
            path,
            file: None,
            inode: 0,
            partial: Vec::new(),
        };
        if let Ok(mut file) = File::open(&follower.path) {
            if file.seek(SeekFrom::End(0)).is_ok() {
                follower.inode = file.metadata().map(|metadata| metadata.ino()).unwrap_or(0);
                follower.file = Some(file);
            }
        }
        follower
    }

    fn drain(&mut self, out: &mut Vec<(String, LogLine)>) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            return;
        }
        self.partial.extend_from_slice(&bytes);
        if let Some(last_newline) = self.partial.iter().rposition(|byte| *byte == b'\n') {
            let complete: Vec<u8> = self.partial.drain(..=last_newline).collect();
            for line in complete
                .split(|byte| *byte == b'\n')
                .filter(|line| !line.is_empty())
            {
                out.push((
                    self.name.clone(),
                    split_timestamp(&String::from_utf8_lossy(line)),
                ));
            }
        }
    }

    fn poll(&mut self, out: &mut Vec<(String, LogLine)>) {
        self.drain(out);
        let Ok(current_inode) = std::fs::metadata(&self.path).map(|metadata| metadata.ino()) else {
            return;
        };
        if current_inode == self.inode {
            return;
        }
        let Ok(file) = File::open(&self.path) else {
            return;
        };
        let new_inode = file.metadata().map(|metadata| metadata.ino()).unwrap_or(0);
        // Several rotations may have happened since the last poll: read the
        // files between the one we had and the new current one, found by
        // inode (rename keeps it). If ours was compressed away meanwhile,
        // we cannot tell where we were, and skip ahead.
        let mut between = Vec::new();
        let mut found = false;
        for path in log_files(&self.path).into_iter().rev() {
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if metadata.ino() == new_inode {
                continue;
            }
            if metadata.ino() == self.inode {
                found = true;
                break;
            }
            between.push(path);
        }
        if found {
            for path in between.iter().rev() {
                if path == &self.path {
                    continue;
                }
                let _ = for_each_line_or_compressed(path, |line| {
                    out.push((self.name.clone(), split_timestamp(line)))
                });
            }
        }
        self.inode = new_inode;
        self.file = Some(file);
        self.partial.clear();
        self.drain(out);
    }
}
