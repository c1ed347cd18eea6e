//! `roster backup FILE`: the config the daemon runs, the journal (SQLite's
//! online backup, consistent while the daemon writes), the secrets sealed
//! with a key, every agent's release manifest with its live and previous
//! release, and `manifest.json` (written last) with each file's size and
//! SHA-256. Written 0600 to a temporary file renamed into place.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use roster_core::api::StatusReply;
use roster_core::backup::{AgentReleases, FileEntry, Manifest, SecretsInfo, FORMAT, MANIFEST};
use roster_core::AgentName;
use roster_store::releases::Releases;
use roster_store::sealed::SealKey;
use roster_store::Home;

/// The label the sealed secrets are bound to.
pub const SECRETS_LABEL: &str = "roster-backup-secrets-v1";
/// The sealed secrets' path in the archive.
pub const SECRETS_ENTRY: &str = "secrets.sealed";
/// The journal's path in the archive.
pub const JOURNAL_ENTRY: &str = "journal.db";
/// The web dashboard's token file (hashes only) in the archive.
pub const TOKENS_ENTRY: &str = "web/tokens.json";

/// What `roster backup` was asked.
pub struct Options {
    /// The archive to write.
    pub file: PathBuf,
    /// Leave the secrets out.
    pub no_secrets: bool,
    /// Seal the secrets with this key instead of the home's.
    pub key_file: Option<PathBuf>,
}

/// One thing to put in the archive.
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
    Link(String),
}

struct Item {
    path: String,
    mode: u32,
    source: Source,
}

