//! Deploys and rollbacks: what the daemon performs of them.
//!
//! The decisions are `roster_core::deployment::Deployment`'s: which step
//! comes next, when the new process is ready, when to give up or roll
//! back, what the journal and `GET /v1/deploy` say. The loop owns the
//! running deployments (`daemon/deploys.rs`), feeds them the supervisor's
//! events and the answers to their work, and performs what they ask on
//! the loop (the switch, retiring, handing back, alerts) or, for work that
//! blocks (staging a release, store writes, build and smoke-test
//! commands, probes), here, off the loop: each answer comes back through
//! the inbox as `Input::Deployment`.
//!
//! This module also checks a request and reserves the agent
//! ([`Deploys::begin`]), and keeps the progress that `GET /v1/deploy`
//! shows. One deploy or rollback per agent at a time.
//!
//! Crash safety: `current` changes only by an atomic rename, and only to a
//! release whose manifest entry says it is complete; a release directory
//! without such an entry is removed by `Releases::recover` before the
//! agent's next start. Tests stop the daemon at each step with
//! `ROSTER_TEST_CRASH_AT=STEP` (the daemon SIGKILLs itself there).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster_core::api::{DeployProgress, EventKind};
use roster_core::deployment::{Action, CommandStep, Done, ReleaseResult};
use roster_core::{AgentName, AgentSpec};

use crate::inbox::{DeployCommand, DeployInput, Inbox, Input, Request};
use crate::probe::probe_attributed;
use crate::releases::Releases;

/// The environment variable that makes the daemon SIGKILL itself at a
/// deploy step, for crash-safety tests. Never set it in production.
pub const CRASH_AT: &str = "ROSTER_TEST_CRASH_AT";

/// Deploys and rollbacks of this daemon: the latest of each agent, and
/// which run now.
pub struct Deploys {
    home: PathBuf,
    inbox: Inbox,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    latest: HashMap<String, DeployProgress>,
    running: HashSet<String>,
}

