//! Staging a release: checking every entry of a directory or a tarball
//! (paths, kinds, links, the unpacked size), then copying or unpacking it
//! with safe modes. Nothing is created before the whole source passed the
//! checks; `Releases::stage` removes a partial directory on failure.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{
    check_own_directory, hex, io_error, sync_directory, ReleaseError, MAX_ENTRIES, MAX_LINK_HOPS,
};

/// One entry of a release, relative to its root.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A directory only implied by the paths of entries inside it.
    ImpliedDir,
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
    },
    Symlink {
        target: PathBuf,
    },
    /// A tar hard link to an earlier regular file of the release.
    HardLink {
        target: PathBuf,
    },
}

/// What a checked source will produce.
#[derive(Debug)]
pub(super) struct Plan {
    entries: BTreeMap<PathBuf, Kind>,
    /// The mode of the release root, when the source gives one.
    root_mode: Option<u32>,
    /// Hex sha256 of the content, when asked for (directories).
    pub(super) hash: String,
    bytes: u64,
    limit: SizeLimit,
}

/// How many bytes of file contents a release may hold, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeLimit {
    /// The bound.
    pub bytes: u64,
    /// Set when the bound is a tarball's expansion ratio: the tarball's
    /// size.
    pub compressed: Option<u64>,
}

impl SizeLimit {
    /// For a source of an agent with `max_size`: a directory
    /// (`tarball_bytes` `None`) or a tarball of that many bytes (see
    /// `roster_core::deploy::unpacked_limit`).
    pub fn new(max_size: u64, tarball_bytes: Option<u64>) -> Self {
        let (bytes, by_ratio) = roster_core::deploy::unpacked_limit(max_size, tarball_bytes);
        Self {
            bytes,
            compressed: tarball_bytes.filter(|_| by_ratio),
        }
    }
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Plan {
    fn new(limit: SizeLimit) -> Self {
        Self {
            entries: BTreeMap::new(),
            root_mode: None,
            hash: String::new(),
            bytes: 0,
            limit,
        }
    }

    /// The error for a release whose files outgrow the limit.
    fn too_big(&self, source: &Path, agent: &str) -> ReleaseError {
        match self.limit.compressed {
            Some(compressed) => ReleaseError::Expands {
                source_path: source.to_path_buf(),
                compressed,
                limit: self.limit.bytes,
            },
            None => ReleaseError::TooBig {
                source_path: source.to_path_buf(),
                limit: self.limit.bytes,
                agent: agent.to_owned(),
            },
        }
    }

    fn unsafe_entry(source: &Path, entry: &Path, reason: impl Into<String>) -> ReleaseError {
        ReleaseError::UnsafeEntry {
            source_path: source.to_path_buf(),
            entry: display(entry),
            reason: reason.into(),
        }
    }

    /// Adds an entry after checking it against the ones before. `agent`
    /// names the agent in errors.
    fn add(
        &mut self,
        source: &Path,
        agent: &str,
        path: PathBuf,
        kind: Kind,
    ) -> Result<(), ReleaseError> {
        if self.entries.len() as u64 >= MAX_ENTRIES {
            return Err(ReleaseError::TooLarge {
                source_path: source.to_path_buf(),
                what: format!("more than {MAX_ENTRIES} entries"),
            });
        }
        // Every parent must be a directory (never a link or a file), so
        // nothing is ever written through a link.
        let mut parent = PathBuf::new();
        let components: Vec<_> = path.components().collect();
        for component in &components[..components.len().saturating_sub(1)] {
            parent.push(component);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent.clone(), Kind::ImpliedDir);
                }
                Some(Kind::ImpliedDir | Kind::Dir { .. }) => {}
                Some(_) => {
                    return Err(Self::unsafe_entry(
                        source,
                        &path,
                        format!(
                            "it lies under {}, which is not a directory",
                            display(&parent)
                        ),
                    ))
                }
            }
        }
        match &kind {
            Kind::File { size, .. } => {
                self.bytes = self.bytes.saturating_add(*size);
                if self.bytes > self.limit.bytes {
                    return Err(self.too_big(source, agent));
                }
            }
            Kind::Symlink { target } => check_link_lexically(source, &path, target)?,
            Kind::HardLink { target } => match self.entries.get(target) {
                Some(Kind::File { .. }) => {}
                _ => {
                    return Err(Self::unsafe_entry(
                        source,
                        &path,
                        format!(
                        "a hard link to {}, which is not an earlier regular file of the release",
                        display(target)
                    ),
                    ))
                }
            },
            Kind::Dir { .. } | Kind::ImpliedDir => {}
        }
        match self.entries.get(&path) {
            None => {}
            Some(Kind::ImpliedDir) if matches!(kind, Kind::Dir { .. }) => {}
            Some(_) => return Err(Self::unsafe_entry(source, &path, "it appears twice")),
        }
        self.entries.insert(path, kind);
        Ok(())
    }

    /// Resolves every symbolic link through the others: none may lead
    /// outside the release.
    fn check_links(&self, source: &Path) -> Result<(), ReleaseError> {
        for (path, kind) in &self.entries {
            if let Kind::Symlink { target } = kind {
                self.resolve(path, target)
                    .map_err(|reason| Self::unsafe_entry(source, path, reason))?;
            }
        }
        Ok(())
    }

    fn resolve(&self, link: &Path, target: &Path) -> Result<(), String> {
        let mut at: Vec<OsString> = link
            .parent()
            .map(|parent| parent.iter().map(OsStr::to_owned).collect())
            .unwrap_or_default();
        let mut pending: Vec<OsString> = target.iter().rev().map(OsStr::to_owned).collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == "." || part.is_empty() {
                continue;
            }
            if part == ".." {
                if at.pop().is_none() {
                    return Err(format!(
                        "a symbolic link to {}, which (followed through the release's other links) leads outside the release",
                        display(target)
                    ));
                }
                continue;
            }
            if part == "/" {
                return Err(format!(
                    "a symbolic link to {} leads outside the release",
                    display(target)
                ));
            }
            at.push(part);
            let here: PathBuf = at.iter().collect();
            if let Some(Kind::Symlink { target: next }) = self.entries.get(&here) {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(format!(
                        "a symbolic link to {} loops through other links",
                        display(target)
                    ));
                }
                at.pop();
                pending.extend(next.iter().rev().map(OsStr::to_owned));
            }
        }
        Ok(())
    }
}

