//! `roster fleet deploy AGENT SOURCE`: one release, one version, on every
//! instance of a template. SOURCE is packed once here, the lock taken on
//! every host, the release live everywhere read (and required to be one),
//! then the canary hosts, then batches: each host gets the pack once over
//! stdin, unpacks it into a staging directory, and its own daemon deploys
//! it to each instance there (`roster deploy`: blue-green, and it goes on
//! if the session is cut). A batch whose failed hosts exceed --max-fail
//! stops the rollout, and every instance that took the release rolls back
//! to the one that was live everywhere before.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use roster_core::api::{DeployOutcome, DeployProgress};
use roster_core::fleet::digest;

use super::lock;
use super::progress::Progress;
use super::releases::{
    self, each_host, table, HostRow, HostWork, InstanceRow, Report, SESSIONS_PER_HOST,
};
use super::ssh::{Ssh, Target};
use super::REMOTE_HOME;

/// What uploading and unpacking may take on top of connecting.
const UPLOAD_BUDGET: Duration = Duration::from_secs(120);
/// What one instance's deploy or rollback may take on top of connecting.
const DEPLOY_BUDGET: Duration = Duration::from_secs(30 * 60);
/// Exit codes (`--help` says so).
const FAILED: u8 = 1;
const ROLLED_BACK: u8 = 3;

/// `roster fleet deploy`'s options.
pub struct Options {
    pub file: PathBuf,
    pub agent: String,
    pub source: PathBuf,
    pub version: Option<String>,
    pub canary: usize,
    pub batch: Option<String>,
    pub max_fail: String,
    pub hosts: Vec<String>,
    pub tenants: Vec<String>,
    pub json: bool,
    pub break_lock: bool,
}

