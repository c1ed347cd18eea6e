//! Agent logs: the pipe pump, the line-preserving writer with rotation and
//! compression, and the reading side `roster logs` uses.
//!
//! Every line an agent writes becomes one line in `<home>/logs/NAME.log`,
//! prefixed with the UTC time it was read (`2026-11-28T23:59:01.123Z `).
//! roster owns the write side, so rotation is rename-and-reopen inside the
//! writer, always between two lines; nothing is ever copied and truncated.

pub mod files;
pub mod follow;
pub mod matches;
pub mod pump;
pub mod writer;

pub use files::{clean_oldest, log_files, read_lines, split_timestamp, LogLine};
pub use matches::{LogRules, SharedLogRules};
pub use writer::LogWriter;
