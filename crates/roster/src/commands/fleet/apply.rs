//! `roster fleet apply`: converges every host to the fleet file. From
//! `plan::survey`'s view of the hosts, each host gets only the steps it
//! needs: the roster binary uploaded when its sha256 differs (to a temp
//! file beside it, then renamed: atomic), the daemon started when none
//! answers (`roster install` where systemd is init, else `roster daemon`
//! detached), the rendered roster.toml written when it differs (temp file
//! and rename), then `roster apply` there (which also creates the users
//! templates ask for with `create_user = true`). Moves start on the new
//! host first: hosts that lose an instance to a move go last, once the
//! instance runs (healthy, when its template has a health check) where
//! it moved. Hosts are worked on in parallel within `[ssh] max_parallel`;
//! one host's failure does not stop the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use roster_core::api::{AgentState, Health, StatusReply};
use roster_core::fleet::{self, Change, ChangeKind};
use serde::Serialize;

use super::plan::{self, Survey};
use super::ssh::Target;
use super::{REMOTE_CONFIG, REMOTE_HOME};

/// What uploading the binary may take on top of connecting.
const UPLOAD_BUDGET: Duration = Duration::from_secs(60);
/// What writing the config or starting the daemon may take.
const STEP_BUDGET: Duration = Duration::from_secs(30);
/// What `roster apply` on a host may take: it waits up to 60 s for its
/// agents to run.
const APPLY_BUDGET: Duration = Duration::from_secs(75);
/// How long a moved instance has to run (and be healthy) on its new host
/// before its old host is left as it is.
const MOVE_DEADLINE: Duration = Duration::from_secs(60);
/// Between two looks at a new host while waiting for a moved instance.
const MOVE_POLL: Duration = Duration::from_millis(250);

/// What one host needs.
#[derive(Clone, Debug, Default)]
struct Work {
    upload: bool,
    start: bool,
    systemd: bool,
    /// The roster.toml to write, when it differs from the host's.
    write: Option<String>,
}

impl Work {
    fn is_empty(&self) -> bool {
        !self.upload && !self.start && self.write.is_none()
    }
}

/// A host's row of `--json`: what was done there.
#[derive(Clone, Debug, Default, Serialize)]
struct HostRow {
    name: String,
    address: String,
    reachable: bool,
    uploaded: bool,
    started: bool,
    wrote: bool,
    applied: bool,
    error: Option<String>,
    /// How long its changes took, in seconds (`null`: nothing to do).
    seconds: Option<f64>,
}

#[derive(Serialize)]
struct Report<'a> {
    changes: &'a [Change],
    hosts: Vec<HostRow>,
}

/// Runs `roster fleet apply`.
pub fn run(file: &Path, json: bool, only: &[String]) -> Result<ExitCode> {
    let survey = plan::survey(file, only)?;
    let exe = std::env::current_exe().context("cannot find the running roster binary")?;
    let binary = std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    let sha256 = fleet::digest_bytes(&binary);

    let mut rows: Vec<HostRow> = plan::host_rows(&survey)
        .into_iter()
        .map(|host| HostRow {
            name: host.name,
            address: host.address,
            reachable: host.reachable,
            error: host.error,
            ..HostRow::default()
        })
        .collect();
    let mut work: BTreeMap<usize, Work> = BTreeMap::new();
    for (index, (target, state)) in survey.targets.iter().zip(&survey.states).enumerate() {
        let Ok(state) = state else { continue };
        let rendered = fleet::render(&survey.fleet, &survey.placement, &target.name);
        let needed = Work {
            upload: state.roster_sha256.as_deref() != Some(sha256.as_str()),
            start: !state.daemon,
            systemd: state.systemd,
            write: (state.config.as_deref() != Some(rendered.as_str())).then_some(rendered),
        };
        if !needed.is_empty() {
            work.insert(index, needed);
        }
    }

    if work.is_empty() {
        finish(json, &survey.changes, &rows, true)?;
        return Ok(exit_code(&rows));
    }

    // Hosts that lose an instance to a move go after the hosts it moves to.
    let losing: BTreeSet<&str> = survey
        .changes
        .iter()
        .filter(|change| change.kind == ChangeKind::Move)
        .filter_map(|change| change.from.as_deref())
        .collect();
    let (last, first): (Vec<usize>, Vec<usize>) = work
        .keys()
        .partition(|index| losing.contains(survey.targets[**index].name.as_str()));
    for (index, row) in converge(&survey, &work, &first, &binary) {
        rows[index] = merge(std::mem::take(&mut rows[index]), row);
    }
    // A losing host goes on only once every instance it loses runs where
    // it moved; otherwise it keeps them, and says why.
    let mut ready = Vec::new();
    for index in last {
        let host = survey.targets[index].name.as_str();
        match moved_away(&survey, host, &rows) {
            Ok(()) => ready.push(index),
            Err(error) => rows[index].error = Some(error),
        }
    }
    for (index, row) in converge(&survey, &work, &ready, &binary) {
        rows[index] = merge(std::mem::take(&mut rows[index]), row);
    }
    finish(json, &survey.changes, &rows, false)?;
    Ok(exit_code(&rows))
}

