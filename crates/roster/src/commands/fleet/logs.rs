//! `roster fleet logs INSTANCE`: the instance's host from the placement,
//! that host's own `roster logs INSTANCE` over ssh, its output passed
//! through. `--follow` streams until interrupted or the connection drops.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use roster_core::fleet::{self, Placement};

use super::ssh::{Ssh, Streamed};
use super::REMOTE_HOME;

/// What a host may take on top of connecting to print a tail.
const COMMAND_BUDGET: Duration = Duration::from_secs(10);
/// The exit code when the connection drops while following.
const CONNECTION_LOST: u8 = 1;

/// What `roster fleet logs` was asked.
pub struct Request<'a> {
    /// The fleet file.
    pub file: &'a Path,
    /// `TENANT.AGENT`.
    pub instance: &'a str,
    /// Keep printing new lines.
    pub follow: bool,
    /// How many of the last lines.
    pub lines: usize,
    /// Keep roster's timestamps.
    pub timestamps: bool,
}

/// Runs `roster fleet logs`.
pub fn run(request: &Request) -> Result<ExitCode> {
    let file = request.file;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let fleet = fleet::parse(&text, file)?;
    let placement = fleet::place(&fleet)?;
    let Some(placed) = placement.get(request.instance) else {
        bail!(
            "no instance named {:?} in {}\n  hint: {}",
            request.instance,
            file.display(),
            close_names(&placement, request.instance)
        );
    };
    let transport = Ssh::new(&fleet)?;
    let targets = transport.targets(&fleet, std::slice::from_ref(&placed.host))?;
    let Some(target) = targets.first() else {
        bail!("no host named {:?} in the fleet file", placed.host);
    };
    let lines = request.lines.to_string();
    let mut remote: Vec<String> = [
        transport.roster(),
        "--home",
        REMOTE_HOME,
        "logs",
        &placed.name,
        "-n",
        &lines,
    ]
    .map(str::to_owned)
    .to_vec();
    if request.timestamps {
        remote.push("-t".to_owned());
    }
    if !request.follow {
        let timeout = fleet.ssh.connect_timeout + COMMAND_BUDGET;
        let stdout = transport
            .run(target, &remote, timeout)
            .map_err(|reason| anyhow::anyhow!("{} ({}): {reason}", target.name, target.address))?;
        let mut out = std::io::stdout().lock();
        // A closed stdout (piped into `head`) is not an error.
        let _ = out.write_all(&stdout).and_then(|()| out.flush());
        return Ok(ExitCode::SUCCESS);
    }
    remote.push("-f".to_owned());
    match transport.stream(target, &remote)? {
        Streamed::Exited(0) => Ok(ExitCode::SUCCESS),
        Streamed::Exited(code) => bail!(
            "{} ({}): the host's roster logs ended with exit {code}",
            target.name,
            target.address
        ),
        Streamed::Lost(reason) => {
            eprintln!(
                "error: the connection to {} ({}) ended: {reason}",
                target.name, target.address
            );
            Ok(ExitCode::from(CONNECTION_LOST))
        }
    }
}

/// The placed names nearest `name` (same tenant or agent, or a few edits
/// away), else every name.
fn close_names(placement: &Placement, name: &str) -> String {
    let (tenant, agent) = name.split_once('.').unwrap_or((name, ""));
    let close: Vec<&str> = placement
        .instances
        .iter()
        .filter(|placed| {
            placed.tenant == tenant
                || (!agent.is_empty() && placed.agent == agent)
                || distance(&placed.name, name) <= 2
        })
        .map(|placed| placed.name.as_str())
        .take(10)
        .collect();
    if !close.is_empty() {
        return format!("close names: {}", close.join(", "));
    }
    let all: Vec<&str> = placement
        .instances
        .iter()
        .map(|placed| placed.name.as_str())
        .collect();
    if all.is_empty() {
        "the fleet places no instance".to_owned()
    } else if all.len() > 10 {
        format!("instances are TENANT.AGENT, e.g. {}", all[..10].join(", "))
    } else {
        format!("instances: {}", all.join(", "))
    }
}

/// Levenshtein distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("c01.support", "c01.support"), 0);
        assert_eq!(distance("c01.suport", "c01.support"), 1);
        assert_eq!(distance("c10.support", "c01.support"), 2);
        assert_eq!(distance("", "abc"), 3);
    }
}
