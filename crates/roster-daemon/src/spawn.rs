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

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal as NixSignal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use roster_core::{AgentName, AgentSpec, ExitStatus};

mod shim;
pub use shim::{exec_shim, read_shim_report, SHIM_ARG};

/// The PATH an agent that runs as another user gets unless its own
/// environment (`env`, `env_file`, secrets) sets one: systemd's default
/// for services, not the daemon's. A root shell's PATH often begins with
/// directories only root can enter (a pyenv under /root).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A process started for an agent.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid (the agent's, once the exec shim, if any, has become it).
    pub pid: u32,
    /// For a start through the exec shim: the read end of the pipe on
    /// which the shim says why it could not become the agent (nothing is
    /// written when it did). Read it with [`read_shim_report`] once the
    /// pid is reaped; until then it costs one descriptor.
    pub report: Option<OwnedFd>,
}

/// Where a process's stdout and stderr go: the write ends of its log pipes.
#[derive(Clone, Copy, Debug)]
pub struct Output<'a> {
    /// Stdout's, and stderr's too unless `stderr` is set.
    pub stdout: &'a OwnedFd,
    /// A pipe of its own for stderr (`stderr = "separate"`).
    pub stderr: Option<&'a OwnedFd>,
}

impl<'a> Output<'a> {
    /// Stdout and stderr on one descriptor, in their order.
    pub fn merged(both: &'a OwnedFd) -> Self {
        Output {
            stdout: both,
            stderr: None,
        }
    }

    fn stderr_fd(&self) -> std::os::fd::RawFd {
        self.stderr.unwrap_or(self.stdout).as_raw_fd()
    }
}

/// Starts one agent as the leader of its own process group (so its pid is
/// its process-group id), with stdout and stderr on `output`, stdin on
/// /dev/null, an empty signal mask and default signal dispositions.
///
/// It calls posix_spawn directly rather than through std's `Command`: the
/// daemon blocks the signals its loop reads from a signalfd, and a child
/// must not inherit that mask (std's posix_spawn path keeps it), while a
/// `pre_exec` hook would force the slower fork path. posix_spawn in glibc
/// is a vfork-like clone: no page tables are copied.
///
/// An agent that runs as another user is started through the exec shim
/// with its program's name, not a path: the shim looks it up in the
/// agent's PATH after it has become that user, so the program is the one
/// that user finds and may run, and a directory or program the user
/// cannot reach is reported through [`Spawned::report`].
pub fn spawn_agent(
    name: &AgentName,
    spec: &AgentSpec,
    home: &Path,
    output: Output<'_>,
    launch: &Launch,
) -> Result<Spawned, String> {
    let cwd = launch.cwd.as_deref().unwrap_or(&spec.cwd);
    if !cwd.is_dir() {
        return Err(format!(
            "working directory {} does not exist (set `cwd` in the config)",
            cwd.display()
        ));
    }
    let switches_user = launch.user.is_some();
    let mut environment = environment(
        name,
        spec,
        home,
        &launch.environment,
        launch.helper_run.as_deref(),
        switches_user,
    );
    if !launch.needs_shim() {
        let pid = spawn_in_group(&spec.command, cwd, &environment, output, &[], false)?;
        return Ok(Spawned { pid, report: None });
    }
    if !launch.sockets.is_empty() {
        let names: Vec<&str> = launch
            .sockets
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        environment.push(("LISTEN_FDS".into(), launch.sockets.len().to_string().into()));
        environment.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
    }
    let Some(program) = spec.command.first() else {
        return Err("the command is empty".into());
    };
    let executable = if switches_user {
        // Looked up by the shim, as the user (see above).
        PathBuf::from(program)
    } else {
        let search_path = environment
            .iter()
            .rev()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.clone());
        resolve_program(program, cwd, search_path.as_deref())?
    };
    // The shim's report pipe: its write end goes to the shim as the fd
    // after the sockets; the source is kept above the sockets' targets so
    // no dup2 of theirs overwrites it first.
    let (report_read, report_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|errno| format!("creating the exec shim's report pipe: {errno}"))?;
    let report_write = crate::sys::dup_above(&report_write, crate::listen::KEEP_ABOVE)
        .map_err(|error| format!("creating the exec shim's report pipe: {error}"))?;
    let report_fd = 3 + launch.sockets.len();
    let mut argv = vec![
        "roster".to_owned(),
        SHIM_ARG.to_owned(),
        "--report".to_owned(),
        report_fd.to_string(),
    ];
    argv.extend(launch.shim_options());
    argv.push("--".to_owned());
    argv.push(executable.to_string_lossy().into_owned());
    argv.extend(spec.command.iter().cloned());
    let mut fds: Vec<i32> = launch.sockets.iter().map(|(_, fd)| *fd).collect();
    fds.push(report_write.as_raw_fd());
    let pid = spawn_in_group(&argv, cwd, &environment, output, &fds, true)?;
    Ok(Spawned {
        pid,
        report: Some(report_read),
    })
}

