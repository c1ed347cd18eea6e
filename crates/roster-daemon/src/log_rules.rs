//! The `log_matches` patterns of one agent, and the counts its writer adds
//! up for the loop.
//!
//! A flood of matching lines must cost the loop nothing per line: writers
//! add to per-rule counters here, and tell the loop only when the counters
//! go from taken to pending ([`LogRules::add`] returns true once). The loop
//! takes everything pending in one go ([`LogRules::take`]), so it hears
//! from an agent at most once per pass, however many lines or batches
//! arrived in between.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The daemon's handle on a writer's patterns.
pub type SharedLogRules = Arc<std::sync::RwLock<Option<Arc<LogRules>>>>;

/// The `log_matches` rules of one agent, as applied.
#[derive(Debug)]
pub struct LogRules {
    rules: Vec<Rule>,
    /// Counts wait for the loop, which has been told.
    pending: AtomicBool,
}

#[derive(Debug)]
struct Rule {
    /// The rule's index among the agent's rules.
    index: usize,
    pattern: regex::bytes::Regex,
    /// Matches not yet taken by the loop.
    count: AtomicU64,
}

impl LogRules {
    /// Compiles the patterns, (rule index, pattern); rules whose pattern
    /// does not compile (the config check refuses them) are left out.
    pub fn new(patterns: &[(usize, String)]) -> Option<Self> {
        let rules: Vec<Rule> = patterns
            .iter()
            .filter_map(|(index, pattern)| {
                Some(Rule {
                    index: *index,
                    pattern: regex::bytes::Regex::new(pattern).ok()?,
                    count: AtomicU64::new(0),
                })
            })
            .collect();
        (!rules.is_empty()).then_some(Self {
            rules,
            pending: AtomicBool::new(false),
        })
    }

    /// Counts one line into `tally` (a writer's, per call): (rule
    /// position, matches).
    pub fn count_line(&self, line: &[u8], tally: &mut Vec<(usize, u64)>) {
        for (position, rule) in self.rules.iter().enumerate() {
            if rule.pattern.is_match(line) {
                match tally.iter_mut().find(|(at, _)| *at == position) {
                    Some((_, count)) => *count += 1,
                    None => tally.push((position, 1)),
                }
            }
        }
    }

    /// Adds a writer's tally; true when the loop must be told (nothing was
    /// pending since it last took the counts).
    pub fn add(&self, tally: &[(usize, u64)]) -> bool {
        let mut added = false;
        for (position, count) in tally {
            if let Some(rule) = self.rules.get(*position) {
                rule.count.fetch_add(*count, Ordering::Relaxed);
                added |= *count > 0;
            }
        }
        // After the counts: the loop clears `pending` before it takes them,
        // so counts added after a take always find it clear and tell again.
        added && !self.pending.swap(true, Ordering::AcqRel)
    }

    /// Everything pending: (rule index, matches) for rules with any.
    pub fn take(&self) -> Vec<(usize, u64)> {
        self.pending.store(false, Ordering::Release);
        self.rules
            .iter()
            .filter_map(|rule| {
                let count = rule.count.swap(0, Ordering::AcqRel);
                (count > 0).then_some((rule.index, count))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LogRules {
        LogRules::new(&[
            (0, "(?i)error".to_owned()),
            (2, "[".to_owned()),
            (3, "timeout".to_owned()),
        ])
        .expect("rules")
    }

    #[test]
    fn the_loop_is_told_once_until_it_takes_the_counts() {
        let rules = rules();
        let mut tally = Vec::new();
        rules.count_line(b"ERROR one\n", &mut tally);
        rules.count_line(b"error and timeout\n", &mut tally);
        rules.count_line(b"fine\n", &mut tally);
        assert!(rules.add(&tally), "first counts tell the loop");
        assert!(!rules.add(&tally), "already told");
        // The broken pattern is left out; indices are the rules'.
        assert_eq!(rules.take(), vec![(0, 4), (3, 2)]);
        assert_eq!(rules.take(), vec![]);
        assert!(rules.add(&[(0, 1)]), "after a take, new counts tell again");
        assert!(!rules.add(&[]), "nothing counted, nothing to tell");
    }

    #[test]
    fn counts_added_from_many_threads_are_all_taken() {
        let rules = Arc::new(rules());
        let told = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rules = rules.clone();
                let told = told.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if rules.add(&[(0, 1)]) {
                            told.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let mut taken = 0;
        let mut takes = 0;
        while threads.iter().any(|thread| !thread.is_finished()) {
            taken += rules.take().iter().map(|(_, count)| count).sum::<u64>();
            takes += 1;
        }
        for thread in threads {
            thread.join().expect("thread");
        }
        taken += rules.take().iter().map(|(_, count)| count).sum::<u64>();
        assert_eq!(taken, 40_000);
        // Told at most once per take (plus the first).
        assert!(told.load(Ordering::Relaxed) <= takes + 1);
    }
}
