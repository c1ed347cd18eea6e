//! When the daemon gives back memory that bursts of work left behind.
//!
//! Start-up, an apply or a deploy run code that an idle daemon never runs
//! again (the config checker, SQLite's schema work, the HTTP stack), and the
//! pages of the binary they touched stay mapped, counted in the daemon's
//! resident set, until the kernel needs them. Once the daemon has been quiet
//! for a while after such work, it drops those pages from its mapping (they
//! stay in the page cache; what idle work needs faults back in at once) and
//! returns freed heap to the system. This module decides when: `quiet` after
//! the last activity, and at most once per `min_interval`, so a steady
//! trickle of requests costs one trim a minute, not one per request.

use std::time::{Duration, Instant};

/// How long the daemon must be quiet after work before it trims.
pub const QUIET: Duration = Duration::from_secs(10);
/// The shortest time between two trims.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// The trim timer: fed activity, read through `poll_timeout`, fired
/// through `handle_timeout`.
#[derive(Clone, Debug)]
pub struct Trim {
    quiet: Duration,
    min_interval: Duration,
    /// The last activity not yet followed by a trim.
    pending: Option<Instant>,
    last_trim: Option<Instant>,
}

impl Trim {
    /// A timer with the daemon's defaults; start-up at `now` is the first
    /// activity.
    pub fn new(now: Instant) -> Self {
        Self::with(now, QUIET, MIN_INTERVAL)
    }

    /// A timer with other intervals (tests, benches).
    pub fn with(now: Instant, quiet: Duration, min_interval: Duration) -> Self {
        Trim {
            quiet,
            min_interval,
            pending: Some(now),
            last_trim: None,
        }
    }

    /// Work happened at `now` (a request, an apply, a deploy step).
    pub fn handle_activity(&mut self, now: Instant) {
        self.pending = Some(match self.pending {
            Some(last) if last > now => last,
            _ => now,
        });
    }

    /// When the next trim is due, if one is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let last = self.pending?;
        let quiet_from = last + self.quiet;
        Some(match self.last_trim {
            Some(trimmed) => quiet_from.max(trimmed + self.min_interval),
            None => quiet_from,
        })
    }

    /// Whether to trim now; when it says yes, the trim counts as done.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.poll_timeout() {
            Some(due) if due <= now => {
                self.pending = None;
                self.last_trim = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn trims_once_when_quiet_after_start_up_then_waits_for_work() {
        let t0 = Instant::now();
        let mut trim = Trim::new(t0);
        assert_eq!(trim.poll_timeout(), Some(t0 + QUIET));
        assert!(!trim.handle_timeout(t0 + S(9)));
        assert!(trim.handle_timeout(t0 + S(10)));
        // Idle from here on: nothing more to do, however long it lasts.
        assert_eq!(trim.poll_timeout(), None);
        assert!(!trim.handle_timeout(t0 + S(3600)));
    }

    #[test]
    fn activity_pushes_the_trim_back_until_the_daemon_is_quiet() {
        let t0 = Instant::now();
        let mut trim = Trim::new(t0);
        trim.handle_activity(t0 + S(8));
        assert!(!trim.handle_timeout(t0 + S(10)));
        assert_eq!(trim.poll_timeout(), Some(t0 + S(18)));
        trim.handle_activity(t0 + S(17));
        assert!(!trim.handle_timeout(t0 + S(18)));
        assert!(trim.handle_timeout(t0 + S(27)));
    }

    #[test]
    fn a_trickle_of_requests_trims_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut trim = Trim::new(t0);
        assert!(trim.handle_timeout(t0 + S(10)));
        let mut trims = 0;
        // A request every 15 s for ten minutes: quiet after each one.
        for request in 1..=40u64 {
            let at = t0 + S(10 + request * 15);
            trim.handle_activity(at);
            if trim.handle_timeout(at + S(12)) {
                trims += 1;
            }
        }
        assert!(
            (9..=11).contains(&trims),
            "{trims} trims in ten minutes, one a minute expected"
        );
    }

    #[test]
    fn activity_reported_out_of_order_never_moves_the_trim_earlier() {
        let t0 = Instant::now();
        let mut trim = Trim::new(t0 + S(5));
        trim.handle_activity(t0);
        assert_eq!(trim.poll_timeout(), Some(t0 + S(5) + QUIET));
    }
}
