//! Naming and reading of log files: `NAME.log` is current, `NAME.log.1` the
//! newest rotated one (never compressed, so a follower can finish it), and
//! `NAME.log.2.gz` onwards older ones.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// Appended where the writer cut a line longer than 64 KiB; the rest of the
/// line follows on the next one.
pub const CUT_MARKER: &[u8] = b" [roster: line longer than 64 KiB, continued on the next line]";

/// The path of rotated file `index` (1-based), plain or compressed.
pub fn rotated_path(current: &Path, index: u32, compressed: bool) -> PathBuf {
    let mut name = current.as_os_str().to_owned();
    name.push(format!(".{index}"));
    if compressed {
        name.push(".gz");
    }
    PathBuf::from(name)
}

/// One rotated file of an agent's log, as its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotatedFile {
    /// 1 is the newest rotated file.
    pub index: u32,
    /// Whether it is the `.gz` form.
    pub compressed: bool,
    /// Its path.
    pub path: PathBuf,
}

/// Every rotated file of `current` (`NAME.log.N` and `NAME.log.N.gz`), in
/// directory order, twins included.
pub fn rotated_files(current: &Path) -> Vec<RotatedFile> {
    let mut rotated = Vec::new();
    let Some(dir) = current.parent() else {
        return rotated;
    };
    let Some(base) = current.file_name().and_then(|name| name.to_str()) else {
        return rotated;
    };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name
                .strip_prefix(base)
                .and_then(|rest| rest.strip_prefix('.'))
            else {
                continue;
            };
            let (digits, compressed) = match rest.strip_suffix(".gz") {
                Some(digits) => (digits, true),
                None => (rest, false),
            };
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                continue;
            }
            if let Ok(index) = digits.parse::<u32>() {
                rotated.push(RotatedFile {
                    index,
                    compressed,
                    path: dir.join(name),
                });
            }
        }
    }
    rotated
}

/// Every file of one agent's log, oldest first, ending with the current one
/// (if it exists). Where a crash left both `.N` and `.N.gz`, the complete
/// compressed one wins.
pub fn log_files(current: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, bool)> = rotated_files(current)
        .into_iter()
        .map(|file| (file.index, file.compressed))
        .collect();
    rotated.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    rotated.dedup_by_key(|(index, _)| *index);
    let mut files: Vec<PathBuf> = rotated
        .into_iter()
        .map(|(index, compressed)| rotated_path(current, index, compressed))
        .collect();
    if current.exists() {
        files.push(current.to_path_buf());
    }
    files
}

/// The gzip header comment of a compressed log names the inode of the plain
/// file it was made from, so that a follower holding that file open can
/// find where its bytes went (see `follow.rs`).
pub const SOURCE_INODE_COMMENT: &str = "roster-source-inode=";

/// The inode of the plain file a `.gz` log was compressed from, from its
/// header; `None` for a file without one (written by an older roster).
pub fn gz_source_inode(file: &File) -> Option<u64> {
    let decoder = flate2::bufread::GzDecoder::new(io::BufReader::with_capacity(512, file));
    let comment = decoder.header()?.comment()?;
    std::str::from_utf8(comment)
        .ok()?
        .strip_prefix(SOURCE_INODE_COMMENT)?
        .parse()
        .ok()
}

/// Opens a log file for reading, refusing a symlink at its name: `roster
/// logs` run by root must not print whatever file a link planted in the
/// logs directory points at. (`O_NONBLOCK`, meaningless for regular files,
/// keeps a planted FIFO from hanging the reader.)
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// Opens a log file for reading, decompressing `.gz` ones.
pub fn open_log(path: &Path) -> io::Result<Box<dyn Read>> {
    let file = open_no_follow(path)?;
    if path.extension().is_some_and(|extension| extension == "gz") {
        Ok(Box::new(MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

/// One line read back from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The `2026-...Z` stamp, if the line has one.
    pub time: Option<String>,
    /// The agent's text, without the stamp and the newline.
    pub text: String,
}

/// Splits roster's timestamp prefix off a stored line.
pub fn split_timestamp(line: &str) -> LogLine {
    let bytes = line.as_bytes();
    let looks_stamped = bytes.len() >= 25
        && bytes[4] == b'-'
        && bytes[10] == b'T'
        && bytes[23] == b'Z'
        && bytes[24] == b' '
        && bytes[..4].iter().all(u8::is_ascii_digit);
    if looks_stamped {
        LogLine {
            time: Some(line[..24].to_owned()),
            text: line[25..].to_owned(),
        }
    } else {
        LogLine {
            time: None,
            text: line.to_owned(),
        }
    }
}

/// Calls `each` with every line of `path`, in order.
pub fn for_each_line(path: &Path, mut each: impl FnMut(&str)) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, open_log(path)?);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer)? == 0 {
            return Ok(());
        }
        if buffer.last() == Some(&b'\n') {
            buffer.pop();
        }
        each(&String::from_utf8_lossy(&buffer));
    }
}

