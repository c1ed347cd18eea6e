//! Agents' log files, as the daemon's writer leaves them: naming, reading
//! and following (`roster logs`, `roster logs -f`, `roster top`).
//!
//! Every line an agent writes is one line in `<home>/logs/NAME.log`,
//! prefixed with the UTC time it was read (`2026-11-28T23:59:01.123Z `).
//! The writer (in the daemon) rotates by rename, always between two lines.

pub mod files;
pub mod follow;

pub use files::{clean_oldest, log_files, read_lines, split_timestamp, LogLine, CUT_MARKER};
