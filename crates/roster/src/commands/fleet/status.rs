//! `roster fleet status`: every instance on every host in one table. Each
//! host runs `roster --home /var/lib/roster status --json` over ssh (in
//! parallel, each within its deadline); the replies are joined with the
//! fleet's placement, so a placed instance a host does not run shows as
//! `missing` and an agent the fleet does not place is shown, marked.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use roster_core::api::{AgentState, AgentStatus, AlertsReply, Health, StatusReply};
use roster_core::fleet::{self, Fleet, Placement};
use serde::Serialize;

use super::ssh::{self, Ssh};
use super::REMOTE_HOME;
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
    /// Its alerts firing on its host now.
    alerts: Vec<AlertRow>,
}

/// A firing alert of an instance in `--json`.
#[derive(Serialize)]
struct AlertRow {
    name: String,
    severity: String,
    summary: String,
    starts_at: String,
}

#[derive(Serialize)]
struct Report {
    hosts: Vec<HostRow>,
    instances: Vec<InstanceRow>,
}

/// The remote command: the host's status, then its alerts, in one ssh
/// round trip; a failing status fails it, missing alerts do not.
const REMOTE_SCRIPT: &str = "\"$1\" --home \"$2\" status --json || exit; \
                             printf '\\n%s\\n' '--alerts--'; \
                             \"$1\" --home \"$2\" alerts --json || true";
/// What separates the two answers.
const ALERTS_MARK: &[u8] = b"\n--alerts--\n";

/// What `status` asks every time: the fleet, its placement, the hosts.
struct Asker {
    fleet: Fleet,
    placement: Placement,
    transport: Ssh,
    targets: Vec<ssh::Target>,
}

impl Asker {
    fn new(file: &Path, only: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let fleet = fleet::parse(&text, file)?;
        let placement = fleet::place(&fleet)?;
        let transport = Ssh::new(&fleet)?;
        let targets = transport.targets(&fleet, only)?;
        Ok(Self {
            fleet,
            placement,
            transport,
            targets,
        })
    }

    /// One round: every host asked, the report and whether all is well.
    fn ask(&self) -> (Report, bool) {
        let remote: Vec<String> = [
            "sh",
            "-c",
            REMOTE_SCRIPT,
            "sh",
            self.transport.roster(),
            REMOTE_HOME,
        ]
        .map(str::to_owned)
        .to_vec();
        let timeout = self.fleet.ssh.connect_timeout + COMMAND_BUDGET;
        let outcomes = self.transport.run_all(&self.targets, &remote, timeout);
        let mut report = Report {
            hosts: Vec::new(),
            instances: Vec::new(),
        };
        for (target, outcome) in self.targets.iter().zip(outcomes) {
            let answer = outcome.result.and_then(|stdout| {
                let (status, alerts) = split_answer(&stdout);
                let status = serde_json::from_slice::<StatusReply>(status)
                    .map_err(|error| format!("the host's roster status is not JSON: {error}"))?;
                let alerts = alerts
                    .and_then(|alerts| serde_json::from_slice::<AlertsReply>(alerts).ok())
                    .map(|alerts| alerts.firing)
                    .unwrap_or_default();
                Ok((status, alerts))
            });
            report.hosts.push(HostRow {
                name: target.name.clone(),
                address: target.address.clone(),
                reachable: answer.is_ok(),
                error: answer.as_ref().err().cloned(),
                seconds: (outcome.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            });
            let (reply, firing) = answer.ok().unzip();
            let mut rows = instances(&self.fleet, &self.placement, &target.name, reply);
            for alert in firing.unwrap_or_default() {
                if let Some(row) = rows
                    .iter_mut()
                    .find(|row| alert.agent.as_deref() == Some(row.name.as_str()))
                {
                    row.alerts.push(AlertRow {
                        name: alert.name,
                        severity: alert.severity,
                        summary: alert.summary,
                        starts_at: alert.starts_at,
                    });
                }
            }
            report.instances.extend(rows);
        }
        let healthy = report.hosts.iter().all(|host| host.reachable)
            && report
                .instances
                .iter()
                .filter(|instance| instance.placed)
                .all(|instance| instance.state == AgentState::Running.as_str());
        (report, healthy)
    }
}

/// The status JSON and, after the mark, the alerts JSON.
fn split_answer(stdout: &[u8]) -> (&[u8], Option<&[u8]>) {
    match stdout
        .windows(ALERTS_MARK.len())
        .position(|window| window == ALERTS_MARK)
    {
        Some(at) => (&stdout[..at], Some(&stdout[at + ALERTS_MARK.len()..])),
        None => (stdout, None),
    }
}

/// Runs `roster fleet status`.
pub fn run(file: &Path, json: bool, only: &[String]) -> Result<ExitCode> {
    let asker = Asker::new(file, only)?;
    let (report, healthy) = asker.ask();
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

/// Runs `roster fleet status --watch`: a round every `interval` until
/// interrupted; on a terminal the table is redrawn in place, otherwise
/// each round is printed after the last (JSON: one document per round).
pub fn watch(file: &Path, json: bool, only: &[String], interval: Duration) -> Result<ExitCode> {
    use std::io::{IsTerminal, Write};
    let asker = Asker::new(file, only)?;
    let terminal = std::io::stdout().is_terminal();
    loop {
        let started = std::time::Instant::now();
        let (report, _) = asker.ask();
        let mut text = String::new();
        if terminal && !json {
            // Home, then clear: the new table replaces the old one.
            text.push_str("\x1b[H\x1b[2J");
            text.push_str(&format!(
                "every {}; Ctrl-C to stop\n\n",
                ssh::seconds(interval)
            ));
        }
        if json {
            text.push_str(&serde_json::to_string(&report)?);
            text.push('\n');
        } else {
            text.push_str(&table(&report));
            if !terminal {
                text.push('\n');
            }
        }
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // Stdout closed (piped into `head`): done.
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
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
        alerts: Vec::new(),
    }
}

/// The table: one line per instance, then one per host that did not
/// answer, with its reason.
fn table(report: &Report) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 11]> = report
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
                if instance.alerts.is_empty() {
                    dash()
                } else {
                    let names: Vec<&str> = instance
                        .alerts
                        .iter()
                        .map(|alert| alert.name.as_str())
                        .collect();
                    names.join(",")
                },
            ]
        })
        .collect();
    let header = [
        "HOST", "TENANT", "AGENT", "INSTANCE", "STATE", "HEALTH", "RELEASE", "CPU", "MEMORY",
        "RESTARTS", "ALERTS",
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
