//! roster-daemon: the runtime that performs what roster-core decides.
//!
//! It owns all I/O: spawning and reaping processes, the log pipeline, /proc
//! sampling, the SQLite journal and the control API. Decisions (restart or
//! not, when, what a config means) are never made here; they come from
//! `roster_core::Supervisor`.

#![deny(unsafe_code)]

pub mod alerts;
pub mod cgroup;
pub mod clock;
pub mod config_file;
pub mod daemon;
pub mod deploy;
pub mod home;
pub mod identity;
pub mod inbox;
pub mod journal;
pub mod listen;
pub mod listener;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod procfs;
pub mod releases;
pub mod sample;
pub mod secrets;
pub mod server;
pub mod spawn;
#[allow(unsafe_code)]
mod sys;

pub use daemon::{run, DaemonError, DaemonOptions};
pub use home::Home;
