//! Start-up chores: the home's lock, limits, processes an earlier daemon
//! left behind, and telling systemd we are ready.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::DaemonError;
use crate::home::Home;
use crate::journal::{Journal, Row};
use crate::{procfs, spawn};

pub fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_path_buf();
    move |source| DaemonError::Io { what, path, source }
}

#[allow(unsafe_code)]
pub fn take_lock(home: &Home) -> Result<File, DaemonError> {
    let path = home.lock();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_error("opening the lock", &path))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .trim()
            .to_owned();
        return Err(DaemonError::AlreadyRunning {
            home: home.root().to_path_buf(),
            pid,
        });
    }
    file.set_len(0)
        .map_err(io_error("writing the lock", &path))?;
    write!(file, "{}", std::process::id()).map_err(io_error("writing the lock", &path))?;
    Ok(file)
}

/// Stops processes an earlier daemon of this home started and left behind
/// (it was killed): they cannot be adopted, since their output pipe died with
/// it, so they are stopped, and the config then starts fresh copies. This
/// keeps "never a second copy beside an unmanaged one".
pub fn stop_stale_processes(home: &Home, journal: &Journal) {
    let home_text = home.root().display().to_string();
    let stale = procfs::processes_of_home(&home_text);
    if stale.is_empty() {
        return;
    }
    for (pid, agent) in &stale {
        journal.record(Row::now(
            Some(agent),
            "stale_stopped",
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
