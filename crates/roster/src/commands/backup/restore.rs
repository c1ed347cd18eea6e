//! `roster restore FILE`: into an empty home, after every checksum of the
//! archive matched and the secrets' key was found (nothing is written
//! before): the config (to `--config`, else where it was if that is
//! free), the journal, the releases with their manifests and `current`
//! links, the secrets, stored with the home's secret store, and the web
//! dashboard's tokens (their hashes).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use roster_core::backup::Manifest;
use roster_core::AgentName;
use roster_store::releases::Releases;
use roster_store::sealed::SealKey;
use roster_store::secrets::AgentSecrets;
use roster_store::Home;

use super::archive;
use super::create::{Hashing, JOURNAL_ENTRY, SECRETS_LABEL};

/// What `roster restore` was asked.
pub struct Options {
    /// The archive.
    pub file: PathBuf,
    /// Where to write the config.
    pub config: Option<PathBuf>,
    /// The key the secrets were sealed with.
    pub key_file: Option<PathBuf>,
}

/// What a restore did.
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Where the config was written.
    pub config_path: PathBuf,
    /// How many agents' secrets were restored.
    pub secret_agents: usize,
    /// How many web dashboard tokens were restored.
    pub tokens: usize,
}

/// Runs `roster restore`.
pub fn run(home: &Home, options: &Options) -> Result<ExitCode> {
    let home_key = home_key(home);
    let restored = restore_into(
        home,
        &options.file,
        options.config.as_deref(),
        options.key_file.as_deref(),
        &[home_key],
    )?;
    let manifest = &restored.manifest;
    println!(
        "restored the backup of {} taken {} into {}: the journal, {} agents' releases, {} agents' secrets, {} web tokens",
        if manifest.host.is_empty() { "?" } else { &manifest.host },
        roster_store::clock::rfc3339_millis(i64::try_from(manifest.created_unix.saturating_mul(1000)).unwrap_or(i64::MAX)),
        home.root().display(),
        manifest.agents.len(),
        restored.secret_agents,
        restored.tokens,
    );
    println!("config written to {}", restored.config_path.display());
    println!(
        "next: roster --home {} up -f {}",
        home.root().display(),
        restored.config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `<home>/secrets/key`.
pub fn home_key(home: &Home) -> PathBuf {
    home.root()
        .join(roster_store::secrets::DIRECTORY)
        .join(roster_store::secrets::KEY_FILE)
}

/// Refuses a home with a journal, agents or secrets in it.
fn check_empty(home: &Home) -> Result<()> {
    let mut found = Vec::new();
    if home.journal().exists() {
        found.push("a journal");
    }
    let has_entries = |dir: PathBuf, keep: fn(&str) -> bool| {
        std::fs::read_dir(dir).is_ok_and(|mut entries| {
            entries.any(|entry| entry.is_ok_and(|entry| keep(&entry.file_name().to_string_lossy())))
        })
    };
    if has_entries(home.root().join("agents"), |_| true) {
        found.push("agents");
    }
    if has_entries(home.root().join(roster_store::secrets::DIRECTORY), |name| {
        name.ends_with(".env")
    }) {
        found.push("secrets");
    }
    if has_entries(home.root().join(roster_store::tokens::DIRECTORY), |name| {
        name == roster_store::tokens::FILE
    }) {
        found.push("web tokens");
    }
    if !found.is_empty() {
        bail!(
            "the home {} is not empty: it has {}; a restore never mixes a backup into a home in use\n  hint: restore into a new home with --home DIR",
            home.root().display(),
            found.join(", ")
        );
    }
    Ok(())
}

/// Checks the archive whole, then restores it into `home` (which must be
/// empty). The secrets' key: `key_file`, else the first of `keys` that
/// exists and is the one the backup names.
pub fn restore_into(
    home: &Home,
    file: &Path,
    config_target: Option<&Path>,
    key_file: Option<&Path>,
    keys: &[PathBuf],
) -> Result<Restored> {
    check_empty(home)?;
    eprintln!("restore: checking every file of {}", file.display());
    let checked = archive::check(file)?;
    let manifest = checked.manifest;
    let config_path = match config_target {
        Some(path) if path.is_absolute() => path.to_path_buf(),
        Some(path) => std::env::current_dir()
            .context("reading the current directory")?
            .join(path),
        None => PathBuf::from(&manifest.config_path),
    };
    if config_path.exists() {
        bail!(
            "{} exists; a restore never overwrites a config\n  hint: pass --config PATH to write the backup's config elsewhere",
            config_path.display()
        );
    }
    let (secrets, key) = open_secrets(&manifest, checked.secrets.as_deref(), key_file, keys)?;
    if let Some(tokens) = &checked.tokens {
        roster_store::tokens::check_backup(tokens)
            .map_err(|error| anyhow::anyhow!("{error}\n  nothing was written"))?;
    }

    // Every check passed: from here on, writes.
    let home_dir = home
        .create_verified()
        .with_context(|| format!("creating the home {}", home.root().display()))?;
    if let Some(parent) = config_path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_new(&config_path, 0o600, &mut checked.config.as_slice())?;
    let listed: BTreeMap<&str, (u32, &str)> = manifest
        .files
        .iter()
        .map(|entry| (entry.path.as_str(), (entry.mode, entry.sha256.as_str())))
        .collect();
    let mut written = 0usize;
    let mut next_report = 1000usize;
    archive::for_each(file, |name, reader| {
        let target = if name == JOURNAL_ENTRY {
            home.journal()
        } else if name.starts_with("agents/") {
            home.root().join(name)
        } else {
            return Ok(());
        };
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let Some((mode, sha256)) = listed.get(name).copied() else {
            bail!("{name} is not in the manifest");
        };
        let mut hashing = Hashing::new(reader);
        write_new(&target, mode, &mut hashing)?;
        if hashing.hex() != sha256 {
            bail!(
                "{} changed between the check and the restore, and {} is now half restored\n  hint: remove {} and restore again from a copy nobody writes",
                file.display(),
                home.root().display(),
                home.root().display()
            );
        }
        written += 1;
        if written == next_report {
            next_report += 1000;
            eprintln!("restore: {written} files written");
        }
        Ok(())
    })?;
    for entry in &manifest.files {
        if let Some(link) = &entry.link {
            let target = home.root().join(&entry.path);
            std::os::unix::fs::symlink(link, &target)
                .with_context(|| format!("creating the link {}", target.display()))?;
        }
    }
    for agent in &manifest.agents {
        let name = AgentName::new(&agent.name).map_err(|problem| {
            anyhow::anyhow!("the backup names agent {:?}: {problem}", agent.name)
        })?;
        let releases = Releases::new(home.root(), &name);
        releases.ensure_layout()?;
        if let Some(live) = &agent.live {
            releases.switch_current(live)?;
        }
    }
    let secret_agents = secrets.len();
    if !secrets.is_empty() {
        let store = roster_store::secrets::Store::create(&home_dir)?;
        if let Some(key) = &key {
            if !store.is_encrypted()? {
                store.install_key(key.bytes())?;
            }
        }
        for (agent, values) in secrets {
            let name = roster_store::secrets::check_agent(&agent).map_err(anyhow::Error::msg)?;
            for (key, value) in values {
                store.set(&name, &key, &value)?;
            }
        }
    }
    let tokens = match &checked.tokens {
        Some(bytes) => roster_store::tokens::TokenStore::create(&home_dir)?.import(bytes)?,
        None => 0,
    };
    Ok(Restored {
        manifest,
        config_path,
        secret_agents,
        tokens,
    })
}

type AllSecrets = BTreeMap<String, AgentSecrets>;

/// The backup's secrets, opened with the key it names.
fn open_secrets(
    manifest: &Manifest,
    sealed: Option<&[u8]>,
    key_file: Option<&Path>,
    keys: &[PathBuf],
) -> Result<(AllSecrets, Option<SealKey>)> {
    let (Some(info), Some(sealed)) = (&manifest.secrets, sealed) else {
        return Ok((AllSecrets::new(), None));
    };
    let candidates: Vec<PathBuf> = match key_file {
        Some(path) => vec![path.to_path_buf()],
        None => keys.iter().filter(|path| path.exists()).cloned().collect(),
    };
    let mut tried = Vec::new();
    for path in &candidates {
        let key = SealKey::read(path).map_err(anyhow::Error::msg)?;
        if key.fingerprint() != info.key_fingerprint {
            tried.push(format!("{} (key {})", path.display(), key.fingerprint()));
            continue;
        }
        let Some(plain) = key.open(sealed, SECRETS_LABEL) else {
            bail!("the secrets do not open with {}, though it is the key they name: the backup was altered", path.display());
        };
        let secrets: AllSecrets =
            serde_json::from_slice(&plain).context("reading the backup's secrets")?;
        return Ok((secrets, Some(key)));
    }
    bail!(
        "the backup's secrets were sealed with key {} (the {} key on host {}), and {}\n  hint: pass --key-file with that key (the old home's secrets/key, or the file given to `roster backup --key-file`); nothing was written",
        info.key_fingerprint,
        if info.key_source == "home" { "home's secrets/key" } else { "--key-file" },
        manifest.host,
        if tried.is_empty() {
            "no key was given (--key-file) and this home has none".to_string()
        } else {
            format!("the keys at hand are others: {}", tried.join(", "))
        }
    )
}

fn write_new(path: &Path, mode: u32, reader: &mut dyn std::io::Read) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o7777)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::copy(reader, &mut file).with_context(|| format!("writing {}", path.display()))?;
    file.flush()?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}
