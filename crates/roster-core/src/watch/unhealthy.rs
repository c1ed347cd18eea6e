//! `AgentUnhealthy`: the alert an agent's health check raises (with
//! `on_failure = "restart"` or `"alert"`), with hysteresis.
//!
//! It fires when the supervisor's verdict turns unhealthy. It resolves only
//! once the agent has stayed healthy for [`resolve_after`] its probe
//! interval: max(2 × interval, [`STEADY_FOR`]). An unhealthy verdict within
//! that time keeps the alert firing and sends nothing. So an agent that
//! flaps fires once and resolves once it has been steady, and a fire and
//! its resolution come at most once per [`STEADY_FOR`], however short the
//! interval.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{base_alert, AlertEvent, Owner};
use crate::AgentName;

/// The least time an agent must stay healthy before its `AgentUnhealthy`
/// alert resolves.
pub const STEADY_FOR: Duration = Duration::from_secs(30);

/// How long an agent probed every `interval` must stay healthy before its
/// `AgentUnhealthy` alert resolves: two more passing probes at least, and
/// never less than [`STEADY_FOR`].
pub fn resolve_after(interval: Duration) -> Duration {
    interval.saturating_mul(2).max(STEADY_FOR)
}

/// One firing `AgentUnhealthy` alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Firing {
    /// When it fired.
    since: Instant,
    /// While the agent is healthy again: since when, and when the alert
    /// resolves if it stays so.
    recovering: Option<(Instant, Instant)>,
}

/// The `AgentUnhealthy` alerts firing, by agent.
#[derive(Debug, Default)]
pub(super) struct UnhealthyAlerts {
    firing: BTreeMap<AgentName, Firing>,
}

impl UnhealthyAlerts {
    /// A health verdict of `agent` (probed every `interval`); the alert to
    /// raise, if any: a firing when it turns unhealthy while no alert
    /// fires. A healthy verdict only starts the wait for the resolution.
    pub(super) fn handle_verdict(
        &mut self,
        now: Instant,
        agent: &AgentName,
        healthy: bool,
        interval: Duration,
        detail: &str,
    ) -> Option<AlertEvent> {
        match (healthy, self.firing.get_mut(agent)) {
            (false, None) => {
                self.firing.insert(
                    agent.clone(),
                    Firing {
                        since: now,
                        recovering: None,
                    },
                );
                let owner = Owner::Agent(agent.clone());
                let mut event =
                    base_alert(&owner, "health", "AgentUnhealthy", "critical", true, now);
                event.summary = format!("{agent} is unhealthy: {detail}");
                Some(event)
            }
            // Unhealthy again before it was steady: it goes on firing.
            (false, Some(firing)) => {
                firing.recovering = None;
                None
            }
            (true, Some(firing)) => {
                if firing.recovering.is_none() {
                    firing.recovering = Some((now, now + resolve_after(interval)));
                }
                None
            }
            (true, None) => None,
        }
    }

    /// The resolutions due at `now`: agents healthy for long enough.
    pub(super) fn handle_timeout(&mut self, now: Instant) -> Vec<AlertEvent> {
        let due: Vec<AgentName> = self
            .firing
            .iter()
            .filter(|(_, firing)| firing.recovering.is_some_and(|(_, at)| at <= now))
            .map(|(agent, _)| agent.clone())
            .collect();
        let mut resolved = Vec::with_capacity(due.len());
        for agent in due {
            let Some(firing) = self.firing.remove(&agent) else {
                continue;
            };
            let Some((healthy_since, _)) = firing.recovering else {
                continue;
            };
            let owner = Owner::Agent(agent.clone());
            let mut event = base_alert(
                &owner,
                "health",
                "AgentUnhealthy",
                "critical",
                false,
                firing.since,
            );
            event.until = Some(healthy_since);
            event.summary = format!(
                "{agent} is healthy again (steadily for {}s)",
                now.saturating_duration_since(healthy_since).as_secs()
            );
            resolved.push(event);
        }
        resolved
    }

