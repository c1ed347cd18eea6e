//! The log writer of one agent: frames bytes into whole lines, stamps them,
//! appends them to `NAME.log`, and rotates between lines.
//!
//! It must not lose, split or double a line: a partial line waits in
//! `pending` until its newline arrives (or it passes [`MAX_LINE`], when it is
//! cut with a visible marker); rotation happens only between lines; a failed
//! write is rolled back to the last whole line and its lines are counted as
//! dropped.
//!
//! It must also heal by itself: after a full disk the next write simply
//! succeeds again; when its file is unlinked (or the logs directory removed)
//! it notices within about a second, recreates the directory and reopens the
//! file, so capture resumes without a restart. Files are opened with
//! `O_NOFOLLOW`: a symlink planted as `NAME.log` is refused, never written
//! through.
//!
//! This module holds the writer and its settings; the jobs are split:
//! `lines` (the write path: framing, cutting, buffering, appending),
//! `file` (opening `NAME.log` and noticing it is gone), `rotation`
//! (renaming between lines, `keep`), `compress` (`NAME.log.2.gz`, and
//! what a crash during a compression left).

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

use roster_core::LogConfig;

use crate::log_rules::{LogRules, SharedLogRules};

mod compress;
mod file;
mod lines;
mod rotation;

use compress::tidy_after_crash;

/// Lines longer than this are cut, so one agent cannot make the daemon
/// buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// One agent's log writer.
pub struct LogWriter {
    agent: String,
    path: PathBuf,
    /// `path` as people know it, for messages.
    shown: PathBuf,
    config: LogConfig,
    file: Option<File>,
    size: u64,
    day: i64,
    out: Vec<u8>,
    out_lines: u64,
    compressing: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
    /// Lines stored, for `roster_log_lines_total`.
    written: Option<Arc<AtomicU64>>,
    last_error: Option<String>,
    last_link_check_ms: i64,
    /// Patterns of the agent's `log_matches` rules, shared with the daemon
    /// (which replaces them on apply without waiting for this writer).
    log_rules: SharedLogRules,
    /// What `log_rules` held when the current write began.
    current_rules: Option<Arc<LogRules>>,
    /// This write's matches: (rule position, count).
    tally: Vec<(usize, u64)>,
}

/// What one call of [`LogWriter::write`] could not do.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// Lines that could not be stored (disk full, I/O error).
    pub dropped_lines: u64,
    /// The error that dropped them.
    pub error: Option<String>,
    /// Set when this call counted `log_matches` lines the loop has not
    /// been told about: it must be (once), and then takes the counts.
    pub matches_pending: Option<Arc<LogRules>>,
}

impl LogWriter {
    /// Opens (appending to) `path`, tidying what a crash mid-rotation left
    /// and removing rotated files beyond `keep` (it may have been lowered
    /// while no daemon ran). The daemon uses [`LogWriter::open_shown`].
    #[cfg(test)]
    pub fn open(agent: &str, path: PathBuf, config: LogConfig, dropped: Arc<AtomicU64>) -> Self {
        Self::open_shown(agent, path.clone(), path, config, dropped)
    }

    /// Like [`LogWriter::open`], with the file reached through `path` but
    /// named `shown` in messages: the daemon writes through its held home
    /// (`/proc/self/fd/N/logs/NAME.log`) and reports the home's real path.
    pub fn open_shown(
        agent: &str,
        path: PathBuf,
        shown: PathBuf,
        config: LogConfig,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        tidy_after_crash(&path);
        let mut writer = Self {
            agent: agent.to_owned(),
            path,
            shown,
            config,
            file: None,
            size: 0,
            day: 0,
            out: Vec::new(),
            out_lines: 0,
            compressing: None,
            dropped,
            written: None,
            last_error: None,
            last_link_check_ms: 0,
            log_rules: SharedLogRules::default(),
            current_rules: None,
            tally: Vec::new(),
        };
        if let Err(error) = writer.remove_beyond_keep_at_open() {
            tracing::warn!(agent = %writer.agent, "removing old logs: {error}");
        }
        if let Err(error) = writer.reopen() {
            writer.last_error = Some(error.to_string());
        }
        writer
    }

    /// Counts every line stored from now on into `counter` (what
    /// `/metrics` reports as `roster_log_lines_total`).
    pub fn count_written_lines(&mut self, counter: Arc<AtomicU64>) {
        self.written = Some(counter);
    }

    /// Changes rotation settings; they apply from the next line. A lower
    /// `keep` removes the now surplus rotated files at once.
    pub fn set_config(&mut self, config: LogConfig) {
        let lowered = config.keep < self.config.keep;
        self.config = config;
        if lowered {
            if let Err(error) = self.remove_beyond_keep() {
                tracing::warn!(agent = %self.agent, "removing old logs: {error}");
            }
        }
    }

    /// Whether a compression runs in the background (rotating now would
    /// wait for it).
    pub fn is_compressing(&self) -> bool {
        self.compressing
            .as_ref()
            .is_some_and(|job| !job.is_finished())
    }

    /// Waits for a running compression.
    pub fn close(&mut self) {
        if let Some(job) = self.compressing.take() {
            let _ = job.join();
        }
    }

    /// The handle through which the daemon sets this writer's patterns.
    pub fn log_rules(&self) -> SharedLogRules {
        self.log_rules.clone()
    }

    /// Reads its patterns through `handle`, another writer's: an agent's
    /// stderr log counts its `log_matches` into the same rules as its
    /// stdout log.
    pub fn share_log_rules(&mut self, handle: SharedLogRules) {
        self.log_rules = handle;
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Some(job) = self.compressing.take() {
            let _ = job.join();
        }
    }
}

#[cfg(test)]
mod tests;
