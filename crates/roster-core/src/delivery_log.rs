//! What the journal is told about alert deliveries that fail: counted per
//! target and summarised, at most one row per target per
//! [`REPORT_EVERY`] (and one when the target delivers again).
//!
//! A notifier outage used to become a journal storm: every final failure
//! and every alert dropped from a full queue was one `notify_failed` row
//! (issue #14: 21,000 a minute with 6 broken targets, pushing the whole
//! history out in half an hour). Now, per target:
//! - the first failure after a calm spell is noted at once, as it is;
//! - later ones are counted, with the last error, and noted together once
//!   [`REPORT_EVERY`] has passed since the target's last note (at
//!   [`DeliveryLog::handle_timeout`] when nothing else comes);
//! - the first delivery after a noted failure is noted at once as a
//!   recovery, with what failed since the last note.
//!
//! So a target gets at most two notes per [`REPORT_EVERY`], however many
//! alerts fail. Deliveries themselves are not noted here (the daemon
//! journals each, as it journals each alert).
//!
//! Call order, as for the supervisor: `handle_*`, then drain
//! [`DeliveryLog::poll_note`], and ask [`DeliveryLog::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The least time between two notes of failures at one target.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The final outcome of one alert event at one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Delivered.
    Delivered,
    /// Not delivered after every attempt: why.
    Failed(&'a str),
    /// Dropped from the target's full queue, never tried: why.
    Dropped(&'a str),
}

/// Failures at one target since its last note.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// Alert events not delivered after every attempt.
    pub failed: u64,
    /// Alert events dropped from the full queue.
    pub dropped: u64,
    /// The error of the latest failed delivery, or of the latest drop when
    /// none failed (a drop only says the queue was full; a failure says
    /// why the target does not take alerts).
    pub last_error: String,
    /// The alert event [`Failures::last_error`] is about, as the caller
    /// described it.
    pub last_alert: String,
    /// Its agent (`None` for a host alert).
    pub last_agent: Option<String>,
}

impl Failures {
    /// Failed and dropped together.
    pub fn count(&self) -> u64 {
        self.failed + self.dropped
    }
}

/// Something to journal about one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The target, as the caller named it.
    pub target: String,
    /// What happened.
    pub kind: NoteKind,
}

/// What a [`Note`] says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Alert events were not delivered: `failures` of them over `over`
    /// (the time since the target's previous note; `None` for its first).
    /// `delivering` when the latest delivery succeeded (the failures came
    /// between deliveries).
    Failed {
        /// What failed since the previous note.
        failures: Failures,
        /// Since the previous note.
        over: Option<Duration>,
        /// Whether the target delivers now.
        delivering: bool,
    },
    /// The target delivers again after failures that were noted; with
    /// what failed since the last note (possibly nothing).
    Recovered {
        /// What failed since the previous note.
        failures: Failures,
        /// Since the previous note.
        over: Option<Duration>,
    },
}

/// Totals of one target since the log was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Alert events not delivered after every attempt.
    pub failed: u64,
    /// Alert events dropped from the full queue.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct TargetLog {
    /// When the target's last note was made.
    last_note: Option<Instant>,
    /// Since then.
    held: Failures,
    /// The latest outcome was a failure.
    failing: bool,
    /// The last note said the target was failing.
    noted_failing: bool,
    totals: Totals,
}

/// Every target's failures, and the notes to journal.
#[derive(Debug, Default)]
pub struct DeliveryLog {
    targets: BTreeMap<String, TargetLog>,
    notes: VecDeque<Note>,
}

