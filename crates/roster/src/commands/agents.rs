//! `roster start`, `stop` and `restart`: ask, then wait for the outcome.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use roster_core::api::{AgentState, AgentsRequest, StatusReply};
use roster_store::Home;

use crate::render;

/// Which verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// start
    Start,
    /// stop
    Stop,
    /// restart
    Restart,
}

/// Runs one of the verbs.
pub fn run(home: &Home, verb: Verb, names: &[String]) -> Result<ExitCode> {
    let client = super::client(home);
    let before: StatusReply = client.get("/v1/status")?;
    let path = match verb {
        Verb::Start => "/v1/start",
        Verb::Stop => "/v1/stop",
        Verb::Restart => "/v1/restart",
    };
    client.post::<_, ()>(
        path,
        &AgentsRequest {
            names: names.to_vec(),
            drain: false,
        },
    )?;
    let all = names.iter().any(|name| name == "all");
    let targets: Vec<String> = before
        .agents
        .iter()
        .filter(|agent| {
            // An agent with `instances` is named for all of its copies.
            all || names.contains(&agent.name)
                || agent
                    .instance_of
                    .as_ref()
                    .is_some_and(|of| names.contains(of))
        })
        .map(|agent| agent.name.clone())
        .collect();
    let old_pids: HashMap<String, Option<u32>> = before
        .agents
        .iter()
        .map(|agent| (agent.name.clone(), agent.pid))
        .collect();
    // Stops may take each agent's stop_timeout; the daemon escalates to
    // SIGKILL by itself, so waiting long is safe.
    let (status, settled) = super::wait_for(&client, Duration::from_secs(600), |status| {
        status
            .agents
            .iter()
            .filter(|agent| targets.contains(&agent.name))
            .all(|agent| match verb {
                Verb::Stop => !matches!(
                    agent.state,
                    AgentState::Stopping | AgentState::Starting | AgentState::Running
                ),
                Verb::Start => super::up::is_settled(agent.state) || agent.last_error.is_some(),
                Verb::Restart => {
                    (super::up::is_settled(agent.state) || agent.last_error.is_some())
                        && (agent.pid.is_none()
                            || agent.pid != old_pids.get(&agent.name).copied().flatten())
                }
            })
    })?;
    let shown: Vec<_> = status
        .agents
        .into_iter()
        .filter(|agent| targets.contains(&agent.name))
        .collect();
    print!("{}", render::status_table(&shown));
    if verb != Verb::Stop {
        super::up::print_start_errors(&shown);
    }
    let failed = shown.iter().any(|agent| {
        agent.state == AgentState::Failed || (verb != Verb::Stop && agent.last_error.is_some())
    });
    Ok(if settled && !failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
