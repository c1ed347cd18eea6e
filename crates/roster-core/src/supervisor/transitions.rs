//! The moves every input shares: start, restart and stop an agent (a stop
//! also drains a cutover's outgoing process), ask for a spawn, forget a
//! removed agent, cancel a probe, and queue the events to journal.
//! The inputs (`handle_*`) live in the sibling modules and call these.

use std::time::{Duration, Instant};

use super::agent::{AfterStop, Phase};
use super::events::{Event, EventKind};
use super::{Action, Supervisor};
use crate::name::AgentName;
use crate::signal::Signal;

impl Supervisor {
    /// Cancels the probe in flight, if any: its process is gone.
    pub(super) fn cancel_probe(&mut self, name: &AgentName) {
        if let Some(agent) = self.agents.get_mut(name) {
            if let Some((id, _)) = agent.probe.in_flight.take() {
                self.actions.push_back(Action::CancelProbe {
                    agent: name.clone(),
                    id,
                });
            }
            agent.probe.next_at = None;
        }
    }

    pub(super) fn push_event(&mut self, agent: &AgentName, kind: EventKind) {
        self.events.push_back(Event {
            agent: agent.clone(),
            kind,
        });
    }

    /// Asks for a spawn, unless the agent is shipped as releases and has
    /// none: then it waits, `undeployed`, for a cutover (no attempt, no
    /// restart counted).
    pub(super) fn spawn(&mut self, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        if agent.spec.deploy.is_some() && agent.release.is_none() {
            let newly = agent.phase != Phase::Undeployed;
            agent.phase = Phase::Undeployed;
            agent.cutover_spawn = false;
            if newly {
                self.push_event(name, EventKind::Undeployed);
            }
            return;
        }
        agent.phase = Phase::Spawning;
        self.actions.push_back(Action::Spawn {
            agent: name.clone(),
        });
    }

    pub(super) fn forget(&mut self, name: &AgentName) {
        self.agents.remove(name);
        self.push_event(name, EventKind::Removed);
        self.actions.push_back(Action::Forget {
            agent: name.clone(),
        });
    }

    /// Asks a serving outgoing process to finish with `signal`.
    pub(super) fn retire(
        &mut self,
        now: Instant,
        name: &AgentName,
        signal: Signal,
        timeout: Duration,
    ) {
        let Some(outgoing) = self
            .agents
            .get_mut(name)
            .and_then(|agent| agent.outgoing.iter_mut().find(|out| out.draining.is_none()))
        else {
            return;
        };
        let kill_at = (signal != Signal::Kill).then(|| now + timeout);
        outgoing.draining = Some(kill_at);
        let pid = outgoing.pid;
        self.actions.push_back(Action::Signal {
            agent: name.clone(),
            pid,
            signal,
        });
        self.push_event(name, EventKind::Retiring { pid, signal });
    }

    pub(super) fn start_agent(&mut self, _now: Instant, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        match agent.phase {
            Phase::Stopped
            | Phase::Exited
            | Phase::Failed { .. }
            | Phase::Backoff { .. }
            | Phase::Undeployed => {
                agent.quick_streak = 0;
                agent.quick_deaths.clear();
                self.spawn(name);
            }
            Phase::Stopping {
                pid,
                since,
                kill_at,
                then,
            } => {
                if then == AfterStop::Stay {
                    agent.phase = Phase::Stopping {
                        pid,
                        since,
                        kill_at,
                        then: AfterStop::Restart,
                    };
                }
            }
            Phase::Spawning | Phase::Starting { .. } | Phase::Running { .. } => {}
        }
    }

    pub(super) fn restart_agent(&mut self, now: Instant, name: &AgentName) {
        let phase = self.agents.get(name).map(|agent| agent.phase);
        match phase {
            Some(Phase::Starting { .. } | Phase::Running { .. }) => {
                self.stop_agent(now, name, AfterStop::Restart)
            }
            Some(_) => self.start_agent(now, name),
            None => {}
        }
    }

    pub(super) fn stop_agent(&mut self, now: Instant, name: &AgentName, then: AfterStop) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let (signal, timeout) = (agent.spec.stop.signal, agent.spec.stop.timeout);
        self.stop_agent_with(now, name, then, signal, timeout);
    }

    /// Stops with `signal`, then SIGKILL after `timeout`: the stop signal
    /// and stop_timeout for operators, the drain signal and drain_timeout
    /// for restarts roster decided on.
    pub(super) fn stop_agent_with(
        &mut self,
        now: Instant,
        name: &AgentName,
        then: AfterStop,
        signal: Signal,
        timeout: Duration,
    ) {
        self.cancel_probe(name);
        if then != AfterStop::Restart {
            // Stopping (or removing) an agent stops both of a cutover's
            // processes, and its next start is an operator's.
            self.retire(now, name, signal, timeout);
            if let Some(agent) = self.agents.get_mut(name) {
                agent.cutover_spawn = false;
            }
        }
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        match agent.phase {
            Phase::Starting { pid, since } | Phase::Running { pid, since } => {
                let kill_at = (signal != Signal::Kill).then(|| now + timeout);
                agent.phase = Phase::Stopping {
                    pid,
                    since,
                    kill_at,
                    then,
                };
                self.actions.push_back(Action::Signal {
                    agent: name.clone(),
                    pid,
                    signal,
                });
                self.push_event(name, EventKind::Stopping { pid, signal });
            }
            Phase::Stopping {
                pid,
                since,
                kill_at,
                then: previous,
            } => {
                // A removal wins over anything; otherwise the latest wish wins.
                let then = if previous == AfterStop::Remove {
                    AfterStop::Remove
                } else {
                    then
                };
                agent.phase = Phase::Stopping {
                    pid,
                    since,
                    kill_at,
                    then,
                };
            }
            Phase::Backoff { .. }
            | Phase::Failed { .. }
            | Phase::Exited
            | Phase::Stopped
            | Phase::Spawning
            | Phase::Undeployed => {
                let was_stopped = agent.phase == Phase::Stopped;
                agent.phase = Phase::Stopped;
                match then {
                    AfterStop::Remove if !agent.outgoing.is_empty() => {
                        agent.forget_when_alone = true;
                    }
                    AfterStop::Remove => self.forget(name),
                    AfterStop::Restart => self.start_agent(now, name),
                    AfterStop::Stay if !was_stopped => {
                        self.push_event(name, EventKind::Stopped { status: None })
                    }
                    AfterStop::Stay => {}
                }
            }
        }
    }
}
