//! `roster export systemd|logrotate`: a config as plain systemd units, one
//! per agent, and a logrotate snippet for their logs. Secrets are never
//! read: units reference `env_file` and the home's secrets files.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::paths;
use crate::systemd::{agent_unit, agent_unit_name, logrotate, ExportOptions};

/// The home the units are for: the one given, else the installed one.
fn home_for_export(home: Option<&Path>) -> Result<PathBuf> {
    match home {
        Some(home) if !home.as_os_str().is_empty() => {
            Ok(super::resolve_home(Some(home.to_path_buf()))?
                .root()
                .to_path_buf())
        }
        _ => Ok(PathBuf::from(paths::STATE_HOME)),
    }
}

/// Runs `roster export systemd`.
pub fn systemd(
    home: Option<&Path>,
    file: &Path,
    out: Option<&Path>,
    journal: bool,
) -> Result<ExitCode> {
    let config = super::check::load(file)?;
    let options = ExportOptions {
        home: home_for_export(home)?,
        journal,
    };
    let mut units = Vec::new();
    for (name, spec) in &config.agents {
        let text = agent_unit(name.as_str(), spec, &options).map_err(anyhow::Error::msg)?;
        units.push((agent_unit_name(name.as_str()), text));
    }
    let mut stdout = std::io::stdout().lock();
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, text) in &units {
                let path = dir.join(name);
                write_file(&path, text.as_bytes())?;
                let _ = writeln!(stdout, "wrote {}", path.display());
            }
            if units.is_empty() {
                let _ = writeln!(stdout, "no agents in {}: nothing written", file.display());
            }
        }
        None => {
            for (name, text) in &units {
                let _ = writeln!(stdout, "# ---- {name}");
                let _ = write!(stdout, "{text}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `roster export logrotate`.
pub fn logrotate_snippet(home: Option<&Path>, file: &Path) -> Result<ExitCode> {
    let config = super::check::load(file)?;
    let home = home_for_export(home)?;
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{}", logrotate(&config.log, &home));
    Ok(ExitCode::SUCCESS)
}

/// Writes a file (0644) by a temp file and a rename.
fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    let temp = path.with_extension("service.tmp");
    std::fs::write(&temp, contents).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path)
        .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
}