impl DeliveryLog {
    /// Nothing failed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outcome of alert event `alert` (a description for the note) of
    /// `agent` at `target`.
    pub fn handle_outcome(
        &mut self,
        now: Instant,
        target: &str,
        (alert, agent): (&str, Option<&str>),
        outcome: Outcome,
    ) {
        let log = self.targets.entry(target.to_owned()).or_default();
        let (error, telling) = match outcome {
            Outcome::Delivered => {
                log.failing = false;
                if log.noted_failing {
                    let failures = std::mem::take(&mut log.held);
                    let over = log
                        .last_note
                        .map(|last| now.saturating_duration_since(last));
                    log.last_note = Some(now);
                    log.noted_failing = false;
                    self.notes.push_back(Note {
                        target: target.to_owned(),
                        kind: NoteKind::Recovered { failures, over },
                    });
                }
                return;
            }
            Outcome::Failed(error) => {
                log.held.failed += 1;
                log.totals.failed += 1;
                (error, true)
            }
            Outcome::Dropped(error) => {
                log.held.dropped += 1;
                log.totals.dropped += 1;
                (error, log.held.failed == 0)
            }
        };
        log.failing = true;
        if telling {
            error.clone_into(&mut log.held.last_error);
            alert.clone_into(&mut log.held.last_alert);
            log.held.last_agent = agent.map(str::to_owned);
        }
        if log
            .last_note
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_EVERY)
        {
            let note = Self::failed_note(now, target, log);
            self.notes.push_back(note);
        }
    }

    /// Notes the failures held back whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (target, log) in &mut self.targets {
            let due = log
                .last_note
                .is_some_and(|last| now.saturating_duration_since(last) >= REPORT_EVERY);
            if due && log.held.count() > 0 {
                let note = Self::failed_note(now, target, log);
                self.notes.push_back(note);
            }
        }
    }

    /// When [`DeliveryLog::handle_timeout`] has something to note.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.targets
            .values()
            .filter(|log| log.held.count() > 0)
            .filter_map(|log| Some(log.last_note? + REPORT_EVERY))
            .min()
    }

    /// The next note to journal.
    pub fn poll_note(&mut self) -> Option<Note> {
        self.notes.pop_front()
    }

    /// The targets are now `targets` (a config was applied): the others
    /// are forgotten, after a last note of what they held back.
    pub fn retain_targets(&mut self, now: Instant, targets: &[String]) {
        let gone: Vec<String> = self
            .targets
            .keys()
            .filter(|target| !targets.contains(target))
            .cloned()
            .collect();
        for target in gone {
            if let Some(mut log) = self.targets.remove(&target) {
                if log.held.count() > 0 {
                    let note = Self::failed_note(now, &target, &mut log);
                    self.notes.push_back(note);
                }
            }
        }
    }

    /// Every target's totals, by target.
    pub fn totals(&self) -> impl Iterator<Item = (&str, Totals)> {
        self.targets
            .iter()
            .map(|(target, log)| (target.as_str(), log.totals))
    }

    /// A note of what `log` held back; the target's note clock restarts.
    fn failed_note(now: Instant, target: &str, log: &mut TargetLog) -> Note {
        let failures = std::mem::take(&mut log.held);
        let over = log
            .last_note
            .map(|last| now.saturating_duration_since(last));
        log.last_note = Some(now);
        log.noted_failing = log.failing;
        Note {
            target: target.to_owned(),
            kind: NoteKind::Failed {
                failures,
                over,
                delivering: !log.failing,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(count: u64) -> Duration {
        Duration::from_secs(count)
    }

    fn notes(log: &mut DeliveryLog) -> Vec<Note> {
        std::iter::from_fn(|| log.poll_note()).collect()
    }

    fn failed(failed: u64, dropped: u64, error: &str, alert: &str) -> Failures {
        Failures {
            failed,
            dropped,
            last_error: error.into(),
            last_alert: alert.into(),
            last_agent: None,
        }
    }

    #[test]
    fn the_first_failure_is_noted_at_once_and_the_rest_once_a_minute() {
        let mut log = DeliveryLog::new();
        let t0 = Instant::now();
        log.handle_outcome(
            t0,
            "webhook a",
            ("A firing", None),
            Outcome::Failed("refused"),
        );
        assert_eq!(
            notes(&mut log),
            [Note {
                target: "webhook a".into(),
                kind: NoteKind::Failed {
                    failures: failed(1, 0, "refused", "A firing"),
                    over: None,
                    delivering: false,
                },
            }]
        );
        assert_eq!(log.poll_timeout(), None, "nothing held back");
        // A storm: failures and drops every 2 ms for a minute and a half.
        for step in 1..45_000u64 {
            let now = t0 + Duration::from_millis(2 * step);
            log.handle_timeout(now);
            let outcome = if step % 3 == 0 {
                Outcome::Failed("refused")
            } else {
                Outcome::Dropped("queue full")
            };
            log.handle_outcome(now, "webhook a", (&format!("alert {step}"), None), outcome);
        }
        let noted = notes(&mut log);
        assert_eq!(noted.len(), 1, "{noted:?}");
        let NoteKind::Failed {
            failures,
            over,
            delivering,
        } = &noted[0].kind
        else {
            panic!("{noted:?}");
        };
        // Everything from the first minute, with the last failure's error
        // and alert (a drop's says less).
        assert_eq!(*over, Some(secs(60)));
        assert_eq!(failures.count(), 29_999);
        assert_eq!(failures.failed, 9_999);
        assert_eq!(failures.dropped, 20_000);
        assert_eq!(failures.last_alert, "alert 29997");
        assert_eq!(failures.last_error, "refused");
        assert!(!delivering);
        // The rest is due a minute after that note, on the timer.
        let due = log.poll_timeout().expect("held back");
        assert_eq!(due, t0 + secs(120));
        log.handle_timeout(due - Duration::from_millis(1));
        assert!(notes(&mut log).is_empty());
        log.handle_timeout(due);
        let noted = notes(&mut log);
        assert!(
            matches!(&noted[..], [Note { kind: NoteKind::Failed { failures, .. }, .. }]
                if failures.count() == 15_000),
            "{noted:?}"
        );
        assert_eq!(log.poll_timeout(), None);
        let totals: Vec<(&str, Totals)> = log.totals().collect();
        assert_eq!(
            totals,
            [(
                "webhook a",
                Totals {
                    failed: 15_000,
                    dropped: 30_000
                }
            )]
        );
    }

    #[test]
    fn a_recovery_is_noted_at_once_with_what_failed_since() {
        let mut log = DeliveryLog::new();
        let t0 = Instant::now();
        log.handle_outcome(t0, "exec x", ("A", None), Outcome::Delivered);
        assert!(notes(&mut log).is_empty(), "deliveries are not noted here");
        log.handle_outcome(t0, "exec x", ("A", None), Outcome::Failed("exit 1"));
        log.handle_outcome(
            t0 + secs(1),
            "exec x",
            ("B", None),
            Outcome::Failed("exit 2"),
        );
        assert_eq!(notes(&mut log).len(), 1);
        log.handle_outcome(t0 + secs(2), "exec x", ("C", None), Outcome::Delivered);
        assert_eq!(
            notes(&mut log),
            [Note {
                target: "exec x".into(),
                kind: NoteKind::Recovered {
                    failures: failed(1, 0, "exit 2", "B"),
                    over: Some(secs(2)),
                },
            }]
        );
        log.handle_outcome(t0 + secs(3), "exec x", ("D", None), Outcome::Delivered);
        assert!(notes(&mut log).is_empty(), "recovered once");
        assert_eq!(log.poll_timeout(), None);
    }

    /// A target that fails every other delivery gets at most two notes a
    /// minute, not one per failure.
    #[test]
    fn a_flapping_target_is_noted_at_most_twice_a_minute() {
        let mut log = DeliveryLog::new();
        let t0 = Instant::now();
        let mut count = 0;
        for step in 0..6000u64 {
            let now = t0 + Duration::from_millis(100 * step);
            log.handle_timeout(now);
            let outcome = if step % 2 == 0 {
                Outcome::Failed("refused")
            } else {
                Outcome::Delivered
            };
            log.handle_outcome(now, "webhook b", ("A", None), outcome);
            count += notes(&mut log).len();
        }
        // Ten minutes.
        assert!(count <= 2 * 10 + 1, "{count} notes");
        assert!(count >= 10, "{count} notes");
        // What is held back says the target delivers between failures.
        log.handle_timeout(t0 + secs(700));
        let noted = notes(&mut log);
        assert!(
            matches!(
                &noted[..],
                [Note {
                    kind: NoteKind::Failed {
                        delivering: true,
                        ..
                    },
                    ..
                }]
            ),
            "{noted:?}"
        );
    }

    #[test]
    fn targets_are_separate_and_removed_ones_report_what_they_held() {
        let mut log = DeliveryLog::new();
        let t0 = Instant::now();
        log.handle_outcome(t0, "a", ("A", None), Outcome::Failed("x"));
        log.handle_outcome(t0, "b", ("A", None), Outcome::Failed("y"));
        assert_eq!(notes(&mut log).len(), 2, "one each, at once");
        log.handle_outcome(t0 + secs(1), "a", ("B", None), Outcome::Dropped("full"));
        assert!(notes(&mut log).is_empty());
        log.retain_targets(t0 + secs(2), &["b".to_owned()]);
        let noted = notes(&mut log);
        assert!(
            matches!(&noted[..], [Note { target, kind: NoteKind::Failed { failures, .. } }]
                if target == "a" && failures.dropped == 1 && failures.last_error == "full"),
            "{noted:?}"
        );
        assert_eq!(log.totals().count(), 1);
    }
}
