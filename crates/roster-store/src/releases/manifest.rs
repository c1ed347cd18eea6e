//! The manifest, `releases.json`: one entry per release (its version,
//! when it was created and deployed, its result and detail), read and
//! rewritten atomically (a temporary file renamed over it, then an fsync
//! of the directory); [`Releases::list`] and [`Releases::record`] are its
//! public face.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use roster_core::api::ReleaseRecord;

use super::{io_error, remove_any, sync_directory, ReleaseError, Releases, MANIFEST_TMP};

/// The manifest as stored: unix seconds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Manifest {
    pub(super) releases: Vec<Entry>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Entry {
    pub(super) version: String,
    pub(super) created: u64,
    #[serde(default)]
    pub(super) deployed: Option<u64>,
    pub(super) result: String,
    #[serde(default)]
    pub(super) detail: Option<String>,
}

impl Manifest {
    pub(super) fn get(&self, version: &str) -> Option<&Entry> {
        self.releases.iter().find(|entry| entry.version == version)
    }

    /// Indexes of the entries, newest `created` first (later entries first
    /// among equals).
    pub(super) fn newest_first(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.releases.len()).collect();
        order.sort_by(|&a, &b| (self.releases[b].created, b).cmp(&(self.releases[a].created, a)));
        order
    }
}

/// Whether a manifest result allows going live.
pub(super) fn result_is_deployable(result: &str) -> bool {
    result != "failed" && result != "removed"
}

/// Whether a result says the release was live and not judged bad: the
/// candidates for [`Releases::previous`] and for [`Releases::recover`].
pub(super) fn result_was_good_live(result: &str) -> bool {
    matches!(result, "deployed" | "interrupted" | "verifying")
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

impl Releases {
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

    pub(super) fn load(&self) -> Result<Manifest, ReleaseError> {
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

    pub(super) fn save(&self, manifest: &Manifest) -> Result<(), ReleaseError> {
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