/// A link target must be relative and, resolved lexically from the link's
/// directory, stay inside the release.
fn check_link_lexically(source: &Path, link: &Path, target: &Path) -> Result<(), ReleaseError> {
    if target.as_os_str().is_empty() {
        return Err(Plan::unsafe_entry(
            source,
            link,
            "a symbolic link with an empty target",
        ));
    }
    if target.is_absolute() {
        return Err(Plan::unsafe_entry(
            source,
            link,
            format!(
                "a symbolic link to the absolute path {}; only relative links inside the release are allowed",
                display(target)
            ),
        ));
    }
    let mut depth = link.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err(Plan::unsafe_entry(
                        source,
                        link,
                        format!(
                            "a symbolic link to {}, which leads outside the release",
                            display(target)
                        ),
                    ));
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Plan::unsafe_entry(
                    source,
                    link,
                    format!("a symbolic link to the absolute path {}", display(target)),
                ))
            }
        }
    }
    Ok(())
}

/// Only permission bits, and no write for group or others: never
/// setuid, setgid or sticky, never world-writable (issue #14: a 0666 file
/// stayed writable by every user of the machine).
fn file_mode(mode: u32) -> u32 {
    mode & 0o755
}

/// Directories keep `u+rwx` so the release can be filled and removed, and
/// lose group and other write: a 1777 directory becomes 0755, never 0777.
fn dir_mode(mode: u32) -> u32 {
    (mode & 0o755) | 0o700
}

