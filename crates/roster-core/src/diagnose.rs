//! `roster diagnose` as a decision: what the CLI collected about the
//! daemon, the journal, the logs and the host (the [`Facts`]) in, the
//! failure modes found, each with its evidence and the action it
//! recommends, out. No I/O: the CLI collects (with a timeout per
//! collector) and this module only judges and formats, so every mode is
//! tested on hand-built facts.
//!
//! Findings are sorted most severe first, then by [`Mode`] order, then by
//! agent. Mode names are a contract (`--json` prints them).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::api::{AlertRecord, EventRecord, StatusReply};

mod agents;
mod evidence;
mod home;
pub mod kernel;
mod machine;
pub mod redact;

pub use kernel::KernelOom;

/// How much a finding matters. Sorted most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Something is down or about to be.
    Critical,
    /// Something is wrong and will get worse.
    Warning,
    /// Worth knowing; nothing to fix.
    Info,
}

impl Severity {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure mode. The order of the variants is the order of findings of
/// one severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An agent dies again and again.
    CrashLoop,
    /// An agent that should run does not (it cannot start, or it ended).
    AgentDown,
    /// An agent cannot bind its address: another process holds it.
    PortTaken,
    /// An agent's health check fails.
    Unhealthy,
    /// The kernel killed an agent's process for memory.
    OomKilled,
    /// The host is short of memory, or an agent is near its limit.
    MemoryPressure,
    /// The home's filesystem is full.
    DiskFull,
    /// The home's filesystem is nearly full.
    DiskNearlyFull,
    /// The daemon does not answer.
    DaemonUnreachable,
    /// The config does not load.
    ConfigInvalid,
    /// Alerts are not delivered.
    NotifierFailing,
    /// The journal was corrupt and started over.
    JournalReset,
    /// The daemon's open-file limit is too low for its agents, or an
    /// agent is near its own.
    FileLimit,
    /// The host's load is well above its CPUs.
    HighLoad,
    /// The clock is not synchronised.
    ClockUnsynced,
}

impl Mode {
    /// Every mode, in order.
    pub const ALL: &'static [Mode] = &[
        Mode::CrashLoop,
        Mode::AgentDown,
        Mode::PortTaken,
        Mode::Unhealthy,
        Mode::OomKilled,
        Mode::MemoryPressure,
        Mode::DiskFull,
        Mode::DiskNearlyFull,
        Mode::DaemonUnreachable,
        Mode::ConfigInvalid,
        Mode::NotifierFailing,
        Mode::JournalReset,
        Mode::FileLimit,
        Mode::HighLoad,
        Mode::ClockUnsynced,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::CrashLoop => "crash_loop",
            Mode::AgentDown => "agent_down",
            Mode::PortTaken => "port_taken",
            Mode::Unhealthy => "unhealthy",
            Mode::OomKilled => "oom_killed",
            Mode::MemoryPressure => "memory_pressure",
            Mode::DiskFull => "disk_full",
            Mode::DiskNearlyFull => "disk_nearly_full",
            Mode::DaemonUnreachable => "daemon_unreachable",
            Mode::ConfigInvalid => "config_invalid",
            Mode::NotifierFailing => "notifier_failing",
            Mode::JournalReset => "journal_reset",
            Mode::FileLimit => "file_limit",
            Mode::HighLoad => "high_load",
            Mode::ClockUnsynced => "clock_unsynced",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong, with why we think so and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The failure mode.
    pub mode: Mode,
    /// How much it matters.
    pub severity: Severity,
    /// The agent concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// What was seen, one fact a line.
    pub evidence: Vec<String>,
    /// What to do next.
    pub action: String,
}

impl Finding {
    /// Whether it makes `diagnose` exit 1.
    pub fn is_problem(&self) -> bool {
        self.severity != Severity::Info
    }
}

/// What the daemon said, or why it said nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum Daemon {
    /// `GET /v1/status` answered.
    Answered(StatusReply),
    /// Nothing listens on the socket (no daemon runs for the home).
    NotRunning {
        /// The socket tried.
        socket: String,
    },
    /// It did not answer within the collector's timeout.
    TimedOut {
        /// The socket tried.
        socket: String,
        /// How long it was given, in milliseconds.
        waited_ms: u64,
    },
    /// It answered with an error, or something else failed.
    Failed {
        /// The socket tried.
        socket: String,
        /// What went wrong.
        error: String,
    },
}

