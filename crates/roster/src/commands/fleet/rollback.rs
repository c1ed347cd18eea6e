//! `roster fleet rollback AGENT [--to V]`: every instance of a template to
//! one release. Without --to, the release live before the current one,
//! which must be the same on every instance: never each host's own
//! "previous" (refused, with what runs where, when they disagree).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use roster_core::api::ReleasesReply;

use super::lock;
use super::progress::Progress;
use super::releases::{self, each_host, table, HostRow, InstanceRow, Report, SESSIONS_PER_HOST};

/// What one instance's rollback may take on top of connecting.
const ROLLBACK_BUDGET: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// `roster fleet rollback`'s options.
pub struct Options {
    pub file: PathBuf,
    pub agent: String,
    pub to: Option<String>,
    pub hosts: Vec<String>,
    pub tenants: Vec<String>,
    pub json: bool,
    pub break_lock: bool,
}

/// Runs `roster fleet rollback`.
pub fn run(options: Options) -> Result<ExitCode> {
    let (fleet, transport, works) = releases::load(
        &options.file,
        &options.agent,
        &options.hosts,
        &options.tenants,
    )?;
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
    let to = match &options.to {
        Some(to) => to.clone(),
        None => {
            let mut befores: Vec<Option<String>> = reads
                .iter()
                .map(|read| read.reply.as_ref().ok().and_then(previous))
                .collect();
            befores.dedup();
            match befores.as_slice() {
                [Some(one)] => one.clone(),
                [None] => bail!(
                    "no instance of {} has an earlier release to go back to",
                    options.agent
                ),
                _ => bail!(
                    "the instances of {} do not share one earlier release; nothing was changed\n{}\n  \
                     hint: name the release for all of them: --to VERSION",
                    options.agent,
                    reads
                        .iter()
                        .map(|read| format!(
                            "  {} on {}: live {}, before it {}",
                            read.instance,
                            read.host,
                            read.reply.as_ref().ok().and_then(releases::live).unwrap_or_else(|| "none".into()),
                            read.reply.as_ref().ok().and_then(previous).unwrap_or_else(|| "none".into()),
                        ))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            }
        }
    };

    let progress = Progress::new(&works, options.json);
    let rows: Vec<HostRow> = each_host(&works, parallel, |work| {
        let mut row = HostRow {
            name: work.target.name.clone(),
            result: "rolled_back".to_owned(),
            error: None,
            instances: Vec::new(),
        };
        // The host's instances at once, as deploy does.
        let outcomes = releases::each(&work.instances, SESSIONS_PER_HOST, |instance| {
            let already = reads
                .iter()
                .find(|read| read.host == work.target.name && &read.instance == instance)
                .and_then(|read| read.reply.as_ref().ok().and_then(releases::live));
            let (result, release, error) = if already.as_deref() == Some(to.as_str()) {
                ("unchanged", Some(to.clone()), None)
            } else if lock::interrupted() {
                ("skipped", already, Some("interrupted".to_owned()))
            } else {
                progress.step(
                    &work.target.name,
                    &format!("rolling back {instance} to {to}"),
                );
                let args = ["rollback", instance, "--to", &to, "--json"];
                match releases::roster(
                    &transport,
                    &work.target,
                    &args,
                    &[],
                    connect + ROLLBACK_BUDGET,
                ) {
                    Ok(answer) if answer.code == 0 => ("rolled_back", Some(to.clone()), None),
                    Ok(answer) => (
                        "failed",
                        already,
                        Some(format!("{instance}: {}", answer.reason())),
                    ),
                    Err(error) => ("unknown", None, Some(format!("{instance}: {error}"))),
                }
            };
            progress.step(&work.target.name, &format!("{instance}: {result}"));
            (result, release, error)
        });
        for (instance, (result, release, error)) in work.instances.iter().zip(outcomes) {
            if let Some(error) = error {
                row.error.get_or_insert(error);
            }
            row.instances.push(InstanceRow {
                name: instance.clone(),
                result: result.to_owned(),
                release,
            });
        }
        if row.error.is_some() {
            row.result = "failed".to_owned();
        }
        row
    });
    progress.finish();
    let every = rows.iter().all(|row| row.error.is_none()) && rows.len() == works.len();
    let report = Report {
        version: to.clone(),
        result: if every { "rolled_back" } else { "failed" }.to_owned(),
        hosts: rows,
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    if every {
        if !options.json {
            println!("{}: {to} is live on every instance", options.agent);
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{}: not every instance could be rolled back to {to}; see the table",
            options.agent
        );
        Ok(ExitCode::from(1))
    }
}

/// The release live before the live one, as the host's own rollback
/// picks it: not live, went live and was never judged bad, deployed last.
fn previous(reply: &ReleasesReply) -> Option<String> {
    reply
        .releases
        .iter()
        .enumerate()
        .filter(|(_, release)| !release.live)
        .filter(|(_, release)| {
            matches!(
                release.result.as_str(),
                "deployed" | "interrupted" | "verifying"
            )
        })
        .filter_map(|(index, release)| {
            let at = release.deployed.as_ref()?;
            // Newest first: a lower index is newer on a tie.
            Some(((at.clone(), std::cmp::Reverse(index)), release))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, release)| release.version.clone())
}
