//! Reading a backup: the first pass reads every byte, hashes every entry
//! and checks them all against `manifest.json` (roster_core::backup), so a
//! damaged or truncated archive is refused before anything is written; the
//! second pass hands each checked entry to the caller.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use roster_core::backup::{check_contents, check_format, Found, Manifest, MANIFEST};

/// The largest entry kept in memory (the manifest, config, secrets).
const MAX_SMALL: u64 = 64 * 1024 * 1024;

/// A backup whose every checksum matched, with the small entries read.
pub struct Checked {
    /// Its manifest.
    pub manifest: Manifest,
    /// The config's bytes.
    pub config: Vec<u8>,
    /// The sealed secrets' bytes, if any.
    pub secrets: Option<Vec<u8>>,
    /// The web dashboard's token file, if any.
    pub tokens: Option<Vec<u8>>,
}

fn entries(path: &Path) -> Result<tar::Archive<flate2::read::GzDecoder<File>>> {
    let file =
        File::open(path).with_context(|| format!("opening the backup {}", path.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(file)))
}

fn damaged(path: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "the backup {} is damaged or truncated: {why}\n  nothing was written; use another copy of the backup",
        path.display()
    )
}

/// The first pass: every entry read and hashed, the manifest checked.
pub fn check(path: &Path) -> Result<Checked> {
    let mut archive = entries(path)?;
    let mut found = BTreeMap::new();
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut manifest_bytes = None;
    for entry in archive.entries().map_err(|error| damaged(path, error))? {
        let mut entry = entry.map_err(|error| damaged(path, error))?;
        let name = entry
            .path()
            .map_err(|error| damaged(path, error))?
            .to_string_lossy()
            .into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|error| damaged(path, error))?
                    .map(|target| target.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let found_link = Found {
                    size: target.len() as u64,
                    sha256: roster_core::backup::sha256_hex(target.as_bytes()),
                };
                found.insert(name, found_link);
            }
            tar::EntryType::Regular => {
                let keep = name == MANIFEST
                    || name.starts_with("config/")
                    || name == super::create::SECRETS_ENTRY
                    || name == super::create::TOKENS_ENTRY;
                let mut hash = Sha256::new();
                let mut kept = Vec::new();
                let mut size = 0u64;
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let count = entry
                        .read(&mut buffer)
                        .map_err(|error| damaged(path, error))?;
                    if count == 0 {
                        break;
                    }
                    hash.update(&buffer[..count]);
                    size += count as u64;
                    if keep && size <= MAX_SMALL {
                        kept.extend_from_slice(&buffer[..count]);
                    }
                }
                if name == MANIFEST {
                    manifest_bytes = Some(kept);
                    continue;
                }
                if keep {
                    small.insert(name.clone(), kept);
                }
                found.insert(
                    name,
                    Found {
                        size,
                        sha256: roster_core::backup::hex(&hash.finalize()),
                    },
                );
            }
            other => bail!(damaged(
                path,
                format!("{name} is a {other:?} entry, which no backup holds")
            )),
        }
    }
    // The rest of the stream, so a damaged gzip trailer is caught too.
    let mut rest = Vec::new();
    archive
        .into_inner()
        .read_to_end(&mut rest)
        .map_err(|error| damaged(path, error))?;
    let Some(manifest_bytes) = manifest_bytes else {
        bail!(damaged(
            path,
            "it has no manifest.json (is it a roster backup?)"
        ));
    };
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(manifest) => manifest,
        Err(error) => {
            // A newer format may not parse: say so if it names one.
            let format = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)
                .ok()
                .and_then(|value| {
                    let format = value.get("format")?.as_u64()?;
                    let by = value.get("roster_version")?.as_str()?.to_owned();
                    Some((u32::try_from(format).ok()?, by))
                });
            if let Some((format, by)) = format {
                check_format(format, &by)
                    .map_err(|reason| anyhow::anyhow!("{reason}\n  nothing was written"))?;
            }
            bail!(damaged(
                path,
                format!("its manifest.json does not read: {error}")
            ));
        }
    };
    let problems = check_contents(&manifest, &found);
    if !problems.is_empty() {
        let listed: Vec<String> = problems
            .iter()
            .map(|problem| format!("  - {problem}"))
            .collect();
        bail!(damaged(
            path,
            format!("{} problem(s):\n{}", problems.len(), listed.join("\n"))
        ));
    }
    let config = small.remove(&manifest.config_entry).unwrap_or_default();
    let secrets = manifest
        .secrets
        .as_ref()
        .and_then(|secrets| small.remove(&secrets.entry));
    let tokens = small.remove(super::create::TOKENS_ENTRY);
    Ok(Checked {
        manifest,
        config,
        secrets,
        tokens,
    })
}

/// The second pass: calls `each` with every entry but the manifest (its
/// archive path and a reader of its bytes; links are skipped: the
/// manifest has their targets).
pub fn for_each(
    path: &Path,
    mut each: impl FnMut(&str, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut archive = entries(path)?;
    for entry in archive.entries().map_err(|error| damaged(path, error))? {
        let mut entry = entry.map_err(|error| damaged(path, error))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()
            .map_err(|error| damaged(path, error))?
            .to_string_lossy()
            .into_owned();
        if name == MANIFEST {
            continue;
        }
        each(&name, &mut entry)?;
    }
    Ok(())
}