/// The config, as the CLI found and loaded it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ConfigCheck {
    /// No config was found to judge.
    #[default]
    NotFound,
    /// It loads.
    Valid {
        /// The file.
        path: String,
        /// Each agent's `memory_max`, where set.
        memory_max: BTreeMap<String, u64>,
        /// Each agent's `nofile`, where set.
        nofile: BTreeMap<String, u64>,
    },
    /// It does not load.
    Invalid {
        /// The file.
        path: String,
        /// The checker's report (`FILE:LINE:COL: ...` lines).
        error: String,
    },
}

/// How full the home's filesystem is, and what takes the space.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// The path measured (the home).
    pub path: String,
    /// The filesystem's size.
    pub total_bytes: u64,
    /// Free for an unprivileged user (`df`'s available).
    pub available_bytes: u64,
    /// Used, as `df` counts it, percent.
    pub used_percent: f64,
    /// What takes space in the home, largest first: (what, bytes), e.g.
    /// `rotated logs`, `current logs`, `releases`, `other files in the home`.
    pub usage: Vec<(String, u64)>,
}

/// The host's memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// MemTotal.
    pub total_bytes: u64,
    /// MemAvailable.
    pub available_bytes: u64,
    /// SwapTotal.
    pub swap_total_bytes: u64,
    /// SwapFree.
    pub swap_free_bytes: u64,
}

/// What was learnt of the host; `None` where it could not be read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// The home's filesystem.
    pub disk: Option<Disk>,
    /// Memory and swap.
    pub memory: Option<Memory>,
    /// The 1, 5 and 15 minute load averages.
    pub load: Option<[f64; 3]>,
    /// Online CPUs.
    pub cpus: Option<u64>,
    /// The open-file limit (soft, hard) of this process (the CLI).
    pub open_files_limit: Option<(u64, u64)>,
    /// Whether the clock is synchronised, where known.
    pub clock_synchronised: Option<bool>,
    /// The daemon's open-file limit (soft, hard), from its
    /// `/proc/PID/limits`, where it runs and could be read.
    #[serde(default)]
    pub daemon_open_files_limit: Option<(u64, u64)>,
    /// The descriptors the daemon holds open, where they could be counted.
    #[serde(default)]
    pub daemon_open_files: Option<u64>,
}

/// A process holding an address an agent wants, as /proc shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortHolder {
    /// The address, e.g. `127.0.0.1:8080`.
    pub address: String,
    /// Its holder, when /proc shows it.
    pub pid: Option<u32>,
    /// The holder's command name.
    pub command: Option<String>,
}

/// Everything `diagnose` judges.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The daemon's status, or why there is none.
    pub daemon: Daemon,
    /// Journal events in the window, oldest first.
    pub events: Vec<EventRecord>,
    /// Alerts firing now.
    pub alerts: Vec<AlertRecord>,
    /// The last lines of each agent's log, oldest first.
    pub logs: BTreeMap<String, Vec<String>>,
    /// Per agent, the processes holding the addresses it wants (looked up
    /// by the CLI for agents whose log or error says the address is taken).
    pub port_holders: BTreeMap<String, Vec<PortHolder>>,
    /// OOM kills per agent from the memory cgroups (`memory.events`), where
    /// they could be read.
    pub oom_kills: BTreeMap<String, u64>,
    /// OOM kills in the kernel log within the window, where it could be
    /// read, oldest first.
    pub kernel_oom: Vec<KernelOom>,
    /// The name of this home's cgroup directory (`roster-<home id>`):
    /// a kernel OOM kill in `<...>/<it>/AGENT` is that agent's.
    pub home_cgroup: Option<String>,
    /// The host.
    pub host: Host,
    /// The config.
    pub config: ConfigCheck,
    /// How far back `events` go, for the evidence's words (e.g. `1h`).
    pub window: String,
}

