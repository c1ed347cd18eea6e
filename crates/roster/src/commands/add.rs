//! `roster add NAME [--cwd DIR] [--env K=V ...] [--user U] [--health-http
//! URL] -- COMMAND ARGS...`: appends `[agents.NAME]` to the config file
//! (created if missing), checks the whole file, then does what `roster up`
//! does. The file stays the one source of truth: the agent runs because
//! the file says so.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use roster_core::config::{EditError, NewAgent};
use roster_core::AgentName;
use roster_store::Home;

use super::config_edit::{self, Target};

/// What `roster add` was given.
#[derive(Debug)]
pub struct Options {
    /// The agent's name.
    pub name: String,
    /// `--cwd`, as typed (relative to the current directory).
    pub cwd: Option<PathBuf>,
    /// `--env K=V`, in order.
    pub env: Vec<(String, String)>,
    /// `--user`.
    pub user: Option<String>,
    /// `--health-http`.
    pub health_http: Option<String>,
    /// The argv after `--`.
    pub command: Vec<String>,
    /// `-f`.
    pub file: PathBuf,
    /// How long to wait for the agents to settle, as `up`.
    pub timeout: Duration,
}

/// `--env K=V` read from the command line.
pub fn parse_env(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        Some(_) => Err(format!("{raw:?} has no name before `=`; write KEY=VALUE")),
        None => Err(format!("{raw:?} has no `=`; write KEY=VALUE")),
    }
}

/// Runs `roster add`.
pub fn run(home: &Home, options: &Options) -> Result<ExitCode> {
    let name = AgentName::new(&options.name).map_err(|error| {
        anyhow!(
            "bad agent name {:?}: {error}\n  hint: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            options.name
        )
    })?;
    if options.command.first().is_none_or(String::is_empty) {
        bail!(
            "roster add {name} has no command\n  hint: give it after `--`: roster add {name} -- python3 main.py"
        );
    }
    let target = config_edit::read(&options.file)?;
    let shown = target.shown.display().to_string();
    let agent = NewAgent {
        name: name.clone(),
        command: options.command.clone(),
        cwd: written_cwd(options.cwd.as_deref(), &target)?,
        env: options.env.clone(),
        user: options.user.clone(),
        health_http: options.health_http.clone(),
    };
    let old = target.old.as_deref().unwrap_or_default();
    let (text, first_line) = match roster_core::config::add_agent(old, &agent) {
        Ok(added) => added,
        Err(EditError::AlreadyThere(_)) => bail!(
            "agent `{name}` is already in {shown}; nothing was written\n  hint: `roster remove {name} -f {shown}` first, or edit its table in {shown}"
        ),
        Err(EditError::NotToml(_)) => {
            target.print_current_problems();
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(error.into()),
    };
    let why_lines = format!("the table `roster add` would append starts at line {first_line}");
    let Some(config) = target.check_and_write(&text, &why_lines)? else {
        return Ok(ExitCode::from(1));
    };
    if target.old.is_none() {
        println!("created {shown} with [agents.{name}]");
    } else {
        println!("added [agents.{name}] to {shown}");
    }
    super::up::start_and_apply(home, &options.file, &config, options.timeout, false).with_context(
        || format!("{shown} has [agents.{name}] now, but it was not applied; once the cause is fixed, run `roster up -f {shown}`"),
    )
}

/// The `cwd` to write: `--cwd` (relative to the current directory) or,
/// without it, the current directory when that is not the file's own
/// (where a relative program is looked for, as it would be when run by
/// hand). Written relative to the file's directory when inside it.
fn written_cwd(given: Option<&Path>, target: &Target) -> Result<Option<String>> {
    // Compared as the kernel resolves them (`-f ../roster.toml`, links);
    // a directory that does not exist stays as written, for `check` to
    // report.
    let resolved = |path: PathBuf| std::fs::canonicalize(&path).unwrap_or(path);
    let here = resolved(config_edit::absolute(Path::new("."))?);
    let base = resolved(target.base().to_path_buf());
    let wanted = match given {
        Some(dir) => resolved(config_edit::absolute(dir)?),
        None if here == base => return Ok(None),
        None => here,
    };
    let written = match wanted.strip_prefix(&base) {
        Ok(inside) if inside.as_os_str().is_empty() => PathBuf::from("."),
        Ok(inside) => inside.to_path_buf(),
        Err(_) => wanted.clone(),
    };
    match written.to_str() {
        Some(text) => Ok(Some(text.to_owned())),
        None => bail!(
            "the directory {} is not valid UTF-8, which a config file cannot hold\n  hint: rename it, or run the agent from another directory",
            wanted.display()
        ),
    }
}
