//! The file system `roster install` and `uninstall` work in, reached
//! without following links: every path is opened one component at a time
//! from the root's directory fd (`openat` with `O_NOFOLLOW`), and every
//! change is made through a descriptor (`mkdirat`, `fchown`, `fchmod`,
//! `renameat`, `unlinkat`), so a link planted below the root can neither
//! lead a write nor a removal outside it.
//!
//! With `--root DIR` no link below DIR is followed (DIR itself may be one:
//! the caller named it). On `/` the system's own directories on the way
//! (`/etc`, `/etc/systemd`, `/etc/systemd/system`, `/var`, `/var/lib`) are
//! taken as the system has them, links included; roster's own paths
//! (`/etc/roster`, `/var/lib/roster`, the unit) never are.
//!
//! Paths are given as on the installed system (`/etc/roster`) and shown as
//! they are here (`DIR/etc/roster`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, fsync, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::paths;

/// The largest file [`Tree::read`] reads (the account files, a config).
const READ_LIMIT: u64 = 16 << 20;

/// What is at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    /// A link, a device, a FIFO, a socket.
    Other,
}

/// A path's kind, mode and owner, as `lstat` says.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub kind: Kind,
    /// The permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Found {
    fn of(stat: &FileStat) -> Self {
        let kind = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => Kind::Directory,
            SFlag::S_IFREG => Kind::File,
            _ => Kind::Other,
        };
        Self {
            kind,
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
        }
    }
}

/// The root install works under: `--root DIR`, or `/`.
#[derive(Debug)]
pub struct Tree {
    /// DIR, absolute, or `/`.
    root: PathBuf,
    /// `--root` was given: no link below it is followed.
    strict: bool,
    /// `install` or `uninstall`, for messages.
    command: &'static str,
}

impl Tree {
    /// The tree under `root` (`--root DIR`), or `/`.
    pub fn new(root: Option<&Path>, command: &'static str) -> Self {
        Self {
            root: root.map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            strict: root.is_some(),
            command,
        }
    }

    /// `--root DIR`, if given.
    pub fn root(&self) -> Option<&Path> {
        self.strict.then_some(self.root.as_path())
    }