/// Used at or above this percent: `disk_full`.
pub const DISK_FULL_PERCENT: f64 = 98.0;
/// Used at or above this percent: `disk_nearly_full`.
pub const DISK_NEARLY_FULL_PERCENT: f64 = 90.0;
/// Free below this: `disk_full`, whatever the percentage.
pub const DISK_FULL_FLOOR: u64 = 1 << 20;
/// Free below this: `disk_nearly_full`, whatever the percentage.
pub const DISK_NEARLY_FULL_FLOOR: u64 = 8 << 20;
/// MemAvailable below this share of MemTotal: warning.
pub const MEMORY_LOW_PERCENT: f64 = 10.0;
/// MemAvailable below this share of MemTotal: critical.
pub const MEMORY_CRITICAL_PERCENT: f64 = 5.0;
/// An agent at or above this share of its `memory_max`: warning.
pub const LIMIT_SHARE_PERCENT: f64 = 90.0;
/// Deaths in the window that make a running agent's restarts a crash loop.
pub const CRASH_LOOP_DEATHS: usize = 3;
/// The 5-minute load above this many times the CPUs: `high_load` warning.
pub const LOAD_WARNING_PER_CPU: f64 = 2.0;
/// The 5-minute load above this many times the CPUs: `high_load` critical.
pub const LOAD_CRITICAL_PER_CPU: f64 = 4.0;
/// The daemon's descriptors besides its agents' (journal, socket, API
/// connections, probes, notifiers, its runtime).
pub const DAEMON_FILES_BASE: u64 = 128;
/// The daemon's descriptors per agent: its output pipe and log file, twice
/// during a blue-green cutover.
pub const DAEMON_FILES_PER_AGENT: u64 = 4;
/// Descriptors in use at or above this share of a soft limit: warning
/// (the daemon's, or an agent's `nofile`).
pub const FILES_SHARE_PERCENT: f64 = 80.0;
/// The daemon's descriptors at or above this share of its soft limit:
/// critical (it is about to fail to start agents or answer).
pub const FILES_CRITICAL_PERCENT: f64 = 95.0;
/// At most this many evidence lines quoted from one source.
pub(crate) const QUOTED: usize = 3;

/// Whether a line says an address is in use (a bind error).
pub fn says_address_in_use(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("address already in use")
        || lower.contains("eaddrinuse")
        || lower.contains("address in use")
}

/// Judges the facts: every finding, sorted.
pub fn classify(facts: &Facts) -> Vec<Finding> {
    let mut found = Vec::new();
    home::daemon_findings(facts, &mut found);
    if let Daemon::Answered(status) = &facts.daemon {
        agents::agent_findings(facts, status, &mut found);
        if status
            .warnings
            .iter()
            .any(|warning| warning.contains("journal was corrupt"))
        {
            home::journal_reset(facts, status, &mut found);
        } else {
            home::journal_reset_from_events(facts, &mut found);
        }
    } else {
        home::journal_reset_from_events(facts, &mut found);
        agents::oom_from_events_only(facts, &mut found);
    }
    agents::oom_of_no_agent(facts, &mut found);
    home::config_findings(facts, &mut found);
    home::disk_findings(facts, &mut found);
    home::memory_findings(facts, &mut found);
    home::notifier_findings(facts, &mut found);
    machine::file_limit(facts, &mut found);
    machine::high_load(facts, &mut found);
    machine::clock_unsynced(facts, &mut found);
    point_to_causes(&mut found);
    sort(&mut found);
    found
}

/// A crash loop or an agent down whose cause is a taken port says so in
/// its action (the cause is its own finding, with the holder).
fn point_to_causes(found: &mut [Finding]) {
    let of = |mode: Mode| -> Vec<Option<String>> {
        found
            .iter()
            .filter(|found| found.mode == mode && found.agent.is_some())
            .map(|found| found.agent.clone())
            .collect()
    };
    let (taken, killed) = (of(Mode::PortTaken), of(Mode::OomKilled));
    for finding in found
        .iter_mut()
        .filter(|found| matches!(found.mode, Mode::CrashLoop | Mode::AgentDown))
    {
        let name = finding.agent.as_deref().unwrap_or_default();
        if taken.contains(&finding.agent) {
            finding.action = format!(
                "its address is taken by another process (see port_taken): free it, then `roster restart {name}`"
            );
        } else if killed.contains(&finding.agent) {
            finding.action = format!(
                "the kernel kills it for memory (see oom_killed): raise its memory_max or fix the leak, then `roster start {name}`"
            );
        }
    }
}

/// Most severe first, then mode order, then agent (host-wide first).
pub fn sort(found: &mut [Finding]) {
    found.sort_by(|a, b| (a.severity, a.mode, &a.agent).cmp(&(b.severity, b.mode, &b.agent)));
}

/// Bytes as `12.3MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// The human report: one block per finding, or `nothing wrong found`.
pub fn render(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "nothing wrong found\n".to_owned();
    }
    let mut text = String::new();
    for found in findings {
        text.push_str(&found.severity.as_str().to_ascii_uppercase());
        text.push(' ');
        text.push_str(found.mode.as_str());
        if let Some(agent) = &found.agent {
            text.push_str(&format!(" [{agent}]"));
        }
        text.push_str(":\n");
        for line in &found.evidence {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("  action: ");
        text.push_str(&found.action);
        text.push_str("\n\n");
    }
    let problems = findings.iter().filter(|found| found.is_problem()).count();
    text.push_str(&format!(
        "{} finding(s), {problems} to act on\n",
        findings.len()
    ));
    text
}

#[cfg(test)]
mod tests;
