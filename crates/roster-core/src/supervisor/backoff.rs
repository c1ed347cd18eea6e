//! The restart policy: after a process died (or could not start), whether
//! the agent restarts, after which delay ([`backoff_delay`]), or is
//! `failed` for too many quick deaths within `crash_window`.

use std::time::{Duration, Instant};

use super::agent::Phase;
use super::events::EventKind;
use super::Supervisor;
use crate::config::{AgentSpec, RestartMode};
use crate::name::AgentName;

/// The wait before restarting an agent after its `streak`-th quick death in a
/// row: `restart_delay` for the first, then doubling from
/// max(`restart_delay`, 100 ms), capped at `backoff_max`.
pub fn backoff_delay(spec: &AgentSpec, streak: u32) -> Duration {
    if streak <= 1 {
        return spec.restart.delay;
    }
    let base = spec.restart.delay.max(Duration::from_millis(100));
    let doublings = (streak - 2).min(30);
    base.saturating_mul(1u32 << doublings)
        .min(spec.restart.backoff_max.max(spec.restart.delay))
}

impl Supervisor {
    /// The restart decision after a process died (or could not start).
    pub(super) fn after_death(
        &mut self,
        now: Instant,
        name: &AgentName,
        success: bool,
        uptime: Duration,
    ) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let spec = &agent.spec;
        if uptime < spec.restart.stable_after {
            agent.quick_streak = agent.quick_streak.saturating_add(1);
            agent.quick_deaths.push_back(now);
        } else {
            agent.quick_streak = 0;
            agent.quick_deaths.clear();
        }
        while agent
            .quick_deaths
            .front()
            .is_some_and(|&death| now.saturating_duration_since(death) >= spec.restart.crash_window)
        {
            agent.quick_deaths.pop_front();
        }
        let restart = match spec.restart.mode {
            RestartMode::Always => true,
            RestartMode::OnFailure => !success,
            RestartMode::Never => false,
        };
        if !restart {
            agent.phase = Phase::Exited;
            return;
        }
        let deaths = agent.quick_deaths.len() as u32;
        if spec.restart.crash_loop > 0 && deaths >= spec.restart.crash_loop {
            let retry_in = spec.restart.failed_retry;
            agent.phase = Phase::Failed {
                retry_at: retry_in.map(|retry| now + retry),
            };
            self.push_event(name, EventKind::Failed { deaths, retry_in });
            return;
        }
        let delay = backoff_delay(spec, agent.quick_streak);
        agent.phase = Phase::Backoff { until: now + delay };
        self.push_event(name, EventKind::Restarting { delay });
        if delay.is_zero() {
            self.spawn(name);
        }
    }
}