/// Walks a source directory without following links, checking every entry
/// (and the size of the whole against `limit`); hashes paths, kinds, modes
/// and contents when `hash` is set.
pub(super) fn scan_directory(
    source: &Path,
    agent: &str,
    hash: bool,
    limit: SizeLimit,
) -> Result<Plan, ReleaseError> {
    let mut plan = Plan::new(limit);
    let root = std::fs::metadata(source).map_err(io_error("inspecting", source))?;
    plan.root_mode = Some(root.mode());
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let directory = source.join(&relative);
        let listing = std::fs::read_dir(&directory).map_err(io_error("reading", &directory))?;
        for item in listing {
            let item = item.map_err(io_error("reading", &directory))?;
            let path = relative.join(item.file_name());
            let full = source.join(&path);
            let metadata =
                std::fs::symlink_metadata(&full).map_err(io_error("inspecting", &full))?;
            let file_type = metadata.file_type();
            let kind = if file_type.is_dir() {
                pending.push(path.clone());
                Kind::Dir {
                    mode: metadata.mode(),
                }
            } else if file_type.is_file() {
                Kind::File {
                    mode: metadata.mode(),
                    size: metadata.len(),
                }
            } else if file_type.is_symlink() {
                Kind::Symlink {
                    target: std::fs::read_link(&full).map_err(io_error("reading", &full))?,
                }
            } else {
                return Err(Plan::unsafe_entry(
                    source,
                    &path,
                    format!(
                        "{}; only regular files, directories and symbolic links are allowed",
                        special_kind(&metadata)
                    ),
                ));
            };
            plan.add(source, agent, path, kind)?;
        }
    }
    plan.check_links(source)?;
    if hash {
        let mut hasher = Sha256::new();
        for (path, kind) in &plan.entries {
            hasher.update(path.as_os_str().as_bytes());
            hasher.update([0]);
            match kind {
                Kind::Dir { mode } => {
                    hasher.update(b"d");
                    hasher.update(dir_mode(*mode).to_le_bytes());
                }
                Kind::File { mode, size } => {
                    hasher.update(b"f");
                    hasher.update(file_mode(*mode).to_le_bytes());
                    hasher.update(size.to_le_bytes());
                    let full = source.join(path);
                    let mut file = open_regular(&full)?;
                    std::io::copy(&mut file, &mut hasher).map_err(io_error("reading", &full))?;
                }
                Kind::Symlink { target } => {
                    hasher.update(b"l");
                    hasher.update(target.as_os_str().as_bytes());
                }
                Kind::ImpliedDir | Kind::HardLink { .. } => {}
            }
            hasher.update([0]);
        }
        plan.hash = hex(&hasher.finalize());
    }
    Ok(plan)
}

fn special_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let file_type = metadata.file_type();
    if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_fifo() {
        "a named pipe (fifo)"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Opens a regular file of a source without following a link.
fn open_regular(path: &Path) -> Result<File, ReleaseError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error("opening", path))?;
    let metadata = file.metadata().map_err(io_error("inspecting", path))?;
    if !metadata.is_file() {
        return Err(ReleaseError::WrongKind {
            path: path.to_path_buf(),
            expected: "regular file (it changed during staging)",
        });
    }
    Ok(file)
}

/// After the entries are written: sets the final directory modes and
/// fsyncs every directory (files were synced as they were written).
fn finish_tree(target: &Path, plan: &Plan) -> Result<(), ReleaseError> {
    // Deepest first, so a directory is synced after what is inside it.
    for (path, kind) in plan.entries.iter().rev() {
        let mode = match kind {
            Kind::Dir { mode } => dir_mode(*mode),
            Kind::ImpliedDir => 0o755,
            _ => continue,
        };
        let full = target.join(path);
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
            .map_err(io_error("setting the mode of", &full))?;
        sync_directory(&full)?;
    }
    let mode = plan.root_mode.map_or(0o755, dir_mode);
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
        .map_err(io_error("setting the mode of", target))?;
    sync_directory(target)
}

fn make_dir(path: &Path) -> Result<(), ReleaseError> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            check_own_directory(path)
        }
        Err(error) => Err(io_error("creating", path)(error)),
    }
}

