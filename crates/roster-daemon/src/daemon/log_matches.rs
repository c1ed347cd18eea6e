//! When the loop takes the `log_matches` counts writers added up.
//!
//! A writer tells the loop once that counts are pending
//! (`Input::LogMatches`), and tells it again only after the loop took
//! them. Taking them at once would wake the loop for every line an agent
//! writes with a write(2) of its own (3,000 a second cost the daemon 7% of
//! a core); the loop takes them [`PERIOD`] after the first notice instead,
//! so an agent costs at most one wake-up per period, whatever it prints.
//! A log window is minutes long: a tenth of a second is no delay to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_core::AgentName;

use crate::logs::LogRules;

/// How long counts wait after the first notice.
pub const PERIOD: Duration = Duration::from_millis(100);

/// Agents whose counts wait, and when they are taken.
#[derive(Default)]
pub struct LogMatchCounts {
    waiting: Vec<(AgentName, Arc<LogRules>)>,
    due: Option<Instant>,
}

impl LogMatchCounts {
    /// A writer's notice: `agent`'s counts wait in `rules`.
    pub fn handle_notice(&mut self, now: Instant, agent: AgentName, rules: Arc<LogRules>) {
        self.due.get_or_insert(now + PERIOD);
        self.waiting.push((agent, rules));
    }

    /// When [`LogMatchCounts::take_due`] has something.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }

    /// The waiting agents, once due.
    pub fn take_due(&mut self, now: Instant) -> Vec<(AgentName, Arc<LogRules>)> {
        match self.due {
            Some(due) if due <= now => {
                self.due = None;
                std::mem::take(&mut self.waiting)
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_wait_one_period_from_the_first() {
        let t0 = Instant::now();
        let rules = Arc::new(LogRules::new(&[(0, "x".to_owned())]).expect("rules"));
        let name = |text: &str| AgentName::new(text).expect("name");
        let mut counts = LogMatchCounts::default();
        assert_eq!(counts.poll_timeout(), None);
        counts.handle_notice(t0, name("a"), rules.clone());
        counts.handle_notice(t0 + Duration::from_millis(60), name("b"), rules.clone());
        assert_eq!(counts.poll_timeout(), Some(t0 + PERIOD));
        assert!(counts.take_due(t0 + Duration::from_millis(99)).is_empty());
        let taken: Vec<String> = counts
            .take_due(t0 + PERIOD)
            .into_iter()
            .map(|(agent, _)| agent.to_string())
            .collect();
        assert_eq!(taken, ["a", "b"]);
        assert_eq!(counts.poll_timeout(), None);
        assert!(counts.take_due(t0 + PERIOD * 5).is_empty());
    }
}
