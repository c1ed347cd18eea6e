//! `diagnose --bundle FILE.tar.gz`: everything diagnose saw, for a support
//! ticket, with no secret in it. The config's secret-looking values are
//! redacted by key and by shape (`roster_core::diagnose::redact`), and
//! every value of the home's secrets store, of a secret-looking `env` key
//! and of an `env_file` is scrubbed from every file before it is written.
//! When the secrets store cannot be read the logs are left out (they could
//! carry a value we cannot recognise) and the manifest says so. Written to
//! a temporary file beside FILE (0600) and renamed into place.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use roster_core::api::StatusReply;
use roster_core::config::Config;
use roster_core::diagnose::redact::{is_secret_key, looks_like_token, redact_config, scrub};
use roster_core::diagnose::Daemon;
use roster_store::Home;

use super::collect::{self, Collected, Item};

/// Refuses a target whose directory does not exist (a usage error).
pub fn check_target(target: &Path) -> Result<(), String> {
    let parent = parent_of(target);
    if !parent.is_dir() {
        return Err(format!(
            "cannot write the bundle {}: {} is not a directory\n  hint: name a file in an existing directory, e.g. --bundle /tmp/roster-diagnose.tar.gz",
            target.display(),
            parent.display()
        ));
    }
    if target.is_dir() {
        return Err(format!(
            "cannot write the bundle {}: it is a directory\n  hint: name a file, e.g. {}/roster-diagnose.tar.gz",
            target.display(),
            target.display()
        ));
    }
    Ok(())
}

fn parent_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The values to scrub: the secrets store's, and those of secret-looking
/// keys in the config's `env` and `env_file`s. Err when the store exists
/// and cannot be read.
fn secret_values(home: &Home, config: Option<&Config>) -> (Vec<String>, Result<(), String>) {
    let mut values = Vec::new();
    if let Some(config) = config {
        let mut pairs: Vec<(String, String)> = config
            .agents
            .values()
            .flat_map(|spec| spec.env.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        if let Ok(files) = roster_store::config_file::read_env_files(config) {
            pairs.extend(files.into_values().flatten());
        }
        values.extend(
            pairs
                .into_iter()
                .filter(|(key, value)| is_secret_key(key) || looks_like_token(value))
                .map(|(_, value)| value),
        );
    }
    let store = if !home.root().exists() {
        Ok(())
    } else {
        match home.open_verified() {
            Err(error) => Err(format!(
                "the home cannot be opened to read its secrets: {error}"
            )),
            Ok(dir) => match roster_store::secrets::Store::open(&dir) {
                Err(error) => Err(format!("the secrets store cannot be opened: {error}")),
                Ok(None) => Ok(()),
                Ok(Some(store)) => {
                    let (all, problems) = store.load_all();
                    values.extend(all.into_values().flat_map(|secrets| secrets.into_values()));
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(problems.join("; "))
                    }
                }
            },
        }
    };
    (values, store)
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}

/// The kernel's OOM lines in the window, each kill's lines together, or
/// why the kernel log was not read.
fn kernel_oom_text(collected: &Collected) -> String {
    if let Some(reason) = &collected.kernel_skipped {
        return format!("the kernel log was not read: {reason}\n");
    }
    if collected.kernel_oom.is_empty() {
        return format!(
            "no OOM kill in the kernel log in the last {}\n",
            collected.window
        );
    }
    let mut text = String::new();
    for kill in &collected.kernel_oom {
        let time = kill.time.as_deref().unwrap_or("?");
        for line in &kill.lines {
            text.push_str(&format!("[{time}] {line}\n"));
        }
    }
    text
}

