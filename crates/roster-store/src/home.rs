//! The home directory: where one roster keeps its socket, journal and logs.
//! Two homes are two independent rosters.
//!
//! A home is trusted only when it is a real directory (not a symbolic link)
//! owned by the user roster runs as and not writable by group or others:
//! otherwise another local user could swap its files for links and make a
//! root daemon write through them. roster refuses such a home and never
//! changes an existing directory's mode (`--home /tmp` must stay 1777). A
//! missing home is created with mode 0700. Files inside are opened relative
//! to the home's directory fd, never following a link ([`HomeDir`]).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, Flock, FlockArg, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Why a home (or a file in it) may not be used.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// The home does not exist (and the caller does not create it).
    #[error("{path} does not exist")]
    Missing {
        /// The home.
        path: PathBuf,
    },
    /// A symbolic link where a home, a directory or a file of it should be.
    #[error(
        "{path} is a symbolic link; roster does not follow links in a home
  hint: remove the link, or choose another --home that is a real directory"
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Something else than the expected kind of file.
    #[error(
        "{path} is not a {expected}
  hint: move it away, or choose another --home"
    )]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// `directory` or `regular file`.
        expected: &'static str,
    },
    /// Owned by another user, who could replace what is inside.
    #[error("{path} is owned by uid {owner}, but roster runs as uid {expected}; another user's directory is not used as a home
  hint: chown it to uid {expected}, or choose another --home")]
    WrongOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user roster runs as (effective uid).
        expected: u32,
    },
    /// Writable by group or others, who could replace what is inside.
    #[error("{path} is writable by {who} (mode {mode:04o}), who could replace roster's files in it; roster never changes an existing directory's mode
  hint: chown/chmod it (e.g. chmod 0700 {path}), or choose another --home")]
    Writable {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// `group`, `others` or `group and others`.
        who: &'static str,
    },
    /// A directory for secrets that group or others may read or enter.
    #[error("{path} is accessible to group or others (mode {mode:04o}); roster keeps secrets only in a directory of mode 0700 and never changes an existing directory's mode
  hint: chmod 0700 {path}")]
    NotPrivate {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The system refused.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl HomeError {
    fn io(what: &'static str, path: &Path, errno: Errno) -> Self {
        HomeError::Io {
            what,
            path: path.to_path_buf(),
            source: errno.into(),
        }
    }
}

/// Whether another process holds a home's lock.
#[derive(Debug)]
pub enum LockOutcome {
    /// Taken: held until dropped.
    Taken(HomeLock),
    /// Another process (a running daemon) holds it.
    Held,
}

/// The one-per-home lock: an exclusive `flock` on the home directory itself,
/// which, unlike a lock file, cannot be unlinked from under the daemon.
#[derive(Debug)]
pub struct HomeLock {
    _directory: Flock<OwnedFd>,
}

/// The paths of one roster home.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// Wraps an absolute home path.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The default home: `/var/lib/roster` for root, else
    /// `$XDG_STATE_HOME/roster` or `~/.local/state/roster`.
    pub fn default_path() -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/roster");
        }
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|value| !value.is_empty()) {
            return PathBuf::from(state).join("roster");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".local/state/roster")
    }

    /// Opens an existing home after checking it may be used: a real
    /// directory owned by the effective uid, not writable by group or
    /// others. Creates nothing.
    pub fn open_verified(&self) -> Result<HomeDir, HomeError> {
        let fd = open_directory(AT_FDCWD, &self.root, &self.root)?;
        Ok(HomeDir {
            home: self.clone(),
            fd,
        })
    }

    /// Like [`Home::open_verified`], creating a missing home first: its
    /// parents as needed, the home itself with mode 0700 (by `mkdir`, never
    /// a `chmod` afterwards). Another process creating it at the same moment
    /// is fine: what counts is that the result passes the checks.
    pub fn create_verified(&self) -> Result<HomeDir, HomeError> {
        if let Some(parent) = self.root.parent() {
            std::fs::create_dir_all(parent).map_err(|source| HomeError::Io {
                what: "creating",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.root) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(HomeError::Io {
                    what: "creating",
                    path: self.root.clone(),
                    source,
                })
            }
        }
        self.open_verified()
    }

    /// Whether a daemon holds this home's lock. A missing home has none.
    /// Also honours the lock of daemons before the directory lock, which
    /// `flock`ed `daemon.lock`.
    pub fn is_locked(&self) -> Result<bool, HomeError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let directory = match openat(AT_FDCWD, &self.root, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(false),
            Err(errno) => return Err(HomeError::io("opening", &self.root, errno)),
        };
        let lock_file = openat(
            &directory,
            "daemon.lock",
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .ok();
        // /proc/locks answers without taking a lock. A probing flock would
        // itself make a daemon starting at that moment fail to lock and
        // think another daemon runs (two `roster up` racing).
        if let Ok(table) = std::fs::read_to_string("/proc/locks") {
            let held = flocks_in(&table);
            let is_listed = |fd: &OwnedFd| {
                fstat(fd).is_ok_and(|stat| {
                    let device = stat.st_dev;
                    held.contains(&(
                        nix::sys::stat::major(device),
                        nix::sys::stat::minor(device),
                        stat.st_ino,
                    ))
                })
            };
            return Ok(is_listed(&directory) || lock_file.as_ref().is_some_and(is_listed));
        }
        if is_held(directory, &self.root)? {
            return Ok(true);
        }
        match lock_file {
            Some(file) => is_held(file, &self.lock()),
            None => Ok(false),
        }
    }

    /// The home itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("roster.sock")
    }

    /// The SQLite journal.
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.db")
    }

    /// The lock a running daemon holds; it contains the daemon's pid.
    pub fn lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// The daemon's own log (when started by `roster up`).
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// Where agent logs live.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// An agent's current log file.
    pub fn agent_log(&self, agent: &str) -> PathBuf {
        self.logs().join(format!("{agent}.log"))
    }

    /// An agent's current stderr log, `NAME.err.log`: where its stderr
    /// goes with `stderr = "separate"` (else into [`Home::agent_log`]).
    pub fn agent_err_log(&self, agent: &str) -> PathBuf {
        let suffix = roster_core::name::STDERR_SUFFIX;
        self.logs().join(format!("{agent}{suffix}.log"))
    }

    /// Both of an agent's current logs: `NAME.log`, and `NAME.err.log`
    /// when its stderr has (or had) a log of its own.
    pub fn agent_logs(&self, agent: &str) -> Vec<PathBuf> {
        let err = self.agent_err_log(agent);
        let has_err = !crate::logs::files::log_files(&err).is_empty();
        let mut logs = vec![self.agent_log(agent)];
        logs.extend(has_err.then_some(err));
        logs
    }
}

