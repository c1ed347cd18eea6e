//! The report into the journal as `recovery` events: through the daemon
//! (`POST /v1/recovery`, journaled by its inbox), or, when the daemon does
//! not answer (hung, or it could not be started), straight into the
//! journal file as a second SQLite writer; else a line saying why not.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use roster_core::api::{
    EventKind, RecoveryFinding, RecoveryReport, RecoveryStep, RECOVERY_PATIENCE_MS,
};
use roster_core::diagnose::Finding;
use roster_store::journal::{append_rows, Row};
use roster_store::Home;

use super::Outcome;
use crate::client::ApiError;

/// How long the daemon may take to take the report (it refuses one it
/// reads later than `RECOVERY_STALE_MS` after it was sent).
const PATIENCE: Duration = Duration::from_millis(RECOVERY_PATIENCE_MS);

fn finding(finding: &Finding) -> RecoveryFinding {
    RecoveryFinding {
        mode: finding.mode.as_str().to_owned(),
        severity: finding.severity.to_string(),
        agent: finding.agent.clone(),
    }
}

/// The report as the API takes it.
pub fn report(found: &[Finding], outcomes: &[Outcome], left: &[&Finding]) -> RecoveryReport {
    RecoveryReport {
        found: found
            .iter()
            .filter(|found| found.is_problem())
            .map(finding)
            .collect(),
        steps: outcomes
            .iter()
            .map(|outcome| RecoveryStep {
                mode: outcome.mode.as_str().to_owned(),
                agent: outcome.agent.clone(),
                step: outcome.step.clone(),
                result: outcome.result.to_owned(),
                detail: outcome.detail.clone(),
            })
            .collect(),
        left: left.iter().map(|left| finding(left)).collect(),
        sent_unix_ms: None,
    }
}

/// Journals `report`; says where (or why not), in one line.
pub fn journal(home: &Home, report: &RecoveryReport) -> String {
    let client = crate::commands::client(home).with_timeout(PATIENCE);
    let stamped = RecoveryReport {
        sent_unix_ms: Some(roster_store::clock::unix_millis()),
        ..report.clone()
    };
    let refused = match client.post::<_, ()>("/v1/recovery", &stamped) {
        Ok(()) => {
            return format!(
                "journal: {} recovery events, through the daemon",
                report.steps.len() + 1
            )
        }
        Err(error) => match error.downcast_ref::<ApiError>() {
            // It answered, and said no: writing behind its back would not
            // be better.
            Some(answer) if answer.status != 404 => {
                return format!("journal: not written: the daemon refused the report: {error:#}")
            }
            _ => format!("{error:#}"),
        },
    };
    match straight(home, report) {
        Ok(count) => format!(
            "journal: {count} recovery events written straight into {} (the daemon did not take them: {refused})",
            home.journal().display()
        ),
        Err(why) => {
            format!("journal: not written: the daemon did not take the report ({refused}), and {why}")
        }
    }
}

/// Writes the events into the journal file itself, if it is ours.
fn straight(home: &Home, report: &RecoveryReport) -> Result<usize, String> {
    let events = report.events()?;
    let path = home.journal();
    let me = nix::unistd::geteuid().as_raw();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match file.symlink_metadata() {
            Ok(metadata) if metadata.uid() != me => {
                return Err(format!(
                    "{} belongs to uid {}, not this user ({me}): writing it could leave files the daemon cannot open",
                    file.display(),
                    metadata.uid()
                ))
            }
            _ => {}
        }
    }
    let rows: Vec<Row> = events
        .iter()
        .map(|event| {
            Row::now(
                event.agent.as_ref().map(|agent| agent.as_str()),
                EventKind::Recovery,
                None,
                event.detail.clone(),
            )
        })
        .collect();
    match append_rows(&path, &rows) {
        Ok(true) => Ok(rows.len()),
        Ok(false) => Err(format!("there is no journal at {}", path.display())),
        Err(error) => Err(format!("the journal could not be written: {error}")),
    }
}
