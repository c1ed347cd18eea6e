//! One module per command; this one only holds what several share.

pub mod agents;
pub mod check;
pub mod daemon;
pub mod events;
pub mod logs;
pub mod status;
pub mod up;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use roster_core::api::StatusReply;
use roster_daemon::Home;

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
