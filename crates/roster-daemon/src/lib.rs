//! roster-daemon: the runtime that performs what roster-core decides.
//!
//! It owns all I/O: spawning and reaping processes, the log pipeline, /proc
//! sampling, the SQLite journal and the control API. Decisions (restart or
//! not, when, what a config means) are never made here; they come from
//! `roster_core::Supervisor`.

#![deny(unsafe_code)]

// The store (home, journal, log files, secrets, releases, config files,
// clock) is the crate `roster-store`; its modules keep their old paths
// here (`crate::journal::...`).
pub(crate) use roster_store::{clock, config_file, home, journal, releases, secrets};

pub(crate) mod accounts;
pub(crate) mod alerts;
pub(crate) mod cgroup;
pub(crate) mod daemon;
pub(crate) mod deploy;
pub(crate) mod describe;
pub(crate) mod identity;
pub(crate) mod inbox;
pub(crate) mod listen;
pub(crate) mod listener;
pub(crate) mod log_rules;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod probe;
pub(crate) mod procfs;
pub(crate) mod sample;
pub(crate) mod server;
pub(crate) mod spawn;
#[allow(unsafe_code)]
mod sys;
pub(crate) mod web;

// The public surface: what the `roster` binary and its integration tests
// need from the runtime itself. Everything they read or write on disk is in
// `roster-store`; the wire types are in `roster_core::api`.

/// Runs the daemon until it is told to stop (`roster daemon`).
pub use daemon::{run, DaemonError, DaemonOptions};
/// The exec shim: `roster __roster-exec ...` in a child, before the agent
/// runs (`main` checks for [`SHIM_ARG`] first).
pub use spawn::{exec_shim, SHIM_ARG};

/// Read-only helpers the CLI shares with the runtime, so that `check`,
/// `export` and the tests judge exactly as the daemon does.
pub mod tools {
    /// A home's short id: its agents' cgroups are `.../roster-<id>/AGENT`
    /// (`diagnose` tells which kernel OOM kills are this home's).
    pub use crate::daemon::home_id;
    /// Who an agent runs as (`check` warns with the same answers).
    pub use crate::identity::{resolve as resolve_identity, unreachable, Account};
    /// `/proc` as the daemon reads it (the integration tests find processes
    /// with it).
    pub use crate::procfs::{all_pids, processes_of_home, sample, sample_all, ProcSample};
    /// Who listens on an address, and a process's command name (`diagnose`
    /// names the holder of an agent's port as `apply` does).
    pub use crate::procfs::{command_name, listener_holder};
    /// Program lookup as the exec shim and the spawner do it.
    pub use crate::spawn::{resolve_program, SYSTEM_PATH};
}
