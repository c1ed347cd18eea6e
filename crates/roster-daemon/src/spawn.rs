//! Starting and signalling agent processes, and reaping every child.
//!
//! Reaping design: the daemon loop is the only caller of `waitpid`, with
//! `-1` (any child), on SIGCHLD. tokio's process module is never used, so
//! nothing else competes for exit statuses; spawning happens on the same
//! task, so a pid is always registered before its exit can be reaped.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use roster_core::{AgentName, AgentSpec, ExitStatus};

/// Starts one agent in its own session (so its pid is its process-group id),
/// with stdout and stderr on `log_pipe` and stdin on /dev/null.
pub fn spawn_agent(
    name: &AgentName,
    spec: &AgentSpec,
    home: &Path,
    log_pipe: &OwnedFd,
) -> Result<u32, String> {
    if !spec.cwd.is_dir() {
        return Err(format!(
            "working directory {} does not exist (set `cwd` in the config)",
            spec.cwd.display()
        ));
    }
    let (program, arguments) = match spec.command.split_first() {
        Some(split) => split,
        None => return Err("the command is empty".into()),
    };
    let stdout = log_pipe
        .try_clone()
        .map_err(|error| format!("log pipe: {error}"))?;
    let stderr = log_pipe
        .try_clone()
        .map_err(|error| format!("log pipe: {error}"))?;
    let mut command = Command::new(program);
    command
        .args(arguments)
        .current_dir(&spec.cwd)
        .envs(spec.environment())
        .env("ROSTER_HOME", home)
        .env("ROSTER_AGENT", name.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    // Its own process group (pgid == pid), so signals reach the whole
    // tree. A group, not a session: with no pre_exec hook std can use
    // posix_spawn (vfork-like, no page-table copy), which halves the
    // fork-to-exec time; the daemon has no controlling terminal to detach
    // from when `roster up` started it (that one is a session leader).
    command.process_group(0);
    match command.spawn() {
        // Dropping the Child neither waits nor kills: the loop reaps it.
        Ok(child) => Ok(child.id()),
        Err(error) => Err(format!("{program}: {error}")),
    }
}

/// Sends `signal` to the process group led by `pid`. A group that is already
/// gone is not an error.
pub fn signal_group(pid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) with a negative pid addresses a process group; no memory is involved.
    let result = unsafe { libc::kill(-(pid as i32), signal) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(error)
    }
}

/// Sends `signal` to one process; a process that is gone is not an error.
pub fn signal_process(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a positive pid; no memory is involved.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// Reaps one exited child, if any: `Some((pid, status))`.
pub fn reap_one() -> Option<(u32, ExitStatus)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes only to `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            let exit = if libc::WIFEXITED(status) {
                ExitStatus::Code(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                ExitStatus::Signal(libc::WTERMSIG(status))
            } else {
                continue;
            };
            return Some((pid as u32, exit));
        }
        if pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// Makes this process a child subreaper: orphans of its descendants
/// (double-forked daemons) become its children, so they can be stopped and
/// reaped instead of escaping to init.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A pipe for an agent's output: (read end, write end), both close-on-exec,
/// with a larger buffer where the kernel allows it (fewer wake-ups under a
/// flood).
pub fn log_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let _ = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1024 * 1024));
    Ok((read, write))
}
