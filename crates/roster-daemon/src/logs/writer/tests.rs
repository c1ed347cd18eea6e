//! The writer on real files in a temporary directory: framing, cutting,
//! rotation (by size and by day), `keep`, compression, and healing.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::file::LINK_CHECK_MS;
use super::*;
use crate::logs::files::{log_files, read_lines, CUT_MARKER};

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
            ..LogConfig::default()
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
        ..LogConfig::default()
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
    nix::unistd::mkfifo(&dir.path().join("a.log"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
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