/// Runs `roster backup`.
pub fn run(home: &Home, options: &Options) -> Result<ExitCode> {
    let config_path = config_in_use(home)?;
    let config_name = config_path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "roster.toml".into());
    let config_entry = format!("config/{config_name}");
    let mut items = vec![Item {
        path: config_entry.clone(),
        mode: 0o600,
        source: Source::Bytes(
            std::fs::read(&config_path)
                .with_context(|| format!("reading the config {}", config_path.display()))?,
        ),
    }];

    let parent = parent_of(&options.file);
    let temporary = parent.join(format!(
        ".{}.tmp-{}",
        file_name(&options.file),
        std::process::id()
    ));
    let journal_copy = parent.join(format!(
        ".{}.journal-{}",
        file_name(&options.file),
        std::process::id()
    ));
    let result = (|| -> Result<u64> {
        if home.journal().exists() {
            eprintln!("backup: copying the journal");
            roster_store::snapshot::copy_journal(&home.journal(), &journal_copy)
                .map_err(anyhow::Error::msg)?;
            items.push(Item {
                path: JOURNAL_ENTRY.into(),
                mode: 0o600,
                source: Source::File(journal_copy.clone()),
            });
        }
        let secrets = if options.no_secrets {
            eprintln!("backup: secrets left out (--no-secrets)");
            None
        } else {
            seal_secrets(home, options.key_file.as_deref(), &mut items)?
        };
        add_tokens(home, &mut items)?;
        let agents = add_releases(home, &mut items)?;
        write_archive(
            &temporary,
            &config_path,
            &config_entry,
            secrets,
            agents,
            items,
        )
    })();
    let _ = std::fs::remove_file(&journal_copy);
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error.context(format!("writing the backup {}", options.file.display())));
        }
    };
    std::fs::rename(&temporary, &options.file).with_context(|| {
        format!(
            "renaming {} to {}",
            temporary.display(),
            options.file.display()
        )
    })?;
    println!(
        "backup written to {} ({bytes} bytes)\n  check it: roster backup verify {}",
        options.file.display(),
        options.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The config the daemon runs: its status says; when it is down, the
/// journal's last `config_applied` event.
fn config_in_use(home: &Home) -> Result<PathBuf> {
    if let Ok(status) = crate::commands::client(home).get::<StatusReply>("/v1/status") {
        return match status.config {
            Some(path) => Ok(PathBuf::from(path)),
            None => {
                bail!("the daemon has applied no config yet\n  hint: run `roster up -f FILE` first")
            }
        };
    }
    let detail = roster_store::journal::last_config_applied(&home.journal())?;
    match detail.as_deref().and_then(roster_core::backup::config_path_of_applied) {
        Some(path) => {
            eprintln!("backup: the daemon is down; taking {path}, the config it last applied");
            Ok(PathBuf::from(path))
        }
        None => bail!(
            "the daemon is down and the journal of {} names no config it applied\n  hint: start it with `roster up -f FILE`, then back up",
            home.root().display()
        ),
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup.tar.gz".into())
}

/// The web dashboard's tokens, as the daemon reads them: their hashes,
/// scopes and names (a token itself is nowhere on disk).
fn add_tokens(home: &Home, items: &mut Vec<Item>) -> Result<()> {
    if !home.root().join(roster_store::tokens::DIRECTORY).exists() {
        return Ok(());
    }
    let home_dir = home.open_verified()?;
    let Some(store) = roster_store::tokens::TokenStore::open(&home_dir)? else {
        return Ok(());
    };
    if let Some((bytes, count)) = store.export()? {
        eprintln!("backup: {count} web tokens (their hashes)");
        items.push(Item {
            path: TOKENS_ENTRY.into(),
            mode: 0o600,
            source: Source::Bytes(bytes),
        });
    }
    Ok(())
}

/// Seals every agent's secrets with the key asked for; `None` when there
/// are none.
fn seal_secrets(
    home: &Home,
    key_file: Option<&Path>,
    items: &mut Vec<Item>,
) -> Result<Option<SecretsInfo>> {
    let Ok(home_dir) = home.open_verified() else {
        return Ok(None);
    };
    let Some(store) = roster_store::secrets::Store::open(&home_dir)? else {
        return Ok(None);
    };
    let (all, problems) = store.load_all();
    if let Some(problem) = problems.first() {
        bail!("{problem}\n  hint: fix the secret store, or pass --no-secrets");
    }
    let all: BTreeMap<String, _> = all
        .into_iter()
        .filter(|(_, secrets)| !secrets.is_empty())
        .map(|(agent, secrets)| (agent.to_string(), secrets))
        .collect();
    if all.is_empty() {
        return Ok(None);
    }
    let home_key = home
        .root()
        .join(roster_store::secrets::DIRECTORY)
        .join(roster_store::secrets::KEY_FILE);
    let (key_path, key_source) = match key_file {
        Some(path) => (path.to_path_buf(), "key-file"),
        None if home_key.exists() => (home_key, "home"),
        None => bail!(
            "the secrets in {} are not encrypted (no key file), and a backup never holds them in plain\n  hint: pass --key-file K (32 random bytes: `head -c 32 /dev/urandom > K`; keep K apart from the backup), or --no-secrets",
            home.root().display()
        ),
    };
    let key = SealKey::read(&key_path).map_err(anyhow::Error::msg)?;
    let plain = serde_json::to_vec(&all)?;
    let sealed = key
        .seal(&plain, SECRETS_LABEL)
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "backup: secrets of {} agents sealed with {} (key {})",
        all.len(),
        key_path.display(),
        key.fingerprint()
    );
    items.push(Item {
        path: SECRETS_ENTRY.into(),
        mode: 0o600,
        source: Source::Bytes(sealed),
    });
    Ok(Some(SecretsInfo {
        entry: SECRETS_ENTRY.into(),
        key_source: key_source.into(),
        key_fingerprint: key.fingerprint(),
        agents: all.len(),
    }))
}

/// Each agent's `releases.json` and its live and previous releases.
fn add_releases(home: &Home, items: &mut Vec<Item>) -> Result<Vec<AgentReleases>> {
    let root = home.root().join("agents");
    let mut names = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", root.display()))?;
            if let Some(name) = entry.file_name().to_str() {
                if let Ok(agent) = AgentName::new(name) {
                    names.push(agent);
                }
            }
        }
    }
    names.sort();
    let mut agents = Vec::new();
    for agent in names {
        let releases = Releases::new(home.root(), &agent);
        let manifest = releases.dir().join("releases.json");
        if !manifest.is_file() {
            continue;
        }
        let live = releases.live()?;
        let previous = releases.previous()?;
        items.push(Item {
            path: format!("agents/{agent}/releases.json"),
            mode: 0o600,
            source: Source::File(manifest),
        });
        let mut count = 0;
        for version in live.iter().chain(previous.iter()) {
            let dir = releases.release_dir(version);
            let prefix = format!("agents/{agent}/releases/{version}");
            count += walk(&dir, &prefix, items)?;
        }
        eprintln!(
            "backup: {agent}: live {}, previous {} ({count} files)",
            live.as_deref().unwrap_or("none"),
            previous.as_deref().unwrap_or("none")
        );
        agents.push(AgentReleases {
            name: agent.to_string(),
            live,
            previous,
        });
    }
    Ok(agents)
}