/// Why a deploy or rollback was not begun: an HTTP status and a message.
#[derive(Debug)]
pub struct Refusal {
    /// 400, 404, 409 or 503.
    pub status: u16,
    /// What went wrong and what to do.
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// What to do, as asked.
#[derive(Debug, Clone)]
pub enum Job {
    /// Ship a source.
    Deploy {
        /// A directory or a .tar.gz, absolute.
        source: PathBuf,
        /// The release name, if given.
        version: Option<String>,
    },
    /// Make an earlier release live again.
    Rollback {
        /// The release, if given (default: the previous one).
        to: Option<String>,
    },
}

impl Deploys {
    /// Deploys for the daemon of `home`.
    pub fn new(home: &Path, inbox: Inbox) -> Arc<Self> {
        Arc::new(Self {
            home: home.to_path_buf(),
            inbox,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The latest deploy or rollback of an agent.
    pub fn progress(&self, agent: &str) -> Option<DeployProgress> {
        self.state().latest.get(agent).cloned()
    }

    /// Runs `work` unless a deploy of `agent` runs (then `None`); no deploy
    /// of it begins meanwhile. For recovering the release store at apply.
    pub fn when_idle<T>(&self, agent: &str, work: impl FnOnce() -> T) -> Option<T> {
        let state = self.state();
        if state.running.contains(agent) {
            return None;
        }
        let result = work();
        drop(state);
        Some(result)
    }

    /// The loop's word on a running deployment: its progress so far.
    pub fn publish(&self, progress: &DeployProgress) {
        let mut state = self.state();
        if let Some(latest) = state
            .latest
            .get_mut(&progress.agent)
            .filter(|latest| latest.id == progress.id)
        {
            latest.clone_from(progress);
        }
    }

    /// The deployment has ended (`progress` has its outcome): the agent
    /// may be deployed again.
    pub fn finished(&self, progress: &DeployProgress) {
        self.publish(progress);
        let mut state = self.state();
        if state
            .latest
            .get(&progress.agent)
            .is_some_and(|latest| latest.id == progress.id)
        {
            state.running.remove(&progress.agent);
        }
    }

    /// Checks a deploy or rollback and hands it to the loop, which runs
    /// it. Returns its progress so far.
    pub async fn begin(self: &Arc<Self>, agent: &str, job: Job) -> Result<DeployProgress, Refusal> {
        let name = AgentName::new(agent)
            .map_err(|error| refuse(400, format!("bad agent name {agent:?}: {error}")))?;
        self.target(&name).await?;
        let releases = Releases::new(&self.home, &name);
        let (kind, version) = match &job {
            Job::Deploy { source, version } => {
                if let Some(version) = version {
                    Releases::check_version(version)
                        .map_err(|error| refuse(400, error.to_string()))?;
                }
                if let Err(error) = std::fs::metadata(source) {
                    return Err(refuse(
                        400,
                        format!(
                            "cannot read the release source {}: {error}\n  hint: give a directory or a .tar.gz the daemon's user can read",
                            source.display()
                        ),
                    ));
                }
                ("deploy", version.clone())
            }
            Job::Rollback { to } => {
                let target = match to {
                    Some(to) => {
                        Releases::check_version(to).map_err(|error| refuse(400, error.to_string()))?;
                        to.clone()
                    }
                    None => releases
                        .previous()
                        .map_err(|error| refuse(500, error.to_string()))?
                        .ok_or_else(|| {
                            refuse(
                                409,
                                format!("{agent} has no earlier release to roll back to\n  hint: `roster releases {agent}` lists them"),
                            )
                        })?,
                };
                if !releases
                    .is_deployable(&target)
                    .map_err(|error| refuse(500, error.to_string()))?
                {
                    return Err(refuse(
                        404,
                        format!("{agent} has no complete release {target}\n  hint: `roster releases {agent}` lists them"),
                    ));
                }
                ("rollback", Some(target))
            }
        };
        let previous = releases.live().ok().flatten();
        if kind == "rollback" && previous.is_some() && previous == version {
            return Err(refuse(
                409,
                format!("{} is live already", version.as_deref().unwrap_or_default()),
            ));
        }
        let progress = {
            let mut state = self.state();
            if state.running.contains(agent) {
                let step = state
                    .latest
                    .get(agent)
                    .and_then(|progress| progress.steps.last())
                    .map(|step| format!(" (at {})", step.step))
                    .unwrap_or_default();
                return Err(refuse(
                    409,
                    format!("a deploy of {agent} is running{step}; wait for it to end\n  hint: `roster releases {agent}` shows the outcome"),
                ));
            }
            state.next_id += 1;
            let progress = DeployProgress {
                id: state.next_id,
                agent: agent.to_owned(),
                kind: kind.to_owned(),
                version: version.clone(),
                previous,
                steps: Vec::new(),
                outcome: None,
                message: None,
            };
            state.running.insert(agent.to_owned());
            state.latest.insert(agent.to_owned(), progress.clone());
            progress
        };
        let job = match job {
            Job::Deploy { source, version } => {
                roster_core::deployment::Job::Deploy { source, version }
            }
            Job::Rollback { .. } => roster_core::deployment::Job::Rollback {
                to: version.unwrap_or_default(),
            },
        };
        if !self.inbox.send(Input::Deployment(DeployInput::Begin {
            agent: name,
            job,
            progress: progress.clone(),
        })) {
            self.state().running.remove(agent);
            return Err(refuse(503, "the daemon is shutting down"));
        }
        Ok(progress)
    }

    /// The agent's spec, if it is shipped as releases.
    async fn target(&self, agent: &AgentName) -> Result<AgentSpec, Refusal> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.inbox.send(Input::Request(Request::DeployTarget {
            agent: agent.clone(),
            reply,
        })) {
            return Err(refuse(503, "the daemon is shutting down"));
        }
        match answer.await {
            Ok(Ok(spec)) => Ok(spec),
            Ok(Err(message)) => Err(refuse(404, message)),
            Err(_) => Err(refuse(503, "the daemon is shutting down")),
        }
    }

    fn note(&self, agent: &AgentName, kind: EventKind, detail: String) {
        self.inbox.send(Input::Note {
            agent: Some(agent.clone()),
            kind,
            detail,
        });
    }
}

/// Stops the daemon at `step` when a crash-safety test asks for it.
pub fn crash_point(step: &str) {
    if std::env::var(CRASH_AT).is_ok_and(|wanted| wanted == step) {
        tracing::warn!("{CRASH_AT}={step}: killing the daemon");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
        // SIGKILL cannot be caught; wait for it.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn unix_now() -> u64 {
    (crate::clock::unix_millis() / 1000).max(0) as u64
}

/// Where a deployment's work is done off the loop, and where its answer
/// goes.
pub struct Worker {
    /// The runtime the work runs on.
    pub runtime: tokio::runtime::Handle,
    /// Where answers go.
    pub inbox: Inbox,
    /// The daemon's home.
    pub home: PathBuf,
}

impl Worker {
    /// Starts `action` (work that blocks or waits: staging, store writes,
    /// commands, probes) off the loop; its [`Done`] comes back as
    /// `Input::Deployment`. Other actions are the loop's own.
    pub fn start(&self, agent: &AgentName, id: u64, spec: &AgentSpec, action: Action) {
        let inbox = self.inbox.clone();
        let answer = {
            let agent = agent.clone();
            move |inbox: &Inbox, done: Done| {
                inbox.send(Input::Deployment(DeployInput::Done {
                    agent: agent.clone(),
                    id,
                    done,
                }));
            }
        };
        let releases = Releases::new(&self.home, agent);
        match action {
            Action::RunCommand {
                step,
                argv,
                version,
                subdir,
            } => {
                let mut env = spec.environment();
                env.push(("ROSTER_RELEASE".into(), version.clone()));
                env.push((
                    "ROSTER_SHARED".into(),
                    releases.shared_dir().to_string_lossy().into_owned(),
                ));
                self.runtime.spawn(async move {
                    run_command(
                        &inbox,
                        &releases,
                        step,
                        &argv,
                        &version,
                        &subdir,
                        env,
                        |done| answer(&inbox, done),
                    )
                    .await;
                });
            }
            Action::Probe {
                check,
                timeout,
                groups,
            } => {
                self.runtime.spawn(async move {
                    let done = match probe_attributed(&check, timeout, groups).await {
                        Ok((group, verdict)) => Done::Probed { group, verdict },
                        Err(error) => Done::Probed {
                            group: None,
                            verdict: Err(error),
                        },
                    };
                    answer(&inbox, done);
                });
            }
            action => {
                let task = self
                    .runtime
                    .spawn_blocking(move || (store_work(&releases, &action), action));
                self.runtime.spawn(async move {
                    let done = match task.await {
                        Ok((Some(done), _)) => done,
                        Ok((None, _)) => return,
                        Err(error) => {
                            tracing::error!("a release-store task failed: {error}");
                            return;
                        }
                    };
                    answer(&inbox, done);
                });
            }
        }
    }
}

/// Work on the release store, on the blocking pool.
fn store_work(releases: &Releases, action: &Action) -> Option<Done> {
    let text = |error: crate::releases::ReleaseError| error.to_string();
    Some(match action {
        Action::Stage {
            source,
            version,
            max_size,
        } => Done::Staged(
            releases
                .ensure_layout()
                .and_then(|()| {
                    releases.stage_within(source, version.as_deref(), unix_now(), *max_size)
                })
                .map_err(text),
        ),
        Action::CheckWorkdir { version, subdir } => {
            Done::Workdir(releases.release_dir(version).join(subdir).is_dir())
        }
        Action::Record {
            version,
            result,
            detail,
        } => {
            let deployed = (*result == ReleaseResult::Deployed).then(unix_now);
            let written = releases
                .record(version, result.as_str(), detail.as_deref(), deployed)
                .map_err(text);
            if let Err(error) = &written {
                tracing::warn!("recording release {version}: {error}");
            }
            Done::Recorded(written)
        }
        Action::Discard { version, detail } => {
            let _ = releases.record(version, ReleaseResult::Failed.as_str(), Some(detail), None);
            Done::Recorded(releases.discard(version).map_err(text))
        }
        Action::CheckRelease { pid, release } => Done::InRelease(runs_in_release(
            *pid,
            &releases.release_dir(release),
            release,
        )),
        Action::SwitchCurrent { release } => {
            Done::Current(releases.switch_current(release).map_err(text))
        }
        Action::Cleanup { keep } => Done::Cleaned(releases.cleanup(*keep as usize).map_err(text)),
        _ => return None,
    })
}

/// Runs a build or smoke-test command in the release through the loop
/// (which spawns and reaps every child of the daemon), its output appended
/// to `agents/NAME/deploy.log`: answers its pid (or why it could not
/// start), then how it ended with the last lines of its output.
#[allow(clippy::too_many_arguments)]
async fn run_command(
    inbox: &Inbox,
    releases: &Releases,
    step: CommandStep,
    argv: &[String],
    version: &str,
    subdir: &Path,
    env: Vec<(String, String)>,
    answer: impl Fn(Done),
) {
    let log_path = releases.dir().join("deploy.log");
    let header = format!(
        "--- {} {} of {version}: {}\n",
        crate::clock::rfc3339_millis(crate::clock::unix_millis()),
        step.as_str(),
        argv.join(" ")
    );
    let opened = {
        let log_path = log_path.clone();
        tokio::task::spawn_blocking(move || open_log(&log_path, &header)).await
    };
    let (log, start, output) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => {
            return answer(Done::CommandStarted(Err(format!(
                "opening {}: {error}",
                log_path.display()
            ))))
        }
        Err(error) => return answer(Done::CommandStarted(Err(error.to_string()))),
    };
    let cwd = releases.release_dir(version).join(subdir);
    let (started, ended) = DeployCommand::send(inbox, argv, &cwd, env, output);
    match started.await {
        Ok(Ok(pid)) => answer(Done::CommandStarted(Ok(pid))),
        Ok(Err(error)) => return answer(Done::CommandStarted(Err(error))),
        Err(_) => {
            return answer(Done::CommandStarted(Err(
                "the daemon is shutting down".into()
            )))
        }
    }
    let Ok(status) = ended.await else {
        return;
    };
    let mut log = log;
    let tail = tokio::task::spawn_blocking(move || tail_of(&mut log, start, 10))
        .await
        .unwrap_or_default();
    answer(Done::CommandEnded { status, tail });
}

/// `deploy.log`, opened for appending with `header` written: the file,
/// where the command's output begins, and a descriptor for the command.
fn open_log(path: &Path, header: &str) -> std::io::Result<(std::fs::File, u64, OwnedFd)> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(header.as_bytes())?;
    let start = file.seek(SeekFrom::End(0))?;
    let output = OwnedFd::from(file.try_clone()?);
    Ok((file, start, output))
}

/// Whether process `pid` works in `release_dir` (or below): `Err` says
/// where it runs instead. A process that is gone passes: the cutover's
/// next look at the agent tells what happened to it.
pub fn runs_in_release(pid: u32, release_dir: &Path, version: &str) -> Result<(), String> {
    let cwd = match std::fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => cwd,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(format!(
            "cannot tell which release the new process (pid {pid}) runs: /proc/{pid}/cwd: {error}"
        ))
        }
    };
    let release_dir = std::fs::canonicalize(release_dir).unwrap_or_else(|_| release_dir.to_owned());
    if cwd.starts_with(&release_dir) {
        return Ok(());
    }
    Err(format!(
        "the new process (pid {pid}) runs in {}, outside release {version} ({}): it does not run the code just deployed\n  \
         hint: an agent shipped as releases runs in its release (`cwd` relative to it) and must not change directory out of it",
        cwd.display(),
        release_dir.display()
    ))
}