/// Like [`for_each_line`], but a plain rotated file that was compressed
/// (and removed) between listing and opening is read from its `.gz` twin.
pub fn for_each_line_or_compressed(path: &Path, mut each: impl FnMut(&str)) -> io::Result<()> {
    match open_log(path) {
        Ok(_) => for_each_line(path, &mut each),
        Err(error)
            if error.kind() == io::ErrorKind::NotFound
                && path.extension().is_some_and(|e| e != "gz" && e != "log") =>
        {
            let mut compressed = path.as_os_str().to_owned();
            compressed.push(".gz");
            for_each_line(Path::new(&compressed), each)
        }
        Err(error) => Err(error),
    }
}

/// The last `count` lines of an agent's log, across rotated files, oldest first.
pub fn read_lines(current: &Path, count: usize) -> io::Result<Vec<LogLine>> {
    read_tail(log_files(current).iter().rev(), count)
}

/// The last `count` lines of an agent's rotated files only, oldest first.
pub fn read_rotated_lines(current: &Path, count: usize) -> io::Result<Vec<LogLine>> {
    read_tail(
        log_files(current)
            .iter()
            .rev()
            .filter(|path| path.as_path() != current),
        count,
    )
}

/// The last `count` lines of `newest_first` files, oldest first.
fn read_tail<'a>(
    newest_first: impl Iterator<Item = &'a PathBuf>,
    count: usize,
) -> io::Result<Vec<LogLine>> {
    let mut collected: Vec<Vec<LogLine>> = Vec::new();
    let mut total = 0;
    for path in newest_first {
        if total >= count {
            break;
        }
        let mut lines = std::collections::VecDeque::new();
        let keep_last = |line: &str| {
            lines.push_back(split_timestamp(line));
            if lines.len() > count {
                lines.pop_front();
            }
        };
        match for_each_line_or_compressed(path, keep_last) {
            Ok(()) => {}
            // The current file rotated away between listing and opening:
            // its lines are in `.1`, which this pass has already read.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        }
        let wanted = count - total;
        let skip = lines.len().saturating_sub(wanted);
        let lines: Vec<LogLine> = lines.into_iter().skip(skip).collect();
        total += lines.len();
        collected.push(lines);
    }
    Ok(collected.into_iter().rev().flatten().collect())
}

/// The file names of `paths`, for assertions.
#[cfg(test)]
pub(crate) fn file_names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
        .collect()
}

/// Deletes the oldest rotated logs (`NAME.log.N`, `NAME.log.N.gz`; never a
/// current `NAME.log`) in `logs` until the filesystem of `watched` is below
/// `percent` used, or none is left. Returns (files removed, bytes, the use
/// after).
pub fn clean_oldest(logs: &Path, watched: &Path, percent: f64) -> (usize, u64, Option<f64>) {
    let mut rotated: Vec<(std::time::SystemTime, PathBuf, u64)> = std::fs::read_dir(logs)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let (_, suffix) = name.split_once(".log.")?;
                    let number = suffix.strip_suffix(".gz").unwrap_or(suffix);
                    number.parse::<u32>().ok()?;
                    // Never follow a link out of the logs directory.
                    let metadata = entry.path().symlink_metadata().ok()?;
                    if !metadata.is_file() {
                        return None;
                    }
                    Some((metadata.modified().ok()?, entry.path(), metadata.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    rotated.sort();
    let mut removed = 0;
    let mut bytes = 0;
    let mut used = crate::disk::used_percent(watched);
    for (_, path, size) in rotated {
        if used.is_some_and(|used| used < percent) {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            removed += 1;
            bytes += size;
            used = crate::disk::used_percent(watched);
        }
    }
    (removed, bytes, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_rotated_files_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let current = dir.path().join("a.log");
        for name in [
            "a.log",
            "a.log.1",
            "a.log.2.gz",
            "a.log.10.gz",
            "a.log.3",
            "a.log.3.gz",
            "ab.log.1",
            "a.log.x",
        ] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        let names = file_names(&log_files(&current));
        assert_eq!(
            names,
            [
                "a.log.10.gz",
                "a.log.3.gz",
                "a.log.2.gz",
                "a.log.1",
                "a.log"
            ]
        );
    }

    #[test]
    fn splits_stamps() {
        let line = split_timestamp("2026-11-28T23:59:01.123Z hello world");
        assert_eq!(line.time.as_deref(), Some("2026-11-28T23:59:01.123Z"));
        assert_eq!(line.text, "hello world");
        assert_eq!(split_timestamp("plain").text, "plain");
    }
}
