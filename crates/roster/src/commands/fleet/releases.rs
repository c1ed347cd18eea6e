//! What `fleet deploy` and `fleet rollback` share: the instances of one
//! template on the chosen hosts, the host's own `roster` run with its exit
//! code (deploy 3 and rollback 1 are answers, not transport failures), each
//! instance's live release, and work on hosts in parallel.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use roster_core::api::ReleasesReply;
use roster_core::fleet::{self, Fleet, Placement};
use serde::Serialize;

use super::ssh::{Ssh, Target};
use super::REMOTE_HOME;
use crate::render;

/// What a host's `roster releases` may take on top of connecting.
const READ_BUDGET: Duration = Duration::from_secs(10);

/// One host and the instances of the template it runs.
#[derive(Clone, Debug)]
pub struct HostWork {
    /// How ssh reaches it.
    pub target: Target,
    /// Its instances of the template (`TENANT.AGENT`), in name order.
    pub instances: Vec<String>,
}

/// What a rollout starts from: the fleet file `file` read and placed, its
/// transport, and the hosts with their instances of template `agent`
/// (see [`select`]).
pub fn load(
    file: &Path,
    agent: &str,
    hosts: &[String],
    tenants: &[String],
) -> Result<(Fleet, Ssh, Vec<HostWork>)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let fleet = fleet::parse(&text, file)?;
    let placement = fleet::place(&fleet)?;
    let transport = Ssh::new(&fleet)?;
    let works = select(&fleet, &placement, &transport, agent, hosts, tenants)?;
    Ok((fleet, transport, works))
}

/// The hosts (from `hosts`, all when empty) that run instances of
/// template `agent` of the tenants in `tenants` (all when empty).
fn select(
    fleet: &Fleet,
    placement: &Placement,
    transport: &Ssh,
    agent: &str,
    hosts: &[String],
    tenants: &[String],
) -> Result<Vec<HostWork>> {
    if !fleet.templates.contains_key(agent) {
        bail!("no agent template named {agent:?} in the fleet file");
    }
    for tenant in tenants {
        if !fleet.tenants.contains_key(tenant) {
            bail!("no tenant named {tenant:?} in the fleet file");
        }
    }
    let works: Vec<HostWork> = transport
        .targets(fleet, hosts)?
        .into_iter()
        .map(|target| {
            let mut instances: Vec<String> = placement
                .on_host(&target.name)
                .filter(|placed| placed.agent == agent)
                .filter(|placed| tenants.is_empty() || tenants.contains(&placed.tenant))
                .map(|placed| placed.name.clone())
                .collect();
            instances.sort();
            HostWork { target, instances }
        })
        .filter(|work| !work.instances.is_empty())
        .collect();
    if works.is_empty() {
        bail!("no instance of {agent:?} is placed on the chosen hosts and tenants");
    }
    Ok(works)
}