fn exit_code(rows: &[HostRow]) -> ExitCode {
    if rows.iter().all(|row| row.error.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(plan::UNREACHABLE)
    }
}

fn merge(mut row: HostRow, done: HostRow) -> HostRow {
    row.uploaded |= done.uploaded;
    row.started |= done.started;
    row.wrote |= done.wrote;
    row.applied |= done.applied;
    row.seconds = done.seconds.or(row.seconds);
    if done.error.is_some() {
        row.error = done.error;
    }
    row
}

/// Prints the report: JSON, or the changes, what was done per host and
/// the hosts that failed.
fn finish(json: bool, changes: &[Change], rows: &[HostRow], untouched: bool) -> Result<()> {
    if json {
        let report = Report {
            changes,
            hosts: rows.to_vec(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if untouched {
        println!("nothing to change");
    } else if !changes.is_empty() {
        print!("{}", plan::changes_table(changes));
    }
    for row in rows {
        let mut done = Vec::new();
        if row.uploaded {
            done.push("uploaded roster");
        }
        if row.started {
            done.push("started the daemon");
        }
        if row.wrote {
            done.push("wrote roster.toml");
        }
        if row.applied {
            done.push("applied");
        }
        match (&row.error, row.reachable) {
            (Some(error), false) => {
                println!("{} ({}): unreachable: {error}", row.name, row.address)
            }
            (Some(error), true) => println!("{} ({}): failed: {error}", row.name, row.address),
            (None, _) if !done.is_empty() => {
                println!("{} ({}): {}", row.name, row.address, done.join(", "))
            }
            (None, _) => {}
        }
    }
    Ok(())
}

/// Works on the hosts at `indices` in parallel (at most `[ssh]
/// max_parallel` at once): what was done on each, by index.
fn converge(
    survey: &Survey,
    work: &BTreeMap<usize, Work>,
    indices: &[usize],
    binary: &[u8],
) -> Vec<(usize, HostRow)> {
    let next = Mutex::new(0usize);
    let done: Mutex<Vec<(usize, HostRow)>> = Mutex::new(Vec::new());
    let workers = (survey.fleet.ssh.max_parallel as usize).clamp(1, indices.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let position = match next.lock() {
                    Ok(mut next) => {
                        *next += 1;
                        *next - 1
                    }
                    Err(_) => return,
                };
                let Some(&index) = indices.get(position) else {
                    return;
                };
                let Some(needed) = work.get(&index) else {
                    continue;
                };
                let row = converge_host(survey, &survey.targets[index], needed, binary);
                if let Ok(mut done) = done.lock() {
                    done.push((index, row));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    // A worker that died leaves its hosts unreported: say so.
    for &index in indices {
        if !done.iter().any(|(seen, _)| *seen == index) {
            done.push((
                index,
                HostRow {
                    error: Some("the worker for this host failed".into()),
                    ..HostRow::default()
                },
            ));
        }
    }
    done
}

/// One host's steps, in order, stopping at the first that fails.
fn converge_host(survey: &Survey, target: &Target, needed: &Work, binary: &[u8]) -> HostRow {
    let started = std::time::Instant::now();
    let mut row = HostRow::default();
    if let Err(error) = steps(survey, target, needed, binary, &mut row) {
        row.error = Some(error);
    }
    row.seconds = Some((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
    row
}

fn steps(
    survey: &Survey,
    target: &Target,
    needed: &Work,
    binary: &[u8],
    row: &mut HostRow,
) -> Result<(), String> {
    let transport = &survey.transport;
    let connect = survey.fleet.ssh.connect_timeout;
    let sh = |script: String| vec!["sh".to_owned(), "-c".to_owned(), script];
    if needed.upload {
        let script = format!(
            "set -e; mkdir -p \"$(dirname {roster})\"; t={roster}.fleet-$$; \
             trap 'rm -f \"$t\"' EXIT; cat >\"$t\"; chmod 755 \"$t\"; mv -f \"$t\" {roster}; \
             trap - EXIT",
            roster = transport.roster()
        );
        transport
            .run_with_input(target, &sh(script), binary, connect + UPLOAD_BUDGET)
            .map_err(|error| format!("uploading roster: {error}"))?;
        row.uploaded = true;
    }
    if let Some(config) = &needed.write {
        let script = format!(
            "set -e; mkdir -p \"$(dirname {config})\"; t={config}.fleet-$$; \
             trap 'rm -f \"$t\"' EXIT; umask 027; cat >\"$t\"; mv -f \"$t\" {config}; \
             trap - EXIT",
            config = REMOTE_CONFIG
        );
        transport
            .run_with_input(
                target,
                &sh(script),
                config.as_bytes(),
                connect + STEP_BUDGET,
            )
            .map_err(|error| format!("writing {REMOTE_CONFIG}: {error}"))?;
        row.wrote = true;
    }
    if needed.start {
        let script = if needed.systemd {
            format!("{} install", transport.roster())
        } else {
            // Detached (its own session, every descriptor elsewhere) so
            // that the ssh session can end; then wait until it answers.
            format!(
                "cd /; setsid nohup {roster} --home {home} daemon -f {config} \
                 </dev/null >>{home}/daemon.log 2>&1 & \
                 i=0; while [ $i -lt 100 ]; do \
                 {roster} --home {home} status >/dev/null 2>&1 && exit 0; \
                 sleep 0.1; i=$((i+1)); done; \
                 echo \"the daemon did not answer within 10s (see {home}/daemon.log)\" >&2; exit 1",
                roster = transport.roster(),
                home = REMOTE_HOME,
                config = REMOTE_CONFIG
            )
        };
        transport
            .run(target, &sh(script), connect + STEP_BUDGET)
            .map_err(|error| format!("starting the daemon: {error}"))?;
        row.started = true;
    }
    let apply: Vec<String> = [
        transport.roster(),
        "--home",
        REMOTE_HOME,
        "apply",
        "-f",
        REMOTE_CONFIG,
        "--replace",
    ]
    .map(str::to_owned)
    .to_vec();
    // A daemon that was already running keeps the roster it started with:
    // one older than the binary just uploaded may not know this config.
    let older_daemon = needed.upload && !needed.start;
    transport
        .run(target, &apply, connect + APPLY_BUDGET)
        .map_err(|error| {
            let mut message = format!("roster apply: {error}");
            if older_daemon {
                message.push_str(
                    "\n  hint: the host's daemon still runs the roster it started with, which may \
                     not know this config; restart it to run the uploaded one (`systemctl restart \
                     roster`, which stops its agents gracefully first), then apply again",
                );
            }
            message
        })?;
    row.applied = true;
    Ok(())
}

/// Waits until every instance `host` loses to a move runs (and is
/// healthy, when its template checks health) on its new host.
fn moved_away(survey: &Survey, host: &str, rows: &[HostRow]) -> Result<(), String> {
    let deadline = Instant::now() + MOVE_DEADLINE;
    for change in &survey.changes {
        if change.kind != ChangeKind::Move || change.from.as_deref() != Some(host) {
            continue;
        }
        let Some(index) = survey.targets.iter().position(|t| t.name == change.host) else {
            return Err(format!(
                "{} moves to {}, which was not worked on",
                change.instance, change.host
            ));
        };
        if rows[index].error.is_some() {
            return Err(format!(
                "kept {}: its new host {} failed",
                change.instance, change.host
            ));
        }
        let checks_health = survey
            .placement
            .get(&change.instance)
            .and_then(|placed| survey.fleet.templates.get(&placed.agent))
            .is_some_and(|template| template.table.iter().any(|(key, _)| key == "health"));
        wait_running(
            survey,
            &survey.targets[index],
            &change.instance,
            checks_health,
            deadline,
        )
        .map_err(|error| format!("kept {}: {error}", change.instance))?;
    }
    Ok(())
}

fn wait_running(
    survey: &Survey,
    target: &Target,
    instance: &str,
    checks_health: bool,
    deadline: Instant,
) -> Result<(), String> {
    let status: Vec<String> = [
        survey.transport.roster(),
        "--home",
        REMOTE_HOME,
        "status",
        "--json",
    ]
    .map(str::to_owned)
    .to_vec();
    let timeout = survey.fleet.ssh.connect_timeout + STEP_BUDGET;
    loop {
        let last = match survey.transport.run(target, &status, timeout) {
            Ok(stdout) => match serde_json::from_slice::<StatusReply>(&stdout) {
                Ok(reply) => match reply.agents.iter().find(|agent| agent.name == instance) {
                    Some(agent)
                        if agent.state == AgentState::Running
                            && (!checks_health || agent.health == Health::Healthy) =>
                    {
                        return Ok(())
                    }
                    Some(agent) => format!("{} there", agent.state.as_str()),
                    None => "not there".to_owned(),
                },
                Err(error) => format!("its status is not JSON: {error}"),
            },
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "not running on {} within {}s ({last})",
                target.name,
                MOVE_DEADLINE.as_secs()
            ));
        }
        std::thread::sleep(MOVE_POLL);
    }
}
