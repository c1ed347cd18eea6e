//! `roster remove NAME`: takes `[agents.NAME]` and its sub-tables out of the
//! config file, keeping every other line, checks the whole file, then
//! applies it as `roster apply` does: the agent is stopped.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use roster_core::config::EditError;
use roster_store::Home;

use super::config_edit;

/// Runs `roster remove`.
pub fn run(home: &Home, name: &str, file: &Path, timeout: Duration) -> Result<ExitCode> {
    let target = config_edit::read(file)?;
    let shown = target.shown.display().to_string();
    let old = target.existing()?;
    let text = match roster_core::config::remove_agent(old, name) {
        Ok(text) => text,
        Err(EditError::Unknown { known, .. }) => bail!(
            "no agent `{name}` in {shown}; nothing was written\n  hint: its agents: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                super::up::few(&known, 20)
            }
        ),
        Err(EditError::NotToml(_)) => {
            target.print_current_problems();
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(error.into()),
    };
    let why_lines = "line numbers are those of the file without the agent";
    if target.check_and_write(&text, why_lines)?.is_none() {
        return Ok(ExitCode::from(1));
    }
    println!("removed [agents.{name}] from {shown}");
    target.apply_written(
        home,
        timeout,
        "nothing to stop",
        &format!("no longer has [agents.{name}]"),
    )
}
