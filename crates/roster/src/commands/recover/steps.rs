//! Each step of a recovery plan, run and verified. Nothing here signals a
//! process: agents are started (and restarted, `restart.rs`) through the
//! daemon's API, a daemon is started as `roster up` starts one, and disk
//! is freed (`disk.rs`) by deleting rotated logs and old releases roster
//! wrote.

use std::path::Path;
use std::time::Duration;

use roster_core::api::{AgentState, AgentStatus, AgentsRequest, StatusReply};
use roster_core::recover::{Action, Step};
use roster_store::Home;

use super::Outcome;

/// How long a started agent (or a started daemon's agents) may take to
/// come up before the step counts as failed.
const SETTLE: Duration = Duration::from_secs(30);

/// Runs `step`, and says how it went.
pub fn run(home: &Home, step: &Step) -> Outcome {
    let (result, detail) = match &step.action {
        Action::StartDaemon { config } => start_daemon(home, Path::new(config)),
        Action::StartAgent { agent, verify_ms } => {
            start_agent(home, agent, Duration::from_millis(*verify_ms))
        }
        Action::FreeDisk {
            below_percent,
            agents,
            releases,
            skipped,
        } => super::disk::free_disk(home, *below_percent as f64, agents, releases, skipped),
        Action::RestartDrained {
            agent,
            pid,
            memory_bytes,
            verify_ms,
        } => super::restart::restart_drained(
            home,
            agent,
            *pid,
            *memory_bytes,
            Duration::from_millis(*verify_ms),
        ),
    };
    Outcome {
        mode: step.mode,
        agent: step.agent.clone(),
        step: step.description.clone(),
        result,
        detail,
    }
}

fn start_daemon(home: &Home, config: &Path) -> (&'static str, String) {
    if let Err(error) = crate::commands::daemon::ensure_running(home) {
        return ("failed", format!("{error:#}"));
    }
    if let Err(error) = crate::commands::up::send_apply(home, config, true, false) {
        return (
            "failed",
            format!(
                "the daemon runs, but {} was not applied: {error:#}",
                config.display()
            ),
        );
    }
    let client = crate::commands::client(home);
    let settled = crate::commands::wait_for(&client, SETTLE, |status| {
        status
            .agents
            .iter()
            .all(|agent| crate::commands::up::is_settled(agent.state) || agent.last_error.is_some())
    });
    match settled {
        Ok((status, _)) => {
            let running = status
                .agents
                .iter()
                .filter(|agent| agent.state == AgentState::Running)
                .count();
            (
                "done",
                format!(
                    "the daemon runs {}; {running} of {} agents running",
                    config.display(),
                    status.agents.len()
                ),
            )
        }
        Err(error) => ("failed", format!("{error:#}")),
    }
}

fn agent<'a>(status: &'a StatusReply, name: &str) -> Option<&'a AgentStatus> {
    status.agents.iter().find(|agent| agent.name == name)
}

/// Why `name` does not stay up: its last error, else its log's last line.
fn cause(home: &Home, status: &StatusReply, name: &str) -> String {
    if let Some(error) = agent(status, name).and_then(|agent| agent.last_error.clone()) {
        return error;
    }
    match roster_store::logs::files::read_lines(&home.agent_log(name), 1) {
        Ok(lines) => match lines.last() {
            Some(line) => format!("its log ends with: {}", line.text),
            None => "its log is empty".into(),
        },
        Err(error) => format!("its log could not be read: {error}"),
    }
}

fn start_agent(home: &Home, name: &str, verify: Duration) -> (&'static str, String) {
    let client = crate::commands::client(home);
    let restarts_before = match client.get::<StatusReply>("/v1/status") {
        Ok(status) => agent(&status, name).map(|agent| agent.restarts),
        Err(error) => return ("failed", format!("{error:#}")),
    };
    if let Err(error) = client.post::<_, ()>(
        "/v1/start",
        &AgentsRequest {
            names: vec![name.to_owned()],
            drain: false,
        },
    ) {
        return ("failed", format!("the daemon refused the start: {error:#}"));
    }
    // Up: running. Down again: once it was seen starting (or restarted
    // since), any state but starting or running.
    let mut seen_starting = false;
    let came_up = crate::commands::wait_for(&client, SETTLE, |status| {
        let Some(agent) = agent(status, name) else {
            return true;
        };
        match agent.state {
            AgentState::Running => true,
            AgentState::Starting => {
                seen_starting = true;
                false
            }
            _ => seen_starting || Some(agent.restarts) != restarts_before,
        }
    });
    let status = match came_up {
        Ok((status, _)) => status,
        Err(error) => return ("failed", format!("{error:#}")),
    };
    let Some(now) = agent(&status, name) else {
        return (
            "failed",
            format!("{name} is no longer in the daemon's status"),
        );
    };
    if now.state != AgentState::Running {
        return (
            "left",
            format!(
                "{name} is {} again: cause remains: {}",
                now.state.as_str(),
                cause(home, &status, name)
            ),
        );
    }
    let pid = now.pid;
    let died = crate::commands::wait_for(&client, verify, |status| {
        agent(status, name)
            .is_none_or(|agent| agent.state != AgentState::Running || agent.pid != pid)
    });
    match died {
        Ok((status, true)) => (
            "left",
            format!(
                "{name} died again within {} ms: cause remains: {}",
                verify.as_millis(),
                cause(home, &status, name)
            ),
        ),
        Ok((_, false)) => (
            "done",
            format!(
                "{name} running, stayed up {} ms (pid {})",
                verify.as_millis(),
                pid.map(|pid| pid.to_string()).unwrap_or_else(|| "?".into())
            ),
        ),
        Err(error) => ("failed", format!("{error:#}")),
    }
}
