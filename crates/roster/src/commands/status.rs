//! `roster status`.

use std::process::ExitCode;

use anyhow::{bail, Result};

use roster_core::api::StatusReply;
use roster_store::Home;

use crate::render;

/// Fetches status, keeping only `names` (all when empty); unknown names are an error.
pub fn fetch(home: &Home, names: &[String]) -> Result<StatusReply> {
    let mut status: StatusReply = super::client(home).get("/v1/status")?;
    if !names.is_empty() && !names.iter().any(|name| name == "all") {
        let unknown: Vec<&str> = names
            .iter()
            .filter(|name| !status.agents.iter().any(|agent| agent.answers_to(name)))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            bail!("no agent named {}", unknown.join(", "));
        }
        // The summary of agents that run as root speaks of the named ones.
        let as_root = |agents: &[roster_core::api::AgentStatus]| {
            let names: Vec<&str> = agents
                .iter()
                .filter(|agent| agent.warning.is_some())
                .map(|agent| agent.name.as_str())
                .collect();
            roster_core::api::root_summary(&names)
        };
        let before = as_root(&status.agents);
        status
            .agents
            .retain(|agent| names.iter().any(|name| agent.answers_to(name)));
        status
            .warnings
            .retain(|warning| Some(warning) != before.as_ref());
        status.warnings.extend(as_root(&status.agents));
    }
    Ok(status)
}

/// Runs `roster status`.
pub fn run(home: &Home, names: &[String], json: bool) -> Result<ExitCode> {
    let status = fetch(home, names)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render::status_table(&status.agents));
        eprint!("{}", render::warnings(&status.warnings));
    }
    Ok(ExitCode::SUCCESS)
}