/// A verified home, held open: files in it are opened relative to this
/// directory, with `O_NOFOLLOW`, and checked to be regular files owned by us.
#[derive(Debug)]
pub struct HomeDir {
    home: Home,
    fd: OwnedFd,
}

impl HomeDir {
    /// The home's paths.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The directory's descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `name` in the home with `flags` (plus `O_NOFOLLOW` and
    /// `O_CLOEXEC`; `mode` when it is created), and checks that it is a
    /// regular file owned by us.
    pub fn open_file(&self, name: &str, flags: OFlag, mode: u32) -> Result<File, HomeError> {
        let path = self.home.root.join(name);
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        // O_NONBLOCK keeps a planted FIFO from blocking the open; it is
        // cleared again below for the regular file we accept.
        let fd = match openat(
            &self.fd,
            name,
            flags | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(HomeError::Symlink { path }),
            Err(errno) => return Err(HomeError::io("opening", &path, errno)),
        };
        let stat = fstat(&fd).map_err(|errno| HomeError::io("inspecting", &path, errno))?;
        check_owned(&stat, &path, SFlag::S_IFREG, "regular file")?;
        if !flags.contains(OFlag::O_NONBLOCK) {
            use nix::fcntl::{fcntl, FcntlArg};
            let status = fcntl(&fd, FcntlArg::F_GETFL)
                .map_err(|errno| HomeError::io("inspecting", &path, errno))?;
            let blocking = OFlag::from_bits_truncate(status) - OFlag::O_NONBLOCK;
            fcntl(&fd, FcntlArg::F_SETFL(blocking))
                .map_err(|errno| HomeError::io("inspecting", &path, errno))?;
        }
        Ok(File::from(fd))
    }