/// Writes the bundle; returns its path.
pub fn write(
    home: &Home,
    file: Option<&Path>,
    target: &Path,
    collected: &Collected,
    report: &Value,
) -> Result<PathBuf> {
    let mut items: Vec<Item> = collected.items.clone();
    let status: Option<StatusReply> = match &collected.daemon {
        Daemon::Answered(status) => Some(status.clone()),
        _ => None,
    };
    let doctor = {
        let home = home.clone();
        let file = file.map(Path::to_path_buf);
        let status = status.clone();
        collect::start("doctor", collect::DOCTOR_TIMEOUT, move || {
            super::super::doctor::findings(&home, file.as_deref(), Path::new("/"), status.as_ref())
                .map(|(config, findings)| json!({ "config": config, "findings": findings }))
                .map_err(|error| format!("{error:#}"))
        })
    };
    let secrets = {
        let home = home.clone();
        let config = collected.parsed.clone();
        collect::start("secrets", collect::FILES_TIMEOUT, move || {
            Ok(secret_values(&home, config.as_ref()))
        })
    };
    let doctor = doctor
        .wait(&mut items)
        .unwrap_or_else(|| json!({ "error": "doctor's checks did not finish; see manifest.json" }));
    let (secrets, logs_safe) = match secrets.wait(&mut items) {
        Some((values, Ok(()))) => (values, true),
        Some((values, Err(error))) => {
            if let Some(item) = items.last_mut() {
                item.error = Some(format!("{error}; the logs are left out of the bundle"));
            }
            (values, false)
        }
        None => (Vec::new(), false),
    };

    let mut files: Vec<(String, String)> = vec![
        ("diagnose.json".into(), pretty(report)),
        (
            "status.json".into(),
            match &collected.daemon {
                Daemon::Answered(status) => pretty(status),
                other => pretty(&json!({ "error": format!("{other:?}") })),
            },
        ),
        ("events.json".into(), pretty(&collected.events)),
        (
            "alerts.json".into(),
            match &collected.alerts {
                Some(alerts) => pretty(alerts),
                None => pretty(&json!({ "error": "the daemon did not answer" })),
            },
        ),
        (
            "host.json".into(),
            pretty(&json!({
                "host": collected.host,
                "port_holders": collected.port_holders,
                "oom_kills": collected.oom_kills,
                "kernel_oom": collected.kernel_oom,
                "home_cgroup": collected.home_cgroup,
            })),
        ),
        ("kernel-oom.txt".into(), kernel_oom_text(collected)),
        ("doctor.json".into(), pretty(&doctor)),
    ];
    if let Some(text) = &collected.config_text {
        files.push(("roster.toml".into(), redact_config(text)));
    }
    if logs_safe {
        for (file_name, lines) in &collected.log_files {
            let mut text = lines.join("\n");
            text.push('\n');
            files.push((format!("logs/{file_name}"), text));
        }
    }
    let started = Instant::now();
    let files: Vec<(String, String)> = files
        .into_iter()
        .map(|(name, text)| (name, scrub(&text, &secrets)))
        .collect();
    items.push(Item {
        name: "redaction".into(),
        duration_ms: started.elapsed().as_millis() as u64,
        timed_out: false,
        error: None,
        skipped: None,
    });
    let manifest = json!({
        "roster_version": env!("CARGO_PKG_VERSION"),
        "hostname": std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_default(),
        "time": roster_store::clock::rfc3339_millis(roster_store::clock::unix_millis()),
        "home": home.root(),
        "items": items,
        "files": files.iter().map(|(name, _)| name.as_str()).chain(["manifest.json"]).collect::<Vec<_>>(),
        "logs_included": logs_safe,
    });
    let mut all = files;
    all.push(("manifest.json".into(), scrub(&pretty(&manifest), &secrets)));
    write_tar_gz(target, &all)?;
    Ok(target.to_path_buf())
}

/// The files as a gzipped tar at `target`, through a temporary file beside it.
fn write_tar_gz(target: &Path, files: &[(String, String)]) -> Result<()> {
    let parent = parent_of(target);
    let base = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle.tar.gz".into());
    let temporary = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(encoder);
        let now = roster_store::clock::unix_millis().max(0) as u64 / 1000;
        for (name, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o600);
            header.set_mtime(now);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(
                &mut header,
                format!("roster-diagnose/{name}"),
                text.as_bytes(),
            )
            .with_context(|| format!("adding {name} to {}", temporary.display()))?;
        }
        let encoder = tar.into_inner().context("finishing the tar")?;
        let mut file = encoder.finish().context("finishing the gzip stream")?;
        file.flush()?;
        file.sync_all()
            .with_context(|| format!("syncing {}", temporary.display()))?;
        std::fs::rename(&temporary, target)
            .with_context(|| format!("renaming {} to {}", temporary.display(), target.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.with_context(|| {
        format!(
            "writing the bundle {}\n  hint: check that its directory is writable and has space",
            target.display()
        )
    })
}
