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

use crate::api::{AgentState, AlertRecord, EventRecord, Health, StatusReply};

pub mod redact;

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
    /// The open-file limit (soft, hard) of this process.
    pub open_files_limit: Option<(u64, u64)>,
    /// Whether the clock is synchronised, where known.
    pub clock_synchronised: Option<bool>,
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
/// At most this many evidence lines quoted from one source.
const QUOTED: usize = 3;

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
    daemon_findings(facts, &mut found);
    if let Daemon::Answered(status) = &facts.daemon {
        agent_findings(facts, status, &mut found);
        if status
            .warnings
            .iter()
            .any(|warning| warning.contains("journal was corrupt"))
        {
            journal_reset(facts, status, &mut found);
        } else {
            journal_reset_from_events(facts, &mut found);
        }
    } else {
        journal_reset_from_events(facts, &mut found);
        oom_from_events_only(facts, &mut found);
    }
    config_findings(facts, &mut found);
    disk_findings(facts, &mut found);
    memory_findings(facts, &mut found);
    notifier_findings(facts, &mut found);
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

fn finding(
    mode: Mode,
    severity: Severity,
    agent: Option<&str>,
    evidence: Vec<String>,
    action: String,
) -> Finding {
    Finding {
        mode,
        severity,
        agent: agent.map(str::to_owned),
        evidence,
        action,
    }
}

fn daemon_findings(facts: &Facts, found: &mut Vec<Finding>) {
    let (evidence, action) = match &facts.daemon {
        Daemon::Answered(_) => return,
        Daemon::NotRunning { socket } => (
            vec![format!("nothing listens on {socket}: no daemon runs for this home")],
            "start it: `roster up -f roster.toml` (or `systemctl start roster` where installed); agents are not supervised until it runs".to_owned(),
        ),
        Daemon::TimedOut { socket, waited_ms } => (
            vec![format!(
                "the daemon on {socket} gave no answer within {waited_ms} ms: it is hung or overloaded"
            )],
            "look at <home>/daemon.log; if it stays hung, stop it (`kill -TERM` its pid in <home>/daemon.lock, `kill -KILL` if that does nothing) and `roster up` again".to_owned(),
        ),
        Daemon::Failed { socket, error } => (
            vec![format!("the daemon on {socket} failed to answer: {error}")],
            "look at <home>/daemon.log, then `roster down` and `roster up`".to_owned(),
        ),
    };
    found.push(finding(
        Mode::DaemonUnreachable,
        Severity::Critical,
        None,
        evidence,
        action,
    ));
}

/// The events of one agent of `kinds`, oldest first.
fn events_of<'a>(
    facts: &'a Facts,
    agent: &'a str,
    kinds: &'a [&'a str],
) -> impl Iterator<Item = &'a EventRecord> + 'a {
    facts.events.iter().filter(move |event| {
        event.agent.as_deref() == Some(agent) && kinds.contains(&event.kind.as_str())
    })
}

/// The last `QUOTED` of some events, as `TIME kind: detail` lines.
fn quote<'a>(events: impl Iterator<Item = &'a EventRecord>) -> Vec<String> {
    let all: Vec<&EventRecord> = events.collect();
    all[all.len().saturating_sub(QUOTED)..]
        .iter()
        .map(|event| format!("{} {}: {}", event.time, event.kind, event.detail))
        .collect()
}

/// The last lines of the agent's log that say the address is in use.
fn bind_errors<'a>(facts: &'a Facts, agent: &str) -> Vec<&'a str> {
    let lines = facts.logs.get(agent).map(Vec::as_slice).unwrap_or_default();
    let hits: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|line| says_address_in_use(line))
        .collect();
    hits[hits.len().saturating_sub(2)..].to_vec()
}

fn log_tail(facts: &Facts, agent: &str, count: usize) -> Vec<String> {
    let lines = facts.logs.get(agent).map(Vec::as_slice).unwrap_or_default();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| format!("log: {line}"))
        .collect()
}