    /// Checks `name` without opening it: `Ok(false)` when it does not exist,
    /// `Ok(true)` when it is a regular file owned by us (not a link).
    pub fn check_file(&self, name: &str) -> Result<bool, HomeError> {
        let path = self.home.root.join(name);
        match fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => check_owned(&stat, &path, SFlag::S_IFREG, "regular file").map(|()| true),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(HomeError::io("inspecting", &path, errno)),
        }
    }

    /// Makes sure the directory `name` exists in the home (created with mode
    /// 0700) and passes the same checks as the home.
    pub fn ensure_directory(&self, name: &str) -> Result<OwnedFd, HomeError> {
        let path = self.home.root.join(name);
        match mkdirat(&self.fd, name, Mode::S_IRWXU) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(HomeError::io("creating", &path, errno)),
        }
        open_directory(&self.fd, Path::new(name), &path)
    }

    /// Like [`HomeDir::ensure_directory`], and holds the directory open as
    /// a [`HomeDir`] of its own (its files get the same no-follow rules).
    /// With `private`, a directory that group or others may enter or read
    /// is refused too (its mode is never changed).
    pub fn subdirectory(&self, name: &str, private: bool) -> Result<HomeDir, HomeError> {
        let fd = self.ensure_directory(name)?;
        self.wrap_subdirectory(name, fd, private)
    }

    /// Like [`HomeDir::subdirectory`] without creating it: `Ok(None)` when
    /// it does not exist.
    pub fn open_subdirectory(
        &self,
        name: &str,
        private: bool,
    ) -> Result<Option<HomeDir>, HomeError> {
        let path = self.home.root.join(name);
        match open_directory(&self.fd, Path::new(name), &path) {
            Ok(fd) => self.wrap_subdirectory(name, fd, private).map(Some),
            Err(HomeError::Missing { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn wrap_subdirectory(
        &self,
        name: &str,
        fd: OwnedFd,
        private: bool,
    ) -> Result<HomeDir, HomeError> {
        let path = self.home.root.join(name);
        if private {
            let stat = fstat(&fd).map_err(|errno| HomeError::io("inspecting", &path, errno))?;
            let mode = stat.st_mode & 0o7777;
            if mode & 0o077 != 0 {
                return Err(HomeError::NotPrivate { path, mode });
            }
        }
        Ok(HomeDir {
            home: Home::new(path),
            fd,
        })
    }

    /// Replaces `name` with `contents` atomically: a temporary file in the
    /// home (no-follow, exclusive), fsync, rename over `name`, fsync of the
    /// directory. Readers see the old file or the new one, never half.
    pub fn write_atomically(&self, name: &str, contents: &[u8]) -> Result<(), HomeError> {
        self.write_atomically_with_mode(name, contents, 0o644)
    }

    /// [`HomeDir::write_atomically`] with the file created with `mode`
    /// (less the umask): 0600 for files only roster may read.
    pub fn write_atomically_with_mode(
        &self,
        name: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), HomeError> {
        use std::io::Write;
        let temporary = format!(".{name}.tmp");
        let _ = self.remove_file(&temporary);
        let mut file = self.open_file(
            &temporary,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
        )?;
        let path = self.home.root.join(&temporary);
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|source| HomeError::Io {
                what: "writing",
                path: path.clone(),
                source,
            })?;
        drop(file);
        self.rename(&temporary, name)?;
        let _ = nix::unistd::fsync(&self.fd);
        Ok(())
    }

    /// Renames `from` to `to` inside the home (a link is renamed, not followed).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), HomeError> {
        nix::fcntl::renameat(&self.fd, from, &self.fd, to)
            .map_err(|errno| HomeError::io("renaming", &self.home.root.join(from), errno))
    }

    /// Removes the file `name` if it exists (a link is removed, not followed).
    pub fn remove_file(&self, name: &str) -> Result<(), HomeError> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(HomeError::io("removing", &self.home.root.join(name), errno)),
        }
    }

    /// Tries to take the home's lock without waiting. [`LockOutcome::Held`]
    /// means another daemon runs; any other failure (e.g. `ENOLCK`) is an
    /// error of its own.
    pub fn try_lock(&self) -> Result<LockOutcome, HomeError> {
        match Flock::lock(self.reopen()?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(LockOutcome::Taken(HomeLock { _directory: lock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(LockOutcome::Held),
            Err((_, errno)) => Err(HomeError::io("locking", &self.home.root, errno)),
        }
    }

    /// Takes this directory's lock, waiting for it: for a store whose
    /// writers (the CLI and the daemon) read, change and write one file.
    /// Held until dropped.
    pub fn lock_exclusive(&self) -> Result<Flock<OwnedFd>, HomeError> {
        Flock::lock(self.reopen()?, FlockArg::LockExclusive)
            .map_err(|(_, errno)| HomeError::io("locking", &self.home.root, errno))
    }

    /// A fresh open file description of this directory: a flock belongs
    /// to it, and O_CLOEXEC keeps agents from inheriting (and prolonging)
    /// the lock.
    fn reopen(&self) -> Result<OwnedFd, HomeError> {
        openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| HomeError::io("opening", &self.home.root, errno))
    }
}

/// Opens a directory without following a link and checks it like a home.
fn open_directory<Fd: AsFd>(base: Fd, name: &Path, path: &Path) -> Result<OwnedFd, HomeError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(base, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            return Err(HomeError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(Errno::ELOOP) => {
            return Err(HomeError::Symlink {
                path: path.to_path_buf(),
            })
        }
        Err(Errno::ENOTDIR) => {
            // O_NOFOLLOW|O_DIRECTORY on a link may say ENOTDIR: tell which.
            let is_link = std::fs::symlink_metadata(path)
                .is_ok_and(|metadata| metadata.file_type().is_symlink());
            return Err(if is_link {
                HomeError::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                HomeError::WrongKind {
                    path: path.to_path_buf(),
                    expected: "directory",
                }
            });
        }
        Err(errno) => return Err(HomeError::io("opening", path, errno)),
    };
    let stat = fstat(&fd).map_err(|errno| HomeError::io("inspecting", path, errno))?;
    check_owned(&stat, path, SFlag::S_IFDIR, "directory")?;
    let mode = stat.st_mode & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group and others"),
        (true, false) => Some("group"),
        (false, true) => Some("others"),
        (false, false) => None,
    };
    if let Some(who) = who {
        return Err(HomeError::Writable {
            path: path.to_path_buf(),
            mode,
            who,
        });
    }
    Ok(fd)
}

