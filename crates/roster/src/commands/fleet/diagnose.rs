//! `roster fleet diagnose --out DIR`: every host's `roster diagnose
//! --bundle` at once (sos collect's job), each bundle brought back as
//! `DIR/HOST.tar.gz` with its findings as `DIR/HOST.json`, unreachable
//! hosts listed with the reason.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use roster_core::fleet;
use serde::Serialize;

use super::ssh::Ssh;
use super::{REMOTE_CONFIG, REMOTE_HOME};
use crate::render;

/// What a host may take on top of connecting: diagnose's own collectors
/// (a few seconds at most, by their timeouts) and the bundle's transfer.
const COMMAND_BUDGET: Duration = Duration::from_secs(30);

/// Runs `diagnose --json --bundle` on the host and prints, on stdout: its
/// exit code, the length of its JSON, the JSON, then the bundle's bytes.
/// `$1` the roster binary, `$2` its home, `$3` the fleet's roster.toml
/// (passed with -f when the host has it).
const REMOTE_SCRIPT: &str = "set -u; d=$(mktemp -d) || exit 1; trap 'rm -rf \"$d\"' EXIT; \
     r=$1; h=$2; c=$3; if [ -f \"$c\" ]; then set -- -f \"$c\"; else set --; fi; \
     \"$r\" --home \"$h\" diagnose \"$@\" --json --bundle \"$d/b.tar.gz\" \
       >\"$d/d.json\" 2>\"$d/err\"; code=$?; \
     if [ ! -f \"$d/b.tar.gz\" ]; then cat \"$d/err\" >&2; exit 1; fi; \
     printf '%s\\n' \"$code\"; wc -c <\"$d/d.json\"; cat \"$d/d.json\" \"$d/b.tar.gz\"";

/// One host's line of the result.
#[derive(Debug, Serialize)]
struct HostRow {
    name: String,
    address: String,
    reachable: bool,
    error: Option<String>,
    /// Where its bundle was written.
    bundle: Option<PathBuf>,
    /// Its diagnose's exit code (0: nothing wrong).
    diagnose_exit: Option<i32>,
    /// Its findings by severity.
    critical: usize,
    warning: usize,
    info: usize,
    /// The modes found, most severe first.
    modes: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    out: PathBuf,
    hosts: Vec<HostRow>,
}

/// A host's answer taken apart: diagnose's exit code, its JSON, the bundle.
fn split_answer(stdout: &[u8]) -> Result<(i32, &[u8], &[u8]), String> {
    let mut rest = stdout;
    let mut line = || -> Result<String, String> {
        let end = rest
            .iter()
            .position(|byte| *byte == b'\n')
            .ok_or("the host's answer was cut short")?;
        let text = String::from_utf8_lossy(&rest[..end]).trim().to_owned();
        rest = &rest[end + 1..];
        Ok(text)
    };
    let code: i32 = line()?
        .parse()
        .map_err(|_| "the host's answer has no exit code".to_owned())?;
    let length: usize = line()?
        .parse()
        .map_err(|_| "the host's answer has no JSON length".to_owned())?;
    if rest.len() < length {
        return Err("the host's answer was cut short".to_owned());
    }
    let (json, bundle) = rest.split_at(length);
    if bundle.is_empty() {
        return Err("the host sent no bundle".to_owned());
    }
    Ok((code, json, bundle))
}

/// Writes `bytes` to `path` (0600) through a temporary file beside it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("part");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

/// Runs `roster fleet diagnose`.
pub fn run(file: &Path, out: &Path, json: bool, only: &[String]) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let fleet = fleet::parse(&text, file)?;
    let transport = Ssh::new(&fleet)?;
    let targets = transport.targets(&fleet, only)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let remote: Vec<String> = [
        "sh",
        "-c",
        REMOTE_SCRIPT,
        "sh",
        transport.roster(),
        REMOTE_HOME,
        REMOTE_CONFIG,
    ]
    .map(str::to_owned)
    .to_vec();
    let timeout = fleet.ssh.connect_timeout + COMMAND_BUDGET;
    let outcomes = transport.run_all(&targets, &remote, timeout);
    let mut rows = Vec::new();
    for (target, outcome) in targets.iter().zip(outcomes) {
        let mut row = HostRow {
            name: target.name.clone(),
            address: target.address.clone(),
            reachable: false,
            error: None,
            bundle: None,
            diagnose_exit: None,
            critical: 0,
            warning: 0,
            info: 0,
            modes: Vec::new(),
        };
        match outcome.result.and_then(|stdout| {
            let (code, json, bundle) = split_answer(&stdout)?;
            Ok((code, json.to_vec(), bundle.to_vec()))
        }) {
            Err(error) => row.error = Some(error),
            Ok((code, findings, bundle)) => {
                row.reachable = true;
                row.diagnose_exit = Some(code);
                let bundle_path = out.join(format!("{}.tar.gz", target.name));
                write_private(&bundle_path, &bundle)?;
                write_private(&out.join(format!("{}.json", target.name)), &findings)?;
                row.bundle = Some(bundle_path);
                let parsed: serde_json::Value =
                    serde_json::from_slice(&findings).unwrap_or_default();
                for finding in parsed["findings"].as_array().into_iter().flatten() {
                    match finding["severity"].as_str() {
                        Some("critical") => row.critical += 1,
                        Some("warning") => row.warning += 1,
                        _ => row.info += 1,
                    }
                    if let Some(mode) = finding["mode"].as_str() {
                        if !row.modes.iter().any(|seen| seen == mode) {
                            row.modes.push(mode.to_owned());
                        }
                    }
                }
            }
        }
        rows.push(row);
    }
    let every = rows
        .iter()
        .all(|row| row.reachable && row.diagnose_exit == Some(0));
    let report = Report {
        out: out.to_path_buf(),
        hosts: rows,
    };
    write_private(
        &out.join("hosts.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(if every {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn table(report: &Report) -> String {
    let rows: Vec<[String; 4]> = report
        .hosts
        .iter()
        .map(|row| {
            let found = match (&row.error, row.critical + row.warning + row.info) {
                (Some(error), _) => format!("unreachable: {error}"),
                (None, 0) => "nothing wrong found".to_owned(),
                (None, _) => format!(
                    "{} critical, {} warning, {} info: {}",
                    row.critical,
                    row.warning,
                    row.info,
                    row.modes.join(", ")
                ),
            };
            [
                row.name.clone(),
                row.address.clone(),
                found,
                row.bundle
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |path| path.display().to_string()),
            ]
        })
        .collect();
    render::table(&["HOST", "ADDRESS", "FINDINGS", "BUNDLE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_splits_into_code_json_and_bundle() {
        let answer = b"1\n13\n{\"findings\":}\x1f\x8b\x08rest";
        let (code, json, bundle) = split_answer(answer).expect("splits");
        assert_eq!(code, 1);
        assert_eq!(json, b"{\"findings\":}");
        assert_eq!(bundle, b"\x1f\x8b\x08rest");
        assert!(split_answer(b"1\n99\n{}").is_err(), "cut short");
        assert!(split_answer(b"x\n").is_err());
        assert!(split_answer(b"0\n2\n{}").is_err(), "no bundle");
    }
}
