//! The exec shim: the `roster` binary re-executed in an agent's child
//! when something must be set that posix_spawn cannot (cgroups, rlimits,
//! another user, `LISTEN_PID`), and its report to the daemon of why it
//! could not become the agent.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::SYSTEM_PATH;

/// The hidden first argument that makes the `roster` binary the exec shim.
pub const SHIM_ARG: &str = "__roster-exec";

/// The exec shim, in the spirit of runit's chpst: `roster __roster-exec
/// [--report FD] [--listen] [--cgroup DIR]... [--rlimit NAME=N]...
/// [--groups G,G --gid G --uid U] -- EXECUTABLE ARGV0 ARGS...`. In this
/// order it joins the cgroups (so every process the agent forks is in
/// them), sets the rlimits, drops to the user (supplementary groups, gid,
/// then uid), sets `LISTEN_PID` to its own pid (exec keeps the pid), then
/// becomes the agent. Anything that fails stops it before the agent runs:
/// an agent never runs without the limits or as another user than
/// configured. Returns only on failure, with the reason (the agent's log
/// gets it, and so does FD, for the daemon's `last_error`).
///
/// After switching users it checks, as that user, that it can enter its
/// working directory, and looks EXECUTABLE up in its PATH when it is a
/// bare name: a directory or program only root can reach is refused here
/// with a message naming the path and the user, not left to fail later.
pub fn exec_shim(arguments: impl Iterator<Item = OsString>) -> std::io::Error {
    let mut report: Option<std::fs::File> = None;
    let error = run_shim(arguments, &mut report);
    if let Some(report) = report.as_mut() {
        use std::io::Write;
        let _ = report.write_all(error.to_string().as_bytes());
    }
    error
}

fn run_shim(
    arguments: impl Iterator<Item = OsString>,
    report: &mut Option<std::fs::File>,
) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    let mut arguments = arguments.peekable();
    let mut listen = false;
    let mut user: (Option<u32>, Option<u32>, Vec<u32>) = (None, None, Vec::new());
    loop {
        let Some(option) = arguments.next() else {
            return invalid("usage: roster __roster-exec [OPTIONS] -- EXECUTABLE ARGV0 [ARGS...] (used by the daemon only)".into());
        };
        let option = option.to_string_lossy().into_owned();
        if option == "--" {
            break;
        }
        if option == "--listen" {
            listen = true;
            continue;
        }
        let Some(value) = arguments.next() else {
            return invalid(format!("{option} needs a value"));
        };
        let value = value.to_string_lossy().into_owned();
        let number = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| invalid(format!("{option}: {text:?} is not a number")))
        };
        let applied: Result<(), std::io::Error> = match option.as_str() {
            "--report" => number(&value).map(|fd| {
                *report = i32::try_from(fd).ok().and_then(crate::sys::inherited_file);
            }),
            "--cgroup" => std::fs::write(
                Path::new(&value).join("cgroup.procs"),
                std::process::id().to_string(),
            )
            .map_err(|error| {
                std::io::Error::new(error.kind(), format!("joining the cgroup {value}: {error}"))
            }),
            "--rlimit" => set_rlimit(&value),
            "--groups" => value
                .split(',')
                .filter(|group| !group.is_empty())
                .map(number)
                .collect::<Result<Vec<u32>, _>>()
                .map(|groups| user.2 = groups),
            "--gid" => number(&value).map(|gid| user.1 = Some(gid)),
            "--uid" => number(&value).map(|uid| user.0 = Some(uid)),
            other => Err(invalid(format!("unknown option {other}"))),
        };
        if let Err(error) = applied {
            return error;
        }
    }
    let switched_to = user.0;
    // Where posix_spawn put us (as root), to enter again as the user.
    let cwd = std::env::current_dir();
    if let Err(error) = drop_privileges(user) {
        return error;
    }
    let (Some(executable), Some(argv0)) = (arguments.next(), arguments.next()) else {
        return invalid("the shim needs EXECUTABLE and ARGV0 after --".into());
    };
    let executable = match switched_to {
        None => PathBuf::from(executable),
        Some(uid) => {
            let (who, name) = user_label(uid);
            let entered = cwd.and_then(|cwd| {
                std::env::set_current_dir(&cwd).map_err(|error| {
                    std::io::Error::new(
                        error.kind(),
                        format!(
                            "cannot enter {} as {who}: {}",
                            cwd.display(),
                            why_unreachable(&cwd, &name, &error)
                        ),
                    )
                })
            });
            if let Err(error) = entered {
                return error;
            }
            match find_as_user(&executable, &who, &name) {
                Ok(path) => path,
                Err(error) => return error,
            }
        }
    };
    let mut command = std::process::Command::new(&executable);
    command.arg0(argv0).args(arguments);
    if listen {
        command.env("LISTEN_PID", std::process::id().to_string());
    }
    // `exec` resets the signal mask and SIGPIPE (which this binary's
    // runtime ignores) to their defaults: the agent starts as posix_spawn
    // would start it (tested in `stopping.rs`).
    let error = command.exec();
    std::io::Error::new(
        error.kind(),
        format!("cannot run {}: {error}", executable.display()),
    )
}

/// How the shim names the user it became in messages, at length and
/// short: `USER` as the daemon set it for the agent, and the uid.
fn user_label(uid: u32) -> (String, String) {
    match std::env::var("USER") {
        Ok(name) if !name.is_empty() => (format!("{name} (uid {uid})"), name),
        _ => (format!("uid {uid}"), format!("uid {uid}")),
    }
}

