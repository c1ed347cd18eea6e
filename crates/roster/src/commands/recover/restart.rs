//! The memory step: a drained restart of one agent through the daemon
//! (`POST /v1/restart` with `drain`: its drain signal, then SIGKILL after
//! its drain_timeout, then a start), verified by the agent running again
//! with a new pid within a bound; its memory before and after reported.
//! recover signals no process itself: the daemon restarts the process it
//! started, found by the pid it tracks.

use std::time::Duration;

use roster_core::api::{AgentState, AgentStatus, AgentsRequest, StatusReply};
use roster_core::diagnose::human_bytes;
use roster_store::Home;

fn agent<'a>(status: &'a StatusReply, name: &str) -> Option<&'a AgentStatus> {
    status.agents.iter().find(|agent| agent.name == name)
}

/// Runs the drained restart of `name` (pid `pid`, holding `bytes`), and
/// says how it went.
pub fn restart_drained(
    home: &Home,
    name: &str,
    pid: u32,
    bytes: u64,
    bound: Duration,
) -> (&'static str, String) {
    let client = crate::commands::client(home);
    match client.get::<StatusReply>("/v1/status") {
        Ok(status) => match agent(&status, name) {
            Some(now) if now.pid == Some(pid) => {}
            Some(now) => {
                return (
                    "left",
                    format!(
                        "{name} is no longer pid {pid} ({}, pid {}): not restarted again",
                        now.state.as_str(),
                        now.pid
                            .map(|pid| pid.to_string())
                            .unwrap_or_else(|| "none".into())
                    ),
                )
            }
            None => {
                return (
                    "failed",
                    format!("{name} is no longer in the daemon's status"),
                )
            }
        },
        Err(error) => return ("failed", format!("{error:#}")),
    }
    if let Err(error) = client.post::<_, ()>(
        "/v1/restart",
        &AgentsRequest {
            names: vec![name.to_owned()],
            drain: true,
        },
    ) {
        return (
            "failed",
            format!("the daemon refused the restart: {error:#}"),
        );
    }
    let back = crate::commands::wait_for(&client, bound, |status| {
        agent(status, name).is_none_or(|now| {
            now.state == AgentState::Running && now.pid.is_some_and(|new| new != pid)
        })
    });
    let status = match back {
        Ok((status, true)) => status,
        Ok((status, false)) => {
            let state = agent(&status, name)
                .map(|now| now.state.as_str())
                .unwrap_or("gone");
            return (
                "failed",
                format!(
                    "{name} was not running again with a new pid within {} ms: it is {state}",
                    bound.as_millis()
                ),
            );
        }
        Err(error) => return ("failed", format!("{error:#}")),
    };
    let Some(now) = agent(&status, name) else {
        return (
            "failed",
            format!("{name} is no longer in the daemon's status"),
        );
    };
    let new = now.pid.map(|pid| pid.to_string()).unwrap_or_default();
    // Its memory is sampled: give the daemon a moment to read the new
    // process's, else say it is not known yet.
    let after = crate::commands::wait_for(&client, Duration::from_secs(3), |status| {
        agent(status, name).is_some_and(|now| now.memory_bytes.is_some())
    })
    .ok()
    .and_then(|(status, _)| agent(&status, name).and_then(|now| now.memory_bytes))
    .map(human_bytes)
    .unwrap_or_else(|| "not sampled yet".into());
    (
        "done",
        format!(
            "{name} restarted drained: pid {pid} -> {new}; memory before {}, after {after}",
            human_bytes(bytes)
        ),
    )
}
