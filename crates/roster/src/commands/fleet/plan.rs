//! `roster fleet plan`: where every instance goes, and what must change
//! on the hosts to get there, without changing anything. Each host's
//! state comes from `remote::fetch` (one ssh command per host, in
//! parallel); the placement keeps the ports the hosts' files give
//! (`place_with`), and the changes are `fleet::plan`'s. `survey` is
//! shared with `fleet apply`, which acts on the same view.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use roster_core::fleet::{self, Change, Fleet, Placement};
use serde::Serialize;

use super::remote::{self, HostState};
use super::ssh::{Ssh, Target};

/// The exit code when a host could not be read (`--help` says so).
pub(super) const UNREACHABLE: u8 = 1;
/// The exit code when changes are pending.
const CHANGES_PENDING: u8 = 2;

/// The fleet as the hosts run it now, and where it should go.
pub(super) struct Survey {
    pub fleet: Fleet,
    pub transport: Ssh,
    pub targets: Vec<Target>,
    /// Each target's state, or why it could not be read.
    pub states: Vec<Result<HostState, String>>,
    pub placement: Placement,
    /// The changes on the reachable targets, sorted by instance, then
    /// host.
    pub changes: Vec<Change>,
}

/// Reads the fleet file (a bad one stops here: nothing is touched), then
/// every target's state, then places and plans.
pub(super) fn survey(file: &Path, only: &[String]) -> Result<Survey> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let fleet = fleet::parse(&text, file)?;
    // Checked before any host is contacted: a fleet that cannot be
    // placed touches nothing.
    fleet::place(&fleet)?;
    let transport = Ssh::new(&fleet)?;
    let targets = transport.targets(&fleet, only)?;
    let states = remote::fetch(
        &transport,
        &targets,
        fleet.ssh.connect_timeout + remote::FETCH_BUDGET,
    );
    let current: Vec<(String, fleet::HostedConfig)> = targets
        .iter()
        .zip(&states)
        .filter_map(|(target, state)| {
            let state = state.as_ref().ok()?;
            Some((target.name.clone(), state.hosted.clone()))
        })
        .collect();
    let previous = fleet::previous_placement(&current);
    let placement = fleet::place_with(&fleet, Some(&previous))?;
    let running: Vec<(String, Vec<fleet::RunningInstance>)> = current
        .into_iter()
        .map(|(host, hosted)| (host, hosted.instances))
        .collect();
    // Only hosts that answered are planned for: what an unreachable one
    // runs is not known.
    let reachable: BTreeSet<&str> = running.iter().map(|(host, _)| host.as_str()).collect();
    let changes = fleet::plan(&placement, &running)
        .into_iter()
        .filter(|change| reachable.contains(change.host.as_str()))
        .collect();
    Ok(Survey {
        fleet,
        transport,
        targets,
        states,
        placement,
        changes,
    })
}

#[derive(Serialize)]
struct InstanceRow<'a> {
    name: &'a str,
    tenant: &'a str,
    agent: &'a str,
    host: &'a str,
    port: u16,
}

/// A host's row of `--json`.
#[derive(Serialize)]
pub(super) struct HostRow {
    pub name: String,
    pub address: String,
    pub reachable: bool,
    pub error: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    instances: Vec<InstanceRow<'a>>,
    changes: &'a [Change],
    hosts: Vec<HostRow>,
}

/// The hosts' rows: reachable or not, with the reason.
pub(super) fn host_rows(survey: &Survey) -> Vec<HostRow> {
    survey
        .targets
        .iter()
        .zip(&survey.states)
        .map(|(target, state)| HostRow {
            name: target.name.clone(),
            address: target.address.clone(),
            reachable: state.is_ok(),
            error: state.as_ref().err().cloned(),
        })
        .collect()
}

/// Runs `roster fleet plan`.
pub fn run(file: &Path, json: bool, only: &[String]) -> Result<ExitCode> {
    let survey = survey(file, only)?;
    let hosts = host_rows(&survey);
    let unreachable = hosts.iter().any(|host| !host.reachable);
    if json {
        let report = Report {
            instances: survey
                .placement
                .instances
                .iter()
                .map(|instance| InstanceRow {
                    name: &instance.name,
                    tenant: &instance.tenant,
                    agent: &instance.agent,
                    host: &instance.host,
                    port: instance.port,
                })
                .collect(),
            changes: &survey.changes,
            hosts,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", changes_table(&survey.changes));
        print!("{}", unreachable_lines(&hosts));
    }
    Ok(if unreachable {
        ExitCode::from(UNREACHABLE)
    } else if survey.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHANGES_PENDING)
    })
}

/// One line per change, or `nothing to change`.
pub(super) fn changes_table(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "nothing to change\n".to_owned();
    }
    let rows: Vec<[String; 4]> = changes
        .iter()
        .map(|change| {
            [
                kind(change).to_owned(),
                change.instance.clone(),
                change.host.clone(),
                change.from.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    crate::render::table(&["CHANGE", "INSTANCE", "HOST", "FROM"], &rows)
}

/// A change's kind as `--json` writes it.
fn kind(change: &Change) -> &'static str {
    match change.kind {
        fleet::ChangeKind::Add => "add",
        fleet::ChangeKind::Change => "change",
        fleet::ChangeKind::Remove => "remove",
        fleet::ChangeKind::Move => "move",
    }
}

/// One line per host that could not be read, with its reason.
pub(super) fn unreachable_lines(hosts: &[HostRow]) -> String {
    hosts
        .iter()
        .filter_map(|host| {
            let error = host.error.as_ref()?;
            Some(format!(
                "{} ({}): unreachable: {error}\n",
                host.name, host.address
            ))
        })
        .collect()
}
