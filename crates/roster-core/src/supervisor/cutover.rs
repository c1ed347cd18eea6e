//! Cutovers: shipping a release to an agent ([`Supervisor::handle_switch`]),
//! blue-green or by restart; retiring the outgoing process once the new
//! one is ready; and handing back to it when the cutover is given up or
//! the new process dies or cannot start.

use std::time::{Duration, Instant};

use super::agent::{on_grid, AfterStop, Outgoing, Phase, ProbeState};
use super::events::{Event, EventKind};
use super::{Action, Supervisor, Switch};
use crate::deploy::Strategy as Cutover;
use crate::name::AgentName;
use crate::signal::Signal;

impl Supervisor {
    /// Ships `release` to an agent (a deploy's or a rollback's cutover).
    ///
    /// Blue-green, with a live process: the live process keeps serving
    /// (it becomes the outgoing one) and the new release is spawned beside
    /// it; [`Supervisor::handle_retire`] then drains the old one, or
    /// [`Supervisor::handle_handback`] gives up. If the new process dies
    /// first, the old one takes over again by itself (`handed_back`).
    /// Restart: stop, then start with the new release. An agent that is
    /// stopped (or exited) stays so and runs the release when started; one
    /// in backoff or failed starts it at once.
    pub fn handle_switch(
        &mut self,
        now: Instant,
        name: &AgentName,
        release: &str,
        strategy: Cutover,
    ) -> Result<Switch, String> {
        let Some(agent) = self.agents.get_mut(name) else {
            return Err(format!("no agent named {name}"));
        };
        if agent.serving().is_some() {
            return Err(format!(
                "{name} is in the middle of a cutover; wait until it ends"
            ));
        }
        let previous = agent.release.replace(release.to_owned());
        // The spawn this switch causes is no restart (see `restarts`).
        let cutover_spawn = agent.cutover_spawn;
        agent.cutover_spawn = true;
        match (agent.phase, strategy) {
            (
                Phase::Starting { pid, since } | Phase::Running { pid, since },
                Cutover::BlueGreen,
            ) => {
                agent.outgoing.push(Outgoing {
                    pid,
                    since,
                    release: previous,
                    draining: None,
                });
                self.cancel_probe(name);
                self.push_event(
                    name,
                    EventKind::HandingOver {
                        pid,
                        release: release.to_owned(),
                    },
                );
                self.spawn(name);
                Ok(Switch::Beside { pid })
            }
            (Phase::Starting { .. } | Phase::Running { .. }, Cutover::Restart) => {
                self.stop_agent(now, name, AfterStop::Restart);
                Ok(Switch::Restarting)
            }
            (Phase::Spawning, _) => {
                agent.release = previous;
                agent.cutover_spawn = cutover_spawn;
                Err(format!("{name} is starting; try again in a moment"))
            }
            (Phase::Stopping { then, .. }, _) => {
                // Already stopping: its next start, if any, is what an
                // operator or a config change asked for.
                agent.cutover_spawn = cutover_spawn;
                Ok(if then == AfterStop::Restart {
                    Switch::Restarting
                } else {
                    Switch::NotRunning
                })
            }
            // An agent waiting for its first release starts with it.
            (Phase::Backoff { .. } | Phase::Failed { .. } | Phase::Undeployed, _) => {
                self.start_agent(now, name);
                Ok(Switch::Restarting)
            }
            (Phase::Stopped | Phase::Exited, _) => {
                agent.cutover_spawn = cutover_spawn;
                Ok(Switch::NotRunning)
            }
        }
    }

    /// The new process of a blue-green cutover is ready: the outgoing one
    /// is asked to finish (drain signal, SIGKILL after `drain_timeout`).
    /// False when there is no serving outgoing process.
    pub fn handle_retire(&mut self, now: Instant, name: &AgentName) -> bool {
        let Some(agent) = self.agents.get(name) else {
            return false;
        };
        if agent.serving().is_none() {
            return false;
        }
        let (signal, timeout) = agent.spec.stop.drain();
        self.retire(now, name, signal, timeout);
        true
    }

    /// Gives up a blue-green cutover: the outgoing process, still serving,
    /// is the agent's main process again, and the new one drains.
    pub fn handle_handback(&mut self, now: Instant, name: &AgentName, reason: &str) -> bool {
        let serving = self
            .agents
            .get(name)
            .is_some_and(|agent| agent.serving().is_some());
        if serving {
            self.hand_back(now, name, reason.to_owned());
        }
        serving
    }

    pub(super) fn hand_back(&mut self, now: Instant, name: &AgentName, reason: String) {
        self.cancel_probe(name);
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let Some(index) = agent.outgoing.iter().position(|out| out.draining.is_none()) else {
            return;
        };
        let old = agent.outgoing.remove(index);
        let (signal, timeout) = agent.spec.stop.drain();
        // The new process, if it still runs, becomes the outgoing one.
        let new = match agent.phase {
            Phase::Starting { pid, since } | Phase::Running { pid, since } => {
                let kill_at = (signal != Signal::Kill).then(|| now + timeout);
                self.actions.push_back(Action::Signal {
                    agent: name.clone(),
                    pid,
                    signal,
                });
                self.events.push_back(Event {
                    agent: name.clone(),
                    kind: EventKind::Retiring { pid, signal },
                });
                Some((pid, since, Some(kill_at)))
            }
            Phase::Stopping {
                pid,
                since,
                kill_at,
                ..
            } => Some((pid, since, Some(kill_at))),
            _ => None,
        };
        if let Some((pid, since, draining)) = new {
            let release = agent.release.clone();
            agent.outgoing.push(Outgoing {
                pid,
                since,
                release,
                draining,
            });
        }
        agent.release = old.release;
        agent.phase = Phase::Running {
            pid: old.pid,
            since: old.since,
        };
        agent.forget_when_alone = false;
        let first = agent.spec.health.as_ref().map(|health| {
            on_grid(
                self.epoch,
                now + health.interval.min(Duration::from_secs(1)),
            )
        });
        agent.probe = ProbeState {
            started: Some(old.since),
            next_at: first,
            ..ProbeState::default()
        };
        self.push_event(
            name,
            EventKind::HandedBack {
                pid: old.pid,
                reason,
            },
        );
    }
}
