//! A process's life as the supervisor hears of it: an operator's start,
//! stop and restart, and the runtime's answers: spawned, exited, or ended
//! before it became the agent.

use std::time::{Duration, Instant};

use super::agent::{on_grid, AfterStop, Phase, ProbeState};
use super::events::EventKind;
use super::{Action, Supervisor};
use crate::api::ExitStatus;
use crate::config::RestartMode;
use crate::name::AgentName;
use crate::signal::Signal;

impl Supervisor {
    /// An operator's `start`: start it if it is not running, clearing
    /// `failed` and any backoff at once.
    pub fn handle_start(&mut self, now: Instant, agent: &AgentName) {
        self.start_agent(now, agent);
    }

    /// An operator's `stop`.
    pub fn handle_stop(&mut self, now: Instant, agent: &AgentName) {
        self.stop_agent(now, agent, AfterStop::Stay);
    }

    /// An operator's `restart`: stop gracefully, then start.
    pub fn handle_restart(&mut self, now: Instant, agent: &AgentName) {
        self.restart_agent(now, agent);
    }

    /// An operator's drained `restart` (`roster recover` relieving memory
    /// pressure): as roster restarts for ill health, the agent's drain
    /// signal (else its stop signal), then SIGKILL after `drain_timeout`,
    /// then start. Not rate-limited: an operator asked. An agent that is
    /// not running is started.
    pub fn handle_restart_drained(&mut self, now: Instant, agent: &AgentName) {
        let Some(spec) = self.agents.get(agent).map(|state| &state.spec) else {
            return;
        };
        let (signal, timeout) = spec.stop.drain();
        match self.agents.get(agent).map(|state| state.phase) {
            Some(Phase::Starting { .. } | Phase::Running { .. }) => {
                self.stop_agent_with(now, agent, AfterStop::Restart, signal, timeout)
            }
            Some(_) => self.start_agent(now, agent),
            None => {}
        }
    }

    /// Files under the agent's `watch_paths` changed (`reason` says which,
    /// from [`crate::watch_paths::Debouncer`]): a running agent restarts
    /// drained, as for ill health (drain signal, then SIGKILL after
    /// `drain_timeout`) but not rate-limited with those restarts, since the
    /// debouncer already spaces them; one waiting out a backoff or
    /// `failed` starts at once, since a change may be the fix. A stopped or
    /// exited agent stays so: an operator stopped it, or it ended as its
    /// policy wants.
    pub fn handle_files_changed(&mut self, now: Instant, agent: &AgentName, reason: &str) {
        let Some(state) = self.agents.get(agent) else {
            return;
        };
        let ((signal, timeout), phase) = (state.spec.stop.drain(), state.phase);
        let event = EventKind::FilesChanged {
            reason: reason.to_owned(),
        };
        match phase {
            Phase::Starting { .. } | Phase::Running { .. } => {
                self.push_event(agent, event);
                self.stop_agent_with(now, agent, AfterStop::Restart, signal, timeout);
            }
            Phase::Backoff { .. } | Phase::Failed { .. } => {
                self.push_event(agent, event);
                self.start_agent(now, agent);
            }
            Phase::Stopped
            | Phase::Spawning
            | Phase::Stopping { .. }
            | Phase::Exited
            | Phase::Undeployed => {}
        }
    }

    /// Stops every agent (for `roster down`).
    pub fn handle_stop_all(&mut self, now: Instant) {
        for name in self.names() {
            self.stop_agent(now, &name, AfterStop::Stay);
        }
    }

    /// The runtime's answer to [`Action::Spawn`].
    ///
    /// An agent never has two live processes: a pid that arrives when the
    /// agent already tracks one, or for an agent that is gone, is killed
    /// (with its group) instead of tracked.
    pub fn handle_spawned(&mut self, now: Instant, name: &AgentName, result: Result<u32, String>) {
        let Some(agent) = self.agents.get_mut(name) else {
            if let Ok(pid) = result {
                self.kill_untracked(name, pid);
            }
            return;
        };
        if agent.phase != Phase::Spawning {
            let Ok(pid) = result else {
                return;
            };
            if agent.pid().is_some() {
                self.kill_untracked(name, pid);
                return;
            }
            // Stopped while the spawn was out: the process is not wanted.
            agent.count_attempt();
            agent.last_error = None;
            agent.phase = Phase::Running { pid, since: now };
            self.pids.insert(pid, name.clone());
            self.push_event(name, EventKind::Started { pid });
            self.stop_agent(now, name, AfterStop::Stay);
            return;
        }
        agent.count_attempt();
        match result {
            Ok(pid) => {
                agent.last_error = None;
                agent.phase = if agent.spec.ready_after.is_zero() {
                    Phase::Running { pid, since: now }
                } else {
                    Phase::Starting { pid, since: now }
                };
                let first = agent
                    .spec
                    .health
                    .as_ref()
                    .map(|health| now + agent.spec.ready_after.min(health.interval));
                agent.probe = ProbeState {
                    started: Some(now),
                    // The first probe when the agent counts as running.
                    next_at: first.map(|at| on_grid(self.epoch, at)),
                    ..ProbeState::default()
                };
                self.pids.insert(pid, name.clone());
                self.push_event(name, EventKind::Started { pid });
            }
            Err(error) => {
                agent.last_error = Some(error.clone());
                agent.phase = Phase::Stopped;
                let serving = agent.serving().is_some();
                self.push_event(
                    name,
                    EventKind::SpawnFailed {
                        error: error.clone(),
                    },
                );
                if serving {
                    // The new release cannot start: the live process stays.
                    self.hand_back(
                        now,
                        name,
                        format!("the new release could not start: {error}"),
                    );
                } else {
                    self.after_death(now, name, false, Duration::ZERO);
                }
            }
        }
    }

