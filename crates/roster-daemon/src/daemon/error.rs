//! Why the daemon could not run.

use std::path::PathBuf;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds this home.
    #[error("another roster daemon (pid {pid}) already runs for {home}\n  hint: use it (roster status), stop it (roster down), or pick another --home")]
    AlreadyRunning {
        /// The home.
        home: PathBuf,
        /// The other daemon's pid, as its lock file says.
        pid: String,
    },
    /// A file or directory of the home could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The home, or a file in it, may not be used.
    #[error(transparent)]
    Home(#[from] crate::home::HomeError),
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The config given at start is invalid.
    #[error("{0}")]
    Config(String),
    /// The home was deleted or replaced while the daemon ran; it stopped
    /// its agents and exited.
    #[error("the home {home} {reason}; every agent was stopped\n  hint: start roster again (roster up) to use a new home at that path")]
    HomeLost {
        /// The home.
        home: PathBuf,
        /// What happened to it.
        reason: String,
    },
}
