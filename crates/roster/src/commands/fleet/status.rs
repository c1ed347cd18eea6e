//! `roster fleet status`: every instance on every host in one table. Each
//! host runs `roster --home /var/lib/roster status --json` over ssh (in
//! parallel, each within its deadline); the replies are joined with the
//! fleet's placement, so a placed instance a host does not run shows as
//! `missing` and an agent the fleet does not place is shown, marked.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use roster_core::api::{AgentState, AgentStatus, Health, StatusReply};
use roster_core::fleet::{self, Fleet, Placement};
use serde::Serialize;

use super::ssh::{self, Ssh};
use super::{REMOTE_HOME, REMOTE_ROSTER};
use crate::render;

/// What a host may take on top of connecting: the remote status itself.
const COMMAND_BUDGET: Duration = Duration::from_secs(5);
/// The exit code when a host is unreachable or a placed instance does not
/// run (`--help` says so).
const NOT_ALL_RUNNING: u8 = 1;

/// A host's row of `--json`.
#[derive(Serialize)]
struct HostRow {
    name: String,
    address: String,
    reachable: bool,
    error: Option<String>,
    seconds: f64,
}

/// An instance's row of `--json`.
#[derive(Serialize)]
struct InstanceRow {
    name: String,
    host: String,
    tenant: Option<String>,
    agent: Option<String>,
    /// `running`, ...; `missing` when a reachable host does not run a
    /// placed instance; `unknown` when its host did not answer.
    state: String,
    health: Option<Health>,
    release: Option<String>,
    pid: Option<u32>,
    restarts: Option<u64>,
    cpu_percent: Option<f64>,
    memory_bytes: Option<u64>,
    uptime_secs: Option<u64>,
    /// Whether the fleet file places it (false: the host runs an agent
    /// the fleet does not know).
    placed: bool,
}

#[derive(Serialize)]
struct Report {
    hosts: Vec<HostRow>,
    instances: Vec<InstanceRow>,
}

/// Runs `roster fleet status`.
pub fn run(file: &Path, json: bool, only: &[String]) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let fleet = fleet::parse(&text, file)?;
    let placement = fleet::place(&fleet)?;
    let transport = Ssh::new(&fleet)?;
    let targets = transport.targets(&fleet, only)?;
    let remote: Vec<String> = [REMOTE_ROSTER, "--home", REMOTE_HOME, "status", "--json"]
        .map(str::to_owned)
        .to_vec();
    let timeout = fleet.ssh.connect_timeout + COMMAND_BUDGET;
    let outcomes = transport.run_all(&targets, &remote, timeout);

    let mut report = Report {
        hosts: Vec::new(),
        instances: Vec::new(),
    };
    for (target, outcome) in targets.iter().zip(outcomes) {
        let reply = outcome.result.and_then(|stdout| {
            serde_json::from_slice::<StatusReply>(&stdout)
                .map_err(|error| format!("the host's roster status is not JSON: {error}"))
        });
        report.hosts.push(HostRow {
            name: target.name.clone(),
            address: target.address.clone(),
            reachable: reply.is_ok(),
            error: reply.as_ref().err().cloned(),
            seconds: (outcome.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        });
        report
            .instances
            .extend(instances(&fleet, &placement, &target.name, reply.ok()));
    }
    let healthy = report.hosts.iter().all(|host| host.reachable)
        && report
            .instances
            .iter()
            .filter(|instance| instance.placed)
            .all(|instance| instance.state == AgentState::Running.as_str());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_ALL_RUNNING)
    })
}

/// A host's rows: each instance placed there (as the host reports it, or
/// `missing`/`unknown`), then the agents it runs that the fleet does not
/// place.
fn instances(
    fleet: &Fleet,
    placement: &Placement,
    host: &str,
    reply: Option<StatusReply>,
) -> Vec<InstanceRow> {
    let mut rows = Vec::new();
    let mut agents = reply.as_ref().map(|reply| reply.agents.clone());
    for placed in placement.on_host(host) {
        let found = agents.as_mut().and_then(|agents| {
            let index = agents.iter().position(|agent| agent.name == placed.name)?;
            Some(agents.remove(index))
        });
        let absent = if agents.is_some() {
            "missing"
        } else {
            "unknown"
        };
        rows.push(row(
            placed.name.clone(),
            host,
            Some((placed.tenant.clone(), placed.agent.clone())),
            found.as_ref(),
            absent,
        ));
    }
    for agent in agents.unwrap_or_default() {
        // TENANT.AGENT names still say whose they are.
        let labels = agent
            .name
            .split_once('.')
            .filter(|(tenant, template)| {
                fleet.tenants.contains_key(*tenant) && fleet.templates.contains_key(*template)
            })
            .map(|(tenant, template)| (tenant.to_owned(), template.to_owned()));
        let mut unplaced = row(agent.name.clone(), host, labels, Some(&agent), "");
        unplaced.placed = false;
        rows.push(unplaced);
    }
    rows
}

fn row(
    name: String,
    host: &str,
    labels: Option<(String, String)>,
    status: Option<&AgentStatus>,
    absent: &str,
) -> InstanceRow {
    let (tenant, agent) = labels.unzip();
    InstanceRow {
        name,
        host: host.to_owned(),
        tenant,
        agent,
        state: status.map_or(absent.to_owned(), |status| status.state.as_str().to_owned()),
        health: status.map(|status| status.health),
        release: status.and_then(|status| status.release.clone()),
        pid: status.and_then(|status| status.pid),
        restarts: status.map(|status| status.restarts),
        cpu_percent: status.and_then(|status| status.cpu_percent),
        memory_bytes: status.and_then(|status| status.memory_bytes),
        uptime_secs: status.and_then(|status| status.uptime_secs),
        placed: true,
    }
}

/// The table: one line per instance, then one per host that did not
/// answer, with its reason.
fn table(report: &Report) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 10]> = report
        .instances
        .iter()
        .map(|instance| {
            [
                instance.host.clone(),
                instance.tenant.clone().unwrap_or_else(dash),
                instance.agent.clone().unwrap_or_else(dash),
                if instance.placed {
                    instance.name.clone()
                } else {
                    format!("{} (not in the fleet)", instance.name)
                },
                instance.state.clone(),
                match instance.health {
                    Some(Health::Healthy) => "healthy".to_owned(),
                    Some(Health::Unhealthy) => "unhealthy".to_owned(),
                    _ => dash(),
                },
                instance.release.clone().unwrap_or_else(dash),
                instance
                    .cpu_percent
                    .map(|cpu| format!("{cpu:.1}%"))
                    .unwrap_or_else(dash),
                instance
                    .memory_bytes
                    .map(render::bytes)
                    .unwrap_or_else(dash),
                instance
                    .restarts
                    .map(|restarts| restarts.to_string())
                    .unwrap_or_else(dash),
            ]
        })
        .collect();
    let header = [
        "HOST", "TENANT", "AGENT", "INSTANCE", "STATE", "HEALTH", "RELEASE", "CPU", "MEMORY",
        "RESTARTS",
    ];
    let mut text = if rows.is_empty() {
        "no instances\n".to_owned()
    } else {
        render::table(&header, &rows)
    };
    for host in &report.hosts {
        if let Some(error) = &host.error {
            text.push_str(&format!(
                "{} ({}): unreachable: {error} ({})\n",
                host.name,
                host.address,
                ssh::seconds(Duration::from_secs_f64(host.seconds))
            ));
        }
    }
    text
}