/// How one process of an agent is started, beyond its spec: where (the
/// release's directory for agents shipped as releases), what else it gets
/// in its environment, the sockets it is handed, and what the exec shim
/// sets before it becomes the agent (cgroups, limits, user). Its `Debug`
/// shows the environment's names only: values may be secrets.
#[derive(Default)]
pub struct Launch {
    /// Instead of the spec's `cwd`.
    pub cwd: Option<PathBuf>,
    /// Added to the environment over the config's `env`, later entries
    /// winning: the `env_file`, the secrets, `ROSTER_RELEASE`,
    /// `ROSTER_SHARED`, the user's `HOME`, `USER`, `LOGNAME`.
    pub environment: Vec<(OsString, OsString)>,
    /// `[agents.NAME.listen]`: names and the daemon's fds, in order.
    pub sockets: Vec<(String, std::os::fd::RawFd)>,
    /// cgroup directories to join (their `cgroup.procs`) before exec.
    pub cgroups: Vec<PathBuf>,
    /// rlimits to set before exec: (resource name, value).
    pub rlimits: Vec<(String, u64)>,
    /// Switch to this user: (uid, gid, supplementary groups).
    pub user: Option<(u32, u32, Vec<u32>)>,
    /// For a process the daemon runs for itself (an exec health check):
    /// its [`HELPER_MARKER`], naming the run.
    pub helper_run: Option<String>,
}

impl Launch {
    /// Whether anything must be set in the child that posix_spawn cannot
    /// set: then the agent starts through the exec shim.
    pub fn needs_shim(&self) -> bool {
        !self.sockets.is_empty()
            || !self.cgroups.is_empty()
            || !self.rlimits.is_empty()
            || self.user.is_some()
    }

    fn shim_options(&self) -> Vec<String> {
        let mut options = Vec::new();
        if !self.sockets.is_empty() {
            options.push("--listen".to_owned());
        }
        for cgroup in &self.cgroups {
            options.push("--cgroup".to_owned());
            options.push(cgroup.to_string_lossy().into_owned());
        }
        for (resource, value) in &self.rlimits {
            options.push("--rlimit".to_owned());
            options.push(format!("{resource}={value}"));
        }
        if let Some((uid, gid, groups)) = &self.user {
            options.push("--groups".to_owned());
            options.push(
                groups
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
            options.push("--gid".to_owned());
            options.push(gid.to_string());
            options.push("--uid".to_owned());
            options.push(uid.to_string());
        }
        options
    }
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&OsStr> = self
            .environment
            .iter()
            .map(|(key, _)| key.as_os_str())
            .collect();
        f.debug_struct("Launch")
            .field("cwd", &self.cwd)
            .field("environment", &names)
            .field("sockets", &self.sockets)
            .field("cgroups", &self.cgroups)
            .field("rlimits", &self.rlimits)
            .field("user", &self.user)
            .field("helper_run", &self.helper_run)
            .finish()
    }
}

// Read back by `procfs::helper_run_of`, so it is defined there.
pub use crate::procfs::HELPER_MARKER;

/// Starts an `exec` notifier's command like an agent (its own process
/// group, empty signal mask, output on `output`) in `cwd`, with the
/// daemon's environment (less [`DAEMON_ONLY_VARIABLES`]) plus `extra`,
/// `ROSTER_HOME` and, for a helper, [`HELPER_MARKER`] = `helper_run`. No
/// `ROSTER_AGENT` marker: it is nobody's agent, and its strays must not be
/// taken for an agent's.
pub fn spawn_notifier(
    argv: &[String],
    cwd: &Path,
    extra: &[(String, String)],
    home: &Path,
    output: &OwnedFd,
    helper_run: Option<&str>,
) -> Result<u32, String> {
    if !cwd.is_dir() {
        return Err(format!(
            "working directory {} does not exist",
            cwd.display()
        ));
    }
    let mut environment = daemon_environment();
    for (key, value) in extra {
        environment.insert(key.into(), value.into());
    }
    environment.insert("ROSTER_HOME".into(), home.as_os_str().to_owned());
    set_helper_marker(&mut environment, helper_run);
    let environment: Vec<(OsString, OsString)> = environment.into_iter().collect();
    spawn_in_group(argv, cwd, &environment, Output::merged(output), &[], false)
}

