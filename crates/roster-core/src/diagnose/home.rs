//! The findings about the daemon, the config, the journal, notifiers and
//! the host (disk and memory).

use super::evidence::{finding, quote};
use super::{
    human_bytes, ConfigCheck, Daemon, Facts, Finding, Mode, Severity, DISK_FULL_FLOOR,
    DISK_FULL_PERCENT, DISK_NEARLY_FULL_FLOOR, DISK_NEARLY_FULL_PERCENT, MEMORY_CRITICAL_PERCENT,
    MEMORY_LOW_PERCENT,
};
use crate::api::{EventRecord, StatusReply};

pub(super) fn daemon_findings(facts: &Facts, found: &mut Vec<Finding>) {
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

pub(super) fn journal_reset(facts: &Facts, status: &StatusReply, found: &mut Vec<Finding>) {
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

pub(super) fn journal_reset_from_events(facts: &Facts, found: &mut Vec<Finding>) {
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

pub(super) fn push_journal_reset(evidence: Vec<String>, found: &mut Vec<Finding>) {
    found.push(finding(
        Mode::JournalReset,
        Severity::Warning,
        None,
        evidence,
        "the history before the reset is in <home>/journal.db.corrupt-*; check the disk (`dmesg`, `df`), keep that file for a support ticket, and restart the daemon to clear the warning".to_owned(),
    ));
}

pub(super) fn config_findings(facts: &Facts, found: &mut Vec<Finding>) {
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

pub(super) fn disk_findings(facts: &Facts, found: &mut Vec<Finding>) {
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

pub(super) fn memory_findings(facts: &Facts, found: &mut Vec<Finding>) {
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

pub(super) fn notifier_findings(facts: &Facts, found: &mut Vec<Finding>) {
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
