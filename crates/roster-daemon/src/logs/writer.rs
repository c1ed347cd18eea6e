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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use roster_core::LogConfig;

use super::files::{rotated_files, rotated_path, CUT_MARKER, SOURCE_INODE_COMMENT};
use super::matches::{LogRules, SharedLogRules};
use crate::clock::{day_of, rfc3339_millis};

/// Lines longer than this are cut, so one agent cannot make the daemon
/// buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// How often (at most) the writer checks that its file is still the one
/// named `NAME.log`: an `fstat` and an `lstat`, cheap at this rate.
const LINK_CHECK_MS: i64 = 1000;

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

    fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        let file = open_log_for_append(&self.path)?;
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file; remove it so roster can create the log",
            ));
        }
        self.size = metadata.len();
        self.day = metadata
            .modified()
            .ok()
            .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|since| day_of(since.as_millis() as i64))
            .unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    /// Whether the open file is still the one named `NAME.log`. It is not
    /// when someone deleted it (or the whole logs directory) or renamed it
    /// away: writing on would put lines where nobody finds them.
    fn is_file_still_named(&self) -> bool {
        let Some(file) = self.file.as_ref() else {
            return true;
        };
        let Ok(open) = file.metadata() else {
            return false;
        };
        if open.nlink() == 0 {
            return false;
        }
        match fs::symlink_metadata(&self.path) {
            Ok(named) => named.ino() == open.ino() && named.dev() == open.dev(),
            Err(_) => false,
        }
    }

    /// Checks (at most once a [`LINK_CHECK_MS`], or at once with `force`)
    /// that the file is still named, and drops it if not, so that the next
    /// flush reopens (and recreates the directory if needed).
    fn check_file(&mut self, now_ms: i64, force: bool) {
        if !force && now_ms.saturating_sub(self.last_link_check_ms) < LINK_CHECK_MS {
            return;
        }
        self.last_link_check_ms = now_ms;
        if !self.is_file_still_named() {
            tracing::warn!(
                agent = %self.agent,
                "{} was deleted or moved; reopening it",
                self.shown.display()
            );
            self.file = None;
            self.size = 0;
        }
    }

    /// Takes bytes read at `now_ms` from one source (one run's pipe);
    /// `pending` is that source's unfinished line, kept by the caller so
    /// that two runs' partial lines are never joined.
    pub fn write(&mut self, pending: &mut Vec<u8>, mut chunk: &[u8], now_ms: i64) -> WriteReport {
        let mut report = WriteReport::default();
        self.refresh_log_rules();
        self.check_file(now_ms, false);
        let today = day_of(now_ms);
        if today != self.day && self.size > 0 {
            self.rotate(&mut report);
        }
        self.day = today;
        let mut stamp = rfc3339_millis(now_ms).into_bytes();
        stamp.push(b' ');
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(end) => {
                    let (line, rest) = chunk.split_at(end + 1);
                    chunk = rest;
                    if pending.is_empty() {
                        self.push_whole(&stamp, line, &mut report);
                    } else {
                        pending.extend_from_slice(line);
                        self.push_whole(&stamp, pending, &mut report);
                        pending.clear();
                    }
                }
                None => {
                    pending.extend_from_slice(chunk);
                    chunk = &[];
                    if pending.len() > MAX_LINE {
                        let rest = self.push_cut_pieces(&stamp, pending, &mut report).to_vec();
                        *pending = rest;
                    }
                }
            }
        }
        self.flush_out(&mut report);
        self.publish_matches(&mut report);
        if report.dropped_lines > 0 {
            // A failed write may mean the file is gone: look now, not in a
            // second, so the next chunk already lands in a reopened file.
            self.check_file(now_ms, true);
        }
        // A burst grew the buffer; between chunks an agent keeps at most a
        // small one, so a thousand quiet agents stay cheap. (One allocation
        // per chunk during a flood costs nothing measurable.)
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        report
    }

    /// A source (pipe) closed: its last line without a newline is stored
    /// with one.
    pub fn end_source(&mut self, pending: &mut Vec<u8>, now_ms: i64) -> WriteReport {
        let mut report = WriteReport::default();
        self.check_file(now_ms, false);
        if !pending.is_empty() {
            let mut stamp = rfc3339_millis(now_ms).into_bytes();
            stamp.push(b' ');
            self.push_line(&stamp, &[pending, b"\n"], &mut report);
            pending.clear();
        }
        self.flush_out(&mut report);
        report
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

    fn refresh_log_rules(&mut self) {
        self.current_rules = self
            .log_rules
            .read()
            .map(|rules| rules.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    }

    fn count_matches(&mut self, line: &[u8]) {
        if let Some(rules) = &self.current_rules {
            rules.count_line(line, &mut self.tally);
        }
    }

    /// Hands this call's matches to the shared counters.
    fn publish_matches(&mut self, report: &mut WriteReport) {
        if let Some(rules) = &self.current_rules {
            if !self.tally.is_empty() && rules.add(&self.tally) {
                report.matches_pending = Some(rules.clone());
            }
        }
        self.tally.clear();
    }

    /// Pushes a complete line (ending in a newline), cutting it into marked
    /// pieces when it is longer than [`MAX_LINE`].
    fn push_whole(&mut self, stamp: &[u8], line: &[u8], report: &mut WriteReport) {
        self.count_matches(line);
        let rest = if line.len() > MAX_LINE + 1 {
            self.push_cut_pieces(stamp, line, report)
        } else {
            line
        };
        self.push_line(stamp, &[rest], report);
    }

    /// Pushes `MAX_LINE` pieces of `bytes` with the cut marker while more
    /// than `MAX_LINE` bytes remain; returns the remainder.
    fn push_cut_pieces<'a>(
        &mut self,
        stamp: &[u8],
        mut bytes: &'a [u8],
        report: &mut WriteReport,
    ) -> &'a [u8] {
        while bytes.len() > MAX_LINE + 1 || (bytes.len() > MAX_LINE && bytes.last() != Some(&b'\n'))
        {
            let cut = utf8_boundary(bytes, MAX_LINE);
            self.push_line(stamp, &[&bytes[..cut], CUT_MARKER, b"\n"], report);
            bytes = &bytes[cut..];
        }
        bytes
    }

    fn push_line(&mut self, stamp: &[u8], parts: &[&[u8]], report: &mut WriteReport) {
        let length = stamp.len() + parts.iter().map(|part| part.len()).sum::<usize>();
        let buffered = self.size + self.out.len() as u64;
        if buffered > 0 && buffered + length as u64 > self.config.max_size {
            self.flush_out(report);
            self.rotate(report);
        }
        self.out.extend_from_slice(stamp);
        for part in parts {
            self.out.extend_from_slice(part);
        }
        self.out_lines += 1;
        if self.out.len() >= 256 * 1024 {
            self.flush_out(report);
        }
    }

    fn flush_out(&mut self, report: &mut WriteReport) {
        if self.out.is_empty() {
            return;
        }
        if self.file.is_none() {
            if let Err(error) = self.reopen() {
                self.drop_out(report, &error);
                return;
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        match file.write_all(&self.out) {
            Ok(()) => {
                self.size += self.out.len() as u64;
                if let Some(written) = &self.written {
                    written.fetch_add(self.out_lines, Ordering::Relaxed);
                }
                self.out.clear();
                self.out_lines = 0;
            }
            Err(error) => {
                // Roll back a partial write so the file keeps whole lines
                // only. The file stays open: when space comes back, the
                // next write simply succeeds.
                let _ = file.set_len(self.size);
                self.drop_out(report, &error);
            }
        }
    }

    fn drop_out(&mut self, report: &mut WriteReport, error: &io::Error) {
        report.dropped_lines += self.out_lines;
        report.error = Some(format!("{}: {error}", self.shown.display()));
        self.dropped.fetch_add(self.out_lines, Ordering::Relaxed);
        self.out.clear();
        self.out_lines = 0;
    }

    /// Removes every rotated file numbered `first_removed` or more,
    /// whatever `keep` was when it was made.
    fn remove_rotated_from(&mut self, first_removed: u32) -> io::Result<()> {
        let doomed: Vec<PathBuf> = rotated_files(&self.path)
            .into_iter()
            .filter(|file| file.index >= first_removed)
            .map(|file| file.path)
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        // The compressor may be working on `.2`: let it finish first.
        self.close();
        doomed.iter().try_for_each(|path| remove_if_exists(path))
    }

    fn remove_beyond_keep(&mut self) -> io::Result<()> {
        self.remove_rotated_from(self.config.keep.saturating_add(1))
    }

    /// At open: what a `keep` lowered while no daemon ran left behind,
    /// found by trying the numbers past `keep` until one is missing.
    /// Listing the logs directory instead, which thousands of agents
    /// share, made starting them quadratic (5,000 took 20 s). A file past
    /// a gap in the numbers waits for the next rotation, which lists.
    fn remove_beyond_keep_at_open(&self) -> io::Result<()> {
        let mut index = self.config.keep.saturating_add(1);
        loop {
            let mut found = false;
            for compressed in [false, true] {
                let path = rotated_path(&self.path, index, compressed);
                match fs::symlink_metadata(&path) {
                    Ok(_) => {
                        found = true;
                        remove_if_exists(&path)?;
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
            if !found || index == u32::MAX {
                return Ok(());
            }
            index += 1;
        }
    }

    fn rotate(&mut self, report: &mut WriteReport) {
        if let Some(job) = self.compressing.take() {
            let _ = job.join();
        }
        self.file = None;
        let keep = self.config.keep;
        let result = (|| -> io::Result<()> {
            if keep == 0 {
                self.remove_rotated_from(1)?;
                return remove_if_exists(&self.path);
            }
            // Everything numbered `keep` or more goes, including files a
            // larger `keep` left behind.
            self.remove_rotated_from(keep)?;
            for index in (1..keep).rev() {
                for compressed in [false, true] {
                    let from = rotated_path(&self.path, index, compressed);
                    if from.exists() {
                        fs::rename(&from, rotated_path(&self.path, index + 1, compressed))?;
                    }
                }
            }
            fs::rename(&self.path, rotated_path(&self.path, 1, false))
        })();
        if let Err(error) = result {
            report.error = Some(format!("rotating {}: {error}", self.shown.display()));
        }
        let second = rotated_path(&self.path, COMPRESSED, false);
        if self.config.compress && keep >= 2 && second.exists() {
            let agent = self.agent.clone();
            self.compressing = std::thread::Builder::new()
                .name("log-compress".into())
                .spawn(move || {
                    if let Err(error) = compress(&second) {
                        tracing::error!(%agent, "compressing {}: {error}", second.display());
                    }
                })
                .ok();
        }
        if let Err(error) = self.reopen() {
            report.error = Some(format!("reopening {}: {error}", self.shown.display()));
        }
        self.size = 0;
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Some(job) = self.compressing.take() {
            let _ = job.join();
        }
    }
}

/// Opens `path` for appending, refusing to follow a symlink at its name.
/// When the directory is gone (someone removed `<home>/logs`), it is
/// recreated, mode 0700, and the open retried. `O_NONBLOCK` (meaningless
/// for regular files) keeps a FIFO planted there from blocking the open;
/// the caller then refuses anything but a regular file.
fn open_log_for_append(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
    };
    match open() {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                create_log_dir(dir)?;
            }
            open()
        }
        other => other,
    }
}

/// Creates the logs directory (mode 0700) if it is missing. `mkdir` never
/// follows a symlink at the final component: an existing entry of any kind
/// is left alone. The parent (the home) is not created: without a home
/// there is nothing sane to do.
fn create_log_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            tracing::warn!("{} was missing; recreated it", dir.display());
            Ok(())
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Compresses `plain` into `plain.gz` via a temp file, then removes `plain`.
/// The gzip header's comment records `plain`'s inode, so a follower that
/// holds `plain` open can tell which `.gz` holds the same bytes.
fn compress(plain: &Path) -> io::Result<()> {
    let mut gz_name = plain.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz = PathBuf::from(gz_name);
    let mut tmp_name = gz.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(plain)?;
        let inode = input.metadata()?.ino();
        let output = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut encoder = flate2::GzBuilder::new()
            .comment(format!("{SOURCE_INODE_COMMENT}{inode}"))
            .write(output, flate2::Compression::fast());
        io::copy(&mut input, &mut encoder)?;
        let output = encoder.finish()?;
        output.sync_all()?;
        fs::rename(&tmp, &gz)?;
        fs::remove_file(plain)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The one rotated file ever compressed: `NAME.log.2` (a rotation waits
/// for the last compression before it renames anything).
const COMPRESSED: u32 = 2;

/// Removes a half-written `.2.gz.tmp` and the plain twin of a complete
/// `.2.gz`, which a crash during compression can leave. Only `.2` is ever
/// compressed, so only it is looked at: three lookups an agent, not thirty
/// (5,000 agents start in one apply).
fn tidy_after_crash(current: &Path) {
    let gz = rotated_path(current, COMPRESSED, true);
    let mut tmp = gz.as_os_str().to_owned();
    tmp.push(".tmp");
    let _ = fs::remove_file(PathBuf::from(tmp));
    if gz.exists() {
        let _ = fs::remove_file(rotated_path(current, COMPRESSED, false));
    }
}

/// The largest index <= `limit` that does not split a UTF-8 character.
fn utf8_boundary(bytes: &[u8], limit: usize) -> usize {
    let mut cut = limit.min(bytes.len());
    while cut > limit.saturating_sub(4)
        && cut < bytes.len()
        && (bytes[cut] & 0b1100_0000) == 0b1000_0000
    {
        cut -= 1;
    }
    if cut == 0 {
        limit
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::files::{log_files, read_lines};

    /// The file names of `paths`, for assertions.
    fn file_names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
            .collect()
    }

    fn writer(dir: &Path, max_size: u64, keep: u32, compress: bool) -> LogWriter {
        LogWriter::open(
            "a",
            dir.join("a.log"),
            LogConfig {
                max_size,
                keep,
                compress,
            },
            Arc::new(AtomicU64::new(0)),
        )
    }

    const T: i64 = 1_795_910_341_123;

    #[test]
    fn what_a_crash_while_compressing_left_is_tidied_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("a.log.2", "plain twin\n"),
            ("a.log.2.gz", "complete"),
            ("a.log.2.gz.tmp", "half"),
            ("a.log.3.gz", "older"),
            ("a.log.4", "older, plain"),
        ] {
            std::fs::write(dir.path().join(name), text).expect("plant");
        }
        let _log = writer(dir.path(), 1 << 20, 5, true);
        let left: Vec<String> = {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .expect("list")
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            names.sort();
            names
        };
        assert_eq!(left, ["a.log", "a.log.2.gz", "a.log.3.gz", "a.log.4"]);
    }

    #[test]
    fn files_a_lowered_keep_left_are_removed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "a.log.1",
            "a.log.2.gz",
            "a.log.3.gz",
            "a.log.4.gz",
            "a.log.5",
        ] {
            std::fs::write(dir.path().join(name), "x").expect("plant");
        }
        let _log = writer(dir.path(), 1 << 20, 2, true);
        for (name, kept) in [
            ("a.log.1", true),
            ("a.log.2.gz", true),
            ("a.log.3.gz", false),
            ("a.log.4.gz", false),
            ("a.log.5", false),
        ] {
            assert_eq!(dir.path().join(name).exists(), kept, "{name}");
        }
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = writer(dir.path(), 1 << 20, 3, false);
        let mut first = Vec::new();
        let mut second = Vec::new();
        log.write(&mut first, b"hel", T);
        log.write(&mut second, b"other run, unfinished", T);
        log.write(&mut first, b"lo\nwor", T);
        log.end_source(&mut second, T);
        log.write(&mut first, b"ld\n", T);
        log.end_source(&mut first, T);
        let lines = read_lines(&dir.path().join("a.log"), 10).expect("read");
        let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(texts, ["hello", "other run, unfinished", "world"]);
    }

    #[test]
    fn long_lines_are_cut_with_a_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = writer(dir.path(), 1 << 30, 3, false);
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut pending = Vec::new();
        log.write(&mut pending, &long, T);
        log.write(&mut pending, b"\n", T);
        log.end_source(&mut pending, T);
        let lines = read_lines(&dir.path().join("a.log"), 10).expect("read");
        assert_eq!(lines.len(), 3);
        assert!(lines[0]
            .text
            .ends_with(std::str::from_utf8(CUT_MARKER).expect("ascii")));
        let rebuilt: usize = lines
            .iter()
            .map(|line| {
                line.text
                    .trim_end_matches(std::str::from_utf8(CUT_MARKER).expect("ascii"))
                    .len()
            })
            .sum();
        assert_eq!(rebuilt, long.len());
    }

    #[test]
    fn rotates_between_lines_and_keeps_n_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = writer(dir.path(), 4096, 3, true);
        let mut pending = Vec::new();
        for index in 0..1000 {
            log.write(&mut pending, format!("line {index:05}\n").as_bytes(), T);
        }
        log.close();
        let files = log_files(&dir.path().join("a.log"));
        let names = file_names(&files);
        assert_eq!(names, ["a.log.3.gz", "a.log.2.gz", "a.log.1", "a.log"]);
        let lines = read_lines(&dir.path().join("a.log"), 100_000).expect("read");
        // Whatever is kept is a contiguous, unsplit tail ending at the last line.
        let numbers: Vec<u32> = lines
            .iter()
            .map(|line| line.text["line ".len()..].parse().expect("whole line"))
            .collect();
        assert_eq!(numbers.last(), Some(&999));
        assert!(numbers.windows(2).all(|pair| pair[1] == pair[0] + 1));
        for path in &files {
            assert!(
                fs::metadata(path).expect("stat").len() <= 4096
                    || path.extension().is_some_and(|e| e == "gz")
            );
        }
    }

    #[test]
    fn rotates_when_the_day_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = writer(dir.path(), 1 << 20, 3, false);
        let mut pending = Vec::new();
        log.write(&mut pending, b"yesterday\n", T);
        log.write(&mut pending, b"today\n", T + 86_400_000);
        let files = log_files(&dir.path().join("a.log"));
        assert_eq!(files.len(), 2);
        assert!(fs::read_to_string(&files[0])
            .expect("read")
            .contains("yesterday"));
        assert!(fs::read_to_string(&files[1])
            .expect("read")
            .contains("today"));
    }

    #[test]
    fn lowering_keep_removes_the_surplus_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = writer(dir.path(), 1024, 10, false);
        let mut pending = Vec::new();
        for index in 0..1000 {
            log.write(&mut pending, format!("line {index:05}\n").as_bytes(), T);
        }
        assert_eq!(log_files(&dir.path().join("a.log")).len(), 11);
        log.set_config(LogConfig {
            max_size: 1024,
            keep: 2,
            compress: false,
        });
        let names = file_names(&log_files(&dir.path().join("a.log")));
        assert_eq!(names, ["a.log.2", "a.log.1", "a.log"]);
    }

    #[test]
    fn a_symlink_planted_as_the_log_is_refused_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        fs::write(&target, "").expect("write");
        std::os::unix::fs::symlink(&target, dir.path().join("a.log")).expect("symlink");
        let mut log = writer(dir.path(), 1 << 20, 3, false);
        let mut pending = Vec::new();
        let report = log.write(&mut pending, b"secret\n", T);
        assert_eq!(report.dropped_lines, 1);
        assert_eq!(log.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(fs::read_to_string(&target).expect("read"), "");
    }

    #[test]
    fn stored_lines_are_counted_and_dropped_ones_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = writer(dir.path(), 1 << 20, 3, false);
        let written = Arc::new(AtomicU64::new(0));
        log.count_written_lines(written.clone());
        let mut pending = Vec::new();
        log.write(&mut pending, b"one\ntwo\nthr", T);
        assert_eq!(written.load(Ordering::Relaxed), 2);
        log.end_source(&mut pending, T);
        assert_eq!(written.load(Ordering::Relaxed), 3);
        // A symlink planted as the log: the line is dropped, not stored.
        fs::remove_file(dir.path().join("a.log")).expect("rm");
        std::os::unix::fs::symlink("/dev/null", dir.path().join("a.log")).expect("symlink");
        log.write(&mut pending, b"lost\n", T + LINK_CHECK_MS);
        assert_eq!(written.load(Ordering::Relaxed), 3);
        assert_eq!(log.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_fifo_planted_as_the_log_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        nix::unistd::mkfifo(&dir.path().join("a.log"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        let mut log = writer(dir.path(), 1 << 20, 3, false);
        let mut pending = Vec::new();
        assert_eq!(log.write(&mut pending, b"line\n", T).dropped_lines, 1);
    }

    #[test]
    fn a_deleted_directory_is_recreated_and_the_file_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).expect("mkdir");
        let mut log = writer(&logs, 1 << 20, 3, false);
        let mut pending = Vec::new();
        log.write(&mut pending, b"before\n", T);
        fs::remove_dir_all(&logs).expect("rm -rf");
        // Within the check interval lines still go to the unlinked file...
        log.write(&mut pending, b"lost\n", T + 10);
        // ...then the writer notices and starts over in a new directory.
        log.write(&mut pending, b"after\n", T + 10 + LINK_CHECK_MS);
        let lines = read_lines(&logs.join("a.log"), 10).expect("read");
        let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(texts, ["after"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&logs).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