/// The last `lines` lines written to `file` since `start`, at most 4 KiB.
fn tail_of(file: &mut std::fs::File, start: u64, lines: usize) -> String {
    let Ok(end) = file.seek(SeekFrom::End(0)) else {
        return String::new();
    };
    let from = start.max(end.saturating_sub(4096));
    if file.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.take(4096).read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Before a config is applied (off the loop): every agent shipped as
/// releases gets its layout, and what a killed daemon left half-done is
/// repaired (`Releases::recover`: half-staged releases removed, `current`
/// pointing at a complete release). Agents with a deploy running are left
/// to it. What was repaired is journaled. Returns each agent's live
/// release (an agent without one is `undeployed` until its first deploy).
pub fn prepare_releases(
    home: &Path,
    config: &roster_core::Config,
    deploys: &Deploys,
) -> std::collections::BTreeMap<AgentName, String> {
    let mut live = std::collections::BTreeMap::new();
    for (agent, spec) in &config.agents {
        if spec.deploy.is_none() {
            continue;
        }
        let releases = Releases::new(home, agent);
        let done = deploys.when_idle(agent.as_str(), || {
            releases.ensure_layout()?;
            releases.recover()
        });
        match done {
            None => {}
            Some(Ok(repairs)) => {
                for repair in repairs {
                    deploys.note(agent, EventKind::ReleaseRecovered, repair);
                }
            }
            Some(Err(error)) => deploys.note(
                agent,
                EventKind::ReleaseStoreError,
                error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        }
        if let Ok(Some(version)) = releases.live() {
            live.insert(agent.clone(), version);
        }
    }
    live
}

/// Runs a command through the loop (which spawns and reaps every child of
/// the daemon) and waits for its end: `Ok(true)` on exit 0. Blocks: call it
/// on the blocking pool or a thread of its own, never on the loop.
pub fn run_through_loop(inbox: &Inbox, argv: &[String]) -> Result<bool, String> {
    let output: OwnedFd = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|error| format!("opening /dev/null: {error}"))?
        .into();
    let (started_answer, ended_answer) =
        DeployCommand::send(inbox, argv, Path::new("/"), Vec::new(), output);
    started_answer
        .blocking_recv()
        .map_err(|_| "the daemon is shutting down".to_owned())??;
    let status = ended_answer
        .blocking_recv()
        .map_err(|_| "the daemon is shutting down".to_owned())?;
    Ok(status.is_success())
}

/// Everything a config needs done off the loop before it is applied:
/// users created and their directories given to them, release stores
/// repaired, their live releases read (into `read_along`). `run` runs a
/// command to its end.
pub fn prepare_config(
    home: &Path,
    config_file: &Path,
    config: &roster_core::Config,
    read_along: &mut crate::config_file::ReadAlong,
    deploys: &Deploys,
    run: crate::accounts::RunCommand<'_>,
) {
    for (agent, note) in crate::accounts::prepare_accounts(home, config_file, config, run) {
        deploys.note(&agent, EventKind::Account, note);
    }
    read_along.live_releases = prepare_releases(home, config, deploys);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_runs_in_a_release_when_its_directory_is_inside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let release = dir.path().join("releases/v2");
        std::fs::create_dir_all(release.join("app")).expect("release");
        let elsewhere = dir.path().join("old");
        std::fs::create_dir_all(&elsewhere).expect("old");
        let mut inside = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(release.join("app"))
            .spawn()
            .expect("sleep");
        let mut outside = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&elsewhere)
            .spawn()
            .expect("sleep");
        let inside_result = runs_in_release(inside.id(), &release, "v2");
        let outside_result = runs_in_release(outside.id(), &release, "v2");
        for child in [&mut inside, &mut outside] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(inside_result, Ok(()));
        let error = outside_result.expect_err("outside the release");
        assert!(
            error.contains("outside release v2") && error.contains("/old"),
            "{error}"
        );
        // A process that is gone is judged by the cutover's next look.
        assert_eq!(runs_in_release(inside.id(), &release, "v2"), Ok(()));
    }
}
