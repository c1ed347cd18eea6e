//! Starting and signalling agent processes, and reaping every child.
//!
//! Reaping design: the daemon loop is the only caller of `waitpid`, with
//! `-1` (any child), on SIGCHLD (read from a signalfd). tokio's process
//! module is never used, so nothing else competes for exit statuses;
//! spawning happens on the same thread, so a pid is always registered
//! before its exit can be reaped.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use roster_core::{AgentName, AgentSpec, ExitStatus};

/// Starts one agent as the leader of its own process group (so its pid is
/// its process-group id), with stdout and stderr on `log_pipe`, stdin on
/// /dev/null, an empty signal mask and default signal dispositions.
///
/// It calls posix_spawn directly rather than through std's `Command`: the
/// daemon blocks the signals its loop reads from a signalfd, and a child
/// must not inherit that mask (std's posix_spawn path keeps it), while a
/// `pre_exec` hook would force the slower fork path. posix_spawn in glibc
/// is a vfork-like clone: no page tables are copied.
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
    let Some(program) = spec.command.first() else {
        return Err("the command is empty".into());
    };
    let environment = environment(name, spec, home);
    let search_path = environment
        .iter()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone());
    let executable = resolve_program(program, &spec.cwd, search_path.as_deref())?;
    let c_string = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| format!("{program}: an argument contains a NUL byte"))
    };
    let c_executable = c_string(executable.as_os_str().as_bytes())?;
    let c_cwd = c_string(spec.cwd.as_os_str().as_bytes())?;
    let c_arguments = spec
        .command
        .iter()
        .map(|argument| c_string(argument.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let c_environment = environment
        .iter()
        .map(|(key, value)| {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            c_string(&entry)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv: Vec<*mut libc::c_char> = c_arguments
        .iter()
        .map(|argument| argument.as_ptr() as *mut _)
        .collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = c_environment
        .iter()
        .map(|entry| entry.as_ptr() as *mut _)
        .collect();
    envp.push(std::ptr::null_mut());

    let failed = |what: &str, code: libc::c_int| {
        format!("{program}: {what}: {}", io::Error::from_raw_os_error(code))
    };
    // SAFETY: every pointer handed to libc points into a CString, a Vec or
    // a local that outlives the calls; the attribute and file-action objects
    // are initialised before use and destroyed on every path.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attributes: libc::posix_spawnattr_t = std::mem::zeroed();
        let code = libc::posix_spawn_file_actions_init(&mut actions);
        if code != 0 {
            return Err(failed("posix_spawn_file_actions_init", code));
        }
        let code = libc::posix_spawnattr_init(&mut attributes);
        if code != 0 {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(failed("posix_spawnattr_init", code));
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        let mut defaults: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigemptyset(&mut defaults);
        // Rust ignores SIGPIPE; an ignored disposition would survive exec.
        libc::sigaddset(&mut defaults, libc::SIGPIPE);
        let flags = (libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
        let log_fd = log_pipe.as_raw_fd();
        let steps = [
            (
                "adddup2 stdout",
                libc::posix_spawn_file_actions_adddup2(&mut actions, log_fd, 1),
            ),
            (
                "adddup2 stderr",
                libc::posix_spawn_file_actions_adddup2(&mut actions, log_fd, 2),
            ),
            (
                "addopen /dev/null",
                libc::posix_spawn_file_actions_addopen(
                    &mut actions,
                    0,
                    c"/dev/null".as_ptr(),
                    libc::O_RDONLY,
                    0,
                ),
            ),
            (
                "addchdir",
                libc::posix_spawn_file_actions_addchdir_np(&mut actions, c_cwd.as_ptr()),
            ),
            (
                "setflags",
                libc::posix_spawnattr_setflags(&mut attributes, flags),
            ),
            (
                "setpgroup",
                libc::posix_spawnattr_setpgroup(&mut attributes, 0),
            ),
            (
                "setsigmask",
                libc::posix_spawnattr_setsigmask(&mut attributes, &empty),
            ),
            (
                "setsigdefault",
                libc::posix_spawnattr_setsigdefault(&mut attributes, &defaults),
            ),
        ];
        let mut result = match steps.iter().find(|(_, code)| *code != 0) {
            Some((what, code)) => Err(failed(what, *code)),
            None => Ok(0),
        };
        if result.is_ok() {
            let mut pid: libc::pid_t = 0;
            let code = libc::posix_spawn(
                &mut pid,
                c_executable.as_ptr(),
                &actions,
                &attributes,
                argv.as_ptr(),
                envp.as_ptr(),
            );
            result = if code == 0 {
                Ok(pid as u32)
            } else {
                Err(format!("{program}: {}", io::Error::from_raw_os_error(code)))
            };
        }
        libc::posix_spawnattr_destroy(&mut attributes);
        libc::posix_spawn_file_actions_destroy(&mut actions);
        result
    }
}

/// The agent's environment: the daemon's own, then the config's `env`
/// (with `PYTHONUNBUFFERED=1` unless set), then roster's markers.
fn environment(name: &AgentName, spec: &AgentSpec, home: &Path) -> Vec<(OsString, OsString)> {
    let mut environment: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (key, value) in spec.environment() {
        environment.insert(key.into(), value.into());
    }
    environment.insert("ROSTER_HOME".into(), home.as_os_str().to_owned());
    environment.insert("ROSTER_AGENT".into(), name.as_str().into());
    environment.into_iter().collect()
}

/// Finds the program the way a shell would: a name with a `/` is a path
/// (relative to the agent's directory), any other name is looked up in PATH.
fn resolve_program(
    program: &str,
    cwd: &Path,
    search_path: Option<&OsStr>,
) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let search_path = search_path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    for directory in std::env::split_paths(search_path) {
        let directory = if directory.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            directory
        };
        let candidate = cwd.join(directory).join(program);
        let executable = nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok();
        if executable && candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "{program}: not found in PATH ({})",
        search_path.to_string_lossy()
    ))
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
