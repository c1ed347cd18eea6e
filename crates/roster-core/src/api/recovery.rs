//! `POST /v1/recovery`: the report of a `roster recover` run, which the
//! daemon journals as `recovery` events (one per step, one summary). The
//! checks and the events' words live here, so the daemon and the CLI's
//! fallback (writing the journal itself when the daemon does not answer)
//! journal the same thing.

use serde::{Deserialize, Serialize};

use crate::name::AgentName;

/// A request body larger than this is refused.
pub const RECOVERY_BODY_MAX: usize = 256 * 1024;
/// At most this many entries in each of `found`, `steps` and `left`.
pub const RECOVERY_ENTRIES_MAX: usize = 100;
/// At most this many bytes in one text field.
pub const RECOVERY_TEXT_MAX: usize = 4096;
/// A report the daemon reads more than this long after it was sent is
/// refused: the CLI waits [`RECOVERY_PATIENCE_MS`] for an answer, then
/// writes the journal itself, so a daemon that was hung must not journal
/// the same report again when it wakes.
pub const RECOVERY_STALE_MS: i64 = 4000;
/// How long the CLI waits for the daemon to take a report.
pub const RECOVERY_PATIENCE_MS: u64 = 5000;

/// A finding, as a recovery report names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryFinding {
    /// Its failure mode (`disk_full`, ...).
    pub mode: String,
    /// `critical`, `warning` or `info`.
    #[serde(default)]
    pub severity: String,
    /// The agent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// A step of a recovery and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryStep {
    /// The failure mode it answered.
    pub mode: String,
    /// The agent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// What the step was.
    pub step: String,
    /// `done`, `left` or `failed`.
    pub result: String,
    /// What happened.
    pub detail: String,
}

/// The body of `POST /v1/recovery`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// What was wrong before.
    pub found: Vec<RecoveryFinding>,
    /// The steps, and the findings no step answered (result `left`).
    pub steps: Vec<RecoveryStep>,
    /// What is still wrong after.
    pub left: Vec<RecoveryFinding>,
    /// When the CLI sent it (unix milliseconds); see [`RECOVERY_STALE_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_unix_ms: Option<i64>,
}

/// One `recovery` event to journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryEvent {
    /// The agent, if any.
    pub agent: Option<AgentName>,
    /// For people (`roster events`).
    pub detail: String,
}

fn check_text(what: &str, text: &str) -> Result<(), String> {
    if text.len() > RECOVERY_TEXT_MAX {
        return Err(format!(
            "{what} is {} bytes, more than {RECOVERY_TEXT_MAX}",
            text.len()
        ));
    }
    Ok(())
}

fn check_mode(mode: &str) -> Result<(), String> {
    if mode.is_empty()
        || mode.len() > 64
        || !mode
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
    {
        return Err(format!("bad mode {mode:?}: lower-case letters and _"));
    }
    Ok(())
}

fn check_agent(agent: Option<&str>) -> Result<Option<AgentName>, String> {
    agent
        .map(|name| {
            AgentName::new(name).map_err(|problem| format!("bad agent {name:?}: {problem}"))
        })
        .transpose()
}

fn named(finding: &RecoveryFinding) -> String {
    match &finding.agent {
        Some(agent) => format!("{} {agent}", finding.mode),
        None => finding.mode.clone(),
    }
}

fn list(findings: &[RecoveryFinding]) -> String {
    if findings.is_empty() {
        "nothing".into()
    } else {
        findings.iter().map(named).collect::<Vec<_>>().join(", ")
    }
}

impl RecoveryReport {
    /// Whether a daemon reading it at `now_unix_ms` is too late (the CLI
    /// has given up on it and journals it itself).
    pub fn is_stale(&self, now_unix_ms: i64) -> bool {
        self.sent_unix_ms
            .is_some_and(|sent| now_unix_ms.saturating_sub(sent) > RECOVERY_STALE_MS)
    }