/// What the host's `roster` answered: its exit code, stdout and stderr.
#[derive(Debug)]
pub struct Answer {
    /// Its exit code.
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Answer {
    /// The last line of its stderr without `error: `, or `exit N`.
    pub fn reason(&self) -> String {
        self.stderr
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(|line| line.trim_start_matches("error: ").to_owned())
            .unwrap_or_else(|| format!("exit {}", self.code))
    }
}

/// The line that ends the wrapper's output, then the exit code.
const MARK: &str = "roster-fleet-exit=";

/// Runs the host's `roster --home HOME ARGS...` with `input` on its stdin:
/// its answer whatever its exit code, or why there is none (the transport).
pub fn roster(
    transport: &Ssh,
    target: &Target,
    args: &[&str],
    input: &[u8],
    timeout: Duration,
) -> Result<Answer, String> {
    // stdout stays stdout; stderr is kept and printed after the mark, so
    // the exit code comes back even when it is not 0.
    let script = format!(
        "exec 3>&1; err=$(\"$@\" 2>&1 >&3); code=$?; printf '\\n{MARK}%s\\n%s' \"$code\" \"$err\""
    );
    let mut remote: Vec<String> = vec!["sh".into(), "-c".into(), script, "sh".into()];
    remote.extend([transport.roster(), "--home", REMOTE_HOME].map(str::to_owned));
    remote.extend(args.iter().map(|arg| (*arg).to_owned()));
    let stdout = transport.run_with_input(target, &remote, input, timeout)?;
    let text = String::from_utf8_lossy(&stdout);
    let Some((out, rest)) = text.rsplit_once(&format!("\n{MARK}")) else {
        return Err("the host's roster gave no exit code".to_owned());
    };
    let (code, stderr) = rest.split_once('\n').unwrap_or((rest, ""));
    let code = code
        .trim()
        .parse()
        .map_err(|_| format!("the host's roster gave a bad exit code {code:?}"))?;
    Ok(Answer {
        code,
        stdout: out.to_owned(),
        stderr: stderr.to_owned(),
    })
}

/// An instance's releases as its host reports them.
pub fn releases(
    transport: &Ssh,
    target: &Target,
    instance: &str,
    connect_timeout: Duration,
) -> Result<ReleasesReply, String> {
    let answer = roster(
        transport,
        target,
        &["releases", instance, "--json"],
        &[],
        connect_timeout + READ_BUDGET,
    )?;
    if answer.code != 0 {
        return Err(format!("roster releases {instance}: {}", answer.reason()));
    }
    serde_json::from_str(&answer.stdout)
        .map_err(|error| format!("roster releases {instance} is not JSON: {error}"))
}

/// The release `current` points to, if any.
pub fn live(reply: &ReleasesReply) -> Option<String> {
    reply
        .releases
        .iter()
        .find(|release| release.live)
        .map(|release| release.version.clone())
}

/// One instance's releases, read on its host.
pub struct Read {
    /// The host's name.
    pub host: String,
    /// The instance.
    pub instance: String,
    /// Its releases, or why they could not be read.
    pub reply: Result<ReleasesReply, String>,
}

/// Every instance's releases, hosts in parallel.
pub fn read_all(transport: &Ssh, works: &[HostWork], fleet: &Fleet) -> Vec<Read> {
    let timeout = fleet.ssh.connect_timeout;
    each_host(works, fleet.ssh.max_parallel, |work| {
        work.instances
            .iter()
            .map(|instance| Read {
                host: work.target.name.clone(),
                instance: instance.clone(),
                reply: releases(transport, &work.target, instance, timeout),
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// The reads as `INSTANCE on HOST: RELEASE` lines, for refusals.
pub fn describe(reads: &[Read]) -> String {
    reads
        .iter()
        .map(|read| {
            let what = match &read.reply {
                Ok(reply) => live(reply).unwrap_or_else(|| "no release".to_owned()),
                Err(error) => format!("unknown ({error})"),
            };
            format!("  {} on {}: {what}", read.instance, read.host)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An instance's row of the result.
#[derive(Serialize, Clone, Debug)]
pub struct InstanceRow {
    pub name: String,
    /// `deployed`, `failed` (the live release untouched), `rolled_back`,
    /// `unknown` (the host did not say), `skipped` (not reached).
    pub result: String,
    /// The release live after it, when known.
    pub release: Option<String>,
}

/// A host's row of the result.
#[derive(Serialize, Clone, Debug)]
pub struct HostRow {
    pub name: String,
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub instances: Vec<InstanceRow>,
}

#[derive(Serialize)]
pub struct Report {
    pub version: String,
    pub result: String,
    pub hosts: Vec<HostRow>,
}

/// The final table: host, instance, result, release.
pub fn table(report: &Report) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 4]> = report
        .hosts
        .iter()
        .flat_map(|host| {
            host.instances.iter().map(|instance| {
                [
                    host.name.clone(),
                    instance.name.clone(),
                    instance.result.clone(),
                    instance.release.clone().unwrap_or_else(dash),
                ]
            })
        })
        .collect();
    let mut text = render::table(&["HOST", "INSTANCE", "RESULT", "RELEASE"], &rows);
    for host in &report.hosts {
        if let Some(error) = &host.error {
            text.push_str(&format!("{}: {error}\n", host.name));
        }
    }
    text
}

/// How many of a host's instances are worked on at once, each in its own
/// session over the host's one connection: below sshd's default
/// `MaxSessions` (10 per connection).
pub const SESSIONS_PER_HOST: usize = 8;

/// Runs `job` for every host, at most `max_parallel` at once; results
/// in the hosts' order.
pub fn each_host<T: Send>(
    works: &[HostWork],
    max_parallel: u32,
    job: impl Fn(&HostWork) -> T + Sync,
) -> Vec<T> {
    each(works, max_parallel as usize, job)
}

/// Runs `job` for every item, at most `max_parallel` at once (each on a
/// thread of its own); results in the items' order.
pub fn each<I: Sync, T: Send>(
    works: &[I],
    max_parallel: usize,
    job: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let next = Arc::new(Mutex::new(0usize));
    let results: Arc<Mutex<Vec<Option<T>>>> =
        Arc::new(Mutex::new(works.iter().map(|_| None).collect()));
    let workers = max_parallel.clamp(1, works.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let next = Arc::clone(&next);
            let results = Arc::clone(&results);
            let job = &job;
            scope.spawn(move || loop {
                let index = {
                    let Ok(mut next) = next.lock() else { return };
                    let index = *next;
                    *next += 1;
                    index
                };
                let Some(work) = works.get(index) else { return };
                let result = job(work);
                if let Ok(mut results) = results.lock() {
                    results[index] = Some(result);
                }
            });
        }
    });
    match Arc::try_unwrap(results).map(Mutex::into_inner) {
        Ok(Ok(results)) => results.into_iter().flatten().collect(),
        _ => Vec::new(),
    }
}
