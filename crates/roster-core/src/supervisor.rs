//! The supervisor: every agent's state machine, as a sans-I/O core.
//!
//! The runtime feeds facts in (`handle_*`), performs what comes out of
//! [`Supervisor::poll_action`], journals what comes out of
//! [`Supervisor::poll_event`], and sleeps until the next input or
//! [`Supervisor::poll_timeout`]. Call order after any input:
//! drain `poll_action` (performing each action before taking the next, and
//! answering every [`Action::Spawn`] with [`Supervisor::handle_spawned`]),
//! then drain `poll_event`, then ask `poll_timeout`.
//!
//! Nothing here reads the clock: `now` is always an argument.
//!
//! This module holds the [`Supervisor`], what it asks of the runtime and
//! what it answers about its agents; its inputs are split by job. `agent`
//! is one agent's state and `events` what is journaled; `transitions` the
//! start, stop and spawn moves the inputs share; `lifecycle` (operator
//! commands, spawned, exited, not started), `apply` (a config's
//! difference), `cutover` (switch, retire, hand back), `health` (probes
//! and automatic restarts), `timers` (deadlines) and `backoff` (the
//! restart policy) are the inputs; `view` is what status shows. The
//! inputs call `transitions`, never the reverse: `lifecycle` also calls
//! `cutover` and `backoff`, `timers` calls `health`, and none is called
//! back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use crate::api::{ApplySummary, ExitStatus};
use crate::config::AgentSpec;
use crate::health::Check;
use crate::name::AgentName;
use crate::signal::Signal;

mod agent;
mod apply;
mod backoff;
mod cutover;
mod events;
mod health;
mod lifecycle;
mod timers;
mod transitions;
mod view;

use agent::{Agent, Phase};
pub use backoff::backoff_delay;
pub use events::{Event, EventKind};
pub use view::AgentView;
// The tests (`use super::*`) read states and configs by these names.
#[cfg(test)]
use crate::api::{AgentState, Health};
#[cfg(test)]
use crate::config::Config;

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the agent with its current spec ([`Supervisor::spec`]); answer
    /// with [`Supervisor::handle_spawned`].
    Spawn {
        /// Which agent.
        agent: AgentName,
    },
    /// Send `signal` to the process group led by `pid`.
    Signal {
        /// Which agent.
        agent: AgentName,
        /// The group leader (agents run in their own session, so pgid == pid).
        pid: u32,
        /// What to send.
        signal: Signal,
    },
    /// The agent's main process is gone: kill whatever is left of its
    /// process group, and processes that escaped it (double-forked strays
    /// reparented to the daemon), so no second copy runs beside the next one.
    Cleanup {
        /// Which agent.
        agent: AgentName,
        /// The dead main process, leader of the group to clean up.
        pid: u32,
    },
    /// The agent is gone from the config and fully stopped: drop its
    /// resources (log writer). Its log files stay.
    Forget {
        /// Which agent.
        agent: AgentName,
    },
    /// Run a health probe off the loop; answer with
    /// [`Supervisor::handle_probe`] and this `id`. The supervisor itself
    /// declares it failed at `timeout` (and asks for [`Action::CancelProbe`]).
    Probe {
        /// Which agent.
        agent: AgentName,
        /// Names this probe; results for another id are stale.
        id: u64,
        /// What to probe.
        check: Check,
        /// How long it may take.
        timeout: Duration,
    },
    /// Stop a probe that is no longer wanted (timed out, or its agent
    /// stopped): kill its process, drop its task.
    CancelProbe {
        /// Which agent.
        agent: AgentName,
        /// The probe.
        id: u64,
    },
}

/// What [`Supervisor::handle_switch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// The new release is starting beside this live process.
    Beside {
        /// The live process, serving until the new one is ready.
        pid: u32,
    },
    /// The agent restarts (or starts) with the new release.
    Restarting,
    /// The agent is not running; the release runs when it is started.
    NotRunning,
}

/// Restarts that roster decides on by itself (a failed health check) per
/// agent within [`AUTO_RESTART_WINDOW`]: a flapping check must not cause a
/// restart storm. More are suppressed and journaled.
pub const AUTO_RESTARTS_MAX: usize = 3;
/// See [`AUTO_RESTARTS_MAX`].
pub const AUTO_RESTART_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Probe times are rounded up to this grid, so that a thousand agents'
/// probes come due in a few dozen batches rather than a thousand separate
/// wake-ups of the loop.
pub const PROBE_GRID: Duration = Duration::from_millis(100);

