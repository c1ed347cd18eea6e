//! A watch rule as the config declares it: what it looks at (`Metric`),
//! when it holds (`Threshold`), what it does (`RuleAction`), and the graded
//! defaults an agent gets when it declares none.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Resident memory of the agent's process tree, bytes.
    MemoryBytes,
    /// That memory as a percentage of the machine's.
    MemoryPercent,
    /// CPU of the tree, percent of one core.
    CpuPercent,
    /// Open file descriptors of the tree.
    OpenFiles,
    /// TCP sockets of the tree.
    Connections,
    /// Threads of the tree.
    Threads,
    /// Log lines matching `pattern` within `within`.
    LogMatches,
    /// Used space of the filesystem holding `path`, percent.
    DiskPercent,
    /// Memory available to new work (MemAvailable), percent of the total.
    MemoryAvailablePercent,
    /// The one-minute load average.
    Load1,
}

/// Every metric with its config spelling.
pub const METRICS: [(Metric, &str); 10] = [
    (Metric::MemoryBytes, "memory_bytes"),
    (Metric::MemoryPercent, "memory_percent"),
    (Metric::CpuPercent, "cpu_percent"),
    (Metric::OpenFiles, "open_files"),
    (Metric::Connections, "connections"),
    (Metric::Threads, "threads"),
    (Metric::LogMatches, "log_matches"),
    (Metric::DiskPercent, "disk_percent"),
    (Metric::MemoryAvailablePercent, "memory_available_percent"),
    (Metric::Load1, "load1"),
];

impl Metric {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        METRICS
            .iter()
            .find(|(metric, _)| *metric == self)
            .map(|(_, name)| *name)
            .unwrap_or("?")
    }

    /// Parses the config spelling.
    pub fn from_name(raw: &str) -> Option<Metric> {
        METRICS
            .iter()
            .find(|(_, name)| *name == raw)
            .map(|(metric, _)| *metric)
    }

    /// Whether it describes the host rather than an agent.
    pub fn is_host(self) -> bool {
        matches!(
            self,
            Metric::DiskPercent | Metric::MemoryAvailablePercent | Metric::Load1
        )
    }

    /// The alert name (Alertmanager's `alertname`) when a rule on it fires.
    pub(super) fn alert_name(self) -> &'static str {
        match self {
            Metric::MemoryBytes | Metric::MemoryPercent => "AgentMemoryHigh",
            Metric::CpuPercent => "AgentCpuHigh",
            Metric::OpenFiles => "AgentOpenFilesHigh",
            Metric::Connections => "AgentConnectionsHigh",
            Metric::Threads => "AgentThreadsHigh",
            Metric::LogMatches => "AgentLogMatches",
            Metric::DiskPercent => "HostDiskFull",
            Metric::MemoryAvailablePercent => "HostMemoryLow",
            Metric::Load1 => "HostLoadHigh",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do when a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// An alert.
    Alert,
    /// An alert carrying a snapshot of the agent.
    Investigate,
    /// An alert, and a drained restart (rate-limited).
    Restart,
    /// An alert, and a graceful stop.
    Stop,
    /// (disk) An alert, and the oldest rotated logs deleted until below.
    CleanLogs,
}

impl RuleAction {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Alert => "alert",
            RuleAction::Investigate => "investigate",
            RuleAction::Restart => "restart",
            RuleAction::Stop => "stop",
            RuleAction::CleanLogs => "clean_logs",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(raw: &str) -> Option<RuleAction> {
        [
            RuleAction::Alert,
            RuleAction::Investigate,
            RuleAction::Restart,
            RuleAction::Stop,
            RuleAction::CleanLogs,
        ]
        .into_iter()
        .find(|action| action.as_str() == raw)
    }

    pub(super) fn severity(self) -> &'static str {
        match self {
            RuleAction::Alert | RuleAction::Investigate => "warning",
            RuleAction::Restart | RuleAction::Stop | RuleAction::CleanLogs => "critical",
        }
    }
}

/// The threshold side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// Holds when the value is above.
    Above(f64),
    /// Holds when the value is below.
    Below(f64),
}

