//! `roster start`, `stop` and `restart`: ask, then wait for the outcome.
//! `restart` of an agent with copies (`instances`) rolls: one copy at a
//! time, the next once the last is back (`api::comeback`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use roster_core::api::{
    comeback, AgentState, AgentStatus, AgentsRequest, Comeback, DescribeReply, StatusReply,
};
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
        .filter(|agent| all || names.iter().any(|name| agent.answers_to(name)))
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

/// How long one copy of a rolling restart may take to come back (its
/// stop_timeout, a start and a first health check) before the roll stops.
const COMEBACK_PATIENCE: Duration = Duration::from_secs(300);

/// Runs `roster restart`: agents named alone restart together; an agent
/// with copies, named by its name, rolls through them one at a time
/// unless `at_once`.
pub fn restart(home: &Home, names: &[String], at_once: bool) -> Result<ExitCode> {
    let client = super::client(home);
    let before: StatusReply = client.get("/v1/status")?;
    let is_group = |name: &String| {
        name != "all"
            && !before.agents.iter().any(|agent| &agent.name == name)
            && before.agents.iter().any(|agent| agent.is_copy_of(name))
    };
    let (groups, alone): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|name| is_group(name));
    if at_once || groups.is_empty() {
        return run(home, Verb::Restart, names);
    }
    let mut code = ExitCode::SUCCESS;
    if !alone.is_empty() && run(home, Verb::Restart, &alone)? != ExitCode::SUCCESS {
        code = ExitCode::from(1);
    }
    for group in &groups {
        let mut copies: Vec<&AgentStatus> = before
            .agents
            .iter()
            .filter(|agent| agent.is_copy_of(group))
            .collect();
        copies.sort_by_key(|copy| copy.instance);
        if !roll(&client, group, &copies)? {
            code = ExitCode::from(1);
        }
    }
    Ok(code)
}

/// Restarts `copies` one after another; `false` when one did not come
/// back (the rest keep their processes).
fn roll(client: &crate::client::Client, group: &str, copies: &[&AgentStatus]) -> Result<bool> {
    let total = copies.len();
    for (index, copy) in copies.iter().enumerate() {
        let name = copy.name.clone();
        let described: DescribeReply = client.get(&format!("/v1/describe?agent={name}"))?;
        let has_check = described.checks.health.is_some();
        client.post::<_, ()>(
            "/v1/restart",
            &AgentsRequest {
                names: vec![name.clone()],
                drain: false,
            },
        )?;
        let mut outcome = Comeback::Waiting;
        let (status, _) = super::wait_for(client, COMEBACK_PATIENCE, |status| {
            let now = status.agents.iter().find(|agent| agent.name == name);
            outcome = comeback(now, copy.pid, has_check);
            outcome != Comeback::Waiting
        })?;
        let now = status.agents.iter().find(|agent| agent.name == name);
        if outcome == Comeback::Back {
            let pid = |pid: Option<u32>| pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string());
            println!(
                "{name} is back ({} → {}{}), {}/{total} of {group}",
                pid(copy.pid),
                pid(now.and_then(|agent| agent.pid)),
                if has_check { ", healthy" } else { "" },
                index + 1
            );
            continue;
        }
        let why = match (outcome, now) {
            (Comeback::Waiting, _) => format!(
                "not back after {}",
                roster_core::units::format_duration(COMEBACK_PATIENCE)
            ),
            (_, Some(agent)) => match &agent.last_error {
                Some(error) => format!("could not start: {error}"),
                None => format!(
                    "{}, health {}",
                    agent.state.as_str(),
                    render::health(agent.health)
                ),
            },
            (_, None) => "gone from the daemon".to_owned(),
        };
        let untouched: Vec<&str> = copies[index + 1..]
            .iter()
            .map(|copy| copy.name.as_str())
            .collect();
        eprintln!(
            "{name} did not come back: {why}; the rolling restart of {group} stops here{}\n  hint: `roster events {name}` says why; `roster restart {group} --all-at-once` restarts every copy together",
            if untouched.is_empty() {
                String::new()
            } else {
                format!(" ({} keep their processes)", untouched.join(", "))
            }
        );
        return Ok(false);
    }
    Ok(true)
}
