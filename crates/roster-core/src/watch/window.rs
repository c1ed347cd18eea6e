//! The sliding window of a `log_matches` rule: how many lines matched in
//! the last `within`, kept as a running total over at most [`BUCKETS`] time
//! buckets. Adding a batch and reading the count cost O(1) (amortized) and
//! the memory is bounded whatever the flood: an agent printing 20,000
//! matching lines a second costs no more than one printing one a minute.
//!
//! The price is resolution: a bucket's matches leave the window together,
//! when the bucket's first match is `within` old, so near the window's old
//! edge the count may fall short by at most one bucket (1/60 of the window).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Buckets per window.
pub const BUCKETS: u32 = 60;

/// The shortest bucket, so a tiny window still merges a burst's batches.
const MIN_BUCKET: Duration = Duration::from_millis(10);

/// Matches counted over a sliding window.
#[derive(Clone, Debug, Default)]
pub struct LogWindow {
    /// (first match in the bucket, matches in it), oldest first.
    buckets: VecDeque<(Instant, u64)>,
    /// The sum of `buckets`' counts.
    total: u64,
}

impl LogWindow {
    /// `count` more matches at `now`.
    pub fn add(&mut self, now: Instant, count: u64, within: Duration) {
        self.expire(now, within);
        let width = bucket_width(within);
        match self.buckets.back_mut() {
            Some((start, matches)) if now.saturating_duration_since(*start) < width => {
                *matches = matches.saturating_add(count);
            }
            _ => self.buckets.push_back((now, count)),
        }
        self.total = self.total.saturating_add(count);
    }

    /// Matches within the window that ends at `now`; older buckets go.
    pub fn count(&mut self, now: Instant, within: Duration) -> u64 {
        self.expire(now, within);
        self.total
    }

    /// When the oldest bucket leaves the window (the count drops then).
    pub fn next_change(&self, within: Duration) -> Option<Instant> {
        self.buckets.front().map(|(start, _)| *start + within)
    }

    /// Buckets held (for tests: bounded whatever the flood).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    fn expire(&mut self, now: Instant, within: Duration) {
        while let Some((start, matches)) = self.buckets.front() {
            if now.saturating_duration_since(*start) < within {
                break;
            }
            self.total = self.total.saturating_sub(*matches);
            self.buckets.pop_front();
        }
    }
}

fn bucket_width(within: Duration) -> Duration {
    (within / BUCKETS).max(MIN_BUCKET)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn counts_what_is_within_and_forgets_what_left() {
        let t0 = Instant::now();
        let within = secs(60);
        let mut window = LogWindow::default();
        window.add(t0, 3, within);
        window.add(t0 + secs(30), 2, within);
        assert_eq!(window.count(t0 + secs(59), within), 5);
        assert_eq!(window.next_change(within), Some(t0 + secs(60)));
        assert_eq!(window.count(t0 + secs(60), within), 2);
        assert_eq!(window.count(t0 + secs(90), within), 0);
        assert_eq!(window.next_change(within), None);
    }

    #[test]
    fn a_flood_is_held_in_a_bounded_number_of_buckets() {
        let t0 = Instant::now();
        let within = secs(300);
        let mut window = LogWindow::default();
        // 20,000 lines a second for ten minutes, in batches every 5 ms.
        let mut total_in_window = 0;
        for step in 0..(600 * 200u64) {
            let now = t0 + Duration::from_millis(step * 5);
            window.add(now, 100, within);
            total_in_window = window.count(now, within);
            assert!(window.buckets() <= BUCKETS as usize + 1);
        }
        // The last five minutes' 6,000,000 lines, short of at most one
        // bucket at the old edge.
        let expected = 300 * 20_000;
        let bucket = expected / u64::from(BUCKETS);
        assert!(
            total_in_window <= expected && total_in_window + bucket >= expected,
            "{total_in_window} vs {expected}"
        );
    }

    #[test]
    fn batches_close_together_share_a_bucket() {
        let t0 = Instant::now();
        let within = secs(60);
        let mut window = LogWindow::default();
        window.add(t0, 1, within);
        window.add(t0 + Duration::from_millis(999), 1, within);
        assert_eq!(window.buckets(), 1);
        window.add(t0 + secs(1), 1, within);
        assert_eq!(window.buckets(), 2);
        assert_eq!(window.count(t0 + secs(1), within), 3);
    }

    #[test]
    fn counts_saturate_instead_of_overflowing() {
        let t0 = Instant::now();
        let mut window = LogWindow::default();
        window.add(t0, u64::MAX, secs(10));
        window.add(t0, 5, secs(10));
        assert_eq!(window.count(t0, secs(10)), u64::MAX);
        assert_eq!(window.count(t0 + secs(10), secs(10)), 0);
    }
}