/// Adds every file and link under `dir`; returns how many.
fn walk(dir: &Path, prefix: &str, items: &mut Vec<Item>) -> Result<usize> {
    let mut count = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let inner = format!("{prefix}/{name}");
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .with_context(|| format!("reading the link {}", path.display()))?;
            items.push(Item {
                path: inner,
                mode: 0o777,
                source: Source::Link(target.to_string_lossy().into_owned()),
            });
            count += 1;
        } else if meta.is_dir() {
            count += walk(&path, &inner, items)?;
        } else if meta.is_file() {
            items.push(Item {
                path: inner,
                mode: meta.mode() & 0o7777,
                source: Source::File(path),
            });
            count += 1;
        }
    }
    Ok(count)
}

fn header(size: u64, mode: u32, now: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(now);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// Writes the items then the manifest; returns the archive's size.
fn write_archive(
    target: &Path,
    config_path: &Path,
    config_entry: &str,
    secrets: Option<SecretsInfo>,
    agents: Vec<AgentReleases>,
    items: Vec<Item>,
) -> Result<u64> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .with_context(|| format!("creating {}", target.display()))?;
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(encoder);
    let now = (roster_store::clock::unix_millis().max(0) / 1000) as u64;
    let mut files = Vec::new();
    let total = items.len();
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 && index % 1000 == 0 {
            eprintln!("backup: {index} of {total} files written");
        }
        let (size, sha256, link) = match &item.source {
            Source::Bytes(bytes) => {
                tar.append_data(
                    &mut header(bytes.len() as u64, item.mode, now),
                    &item.path,
                    bytes.as_slice(),
                )?;
                (
                    bytes.len() as u64,
                    roster_core::backup::sha256_hex(bytes),
                    None,
                )
            }
            Source::File(path) => {
                let file =
                    File::open(path).with_context(|| format!("reading {}", path.display()))?;
                let size = file.metadata()?.len();
                let mut reader = Hashing::new(file.take(size));
                tar.append_data(&mut header(size, item.mode, now), &item.path, &mut reader)
                    .with_context(|| format!("adding {}", path.display()))?;
                if reader.read != size {
                    bail!(
                        "{} changed size while it was read; run the backup again",
                        path.display()
                    );
                }
                (size, reader.hex(), None)
            }
            Source::Link(target) => {
                let mut link_header = tar::Header::new_gnu();
                link_header.set_entry_type(tar::EntryType::Symlink);
                link_header.set_size(0);
                link_header.set_mode(0o777);
                link_header.set_mtime(now);
                tar.append_link(&mut link_header, &item.path, target)?;
                (
                    target.len() as u64,
                    roster_core::backup::sha256_hex(target.as_bytes()),
                    Some(target.clone()),
                )
            }
        };
        files.push(FileEntry {
            path: item.path,
            size,
            sha256,
            mode: item.mode,
            link,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        roster_version: env!("CARGO_PKG_VERSION").into(),
        created_unix: now,
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_default(),
        config_path: config_path.display().to_string(),
        config_entry: config_entry.into(),
        secrets,
        agents,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest)?;
    tar.append_data(
        &mut header(text.len() as u64, 0o600, now),
        MANIFEST,
        text.as_slice(),
    )?;
    let encoder = tar.into_inner().context("finishing the tar")?;
    let mut file = encoder.finish().context("finishing the gzip stream")?;
    file.flush()?;
    file.sync_all()
        .with_context(|| format!("syncing {}", target.display()))?;
    Ok(file.metadata()?.size())
}

/// Hashes what passes through.
pub struct Hashing<R> {
    inner: R,
    hash: Sha256,
    read: u64,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            read: 0,
        }
    }

    /// The hex SHA-256 of what was read.
    pub fn hex(self) -> String {
        roster_core::backup::hex(&self.hash.finalize())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.hash.update(&buffer[..count]);
        self.read += count as u64;
        Ok(count)
    }
}
