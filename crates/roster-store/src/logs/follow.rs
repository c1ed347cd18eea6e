//! Following one agent's log across rotations, compressed or not (`roster
//! logs -f`). It only reads; it must yield every line once, in order,
//! however many rotations happen between two polls.
//!
//! Why it is exact. The follower identifies files by content, not by name:
//!
//! - It holds the file it reads open. A rotated file is never written again,
//!   and an open file stays readable after a rename, after compression
//!   removes it, even after `keep` deletes it. So the follower never loses
//!   the rest of its own file; it only needs to find the files written
//!   *after* it.
//! - Because it holds that file open, its inode number cannot be reused
//!   while it follows. Renames keep inodes, and the compressor writes the
//!   plain file's inode into the `.gz` header (`files::gz_source_inode`).
//!   So "inode of a plain file, or source inode of a `.gz`" names a file's
//!   bytes wherever rotation moved them, and no file newer than ours can
//!   have our identity. (Other identities are not unique: a compressed
//!   file's source inode is free for reuse. So they are compared only to
//!   tell a `.N.gz` from its `.N` twin.)
//! - Rotation only shifts names upwards (`.1` → `.2`, then `.2` becomes
//!   `.2.gz`, both present for a moment), keeping their order. Scanning
//!   `.1`, `.1.gz`, `.2`, `.2.gz`, ... upwards until our identity turns up
//!   gives the newer files newest first, provided no file moved twice
//!   during the scan. A file moves only when the current file is renamed
//!   away, so the scan opens the current file first and checks afterwards
//!   that the same inode still has that name; otherwise it scans again.
//!   Every file it lists is opened during the scan, so later renames and
//!   compressions cannot change what it reads.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use flate2::read::MultiGzDecoder;

use super::files::{
    gz_source_inode, open_no_follow, read_lines, read_rotated_lines, rotated_files, rotated_path,
};
use super::{split_timestamp, LogLine};

/// How many times a scan is retried while rotations keep racing it, about
/// a millisecond apart, before the follower settles for the last one.
const SCAN_ATTEMPTS: u32 = 500;

/// Follows one agent's log.
pub struct Follower {
    path: PathBuf,
    held: Option<Held>,
    /// While no file is held (there was none at the start): the identities
    /// of rotated files that existed then, which are not new.
    old_identities: HashSet<u64>,
    partial: Vec<u8>,
}

struct Held {
    file: File,
    inode: u64,
}

/// A rotated file newer than the held one, opened during the scan.
struct Newer {
    file: File,
    compressed: bool,
}

/// What one consistent look at the directory found.
enum Scan {
    /// The held file is still the current one.
    Unchanged,
    /// The current file (if any) and the rotated files between the held
    /// one and it, newest first.
    Rotated {
        current: Option<Held>,
        newer: Vec<Newer>,
    },
}

impl Follower {
    /// Starts at the end of the current file `path` (`<home>/logs/NAME.log`):
    /// only lines written from now on are yielded.
    pub fn at_end(path: PathBuf) -> Self {
        let mut follower = Self {
            path,
            held: None,
            old_identities: HashSet::new(),
            partial: Vec::new(),
        };
        match open_current_patiently(&follower.path) {
            Some(mut held) => {
                if held.file.seek(SeekFrom::End(0)).is_ok() {
                    follower.held = Some(held);
                }
            }
            None => {
                for rotated in rotated_files(&follower.path) {
                    if let Ok(file) = open_no_follow(&rotated.path) {
                        if let Some(identity) = identity_of(&file, rotated.compressed) {
                            follower.old_identities.insert(identity);
                        }
                    }
                }
            }
        }
        follower
    }

