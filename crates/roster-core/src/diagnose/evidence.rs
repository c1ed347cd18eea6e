//! Helpers the judges share: a finding, the events and log lines quoted
//! as evidence.

use super::{says_address_in_use, Facts, Finding, Mode, Severity, QUOTED};
use crate::api::EventRecord;

pub(super) fn finding(
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

/// The events of one agent of `kinds`, oldest first.
pub(super) fn events_of<'a>(
    facts: &'a Facts,
    agent: &'a str,
    kinds: &'a [&'a str],
) -> impl Iterator<Item = &'a EventRecord> + 'a {
    facts.events.iter().filter(move |event| {
        event.agent.as_deref() == Some(agent) && kinds.contains(&event.kind.as_str())
    })
}

/// The last `QUOTED` of some events, as `TIME kind: detail` lines.
pub(super) fn quote<'a>(events: impl Iterator<Item = &'a EventRecord>) -> Vec<String> {
    let all: Vec<&EventRecord> = events.collect();
    all[all.len().saturating_sub(QUOTED)..]
        .iter()
        .map(|event| format!("{} {}: {}", event.time, event.kind, event.detail))
        .collect()
}

/// The last lines of the agent's log that say the address is in use.
pub(super) fn bind_errors<'a>(facts: &'a Facts, agent: &str) -> Vec<&'a str> {
    let lines = facts.logs.get(agent).map(Vec::as_slice).unwrap_or_default();
    let hits: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|line| says_address_in_use(line))
        .collect();
    hits[hits.len().saturating_sub(2)..].to_vec()
}

pub(super) fn log_tail(facts: &Facts, agent: &str, count: usize) -> Vec<String> {
    let lines = facts.logs.get(agent).map(Vec::as_slice).unwrap_or_default();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| format!("log: {line}"))
        .collect()
}
