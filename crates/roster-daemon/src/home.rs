//! The home directory: where one roster keeps its socket, journal and logs.
//! Two homes are two independent rosters.

use std::path::{Path, PathBuf};

/// The paths of one roster home.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// Wraps an absolute home path.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The default home: `/var/lib/roster` for root, else
    /// `$XDG_STATE_HOME/roster` or `~/.local/state/roster`.
    pub fn default_path() -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/roster");
        }
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|value| !value.is_empty()) {
            return PathBuf::from(state).join("roster");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".local/state/roster")
    }

    /// The home itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("roster.sock")
    }

    /// The SQLite journal.
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.db")
    }

    /// The lock a running daemon holds; it contains the daemon's pid.
    pub fn lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// The daemon's own log (when started by `roster up`).
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// Where agent logs live.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// An agent's current log file.
    pub fn agent_log(&self, agent: &str) -> PathBuf {
        self.logs().join(format!("{agent}.log"))
    }
}
