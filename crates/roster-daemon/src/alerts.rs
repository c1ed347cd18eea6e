//! The alerts the daemon has raised: those firing, and the most recent
//! events, for `roster alerts` and the API. The loop writes it; readers get
//! a copy, never the loop's attention.

use std::collections::{BTreeMap, VecDeque};

use roster_core::api::{AlertRecord, AlertState, AlertsReply};

/// How many alert events `roster alerts` keeps besides the firing ones.
pub const RECENT: usize = 200;

/// Firing alerts by fingerprint, and recent events, newest last.
#[derive(Debug, Default)]
pub struct AlertBook {
    firing: BTreeMap<String, AlertRecord>,
    recent: VecDeque<AlertRecord>,
}

impl AlertBook {
    /// Records a firing or a resolution.
    pub fn record(&mut self, alert: &AlertRecord) {
        match alert.state {
            AlertState::Firing => {
                self.firing.insert(alert.fingerprint.clone(), alert.clone());
            }
            AlertState::Resolved => {
                self.firing.remove(&alert.fingerprint);
            }
        }
        self.recent.push_back(alert.clone());
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }

    /// How many fire.
    /// The firing alert with this fingerprint.
    pub fn firing(&self, fingerprint: &str) -> Option<&AlertRecord> {
        self.firing.get(fingerprint)
    }

    /// How many alerts fire.
    pub fn firing_count(&self) -> usize {
        self.firing.len()
    }

    /// A copy for readers.
    pub fn reply(&self) -> AlertsReply {
        AlertsReply {
            firing: self.firing.values().cloned().collect(),
            recent: self.recent.iter().cloned().collect(),
        }
    }
}
