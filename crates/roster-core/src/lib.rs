//! roster-core: the decisions of roster, as pure functions of state, input and time.
//!
//! This crate owns the config model and its validation, the per-agent state
//! machine with its restart and backoff policy, and the wire types of the
//! control API. It must not do I/O: no clock reads, no processes, no files,
//! no sockets. Time comes in as an argument (`now: Instant`), so every policy
//! is tested deterministically on a fake clock.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod apply_rule;
pub mod backup;
pub mod config;
pub mod connection;
pub mod delivery_log;
pub mod deploy;
pub mod deployment;
pub mod describe;
pub mod diagnose;
pub mod fleet;
pub mod hardening;
pub mod health;
pub mod metrics;
pub mod name;
pub mod notify;
pub mod oom;
pub mod recover;
pub mod signal;
pub mod supervisor;
pub mod trim;
pub mod units;
pub mod watch;
pub mod watch_paths;
pub mod web;

pub use config::{AgentSpec, Config, ConfigError, LogConfig, RestartMode, StderrMode};
pub use name::AgentName;
pub use signal::Signal;
pub use supervisor::{Action, ApplySummary, Event, EventKind, ExitStatus, Supervisor};
