//! Deadlines: starting becomes running, stop and drain timeouts escalate
//! to SIGKILL, backoffs and cool-downs end, probes come due.

use std::time::Instant;

use super::agent::Phase;
use super::events::EventKind;
use super::{Action, Supervisor};
use crate::name::AgentName;
use crate::signal::Signal;

impl Supervisor {
    /// Deadlines that have come: starting becomes running, stop timeouts
    /// escalate to SIGKILL, backoffs and cool-downs end.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Only the agents that are due: with a thousand agents probed every
        // few seconds this runs hundreds of times a second.
        let due: Vec<AgentName> = self
            .agents
            .iter()
            .filter(|(_, agent)| {
                agent
                    .next_deadline()
                    .is_some_and(|deadline| deadline <= now)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(agent) = self.agents.get_mut(&name) else {
                continue;
            };
            if agent.next_deadline().is_none_or(|deadline| deadline > now) {
                continue;
            }
            let mut overdue = Vec::new();
            for outgoing in &mut agent.outgoing {
                if outgoing.draining.flatten().is_some_and(|at| at <= now) {
                    outgoing.draining = Some(None);
                    overdue.push(outgoing.pid);
                }
            }
            for pid in overdue {
                self.actions.push_back(Action::Signal {
                    agent: name.clone(),
                    pid,
                    signal: Signal::Kill,
                });
                self.push_event(&name, EventKind::Killed { pid });
            }
            let Some(agent) = self.agents.get_mut(&name) else {
                continue;
            };
            if agent
                .probe_deadline()
                .is_some_and(|deadline| deadline <= now)
            {
                self.probe_due(now, &name);
            }
            let Some(agent) = self.agents.get_mut(&name) else {
                continue;
            };
            if agent.phase_deadline().is_none_or(|deadline| deadline > now) {
                continue;
            }
            match agent.phase {
                Phase::Starting { pid, since } => {
                    agent.phase = Phase::Running { pid, since };
                    self.push_event(&name, EventKind::Running { pid });
                }
                Phase::Stopping {
                    pid, since, then, ..
                } => {
                    agent.phase = Phase::Stopping {
                        pid,
                        since,
                        kill_at: None,
                        then,
                    };
                    self.actions.push_back(Action::Signal {
                        agent: name.clone(),
                        pid,
                        signal: Signal::Kill,
                    });
                    self.push_event(&name, EventKind::Killed { pid });
                }
                Phase::Backoff { .. } => self.spawn(&name),
                Phase::Failed { .. } => {
                    agent.quick_streak = 0;
                    agent.quick_deaths.clear();
                    self.push_event(&name, EventKind::Retrying);
                    self.spawn(&name);
                }
                _ => {}
            }
        }
    }
}
