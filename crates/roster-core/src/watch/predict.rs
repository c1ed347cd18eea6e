//! `predict`: the recent values of a rule and the least-squares trend
//! through them. The history keeps at most one point per
//! [`MIN_SPACING`]-th of its window, so a metric reported thousands of
//! times a second (a log window under a flood) costs a bounded fit.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back values are kept for `predict`: the horizon's fit uses the
/// rule's `for` window, at least this.
const MIN_WINDOW: Duration = Duration::from_secs(300);

/// Points per window at most: a newer value within a point's share of the
/// window replaces that point's value.
const MIN_SPACING: u32 = 300;

/// Recent values of one rule, oldest first.
#[derive(Clone, Debug, Default)]
pub struct History {
    points: VecDeque<(Instant, f64)>,
}

impl History {
    /// A value at `now`, for a rule that holds for `hold`.
    pub fn record(&mut self, now: Instant, value: f64, hold: Duration) {
        let window = hold.max(MIN_WINDOW);
        let spacing = window / MIN_SPACING;
        match self.points.back_mut() {
            Some((at, last)) if now.saturating_duration_since(*at) < spacing => *last = value,
            _ => self.points.push_back((now, value)),
        }
        while self
            .points
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > window)
        {
            self.points.pop_front();
        }
    }

    /// Where the trend is `horizon` after `now`.
    pub fn predict(&self, now: Instant, horizon: Duration) -> Option<f64> {
        predict(&self.points, now, horizon)
    }

    /// Points held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// The value a least-squares line through `history` reaches `horizon`
/// after `now` (as Prometheus' predict_linear); `None` with fewer than 3
/// points or no spread in time.
pub fn predict(history: &VecDeque<(Instant, f64)>, now: Instant, horizon: Duration) -> Option<f64> {
    if history.len() < 3 {
        return None;
    }
    let origin = history.front()?.0;
    let points: Vec<(f64, f64)> = history
        .iter()
        .map(|(at, value)| (at.saturating_duration_since(origin).as_secs_f64(), *value))
        .collect();
    let count = points.len() as f64;
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / count;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / count;
    let spread: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if spread <= f64::EPSILON {
        return None;
    }
    let slope = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum::<f64>()
        / spread;
    let at = now.saturating_duration_since(origin).as_secs_f64() + horizon.as_secs_f64();
    Some(mean_y + slope * (at - mean_x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_values_keeps_a_bounded_history() {
        let t0 = Instant::now();
        let mut history = History::default();
        for step in 0..100_000u64 {
            history.record(
                t0 + Duration::from_millis(step * 5),
                step as f64,
                Duration::ZERO,
            );
        }
        assert!(
            history.len() <= MIN_SPACING as usize + 1,
            "{}",
            history.len()
        );
        // Still a line: one per 5 ms is 200 a second.
        let now = t0 + Duration::from_millis(99_999 * 5);
        let future = history
            .predict(now, Duration::from_secs(10))
            .expect("a fit");
        assert!((future - (99_999.0 + 2_000.0)).abs() < 400.0, "{future}");
    }

    #[test]
    fn old_points_leave_the_window() {
        let t0 = Instant::now();
        let mut history = History::default();
        history.record(t0, 1.0, Duration::ZERO);
        history.record(t0 + Duration::from_secs(301), 2.0, Duration::ZERO);
        assert_eq!(history.len(), 1);
    }
}
