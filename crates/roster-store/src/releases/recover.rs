//! Repairing a store after a crash: leftover temporary files and
//! half-staged or failed release directories removed, interrupted
//! verifications recorded, and `current` pointed at a complete release.

use super::manifest::result_is_deployable;
use super::{
    io_error, remove_any, sync_directory, ReleaseError, Releases, CURRENT_TMP, MANIFEST_TMP,
};

impl Releases {
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
}