/// All agents of one roster home.
#[derive(Debug, Default)]
pub struct Supervisor {
    agents: BTreeMap<AgentName, Agent>,
    /// Main pid to agent, for every agent whose phase holds a pid.
    pids: HashMap<u32, AgentName>,
    next_probe_id: u64,
    /// The first `now` seen: probe times are aligned to a grid from it.
    epoch: Option<Instant>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Supervisor {
    /// An empty supervisor: no agents.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next fact to journal, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Supervisor::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.agents.values().filter_map(Agent::next_deadline).min()
    }

    /// The current spec of an agent.
    pub fn spec(&self, agent: &AgentName) -> Option<&AgentSpec> {
        self.agents.get(agent).map(|entry| &entry.spec)
    }

    /// The copies `instances` made of the agent written as `of`, in number
    /// order; empty when there are none.
    pub fn copies_of(&self, of: &str) -> Vec<AgentName> {
        let mut copies: Vec<(u32, AgentName)> = self
            .agents
            .iter()
            .filter_map(|(name, agent)| {
                let copy = agent.spec.instance.as_ref()?;
                (copy.of.as_str() == of).then(|| (copy.number, name.clone()))
            })
            .collect();
        copies.sort();
        copies.into_iter().map(|(_, name)| name).collect()
    }

    /// Whether the name is a known agent.
    pub fn contains(&self, agent: &AgentName) -> bool {
        self.agents.contains_key(agent)
    }

    /// How many agents there are.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether there are no agents.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Whether a stopping agent's SIGKILL deadline has come.
    pub fn kill_due(&self, now: Instant) -> bool {
        self.agents.values().any(|agent| {
            matches!(agent.phase, Phase::Stopping { kill_at: Some(at), .. } if at <= now)
                || agent.outgoing_kill_at().is_some_and(|at| at <= now)
        })
    }

    /// The release the agent's main process runs, or its next spawn will.
    pub fn release(&self, agent: &AgentName) -> Option<&str> {
        self.agents.get(agent)?.release.as_deref()
    }

    /// Records which release a spawn from `current` ran (the runtime read
    /// the link because no release was set).
    pub fn note_release(&mut self, agent: &AgentName, release: &str) {
        if let Some(agent) = self.agents.get_mut(agent) {
            agent.release = Some(release.to_owned());
        }
    }

    /// A process of an earlier release that still runs (being replaced,
    /// or draining), if any.
    pub fn outgoing_pid(&self, agent: &AgentName) -> Option<u32> {
        self.agents.get(agent)?.outgoing.first().map(|out| out.pid)
    }

    /// Whether actions or events wait to be polled.
    pub fn has_pending(&self) -> bool {
        !self.actions.is_empty() || !self.events.is_empty()
    }

    /// The names of all agents, sorted.
    pub fn names(&self) -> Vec<AgentName> {
        self.agents.keys().cloned().collect()
    }

    /// The pids of every agent's main process.
    /// During a cutover an agent has two: the new one first, then the one
    /// being replaced.
    pub fn main_pids(&self) -> Vec<(AgentName, u32)> {
        self.agents
            .iter()
            .flat_map(|(name, agent)| {
                let outgoing = agent.outgoing.iter().map(|out| out.pid);
                agent
                    .pid()
                    .into_iter()
                    .chain(outgoing)
                    .map(|pid| (name.clone(), pid))
            })
            .collect()
    }

    /// Whether the agent waits for the answer to an [`Action::Spawn`]: a
    /// runtime that spawns in batches asks before a spawn it put off (the
    /// agent may have been stopped or removed since).
    pub fn is_spawning(&self, name: &AgentName) -> bool {
        self.agents
            .get(name)
            .is_some_and(|agent| agent.phase == Phase::Spawning)
    }

    /// True when no agent has a process and none is about to get one.
    pub fn is_quiet(&self) -> bool {
        self.agents.values().all(|agent| {
            agent.outgoing.is_empty()
                && matches!(
                    agent.phase,
                    Phase::Stopped | Phase::Exited | Phase::Failed { .. } | Phase::Undeployed
                )
        })
    }
}

#[cfg(test)]
mod driven_tests;
#[cfg(test)]
mod files_changed_tests;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;