/// The program a user would run for `program`, looked up as that user
/// (this process, after the switch): a name with a `/` is a path (relative
/// to the working directory), any other is searched in PATH (the agent's,
/// or [`SYSTEM_PATH`]), skipping what the user cannot reach, as a shell
/// does.
fn find_as_user(program: &OsStr, who: &str, name: &str) -> std::io::Result<PathBuf> {
    use nix::unistd::{access, AccessFlags};
    let refused = |path: &Path, error: std::io::Error| {
        std::io::Error::new(
            error.kind(),
            format!(
                "cannot run {} as {who}: {}",
                path.display(),
                why_unreachable(path, name, &error)
            ),
        )
    };
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return match access(&path, AccessFlags::X_OK) {
            Ok(()) => Ok(path),
            Err(errno) => Err(refused(&path, errno.into())),
        };
    }
    let search_path = std::env::var_os("PATH").unwrap_or_else(|| SYSTEM_PATH.into());
    let mut denied = None;
    for directory in std::env::split_paths(&search_path) {
        let directory = if directory.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            directory
        };
        let candidate = directory.join(program);
        match access(&candidate, AccessFlags::X_OK) {
            Ok(()) if candidate.is_file() => return Ok(candidate),
            Ok(()) => {}
            Err(Errno::ENOENT | Errno::ENOTDIR) => {}
            Err(errno) => {
                denied.get_or_insert((candidate, std::io::Error::from(errno)));
            }
        }
    }
    match denied {
        Some((candidate, error)) => Err(refused(&candidate, error)),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{}: not found in PATH ({}) as {who}\n  hint: install it, give its full path, or set PATH in the agent's env",
                program.to_string_lossy(),
                search_path.to_string_lossy()
            ),
        )),
    }
}

/// Why this process (the user it became) cannot reach `path`: the first
/// directory on the way it may not search, with its mode and owner, or
/// the error itself, and what to do about it.
fn why_unreachable(path: &Path, who: &str, error: &std::io::Error) -> String {
    use nix::unistd::{access, AccessFlags};
    use std::os::unix::fs::MetadataExt;
    let absolute = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf());
    // The path itself counts when it is a directory (to be entered).
    let blocked = absolute
        .ancestors()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|directory| access(*directory, AccessFlags::X_OK).is_err())
        .filter(|directory| *directory != absolute || absolute.is_dir());
    let described = |at: &Path| match std::fs::metadata(at) {
        Ok(metadata) => format!(
            " (mode {:04o}, owner uid {}, group gid {})",
            metadata.mode() & 0o7777,
            metadata.uid(),
            metadata.gid()
        ),
        Err(_) => String::new(),
    };
    match blocked {
        Some(directory) => format!(
            "{} is not searchable by {who}{}\n  hint: let {who} through (e.g. chmod o+x {}, or a group it is in), or move the agent's files where it can reach them",
            directory.display(),
            described(directory),
            directory.display()
        ),
        None if error.kind() == std::io::ErrorKind::PermissionDenied => format!(
            "{error}{}\n  hint: give {who} access to {} (its mode, owner or group)",
            described(&absolute),
            absolute.display()
        ),
        None => error.to_string(),
    }
}

/// `NAME=VALUE` for `as`, `nofile` or `nproc`: soft and hard limit.
fn set_rlimit(spec: &str) -> std::io::Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("--rlimit {spec:?}: expected as|nofile|nproc=NUMBER"),
        )
    };
    let (name, value) = spec.split_once('=').ok_or_else(invalid)?;
    let value: u64 = value.parse().map_err(|_| invalid())?;
    let resource = match name {
        "as" => Resource::RLIMIT_AS,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        _ => return Err(invalid()),
    };
    setrlimit(resource, value, value).map_err(|errno| {
        std::io::Error::other(format!("setting the {name} limit to {value}: {errno}"))
    })
}

/// Supplementary groups, then gid, then uid (after setuid the others
/// could no longer be changed).
fn drop_privileges(user: (Option<u32>, Option<u32>, Vec<u32>)) -> std::io::Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    let (uid, gid, groups) = user;
    let failed = |what: &str, errno: nix::Error| {
        std::io::Error::other(format!(
            "{what}: {errno} (the daemon must run as root to switch users)"
        ))
    };
    if uid.is_some() || gid.is_some() {
        let groups: Vec<Gid> = groups.into_iter().map(Gid::from_raw).collect();
        setgroups(&groups).map_err(|errno| failed("setgroups", errno))?;
    }
    if let Some(gid) = gid {
        setgid(Gid::from_raw(gid)).map_err(|errno| failed("setgid", errno))?;
    }
    if let Some(uid) = uid {
        setuid(Uid::from_raw(uid)).map_err(|errno| failed("setuid", errno))?;
    }
    Ok(())
}

/// What an exec shim said before it exited, if anything: why it could not
/// become the agent. Call once its pid has been reaped (every write is in
/// the pipe then); never blocks.
pub fn read_shim_report(report: &OwnedFd) -> Option<String> {
    let mut text = Vec::new();
    let mut buffer = [0u8; 4096];
    while text.len() < 16 * 1024 {
        match nix::unistd::read(report, &mut buffer) {
            Ok(0) => break,
            Ok(length) => text.extend_from_slice(&buffer[..length]),
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    (!text.is_empty()).then_some(text)
}
