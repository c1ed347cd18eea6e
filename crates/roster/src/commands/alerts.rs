//! `roster alerts`: firing alerts, then the recent ones.

use std::process::ExitCode;

use anyhow::Result;

use roster_core::api::{AlertRecord, AlertState, AlertsReply};
use roster_store::Home;

/// Runs `roster alerts`.
pub fn run(home: &Home, json: bool) -> Result<ExitCode> {
    let reply: AlertsReply = super::client(home).get("/v1/alerts")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(ExitCode::SUCCESS);
    }
    if reply.firing.is_empty() {
        println!("no alert is firing");
    } else {
        println!("FIRING");
        for alert in &reply.firing {
            println!("{}", line(alert));
        }
    }
    let resolved: Vec<&AlertRecord> = reply
        .recent
        .iter()
        .rev()
        .filter(|alert| alert.state == AlertState::Resolved)
        .take(20)
        .collect();
    if !resolved.is_empty() {
        println!();
        println!("RECENTLY RESOLVED");
        for alert in resolved {
            println!("{}", line(alert));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn line(alert: &AlertRecord) -> String {
    let when = match &alert.ends_at {
        Some(end) => format!("{} .. {end}", alert.starts_at),
        None => format!("since {}", alert.starts_at),
    };
    let mut text = format!(
        "  {:<8}  {:<22}  {}  ({when})",
        alert.severity, alert.name, alert.summary
    );
    if !alert.details.is_empty() {
        for detail in alert.details.lines() {
            text.push_str("\n      ");
            text.push_str(detail);
        }
    }
    text
}