/// Creates a file of the release from `contents`, at most `limit` bytes.
fn write_file(
    path: &Path,
    mode: u32,
    contents: &mut dyn Read,
    limit: u64,
) -> Result<u64, ReleaseError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_error("creating", path))?;
    let written =
        std::io::copy(&mut contents.take(limit), &mut file).map_err(io_error("writing", path))?;
    file.set_permissions(std::fs::Permissions::from_mode(file_mode(mode)))
        .and_then(|()| file.sync_all())
        .map_err(io_error("writing", path))?;
    Ok(written)
}

pub(super) fn copy_directory(
    source: &Path,
    agent: &str,
    plan: &Plan,
    target: &Path,
) -> Result<(), ReleaseError> {
    let mut remaining = plan.limit.bytes;
    // Sorted paths put every directory before what is inside it.
    for (path, kind) in &plan.entries {
        let full = target.join(path);
        match kind {
            Kind::Dir { .. } | Kind::ImpliedDir => make_dir(&full)?,
            Kind::File { mode, .. } => {
                let from = source.join(path);
                let mut file = open_regular(&from)?;
                let written = write_file(&full, *mode, &mut file, remaining.saturating_add(1))?;
                // Files that grew since the scan count against the limit too.
                remaining = remaining
                    .checked_sub(written)
                    .ok_or_else(|| plan.too_big(source, agent))?;
            }
            Kind::Symlink { target: link } => {
                std::os::unix::fs::symlink(link, &full).map_err(io_error("creating", &full))?
            }
            Kind::HardLink { .. } => {}
        }
    }
    finish_tree(target, plan)
}

/// The path of a tar entry, relative and normalized; `None` for the root.
fn tar_path(source: &Path, raw: &[u8]) -> Result<Option<PathBuf>, ReleaseError> {
    let shown = || PathBuf::from(String::from_utf8_lossy(raw).into_owned());
    if raw.starts_with(b"/") {
        return Err(Plan::unsafe_entry(source, &shown(), "an absolute path"));
    }
    let mut path = PathBuf::new();
    for part in raw.split(|byte| *byte == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(Plan::unsafe_entry(
                    source,
                    &shown(),
                    "its path contains a \"..\" component",
                ))
            }
            part => path.push(OsStr::from_bytes(part)),
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// The checked meaning of one tar entry: its path (`None` for the root) and
/// kind, or `None` for headers that carry no file.
fn tar_entry<R: Read>(
    source: &Path,
    entry: &tar::Entry<'_, R>,
) -> Result<Option<(Option<PathBuf>, Kind)>, ReleaseError> {
    let raw = entry.path_bytes();
    let path = tar_path(source, &raw)?;
    let shown = || PathBuf::from(String::from_utf8_lossy(&raw).into_owned());
    let header = entry.header();
    let mode = || {
        header.mode().map_err(|error| ReleaseError::Archive {
            path: source.to_path_buf(),
            source: error,
        })
    };
    let link_target = || -> Result<PathBuf, ReleaseError> {
        match entry.link_name_bytes() {
            Some(name) if !name.is_empty() => Ok(PathBuf::from(OsStr::from_bytes(&name))),
            _ => Err(Plan::unsafe_entry(
                source,
                &shown(),
                "a link without a target",
            )),
        }
    };
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File {
            mode: mode()?,
            size: entry.size(),
        },
        tar::EntryType::Directory => Kind::Dir { mode: mode()? },
        tar::EntryType::Symlink => Kind::Symlink {
            target: link_target()?,
        },
        tar::EntryType::Link => {
            let target = link_target()?;
            let raw_target = target.as_os_str().as_bytes().to_vec();
            let normalized = tar_path(source, &raw_target).map_err(|_| {
                Plan::unsafe_entry(
                    source,
                    &shown(),
                    format!("a hard link to {}, outside the release", display(&target)),
                )
            })?;
            match normalized {
                Some(target) => Kind::HardLink { target },
                None => {
                    return Err(Plan::unsafe_entry(
                        source,
                        &shown(),
                        "a hard link to the release root",
                    ))
                }
            }
        }
        tar::EntryType::XGlobalHeader
        | tar::EntryType::XHeader
        | tar::EntryType::GNULongName
        | tar::EntryType::GNULongLink => return Ok(None),
        other => {
            let what = match other {
                tar::EntryType::Char => "a character device".to_owned(),
                tar::EntryType::Block => "a block device".to_owned(),
                tar::EntryType::Fifo => "a named pipe (fifo)".to_owned(),
                tar::EntryType::GNUSparse => "a sparse file".to_owned(),
                other => format!("an entry of tar type {:?}", char::from(other.as_byte())),
            };
            return Err(Plan::unsafe_entry(
                source,
                &shown(),
                format!("{what}; only regular files, directories and symbolic links are allowed"),
            ));
        }
    };
    if path.is_none() && !matches!(kind, Kind::Dir { .. }) {
        return Err(Plan::unsafe_entry(
            source,
            &shown(),
            "the release root itself must be a directory",
        ));
    }
    Ok(Some((path, kind)))
}