    /// The events to journal: one per step, then a summary; or why the
    /// report is refused (too many entries, too long a text, a bad agent
    /// name, mode or result).
    pub fn events(&self) -> Result<Vec<RecoveryEvent>, String> {
        for (what, count) in [
            ("found", self.found.len()),
            ("steps", self.steps.len()),
            ("left", self.left.len()),
        ] {
            if count > RECOVERY_ENTRIES_MAX {
                return Err(format!(
                    "{what} has {count} entries, more than {RECOVERY_ENTRIES_MAX}"
                ));
            }
        }
        for finding in self.found.iter().chain(&self.left) {
            check_mode(&finding.mode)?;
            check_text("a severity", &finding.severity)?;
            check_agent(finding.agent.as_deref())?;
        }
        let mut events = Vec::new();
        let mut counts = [0usize; 3];
        for step in &self.steps {
            check_mode(&step.mode)?;
            check_text("a step", &step.step)?;
            check_text("a detail", &step.detail)?;
            let index = match step.result.as_str() {
                "done" => 0,
                "left" => 1,
                "failed" => 2,
                other => return Err(format!("bad result {other:?}: done, left or failed")),
            };
            counts[index] += 1;
            events.push(RecoveryEvent {
                agent: check_agent(step.agent.as_deref())?,
                detail: format!(
                    "{}: [{}] {}: {}",
                    step.result, step.mode, step.step, step.detail
                ),
            });
        }
        let problems: Vec<RecoveryFinding> = self
            .found
            .iter()
            .filter(|finding| finding.severity != "info")
            .cloned()
            .collect();
        events.push(RecoveryEvent {
            agent: None,
            detail: format!(
                "roster recover: found {}; {} done, {} left, {} failed; still wrong: {}",
                list(&problems),
                counts[0],
                counts[1],
                counts[2],
                list(&self.left)
            ),
        });
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RecoveryReport {
        RecoveryReport {
            found: vec![
                RecoveryFinding {
                    mode: "memory_pressure".into(),
                    severity: "warning".into(),
                    agent: Some("web".into()),
                },
                RecoveryFinding {
                    mode: "disk_nearly_full".into(),
                    severity: "warning".into(),
                    agent: None,
                },
            ],
            steps: vec![
                RecoveryStep {
                    mode: "memory_pressure".into(),
                    agent: Some("web".into()),
                    step: "restart web drained".into(),
                    result: "done".into(),
                    detail: "pid 1 -> 2".into(),
                },
                RecoveryStep {
                    mode: "disk_nearly_full".into(),
                    agent: None,
                    step: "free disk".into(),
                    result: "left".into(),
                    detail: "still 93%".into(),
                },
            ],
            left: vec![RecoveryFinding {
                mode: "disk_nearly_full".into(),
                severity: "warning".into(),
                agent: None,
            }],
            sent_unix_ms: Some(10_000),
        }
    }

    #[test]
    fn a_report_read_after_the_cli_gave_up_is_stale() {
        assert!(!report().is_stale(10_000 + RECOVERY_STALE_MS));
        assert!(report().is_stale(10_001 + RECOVERY_STALE_MS));
        let unstamped = RecoveryReport {
            sent_unix_ms: None,
            ..report()
        };
        assert!(!unstamped.is_stale(i64::MAX));
        assert!(RECOVERY_STALE_MS < RECOVERY_PATIENCE_MS as i64);
    }

    #[test]
    fn one_event_per_step_then_a_summary() {
        let events = report().events().expect("valid");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].agent.as_ref().map(AgentName::as_str), Some("web"));
        assert_eq!(
            events[0].detail,
            "done: [memory_pressure] restart web drained: pid 1 -> 2"
        );
        assert_eq!(events[2].agent, None);
        assert_eq!(
            events[2].detail,
            "roster recover: found memory_pressure web, disk_nearly_full; 1 done, 1 left, 0 failed; still wrong: disk_nearly_full"
        );
    }

    #[test]
    fn bad_reports_are_refused_with_a_reason() {
        let mut many = report();
        many.steps = vec![many.steps[0].clone(); RECOVERY_ENTRIES_MAX + 1];
        assert!(many.events().unwrap_err().contains("more than"));
        let mut agent = report();
        agent.steps[0].agent = Some("../etc".into());
        assert!(agent.events().unwrap_err().contains("bad agent"));
        let mut result = report();
        result.steps[0].result = "maybe".into();
        assert!(result.events().unwrap_err().contains("bad result"));
        let mut long = report();
        long.steps[0].detail = "x".repeat(RECOVERY_TEXT_MAX + 1);
        assert!(long.events().unwrap_err().contains("more than"));
        let mut mode = report();
        mode.left[0].mode = "Disk Full".into();
        assert!(mode.events().unwrap_err().contains("bad mode"));
    }
}
