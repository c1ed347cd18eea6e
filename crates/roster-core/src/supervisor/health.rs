//! The health check as the supervisor runs it: probes come due and are
//! cut at their timeout, answers are judged (`start_period`, `retries`,
//! stale ids), and restarts roster decides on by itself (failed health
//! checks, watch rules) are rate-limited.

use std::time::Instant;

use super::agent::{on_grid, AfterStop, Phase, ProbeState};
use super::events::EventKind;
use super::{Action, Supervisor, AUTO_RESTARTS_MAX, AUTO_RESTART_WINDOW};
use crate::health::OnFailure;
use crate::name::AgentName;
use crate::units::format_duration;

impl Supervisor {
    /// A watch rule wants the agent restarted: drained, and rate-limited
    /// with the health check's restarts.
    pub fn handle_rule_restart(&mut self, now: Instant, agent: &AgentName, reason: &str) {
        self.auto_restart(now, agent, reason);
    }

    /// A probe is due, or the one in flight has run out of time.
    pub(super) fn probe_due(&mut self, now: Instant, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let Some(health) = agent.spec.health.clone() else {
            agent.probe = ProbeState::default();
            return;
        };
        match agent.probe.in_flight {
            Some((id, _)) => {
                self.actions.push_back(Action::CancelProbe {
                    agent: name.clone(),
                    id,
                });
                let error = format!(
                    "no answer within {} ({})",
                    format_duration(health.timeout),
                    health.check
                );
                self.handle_probe(now, name, id, Err(error));
            }
            None => {
                self.next_probe_id += 1;
                let id = self.next_probe_id;
                agent.probe.in_flight = Some((id, now + health.timeout));
                agent.probe.next_at = None;
                self.actions.push_back(Action::Probe {
                    agent: name.clone(),
                    id,
                    check: health.check,
                    timeout: health.timeout,
                });
            }
        }
    }

    /// The outcome of [`Action::Probe`] `id` (`Err` says why it failed).
    /// A result for a probe that is no longer the agent's (it timed out, or
    /// the process it checked is gone) is ignored.
    pub fn handle_probe(
        &mut self,
        now: Instant,
        name: &AgentName,
        id: u64,
        result: Result<(), String>,
    ) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        if agent.probe.in_flight.map(|(current, _)| current) != Some(id) {
            return;
        }
        let Some(health) = agent.spec.health.clone() else {
            return;
        };
        agent.probe.in_flight = None;
        agent.probe.next_at = Some(on_grid(self.epoch, now + health.interval));
        if agent.pid().is_none() {
            return;
        }
        match result {
            Ok(()) => {
                agent.probe.failures.pass();
                agent.probe.suppression_reported = false;
                if agent.probe.verdict != Some(true) {
                    agent.probe.verdict = Some(true);
                    self.push_event(name, EventKind::Healthy);
                }
            }
            Err(error) => {
                let starting = agent
                    .probe
                    .started
                    .is_some_and(|started| now < started + health.start_period);
                if starting {
                    return;
                }
                if !agent.probe.failures.fail(health.retries) {
                    return;
                }
                let newly = agent.probe.verdict != Some(false);
                agent.probe.verdict = Some(false);
                let failures = agent.probe.failures.count();
                if newly {
                    self.push_event(
                        name,
                        EventKind::Unhealthy {
                            failures,
                            error,
                            action: health.on_failure,
                        },
                    );
                }
                if health.on_failure == OnFailure::Restart {
                    self.auto_restart(now, name, "failed health checks");
                }
            }
        }
    }

    /// A restart roster decided on by itself: the agent is asked to finish
    /// (its drain signal, then SIGKILL after `drain_timeout`), at most
    /// [`AUTO_RESTARTS_MAX`] times per [`AUTO_RESTART_WINDOW`].
    fn auto_restart(&mut self, now: Instant, name: &AgentName, reason: &str) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        if !matches!(agent.phase, Phase::Starting { .. } | Phase::Running { .. }) {
            return;
        }
        while agent
            .auto_restarts
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= AUTO_RESTART_WINDOW)
        {
            agent.auto_restarts.pop_front();
        }
        if agent.auto_restarts.len() >= AUTO_RESTARTS_MAX {
            if !agent.probe.suppression_reported {
                agent.probe.suppression_reported = true;
                self.push_event(
                    name,
                    EventKind::RestartSuppressed {
                        reason: reason.to_owned(),
                    },
                );
            }
            return;
        }
        agent.auto_restarts.push_back(now);
        let (signal, timeout) = agent.spec.stop.drain();
        self.stop_agent_with(now, name, AfterStop::Restart, signal, timeout);
    }
}
