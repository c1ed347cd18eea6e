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
//! Staging copies a directory or unpacks a `.tar.gz` after checking every
//! entry: only regular files, directories and symbolic links that stay
//! inside the release are accepted, without setuid/setgid/sticky bits.
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

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use roster_core::api::ReleaseRecord;
use roster_core::AgentName;
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;

/// At most this many entries in one release.
pub const MAX_ENTRIES: u64 = 100_000;
/// At most this many bytes of file contents in one release (4 GiB).
pub const MAX_BYTES: u64 = 4 << 30;
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
  hint: a release holds at most {MAX_ENTRIES} entries and 4 GiB of file contents; keep data in the agent's shared/ directory"
    )]
    TooLarge {
        /// The source being staged.
        source_path: PathBuf,
        /// Which bound and by how much.
        what: String,
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

    /// Copies the directory `source`, or unpacks `source` ending in
    /// `.tar.gz`/`.tgz`, into `releases/VERSION`, then fsyncs every file and
    /// directory of it. Without `version`, the version is
    /// [`default_version`] of `now_unix` and a sha256 of the content (the
    /// tarball's bytes; for a directory, its sorted relative paths, kinds,
    /// modes and contents).
    ///
    /// Everything is checked before anything is created (the version, the
    /// source, every entry); see [`ReleaseError::UnsafeEntry`]. Files keep
    /// their permission bits but never setuid/setgid/sticky; directories
    /// always get `u+rwx` so the release can be removed again. A failure
    /// midway removes the partial directory. The manifest is not touched.
    pub fn stage(
        &self,
        source: &Path,
        version: Option<&str>,
        now_unix: u64,
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
        if metadata.is_dir() {
            let plan = scan_directory(source, version.is_none())?;
            let version = match version {
                Some(version) => version.to_owned(),
                None => default_version(now_unix, &plan.hash),
            };
            let target = self.create_release_dir(&version)?;
            let outcome = copy_directory(source, &plan, &target);
            self.finish_staging(&version, &target, outcome)
        } else if metadata.is_file() && is_tarball {
            let (plan, hash) = scan_tarball(source, version.is_none())?;
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
#[derive(Debug, Default)]
struct Plan {
    entries: BTreeMap<PathBuf, Kind>,
    /// The mode of the release root, when the source gives one.
    root_mode: Option<u32>,
    /// Hex sha256 of the content, when asked for (directories).
    hash: String,
    bytes: u64,
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Plan {
    fn unsafe_entry(source: &Path, entry: &Path, reason: impl Into<String>) -> ReleaseError {
        ReleaseError::UnsafeEntry {
            source_path: source.to_path_buf(),
            entry: display(entry),
            reason: reason.into(),
        }
    }

    /// Adds an entry after checking it against the ones before.
    fn add(&mut self, source: &Path, path: PathBuf, kind: Kind) -> Result<(), ReleaseError> {
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
                if self.bytes > MAX_BYTES {
                    return Err(ReleaseError::TooLarge {
                        source_path: source.to_path_buf(),
                        what: format!("more than {MAX_BYTES} bytes of file contents"),
                    });
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

/// Only permission bits: never setuid, setgid or sticky.
fn file_mode(mode: u32) -> u32 {
    mode & 0o777
}

/// Directories keep `u+rwx` so the release can be filled and removed.
fn dir_mode(mode: u32) -> u32 {
    (mode & 0o777) | 0o700
}

/// Walks a source directory without following links, checking every entry;
/// hashes paths, kinds, modes and contents when `hash` is set.
fn scan_directory(source: &Path, hash: bool) -> Result<Plan, ReleaseError> {
    let mut plan = Plan::default();
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
            plan.add(source, path, kind)?;
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

fn copy_directory(source: &Path, plan: &Plan, target: &Path) -> Result<(), ReleaseError> {
    let mut remaining = MAX_BYTES;
    // Sorted paths put every directory before what is inside it.
    for (path, kind) in &plan.entries {
        let full = target.join(path);
        match kind {
            Kind::Dir { .. } | Kind::ImpliedDir => make_dir(&full)?,
            Kind::File { mode, .. } => {
                let from = source.join(path);
                let mut file = open_regular(&from)?;
                let written = write_file(&full, *mode, &mut file, remaining.saturating_add(1))?;
                remaining = remaining.checked_sub(written).ok_or_else(|| ReleaseError::TooLarge {
                    source_path: source.to_path_buf(),
                    what: format!("more than {MAX_BYTES} bytes of file contents (files grew during staging)"),
                })?;
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

/// The first, complete pass over a tarball: checks every entry; with
/// `hash`, the hex sha256 of the tarball's bytes.
fn scan_tarball(source: &Path, hash: bool) -> Result<(Plan, String), ReleaseError> {
    let mut plan = Plan::default();
    let mut archive = open_tarball(source)?;
    let entries = archive.entries().map_err(archive_error(source))?;
    for entry in entries {
        let entry = entry.map_err(archive_error(source))?;
        match tar_entry(source, &entry)? {
            None => {}
            Some((None, Kind::Dir { mode })) => plan.root_mode = Some(mode),
            Some((None, _)) => {}
            Some((Some(path), kind)) => plan.add(source, path, kind)?,
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
fn unpack_tarball(source: &Path, plan: &Plan, target: &Path) -> Result<(), ReleaseError> {
    let mut archive = open_tarball(source)?;
    let entries = archive.entries().map_err(archive_error(source))?;
    let mut remaining = MAX_BYTES;
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