/// posix_spawn of `command` in `cwd` with exactly `environment`, as the
/// leader of a new process group, stdout and stderr on `output`.
fn spawn_in_group(
    command: &[String],
    cwd: &Path,
    environment: &[(OsString, OsString)],
    output: Output<'_>,
    handed: &[std::os::fd::RawFd],
    via_shim: bool,
) -> Result<u32, String> {
    let Some(program) = command.first() else {
        return Err("the command is empty".into());
    };
    let search_path = environment
        .iter()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone());
    let executable = if !via_shim {
        resolve_program(program, cwd, search_path.as_deref())?
    } else {
        // The shim: this very binary, whatever its path is now.
        PathBuf::from("/proc/self/exe")
    };
    let c_string = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| format!("{program}: an argument contains a NUL byte"))
    };
    let c_executable = c_string(executable.as_os_str().as_bytes())?;
    let c_cwd = c_string(cwd.as_os_str().as_bytes())?;
    let c_arguments = command
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

    let pid = crate::sys::posix_spawn_agent(
        program,
        &c_executable,
        &c_cwd,
        &argv,
        &envp,
        (output.stdout.as_raw_fd(), output.stderr_fd()),
        handed,
    )?;
    crate::sys::restore_agent_open_file_limit(pid);
    Ok(pid)
}

/// Variables that describe the daemon's own place under a service manager
/// (its notify socket, its sockets, its watchdog, its journal stream): an
/// agent that saw them would talk to systemd as if it were the daemon.
pub const DAEMON_ONLY_VARIABLES: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "JOURNAL_STREAM",
];

/// The agent's environment: the daemon's own (less
/// [`DAEMON_ONLY_VARIABLES`]; with [`SYSTEM_PATH`] as PATH for an agent
/// that runs as another user), then the config's `env` (with
/// `PYTHONUNBUFFERED=1` unless set), then `extra` (the launch's: env_file,
/// secrets), each replacing what came before, then roster's markers
/// ([`HELPER_MARKER`] only for a helper run).
fn environment(
    name: &AgentName,
    spec: &AgentSpec,
    home: &Path,
    extra: &[(OsString, OsString)],
    helper_run: Option<&str>,
    switches_user: bool,
) -> Vec<(OsString, OsString)> {
    let mut environment = daemon_environment();
    if switches_user {
        environment.insert("PATH".into(), SYSTEM_PATH.into());
    }
    for (key, value) in spec.environment() {
        environment.insert(key.into(), value.into());
    }
    for (key, value) in extra {
        environment.insert(key.clone(), value.clone());
    }
    environment.insert("ROSTER_HOME".into(), home.as_os_str().to_owned());
    environment.insert("ROSTER_AGENT".into(), name.as_str().into());
    set_helper_marker(&mut environment, helper_run);
    environment.into_iter().collect()
}

/// Sets [`HELPER_MARKER`] to `helper_run`, or removes it: an agent must
/// never carry one (its processes would be taken for a helper's leftovers).
fn set_helper_marker(environment: &mut BTreeMap<OsString, OsString>, helper_run: Option<&str>) {
    match helper_run {
        Some(run) => environment.insert(HELPER_MARKER.into(), run.into()),
        None => environment.remove(OsStr::new(HELPER_MARKER)),
    };
}

/// The daemon's own environment less [`DAEMON_ONLY_VARIABLES`].
pub(crate) fn daemon_environment() -> BTreeMap<OsString, OsString> {
    std::env::vars_os()
        .filter(|(key, _)| {
            !DAEMON_ONLY_VARIABLES
                .iter()
                .any(|daemon_only| key.as_os_str() == OsStr::new(daemon_only))
        })
        .collect()
}

/// Finds the program the way a shell would: a name with a `/` is a path
/// (relative to the agent's directory), any other name is looked up in PATH.
pub fn resolve_program(
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

/// A pid the daemon may signal: never 0 (its own group), 1 (init, or with
/// -1 every process) or negative, whatever /proc or a bug hands in.
fn signalable(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|pid| *pid > 1 && *pid as u32 != std::process::id())
        .map(Pid::from_raw)
}