fn check_owned(
    stat: &FileStat,
    path: &Path,
    kind: SFlag,
    expected: &'static str,
) -> Result<(), HomeError> {
    let file_type = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if file_type == SFlag::S_IFLNK {
        return Err(HomeError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if file_type != kind {
        return Err(HomeError::WrongKind {
            path: path.to_path_buf(),
            expected,
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if stat.st_uid != me {
        return Err(HomeError::WrongOwner {
            path: path.to_path_buf(),
            owner: stat.st_uid,
            expected: me,
        });
    }
    Ok(())
}

/// The files with a granted `flock` in the text of `/proc/locks`, as
/// (major, minor, inode); waiters (`->`) hold nothing.
pub fn flocks_in(table: &str) -> Vec<(u64, u64, u64)> {
    table
        .lines()
        .filter(|line| line.contains(" FLOCK ") && !line.contains("->"))
        .filter_map(|line| {
            let device = line
                .split_whitespace()
                .find(|field| field.matches(':').count() == 2)?;
            let mut parts = device.split(':');
            let major = u64::from_str_radix(parts.next()?, 16).ok()?;
            let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
            let inode = parts.next()?.parse().ok()?;
            Some((major, minor, inode))
        })
        .collect()
}

/// Whether another open file description holds a `flock` on `fd`. A shared
/// probe: it conflicts only with a daemon's exclusive lock.
fn is_held(fd: OwnedFd, path: &Path) -> Result<bool, HomeError> {
    match Flock::lock(fd, FlockArg::LockSharedNonblock) {
        Ok(_probe) => Ok(false),
        Err((_, Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, errno)) => Err(HomeError::io("checking the lock of", path, errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_granted_flocks_from_proc_locks() {
        let table = "1: POSIX  ADVISORY  READ 9145 00:27:9 128 128\n\
                     3: FLOCK  ADVISORY  WRITE 9145 fe:00:246951 0 EOF\n\
                     3: -> FLOCK  ADVISORY  WRITE 9146 00:2d:77 0 EOF\n";
        assert_eq!(flocks_in(table), vec![(0xfe, 0, 246951)]);
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    }

    #[test]
    fn a_missing_home_is_made_0700_and_an_open_one_is_never_chmod_ed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("a/b/home"));
        assert!(matches!(
            home.open_verified(),
            Err(HomeError::Missing { .. })
        ));
        home.create_verified().expect("create");
        assert_eq!(mode(home.root()), 0o700);
        // A second creator (EEXIST) is fine.
        home.create_verified().expect("again");

        let shared = Home::new(dir.path().join("shared"));
        std::fs::create_dir(shared.root()).expect("mkdir");
        std::fs::set_permissions(shared.root(), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod");
        let refused = shared.create_verified().expect_err("1777 is refused");
        assert!(
            matches!(refused, HomeError::Writable { mode: 0o1777, .. }),
            "{refused}"
        );
        assert_eq!(mode(shared.root()), 0o1777);

        let link = Home::new(dir.path().join("link"));
        std::os::unix::fs::symlink(home.root(), link.root()).expect("ln");
        assert!(matches!(
            link.create_verified(),
            Err(HomeError::Symlink { .. })
        ));
    }

    #[test]
    fn files_and_directories_in_a_home_are_not_reached_through_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("home"));
        let home_dir = home.create_verified().expect("create");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim, home.root().join("daemon.log")).expect("ln");
        let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT;
        assert!(matches!(
            home_dir.open_file("daemon.log", flags, 0o600),
            Err(HomeError::Symlink { .. })
        ));
        assert!(matches!(
            home_dir.check_file("daemon.log"),
            Err(HomeError::Symlink { .. })
        ));
        std::os::unix::fs::symlink(dir.path(), home.root().join("logs")).expect("ln");
        assert!(matches!(
            home_dir.ensure_directory("logs"),
            Err(HomeError::Symlink { .. })
        ));
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");

        home_dir
            .open_file("fresh", flags, 0o600)
            .expect("a new file");
        assert_eq!(mode(&home.root().join("fresh")), 0o600);
        assert!(home_dir.check_file("fresh").expect("check"));
        assert!(!home_dir.check_file("absent").expect("check"));
    }

    #[test]
    fn the_lock_is_the_home_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("home"));
        let home_dir = home.create_verified().expect("create");
        assert!(!home.is_locked().expect("probe"));
        let LockOutcome::Taken(lock) = home_dir.try_lock().expect("lock") else {
            panic!("a fresh home is not locked");
        };
        assert!(home.is_locked().expect("probe"));
        assert!(matches!(
            home.open_verified().expect("open").try_lock(),
            Ok(LockOutcome::Held)
        ));
        drop(lock);
        assert!(!home.is_locked().expect("probe"));
    }
}
