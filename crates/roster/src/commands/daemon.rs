//! `roster daemon` (foreground), starting a background daemon for `up`, and
//! `roster down`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use nix::fcntl::OFlag;

use roster_daemon::DaemonOptions;
use roster_store::home::HomeDir;
use roster_store::Home;

use crate::client::Reach;

/// Runs the daemon in the foreground; its log goes to stderr. With
/// `detach` (what `roster up` asks for) it first leaves the caller's session,
/// so closing that terminal does not stop the agents.
pub fn run(home: &Home, file: Option<&Path>, detach: bool) -> Result<ExitCode> {
    if detach {
        nix::unistd::setsid().context("detaching from the terminal (setsid)")?;
    }
    init_tracing();
    let config = file.map(super::config_path).transpose()?;
    roster_daemon::run(DaemonOptions {
        home: home.root().to_path_buf(),
        config,
    })?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LossyStderr)
        .with_ansi(false)
        // On a failed write tracing-subscriber would `eprintln!` a
        // complaint, and `eprintln!` panics when stderr cannot be written.
        .log_internal_errors(false)
        .try_init();
}

/// The daemon's own log: stderr, which `roster up` points at
/// `<home>/daemon.log`. That file often sits on the disk the agents fill,
/// so a failed write (ENOSPC, EIO, EPIPE) is counted and forgotten: the
/// daemon's log is never a reason to stop supervising.
struct LossyStderr;

/// Daemon log writes that failed.
static LOST_LOG_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl std::io::Write for LossyStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        let mut stderr = std::io::stderr().lock();
        let lost = LOST_LOG_WRITES.swap(0, Ordering::Relaxed);
        if lost > 0 {
            // Say so once the log can be written again.
            let note = format!("roster: {lost} daemon log message(s) could not be written\n");
            if stderr.write_all(note.as_bytes()).is_err() {
                LOST_LOG_WRITES.fetch_add(lost, Ordering::Relaxed);
            }
        }
        if stderr.write_all(bytes).is_err() {
            LOST_LOG_WRITES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'writer> tracing_subscriber::fmt::MakeWriter<'writer> for LossyStderr {
    type Writer = LossyStderr;

    fn make_writer(&'writer self) -> Self::Writer {
        LossyStderr
    }
}

/// Starts a background daemon for `home` unless one answers already.
///
/// Several `roster up` may race on one home: each may start a daemon, one of
/// them takes the home's lock and the others exit. Losing that race is not a
/// failure: the caller then waits for the winner to answer.
pub fn ensure_running(home: &Home) -> Result<()> {
    let client = super::client(home);
    if matches!(client.reach(), Reach::Up) {
        return Ok(());
    }
    let home_dir = home.create_verified()?;
    let log_path = home.daemon_log();
    let log = home_dir.open_file(
        "daemon.log",
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
        0o600,
    )?;
    let log_for_stderr = log
        .try_clone()
        .with_context(|| format!("duplicating the descriptor of {}", log_path.display()))?;
    let executable = std::env::current_exe().context("finding the roster executable")?;
    let mut command = Command::new(executable);
    command
        .arg("daemon")
        .arg("--detach")
        .arg("--home")
        .arg(home.root())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_stderr));
    let mut child = Some(command.spawn().context("starting the roster daemon")?);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if matches!(client.reach(), Reach::Up) {
            return Ok(());
        }
        if let Some(status) = child
            .as_mut()
            .map(|child| child.try_wait())
            .transpose()?
            .flatten()
        {
            child = None;
            // Another daemon holds the lock: ours lost the race to start
            // (or found one starting); wait for that one to answer.
            if !home.is_locked()? {
                if matches!(client.reach(), Reach::Up) {
                    return Ok(());
                }
                bail!(
                    "the roster daemon exited at start ({status}); its log {} ends with:\n{}",
                    log_path.display(),
                    log_tail(&home_dir, 5)
                );
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the roster daemon did not answer within 15 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn log_tail(home_dir: &HomeDir, count: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = home_dir.open_file("daemon.log", OFlag::O_RDONLY, 0) {
        let _ = file.read_to_string(&mut text);
    }
    let tail: Vec<&str> = text.lines().rev().take(count).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Whether a daemon holds the home's lock (the home directory itself).
pub fn daemon_alive(home: &Home) -> Result<bool> {
    Ok(home.is_locked()?)
}

/// Runs `roster down`: stop everything, wait until the daemon is gone.
pub fn down(home: &Home) -> Result<ExitCode> {
    let client = super::client(home);
    if client.raw("POST", "/v1/shutdown", None)?.is_none() {
        if daemon_alive(home)? {
            bail!(
                "a daemon holds the lock of {} but does not answer on its socket",
                home.root().display()
            );
        }
        println!("no roster daemon runs for {}", home.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let mut said = false;
    while daemon_alive(home)? {
        if !said && started.elapsed() > Duration::from_secs(2) {
            eprintln!("waiting for agents to stop (each gets its stop_timeout, then SIGKILL)...");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "stopped every agent and the daemon ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
