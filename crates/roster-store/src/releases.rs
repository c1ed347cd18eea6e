//! The on-disk release store for zero-downtime deploys.
//!
//! Per agent, under the roster home:
//!
//! - `agents/NAME/releases/VERSION/`: one directory per release;
//! - `agents/NAME/current`: a symbolic link to the live release (relative
//!   target `releases/VERSION`), swapped atomically (a new link
//!   `current.tmp` renamed over it, then an fsync of the directory);
//! - `agents/NAME/shared/`: data that outlives releases;
//! - `agents/NAME/releases.json`: the manifest, rewritten atomically.
//!
//! Staging (`staging.rs`) copies a directory or unpacks a `.tar.gz` after
//! checking every entry: only regular files, directories and symbolic links
//! that stay inside the release are accepted, without setuid/setgid/sticky
//! bits and without write for group or others; the files may hold at most
//! the agent's `max_size` (default 1 GiB), and a tarball may unpack to at
//! most 100 times its size (above 64 MiB).
//! Directories are owned by the user roster runs as and created 0700; a
//! symbolic link or another user's directory on the way is refused, as for
//! the home itself (see [`crate::home`]).
//!
//! A release counts as *deployable* when its directory exists and it has a
//! manifest entry whose result is neither `failed` nor `removed`. A
//! directory without an entry is a half-staged one: [`Releases::recover`]
//! removes it, so callers record a staged release (e.g. as `ready`) before
//! switching to it.
//!
//! The store does no locking of its own: the daemon serializes the
//! operations on one agent.
//!
//! This module holds [`Releases`] (the paths, version names), its errors
//! and the file-system helpers its parts share; the operations are split
//! by job: `stage` (adding and discarding a release; the entry checks and
//! copying in `staging`), `manifest` (`releases.json`, `list`, `record`),
//! `layout` (the directories and the `current` link), `lookup` (`live`,
//! `previous`, `is_deployable`), `cleanup` (pruning beyond `keep`) and
//! `recover` (repairs after a crash).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use roster_core::units::format_size;
use roster_core::AgentName;

mod cleanup;
mod layout;
mod lookup;
mod manifest;
mod recover;
mod stage;
mod staging;
#[cfg(test)]
mod tests;

pub use stage::default_version;
pub use staging::SizeLimit;

/// At most this many entries in one release.
pub const MAX_ENTRIES: u64 = 100_000;
/// Symbolic links followed while resolving one link inside a release.
const MAX_LINK_HOPS: u32 = 40;

const MANIFEST: &str = "releases.json";
const MANIFEST_TMP: &str = ".releases.json.tmp";
const CURRENT: &str = "current";
const CURRENT_TMP: &str = "current.tmp";