    /// Where `path` (as on the installed system) is here.
    pub fn shown(&self, path: &Path) -> PathBuf {
        match self.root() {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }

    /// What is at `path`; `None` when it, or a directory on the way, is
    /// missing. A link on the way is an error that names it.
    pub fn find(&self, path: &Path) -> Result<Option<Found>> {
        let Some((parent, name)) = self.parent(path)? else {
            return Ok(None);
        };
        let flags = if self.follows(path) {
            AtFlags::empty()
        } else {
            AtFlags::AT_SYMLINK_NOFOLLOW
        };
        match fstatat(&parent, name, flags) {
            Ok(stat) => Ok(Some(Found::of(&stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(errno).with_context(|| format!("reading {}", self.show(path))),
        }
    }

    /// Refuses `path` unless it is missing or of `kind`; a link is named as one.
    pub fn expect(&self, path: &Path, kind: Kind) -> Result<Option<Found>> {
        let found = self.find(path)?;
        if let Some(found) = found {
            if found.kind != kind {
                let (parent, name) = self.existing_parent(path)?;
                return Err(self.wrong_kind(&parent, name, path, kind));
            }
        }
        Ok(found)
    }

    /// The contents of the regular file at `path`; `None` when missing.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let Some((parent, name)) = self.parent(path)? else {
            return Ok(None);
        };
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match openat(&parent, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(self.wrong_kind(&parent, name, path, Kind::File)),
            Err(errno) => {
                return Err(errno).with_context(|| format!("opening {}", self.show(path)))
            }
        };
        let found = Found::of(&fstat(&fd).with_context(|| format!("reading {}", self.show(path)))?);
        if found.kind != Kind::File {
            return Err(self.wrong_kind(&parent, name, path, Kind::File));
        }
        let mut contents = Vec::new();
        File::from(fd)
            .take(READ_LIMIT)
            .read_to_end(&mut contents)
            .with_context(|| format!("reading {}", self.show(path)))?;
        Ok(Some(contents))
    }

    /// The names in the directory at `path` (empty when it is missing).
    pub fn list(&self, path: &Path) -> Result<Vec<OsString>> {
        let Some(directory) = self.open_directory(path)? else {
            return Ok(Vec::new());
        };
        names(directory).with_context(|| format!("listing {}", self.show(path)))
    }

    /// Creates the directory `path` (its parent must exist), then gives it
    /// its owner and mode: it is 0700 until then.
    pub fn mkdir(&self, path: &Path, mode: u32, owner: (u32, u32)) -> Result<()> {
        let (parent, name) = self.existing_parent(path)?;
        match mkdirat(&parent, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                return Err(self.wrong_kind(&parent, name, path, Kind::Directory))
                    .context("it appeared while installing")
            }
            Err(errno) => {
                return Err(errno).with_context(|| format!("creating {}", self.show(path)))
            }
        }
        self.set_owner_and_mode(path, Kind::Directory, Some(owner), Some(mode))
    }

    /// Sets the owner and (or) the mode of the file or directory at `path`,
    /// which must be of `kind`.
    pub fn set_owner_and_mode(
        &self,
        path: &Path,
        kind: Kind,
        owner: Option<(u32, u32)>,
        mode: Option<u32>,
    ) -> Result<()> {
        let (parent, name) = self.existing_parent(path)?;
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match openat(&parent, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(self.wrong_kind(&parent, name, path, kind)),
            Err(errno) => {
                return Err(errno).with_context(|| format!("opening {}", self.show(path)))
            }
        };
        let found = Found::of(&fstat(&fd).with_context(|| format!("reading {}", self.show(path)))?);
        if found.kind != kind {
            return Err(self.wrong_kind(&parent, name, path, kind));
        }
        if let Some((uid, gid)) = owner {
            fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .with_context(|| format!("chown {}", self.show(path)))?;
        }
        if let Some(mode) = mode {
            fchmod(&fd, Mode::from_bits_truncate(mode))
                .with_context(|| format!("chmod {}", self.show(path)))?;
        }
        Ok(())
    }

    /// Writes a temp file beside `path` with its owner and mode, fsyncs it,
    /// renames it over `path` and fsyncs the directory.
    pub fn write_atomically(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        (uid, gid): (u32, u32),
    ) -> Result<()> {
        let (parent, name) = self.existing_parent(path)?;
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(".roster-tmp");
        let shown_temp = self.shown(path).with_file_name(&temp);
        let _ = unlinkat(&parent, temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            &parent,
            temp.as_os_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .with_context(|| format!("creating {}", shown_temp.display()))?;
        let mut file = File::from(fd);
        let written = file
            .write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", shown_temp.display()))
            .and_then(|()| {
                fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .with_context(|| format!("chown {}", shown_temp.display()))
            })
            .and_then(|()| {
                fchmod(&file, Mode::from_bits_truncate(mode))
                    .with_context(|| format!("chmod {}", shown_temp.display()))
            })
            .and_then(|()| {
                renameat(&parent, temp.as_os_str(), &parent, name).with_context(|| {
                    format!("renaming {} to {}", shown_temp.display(), self.show(path))
                })
            });
        if written.is_err() {
            let _ = unlinkat(&parent, temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        written?;
        let _ = fsync(&parent);
        Ok(())
    }

    /// Removes the file (or link) at `path`; a missing one is fine.
    pub fn remove_file(&self, path: &Path) -> Result<()> {
        let Some((parent, name)) = self.parent(path)? else {
            return Ok(());
        };
        match unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(errno).with_context(|| format!("removing {}", self.show(path))),
        }
    }

    /// Removes the directory at `path` if it is empty; false when it is
    /// not (or is missing).
    pub fn remove_empty_directory(&self, path: &Path) -> Result<bool> {
        let Some((parent, name)) = self.parent(path)? else {
            return Ok(false);
        };
        match unlinkat(&parent, name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT | Errno::ENOTEMPTY | Errno::EEXIST) => Ok(false),
            Err(errno) => Err(errno).with_context(|| format!("removing {}", self.show(path))),
        }
    }

    /// Removes the directory at `path` and all in it, never following a
    /// link (a link is removed, not what it points to) and never entering
    /// another file system (a mount point is kept). Returns what was kept.
    pub fn remove_tree(&self, path: &Path) -> Result<Vec<PathBuf>> {
        let Some((parent, name)) = self.parent(path)? else {
            return Ok(Vec::new());
        };
        let Some(directory) = self.open_directory(path)? else {
            return Ok(Vec::new());
        };
        let device = fstat(&directory)
            .with_context(|| format!("reading {}", self.show(path)))?
            .st_dev;
        let mut kept = Vec::new();
        empty_directory(directory, &self.shown(path), device, &mut kept)?;
        if kept.is_empty() {
            match unlinkat(&parent, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(errno) => {
                    return Err(errno).with_context(|| format!("removing {}", self.show(path)))
                }
            }
        }
        Ok(kept)
    }

    /// Whether the component `path` may be a link that is followed: on `/`,
    /// the system's own directories on the way to roster's.
    fn follows(&self, path: &Path) -> bool {
        !self.strict && paths::system_directory(path)
    }

    fn show(&self, path: &Path) -> String {
        self.shown(path).display().to_string()
    }

    /// The directory at `path`, opened without following a link.
    fn open_directory(&self, path: &Path) -> Result<Option<OwnedFd>> {
        let Some((parent, name)) = self.parent(path)? else {
            return Ok(None);
        };
        self.open_directory_at(&parent, name, path)
    }

    /// Like [`Tree::parent`], but a missing directory on the way is an error.
    fn existing_parent<'a>(&self, path: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
        self.parent(path)?
            .with_context(|| format!("{}: a directory on the way is missing", self.show(path)))
    }

    /// The directory holding `path`, opened component by component from
    /// the root, and `path`'s last name; `None` when a directory on the way
    /// is missing.
    fn parent<'a>(&self, path: &'a Path) -> Result<Option<(OwnedFd, &'a OsStr)>> {
        let mut names = Vec::new();
        for component in path.components() {
            match component {
                Component::RootDir => {}
                Component::Normal(name) => names.push(name),
                _ => bail!("{} is not a plain absolute path", path.display()),
            }
        }
        let Some(name) = names.pop() else {
            bail!("{} names no file", path.display());
        };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut directory = match nix::fcntl::open(&self.root, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => {
                return Err(errno).with_context(|| format!("opening {}", self.root.display()))
            }
        };
        let mut walked = PathBuf::from("/");
        for component in names {
            walked.push(component);
            match self.open_directory_at(&directory, component, &walked)? {
                Some(next) => directory = next,
                None => return Ok(None),
            }
        }
        Ok(Some((directory, name)))
    }

