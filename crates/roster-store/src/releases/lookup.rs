//! Which release is which: the live one, the one live before it, and
//! whether a version may go live, judged from `current`, the manifest
//! and the release directories together.

use super::manifest::{result_is_deployable, result_was_good_live, Manifest};
use super::{ReleaseError, Releases};

impl Releases {
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

    pub(super) fn previous_in(&self, manifest: &Manifest, live: Option<&str>) -> Option<String> {
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

    pub(super) fn deployable_in(&self, manifest: &Manifest, version: &str) -> bool {
        Self::check_version(version).is_ok()
            && manifest
                .get(version)
                .is_some_and(|entry| result_is_deployable(&entry.result))
            && self.has_directory(version)
    }
}
