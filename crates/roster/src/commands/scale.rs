//! `roster scale NAME N`: sets `instances = N` in `[agents.NAME]`, keeping
//! every other line, checks the whole file, then applies it as
//! `roster apply` does: new copies start, the highest-numbered ones are
//! drained and go.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use roster_core::config::{EditError, MAX_INSTANCES};
use roster_store::Home;

use super::config_edit;

/// Runs `roster scale`.
pub fn run(
    home: &Home,
    name: &str,
    count: u32,
    file: &Path,
    timeout: Duration,
) -> Result<ExitCode> {
    if count == 0 {
        bail!(
            "an agent runs at least 1 copy; nothing was written\n  hint: `roster stop {name}` stops all of its copies, `roster remove {name}` takes it out of the file"
        );
    }
    if count > MAX_INSTANCES {
        bail!("at most {MAX_INSTANCES} copies of one agent; nothing was written");
    }
    let target = config_edit::read(file)?;
    let shown = target.shown.display().to_string();
    let old = target.existing()?;
    let (text, previous) = match roster_core::config::set_instances(old, name, count) {
        Ok(edited) => edited,
        Err(EditError::Unknown { known, .. }) => {
            // `worker.2` for `worker`: the copy's agent is what is scaled.
            let hint = match name.rsplit_once('.') {
                Some((of, number))
                    if known.iter().any(|agent| agent == of)
                        && number.bytes().all(|byte| byte.is_ascii_digit()) =>
                {
                    format!("`{name}` is a copy of `{of}`: roster scale {of} {count}")
                }
                _ if known.is_empty() => "the file has no agents".to_owned(),
                _ => format!("its agents: {}", super::up::few(&known, 20)),
            };
            bail!("no agent `{name}` in {shown}; nothing was written\n  hint: {hint}");
        }
        Err(EditError::NotToml(_)) => {
            target.print_current_problems();
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(error.into()),
    };
    if previous == Some(i64::from(count)) {
        println!("{name} has {count} copies in {shown} already; nothing was written");
        return Ok(ExitCode::SUCCESS);
    }
    let why_lines = "line numbers are those of the file with the new count";
    if target.check_and_write(&text, why_lines)?.is_none() {
        return Ok(ExitCode::from(1));
    }
    println!("{}", change(name, previous, count, &shown));
    target.apply_written(
        home,
        timeout,
        &format!("`roster up -f {shown}` starts the copies"),
        &format!("now asks for {count} copies of {name}"),
    )
}

/// What the new count does, in a line.
fn change(name: &str, previous: Option<i64>, count: u32, shown: &str) -> String {
    let copies = |count: i64| if count == 1 { "copy" } else { "copies" };
    match previous {
        None => format!(
            "{name}: instances = {count} in {shown}; agent {name} is replaced by {name}.1 … {name}.{count}"
        ),
        Some(before) if before > i64::from(count) => {
            let gone: Vec<String> = (i64::from(count) + 1..=before)
                .map(|number| format!("{name}.{number}"))
                .collect();
            format!(
                "{name}: {before} → {count} {} in {shown}; draining {}",
                copies(i64::from(count)),
                super::up::few(&gone, 10)
            )
        }
        Some(before) => format!(
            "{name}: {before} → {count} {} in {shown}",
            copies(i64::from(count))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::change;

    #[test]
    fn the_change_is_said_in_one_line() {
        assert_eq!(
            change("w", Some(3), 1, "roster.toml"),
            "w: 3 → 1 copy in roster.toml; draining w.2, w.3"
        );
        assert_eq!(
            change("w", Some(1), 4, "roster.toml"),
            "w: 1 → 4 copies in roster.toml"
        );
        assert_eq!(
            change("w", None, 2, "r.toml"),
            "w: instances = 2 in r.toml; agent w is replaced by w.1 … w.2"
        );
    }
}