    /// Opens `name` in `parent` as a directory, following a link only where
    /// [`Tree::follows`] allows; `None` when missing.
    fn open_directory_at(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
    ) -> Result<Option<OwnedFd>> {
        let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        if !self.follows(path) {
            flags |= OFlag::O_NOFOLLOW;
        }
        match openat(parent, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                Err(self.wrong_kind(parent, name, path, Kind::Directory))
            }
            Err(errno) => Err(errno).with_context(|| format!("opening {}", self.show(path))),
        }
    }

    /// The error for `name` in `parent` not being of `kind`: a link is
    /// named as one, with where it points.
    fn wrong_kind(&self, parent: &OwnedFd, name: &OsStr, path: &Path, kind: Kind) -> anyhow::Error {
        let shown = self.shown(path);
        if let Ok(target) = readlinkat(parent, name) {
            let why = match self.root() {
                Some(root) => format!(
                    "roster {} follows no link below {}, so that nothing outside it is written or removed",
                    self.command,
                    root.display()
                ),
                None => format!(
                    "roster {} follows no link into its own directories",
                    self.command
                ),
            };
            return anyhow::anyhow!(
                "{} is a symbolic link (to {}): {why}\n  hint: replace the link with a real directory (or move it away), then run roster {} again",
                shown.display(),
                Path::new(&target).display(),
                self.command
            );
        }
        anyhow::anyhow!(
            "{} is not a {}: move it away, then run roster {} again",
            shown.display(),
            match kind {
                Kind::Directory => "directory",
                Kind::File => "regular file",
                Kind::Other => "special file",
            },
            self.command
        )
    }
}

/// The names in an open directory, without `.` and `..`.
fn names(directory: OwnedFd) -> nix::Result<Vec<OsString>> {
    let mut listing = nix::dir::Dir::from_fd(directory)?;
    let mut found = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            found.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(found)
}

