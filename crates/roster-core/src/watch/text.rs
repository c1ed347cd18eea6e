//! How rules and their values read in alerts: in the metric's own units
//! (`286 MiB`, `85%`, `1200`), and a prediction said as one
//! ("memory_bytes predicted to cross 286 MiB within 30m (now 221 MiB)"),
//! not as a threshold the value is visibly below.

use super::{Metric, Threshold, WatchRule};
use crate::units::{format_duration, format_size};

impl Metric {
    /// A value of this metric as people read it.
    pub fn format_value(self, value: f64) -> String {
        match self {
            Metric::MemoryBytes => format_bytes(value),
            Metric::MemoryPercent
            | Metric::CpuPercent
            | Metric::DiskPercent
            | Metric::MemoryAvailablePercent => format!("{}%", round(value)),
            Metric::Load1 => format!("{:.2}", value),
            Metric::OpenFiles | Metric::Connections | Metric::Threads | Metric::LogMatches => {
                round(value)
            }
        }
    }
}

/// Bytes in binary units as [`format_size`] writes them, with a space
/// before the unit for prose: `512 B`, `1.5 KiB`, `286 MiB`, `2 GiB`.
pub fn format_bytes(bytes: f64) -> String {
    // Negative or not a number: no bytes (`as` saturates and maps NaN to 0).
    let size = format_size(bytes.max(0.0).round() as u64);
    match size.find(|c: char| c.is_ascii_alphabetic()) {
        Some(unit) => format!("{} {}", &size[..unit], &size[unit..]),
        None => size,
    }
}

/// A value with no fraction as an integer, else one decimal.
pub(super) fn round(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

impl WatchRule {
    /// `above 286 MiB`: the threshold in the metric's units.
    fn bound(&self) -> String {
        match self.threshold {
            Threshold::Above(limit) => format!("above {}", self.metric.format_value(limit)),
            Threshold::Below(limit) => format!("below {}", self.metric.format_value(limit)),
        }
    }

    fn limit(&self) -> f64 {
        match self.threshold {
            Threshold::Above(limit) | Threshold::Below(limit) => limit,
        }
    }

    /// One line: `memory_percent above 85% for 1m`.
    pub fn describe(&self) -> String {
        let mut text = match &self.pattern {
            Some(pattern) => format!(
                "log lines matching /{pattern}/ {} within {}",
                self.bound(),
                format_duration(self.within)
            ),
            None => format!("{} {}", self.metric, self.bound()),
        };
        if let Some(path) = &self.path {
            text.push_str(&format!(" ({})", path.display()));
        }
        if !self.hold.is_zero() {
            text.push_str(&format!(" for {}", format_duration(self.hold)));
        }
        if let Some(horizon) = self.predict {
            text.push_str(&format!(
                ", or predicted to be within {}",
                format_duration(horizon)
            ));
        }
        text
    }

    /// What an alert of this rule says, with the value `now` when known:
    /// a rule with `predict` whose value has not crossed yet fired on its
    /// trend, and says that.
    pub fn summary(&self, firing: bool, now: Option<f64>) -> String {
        let predicted = firing
            && matches!((self.predict, now), (Some(_), Some(value)) if !self.threshold.holds(value));
        let mut text = match (predicted, self.predict) {
            (true, Some(horizon)) => {
                let mut text = format!(
                    "{} predicted to cross {} within {}",
                    self.metric,
                    self.metric.format_value(self.limit()),
                    format_duration(horizon)
                );
                if let Some(path) = &self.path {
                    text.push_str(&format!(" ({})", path.display()));
                }
                text
            }
            _ => self.describe(),
        };
        if let Some(value) = now {
            text.push_str(&format!(" (now {})", self.metric.format_value(value)));
        }
        if firing {
            text
        } else {
            format!("resolved: {text}")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::watch::RuleAction;

    #[test]
    fn values_read_in_their_units() {
        assert_eq!(format_bytes(300_000_000.0), "286 MiB");
        assert_eq!(format_bytes(231_952_384.0), "221 MiB");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(2.0 * 1024.0 * 1024.0 * 1024.0), "2 GiB");
        assert_eq!(Metric::MemoryPercent.format_value(85.0), "85%");
        assert_eq!(Metric::CpuPercent.format_value(12.34), "12.3%");
        assert_eq!(Metric::Connections.format_value(1200.0), "1200");
        assert_eq!(Metric::Load1.format_value(1.5), "1.50");
    }

    #[test]
    fn a_prediction_reads_as_one() {
        let mut rule = WatchRule::new(
            Metric::MemoryBytes,
            Threshold::Above(300_000_000.0),
            Duration::from_secs(10),
            RuleAction::Alert,
        );
        rule.predict = Some(Duration::from_secs(1800));
        assert_eq!(
            rule.summary(true, Some(231_952_384.0)),
            "memory_bytes predicted to cross 286 MiB within 30m (now 221 MiB)"
        );
        // Past the threshold, it is simply above it.
        assert_eq!(
            rule.summary(true, Some(310_000_000.0)),
            "memory_bytes above 286 MiB for 10s, or predicted to be within 30m (now 296 MiB)"
        );
        assert_eq!(
            rule.summary(false, Some(100_000_000.0)),
            "resolved: memory_bytes above 286 MiB for 10s, or predicted to be within 30m (now 95 MiB)"
        );
    }
}
