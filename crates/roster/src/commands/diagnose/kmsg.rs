//! The kernel log's OOM kills, from `/dev/kmsg`: opened without blocking
//! and read record by record (one `read` is one record) until `EAGAIN` or
//! the deadline; `EPIPE` (a record overwritten while we read) is skipped.
//! Parsing and judging are `roster_core::diagnose::kernel`'s. Where the
//! kernel log cannot be opened (not root under `kernel.dmesg_restrict`, no
//! `/dev/kmsg` in a container) the collector is recorded as skipped with
//! the reason; it never fails diagnose.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::time::{clock_gettime, ClockId};

use roster_core::diagnose::kernel::oom_kills;
use roster_core::diagnose::KernelOom;

/// What reading the kernel log gave.
pub enum KernelLog {
    /// The kills in the window (`cut` when the deadline came first).
    Read { kills: Vec<KernelOom>, cut: bool },
    /// Not read, and why.
    Skipped(String),
}

/// Microseconds on the clock `/dev/kmsg` stamps records with. Kernel log
/// times do not advance while the machine is suspended, like
/// CLOCK_MONOTONIC (CLOCK_BOOTTIME would move the window's start later
/// than the records' after a suspend, and lose kills).
fn now_usec() -> Option<u64> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).ok()?;
    let secs = u64::try_from(now.tv_sec()).ok()?;
    let nanos = u64::try_from(now.tv_nsec()).ok()?;
    Some(secs * 1_000_000 + nanos / 1000)
}

/// The OOM kills the kernel logged within `since`, read until `deadline`.
pub fn read(since: Duration, deadline: Instant) -> KernelLog {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open("/dev/kmsg")
    {
        Ok(file) => file,
        Err(error) if matches!(error.kind(), ErrorKind::PermissionDenied) => {
            return KernelLog::Skipped(format!(
                "/dev/kmsg cannot be read ({error}): run diagnose as root, or set kernel.dmesg_restrict=0"
            ))
        }
        Err(error) => {
            return KernelLog::Skipped(format!("/dev/kmsg cannot be opened: {error}"));
        }
    };
    let Some(now) = now_usec() else {
        return KernelLog::Skipped("the monotonic clock cannot be read".into());
    };
    let since_usec = now.saturating_sub(u64::try_from(since.as_micros()).unwrap_or(u64::MAX));
    let boot_ms = roster_store::clock::unix_millis() - (now / 1000) as i64;
    let (records, cut) = records(file, deadline);
    let mut kills = oom_kills(records.iter().map(String::as_str), since_usec);
    for kill in &mut kills {
        kill.time = Some(roster_store::clock::rfc3339_millis(
            boot_ms + (kill.usec / 1000) as i64,
        ));
    }
    KernelLog::Read { kills, cut }
}

/// The records that may be OOM lines (the rest are dropped as read, so a
/// large ring buffer costs no memory), and whether the deadline cut them.
fn records(mut file: std::fs::File, deadline: Instant) -> (Vec<String>, bool) {
    // A record is at most 8 KiB with its dictionary; a smaller buffer
    // makes read fail with EINVAL.
    let mut buffer = vec![0u8; 16 * 1024];
    let mut kept = Vec::new();
    loop {
        if Instant::now() >= deadline {
            return (kept, true);
        }
        match file.read(&mut buffer) {
            Ok(0) => return (kept, false),
            Ok(read) => {
                let text = String::from_utf8_lossy(&buffer[..read]);
                if text.contains("Killed process") || text.contains("oom-kill:") {
                    kept.push(text.into_owned());
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return (kept, false),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            // EPIPE: the record we were at was overwritten; the next read
            // goes on from the oldest one left.
            Err(error) if error.raw_os_error() == Some(nix::libc::EPIPE) => {}
            Err(_) => return (kept, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_log_is_read_or_skipped_without_blocking() {
        let started = Instant::now();
        match read(
            Duration::from_secs(3600),
            Instant::now() + Duration::from_secs(2),
        ) {
            KernelLog::Read { kills, .. } => {
                assert!(kills.iter().all(|kill| kill.time.is_some()), "{kills:?}")
            }
            KernelLog::Skipped(reason) => assert!(reason.contains("/dev/kmsg"), "{reason}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "it never blocks"
        );
    }
}