    /// The last `count` lines and a follower that goes on exactly after
    /// them: the current file's part of the tail is read through the file
    /// the follower then holds, so no line written meanwhile is lost or
    /// printed twice.
    pub fn with_tail(mut path: PathBuf, count: usize) -> io::Result<(Self, Vec<LogLine>)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(mut held) = open_current_patiently(&path) else {
                // No current file: the tail is in rotated files, if any.
                let tail = read_lines(&path, count)?;
                return Ok((Self::at_end(path), tail));
            };
            let mut follower = Self {
                path,
                held: None,
                old_identities: HashSet::new(),
                partial: Vec::new(),
            };
            let mut last = VecDeque::new();
            let mut reader = BufReader::with_capacity(256 * 1024, &mut held.file);
            let mut line = Vec::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                if line.last() != Some(&b'\n') {
                    // Being written: the follower completes it.
                    follower.partial = std::mem::take(&mut line);
                    break;
                }
                if count > 0 {
                    last.push_back(std::mem::take(&mut line));
                    if last.len() > count {
                        last.pop_front();
                    }
                }
            }
            drop(reader);
            let mut tail = Vec::new();
            if last.len() < count {
                tail = read_rotated_lines(&follower.path, count - last.len())?;
            }
            for line in last {
                push_lines(&line, &mut tail);
            }
            follower.held = Some(held);
            // Had the current file rotated before the rotated ones were
            // read, its lines would be in the tail twice: start over.
            let still_current = open_current(&follower.path).map(|current| current.inode);
            if still_current == follower.held.as_ref().map(|held| held.inode) || attempt >= 5 {
                return Ok((follower, tail));
            }
            path = follower.path;
        }
    }

    /// The lines written since the last poll, in order.
    pub fn poll(&mut self) -> Vec<LogLine> {
        let mut out = Vec::new();
        self.drain_held(&mut out);
        let (current, newer) = match self.scan() {
            Scan::Unchanged => return out,
            Scan::Rotated { current, newer } => (current, newer),
        };
        let Some(current) = current else {
            // Between a rotation's rename and reopen, or the logs directory
            // is gone: keep the held file, whose identity tells where to
            // continue once a current file exists again.
            return out;
        };
        // The held file is no longer current: it is complete. Finish it,
        // then every newer rotated file, oldest first, then the new current.
        self.drain_held(&mut out);
        self.end_partial(&mut out);
        for file in newer.into_iter().rev() {
            read_whole(file, &mut out);
        }
        self.held = Some(current);
        self.old_identities.clear();
        self.drain_held(&mut out);
        out
    }

    /// Opens the current file, lists the rotated files newer than the held
    /// one, and checks that no rotation happened meanwhile (retrying if one
    /// did).
    fn scan(&self) -> Scan {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = open_current(&self.path);
            let current_inode = current.as_ref().map(|current| current.inode);
            if let (Some(held), Some(inode)) = (&self.held, current_inode) {
                if held.inode == inode {
                    return Scan::Unchanged;
                }
            }
            if current.is_none() && self.held.is_none() {
                return Scan::Unchanged;
            }
            let newer = self.newer_rotated();
            let still_current = open_no_follow(&self.path)
                .ok()
                .and_then(|file| file.metadata().ok())
                .map(|metadata| metadata.ino());
            if still_current == current_inode || attempt >= SCAN_ATTEMPTS {
                return Scan::Rotated { current, newer };
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Rotated files newer than the held one, newest first: scanning names
    /// upwards, up to the held file's identity (all of them if it is gone:
    /// older files are deleted before newer ones).
    fn newer_rotated(&self) -> Vec<Newer> {
        // One more index than listed: a rotation during the scan shifts
        // everything up by one (and is then caught by the caller's check).
        let highest = rotated_files(&self.path)
            .iter()
            .map(|rotated| rotated.index)
            .max()
            .unwrap_or(0);
        let mut newer = Vec::new();
        for index in 1..=highest.saturating_add(1) {
            // Plain before compressed: the compressor creates `.N.gz`
            // before it removes `.N`, so one of the two is always found.
            let mut plain_identity = None;
            for compressed in [false, true] {
                let Ok(file) = open_no_follow(&rotated_path(&self.path, index, compressed)) else {
                    continue;
                };
                let identity = identity_of(&file, compressed);
                if let (Some(held), Some(identity)) = (&self.held, identity) {
                    if held.inode == identity {
                        return newer;
                    }
                }
                if compressed && identity.is_some() && identity == plain_identity {
                    // The `.gz` twin of the plain file just listed.
                    continue;
                }
                // Only the held file's identity is unique: another file's
                // inode may have been freed and reused. So twins are told
                // apart only at the same index, and old files (when there
                // was no current file at the start) only by the identities
                // noted then.
                if identity.is_some_and(|identity| self.old_identities.contains(&identity)) {
                    continue;
                }
                if !compressed {
                    plain_identity = identity;
                }
                newer.push(Newer { file, compressed });
            }
        }
        newer
    }

    /// Reads the held file from where it was to its end.
    fn drain_held(&mut self, out: &mut Vec<LogLine>) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        let mut bytes = Vec::new();
        if held.file.read_to_end(&mut bytes).is_err() || bytes.is_empty() {
            return;
        }
        self.partial.extend_from_slice(&bytes);
        if let Some(last_newline) = memchr::memrchr(b'\n', &self.partial) {
            let complete: Vec<u8> = self.partial.drain(..=last_newline).collect();
            push_lines(&complete, out);
        }
    }

    /// A finished file's last bytes without a newline are a line of their
    /// own (the writer always ends lines; this is for foreign damage).
    fn end_partial(&mut self, out: &mut Vec<LogLine>) {
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            push_lines(&std::mem::take(&mut self.partial), out);
        }
    }
}

/// The current file; a rotation leaves none for a moment, so look again.
fn open_current_patiently(path: &std::path::Path) -> Option<Held> {
    (0..3).find_map(|attempt| {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        open_current(path)
    })
}

/// The current file, opened, with its inode.
fn open_current(path: &std::path::Path) -> Option<Held> {
    let file = open_no_follow(path).ok()?;
    let inode = file.metadata().ok()?.ino();
    Some(Held { file, inode })
}

/// The inode of the plain file whose bytes `file` holds.
fn identity_of(file: &File, compressed: bool) -> Option<u64> {
    if compressed {
        gz_source_inode(file)
    } else {
        file.metadata().ok().map(|metadata| metadata.ino())
    }
}

fn read_whole(mut newer: Newer, out: &mut Vec<LogLine>) {
    let reader: Box<dyn Read> = if newer.compressed {
        // Reading the header moved the offset.
        if newer.file.seek(SeekFrom::Start(0)).is_err() {
            return;
        }
        Box::new(MultiGzDecoder::new(newer.file))
    } else {
        Box::new(newer.file)
    };
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                push_lines(&line, out);
            }
        }
    }
}

/// Pushes each newline-terminated line of `bytes`.
fn push_lines(bytes: &[u8], out: &mut Vec<LogLine>) {
    for line in bytes.split_inclusive(|byte| *byte == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        out.push(split_timestamp(&String::from_utf8_lossy(line)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Following across the daemon writer's rotations is tested beside the
    // writer (roster-daemon's logs/follow_tests.rs).

    #[test]
    fn follows_from_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut follower = Follower::at_end(path.clone());
        assert!(follower.poll().is_empty());
        std::fs::write(&path, "one\ntwo\n").expect("write");
        let texts: Vec<String> = follower.poll().into_iter().map(|line| line.text).collect();
        assert_eq!(texts, ["one", "two"]);
    }
}
