//! Pruning: removing the directories of old releases beyond `keep`,
//! never the live one nor the previous one, and recording them as
//! `removed`.

use super::{remove_any, sync_directory, ReleaseError, Releases};

impl Releases {
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
}