/// Runs `roster fleet deploy`.
pub fn run(options: Options) -> Result<ExitCode> {
    let max_fail = parse_percent(&options.max_fail).context("--max-fail")?;
    let batch = options
        .batch
        .as_deref()
        .map(Batch::parse)
        .transpose()
        .context("--batch")?;
    let (fleet, transport, works) = releases::load(
        &options.file,
        &options.agent,
        &options.hosts,
        &options.tenants,
    )?;
    let pack = pack(&options.source)?;
    let version = match &options.version {
        Some(version) => version.clone(),
        None => format!("r{}", &digest(&String::from_utf8_lossy(&pack))[..12]),
    };
    lock::catch_interrupts().context("catching Ctrl-C")?;
    let connect = fleet.ssh.connect_timeout;
    let parallel = fleet.ssh.max_parallel;
    let _lock = lock::take(&transport, &works, parallel, connect, options.break_lock)?;

    let reads = releases::read_all(&transport, &works, &fleet);
    if reads.iter().any(|read| read.reply.is_err()) {
        bail!(
            "cannot read every instance's releases; nothing was changed\n{}",
            releases::describe(&reads)
        );
    }
    let mut lives: Vec<Option<String>> = reads
        .iter()
        .map(|read| read.reply.as_ref().ok().and_then(releases::live))
        .collect();
    lives.dedup();
    if lives.len() > 1 {
        bail!(
            "the instances of {} run different releases; nothing was changed\n{}\n  \
             hint: put them on one first: roster fleet rollback {} --to VERSION",
            options.agent,
            releases::describe(&reads),
            options.agent
        );
    }
    let previous = lives.into_iter().next().flatten();

    let progress = Progress::new(&works, options.json);
    let waves = waves(works.len(), options.canary, batch);
    let mut rows: Vec<HostRow> = works.iter().map(skipped).collect();
    let mut done = 0;
    let mut stop: Option<String> = None;
    for (number, size) in waves.iter().enumerate() {
        let wave = &works[done..done + size];
        let name = if number == 0 && options.canary > 0 {
            "canary"
        } else {
            "batch"
        };
        let staged = format!("{REMOTE_HOME}/fleet-staging/{version}");
        let results = each_host(wave, parallel, |work| {
            deploy_host(
                &transport, work, &pack, &staged, &version, connect, &progress,
            )
        });
        let failed = results
            .iter()
            .filter(|row| row.result != "deployed")
            .count();
        rows.splice(done..done + size, results);
        done += size;
        if failed * 100 > max_fail as usize * size {
            stop = Some(format!(
                "{failed} of {size} hosts failed in the {name} (--max-fail {max_fail}%)"
            ));
            break;
        }
        if lock::interrupted() {
            stop = Some("interrupted".to_owned());
            break;
        }
    }

    let mut untouched = false;
    let result = match &stop {
        None => "deployed",
        Some(why) => {
            progress.note(&format!("stopping the rollout: {why}"));
            // No host's daemon was asked to deploy (the uploads failed):
            // nothing changed, nothing to roll back.
            untouched = rows
                .iter()
                .flat_map(|row| &row.instances)
                .all(|instance| instance.result == "skipped");
            let rolled = roll_back(
                &transport,
                &works[..done],
                &mut rows[..done],
                previous.as_deref(),
                connect,
                parallel,
                &progress,
            );
            if rolled && !untouched {
                "rolled_back"
            } else {
                "failed"
            }
        }
    };
    progress.finish();
    let report = Report {
        version: version.clone(),
        result: result.to_owned(),
        hosts: rows,
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    match (result, &stop) {
        ("deployed", _) => {
            let instances: Vec<&InstanceRow> = report
                .hosts
                .iter()
                .flat_map(|host| &host.instances)
                .collect();
            let live = instances
                .iter()
                .filter(|instance| instance.result == "deployed")
                .count();
            let failed: Vec<&str> = report
                .hosts
                .iter()
                .filter(|host| host.result != "deployed" && host.result != "skipped")
                .map(|host| host.name.as_str())
                .collect();
            if !options.json {
                if failed.is_empty() {
                    println!("{}: {version} is live on every instance", options.agent);
                } else {
                    println!(
                        "{}: {version} is live on {live} of {} instances; {} failed within --max-fail {max_fail}%: {}",
                        options.agent,
                        instances.len(),
                        failed.len(),
                        failed.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ("rolled_back", Some(why)) => {
            eprintln!(
                "{}: {version} was rolled back to {} ({why})",
                options.agent,
                previous.as_deref().unwrap_or("no release")
            );
            Ok(ExitCode::from(ROLLED_BACK))
        }
        _ if untouched => {
            eprintln!(
                "{}: the rollout stopped before any host changed: {}",
                options.agent,
                stop.as_deref().unwrap_or("failed")
            );
            Ok(ExitCode::from(FAILED))
        }
        _ => {
            eprintln!(
                "{}: the rollout stopped and not every instance could be rolled back; \
                 see the table",
                options.agent
            );
            Ok(ExitCode::from(FAILED))
        }
    }
}

/// SOURCE packed once: `tar -cz` of the directory's content.
fn pack(source: &Path) -> Result<Vec<u8>> {
    if !source.is_dir() {
        bail!("the release source {} is not a directory", source.display());
    }
    let output = Command::new("tar")
        .args(["--sort=name", "-czf", "-", "-C"])
        .arg(source)
        .arg(".")
        .output()
        .context("cannot run tar")?;
    if !output.status.success() {
        bail!(
            "cannot pack {}: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// A host's row before it is reached.
fn skipped(work: &HostWork) -> HostRow {
    HostRow {
        name: work.target.name.clone(),
        result: "skipped".to_owned(),
        error: None,
        instances: work
            .instances
            .iter()
            .map(|name| InstanceRow {
                name: name.clone(),
                result: "skipped".to_owned(),
                release: None,
            })
            .collect(),
    }
}

/// One host: upload and unpack, then `roster deploy` each instance.
fn deploy_host(
    transport: &Ssh,
    work: &HostWork,
    pack: &[u8],
    staged: &str,
    version: &str,
    connect: Duration,
    progress: &Progress,
) -> HostRow {
    let mut row = skipped(work);
    let target = &work.target;
    progress.step(&target.name, "uploading");
    let unpack: Vec<String> = [
        "sh",
        "-c",
        "rm -rf \"$1\" && mkdir -p \"$1\" && tar -xzf - -C \"$1\"",
        "sh",
        staged,
    ]
    .map(str::to_owned)
    .to_vec();
    if let Err(error) = transport.run_with_input(target, &unpack, pack, connect + UPLOAD_BUDGET) {
        progress.step(&target.name, &format!("upload failed: {error}"));
        row.result = "failed".to_owned();
        row.error = Some(format!("upload: {error}"));
        return row;
    }
    // The host's instances at once (the daemon deploys each agent on its
    // own), so a host takes one deploy's time, not one per instance.
    let outcomes = releases::each(&row.instances, SESSIONS_PER_HOST, |instance| {
        progress.step(&target.name, &format!("deploying {}", instance.name));
        let outcome = deploy_instance(transport, target, &instance.name, staged, version, connect);
        progress.step(&target.name, &format!("{}: {}", instance.name, outcome.0));
        outcome
    });
    for (instance, (result, release, error)) in row.instances.iter_mut().zip(outcomes) {
        instance.result = result.to_owned();
        instance.release = release;
        if let Some(error) = error {
            row.error
                .get_or_insert(format!("{}: {error}", instance.name));
        }
    }
    let clean: Vec<String> = ["rm", "-rf", staged].map(str::to_owned).to_vec();
    let _ = transport.run(target, &clean, connect + UPLOAD_BUDGET);
    row.result = if row.error.is_none() {
        "deployed"
    } else {
        "failed"
    }
    .to_owned();
    row
}

/// One instance's `roster deploy` on its host: the result as the table
/// shows it, the release it then runs when known, and what went wrong.
fn deploy_instance(
    transport: &Ssh,
    target: &Target,
    instance: &str,
    staged: &str,
    version: &str,
    connect: Duration,
) -> (&'static str, Option<String>, Option<String>) {
    let args = ["deploy", instance, staged, "--version", version, "--json"];
    match releases::roster(transport, target, &args, &[], connect + DEPLOY_BUDGET) {
        Err(error) => ("unknown", None, Some(error)),
        Ok(answer) => {
            let progress = serde_json::from_str::<DeployProgress>(&answer.stdout).ok();
            let outcome = progress.as_ref().and_then(|progress| progress.outcome);
            let message = progress
                .as_ref()
                .and_then(|progress| progress.message.clone());
            match (answer.code, outcome) {
                (0, _) => ("deployed", Some(version.to_owned()), None),
                (3, _) | (_, Some(DeployOutcome::RolledBack)) => (
                    "rolled_back",
                    progress.and_then(|progress| progress.previous),
                    Some(message.unwrap_or_else(|| answer.reason())),
                ),
                (4, _) => ("unknown", None, Some(answer.reason())),
                _ => (
                    "failed",
                    None,
                    Some(message.unwrap_or_else(|| answer.reason())),
                ),
            }
        }
    }
}

/// Every instance of `works` that took the new release (or may have)
/// back to `previous`. Whether every one of them is back.
fn roll_back(
    transport: &Ssh,
    works: &[HostWork],
    rows: &mut [HostRow],
    previous: Option<&str>,
    connect: Duration,
    parallel: u32,
    progress: &Progress,
) -> bool {
    let before: Vec<HostRow> = rows.to_vec();
    let results = each_host(works, parallel, |work| {
        let row = before.iter().find(|row| row.name == work.target.name)?;
        let mut row = row.clone();
        let mut all = true;
        let outcomes = releases::each(&row.instances, SESSIONS_PER_HOST, |instance| {
            if !matches!(instance.result.as_str(), "deployed" | "unknown") {
                return None;
            }
            let Some(previous) = previous else {
                return Some(Err("no earlier release to roll back to".to_owned()));
            };
            progress.step(
                &work.target.name,
                &format!("rolling back {} to {previous}", instance.name),
            );
            let args = ["rollback", &instance.name, "--to", previous, "--json"];
            let outcome = match releases::roster(
                transport,
                &work.target,
                &args,
                &[],
                connect + DEPLOY_BUDGET,
            ) {
                Ok(answer) if answer.code == 0 => Ok(previous.to_owned()),
                Ok(answer) => Err(format!(
                    "rollback of {}: {}",
                    instance.name,
                    answer.reason()
                )),
                Err(error) => Err(format!("rollback of {}: {error}", instance.name)),
            };
            let shown = if outcome.is_ok() {
                "rolled_back"
            } else {
                "failed"
            };
            progress.step(&work.target.name, &format!("{}: {shown}", instance.name));
            Some(outcome)
        });
        for (instance, outcome) in row.instances.iter_mut().zip(outcomes) {
            match outcome {
                None => {}
                Some(Ok(release)) => {
                    instance.result = "rolled_back".to_owned();
                    instance.release = Some(release);
                }
                Some(Err(error)) => {
                    all = false;
                    if previous.is_none() {
                        instance.result = "failed".to_owned();
                    }
                    row.error.get_or_insert(error);
                }
            }
        }
        if row.instances.iter().any(|i| i.result == "rolled_back") && all {
            row.result = "rolled_back".to_owned();
        } else if !all {
            row.result = "failed".to_owned();
        }
        Some((row, all))
    });
    let mut every = true;
    for (slot, result) in rows.iter_mut().zip(results) {
        if let Some((row, all)) = result {
            *slot = row;
            every &= all;
        } else {
            every = false;
        }
    }
    every
}

/// --batch: a count of hosts, or a percentage of those after the canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch {
    Hosts(usize),
    Percent(u32),
}

impl Batch {
    fn parse(text: &str) -> Result<Self> {
        if let Some(percent) = text.strip_suffix('%') {
            let percent = parse_percent(percent)?;
            if percent == 0 {
                bail!("a batch of 0% deploys nothing; use 1% or more");
            }
            return Ok(Batch::Percent(percent));
        }
        match text.trim().parse::<usize>() {
            Ok(0) | Err(_) => {
                bail!("{text:?} is not a number of hosts (1 or more) or a percentage like 25%")
            }
            Ok(count) => Ok(Batch::Hosts(count)),
        }
    }
}

/// `0`..`100`, with or without `%`.
fn parse_percent(text: &str) -> Result<u32> {
    let digits = text.trim().trim_end_matches('%');
    match digits.parse::<u32>() {
        Ok(percent) if percent <= 100 => Ok(percent),
        _ => bail!("{text:?} is not a percentage from 0 to 100"),
    }
}

/// The sizes of the waves over `hosts` hosts: the canary first, then
/// batches of the rest (all of it at once by default).
fn waves(hosts: usize, canary: usize, batch: Option<Batch>) -> Vec<usize> {
    let mut sizes = Vec::new();
    let canary = canary.min(hosts);
    if canary > 0 {
        sizes.push(canary);
    }
    let rest = hosts - canary;
    let size = match batch {
        None => rest,
        Some(Batch::Hosts(count)) => count,
        Some(Batch::Percent(percent)) => (rest * percent as usize).div_ceil(100),
    }
    .max(1);
    let mut left = rest;
    while left > 0 {
        let this = size.min(left);
        sizes.push(this);
        left -= this;
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_start_with_the_canary() {
        assert_eq!(waves(5, 1, None), vec![1, 4]);
        assert_eq!(waves(5, 2, Some(Batch::Hosts(2))), vec![2, 2, 1]);
        assert_eq!(waves(5, 1, Some(Batch::Percent(50))), vec![1, 2, 2]);
        assert_eq!(waves(1, 1, None), vec![1]);
        assert_eq!(waves(3, 0, Some(Batch::Hosts(5))), vec![3]);
        assert_eq!(waves(2, 5, None), vec![2]);
    }

    #[test]
    fn batches_and_percentages() {
        assert_eq!(Batch::parse("3").ok(), Some(Batch::Hosts(3)));
        assert_eq!(Batch::parse("25%").ok(), Some(Batch::Percent(25)));
        assert!(Batch::parse("0").is_err());
        assert!(Batch::parse("0%").is_err());
        assert!(Batch::parse("x").is_err());
        assert_eq!(parse_percent("0%").ok(), Some(0));
        assert_eq!(parse_percent("50").ok(), Some(50));
        assert!(parse_percent("101%").is_err());
    }
}
