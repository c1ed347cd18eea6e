//! Every `unsafe` call of the daemon lives here: the few syscalls no safe
//! wrapper covers (posix_spawn with its attributes, prlimit on another
//! process). Each function states what it relies on.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;
use std::sync::OnceLock;

/// Starts `executable` with posix_spawn: in a new process group, an empty
/// signal mask, every signal back to its default action, stdin on /dev/null, stdout on
/// `stdout_fd` and stderr on `stderr_fd` (the same one when merged), in `cwd`. `argv` and `envp` are NULL-terminated
/// arrays of pointers into live C strings. Returns the pid.
pub fn posix_spawn_agent(
    program: &str,
    c_executable: &CStr,
    c_cwd: &CStr,
    argv: &[*mut libc::c_char],
    envp: &[*mut libc::c_char],
    (stdout_fd, stderr_fd): (RawFd, RawFd),
    handed: &[RawFd],
) -> Result<u32, String> {
    if argv.last().is_none_or(|last| !last.is_null())
        || envp.last().is_none_or(|last| !last.is_null())
    {
        return Err(format!("{program}: argv and envp must end with NULL"));
    }
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
        // Every signal back to its default action: an ignored disposition
        // survives exec, and the daemon may have inherited some (Rust
        // ignores SIGPIPE; a shell's background job ignores SIGINT and
        // SIGQUIT), which would keep an agent's stop signal from it.
        libc::sigfillset(&mut defaults);
        let flags = (libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;

        let steps = [
            (
                "adddup2 stdout",
                libc::posix_spawn_file_actions_adddup2(&mut actions, stdout_fd, 1),
            ),
            (
                "adddup2 stderr",
                libc::posix_spawn_file_actions_adddup2(&mut actions, stderr_fd, 2),
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
        // Sockets handed over (LISTEN_FDS): fds 3, 4, ... in order. The
        // sources sit above that range (`dup_above`), so no dup2 here
        // overwrites a source still to be handed; dup2 clears close-on-exec
        // on the copy only.
        for (index, fd) in handed.iter().enumerate() {
            if result.is_err() {
                break;
            }
            let code = libc::posix_spawn_file_actions_adddup2(&mut actions, *fd, 3 + index as i32);
            if code != 0 {
                result = Err(failed("adddup2 listen socket", code));
            }
        }
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

/// Duplicates `fd` to the lowest free number at or above `min`,
/// close-on-exec.
pub fn dup_above(fd: &std::os::fd::OwnedFd, min: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: fcntl on a descriptor we own; F_DUPFD_CLOEXEC returns a new
    // descriptor that nothing else owns, which the OwnedFd then closes.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh, valid descriptor (checked above).
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(new) })
}

/// The descriptor `fd` this process was handed by its parent (the exec
/// shim's `--report`), as a file it owns, close-on-exec from now on (so
/// the agent the shim becomes never holds it). None when `fd` is not an
/// open descriptor above the standard ones.
pub fn inherited_file(fd: RawFd) -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    if fd < 3 {
        return None;
    }
    // SAFETY: F_GETFD only reads the flags of whatever `fd` is; -1 means
    // it is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the daemon dup2-ed this descriptor into the shim for the shim
    // alone (posix_spawn file actions); nothing else in this process owns
    // or closes it, and the File becomes its only owner.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .ok()?;
    Some(file)
}

/// The open-file limit (soft, hard) the daemon started with, before it
/// raised its own: agents get this one back, as they would have without
/// roster in between.
static AGENT_OPEN_FILE_LIMIT: OnceLock<(u64, u64)> = OnceLock::new();

/// Remembers the open-file limit to give agents; call before raising it.
pub fn remember_agent_open_file_limit(soft: u64, hard: u64) {
    let _ = AGENT_OPEN_FILE_LIMIT.set((soft, hard));
}

/// Gives a just-spawned agent the open-file limit the daemon started with.
///
/// posix_spawn has no rlimit attribute, so this happens right after it
/// returns, while the new program starts up (its interpreter has not opened
/// its first files yet in practice); an agent that reads the limit in its
/// first microseconds could still see the daemon's raised one.
pub fn restore_agent_open_file_limit(pid: u32) {
    let Some(&(soft, hard)) = AGENT_OPEN_FILE_LIMIT.get() else {
        return;
    };
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit reads `limit` and writes nothing (old_limit is NULL).
    let result = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    if result != 0 {
        let error = io::Error::last_os_error();
        // ESRCH: it is already gone.
        if error.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(
                pid,
                "could not restore the agent's open-file limit: {error}"
            );
        }
    }
}

