//! Agent logs: the pipe pump, the line-preserving writer with rotation and
//! compression. The reading side (`files`, `follow`: what `roster logs`
//! uses) is in `roster-store`, re-exported here under its old paths.
//!
//! Every line an agent writes becomes one line in `<home>/logs/NAME.log`,
//! prefixed with the UTC time it was read (`2026-11-28T23:59:01.123Z `).
//! roster owns the write side, so rotation is rename-and-reopen inside the
//! writer, always between two lines; nothing is ever copied and truncated.

pub(crate) mod pump;
pub(crate) mod writer;

#[cfg(test)]
mod follow_tests;

// The old paths of the reading side, kept for code that names them.
pub(crate) use crate::log_rules::{LogRules, SharedLogRules};
#[allow(unused_imports)]
pub(crate) use files::{clean_oldest, log_files, read_lines, split_timestamp, LogLine};
#[allow(unused_imports)]
pub(crate) use roster_store::logs::{files, follow};
pub(crate) use writer::LogWriter;
