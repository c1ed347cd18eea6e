//! Rotation: `NAME.log` renamed to `NAME.log.1` and the older files
//! shifted up, between two lines; rotated files beyond `keep` removed (at
//! rotation, when `keep` is lowered, and at open); `NAME.log.2` handed to
//! a background compression.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::compress::{compress, COMPRESSED};
use super::{LogWriter, WriteReport};
use crate::logs::files::{rotated_files, rotated_path};

impl LogWriter {
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

    pub(super) fn remove_beyond_keep(&mut self) -> io::Result<()> {
        self.remove_rotated_from(self.config.keep.saturating_add(1))
    }

    /// At open: what a `keep` lowered while no daemon ran left behind,
    /// found by trying the numbers past `keep` until one is missing.
    /// Listing the logs directory instead, which thousands of agents
    /// share, made starting them quadratic (5,000 took 20 s). A file past
    /// a gap in the numbers waits for the next rotation, which lists.
    pub(super) fn remove_beyond_keep_at_open(&self) -> io::Result<()> {
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

    pub(super) fn rotate(&mut self, report: &mut WriteReport) {
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

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