/// Sends `signal` to the process group led by `pid`. A group that is already
/// gone is not an error; pids 0 and 1 and the daemon's own are refused.
pub fn signal_group(pid: u32, signal: i32) -> io::Result<()> {
    let Some(group) = signalable(pid) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pid}"),
        ));
    };
    let signal = NixSignal::try_from(signal).map_err(io::Error::from)?;
    match killpg(group, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// Sends `signal` to one process; a process that is gone is not an error,
/// and pids 0 and 1 and the daemon's own are never signalled.
pub fn signal_process(pid: u32, signal: i32) {
    let (Some(pid), Ok(signal)) = (signalable(pid), NixSignal::try_from(signal)) else {
        return;
    };
    let _ = kill(pid, signal);
}

/// Reaps one exited child, if any: `Some((pid, status))`.
pub fn reap_one() -> Option<(u32, ExitStatus)> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                return Some((pid.as_raw() as u32, ExitStatus::Code(code)))
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                return Some((pid.as_raw() as u32, ExitStatus::Signal(signal as i32)))
            }
            // Stopped or continued children are still alive.
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Makes this process a child subreaper: orphans of its descendants
/// (double-forked daemons) become its children, so they can be stopped and
/// reaped instead of escaping to init.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// The largest log pipe buffer roster asks for.
pub const MAX_PIPE_BYTES: usize = 1024 * 1024;
/// The kernel's default, and roster's smallest.
pub const MIN_PIPE_BYTES: usize = 64 * 1024;

/// How big each agent's log pipe may be so that all of them stay within the
/// user's pipe budget. An unprivileged user's pipes share
/// `fs.pipe-user-pages-soft` pages (16384 by default: 64 MiB); past it, every
/// new pipe of that user (the agents' own included) gets one page. roster
/// takes at most half of it, split evenly over `pipes`; root (with
/// CAP_SYS_RESOURCE) is not limited. `soft_pages` 0 means no limit.
pub fn pipe_bytes_within_budget(
    privileged: bool,
    soft_pages: u64,
    page_size: u64,
    pipes: usize,
) -> usize {
    if privileged || soft_pages == 0 {
        return MAX_PIPE_BYTES;
    }
    let budget = soft_pages.saturating_mul(page_size) / 2;
    let share = budget / pipes.max(1) as u64;
    if share < MIN_PIPE_BYTES as u64 {
        return MIN_PIPE_BYTES;
    }
    // Pipe sizes are powers of two pages; round down to one.
    let share = share.min(MAX_PIPE_BYTES as u64);
    (1u64 << (63 - share.leading_zeros())) as usize
}

