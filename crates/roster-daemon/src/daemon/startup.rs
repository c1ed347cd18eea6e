//! Start-up chores: the home's lock, limits, processes an earlier daemon
//! left behind, and telling systemd we are ready.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use roster_core::api::EventKind;

use super::error::DaemonError;
use crate::home::{Home, HomeDir, HomeLock, LockOutcome};
use crate::journal::{Journal, Row};
use crate::{procfs, spawn};

pub fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_path_buf();
    move |source| DaemonError::Io { what, path, source }
}

/// What a running daemon holds: the home directory's lock, and the lock on
/// `daemon.lock` that daemons before the directory lock took (so an older
/// daemon of the same home is still noticed).
pub struct DaemonLock {
    _home: HomeLock,
    _pid_file: Flock<File>,
}

/// Takes the home's one-per-home lock: an exclusive `flock` on the home
/// directory itself (deleting `daemon.lock` cannot release it), then writes
/// the pid into `daemon.lock` for people and tools.
pub fn take_lock(home_dir: &HomeDir) -> Result<DaemonLock, DaemonError> {
    let home = home_dir.home();
    let already_running = |home: &Home| DaemonError::AlreadyRunning {
        home: home.root().to_path_buf(),
        pid: read_pid(home_dir),
    };
    let directory = match home_dir.try_lock()? {
        LockOutcome::Taken(lock) => lock,
        LockOutcome::Held => return Err(already_running(home)),
    };
    let path = home.lock();
    let file = home_dir.open_file("daemon.lock", OFlag::O_RDWR | OFlag::O_CREAT, 0o600)?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => file,
        Err((_, Errno::EWOULDBLOCK)) => return Err(already_running(home)),
        Err((_, errno)) => {
            return Err(DaemonError::Io {
                what: "locking",
                path,
                source: errno.into(),
            })
        }
    };
    file.set_len(0)
        .map_err(io_error("writing the lock", &path))?;
    write!(*file, "{}", std::process::id()).map_err(io_error("writing the lock", &path))?;
    Ok(DaemonLock {
        _home: directory,
        _pid_file: file,
    })
}

fn read_pid(home_dir: &HomeDir) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Ok(mut file) = home_dir.open_file("daemon.lock", OFlag::O_RDONLY, 0) {
        let _ = (&mut file).take(64).read_to_string(&mut text);
    }
    let pid = text.trim();
    if pid.is_empty() || !pid.bytes().all(|byte| byte.is_ascii_digit()) {
        "unknown".to_owned()
    } else {
        pid.to_owned()
    }
}

/// Stops processes an earlier daemon of this home started and left behind
/// (it was killed): they cannot be adopted, since their output pipe died with
/// it, so they are stopped, and the config then starts fresh copies. This
/// keeps "never a second copy beside an unmanaged one".
pub fn stop_stale_processes(home: &Home, journal: &Journal) {
    let home_text = home.root().display().to_string();
    let stale = procfs::processes_of_home_of(&home_text, &agent_uids(home));
    if stale.is_empty() {
        return;
    }
    for (pid, agent) in &stale {
        journal.record(Row::now(
            Some(agent),
            EventKind::StaleStopped,
            Some(*pid),
            format!("pid {pid} was left by an earlier daemon: stopping it"),
        ));
        spawn::signal_process(*pid, libc::SIGTERM);
        let _ = spawn::signal_group(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = |pid: u32| procfs::sample(pid).is_some() && !is_zombie(pid);
    while Instant::now() < deadline && stale.iter().any(|(pid, _)| alive(*pid)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (pid, _) in &stale {
        if alive(*pid) {
            spawn::signal_process(*pid, libc::SIGKILL);
            let _ = spawn::signal_group(*pid, libc::SIGKILL);
        }
    }
    // SIGKILL takes effect a moment later; until then the processes hold
    // what the config is about to take again (a listening socket's address).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && stale.iter().any(|(pid, _)| alive(*pid)) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The file where the daemon lists the uids its agents run as (besides
/// its own), so that the next daemon recognises agents a killed one left
/// running as other users.
pub const AGENT_UIDS: &str = "agent-uids";

/// The uids in [`AGENT_UIDS`].
pub fn agent_uids(home: &Home) -> Vec<u32> {
    home.open_verified()
        .ok()
        .and_then(|dir| {
            use std::io::Read;
            let mut file = dir
                .open_file(AGENT_UIDS, nix::fcntl::OFlag::O_RDONLY, 0)
                .ok()?;
            let mut text = String::new();
            Read::by_ref(&mut file)
                .take(64 * 1024)
                .read_to_string(&mut text)
                .ok()?;
            Some(text)
        })
        .map(|text| {
            text.lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|text| {
            text.rfind(')')
                .map(|index| text[index + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Each agent costs the daemon two descriptors (its pipe and its log file):
/// lift the soft limit to the hard one so a thousand agents fit.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        crate::sys::remember_agent_open_file_limit(soft, hard);
        if soft < hard {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("could not raise the open-file limit from {soft}: {error}");
            }
        }
    }
}

/// `READY=1` to systemd when it started us as `Type=notify` (nothing when
/// `NOTIFY_SOCKET` is unset). The variable stays for later notifications;
/// agents never see it (see `spawn::DAEMON_ONLY_VARIABLES`).
pub fn notify_systemd_ready() {
    if let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("could not notify systemd: {error}");
    }
}

/// `STOPPING=1`: the daemon is stopping its agents (systemd shows it).
pub fn notify_systemd_stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

/// How often to send `WATCHDOG=1`: half the unit's `WatchdogSec`, when it
/// sets one for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
        .then(|| Duration::from_micros(usec / 2))
}

/// `WATCHDOG=1`: the loop is alive.
pub fn notify_systemd_watchdog() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
}

/// A short stable name for a home, so that two homes' cgroups differ:
/// its path and the directory itself (device and inode), so that two
/// homes mounted at the same path in different mount namespaces (hosts
/// sharing one kernel, containers) get trees of their own.
pub fn home_id(home: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let identity = std::fs::metadata(home)
        .map(|meta| format!("\0{}:{}", meta.dev(), meta.ino()))
        .unwrap_or_default();
    for byte in home
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain(identity.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash as u32)
}

/// The admin group named by `ROSTER_ADMIN_GROUP`, if any.
pub fn admin_group() -> Result<Option<u32>, DaemonError> {
    let Ok(name) = std::env::var("ROSTER_ADMIN_GROUP") else {
        return Ok(None);
    };
    if name.is_empty() {
        return Ok(None);
    }
    let group = match name.parse::<u32>() {
        Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)),
        Err(_) => nix::unistd::Group::from_name(&name),
    };
    match group {
        Ok(Some(group)) => Ok(Some(group.gid.as_raw())),
        _ => Err(DaemonError::Config(format!(
            "ROSTER_ADMIN_GROUP names the group {name:?}, which does not exist\n  hint: create it (groupadd -r {name}) or unset ROSTER_ADMIN_GROUP"
        ))),
    }
}
