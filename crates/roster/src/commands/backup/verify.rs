//! `roster backup verify FILE`: the drill. Restores the backup into a
//! scratch home (a temporary directory, removed after), checks that the
//! config loads and every live release is whole, starts nothing, and
//! reports the recovery point (the backup's age) and how long the restore
//! took. Exit 0 only when all is well.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use roster_core::backup::Manifest;
use roster_core::AgentName;
use roster_store::releases::Releases;
use roster_store::Home;

use super::restore;

/// What `roster backup verify` was asked.
pub struct Options {
    /// The archive.
    pub file: PathBuf,
    /// The key the secrets were sealed with.
    pub key_file: Option<PathBuf>,
    /// Print JSON.
    pub json: bool,
}

/// What the drill found.
#[derive(serde::Serialize)]
struct Report {
    ok: bool,
    file: String,
    taken: Option<String>,
    host: Option<String>,
    recovery_point_seconds: Option<u64>,
    restore_seconds: f64,
    agents: Vec<String>,
    problems: Vec<String>,
}

/// Runs the drill.
pub fn run(home: &Home, options: &Options) -> Result<ExitCode> {
    let scratch = std::env::temp_dir().join(format!(
        "roster-verify-{}-{}",
        std::process::id(),
        roster_store::clock::unix_millis()
    ));
    let started = Instant::now();
    let result = drill(home, &scratch, options);
    let _ = std::fs::remove_dir_all(&scratch);
    let now = (roster_store::clock::unix_millis().max(0) / 1000) as u64;
    let report = match result {
        Ok((manifest, problems, restore_seconds)) => Report {
            ok: problems.is_empty(),
            file: options.file.display().to_string(),
            taken: Some(roster_store::clock::rfc3339_millis(
                i64::try_from(manifest.created_unix.saturating_mul(1000)).unwrap_or(i64::MAX),
            )),
            host: Some(manifest.host.clone()),
            recovery_point_seconds: Some(now.saturating_sub(manifest.created_unix)),
            restore_seconds,
            agents: manifest
                .agents
                .iter()
                .map(|agent| agent.name.clone())
                .collect(),
            problems,
        },
        Err(error) => Report {
            ok: false,
            file: options.file.display().to_string(),
            taken: None,
            host: None,
            recovery_point_seconds: None,
            restore_seconds: started.elapsed().as_secs_f64(),
            agents: Vec::new(),
            problems: vec![format!("{error:#}")],
        },
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_text(report: &Report) {
    if let (Some(taken), Some(age)) = (&report.taken, report.recovery_point_seconds) {
        println!(
            "backup {} taken {taken} on {}",
            report.file,
            report.host.as_deref().unwrap_or("?")
        );
        println!(
            "recovery point: {} old",
            roster_core::units::format_duration(std::time::Duration::from_secs(age))
        );
    }
    println!(
        "restore took {:.2}s (into a scratch home; nothing started)",
        report.restore_seconds
    );
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    if report.ok {
        println!(
            "ok: the config loads and every live release is whole ({} agents with releases)",
            report.agents.len()
        );
    } else {
        println!("FAILED: this backup would not bring the agents back as they were");
    }
}

/// Restores into `scratch` and checks it; the manifest, the problems and
/// the restore's time in seconds (checks aside).
fn drill(home: &Home, scratch: &Path, options: &Options) -> Result<(Manifest, Vec<String>, f64)> {
    let started = Instant::now();
    let scratch_home = Home::new(scratch.join("home"));
    let config_target = scratch.join("roster.toml");
    std::fs::create_dir(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let restored = restore::restore_into(
        &scratch_home,
        &options.file,
        Some(&config_target),
        options.key_file.as_deref(),
        &[restore::home_key(home)],
    )?;
    let restore_seconds = started.elapsed().as_secs_f64();
    let manifest = restored.manifest;
    let mut problems = Vec::new();
    // The config, read as where it came from (its relative paths mean the same).
    let text = std::fs::read_to_string(&restored.config_path)
        .with_context(|| format!("reading {}", restored.config_path.display()))?;
    let base = Path::new(&manifest.config_path)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if let Err(error) = roster_core::config::parse(&manifest.config_path, &text, &base) {
        problems.push(format!("the config does not load:\n{error}"));
    }
    for agent in &manifest.agents {
        let Some(live) = &agent.live else { continue };
        let name = match AgentName::new(&agent.name) {
            Ok(name) => name,
            Err(problem) => {
                problems.push(format!("agent {:?}: {problem}", agent.name));
                continue;
            }
        };
        let releases = Releases::new(scratch_home.root(), &name);
        match releases.live() {
            Ok(Some(version)) if &version == live => {}
            other => problems.push(format!(
                "{}: the live release after restore is {other:?}, not {live}",
                agent.name
            )),
        }
        let prefix = format!("agents/{}/releases/{live}/", agent.name);
        for entry in manifest
            .files
            .iter()
            .filter(|entry| entry.path.starts_with(&prefix))
        {
            let path = scratch_home.root().join(&entry.path);
            let bytes = match &entry.link {
                Some(_) => std::fs::read_link(&path)
                    .map(|target| target.to_string_lossy().into_owned().into_bytes()),
                None => std::fs::read(&path),
            };
            match bytes {
                Ok(bytes) if roster_core::backup::sha256_hex(&bytes) == entry.sha256 => {}
                Ok(_) => problems.push(format!(
                    "{}: {} differs from the backup after restore",
                    agent.name, entry.path
                )),
                Err(error) => problems.push(format!(
                    "{}: {} is missing after restore: {error}",
                    agent.name, entry.path
                )),
            }
        }
    }
    Ok((manifest, problems, restore_seconds))
}