impl Threshold {
    pub(super) fn holds(self, value: f64) -> bool {
        match self {
            Threshold::Above(limit) => value > limit,
            Threshold::Below(limit) => value < limit,
        }
    }

    pub(super) fn limit(self) -> f64 {
        match self {
            Threshold::Above(limit) | Threshold::Below(limit) => limit,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Above(limit) => write!(f, "above {limit}"),
            Threshold::Below(limit) => write!(f, "below {limit}"),
        }
    }
}

/// One `[[agents.NAME.watch]]` or `[[host.watch]]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchRule {
    /// What it looks at.
    pub metric: Metric,
    /// When it holds.
    pub threshold: Threshold,
    /// How long it must hold before it fires.
    pub hold: Duration,
    /// What firing does.
    pub action: RuleAction,
    /// The regular expression (log_matches).
    pub pattern: Option<String>,
    /// The window log matches are counted in.
    pub within: Duration,
    /// Fire when the trend will cross the threshold this soon.
    pub predict: Option<Duration>,
    /// Send a firing alert again this often.
    pub repeat_every: Option<Duration>,
    /// The filesystem (disk_percent).
    pub path: Option<PathBuf>,
}

impl WatchRule {
    /// A rule with the defaults of the optional keys.
    pub fn new(metric: Metric, threshold: Threshold, hold: Duration, action: RuleAction) -> Self {
        Self {
            metric,
            threshold,
            hold,
            action,
            pattern: None,
            within: Duration::from_secs(60),
            predict: None,
            repeat_every: None,
            path: None,
        }
    }
}

/// The graded scheme an agent gets when it declares no rules: memory above
/// 85% for 1m alerts, above 95% for 30s restarts; CPU above 90% for 5m
/// investigates; more than 1000 connections investigate.
pub fn default_agent_rules() -> Vec<WatchRule> {
    vec![
        WatchRule::new(
            Metric::MemoryPercent,
            Threshold::Above(85.0),
            Duration::from_secs(60),
            RuleAction::Alert,
        ),
        WatchRule::new(
            Metric::MemoryPercent,
            Threshold::Above(95.0),
            Duration::from_secs(30),
            RuleAction::Restart,
        ),
        WatchRule::new(
            Metric::CpuPercent,
            Threshold::Above(90.0),
            Duration::from_secs(300),
            RuleAction::Investigate,
        ),
        WatchRule::new(
            Metric::Connections,
            Threshold::Above(1000.0),
            Duration::ZERO,
            RuleAction::Investigate,
        ),
    ]
}

/// What a sampler must read of an agent's processes for its rules beyond
/// the figures every reading has (memory, CPU, threads: one `stat` per
/// process). Descriptors cost a read of their table, and TCP sockets a
/// look at every descriptor and the machine's TCP tables, so they are
/// read only for agents with a rule on them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readings {
    /// Open descriptors (`open_files`).
    pub open_files: bool,
    /// TCP sockets among them (`connections`).
    pub connections: bool,
}

impl Readings {
    /// What `rules` need.
    pub fn of(rules: &[WatchRule]) -> Self {
        Self {
            open_files: rules.iter().any(|rule| rule.metric == Metric::OpenFiles),
            connections: rules.iter().any(|rule| rule.metric == Metric::Connections),
        }
    }
}

#[cfg(test)]
mod readings_tests {
    use super::*;

    #[test]
    fn reads_descriptors_only_for_rules_on_them() {
        let rule = |metric| {
            WatchRule::new(
                metric,
                Threshold::Above(1.0),
                Duration::ZERO,
                RuleAction::Alert,
            )
        };
        assert_eq!(Readings::of(&[]), Readings::default());
        assert_eq!(
            Readings::of(&[
                rule(Metric::MemoryBytes),
                rule(Metric::CpuPercent),
                rule(Metric::Threads)
            ]),
            Readings::default(),
            "stat alone"
        );
        assert_eq!(
            Readings::of(&[rule(Metric::OpenFiles)]),
            Readings {
                open_files: true,
                connections: false
            }
        );
        assert_eq!(
            Readings::of(&default_agent_rules()),
            Readings {
                open_files: false,
                connections: true
            },
            "the defaults watch connections"
        );
    }
}