    /// A process the runtime started that no agent may track.
    fn kill_untracked(&mut self, name: &AgentName, pid: u32) {
        self.actions.push_back(Action::Signal {
            agent: name.clone(),
            pid,
            signal: Signal::Kill,
        });
    }

    /// A child was reaped. Returns false when the pid is no agent's main
    /// process (a stray the daemon inherited as subreaper).
    pub fn handle_exit(&mut self, now: Instant, pid: u32, status: ExitStatus) -> bool {
        let Some(name) = self.pids.remove(&pid) else {
            return false;
        };
        let Some(agent) = self.agents.get_mut(&name) else {
            return false;
        };
        if let Some(index) = agent.outgoing.iter().position(|out| out.pid == pid) {
            agent.outgoing.remove(index);
            let forget =
                agent.forget_when_alone && agent.pid().is_none() && agent.outgoing.is_empty();
            self.push_event(&name, EventKind::Retired { pid, status });
            self.actions.push_back(Action::Cleanup {
                agent: name.clone(),
                pid,
            });
            if forget {
                self.forget(&name);
            }
            return true;
        }
        self.cancel_probe(&name);
        let Some(agent) = self.agents.get_mut(&name) else {
            return false;
        };
        agent.last_exit = Some(status);
        match agent.phase {
            Phase::Starting { since, .. } | Phase::Running { since, .. } => {
                let uptime = now.saturating_duration_since(since);
                agent.phase = Phase::Stopped;
                let serving = agent.serving().is_some();
                self.push_event(
                    &name,
                    EventKind::Exited {
                        pid,
                        status,
                        uptime,
                    },
                );
                if serving {
                    // The new release died during its cutover: the process
                    // it was to replace still serves, and takes over again.
                    self.hand_back(now, &name, format!("the new process {status}"));
                } else {
                    self.after_death(now, &name, status.is_success(), uptime);
                }
            }
            Phase::Stopping { then, .. } => {
                agent.phase = Phase::Stopped;
                let outgoing = !agent.outgoing.is_empty();
                if then == AfterStop::Remove && outgoing {
                    agent.forget_when_alone = true;
                }
                self.push_event(
                    &name,
                    EventKind::Stopped {
                        status: Some(status),
                    },
                );
                match then {
                    AfterStop::Stay => {}
                    AfterStop::Restart => self.start_agent(now, &name),
                    AfterStop::Remove if outgoing => {}
                    AfterStop::Remove => self.forget(&name),
                }
            }
            _ => debug_assert!(false, "exit of {pid} in a phase without a process"),
        }
        self.actions.push_back(Action::Cleanup { agent: name, pid });
        true
    }

    /// A process ended before it became the agent: the runtime's exec shim
    /// found that the agent cannot start as configured (its user cannot
    /// enter the directory or run the program, a limit could not be set)
    /// and said why. Like a failed spawn it is `last_error` and
    /// `spawn_failed`; unlike one, starting again at once cannot help, so
    /// the agent is `failed` at once (retried after `failed_retry`, or by
    /// `start`) instead of after `crash_loop` quick deaths, or `exited`
    /// with `restart = "never"`. During a cutover the live process serves
    /// on. Returns false when the pid is no agent's.
    pub fn handle_not_started(
        &mut self,
        now: Instant,
        pid: u32,
        status: ExitStatus,
        reason: String,
    ) -> bool {
        let Some(name) = self.pids.get(&pid).cloned() else {
            return false;
        };
        let main = self.agents.get(&name).is_some_and(|agent| {
            matches!(agent.phase, Phase::Starting { pid: main, .. } | Phase::Running { pid: main, .. } if main == pid)
        });
        if !main {
            // Being stopped anyway: it ends as any process does.
            let handled = self.handle_exit(now, pid, status);
            if let Some(agent) = self.agents.get_mut(&name) {
                agent.last_error = Some(reason);
            }
            return handled;
        }
        self.pids.remove(&pid);
        self.cancel_probe(&name);
        let Some(agent) = self.agents.get_mut(&name) else {
            return false;
        };
        agent.last_exit = Some(status);
        agent.last_error = Some(reason.clone());
        agent.phase = Phase::Stopped;
        let serving = agent.serving().is_some();
        let retry_in = agent.spec.restart.failed_retry;
        let never = agent.spec.restart.mode == RestartMode::Never;
        self.push_event(
            &name,
            EventKind::SpawnFailed {
                error: reason.clone(),
            },
        );
        if serving {
            self.hand_back(
                now,
                &name,
                format!("the new release could not start: {reason}"),
            );
        } else if let Some(agent) = self.agents.get_mut(&name) {
            if never {
                agent.phase = Phase::Exited;
            } else {
                agent.phase = Phase::Failed {
                    retry_at: retry_in.map(|retry| now + retry),
                };
                self.push_event(
                    &name,
                    EventKind::Failed {
                        deaths: 0,
                        retry_in,
                    },
                );
            }
        }
        self.actions.push_back(Action::Cleanup { agent: name, pid });
        true
    }
}
