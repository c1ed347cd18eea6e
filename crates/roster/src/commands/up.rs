//! `roster up` and `roster apply`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Result};

use roster_core::api::{AgentState, ApplyReply, ApplyRequest};
use roster_daemon::Home;

use crate::client::ApiError;
use crate::render;

fn send_apply(home: &Home, file: &Path, start_stopped: bool) -> Result<ApplyReply> {
    let path = super::config_path(file)?;
    let request = ApplyRequest {
        path: path.display().to_string(),
        start_stopped,
    };
    super::client(home)
        .post("/v1/apply", &request)
        .map_err(|error| {
            // The daemon validated too; its message is the located list already.
            match error.downcast_ref::<ApiError>() {
                Some(api) if api.status == 422 => anyhow!(
                    "{}\nnothing was applied; the running config stays",
                    api.message
                ),
                _ => error,
            }
        })
}

/// Whether an agent has settled after `up`: running, or given up on.
pub fn is_settled(state: AgentState) -> bool {
    !matches!(
        state,
        AgentState::Starting | AgentState::Backoff | AgentState::Stopping
    )
}

/// Runs `roster up`.
pub fn run(home: &Home, file: &Path, timeout: Duration) -> Result<ExitCode> {
    let config = super::check::load(file)?;
    super::daemon::ensure_running(home)?;
    send_apply(home, file, true)?;
    let client = super::client(home);
    let wanted: Vec<String> = config.agents.keys().map(|name| name.to_string()).collect();
    let started = std::time::Instant::now();
    let mut next_note = Duration::from_secs(2);
    let (status, settled) = super::wait_for(&client, timeout, |status| {
        let unsettled: Vec<&str> = status
            .agents
            .iter()
            .filter(|agent| wanted.contains(&agent.name) && !is_settled(agent.state))
            .map(|agent| agent.name.as_str())
            .collect();
        if !unsettled.is_empty() && started.elapsed() >= next_note {
            next_note += Duration::from_secs(5);
            eprintln!(
                "waiting for {} agent(s) to settle: {}",
                unsettled.len(),
                unsettled.join(", ")
            );
        }
        unsettled.is_empty()
    })?;
    print!("{}", render::status_table(&status.agents));
    eprint!("{}", render::warnings(&status.warnings));
    let failed: Vec<&str> = status
        .agents
        .iter()
        .filter(|agent| {
            matches!(agent.state, AgentState::Failed | AgentState::Backoff)
                || (agent.state == AgentState::Exited
                    && agent.last_exit.is_some_and(|exit| !exit.is_success()))
        })
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
            "failed: {}; see `roster logs {}` and `roster events`",
            failed.join(", "),
            failed.join(" ")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `roster apply`.
pub fn apply(home: &Home, file: &Path) -> Result<ExitCode> {
    super::check::load(file)?;
    let reply = send_apply(home, file, false)?;
    let summary = reply.summary;
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    println!("added:     {}", list(&summary.added));
    println!("changed:   {}", list(&summary.changed));
    println!("removed:   {}", list(&summary.removed));
    println!("unchanged: {}", list(&summary.unchanged));
    Ok(ExitCode::SUCCESS)
}