/// Marks every descriptor from 3 up close-on-exec, so descriptors this
/// daemon inherited (a shell's, a service manager's) never reach an agent.
/// Agents get exactly 0, 1 and 2.
pub fn close_inherited_descriptors_on_exec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let descriptors: Vec<RawFd> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in descriptors {
        // SAFETY: fcntl(F_GETFD/F_SETFD) on a descriptor number only reads
        // and sets its flags; one that closed meanwhile gives EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Registers an owned pipe end with tokio's reactor.
pub fn register_pipe(
    pipe: std::os::fd::OwnedFd,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it until it
    // is dropped; nothing else closes or replaces it meanwhile, so its raw
    // fd stays the same open file description.
    unsafe { tokio::io::unix::AsyncFd::register(pipe) }.map_err(|error| error.into())
}

/// Makes sure fds 0, 1 and 2 are open (on /dev/null when they were closed)
/// before the daemon opens anything: otherwise the journal or a log could
/// become fd 2 and receive the daemon's own log text.
pub fn ensure_standard_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
        if open || nix::errno::Errno::last() != nix::errno::Errno::EBADF {
            continue;
        }
        // The lowest free descriptor is `fd` itself: 0..fd are open by now.
        match nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(null) => {
                use std::os::fd::{AsRawFd, IntoRawFd};
                if null.as_raw_fd() == fd {
                    let _ = null.into_raw_fd();
                } else {
                    // SAFETY: dup2 onto a closed standard descriptor.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            Err(error) => {
                tracing::warn!("fd {fd} is closed and /dev/null cannot be opened: {error}");
            }
        }
    }
}

/// `SO_ATTACH_REUSEPORT_CBPF` (Linux 4.5): its value in the kernel's
/// generic `asm/socket.h` (and MIPS's); the libc crate has it for Android
/// only.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Which member of a `SO_REUSEPORT` group a new connection goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// The first member (the socket that joined it first among those
    /// still listening), whoever else joins.
    First,
    /// The kernel's own choice, by a hash of the connection's addresses.
    Spread,
}

/// Sets how the `SO_REUSEPORT` group of listening socket `fd` gives out
/// new connections: a one-instruction classic BPF program returning the
/// index of a member, 0 for the first, or one past any member for the
/// kernel's hash. The program belongs to the group, not to `fd`.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
pub fn reuseport_steer(fd: &impl std::os::fd::AsRawFd, steer: Steer) -> io::Result<()> {
    // BPF_RET | BPF_K (0x06 | 0x00): return the constant k.
    let mut program = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: match steer {
            Steer::First => 0,
            Steer::Spread => u32::MAX,
        },
    }];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` and the instruction it points to live until the call
    // returns; the kernel copies the program and keeps no pointer to them.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Where the kernel's value of the option is not the generic one.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
pub fn reuseport_steer(_fd: &impl std::os::fd::AsRawFd, _steer: Steer) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Caps glibc's malloc arenas at `arenas` (glibc gives each thread that
/// meets a locked arena a new one, up to 8 per core, each holding its own
/// free memory). Called before the daemon starts its threads. A no-op
/// where the C library is not glibc.
pub fn limit_malloc_arenas(arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it takes two ints
    // and touches no memory of ours.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Drops this process's page-table entries for files it maps private and
/// read-only (its executable's code and constants, the libraries'), as
/// `procfs::clean_file_ranges` finds them: never written, so the next
/// access faults the same bytes back in from the page cache, and only what
/// runs from then on stays resident. The kernel's reclaim does the same to
/// such pages under memory pressure. Returns how many bytes were advised.
pub fn drop_clean_file_pages() -> io::Result<usize> {
    let ranges = crate::procfs::clean_file_ranges()?;
    let mut advised = 0;
    for range in ranges {
        // SAFETY: madvise(MADV_DONTNEED) changes no byte a read of these
        // ranges returns: they are private, read-only, file-backed mappings
        // without a written (anonymous) page, so they are read again from
        // the file. No Rust reference is invalidated.
        let code = unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_DONTNEED,
            )
        };
        if code != 0 {
            return Err(io::Error::last_os_error());
        }
        advised += range.end - range.start;
    }
    Ok(advised)
}

/// Returns free heap memory to the system (glibc keeps what start-up
/// freed). A no-op where the C library is not glibc.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
