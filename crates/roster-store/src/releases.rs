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

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use roster_core::api::ReleaseRecord;
use roster_core::units::format_size;
use roster_core::AgentName;

mod staging;
#[cfg(test)]
mod tests;

pub use staging::SizeLimit;
use staging::{copy_directory, scan_directory, scan_tarball, unpack_tarball};

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

/// The manifest as stored: unix seconds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Manifest {
    releases: Vec<Entry>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    version: String,
    created: u64,
    #[serde(default)]
    deployed: Option<u64>,
    result: String,
    #[serde(default)]
    detail: Option<String>,
}

impl Manifest {
    fn get(&self, version: &str) -> Option<&Entry> {
        self.releases.iter().find(|entry| entry.version == version)
    }

    /// Indexes of the entries, newest `created` first (later entries first
    /// among equals).
    fn newest_first(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.releases.len()).collect();
        order.sort_by(|&a, &b| (self.releases[b].created, b).cmp(&(self.releases[a].created, a)));
        order
    }
}

/// Whether a manifest result allows going live.
fn result_is_deployable(result: &str) -> bool {
    result != "failed" && result != "removed"
}

/// Whether a result says the release was live and not judged bad: the
/// candidates for [`Releases::previous`] and for [`Releases::recover`].
fn result_was_good_live(result: &str) -> bool {
    matches!(result, "deployed" | "interrupted" | "verifying")
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// `YYYYMMDDTHHMMSSZ-` and the first 8 characters of `hash_hex` (a
/// lowercase hex sha256): the version of a release staged without one.
pub fn default_version(now_unix: u64, hash_hex: &str) -> String {
    let millis = i64::try_from(now_unix.saturating_mul(1000)).unwrap_or(i64::MAX);
    // 2026-11-28T23:59:01.123Z -> 20261128T235901Z
    let stamp: String = crate::clock::rfc3339_millis(millis)
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let short: String = hash_hex.chars().take(8).collect();
    format!("{stamp}Z-{short}")
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

    /// Creates `agents/`, `agents/NAME/`, `releases/` and `shared/` (mode
    /// 0700) if missing; refuses a symbolic link, a non-directory or a
    /// directory owned by another user on that path below the home. The
    /// home itself must exist.
    pub fn ensure_layout(&self) -> Result<(), ReleaseError> {
        let agents = self.home.join("agents");
        // Others may traverse (0711), never list: an agent that runs as
        // its own user reaches its release and its shared directory.
        for path in [
            agents,
            self.dir.clone(),
            self.releases_root(),
            self.shared_dir(),
        ] {
            match std::fs::DirBuilder::new().mode(0o711).create(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(ReleaseError::Io {
                        what: "creating",
                        path,
                        source,
                    })
                }
            }
            if path == self.shared_dir() {
                // It may belong to the agent's own user (create_user); the
                // daemon never writes in it. A link is still refused.
                check_directory(&path)?;
            } else {
                check_own_directory(&path)?;
            }
        }
        Ok(())
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

    /// [`Releases::stage_within`] the default `max_size`.
    pub fn stage(
        &self,
        source: &Path,
        version: Option<&str>,
        now_unix: u64,
    ) -> Result<String, ReleaseError> {
        self.stage_within(
            source,
            version,
            now_unix,
            roster_core::deploy::DEFAULT_MAX_SIZE,
        )
    }

    /// Copies the directory `source`, or unpacks `source` ending in
    /// `.tar.gz`/`.tgz`, into `releases/VERSION`, then fsyncs every file and
    /// directory of it. Without `version`, the version is
    /// [`default_version`] of `now_unix` and a sha256 of the content (the
    /// tarball's bytes; for a directory, its sorted relative paths, kinds,
    /// modes and contents).
    ///
    /// Everything is checked before anything is created (the version, the
    /// source, every entry, the size: at most `max_size` bytes of file
    /// contents, and for a tarball see [`SizeLimit::new`]); see
    /// [`ReleaseError::UnsafeEntry`], [`ReleaseError::TooBig`] and
    /// [`ReleaseError::Expands`]. Files keep their permission bits but never
    /// setuid/setgid/sticky nor write for group or others; directories
    /// always get `u+rwx` so the release can be removed again. A failure
    /// midway removes the partial directory. The manifest is not touched.
    pub fn stage_within(
        &self,
        source: &Path,
        version: Option<&str>,
        now_unix: u64,
        max_size: u64,
    ) -> Result<String, ReleaseError> {
        if let Some(version) = version {
            Self::check_version(version)?;
            // Early, before reading a possibly large source; checked again
            // right before the directory is made.
            self.check_free(version)?;
        }
        let metadata = match std::fs::metadata(source) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReleaseError::SourceMissing {
                    path: source.to_path_buf(),
                })
            }
            Err(error) => return Err(io_error("inspecting", source)(error)),
        };
        let name = source.as_os_str().as_bytes();
        let is_tarball = name.ends_with(b".tar.gz") || name.ends_with(b".tgz");
        // The source itself may be reached through links (`latest.tgz`);
        // nothing inside it is.
        let canonical = std::fs::canonicalize(source).map_err(io_error("resolving", source))?;
        let source = canonical.as_path();
        let agent = self.agent();
        if metadata.is_dir() {
            let limit = SizeLimit::new(max_size, None);
            let plan = scan_directory(source, &agent, version.is_none(), limit)?;
            let version = match version {
                Some(version) => version.to_owned(),
                None => default_version(now_unix, &plan.hash),
            };
            let target = self.create_release_dir(&version)?;
            let outcome = copy_directory(source, &agent, &plan, &target);
            self.finish_staging(&version, &target, outcome)
        } else if metadata.is_file() && is_tarball {
            let limit = SizeLimit::new(max_size, Some(metadata.len()));
            let (plan, hash) = scan_tarball(source, &agent, version.is_none(), limit)?;
            let version = match version {
                Some(version) => version.to_owned(),
                None => default_version(now_unix, &hash),
            };
            let target = self.create_release_dir(&version)?;
            let outcome = unpack_tarball(source, &plan, &target);
            self.finish_staging(&version, &target, outcome)
        } else {
            Err(ReleaseError::SourceKind {
                path: source.to_path_buf(),
            })
        }
    }

    /// Refuses a taken version, makes the layout and the empty release
    /// directory.
    fn create_release_dir(&self, version: &str) -> Result<PathBuf, ReleaseError> {
        Self::check_version(version)?;
        self.check_free(version)?;
        let target = self.release_dir(version);
        self.ensure_layout()?;
        match std::fs::DirBuilder::new().mode(0o700).create(&target) {
            Ok(()) => Ok(target),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(ReleaseError::Exists {
                    version: version.to_owned(),
                    path: target,
                })
            }
            Err(error) => Err(io_error("creating", &target)(error)),
        }
    }

    /// Refuses a version in the manifest or with a directory.
    fn check_free(&self, version: &str) -> Result<(), ReleaseError> {
        let target = self.release_dir(version);
        let taken =
            self.load()?.get(version).is_some() || std::fs::symlink_metadata(&target).is_ok();
        if taken {
            return Err(ReleaseError::Exists {
                version: version.to_owned(),
                path: target,
            });
        }
        Ok(())
    }

    fn finish_staging(
        &self,
        version: &str,
        target: &Path,
        outcome: Result<(), ReleaseError>,
    ) -> Result<String, ReleaseError> {
        let outcome = outcome.and_then(|()| {
            sync_directory(&self.releases_root())?;
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(version.to_owned()),
            Err(error) => {
                let _ = std::fs::remove_dir_all(target);
                Err(error)
            }
        }
    }

    /// Removes `releases/VERSION` (a failed or half-staged release). A
    /// missing one is fine; the one `current` points to is refused. The
    /// manifest is not touched.
    pub fn discard(&self, version: &str) -> Result<(), ReleaseError> {
        Self::check_version(version)?;
        self.ensure_layout()?;
        if self.current_target().as_deref() == Some(version) {
            return Err(ReleaseError::Live {
                version: version.to_owned(),
            });
        }
        let target = self.release_dir(version);
        remove_any(&target)?;
        let _ = sync_directory(&self.releases_root());
        Ok(())
    }

    /// The manifest's entries, newest `created` first, `live` set from
    /// `current`.
    pub fn list(&self) -> Result<Vec<ReleaseRecord>, ReleaseError> {
        let manifest = self.load()?;
        let live = self.current_target();
        let stamp = |seconds: u64| {
            crate::clock::rfc3339_millis(
                i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
            )
        };
        Ok(manifest
            .newest_first()
            .into_iter()
            .map(|index| {
                let entry = &manifest.releases[index];
                ReleaseRecord {
                    version: entry.version.clone(),
                    created: stamp(entry.created),
                    deployed: entry.deployed.map(stamp),
                    live: live.as_deref() == Some(entry.version.as_str()),
                    result: entry.result.clone(),
                    detail: entry.detail.clone(),
                }
            })
            .collect())
    }

    /// Adds or updates VERSION's entry: its `result` (`ready`,
    /// `verifying`, `deployed`, `rolled_back`, `failed`, `interrupted`,
    /// `removed`), its `detail` (replaced, `None` clears it), and its
    /// `deployed` time when `deployed_unix` is given. A new entry is
    /// `created` now. Rewrites `releases.json` atomically.
    pub fn record(
        &self,
        version: &str,
        result: &str,
        detail: Option<&str>,
        deployed_unix: Option<u64>,
    ) -> Result<(), ReleaseError> {
        Self::check_version(version)?;
        self.ensure_layout()?;
        let mut manifest = self.load()?;
        let index = match manifest
            .releases
            .iter()
            .position(|entry| entry.version == version)
        {
            Some(index) => index,
            None => {
                manifest.releases.push(Entry {
                    version: version.to_owned(),
                    created: now_unix(),
                    deployed: None,
                    result: String::new(),
                    detail: None,
                });
                manifest.releases.len() - 1
            }
        };
        let entry = &mut manifest.releases[index];
        entry.result = result.to_owned();
        entry.detail = detail.map(str::to_owned);
        if let Some(deployed) = deployed_unix {
            entry.deployed = Some(deployed);
        }
        self.save(&manifest)
    }

    /// The version `current` points to, if it points to `releases/VERSION`
    /// and that release is deployable.
    pub fn live(&self) -> Result<Option<String>, ReleaseError> {
        let Some(version) = self.current_target() else {
            return Ok(None);
        };
        let manifest = self.load()?;
        Ok(self.deployable_in(&manifest, &version).then_some(version))
    }

    /// The release live before the live one: of the entries other than the
    /// live one that went live (`deployed` set) and whose directory exists,
    /// with result `deployed`, `interrupted` or `verifying` (the last two
    /// went live and were never judged bad), the one deployed last.
    pub fn previous(&self) -> Result<Option<String>, ReleaseError> {
        let live = self.live()?;
        let manifest = self.load()?;
        Ok(self.previous_in(&manifest, live.as_deref()))
    }

    fn previous_in(&self, manifest: &Manifest, live: Option<&str>) -> Option<String> {
        manifest
            .releases
            .iter()
            .enumerate()
            .filter(|(_, entry)| Some(entry.version.as_str()) != live)
            .filter(|(_, entry)| result_was_good_live(&entry.result))
            .filter_map(|(index, entry)| entry.deployed.map(|at| (at, index, entry)))
            .filter(|(_, _, entry)| self.has_directory(&entry.version))
            .max_by_key(|(at, index, _)| (*at, *index))
            .map(|(_, _, entry)| entry.version.clone())
    }

    /// Whether VERSION can go live: its directory exists and it has a
    /// manifest entry that is neither `failed` nor `removed`.
    pub fn is_deployable(&self, version: &str) -> Result<bool, ReleaseError> {
        Self::check_version(version)?;
        let manifest = self.load()?;
        Ok(self.deployable_in(&manifest, version))
    }

    fn deployable_in(&self, manifest: &Manifest, version: &str) -> bool {
        Self::check_version(version).is_ok()
            && manifest
                .get(version)
                .is_some_and(|entry| result_is_deployable(&entry.result))
            && self.has_directory(version)
    }

    fn has_directory(&self, version: &str) -> bool {
        Self::check_version(version).is_ok()
            && std::fs::symlink_metadata(self.release_dir(version))
                .is_ok_and(|metadata| metadata.is_dir())
    }

    /// Points `current` at `releases/VERSION` atomically: a new link
    /// `current.tmp` (a leftover one removed first), renamed over
    /// `current`, then an fsync of the agent directory. Requires the
    /// release's directory, not its manifest entry (check
    /// [`Releases::is_deployable`] first).
    pub fn switch_current(&self, version: &str) -> Result<(), ReleaseError> {
        Self::check_version(version)?;
        self.ensure_layout()?;
        if !self.has_directory(version) {
            return Err(ReleaseError::NotStaged {
                version: version.to_owned(),
                path: self.release_dir(version),
            });
        }
        self.point_current_at(version)
    }

    fn point_current_at(&self, version: &str) -> Result<(), ReleaseError> {
        let temporary = self.dir.join(CURRENT_TMP);
        remove_any(&temporary)?;
        std::os::unix::fs::symlink(Path::new("releases").join(version), &temporary)
            .map_err(io_error("creating", &temporary))?;
        let current = self.current_link();
        if std::fs::symlink_metadata(&current).is_ok_and(|metadata| metadata.is_dir()) {
            let _ = std::fs::remove_file(&temporary);
            return Err(ReleaseError::WrongKind {
                path: current,
                expected: "symbolic link",
            });
        }
        std::fs::rename(&temporary, &current).map_err(io_error("renaming", &temporary))?;
        sync_directory(&self.dir)
    }

    /// The version `current` names (`releases/VERSION`), whether or not it
    /// exists.
    fn current_target(&self) -> Option<String> {
        let target = std::fs::read_link(self.current_link()).ok()?;
        let mut components = target.components();
        if components.next() != Some(Component::Normal(OsStr::new("releases"))) {
            return None;
        }
        let Some(Component::Normal(version)) = components.next() else {
            return None;
        };
        if components.next().is_some() {
            return None;
        }
        let version = version.to_str()?;
        Self::check_version(version).ok()?;
        Some(version.to_owned())
    }

    /// Keeps the newest `keep` deployable releases (by `created`) and
    /// removes the directories of the older ones, recording them as
    /// `removed`; never the live one nor [`Releases::previous`]. Returns
    /// the removed versions.
    pub fn cleanup(&self, keep: usize) -> Result<Vec<String>, ReleaseError> {
        self.ensure_layout()?;
        let mut manifest = self.load()?;
        let live = self
            .current_target()
            .filter(|v| self.deployable_in(&manifest, v));
        let previous = self.previous_in(&manifest, live.as_deref());
        let deployable: Vec<usize> = manifest
            .newest_first()
            .into_iter()
            .filter(|&index| self.deployable_in(&manifest, &manifest.releases[index].version))
            .collect();
        let mut removed = Vec::new();
        for index in deployable.into_iter().skip(keep) {
            let version = manifest.releases[index].version.clone();
            if Some(&version) == live.as_ref() || Some(&version) == previous.as_ref() {
                continue;
            }
            remove_any(&self.release_dir(&version))?;
            let entry = &mut manifest.releases[index];
            entry.result = "removed".to_owned();
            entry.detail = Some(format!("cleaned up (keeping {keep} releases)"));
            removed.push(version);
        }
        if !removed.is_empty() {
            let _ = sync_directory(&self.releases_root());
            self.save(&manifest)?;
        }
        Ok(removed)
    }

    /// Repairs the store after a crash; run it before any other operation
    /// on the agent (a concurrent [`Releases::stage`] would look
    /// half-staged). Removes a leftover `current.tmp` and manifest temp
    /// file, and the directories under `releases/` without a manifest entry
    /// or whose entry is `failed`/`removed`; turns `verifying` entries into
    /// `interrupted`; when `current` is missing, dangling or points at
    /// something not deployable, repoints it at the release deployed last
    /// (result `deployed` or `interrupted`, directory present), or removes
    /// it if there is none. Returns one line per thing done, for the
    /// journal.
    pub fn recover(&self) -> Result<Vec<String>, ReleaseError> {
        let mut done = Vec::new();
        match std::fs::symlink_metadata(&self.dir) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(done),
            _ => self.ensure_layout()?,
        }
        for (name, what) in [
            (CURRENT_TMP, "a leftover current.tmp"),
            (MANIFEST_TMP, "a leftover manifest temp file"),
        ] {
            let path = self.dir.join(name);
            if std::fs::symlink_metadata(&path).is_ok() {
                remove_any(&path)?;
                done.push(format!("removed {what} ({})", path.display()));
            }
        }

        let mut manifest = self.load()?;
        let mut changed = false;
        for entry in &mut manifest.releases {
            if entry.result == "verifying" {
                entry.result = "interrupted".to_owned();
                entry.detail = Some("the daemon stopped during its verification".to_owned());
                changed = true;
                done.push(format!(
                    "release {}: verifying -> interrupted (the daemon stopped during its verification)",
                    entry.version
                ));
            }
        }

        let root = self.releases_root();
        let listing = std::fs::read_dir(&root).map_err(io_error("reading", &root))?;
        let mut names = Vec::new();
        for item in listing {
            let item = item.map_err(io_error("reading", &root))?;
            names.push(item.file_name());
        }
        names.sort();
        for name in names {
            let why = match name.to_str() {
                None => Some("its name is not a valid version"),
                Some(version) if Self::check_version(version).is_err() => {
                    Some("its name is not a valid version")
                }
                Some(version) => match manifest.get(version) {
                    None => Some("no manifest entry: half-staged"),
                    Some(entry) if !result_is_deployable(&entry.result) => {
                        Some("its release failed or was removed")
                    }
                    Some(_) => None,
                },
            };
            if let Some(why) = why {
                let path = root.join(&name);
                remove_any(&path)?;
                done.push(format!("removed {} ({why})", path.display()));
            }
        }
        if changed {
            self.save(&manifest)?;
        }

        let current = self.current_link();
        let link = std::fs::symlink_metadata(&current).ok();
        if link.as_ref().is_some_and(|metadata| !metadata.is_symlink()) {
            return Err(ReleaseError::WrongKind {
                path: current,
                expected: "symbolic link",
            });
        }
        let target = self.current_target();
        let deployable = target
            .as_deref()
            .is_some_and(|version| self.deployable_in(&manifest, version));
        // A release that failed its verification is live only because the
        // daemon died while rolling it back: finish the rollback.
        let rolled_back = target
            .as_deref()
            .and_then(|version| manifest.get(version))
            .is_some_and(|entry| entry.result == "rolled_back");
        if !deployable || rolled_back {
            let was = match (&link, &target) {
                (None, _) => "current was missing".to_owned(),
                (Some(_), Some(version)) if !self.has_directory(version) => {
                    format!("current pointed at the missing release {version}")
                }
                (Some(_), Some(version)) if rolled_back => {
                    format!("current pointed at {version}, which failed its verification")
                }
                (Some(_), Some(version)) => {
                    format!("current pointed at {version}, which is not deployable")
                }
                (Some(_), None) => match std::fs::read_link(&current) {
                    Ok(target) => format!("current pointed at {}", target.display()),
                    Err(_) => "current was unreadable".to_owned(),
                },
            };
            let best = manifest
                .releases
                .iter()
                .enumerate()
                .filter(|(_, entry)| matches!(entry.result.as_str(), "deployed" | "interrupted"))
                .filter(|(_, entry)| self.deployable_in(&manifest, &entry.version))
                .filter_map(|(index, entry)| entry.deployed.map(|at| (at, index, entry)))
                .max_by_key(|(at, index, _)| (*at, *index))
                .map(|(_, _, entry)| entry.version.clone());
            match best {
                Some(version) => {
                    self.point_current_at(&version)?;
                    done.push(format!("{was}; now points at releases/{version}"));
                }
                // Nothing better than the rolled-back release: keep it.
                None if deployable => {}
                None if link.is_some() => {
                    remove_any(&current)?;
                    sync_directory(&self.dir)?;
                    done.push(format!("{was}; removed it (no deployable release)"));
                }
                None => {}
            }
        }
        Ok(done)
    }

    fn load(&self) -> Result<Manifest, ReleaseError> {
        let path = self.manifest_path();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path);
        let mut file = match file {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Manifest::default())
            }
            Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
                return Err(ReleaseError::Symlink { path })
            }
            Err(error) => return Err(io_error("opening", &path)(error)),
        };
        let metadata = file.metadata().map_err(io_error("inspecting", &path))?;
        if !metadata.is_file() {
            return Err(ReleaseError::WrongKind {
                path,
                expected: "regular file",
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(io_error("reading", &path))?;
        serde_json::from_str(&text).map_err(|error| ReleaseError::Manifest {
            path,
            detail: error.to_string(),
        })
    }

    fn save(&self, manifest: &Manifest) -> Result<(), ReleaseError> {
        let temporary = self.dir.join(MANIFEST_TMP);
        let path = self.manifest_path();
        let mut text =
            serde_json::to_vec_pretty(manifest).map_err(|error| ReleaseError::Manifest {
                path: path.clone(),
                detail: error.to_string(),
            })?;
        text.push(b'\n');
        remove_any(&temporary)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary)
            .map_err(io_error("creating", &temporary))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(io_error("writing", &temporary))?;
        drop(file);
        std::fs::rename(&temporary, &path).map_err(io_error("renaming", &temporary))?;
        sync_directory(&self.dir)
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