/// Why a release operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The source to stage does not exist.
    #[error(
        "release source {path} does not exist
  hint: give the path of a directory or of a .tar.gz/.tgz archive"
    )]
    SourceMissing {
        /// The source.
        path: PathBuf,
    },
    /// The source is neither a directory nor a gzipped tarball.
    #[error(
        "release source {path} is neither a directory nor a .tar.gz/.tgz regular file
  hint: give a directory, or pack the release with `tar czf release.tar.gz -C DIR .`"
    )]
    SourceKind {
        /// The source.
        path: PathBuf,
    },
    /// A version string breaks a rule.
    #[error(
        "release version {version:?} is not valid: {rule}
  hint: use 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit (e.g. 2026-11-29.1)"
    )]
    BadVersion {
        /// The version given.
        version: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The version is taken.
    #[error(
        "release {version} already exists ({path})
  hint: choose another version, or discard the old release first"
    )]
    Exists {
        /// The version.
        version: String,
        /// Its directory.
        path: PathBuf,
    },
    /// A release directory that is not there.
    #[error(
        "release {version} is not staged: {path} is not a directory
  hint: stage it first (`roster releases` lists the staged ones)"
    )]
    NotStaged {
        /// The version.
        version: String,
        /// Its directory.
        path: PathBuf,
    },
    /// The release `current` points to may not be removed.
    #[error(
        "release {version} is the one `current` points to; roster does not remove it
  hint: switch to another release first"
    )]
    Live {
        /// The version.
        version: String,
    },
    /// An entry of the source that may not be part of a release.
    #[error(
        "{source_path}: refusing entry {entry:?}: {reason}
  hint: rebuild the release with only regular files, directories and symbolic links that stay inside the release"
    )]
    UnsafeEntry {
        /// The source being staged.
        source_path: PathBuf,
        /// The entry, relative to the release root.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The source exceeds a bound.
    #[error(
        "{source_path}: {what}
  hint: a release holds at most {MAX_ENTRIES} entries; keep data in the agent's shared/ directory"
    )]
    TooLarge {
        /// The source being staged.
        source_path: PathBuf,
        /// Which bound and by how much.
        what: String,
    },
    /// The files of the source outgrow the agent's `max_size`.
    #[error(
        "{source_path}: the release holds more than {limit_shown} of files (`max_size` of [agents.{agent}.deploy]); nothing was staged
  hint: keep data in the agent's shared/ directory ($ROSTER_SHARED), or raise max_size in [agents.{agent}.deploy] if the release really is this large",
        limit_shown = format_size(*limit)
    )]
    TooBig {
        /// The source being staged.
        source_path: PathBuf,
        /// The bound, in bytes.
        limit: u64,
        /// The agent.
        agent: String,
    },
    /// A tarball that unpacks to far more than its own size.
    #[error(
        "{source_path}: the {compressed_shown} archive unpacks to more than {limit_shown}, over {ratio} times its size; nothing was staged
  hint: an archive this compressible is most likely a mistake (or a decompression bomb); if it is not, deploy the unpacked directory instead (`max_size` still applies)",
        compressed_shown = format_size(*compressed),
        limit_shown = format_size(*limit),
        ratio = roster_core::deploy::MAX_EXPANSION
    )]
    Expands {
        /// The archive.
        source_path: PathBuf,
        /// Its size.
        compressed: u64,
        /// The bound its expansion ratio sets, in bytes.
        limit: u64,
    },
    /// The archive could not be read.
    #[error(
        "cannot read the archive {path}: {source}
  hint: check that it is a complete gzip-compressed tar archive (`tar tzf {path}`)"
    )]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The archive changed between the check and the unpacking.
    #[error(
        "{path} changed while it was being unpacked (entry {entry:?})
  hint: do not modify the archive during a deploy; stage it again"
    )]
    Changed {
        /// The archive.
        path: PathBuf,
        /// The first entry that differed.
        entry: String,
    },
    /// A symbolic link where the store expects a directory.
    #[error(
        "{path} is a symbolic link; roster does not follow links in its release store
  hint: remove the link (roster recreates the directory)"
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Something else than the expected kind of file.
    #[error(
        "{path} is not a {expected}
  hint: move it away; roster recreates what it needs"
    )]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// What it should be.
        expected: &'static str,
    },
    /// Owned by another user, who could replace what is inside.
    #[error(
        "{path} is owned by uid {owner}, but roster runs as uid {expected}; another user could replace the releases in it
  hint: chown -R {expected} {path}, or remove it"
    )]
    WrongOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user roster runs as (effective uid).
        expected: u32,
    },
    /// The manifest cannot be parsed.
    #[error(
        "the release manifest {path} is damaged: {detail}
  hint: fix the JSON, or move the file away (the releases it listed then count as half-staged)"
    )]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// The system refused.
    #[error(
        "{what} {path}: {source}
  hint: check the permissions and free space of the roster home"
    )]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError {
    let path = path.to_path_buf();
    move |source| ReleaseError::Io { what, path, source }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One agent's release store.
#[derive(Clone, Debug)]
pub struct Releases {
    home: PathBuf,
    dir: PathBuf,
}

impl Releases {
    /// `<home>/agents/NAME`.
    pub fn new(home: &Path, agent: &AgentName) -> Self {
        Self {
            home: home.to_path_buf(),
            dir: home.join("agents").join(agent.as_str()),
        }
    }

    /// `<home>/agents/NAME`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// NAME, for messages.
    fn agent(&self) -> String {
        self.dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `<home>/agents/NAME/releases/VERSION`.
    pub fn release_dir(&self, version: &str) -> PathBuf {
        self.releases_root().join(version)
    }

    /// `<home>/agents/NAME/shared`.
    pub fn shared_dir(&self) -> PathBuf {
        self.dir.join("shared")
    }

    /// `<home>/agents/NAME/current`.
    pub fn current_link(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    fn releases_root(&self) -> PathBuf {
        self.dir.join("releases")
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    /// Validates a version: 1 to 64 characters of `[A-Za-z0-9._-]`,
    /// starting with a letter or digit, without `..`, not `current`.
    pub fn check_version(version: &str) -> Result<(), ReleaseError> {
        let bad = |rule| {
            Err(ReleaseError::BadVersion {
                version: version.to_owned(),
                rule,
            })
        };
        if version.is_empty() {
            return bad("it is empty");
        }
        if version.chars().count() > 64 {
            return bad("it is longer than 64 characters");
        }
        if !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return bad("only the characters A-Z a-z 0-9 . _ - are allowed");
        }
        if !version.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return bad("it must start with a letter or a digit");
        }
        if version.contains("..") {
            return bad("it must not contain \"..\"");
        }
        if version == CURRENT {
            return bad("\"current\" is reserved for the live release's link");
        }
        Ok(())
    }
}

/// Refuses a symbolic link, a non-directory or another user's directory.
fn check_own_directory(path: &Path) -> Result<(), ReleaseError> {
    let metadata = check_directory(path)?;
    let me = nix::unistd::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(ReleaseError::WrongOwner {
            path: path.to_path_buf(),
            owner: metadata.uid(),
            expected: me,
        });
    }
    Ok(())
}

/// A real directory (not a link, not another kind of file).
fn check_directory(path: &Path) -> Result<std::fs::Metadata, ReleaseError> {
    let metadata = std::fs::symlink_metadata(path).map_err(io_error("inspecting", path))?;
    if metadata.is_symlink() {
        return Err(ReleaseError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if !metadata.is_dir() {
        return Err(ReleaseError::WrongKind {
            path: path.to_path_buf(),
            expected: "directory",
        });
    }
    Ok(metadata)
}

/// Removes a file, link or directory tree; missing is fine. Never follows
/// a link.
fn remove_any(path: &Path) -> Result<(), ReleaseError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error("inspecting", path)(error)),
    };
    let outcome = if metadata.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error("removing", path)(error)),
    }
}

fn sync_directory(path: &Path) -> Result<(), ReleaseError> {
    File::open(path)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("syncing", path))
}
