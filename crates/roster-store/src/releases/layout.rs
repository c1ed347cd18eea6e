//! The directories of an agent's store (`agents/NAME/`, `releases/`,
//! `shared/`) and the `current` link: making them safely, whether a
//! release's directory is there, where `current` points, and swapping it
//! atomically.

use std::ffi::OsStr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path};

use super::{
    check_directory, check_own_directory, io_error, remove_any, sync_directory, ReleaseError,
    Releases, CURRENT_TMP,
};

impl Releases {
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

    pub(super) fn has_directory(&self, version: &str) -> bool {
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

    pub(super) fn point_current_at(&self, version: &str) -> Result<(), ReleaseError> {
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
    pub(super) fn current_target(&self) -> Option<String> {
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
}
