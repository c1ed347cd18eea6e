//! `roster up` and `roster apply`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use roster_core::api::{AgentState, AgentStatus, ApplyReply, ApplyRequest};
use roster_core::ApplySummary;
use roster_store::Home;

use crate::client::{ApiError, Client};
use crate::render;

pub(crate) fn send_apply(
    home: &Home,
    file: &Path,
    start_stopped: bool,
    replace: bool,
) -> Result<ApplyReply> {
    let path = super::config_path(file)?;
    let request = ApplyRequest {
        path: path.display().to_string(),
        start_stopped,
        replace,
    };
    super::client(home)
        .post("/v1/apply", &request)
        .map_err(|error| {
            // The daemon validated too; its message is the located list
            // already, or says which agents the file would remove.
            match error.downcast_ref::<ApiError>() {
                Some(api) if api.status == 422 || api.status == 409 => anyhow!(
                    "{}\nnothing was applied; the running config stays",
                    api.message
                ),
                _ => error,
            }
        })
}

/// Whether an agent has settled after `up`: running, or given up on, or
/// waiting for its first deploy (`undeployed`, which is no failure).
pub fn is_settled(state: AgentState) -> bool {
    !matches!(
        state,
        AgentState::Starting | AgentState::Backoff | AgentState::Stopping
    )
}

/// Whether an agent that should run has failed to.
pub fn has_failed(agent: &AgentStatus) -> bool {
    agent.last_error.is_some()
        || matches!(agent.state, AgentState::Failed | AgentState::Backoff)
        || (agent.state == AgentState::Exited
            && agent.last_exit.is_some_and(|exit| !exit.is_success()))
}

/// Up to `shown` names, then how many more: a line stays a line with
/// thousands of agents.
pub fn few<S: AsRef<str>>(names: &[S], shown: usize) -> String {
    let listed: Vec<&str> = names.iter().take(shown).map(AsRef::as_ref).collect();
    if names.len() <= shown {
        return listed.join(", ");
    }
    format!("{}, and {} more", listed.join(", "), names.len() - shown)
}

/// Prints why agents could not start (`last_error`), one line each, to
/// stderr, and what agents waiting for their first deploy need, to stdout.
pub fn print_start_errors(agents: &[AgentStatus]) {
    for agent in agents {
        if let Some(error) = &agent.last_error {
            eprintln!("{}: could not start: {error}", agent.name);
        }
    }
    for agent in agents {
        if agent.state == AgentState::Undeployed {
            println!(
                "{} waits for its first deploy: roster deploy {} DIR",
                agent.name, agent.name
            );
        }
    }
}

fn print_summary(summary: &ApplySummary, every_line: bool) {
    // Thousands of names on one line help nobody: the first ones and a count.
    const SHOWN: usize = 20;
    let list = |names: &[String]| match names.len() {
        0 => "-".to_owned(),
        count if count <= SHOWN => names.join(", "),
        count => format!("{count} agents: {}", few(names, SHOWN)),
    };
    for (label, names) in [
        ("added:    ", &summary.added),
        ("changed:  ", &summary.changed),
        ("removed:  ", &summary.removed),
        ("unchanged:", &summary.unchanged),
    ] {
        if every_line || (!names.is_empty() && label != "unchanged:") {
            println!("{label} {}", list(names));
        }
    }
}

/// Waits until the `wanted` agents settle, prints their table and why any
/// failed; exit 1 if one failed or did not settle within `timeout`.
fn settle_and_report(client: &Client, wanted: &[String], timeout: Duration) -> Result<ExitCode> {
    let started = Instant::now();
    let mut next_note = Duration::from_secs(2);
    let (status, settled) = super::wait_for(client, timeout, |status| {
        let unsettled: Vec<&str> = status
            .agents
            .iter()
            .filter(|agent| {
                wanted.contains(&agent.name)
                    && !is_settled(agent.state)
                    && agent.last_error.is_none()
            })
            .map(|agent| agent.name.as_str())
            .collect();
        if !unsettled.is_empty() && started.elapsed() >= next_note {
            next_note += Duration::from_secs(5);
            eprintln!(
                "waiting for {} agent(s) to settle: {}",
                unsettled.len(),
                few(&unsettled, 8)
            );
        }
        unsettled.is_empty()
    })?;
    print!("{}", render::status_table(&status.agents));
    eprint!("{}", render::warnings(&status.warnings));
    let concerned: Vec<AgentStatus> = status
        .agents
        .into_iter()
        .filter(|agent| wanted.contains(&agent.name))
        .collect();
    print_start_errors(&concerned);
    let failed: Vec<&str> = concerned
        .iter()
        .filter(|agent| has_failed(agent))
        .map(|agent| agent.name.as_str())
        .collect();
    if !settled {
        eprintln!(
            "some agents had not settled after {}; see `roster events`",
            roster_core::units::format_duration(timeout)
        );
        return Ok(ExitCode::from(1));
    }
    if !failed.is_empty() {
        eprintln!(
            "failed: {}; see `roster events {}` and `roster logs {}`",
            failed.join(", "),
            failed.join(" "),
            failed.join(" ")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `roster up`.
pub fn run(home: &Home, file: &Path, timeout: Duration, replace: bool) -> Result<ExitCode> {
    let config = super::check::load(file)?;
    for warning in super::check::reach_warnings(&config) {
        eprintln!("{}: warning: {warning}", file.display());
    }
    start_and_apply(home, file, &config, timeout, replace)
}

/// What `up` does with a config it has read and checked (`config` is
/// `file`'s): starts the daemon if none runs, applies the file, waits for
/// its agents, prints their status; exit 1 if any failed.
pub fn start_and_apply(
    home: &Home,
    file: &Path,
    config: &roster_core::Config,
    timeout: Duration,
    replace: bool,
) -> Result<ExitCode> {
    super::daemon::ensure_running(home)?;
    let reply = send_apply(home, file, true, replace)?;
    print_summary(&reply.summary, false);
    let wanted: Vec<String> = config.agents.keys().map(|name| name.to_string()).collect();
    settle_and_report(&super::client(home), &wanted, timeout)
}

/// Runs `roster apply`: like `up` without starting the daemon or stopped
/// agents; waits for the agents it added or changed unless `no_wait`.
pub fn apply(
    home: &Home,
    file: &Path,
    replace: bool,
    no_wait: bool,
    timeout: Duration,
) -> Result<ExitCode> {
    super::check::load(file)?;
    let reply = send_apply(home, file, false, replace)?;
    print_summary(&reply.summary, true);
    if no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let summary = reply.summary;
    let wanted: Vec<String> = summary
        .added
        .iter()
        .chain(&summary.changed)
        .cloned()
        .collect();
    if wanted.is_empty() && summary.removed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let client = super::client(home);
    // Removed agents are gone from status once fully stopped.
    let removed = summary.removed.clone();
    let (_, gone) = super::wait_for(&client, timeout, |status| {
        !status
            .agents
            .iter()
            .any(|agent| removed.contains(&agent.name))
    })?;
    if !gone {
        eprintln!("some removed agents were still stopping; see `roster events`");
    }
    if wanted.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    settle_and_report(&client, &wanted, timeout)
}
