//! `roster tmux`: a tmux session laid out for operators: `roster top`
//! across the top, `roster logs -f` and a shell below, all in the directory
//! of the config the daemon applied. An existing session of that name is
//! attached to, never laid out twice.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};

use roster_store::Home;

/// The session's name when none is given.
pub const DEFAULT_SESSION: &str = "roster";

/// The `tmux` program on `PATH`, if any.
fn find_tmux() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("tmux"))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Runs tmux with `args`; its stdout, or an error with what it said.
fn tmux(program: &Path, args: &[&OsStr]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !output.status.success() {
        let words: Vec<String> = args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        bail!(
            "tmux {} failed: {}",
            words.first().map(String::as_str).unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Where the panes start: the applied config's directory, or else here.
fn directory(home: &Home) -> Result<(PathBuf, Option<String>)> {
    let here = std::env::current_dir().context("reading the current directory")?;
    let client = super::client(home);
    let applied = client
        .get::<roster_core::api::StatusReply>("/v1/status")
        .ok()
        .and_then(|status| status.config);
    let Some(config) = applied else {
        return Ok((
            here,
            Some("no daemon has applied a config yet: the panes start in this directory".into()),
        ));
    };
    match Path::new(&config).parent() {
        Some(dir) if dir.is_dir() => Ok((dir.to_path_buf(), None)),
        _ => Ok((
            here,
            Some(format!(
                "the applied config's directory ({config}) is gone: the panes start in this directory"
            )),
        )),
    }
}

/// Creates the session `name` (or finds it), then attaches when this is a
/// terminal, or says how to.
pub fn run(home: &Home, name: &str) -> Result<ExitCode> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == ':' || c == '.' || c.is_control() || c.is_whitespace())
    {
        bail!(
            "{name:?} cannot name a tmux session\n  hint: use letters, digits, - and _ (tmux reserves : and .)"
        );
    }
    let Some(program) = find_tmux() else {
        bail!(
            "tmux is not installed (no tmux on PATH)\n  hint: install it (apt install tmux, dnf install tmux), or run `roster top` on its own"
        );
    };
    let exact = format!("={name}");
    let exists = Command::new(&program)
        .args(["has-session", "-t", &exact])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {}", program.display()))?
        .success();
    if !exists {
        let (dir, note) = directory(home)?;
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
        lay_out(&program, home, name, &dir)?;
        println!(
            "created tmux session {name}: roster top, roster logs -f and a shell in {}",
            dir.display()
        );
    }
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !terminal {
        if exists {
            println!("tmux session {name} exists");
        }
        println!("attach with: tmux attach -t {name}");
        return Ok(ExitCode::SUCCESS);
    }
    let error = if std::env::var_os("TMUX").is_some() {
        // Inside tmux already: switch this client instead of nesting.
        Command::new(&program)
            .args(["switch-client", "-t", &exact])
            .exec()
    } else {
        Command::new(&program)
            .args(["attach-session", "-t", &exact])
            .exec()
    };
    Err(error).with_context(|| format!("running {}", program.display()))
}

/// The three panes: top above, logs and a shell below.
fn lay_out(program: &Path, home: &Home, name: &str, dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("finding the roster binary")?;
    let roster = |args: &[&str]| {
        let mut words = vec![
            exe.display().to_string(),
            "--home".to_owned(),
            home.root().display().to_string(),
        ];
        words.extend(args.iter().map(|arg| (*arg).to_owned()));
        shell_words::join(words)
    };
    let environment = format!("ROSTER_HOME={}", home.root().display());
    let dir = dir.as_os_str();
    let top = tmux(
        program,
        &[
            "new-session".as_ref(),
            "-d".as_ref(),
            "-P".as_ref(),
            "-F".as_ref(),
            "#{pane_id}".as_ref(),
            "-s".as_ref(),
            name.as_ref(),
            "-n".as_ref(),
            "roster".as_ref(),
            "-c".as_ref(),
            dir,
            "-e".as_ref(),
            environment.as_ref(),
            roster(&["top"]).as_ref(),
        ],
    )?;
    let logs = tmux(
        program,
        &[
            "split-window".as_ref(),
            "-v".as_ref(),
            "-l".as_ref(),
            "40%".as_ref(),
            "-P".as_ref(),
            "-F".as_ref(),
            "#{pane_id}".as_ref(),
            "-t".as_ref(),
            top.as_ref(),
            "-c".as_ref(),
            dir,
            "-e".as_ref(),
            environment.as_ref(),
            roster(&["logs", "-f"]).as_ref(),
        ],
    )?;
    tmux(
        program,
        &[
            "split-window".as_ref(),
            "-h".as_ref(),
            "-l".as_ref(),
            "35%".as_ref(),
            "-t".as_ref(),
            logs.as_ref(),
            "-c".as_ref(),
            dir,
            "-e".as_ref(),
            environment.as_ref(),
        ],
    )?;
    tmux(
        program,
        &["select-pane".as_ref(), "-t".as_ref(), top.as_ref()],
    )?;
    Ok(())
}
