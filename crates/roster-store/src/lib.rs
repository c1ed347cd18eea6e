//! roster-store: what the CLI and the daemon both read and write.
//!
//! The home and its checked directory handle, the journal, agents' log
//! files and the follower, the secret store and `env_file`s, the release
//! store, config files (read, and written back by `roster add` and
//! `remove`), and the clock's formatting. The daemon writes most
//! of it; the CLI reads it (and writes secrets) without asking the daemon.
//!
//! Dependencies point one way: `roster-core` ← `roster-store` ←
//! `roster-daemon` ← `roster`. Nothing here spawns, signals or supervises.

#![forbid(unsafe_code)]

pub mod clock;
pub mod config_file;
pub mod config_write;
pub mod disk;
pub mod home;
pub mod journal;
pub mod logs;
pub mod releases;
pub mod sealed;
pub mod secrets;
pub mod snapshot;
pub mod tokens;

pub use home::Home;
