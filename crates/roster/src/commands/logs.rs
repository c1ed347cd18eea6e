//! `roster logs`: reads the log files directly (no daemon needed), merges
//! agents by time, and follows across rotations; `--stderr` reads the
//! agents' separate stderr logs (`NAME.err.log`) instead.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use roster_store::logs::follow::Follower;
use roster_store::logs::{log_files, read_lines, LogLine};
use roster_store::Home;

use crate::client::Reach;

/// The agents to show: every known one for none or `all`, else `names`,
/// each of which must be known (a log file, a journal entry, or the
/// running daemon's config); the name of an agent with `instances` (in the
/// running daemon's config) stands for all of its copies.
fn agent_names(home: &Home, names: &[String]) -> Result<Vec<String>> {
    let mut known = super::known_agents(home)?;
    let mut running = Vec::new();
    let client = super::client(home);
    if matches!(client.reach(), Reach::Up) {
        if let Ok(status) = super::status::fetch(home, &[]) {
            running = status.agents;
        }
    }
    for agent in &running {
        if !known.contains(&agent.name) {
            known.push(agent.name.clone());
        }
    }
    known.sort();
    if names.is_empty() || names.iter().any(|name| name == "all") {
        return Ok(known);
    }
    let mut wanted = Vec::new();
    let mut plain = Vec::new();
    for name in names {
        let copies: Vec<&str> = running
            .iter()
            .filter(|agent| agent.is_copy_of(name))
            .map(|agent| agent.name.as_str())
            .collect();
        if copies.is_empty() || known.contains(name) {
            plain.push(name.clone());
            wanted.push(name.clone());
        } else {
            wanted.extend(copies.into_iter().map(str::to_owned));
        }
    }
    super::require_known(home, &plain, &known)?;
    Ok(wanted)
}

struct Printer {
    width: usize,
    timestamps: bool,
    /// Stdout is a terminal: agents' control characters are shown, not
    /// obeyed.
    escape: bool,
    out: io::BufWriter<io::Stdout>,
}

impl Printer {
    /// Prints lines; `false` when stdout is gone (e.g. piped into `head`).
    fn print(&mut self, lines: &[(String, LogLine)]) -> bool {
        for (name, line) in lines {
            let (name, text) = if self.escape {
                (escape_controls(name), escape_controls(&line.text))
            } else {
                (
                    Cow::Borrowed(name.as_str()),
                    Cow::Borrowed(line.text.as_str()),
                )
            };
            let result = match (&line.time, self.timestamps) {
                (Some(time), true) => writeln!(
                    self.out,
                    "{name:<width$} | {time} {text}",
                    width = self.width
                ),
                _ => writeln!(self.out, "{name:<width$} | {text}", width = self.width),
            };
            if result.is_err() {
                return false;
            }
        }
        self.out.flush().is_ok()
    }
}

/// Agent text made safe for a terminal: control characters other than tab
/// (C0, DEL and C1: colour codes, cursor moves, title changes, a clear
/// screen, a bell) become visible escapes like `\x1b` or `\u{9b}`. Output
/// to a pipe or file is left as the agent wrote it.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\t' => escaped.push(c),
            c if c.is_control() && (c as u32) < 0x80 => {
                escaped.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

fn merge(mut lines: Vec<(String, LogLine)>) -> Vec<(String, LogLine)> {
    // Stable: lines of one agent keep their order; stamps order the rest.
    lines.sort_by(|a, b| a.1.time.cmp(&b.1.time));
    lines
}

/// Which of an agent's logs `roster logs` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// `NAME.log`: stdout, and stderr unless it is separate.
    Output,
    /// `NAME.err.log` (`--stderr`): stderr, with `stderr = "separate"`.
    Stderr,
}

/// With `--stderr`: the agents among `names` whose stderr has a log of
/// its own. Asked for by name, an agent whose stderr is merged is an
/// error; for every agent, those are left out.
fn with_stderr_log(home: &Home, names: Vec<String>, every: bool) -> Result<Vec<String>> {
    let has_log = |name: &String| !log_files(&home.agent_err_log(name)).is_empty();
    let (separate, merged): (Vec<String>, Vec<String>) = names.into_iter().partition(has_log);
    if let (false, Some(name)) = (every, merged.first()) {
        anyhow::bail!(
            "{name}'s stderr goes to {name}.log: set [log] stderr = \"separate\" (or stderr = \"separate\" in [agents.{name}]) and apply the config, then its stderr goes to {}",
            home.agent_err_log(name).display()
        );
    }
    if separate.is_empty() {
        anyhow::bail!(
            "no agent's stderr goes to a log of its own in {}: set [log] stderr = \"separate\" and apply the config",
            home.logs().display()
        );
    }
    Ok(separate)
}

/// Runs `roster logs`.
pub fn run(
    home: &Home,
    names: &[String],
    count: usize,
    follow: bool,
    timestamps: bool,
    stream: Stream,
) -> Result<ExitCode> {
    let every = names.is_empty() || names.iter().any(|name| name == "all");
    let mut names = agent_names(home, names)?;
    if stream == Stream::Stderr {
        names = with_stderr_log(home, names, every)?;
    }
    let mut tail = Vec::new();
    // Following: each agent's tail comes from the follower itself, so the
    // printed tail and the followed lines meet exactly.
    let mut followers: Vec<(String, Follower)> = Vec::new();
    for name in &names {
        let path = match stream {
            Stream::Output => home.agent_log(name),
            Stream::Stderr => home.agent_err_log(name),
        };
        let lines = if follow {
            let (follower, lines) = Follower::with_tail(path.clone(), count)
                .with_context(|| format!("reading {}", path.display()))?;
            followers.push((name.clone(), follower));
            lines
        } else {
            read_lines(&path, count).with_context(|| format!("reading {}", path.display()))?
        };
        tail.extend(lines.into_iter().map(|line| (name.clone(), line)));
    }
    let mut merged = merge(tail);
    let skip = merged.len().saturating_sub(count);
    merged.drain(..skip);
    let mut printer = Printer {
        width: names.iter().map(String::len).max().unwrap_or(0),
        timestamps,
        escape: io::stdout().is_terminal(),
        out: io::BufWriter::new(io::stdout()),
    };
    if !printer.print(&merged) || !follow {
        return Ok(ExitCode::SUCCESS);
    }
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

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            escape_controls("plain text\tand a tab"),
            "plain text\tand a tab"
        );
        assert_eq!(
            escape_controls("\u{1b}[31mred\u{1b}[0m\u{7}"),
            "\\x1b[31mred\\x1b[0m\\x07"
        );
        assert_eq!(
            escape_controls("\r\u{7f}\u{9b}2J é"),
            "\\x0d\\x7f\\u{9b}2J é"
        );
        assert!(matches!(
            escape_controls("nothing to do"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