fn agent_findings(facts: &Facts, status: &StatusReply, found: &mut Vec<Finding>) {
    for agent in &status.agents {
        let name = agent.name.as_str();
        let deaths: Vec<&EventRecord> =
            events_of(facts, name, &["exited", "spawn_failed"]).collect();
        let last_exit = agent
            .last_exit
            .map(|exit| format!(", last {exit}"))
            .unwrap_or_default();
        let crash_evidence = || {
            let mut evidence = vec![format!(
                "{name} is {} after {} restarts{last_exit}; {} deaths in the last {}",
                agent.state.as_str(),
                agent.restarts,
                deaths.len(),
                facts.window
            )];
            evidence.extend(quote(deaths.iter().copied()));
            evidence.extend(log_tail(facts, name, QUOTED));
            evidence
        };
        match agent.state {
            AgentState::Failed if agent.last_error.is_some() => {
                let error = agent.last_error.as_deref().unwrap_or_default();
                let mut evidence = vec![format!("{name} failed: it cannot start: {error}")];
                evidence.extend(quote(events_of(facts, name, &["failed", "spawn_failed"])));
                found.push(finding(
                    Mode::AgentDown,
                    Severity::Critical,
                    Some(name),
                    evidence,
                    format!("fix what the error names (the command, its directory, its user), then `roster start {name}`"),
                ));
            }
            AgentState::Failed => found.push(finding(
                Mode::CrashLoop,
                Severity::Critical,
                Some(name),
                crash_evidence(),
                format!("read `roster logs {name}` for why it dies, fix it, then `roster start {name}` (it is left alone until its failed_retry)"),
            )),
            AgentState::Backoff => found.push(finding(
                Mode::CrashLoop,
                if deaths.len() >= CRASH_LOOP_DEATHS {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                Some(name),
                crash_evidence(),
                format!("read `roster logs {name}` for why it dies and fix it; roster keeps restarting it with backoff"),
            )),
            AgentState::Running | AgentState::Starting
                if deaths.len() >= CRASH_LOOP_DEATHS && agent.uptime_secs.unwrap_or(0) < 60 =>
            {
                found.push(finding(
                    Mode::CrashLoop,
                    Severity::Warning,
                    Some(name),
                    crash_evidence(),
                    format!("read `roster logs {name}` for why it dies and fix it"),
                ))
            }
            AgentState::Exited if agent.last_exit.is_some_and(|exit| !exit.is_success()) => {
                let mut evidence = vec![format!("{name} ended{last_exit} and is not restarted (its restart policy)")];
                evidence.extend(log_tail(facts, name, QUOTED));
                found.push(finding(
                    Mode::AgentDown,
                    Severity::Warning,
                    Some(name),
                    evidence,
                    format!("read `roster logs {name}`, fix it, then `roster start {name}`"),
                ));
            }
            AgentState::Stopped => found.push(finding(
                Mode::AgentDown,
                Severity::Info,
                Some(name),
                vec![format!("{name} is stopped (by request)")],
                format!("`roster start {name}` when it should run again"),
            )),
            _ => {}
        }
        port_taken(facts, agent, found);
        unhealthy(facts, agent, found);
        oom_killed(facts, name, agent.state, found);
        over_limit(facts, agent, found);
    }
}

fn port_taken(facts: &Facts, agent: &crate::api::AgentStatus, found: &mut Vec<Finding>) {
    let name = agent.name.as_str();
    let mut evidence: Vec<String> = bind_errors(facts, name)
        .into_iter()
        .map(|line| format!("log: {line}"))
        .collect();
    if let Some(error) = agent
        .last_error
        .as_deref()
        .filter(|error| says_address_in_use(error))
    {
        evidence.push(format!("last error: {error}"));
    }
    if evidence.is_empty() {
        return;
    }
    // Lines from an earlier run do not make the port of an agent that has
    // been up for a while (and so holds what it binds) taken now.
    if agent.state == AgentState::Running
        && agent.health != Health::Unhealthy
        && agent.uptime_secs.unwrap_or(0) >= 30
        && agent.last_error.is_none()
    {
        let last = facts.logs.get(name).and_then(|lines| lines.last());
        if !last.is_some_and(|line| says_address_in_use(line)) {
            return;
        }
    }
    let holders = facts
        .port_holders
        .get(name)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut named = Vec::new();
    for holder in holders {
        match holder.pid {
            Some(pid) => {
                let command = holder.command.as_deref().unwrap_or("?");
                evidence.push(format!("{} is held by pid {pid} ({command})", holder.address));
                named.push(format!("pid {pid} ({command})"));
            }
            None => evidence.push(format!(
                "{}: no holder visible in /proc (another user's process, or another network namespace)",
                holder.address
            )),
        }
    }
    let action = if named.is_empty() {
        format!("find who holds the port (`ss -ltnp`), stop it or give {name} another port, then `roster restart {name}`")
    } else {
        format!(
            "stop {} if it should not run, or give {name} another port; then `roster restart {name}`",
            named.join(", ")
        )
    };
    found.push(finding(
        Mode::PortTaken,
        Severity::Critical,
        Some(name),
        evidence,
        action,
    ));
}

fn unhealthy(facts: &Facts, agent: &crate::api::AgentStatus, found: &mut Vec<Finding>) {
    let name = agent.name.as_str();
    let alert = facts
        .alerts
        .iter()
        .find(|alert| alert.name == "AgentUnhealthy" && alert.agent.as_deref() == Some(name));
    if agent.health != Health::Unhealthy && alert.is_none() {
        return;
    }
    let mut evidence = vec![format!(
        "{name}'s health check fails (state {})",
        agent.state.as_str()
    )];
    let answers = quote(events_of(facts, name, &["unhealthy"]));
    if answers.is_empty() {
        evidence.push(format!("no unhealthy event in the last {}", facts.window));
    }
    evidence.extend(answers);
    if let Some(alert) = alert {
        evidence.push(format!(
            "alert {} firing since {}: {}",
            alert.name, alert.starts_at, alert.summary
        ));
    }
    found.push(finding(
        Mode::Unhealthy,
        Severity::Warning,
        Some(name),
        evidence,
        format!("check what the probe reaches (`roster status {name}`, the health section of the config) and `roster logs {name}`; `roster restart {name}` if it is hung"),
    ));
}

fn oom_killed(facts: &Facts, name: &str, state: AgentState, found: &mut Vec<Finding>) {
    let events: Vec<&EventRecord> = events_of(facts, name, &["oom_killed"]).collect();
    let counted = facts.oom_kills.get(name).copied().unwrap_or(0);
    if events.is_empty() && counted == 0 {
        return;
    }
    let mut evidence = Vec::new();
    if counted > 0 {
        evidence.push(format!("its memory cgroup counts {counted} OOM kills"));
    }
    if !events.is_empty() {
        evidence.push(format!(
            "{} oom_killed events in the last {}",
            events.len(),
            facts.window
        ));
    }
    evidence.extend(quote(events.into_iter()));
    let down = !matches!(state, AgentState::Running | AgentState::Starting);
    found.push(finding(
        Mode::OomKilled,
        if down { Severity::Critical } else { Severity::Warning },
        Some(name),
        evidence,
        format!("raise {name}'s memory_max if it needs more, or find the leak (`roster logs {name}`, its memory in `roster top`)"),
    ));
}

/// OOM kills when the daemon does not answer: from the journal alone.
fn oom_from_events_only(facts: &Facts, found: &mut Vec<Finding>) {
    let mut agents: Vec<&str> = facts
        .events
        .iter()
        .filter(|event| event.kind == "oom_killed")
        .filter_map(|event| event.agent.as_deref())
        .collect();
    agents.extend(facts.oom_kills.keys().map(String::as_str));
    agents.sort_unstable();
    agents.dedup();
    for agent in agents {
        oom_killed(facts, agent, AgentState::Running, found);
    }
}

fn over_limit(facts: &Facts, agent: &crate::api::AgentStatus, found: &mut Vec<Finding>) {
    let name = agent.name.as_str();
    let mut evidence = Vec::new();
    if let (Some(used), ConfigCheck::Valid { memory_max, .. }) = (agent.memory_bytes, &facts.config)
    {
        if let Some(limit) = memory_max.get(name).copied().filter(|limit| *limit > 0) {
            let share = used as f64 * 100.0 / limit as f64;
            if share >= LIMIT_SHARE_PERCENT {
                evidence.push(format!(
                    "{name} uses {} of its memory_max {} ({share:.0}%)",
                    human_bytes(used),
                    human_bytes(limit)
                ));
            }
        }
    }
    for alert in facts
        .alerts
        .iter()
        .filter(|alert| alert.name == "AgentMemoryHigh" && alert.agent.as_deref() == Some(name))
    {
        evidence.push(format!(
            "alert {} firing since {}: {}",
            alert.name, alert.starts_at, alert.summary
        ));
    }
    if evidence.is_empty() {
        return;
    }
    found.push(finding(
        Mode::MemoryPressure,
        Severity::Warning,
        Some(name),
        evidence,
        format!("find why {name} grows (`roster top`), raise its memory_max or rule if it needs more, or `roster restart {name}` to relieve it now"),
    ));
}

fn journal_reset(facts: &Facts, status: &StatusReply, found: &mut Vec<Finding>) {
    let mut evidence: Vec<String> = status
        .warnings
        .iter()
        .filter(|warning| warning.contains("journal was corrupt"))
        .cloned()
        .collect();
    evidence.extend(quote(
        facts
            .events
            .iter()
            .filter(|event| event.kind == "journal_reset"),
    ));
    push_journal_reset(evidence, found);
}

fn journal_reset_from_events(facts: &Facts, found: &mut Vec<Finding>) {
    let evidence = quote(
        facts
            .events
            .iter()
            .filter(|event| event.kind == "journal_reset"),
    );
    if !evidence.is_empty() {
        push_journal_reset(evidence, found);
    }
}

fn push_journal_reset(evidence: Vec<String>, found: &mut Vec<Finding>) {
    found.push(finding(
        Mode::JournalReset,
        Severity::Warning,
        None,
        evidence,
        "the history before the reset is in <home>/journal.db.corrupt-*; check the disk (`dmesg`, `df`), keep that file for a support ticket, and restart the daemon to clear the warning".to_owned(),
    ));
}

fn config_findings(facts: &Facts, found: &mut Vec<Finding>) {
    let ConfigCheck::Invalid { path, error } = &facts.config else {
        return;
    };
    let mut evidence = vec![format!("{path} does not load")];
    evidence.extend(
        error
            .lines()
            .filter(|line| !line.trim().is_empty())
            .take(5)
            .map(str::to_owned),
    );
    found.push(finding(
        Mode::ConfigInvalid,
        Severity::Critical,
        None,
        evidence,
        format!("`roster check -f {path}` lists every problem; fix them, then `roster apply -f {path}` (the daemon keeps running the last valid config meanwhile)"),
    ));
}

fn disk_findings(facts: &Facts, found: &mut Vec<Finding>) {
    let Some(disk) = &facts.host.disk else {
        return;
    };
    let mode = if disk.used_percent >= DISK_FULL_PERCENT || disk.available_bytes < DISK_FULL_FLOOR {
        Mode::DiskFull
    } else if disk.used_percent >= DISK_NEARLY_FULL_PERCENT
        || disk.available_bytes < DISK_NEARLY_FULL_FLOOR
    {
        Mode::DiskNearlyFull
    } else {
        return;
    };
    let mut evidence = vec![format!(
        "the filesystem of {} is {:.0}% used: {} free of {}",
        disk.path,
        disk.used_percent,
        human_bytes(disk.available_bytes),
        human_bytes(disk.total_bytes)
    )];
    for (what, bytes) in disk.usage.iter().filter(|(_, bytes)| *bytes > 0) {
        evidence.push(format!("{what}: {}", human_bytes(*bytes)));
    }
    let dropped: Vec<&EventRecord> = facts
        .events
        .iter()
        .filter(|event| event.kind == "log_dropped")
        .collect();
    evidence.extend(quote(dropped.into_iter()));
    let biggest = disk
        .usage
        .iter()
        .filter(|(_, bytes)| *bytes > 0)
        .max_by_key(|(_, bytes)| *bytes)
        .map(|(what, _)| what.as_str());
    let action = match biggest {
        Some(what) if what.starts_with("rotated logs") => "delete the oldest rotated logs (<home>/logs/*.log.N.gz), lower [log] keep or max_size, or add a [[host.watch]] disk_percent rule with action = \"clean_logs\"".to_owned(),
        Some(what) if what.starts_with("releases") => "remove releases that are neither live nor previous (lower [agents.NAME.deploy] keep), then grow the disk".to_owned(),
        _ => "free space on this filesystem (`du -xsh` under it) or grow it; agents' log lines are dropped while it is full".to_owned(),
    };
    found.push(finding(
        mode,
        if mode == Mode::DiskFull {
            Severity::Critical
        } else {
            Severity::Warning
        },
        None,
        evidence,
        action,
    ));
}

fn memory_findings(facts: &Facts, found: &mut Vec<Finding>) {
    let mut evidence = Vec::new();
    let mut severity = Severity::Warning;
    if let Some(memory) = facts
        .host
        .memory
        .as_ref()
        .filter(|memory| memory.total_bytes > 0)
    {
        let percent = memory.available_bytes as f64 * 100.0 / memory.total_bytes as f64;
        if percent < MEMORY_LOW_PERCENT {
            if percent < MEMORY_CRITICAL_PERCENT {
                severity = Severity::Critical;
            }
            evidence.push(format!(
                "MemAvailable is {} of {} ({percent:.1}%)",
                human_bytes(memory.available_bytes),
                human_bytes(memory.total_bytes)
            ));
            if memory.swap_total_bytes > 0 {
                evidence.push(format!(
                    "swap: {} used of {}",
                    human_bytes(
                        memory
                            .swap_total_bytes
                            .saturating_sub(memory.swap_free_bytes)
                    ),
                    human_bytes(memory.swap_total_bytes)
                ));
            }
        }
    }
    for alert in facts
        .alerts
        .iter()
        .filter(|alert| alert.name == "HostMemoryLow")
    {
        evidence.push(format!(
            "alert {} firing since {}: {}",
            alert.name, alert.starts_at, alert.summary
        ));
    }
    if evidence.is_empty() {
        return;
    }
    if let Daemon::Answered(status) = &facts.daemon {
        let mut biggest: Vec<(&str, u64)> = status
            .agents
            .iter()
            .filter_map(|agent| Some((agent.name.as_str(), agent.memory_bytes?)))
            .collect();
        biggest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        if !biggest.is_empty() {
            let named: Vec<String> = biggest
                .iter()
                .take(3)
                .map(|(name, bytes)| format!("{name} {}", human_bytes(*bytes)))
                .collect();
            evidence.push(format!("largest agents: {}", named.join(", ")));
        }
    }
    found.push(finding(
        Mode::MemoryPressure,
        severity,
        None,
        evidence,
        "restart or stop the agent holding the most memory, set memory_max on agents without one, or add memory/swap".to_owned(),
    ));
}

fn notifier_findings(facts: &Facts, found: &mut Vec<Finding>) {
    let last_failed = facts
        .events
        .iter()
        .rposition(|event| event.kind == "notify_failed");
    let last_recovered = facts
        .events
        .iter()
        .rposition(|event| event.kind == "notify_recovered");
    let Some(failed) = last_failed else {
        return;
    };
    if last_recovered.is_some_and(|recovered| recovered > failed) {
        return;
    }
    let failures: Vec<&EventRecord> = facts
        .events
        .iter()
        .filter(|event| event.kind == "notify_failed")
        .collect();
    let mut evidence = vec![format!(
        "{} notify_failed events in the last {}, none recovered since the last",
        failures.len(),
        facts.window
    )];
    evidence.extend(quote(failures.into_iter()));
    found.push(finding(
        Mode::NotifierFailing,
        Severity::Warning,
        None,
        evidence,
        "alerts are not reaching people: check the [[notify]] target named above (is the receiver up, the URL right, the command runnable?); `roster events` shows when it delivers again".to_owned(),
    ));
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