    /// When the next resolution is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.firing
            .values()
            .filter_map(|firing| firing.recovering.map(|(_, at)| at))
            .min()
    }

    /// The agent left the config: its alert is forgotten.
    pub(super) fn forget(&mut self, agent: &AgentName) {
        self.firing.remove(agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(count: u64) -> Duration {
        Duration::from_millis(count)
    }

    fn agent() -> AgentName {
        AgentName::new("web").expect("name")
    }

    #[test]
    fn resolves_only_after_a_steady_spell() {
        assert_eq!(resolve_after(millis(100)), STEADY_FOR);
        assert_eq!(
            resolve_after(Duration::from_secs(60)),
            Duration::from_secs(120)
        );

        let mut alerts = UnhealthyAlerts::default();
        let t0 = Instant::now();
        let interval = Duration::from_secs(10);
        let fired = alerts
            .handle_verdict(t0, &agent(), false, interval, "status 500")
            .expect("fires");
        assert!(fired.firing);
        assert_eq!(fired.name, "AgentUnhealthy");
        assert_eq!(fired.summary, "web is unhealthy: status 500");
        assert_eq!(alerts.poll_timeout(), None, "nothing due while unhealthy");

        let healthy_at = t0 + Duration::from_secs(5);
        assert!(alerts
            .handle_verdict(healthy_at, &agent(), true, interval, "")
            .is_none());
        let due = alerts.poll_timeout().expect("a resolution is due");
        assert_eq!(due, healthy_at + Duration::from_secs(30));
        assert!(alerts.handle_timeout(due - millis(1)).is_empty());
        let resolved = alerts.handle_timeout(due);
        assert!(matches!(&resolved[..], [event] if !event.firing
            && event.since == t0
            && event.until == Some(healthy_at)
            && event.summary == "web is healthy again (steadily for 30s)"));
        assert_eq!(alerts.poll_timeout(), None);
        assert!(alerts.handle_timeout(due + STEADY_FOR).is_empty(), "once");

        // The next unhealthy spell fires again.
        assert!(alerts
            .handle_verdict(due + millis(1), &agent(), false, interval, "x")
            .is_some());
    }

    /// Issue #14: an agent whose check flaps three times a second fired and
    /// resolved three times a second. Now: one firing while it flaps, one
    /// resolution once it has been healthy for 30 s.
    #[test]
    fn a_flapping_agent_fires_once_and_resolves_once_steady() {
        let mut alerts = UnhealthyAlerts::default();
        let t0 = Instant::now();
        let interval = millis(100);
        let mut sent = Vec::new();
        let mut now = t0;
        // Ten minutes of flapping: unhealthy, healthy, 300 ms apart.
        for step in 0..2000u64 {
            now = t0 + millis(300 * step);
            sent.extend(alerts.handle_timeout(now));
            let healthy = step % 2 == 1;
            sent.extend(alerts.handle_verdict(now, &agent(), healthy, interval, "flap"));
        }
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].firing);
        // It ended healthy: steady from there, it resolves 30 s later.
        let last_healthy = now;
        let due = alerts.poll_timeout().expect("due");
        assert_eq!(due, last_healthy + STEADY_FOR);
        let resolved = alerts.handle_timeout(due);
        assert!(matches!(&resolved[..], [event] if !event.firing && event.since == t0));
    }

    #[test]
    fn healthy_verdicts_without_an_alert_and_forgotten_agents_send_nothing() {
        let mut alerts = UnhealthyAlerts::default();
        let t0 = Instant::now();
        assert!(alerts
            .handle_verdict(t0, &agent(), true, millis(100), "")
            .is_none());
        assert!(alerts
            .handle_verdict(t0, &agent(), false, millis(100), "x")
            .is_some());
        // A second healthy verdict does not push the resolution back.
        alerts.handle_verdict(t0 + millis(100), &agent(), true, millis(100), "");
        alerts.handle_verdict(t0 + millis(200), &agent(), true, millis(100), "");
        assert_eq!(alerts.poll_timeout(), Some(t0 + millis(100) + STEADY_FOR));
        alerts.forget(&agent());
        assert_eq!(alerts.poll_timeout(), None);
        assert!(alerts.handle_timeout(t0 + STEADY_FOR * 2).is_empty());
    }
}
