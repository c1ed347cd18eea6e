//! `roster fleet status`: every instance on every host in one table.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};

/// Runs `roster fleet status`.
pub fn run(_file: &Path, _json: bool, _hosts: &[String]) -> Result<ExitCode> {
    bail!("roster fleet status is not built yet")
}
