//! One module per command; this one only holds what several share.

pub mod add;
pub mod agents;
pub mod alerts;
pub mod backup;
pub mod check;
pub mod config_edit;
pub mod daemon;
pub mod deploy;
pub mod describe;
pub mod diagnose;
pub mod doctor;
pub mod events;
pub mod export;
pub mod fleet;
pub mod init;
pub mod install;
pub mod logs;
pub mod recover;
pub mod remove;
pub mod scale;
pub mod secret;
pub mod status;
pub mod tmux;
pub mod top;
pub mod up;
pub mod web;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use roster_core::api::StatusReply;
use roster_store::Home;

use crate::client::Client;

/// The home as an absolute path (agents get it in `ROSTER_HOME`, and the
/// daemon runs with another working directory).
pub fn resolve_home(given: Option<PathBuf>) -> Result<Home> {
    let path = given
        .filter(|path| !path.as_os_str().is_empty())
        .unwrap_or_else(Home::default_path);
    let absolute = if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(path)
    };
    Ok(Home::new(absolute))
}

/// The config path as an absolute path, checking that it exists.
pub fn config_path(file: &Path) -> Result<PathBuf> {
    let absolute = if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(file)
    };
    if !absolute.is_file() {
        anyhow::bail!(
            "no config file at {}\n  hint: pass one with -f FILE, or run roster in the directory that has roster.toml",
            absolute.display()
        );
    }
    Ok(absolute)
}

/// The agents a home knows of, for `logs` and `events` (which read files
/// directly and work with the daemon down): every name with a log file
/// (current or rotated) or a journal entry, sorted.
///
/// A home with neither a journal nor a logs directory is an error: nothing
/// ever ran there, and most likely `--home` points at the wrong place.
pub fn known_agents(home: &Home) -> Result<Vec<String>> {
    let journal = home.journal();
    let logs = home.logs();
    if !journal.exists() && !logs.exists() {
        anyhow::bail!(
            "nothing has run in {}: it has no journal and no logs\n  hint: start agents with `roster up -f roster.toml`, or pass the right --home (or ROSTER_HOME)",
            home.root().display()
        );
    }
    let mut known = std::collections::BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(&logs) {
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str().and_then(agent_of_log_file) {
                known.insert(name.to_owned());
            }
        }
    }
    known.extend(
        roster_store::journal::agent_names(&journal)
            .with_context(|| format!("reading {}", journal.display()))?,
    );
    Ok(known.into_iter().collect())
}

/// The agent a log file belongs to: `NAME.log`, `NAME.log.N`,
/// `NAME.log.N.gz`, and the same of its stderr log (`NAME.err.log`, ...;
/// no agent's name ends in `.err`).
fn agent_of_log_file(file_name: &str) -> Option<&str> {
    let base = match file_name.strip_suffix(".log") {
        Some(name) => name,
        None => {
            let rotated = file_name.strip_suffix(".gz").unwrap_or(file_name);
            let (base, index) = rotated.rsplit_once('.')?;
            if index.is_empty() || !index.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            base.strip_suffix(".log")?
        }
    };
    let name = base
        .strip_suffix(roster_core::name::STDERR_SUFFIX)
        .unwrap_or(base);
    Some(name).filter(|name| !name.is_empty())
}

/// Fails with the known agents as a hint when a name in `names` (other
/// than `all`) is not among `known`.
pub fn require_known(home: &Home, names: &[String], known: &[String]) -> Result<()> {
    let unknown: Vec<&str> = names
        .iter()
        .filter(|name| *name != "all" && !known.contains(name))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "no agent named {} in {}\n  hint: known agents: {}",
        unknown.join(", "),
        home.root().display(),
        if known.is_empty() {
            "none yet".to_owned()
        } else {
            known.join(", ")
        }
    )
}

/// The daemon's client for a home.
pub fn client(home: &Home) -> Client {
    Client::new(&home.socket())
}

/// Polls status until `done` holds or `timeout` passes; returns the last status.
pub fn wait_for(
    client: &Client,
    timeout: Duration,
    mut done: impl FnMut(&StatusReply) -> bool,
) -> Result<(StatusReply, bool)> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        let status: StatusReply = client.get("/v1/status")?;
        if done(&status) {
            return Ok((status, true));
        }
        if Instant::now() >= deadline {
            return Ok((status, false));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::agent_of_log_file;

    #[test]
    fn log_file_names_give_agents() {
        assert_eq!(agent_of_log_file("web.log"), Some("web"));
        assert_eq!(agent_of_log_file("web.log.1"), Some("web"));
        assert_eq!(agent_of_log_file("web.log.12.gz"), Some("web"));
        assert_eq!(agent_of_log_file("a.log.b.log"), Some("a.log.b"));
        assert_eq!(agent_of_log_file("web.log.2.gz.tmp"), None);
        assert_eq!(agent_of_log_file("web.txt"), None);
        assert_eq!(agent_of_log_file(".log"), None);
        // Its stderr log, current and rotated.
        assert_eq!(agent_of_log_file("web.err.log"), Some("web"));
        assert_eq!(agent_of_log_file("web.err.log.1"), Some("web"));
        assert_eq!(agent_of_log_file("web.err.log.3.gz"), Some("web"));
        assert_eq!(agent_of_log_file(".err.log"), None);
    }
}
