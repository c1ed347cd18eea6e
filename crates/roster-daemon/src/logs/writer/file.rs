//! The open `NAME.log`: opening it (never through a symlink, never
//! blocking on a FIFO, recreating a removed logs directory), and noticing
//! within about a second that it was deleted or moved, so that the next
//! flush reopens it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::LogWriter;
use crate::clock::day_of;

/// How often (at most) the writer checks that its file is still the one
/// named `NAME.log`: an `fstat` and an `lstat`, cheap at this rate.
pub(super) const LINK_CHECK_MS: i64 = 1000;

impl LogWriter {
    pub(super) fn reopen(&mut self) -> io::Result<()> {
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
    pub(super) fn check_file(&mut self, now_ms: i64, force: bool) {
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
