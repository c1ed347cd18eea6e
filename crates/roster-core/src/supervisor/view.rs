//! The agent as status shows it: [`AgentView`], read from the
//! supervisor's state at `now`.

use std::time::{Duration, Instant};

use super::agent::{Agent, Phase};
use super::Supervisor;
use crate::api::{AgentState, ExitStatus, Health};
use crate::name::AgentName;

/// One agent as status shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    /// The name.
    pub name: AgentName,
    /// The state.
    pub state: AgentState,
    /// The main process, while one runs.
    pub pid: Option<u32>,
    /// Start attempts after the first (failed ones count), except those of
    /// cutovers (deploys, rollbacks).
    pub restarts: u64,
    /// Since the current process started.
    pub uptime: Option<Duration>,
    /// How the last process ended.
    pub last_exit: Option<ExitStatus>,
    /// Why the latest start attempt failed, until one succeeds.
    pub last_error: Option<String>,
    /// The health check's verdict on the current process.
    pub health: Health,
    /// The release the main process runs (agents shipped as releases).
    pub release: Option<String>,
    /// During a cutover, the process being replaced.
    pub outgoing_pid: Option<u32>,
    /// Whether the agent has a health check.
    pub has_check: bool,
    /// Whose agent it is (`tenant`), when the config says.
    pub tenant: Option<String>,
    /// Which copy it is, for an agent with `instances`.
    pub instance: Option<crate::config::Instance>,
}

impl Supervisor {
    /// Status of every agent (or of the named ones), sorted by name.
    pub fn views(&self, now: Instant) -> Vec<AgentView> {
        self.agents
            .iter()
            .map(|(name, agent)| Self::view_of(now, name, agent))
            .collect()
    }

    /// Status of one agent (a running deployment is fed it after each event).
    pub fn view(&self, now: Instant, name: &AgentName) -> Option<AgentView> {
        self.agents
            .get_key_value(name)
            .map(|(name, agent)| Self::view_of(now, name, agent))
    }

    fn view_of(now: Instant, name: &AgentName, agent: &Agent) -> AgentView {
        let (state, uptime) = match agent.phase {
            Phase::Stopped => (AgentState::Stopped, None),
            Phase::Spawning => (AgentState::Starting, None),
            Phase::Starting { since, .. } => (
                AgentState::Starting,
                Some(now.saturating_duration_since(since)),
            ),
            Phase::Running { since, .. } => (
                AgentState::Running,
                Some(now.saturating_duration_since(since)),
            ),
            Phase::Stopping { since, .. } => (
                AgentState::Stopping,
                Some(now.saturating_duration_since(since)),
            ),
            Phase::Backoff { .. } => (AgentState::Backoff, None),
            Phase::Failed { .. } => (AgentState::Failed, None),
            Phase::Exited => (AgentState::Exited, None),
            Phase::Undeployed => (AgentState::Undeployed, None),
        };
        AgentView {
            name: name.clone(),
            state,
            pid: agent.pid(),
            restarts: agent.restarts,
            uptime,
            last_exit: agent.last_exit,
            last_error: agent.last_error.clone(),
            health: match (agent.pid(), agent.probe.verdict) {
                (Some(_), Some(true)) => Health::Healthy,
                (Some(_), Some(false)) => Health::Unhealthy,
                _ => Health::Unknown,
            },
            release: agent.release.clone(),
            outgoing_pid: agent.serving().map(|out| out.pid),
            has_check: agent.spec.health.is_some(),
            tenant: agent.spec.tenant.clone(),
            instance: agent.spec.instance.clone(),
        }
    }
}
