//! `roster diagnose`: what is wrong on this host and why. The collectors
//! (`collect.rs`, `host.rs`) gather the daemon's view, the journal, the
//! logs and the host, each under a timeout; `roster_core::diagnose`
//! classifies; this module prints, and `bundle.rs` writes the support
//! bundle. Exit 0 only when no finding is a warning or critical.

mod bundle;
pub(crate) mod collect;
mod host;
mod kmsg;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use roster_core::diagnose::{classify, render, Facts, Finding};
use roster_store::Home;

use collect::Collected;

/// The options of `roster diagnose`.
pub struct Options<'a> {
    /// `-f FILE`.
    pub file: Option<&'a Path>,
    /// `--json`.
    pub json: bool,
    /// `--since`.
    pub since: Duration,
    /// `--bundle FILE.tar.gz`.
    pub bundle: Option<PathBuf>,
}

/// The facts the classifier judges, from what was collected.
pub(crate) fn facts(collected: &Collected) -> Facts {
    Facts {
        daemon: collected.daemon.clone(),
        events: collected.events.clone(),
        alerts: collected
            .alerts
            .as_ref()
            .map(|alerts| alerts.firing.clone())
            .unwrap_or_default(),
        logs: collected.logs.clone(),
        port_holders: collected.port_holders.clone(),
        oom_kills: collected.oom_kills.clone(),
        kernel_oom: collected.kernel_oom.clone(),
        home_cgroup: Some(collected.home_cgroup.clone()),
        host: collected.host.clone(),
        config: collected.config.clone(),
        window: collected.window.clone(),
    }
}

/// The `--json` report (and the bundle's `diagnose.json`).
fn report(findings: &[Finding], collected: &Collected, home: &Home) -> serde_json::Value {
    let config = match &collected.config {
        roster_core::diagnose::ConfigCheck::Valid { path, .. }
        | roster_core::diagnose::ConfigCheck::Invalid { path, .. } => Some(path.clone()),
        roster_core::diagnose::ConfigCheck::NotFound => None,
    };
    serde_json::json!({
        "findings": findings,
        "home": home.root(),
        "config": config,
        "since": collected.window,
        "collected": collected.items,
    })
}

/// A duration as `--since` reads it back (`1h`, `90s`).
pub(crate) fn window_words(since: Duration) -> String {
    let secs = since.as_secs();
    match secs {
        0 => format!("{}ms", since.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Runs `roster diagnose`.
pub fn run(home: &Home, options: Options<'_>) -> Result<ExitCode> {
    let file = match options.file {
        Some(file) => match collect::named_config(file) {
            Ok(path) => Some(path),
            Err(error) => {
                eprintln!("error: {error}");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    if let Some(bundle) = &options.bundle {
        if let Err(error) = bundle::check_target(bundle) {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(2));
        }
    }
    let collected = collect::collect(
        home,
        file.as_deref(),
        options.since,
        window_words(options.since),
    );
    let findings = classify(&facts(&collected));
    let report = report(&findings, &collected, home);
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&findings));
        let late: Vec<&str> = collected
            .items
            .iter()
            .filter(|item| item.timed_out)
            .map(|item| item.name.as_str())
            .collect();
        if !late.is_empty() {
            println!("not collected in time: {}", late.join(", "));
        }
        for item in &collected.items {
            if let Some(reason) = &item.skipped {
                println!("not read here: {}: {reason}", item.name);
            }
        }
    }
    if let Some(target) = &options.bundle {
        let written = bundle::write(home, file.as_deref(), target, &collected, &report)?;
        if options.json {
            eprintln!("bundle: {}", written.display());
        } else {
            println!("bundle: {}", written.display());
        }
    }
    Ok(if findings.iter().any(Finding::is_problem) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::window_words;
    use std::time::Duration;

    #[test]
    fn the_window_reads_as_it_was_given() {
        assert_eq!(window_words(Duration::from_secs(3600)), "1h");
        assert_eq!(window_words(Duration::from_secs(600)), "10m");
        assert_eq!(window_words(Duration::from_secs(90)), "90s");
        assert_eq!(window_words(Duration::from_secs(2 * 86_400)), "2d");
    }
}
