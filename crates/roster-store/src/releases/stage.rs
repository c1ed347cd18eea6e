//! Adding and discarding releases: [`Releases::stage`] picks the version
//! (given, or [`default_version`]), refuses a taken one, makes the
//! release's directory and removes it again if staging fails;
//! [`Releases::discard`] removes one that is not live. What is copied or
//! unpacked, and how it is checked, is `staging.rs`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::staging::{copy_directory, scan_directory, scan_tarball, unpack_tarball, SizeLimit};
use super::{io_error, remove_any, sync_directory, ReleaseError, Releases};

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

impl Releases {
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
}
