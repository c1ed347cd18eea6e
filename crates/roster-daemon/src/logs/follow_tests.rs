//! The follower (roster-store) against the writer that rotates under it:
//! every line once, in order, however often the writer rotates.

use crate::logs::LogWriter;
use roster_core::LogConfig;
use roster_store::logs::follow::Follower;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// A writer rotating (and compressing) many times between two polls,
/// and a follower polling while it does: every line once, in order.
fn follow_many_rotations(compress: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.log");
    let mut writer = LogWriter::open(
        "a",
        path.clone(),
        LogConfig {
            max_size: 4096,
            keep: 1000,
            compress,
            ..LogConfig::default()
        },
        Arc::new(AtomicU64::new(0)),
    );
    let mut pending = Vec::new();
    writer.write(&mut pending, b"before\n", 1_795_910_341_123);
    let mut follower = Follower::at_end(path.clone());
    let mut seen: Vec<String> = Vec::new();
    let total = 30_000;
    for index in 0..total {
        let line = format!("line {index:06}\n");
        writer.write(&mut pending, line.as_bytes(), 1_795_910_341_123);
        // Irregular polls: sometimes after dozens of rotations.
        if index % 7_919 == 0 || index % 263 == 0 {
            seen.extend(follower.poll().into_iter().map(|line| line.text));
        }
    }
    writer.close();
    seen.extend(follower.poll().into_iter().map(|line| line.text));
    let expected: Vec<String> = (0..total).map(|index| format!("line {index:06}")).collect();
    assert!(
        crate::logs::log_files(&path).len() > 50,
        "expected many rotations"
    );
    assert_eq!(seen.len(), expected.len(), "lines lost or doubled");
    assert!(seen == expected, "lines out of order");
}

#[test]
fn follows_across_compressed_rotations() {
    follow_many_rotations(true);
}

#[test]
fn follows_across_plain_rotations() {
    follow_many_rotations(false);
}

#[test]
fn the_tail_and_the_follow_meet_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.log");
    let mut writer = LogWriter::open(
        "a",
        path.clone(),
        LogConfig {
            max_size: 4096,
            keep: 100,
            compress: true,
            ..LogConfig::default()
        },
        Arc::new(AtomicU64::new(0)),
    );
    let mut pending = Vec::new();
    for index in 0..500 {
        let line = format!("line {index:06}\n");
        writer.write(&mut pending, line.as_bytes(), 1_795_910_341_123);
    }
    // A line half written when following starts.
    writer.write(&mut pending, b"line 000500", 1_795_910_341_123);
    let (mut follower, tail) = Follower::with_tail(path.clone(), 300).expect("tail");
    let mut seen: Vec<String> = tail.into_iter().map(|line| line.text).collect();
    assert_eq!(seen.len(), 300, "the tail spans rotated files");
    writer.write(&mut pending, b"\n", 1_795_910_341_123);
    for index in 501..1000 {
        let line = format!("line {index:06}\n");
        writer.write(&mut pending, line.as_bytes(), 1_795_910_341_123);
    }
    writer.close();
    seen.extend(follower.poll().into_iter().map(|line| line.text));
    let expected: Vec<String> = (200..1000)
        .map(|index| format!("line {index:06}"))
        .collect();
    assert_eq!(seen, expected);
}