/// `fs.pipe-user-pages-soft`, if readable.
pub fn pipe_user_pages_soft() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A pipe for an agent's output: (read end, write end, its buffer size),
/// both ends close-on-exec. Asks for `wanted` bytes (fewer wake-ups under a
/// flood); the size the kernel granted is returned.
pub fn log_pipe(wanted: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let wanted = i32::try_from(wanted).unwrap_or(i32::MAX);
    let size = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETPIPE_SZ(wanted))
        .or_else(|_| nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_GETPIPE_SZ))
        .map(|size| size.max(0) as usize)
        .unwrap_or(0);
    Ok((read, write, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_sizes_stay_within_half_the_soft_budget() {
        let page = 4096;
        // Root, or no limit: the full size.
        assert_eq!(
            pipe_bytes_within_budget(true, 16384, page, 5000),
            MAX_PIPE_BYTES
        );
        assert_eq!(
            pipe_bytes_within_budget(false, 0, page, 5000),
            MAX_PIPE_BYTES
        );
        // The default 64 MiB budget: 32 MiB for roster.
        assert_eq!(
            pipe_bytes_within_budget(false, 16384, page, 10),
            MAX_PIPE_BYTES
        );
        assert_eq!(
            pipe_bytes_within_budget(false, 16384, page, 32),
            MAX_PIPE_BYTES
        );
        assert_eq!(pipe_bytes_within_budget(false, 16384, page, 33), 512 * 1024);
        assert_eq!(
            pipe_bytes_within_budget(false, 16384, page, 100),
            256 * 1024
        );
        assert_eq!(
            pipe_bytes_within_budget(false, 16384, page, 500),
            MIN_PIPE_BYTES
        );
        for pipes in 1..2000 {
            let size = pipe_bytes_within_budget(false, 16384, page, pipes) as u64;
            assert!(size.is_power_of_two());
            assert!(
                size == MIN_PIPE_BYTES as u64 || size * pipes as u64 <= 16384 * page / 2,
                "{pipes} pipes of {size} bytes exceed the budget"
            );
        }
    }

    /// Only a helper run carries `ROSTER_HELPER`: an agent's config cannot
    /// set it (its processes would be taken for a check's leftovers).
    #[test]
    fn only_helpers_carry_the_helper_marker() {
        let config = roster_core::config::parse(
            "roster.toml",
            "[agents.web]\ncommand = \"true\"\nenv = { ROSTER_HELPER = \"probe:1\", KEEP = \"1\" }\n",
            Path::new("/srv/app"),
        )
        .expect("config");
        let name = AgentName::new("web").expect("name");
        let spec = &config.agents[&name];
        let marker = |environment: &[(OsString, OsString)]| {
            environment
                .iter()
                .find(|(key, _)| key == HELPER_MARKER)
                .map(|(_, value)| value.clone())
        };
        let agent = environment(&name, spec, Path::new("/home"), &[], None, false);
        assert_eq!(marker(&agent), None);
        assert!(agent.iter().any(|(key, _)| key == "KEEP"));
        let probe = environment(&name, spec, Path::new("/home"), &[], Some("probe:9"), false);
        assert_eq!(marker(&probe), Some("probe:9".into()));
    }

    fn path_of(environment: &[(OsString, OsString)]) -> Option<&OsStr> {
        environment
            .iter()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.as_os_str())
    }

    #[test]
    fn an_agent_of_another_user_gets_its_own_path_or_the_systems_not_the_daemons() {
        let config = roster_core::config::parse(
            "t.toml",
            "[agents.plain]\ncommand = \"sleep 1\"\n\
             [agents.own]\ncommand = \"sleep 1\"\nenv = { PATH = \"/opt/bin:/usr/bin\" }\n",
            Path::new("/"),
        )
        .expect("valid");
        let agent = |name: &str| {
            let name = AgentName::new(name).expect("name");
            let spec = config.agents.get(&name).expect("agent").clone();
            (name, spec)
        };
        let home = Path::new("/var/lib/roster");
        let (plain, plain_spec) = agent("plain");
        let daemons = std::env::var_os("PATH");
        let same_user = environment(&plain, &plain_spec, home, &[], None, false);
        assert_eq!(path_of(&same_user), daemons.as_deref());
        let other_user = environment(&plain, &plain_spec, home, &[], None, true);
        assert_eq!(path_of(&other_user), Some(OsStr::new(SYSTEM_PATH)));
        let (own, own_spec) = agent("own");
        let other_user = environment(&own, &own_spec, home, &[], None, true);
        assert_eq!(path_of(&other_user), Some(OsStr::new("/opt/bin:/usr/bin")));
        // An env_file or a secret may set it too.
        let extra = [(OsString::from("PATH"), OsString::from("/srv/bin"))];
        let other_user = environment(&plain, &plain_spec, home, &extra, None, true);
        assert_eq!(path_of(&other_user), Some(OsStr::new("/srv/bin")));
    }

    #[test]
    fn a_shim_report_is_read_whole_and_an_empty_one_is_none() {
        use std::io::Write;
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .expect("pipe");
        let mut writer = std::fs::File::from(write);
        writer
            .write_all(b"cannot enter /root/project as nobody\n")
            .expect("write");
        drop(writer);
        assert_eq!(
            read_shim_report(&read).as_deref(),
            Some("cannot enter /root/project as nobody")
        );
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .expect("pipe");
        drop(write);
        assert_eq!(
            read_shim_report(&read),
            None,
            "exec closed it: nothing said"
        );
    }

    #[test]
    fn never_signals_init_the_daemon_or_everyone() {
        assert!(signal_group(0, libc::SIGTERM).is_err());
        assert!(signal_group(1, libc::SIGTERM).is_err());
        assert!(signal_group(std::process::id(), libc::SIGTERM).is_err());
        assert!(
            signalable(u32::MAX).is_none(),
            "-1 would mean every process"
        );
        assert!(signalable(4242).is_some());
    }
}