fn open_tarball(
    source: &Path,
) -> Result<tar::Archive<flate2::read::GzDecoder<File>>, ReleaseError> {
    let file = open_regular(source)?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(file)))
}

fn archive_error(source: &Path) -> impl Fn(std::io::Error) -> ReleaseError + '_ {
    move |error| ReleaseError::Archive {
        path: source.to_path_buf(),
        source: error,
    }
}

/// The first, complete pass over a tarball: checks every entry, and the
/// unpacked size against `limit` as the headers come (a bomb is refused at
/// the entry that crosses it, before its contents are inflated); with
/// `hash`, the hex sha256 of the tarball's bytes.
pub(super) fn scan_tarball(
    source: &Path,
    agent: &str,
    hash: bool,
    limit: SizeLimit,
) -> Result<(Plan, String), ReleaseError> {
    let mut plan = Plan::new(limit);
    let mut archive = open_tarball(source)?;
    let entries = archive.entries().map_err(archive_error(source))?;
    for entry in entries {
        let entry = entry.map_err(archive_error(source))?;
        match tar_entry(source, &entry)? {
            None => {}
            Some((None, Kind::Dir { mode })) => plan.root_mode = Some(mode),
            Some((None, _)) => {}
            Some((Some(path), kind)) => plan.add(source, agent, path, kind)?,
        }
    }
    plan.check_links(source)?;
    let digest = if hash {
        let mut file = open_regular(source)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(io_error("reading", source))?;
        hex(&hasher.finalize())
    } else {
        String::new()
    };
    Ok((plan, digest))
}

/// The second pass: writes what the first pass checked, refusing anything
/// that differs from it (the archive changed in between).
pub(super) fn unpack_tarball(
    source: &Path,
    plan: &Plan,
    target: &Path,
) -> Result<(), ReleaseError> {
    let mut archive = open_tarball(source)?;
    let entries = archive.entries().map_err(archive_error(source))?;
    let mut remaining = plan.limit.bytes;
    for entry in entries {
        let mut entry = entry.map_err(archive_error(source))?;
        let Some((path, kind)) = tar_entry(source, &entry)? else {
            continue;
        };
        let Some(path) = path else {
            continue;
        };
        if plan.entries.get(&path) != Some(&kind) {
            return Err(ReleaseError::Changed {
                path: source.to_path_buf(),
                entry: display(&path),
            });
        }
        let mut parent = target.to_path_buf();
        let components: Vec<_> = path.components().collect();
        for component in &components[..components.len().saturating_sub(1)] {
            parent.push(component);
            make_dir(&parent)?;
        }
        let full = target.join(&path);
        match &kind {
            Kind::Dir { .. } | Kind::ImpliedDir => make_dir(&full)?,
            Kind::File { mode, size } => {
                let written = write_file(&full, *mode, &mut entry, (*size).min(remaining))?;
                remaining -= written;
            }
            Kind::Symlink { target: link } => {
                std::os::unix::fs::symlink(link, &full).map_err(io_error("creating", &full))?
            }
            Kind::HardLink { target: original } => {
                let original = target.join(original);
                std::fs::hard_link(&original, &full).map_err(io_error("linking", &full))?;
            }
        }
    }
    // Directories only implied by paths exist now too; fix modes and sync.
    finish_tree(target, plan)
}
