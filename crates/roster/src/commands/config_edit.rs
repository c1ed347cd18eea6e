//! What `roster add`, `remove` and `scale` share: the config file's text as
//! it is now (or none yet), and an edited text checked whole, as
//! `roster check` checks a file, before it replaces the old one. An edit
//! that does not check leaves the file exactly as it was.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use roster_core::config::{self, Config};
use roster_store::Home;

use crate::client::Reach;

/// A config file about to be edited.
pub struct Target {
    /// The file as the user named it (how messages show it).
    pub shown: PathBuf,
    /// Its absolute path; relative paths inside it are relative to its
    /// directory.
    pub absolute: PathBuf,
    /// Its text, or `None` when there is no file yet.
    pub old: Option<String>,
}

/// `path` made absolute against the current directory, without `.`
/// components (symbolic links are left as they are: a config's relative
/// paths are relative to the directory it is named in).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(path)
    };
    Ok(joined
        .components()
        .filter(|component| !matches!(component, Component::CurDir))
        .collect())
}

/// Reads the config file `file` names; a missing one is an empty `Target`.
pub fn read(file: &Path) -> Result<Target> {
    let absolute = absolute(file)?;
    let old = match roster_store::config_file::read_config_file(&absolute) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", absolute.display()));
        }
    };
    Ok(Target {
        shown: file.to_path_buf(),
        absolute,
        old,
    })
}

impl Target {
    /// The file's text; an error with the way out when there is no file
    /// (`remove` and `scale` edit an existing one).
    pub fn existing(&self) -> Result<&str> {
        self.old.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "no config file at {}\n  hint: pass one with -f FILE, or run roster in the directory that has roster.toml",
                self.absolute.display()
            )
        })
    }

    /// After the file was written: applies it as `roster apply` does when
    /// the home's daemon runs (`failed` says what the file now asks for, in
    /// the error when the apply fails), or says `idle` when none runs.
    pub fn apply_written(
        &self,
        home: &Home,
        timeout: Duration,
        idle: &str,
        failed: &str,
    ) -> Result<ExitCode> {
        if matches!(super::client(home).reach(), Reach::Down) {
            println!("no roster daemon runs in {}: {idle}", home.root().display());
            return Ok(ExitCode::SUCCESS);
        }
        let shown = self.shown.display();
        super::up::apply(home, &self.shown, false, false, timeout).with_context(|| {
            format!(
                "{shown} {failed}, but it was not applied; once the cause is fixed, run `roster apply -f {shown}`"
            )
        })
    }

    /// The directory relative paths in the file are relative to.
    pub fn base(&self) -> &Path {
        self.absolute.parent().unwrap_or(Path::new("/"))
    }

    /// Prints why the file as it is now is not a config (when an edit
    /// cannot even read it): each problem located, as `roster check`.
    pub fn print_current_problems(&self) {
        let text = self.old.as_deref().unwrap_or_default();
        let shown = self.shown.display().to_string();
        if let Err(error) = config::parse(&shown, text, self.base()) {
            eprintln!("{error}");
        }
        eprintln!(
            "{shown} is not a valid config now; nothing was written\n  hint: fix it first (`roster check -f {shown}`)"
        );
    }

    /// Checks `text` as the whole file, as `roster check` would; when it
    /// passes, writes it in place of the file (same mode and owner, one
    /// rename) and returns the config. When it does not, prints each
    /// problem and `why_lines` (what the line numbers refer to), leaves the
    /// file as it was and returns `None`.
    pub fn check_and_write(&self, text: &str, why_lines: &str) -> Result<Option<Config>> {
        let shown = self.shown.display().to_string();
        let text = &match &self.old {
            Some(old) => config::keep_line_endings(old, text),
            None => text.to_owned(),
        };
        let config = match config::parse(&shown, text, self.base()) {
            Ok(config) => config,
            Err(error) => {
                let count = error.diagnostics.len();
                eprintln!("{error}");
                eprintln!(
                    "{count} problem{} found ({why_lines}); nothing was written: {shown} is as it was",
                    if count == 1 { "" } else { "s" },
                );
                return Ok(None);
            }
        };
        let problems = super::check::problems(&self.shown, &config);
        if !problems.is_empty() {
            for problem in &problems {
                eprintln!("{shown}: {problem}");
            }
            eprintln!("nothing was written: {shown} is as it was");
            return Ok(None);
        }
        roster_store::config_write::replace_config_file(&self.absolute, self.old.as_deref(), text)?;
        Ok(Some(config))
    }
}
