//! `roster fleet export prometheus|grafana`: files that watch the fleet.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};

/// Runs `roster fleet export prometheus`.
pub fn prometheus(_file: &Path, _out: &Path) -> Result<ExitCode> {
    bail!("roster fleet export prometheus is not built yet")
}

/// Runs `roster fleet export grafana`.
pub fn grafana(_file: &Path, _out: &Path) -> Result<ExitCode> {
    bail!("roster fleet export grafana is not built yet")
}