/// Removes everything in `directory` (shown as `shown`) that is on
/// `device`; what is kept (mount points, and the directories holding them)
/// goes into `kept`.
fn empty_directory(
    directory: OwnedFd,
    shown: &Path,
    device: u64,
    kept: &mut Vec<PathBuf>,
) -> Result<()> {
    let listed = directory
        .try_clone()
        .with_context(|| format!("listing {}", shown.display()))?;
    for name in names(listed).with_context(|| format!("listing {}", shown.display()))? {
        let child = shown.join(&name);
        let stat = match fstatat(&directory, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => continue,
            Err(errno) => {
                return Err(errno).with_context(|| format!("reading {}", child.display()))
            }
        };
        if Found::of(&stat).kind != Kind::Directory {
            match unlinkat(&directory, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => continue,
                Err(errno) => {
                    return Err(errno).with_context(|| format!("removing {}", child.display()))
                }
            }
        }
        if stat.st_dev != device {
            kept.push(child);
            continue;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let inner = match openat(&directory, name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(errno) => {
                return Err(errno).with_context(|| format!("opening {}", child.display()))
            }
        };
        let before = kept.len();
        empty_directory(inner, &child, device, kept)?;
        if kept.len() == before {
            match unlinkat(&directory, name.as_os_str(), UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(errno) => {
                    return Err(errno).with_context(|| format!("removing {}", child.display()))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, tempfile::TempDir) {
        let root = tempfile::tempdir().expect("root");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("keep"), "keep\n").expect("keep");
        (root, outside)
    }

    #[test]
    fn a_link_below_the_root_is_never_followed() {
        let (root, outside) = scratch();
        std::fs::create_dir(root.path().join("var")).expect("var");
        std::os::unix::fs::symlink(outside.path(), root.path().join("var/lib")).expect("link");
        let tree = Tree::new(Some(root.path()), "install");
        let home = Path::new("/var/lib/roster");
        for error in [
            tree.find(home).expect_err("find"),
            tree.read(Path::new("/var/lib/keep")).expect_err("read"),
            tree.mkdir(home, 0o750, (0, 0)).expect_err("mkdir"),
            tree.remove_tree(home).expect_err("remove"),
            tree.expect(Path::new("/var/lib"), Kind::Directory)
                .expect_err("the link itself"),
        ] {
            let text = format!("{error:#}");
            assert!(
                text.contains(&format!(
                    "{}/var/lib is a symbolic link (to {})",
                    root.path().display(),
                    outside.path().display()
                )),
                "{text}"
            );
        }
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("outside").count(),
            1,
            "something was made outside"
        );
    }

    #[test]
    fn trees_are_removed_without_following_their_links() {
        let (root, outside) = scratch();
        let home = root.path().join("var/lib/roster");
        std::fs::create_dir_all(home.join("logs/deep")).expect("home");
        std::fs::write(home.join("logs/deep/web.log"), "x").expect("log");
        std::os::unix::fs::symlink(outside.path(), home.join("logs/elsewhere")).expect("link");
        std::os::unix::fs::symlink(outside.path().join("keep"), home.join("keep")).expect("link");
        let tree = Tree::new(Some(root.path()), "uninstall");
        assert_eq!(
            tree.list(Path::new("/var/lib/roster")).expect("list").len(),
            2
        );
        let kept = tree
            .remove_tree(Path::new("/var/lib/roster"))
            .expect("removed");
        assert!(kept.is_empty(), "{kept:?}");
        assert!(!home.exists());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("keep")).expect("kept"),
            "keep\n"
        );
        // Missing is fine.
        assert!(tree
            .remove_tree(Path::new("/var/lib/roster"))
            .expect("missing")
            .is_empty());
        assert!(tree
            .remove_empty_directory(Path::new("/var"))
            .is_ok_and(|removed| !removed));
        assert!(tree
            .remove_empty_directory(Path::new("/var/lib"))
            .expect("empty"));
    }

    #[test]
    fn files_are_written_through_the_tree() {
        let (root, _outside) = scratch();
        let tree = Tree::new(Some(root.path()), "install");
        let path = Path::new("/etc/roster");
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        std::fs::create_dir(root.path().join("etc")).expect("etc");
        tree.mkdir(path, 0o750, (uid, gid)).expect("mkdir");
        let file = Path::new("/etc/roster/roster.toml");
        tree.write_atomically(file, b"x = 1\n", 0o640, (uid, gid))
            .expect("write");
        assert_eq!(
            tree.read(file).expect("read").as_deref(),
            Some(&b"x = 1\n"[..])
        );
        let found = tree.find(file).expect("find").expect("there");
        assert_eq!((found.kind, found.mode), (Kind::File, 0o640));
        assert_eq!(
            tree.find(path).expect("find").map(|found| found.mode),
            Some(0o750)
        );
        assert_eq!(tree.shown(file), root.path().join("etc/roster/roster.toml"));
        tree.remove_file(file).expect("remove");
        assert!(tree.find(file).expect("find").is_none());
    }

    #[test]
    fn on_slash_only_the_system_s_directories_may_be_links() {
        let tree = Tree::new(None, "install");
        assert!(tree.follows(Path::new("/var/lib")));
        assert!(tree.follows(Path::new("/etc/systemd/system")));
        assert!(!tree.follows(Path::new("/var/lib/roster")));
        assert!(!tree.follows(Path::new("/etc/roster")));
        assert!(!Tree::new(Some(Path::new("/x")), "install").follows(Path::new("/var/lib")));
    }
}
