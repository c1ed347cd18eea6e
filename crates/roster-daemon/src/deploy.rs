//! Deploys and rollbacks: the steps, run as a task on the daemon's runtime.
//!
//! A deploy stages the source as a new release (`releases.rs`), runs the
//! agent's `build` and `smoke_test` in it (as processes the loop spawns and
//! reaps, like every child of the daemon), then asks the loop for the
//! cutover (`Request::Cutover`): blue-green starts the new release beside
//! the live process, which keeps serving until the new one is ready (see
//! `roster_core::deploy::readiness`); only then does `current` point at the
//! new release and the old process drain. The new process must then stay
//! up and healthy for `verify_for`, or the previous release goes live again
//! the same way, an alert fires and the journal says why.
//!
//! Decisions on processes stay the supervisor's; this module only sequences
//! steps, watches what the loop reports, and keeps the progress that
//! `GET /v1/deploy` shows. One deploy or rollback per agent at a time.
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
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use roster_core::api::AgentState;
use roster_core::api::{
    AlertRecord, AlertState, DeployOutcome, DeployProgress, DeployStep, StepState,
};
use roster_core::deploy::{readiness, verification_failure, Observed, Readiness, Strategy};
use roster_core::health::Check;
use roster_core::supervisor::{AgentView, Switch};
use roster_core::{AgentName, AgentSpec, ExitStatus};

use crate::inbox::{Inbox, Input, Request};
use crate::listen::Handover;
use crate::probe::probe_attributed;
use crate::releases::Releases;

/// The environment variable that makes the daemon SIGKILL itself at a
/// deploy step, for crash-safety tests. Never set it in production.
pub const CRASH_AT: &str = "ROSTER_TEST_CRASH_AT";

/// How often a cutover looks at the agent.
const OBSERVE_EVERY: Duration = Duration::from_millis(50);

/// What a cutover asks the loop.
#[derive(Debug)]
pub enum CutoverStep {
    /// Ship a release (see `Supervisor::handle_switch`).
    Switch {
        /// The release.
        release: String,
        /// How.
        strategy: Strategy,
    },
    /// Drain the process being replaced.
    Retire,
    /// Give the cutover up; the old process serves again.
    Handback(String),
    /// Only look.
    Observe,
}

/// The loop's answer to a [`CutoverStep`]: what the switch did (for
/// `Switch`), and the agent as it is after the step was performed.
pub type CutoverReply = Result<(Option<Switch>, AgentView), String>;

/// A build or smoke-test command for the loop to spawn and reap.
#[derive(Debug)]
pub struct DeployCommand {
    /// argv.
    pub argv: Vec<String>,
    /// The release's directory.
    pub cwd: PathBuf,
    /// On top of the daemon's environment.
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go.
    pub output: OwnedFd,
    /// The pid, or why it could not start.
    pub started: oneshot::Sender<Result<u32, String>>,
    /// How it ended, sent when reaped.
    pub ended: oneshot::Sender<ExitStatus>,
}

impl DeployCommand {
    /// Asks the loop to run `argv` in `cwd` (output on `output`): the
    /// answers are its pid (or why it could not start), then how it ended.
    fn send(
        inbox: &Inbox,
        argv: &[String],
        cwd: &Path,
        env: Vec<(String, String)>,
        output: OwnedFd,
    ) -> (
        oneshot::Receiver<Result<u32, String>>,
        oneshot::Receiver<ExitStatus>,
    ) {
        let (started, started_answer) = oneshot::channel();
        let (ended, ended_answer) = oneshot::channel();
        inbox.send(Input::DeployExec(DeployCommand {
            argv: argv.to_vec(),
            cwd: cwd.to_path_buf(),
            env,
            output,
            started,
            ended,
        }));
        (started_answer, ended_answer)
    }
}

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

/// What to do.
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

    /// Checks a deploy or rollback and begins it; the steps run on the
    /// runtime. Returns its progress so far.
    pub async fn begin(self: &Arc<Self>, agent: &str, job: Job) -> Result<DeployProgress, Refusal> {
        let name = AgentName::new(agent)
            .map_err(|error| refuse(400, format!("bad agent name {agent:?}: {error}")))?;
        let spec = self.target(&name).await?;
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
                version,
                previous,
                steps: Vec::new(),
                outcome: None,
                message: None,
            };
            state.running.insert(agent.to_owned());
            state.latest.insert(agent.to_owned(), progress.clone());
            progress
        };
        let run = Run {
            deploys: self.clone(),
            agent: name,
            spec,
            releases,
            id: progress.id,
        };
        self.note(
            &run.agent,
            if kind == "deploy" {
                "deploy_started"
            } else {
                "rollback_started"
            },
            match &job {
                Job::Deploy { source, .. } => format!("deploying {}", source.display()),
                Job::Rollback { .. } => format!(
                    "rolling back to {}",
                    progress.version.as_deref().unwrap_or_default()
                ),
            },
        );
        tokio::spawn(async move {
            let (outcome, message) = match job {
                Job::Deploy { source, version } => run.deploy(source, version).await,
                Job::Rollback { .. } => {
                    let target = run.progress().version.unwrap_or_default();
                    run.rollback(target).await
                }
            };
            run.finish(outcome, message);
        });
        Ok(progress)
    }

    /// The agent's spec, if it is shipped as releases.
    async fn target(&self, agent: &AgentName) -> Result<AgentSpec, Refusal> {
        let (reply, answer) = oneshot::channel();
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

    fn note(&self, agent: &AgentName, kind: &'static str, detail: String) {
        self.inbox.send(Input::Note {
            agent: Some(agent.clone()),
            kind,
            detail,
        });
    }
}

/// One deploy or rollback under way.
struct Run {
    deploys: Arc<Deploys>,
    agent: AgentName,
    spec: AgentSpec,
    releases: Releases,
    id: u64,
}

/// Stops the daemon at `step` when a crash-safety test asks for it.
fn crash_point(step: &str) {
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

impl Run {
    fn progress(&self) -> DeployProgress {
        self.deploys
            .progress(self.agent.as_str())
            .filter(|progress| progress.id == self.id)
            .unwrap_or_else(|| DeployProgress {
                id: self.id,
                agent: self.agent.to_string(),
                kind: "deploy".into(),
                version: None,
                previous: None,
                steps: Vec::new(),
                outcome: None,
                message: None,
            })
    }

    fn update(&self, change: impl FnOnce(&mut DeployProgress)) {
        let mut state = self.deploys.state();
        if let Some(progress) = state
            .latest
            .get_mut(self.agent.as_str())
            .filter(|progress| progress.id == self.id)
        {
            change(progress);
        }
    }

    fn begin_step(&self, step: &str) -> Instant {
        self.update(|progress| {
            progress.steps.push(DeployStep {
                step: step.to_owned(),
                state: StepState::Running,
                duration_ms: 0,
                detail: None,
            })
        });
        Instant::now()
    }

    fn end_step(&self, began: Instant, state: StepState, detail: impl Into<String>) {
        let detail = detail.into();
        let duration_ms = began.elapsed().as_millis() as u64;
        let mut name = String::new();
        self.update(|progress| {
            if let Some(step) = progress.steps.last_mut() {
                step.state = state;
                step.duration_ms = duration_ms;
                // What the running step noted (the socket handover) comes
                // after the step's own detail.
                let noted = step.detail.take().filter(|noted| !noted.is_empty());
                step.detail = match (detail.is_empty(), noted) {
                    (true, noted) => noted,
                    (false, Some(noted)) => Some(format!("{detail}\n{noted}")),
                    (false, None) => Some(detail.clone()),
                };
                name = step.step.clone();
            }
        });
        let word = match state {
            StepState::Ok => "ok",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Running => "running",
        };
        let first = detail.lines().next().unwrap_or_default();
        self.deploys.note(
            &self.agent,
            "deploy_step",
            format!(
                "{name} {word} in {:.2}s{}{first}",
                duration_ms as f64 / 1000.0,
                if first.is_empty() { "" } else { ": " }
            ),
        );
    }

    fn skip_step(&self, step: &str, detail: &str) {
        let began = self.begin_step(step);
        self.end_step(began, StepState::Skipped, detail);
    }

    fn finish(&self, outcome: DeployOutcome, message: String) {
        let kind = self.progress().kind;
        let journal_kind = match (outcome, kind.as_str()) {
            (DeployOutcome::Deployed, "rollback") => "rollback_done",
            (DeployOutcome::Deployed, _) => "deployed",
            (DeployOutcome::Failed, "rollback") => "rollback_failed",
            (DeployOutcome::Failed, _) => "deploy_failed",
            (DeployOutcome::RolledBack, _) => "rolled_back",
        };
        self.deploys
            .note(&self.agent, journal_kind, message.clone());
        let mut state = self.deploys.state();
        if let Some(progress) = state
            .latest
            .get_mut(self.agent.as_str())
            .filter(|progress| progress.id == self.id)
        {
            progress.outcome = Some(outcome);
            progress.message = Some(message);
        }
        state.running.remove(self.agent.as_str());
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Releases) -> T + Send + 'static,
    ) -> Result<T, String> {
        let releases = Releases::new(&self.deploys.home, &self.agent);
        tokio::task::spawn_blocking(move || work(&releases))
            .await
            .map_err(|error| format!("a release-store task failed: {error}"))
    }

    async fn deploy(&self, source: PathBuf, version: Option<String>) -> (DeployOutcome, String) {
        let Some(deploy) = self.spec.deploy.clone() else {
            return (
                DeployOutcome::Failed,
                "the agent has no deploy section".into(),
            );
        };
        // Stage.
        let began = self.begin_step("stage");
        let max_size = deploy.max_size;
        let staged = self
            .blocking(move |releases| {
                releases.ensure_layout()?;
                releases.stage_within(&source, version.as_deref(), unix_now(), max_size)
            })
            .await
            .and_then(|result| result.map_err(|error| error.to_string()));
        let version = match staged {
            Ok(version) => version,
            Err(error) => {
                self.end_step(began, StepState::Failed, &error);
                return (
                    DeployOutcome::Failed,
                    format!(
                        "staging failed; the live release is untouched: {}",
                        first_line(&error)
                    ),
                );
            }
        };
        self.update(|progress| progress.version = Some(version.clone()));
        crash_point("stage");
        self.end_step(began, StepState::Ok, format!("staged {version}"));
        let release_dir = self.releases.release_dir(&version);
        // Where the agent runs: the release, or the directory `cwd` names
        // inside it. The build runs at the top, the smoke test there.
        let workdir = release_dir.join(&self.spec.release_subdir);

        // Build, then smoke test, in the new release.
        for (step, command, timeout) in [
            ("build", deploy.build.clone(), deploy.build_timeout),
            (
                "smoke_test",
                deploy.smoke_test.clone(),
                deploy.smoke_timeout,
            ),
        ] {
            if step == "smoke_test" && !workdir.is_dir() {
                let error = format!(
                    "release {version} has no directory {}, where the agent runs (its `cwd` inside the release)",
                    self.spec.release_subdir.display()
                );
                self.give_up(&version, "stage", &error).await;
                return (
                    DeployOutcome::Failed,
                    format!("{error}; the live release is untouched"),
                );
            }
            let Some(argv) = command else {
                self.skip_step(step, &format!("no {step} command"));
                continue;
            };
            let began = self.begin_step(step);
            let cwd = if step == "build" {
                &release_dir
            } else {
                &workdir
            };
            match self.run_command(step, &argv, cwd, &version, timeout).await {
                Ok(()) => {
                    crash_point(step);
                    self.end_step(began, StepState::Ok, format!("{} passed", argv.join(" ")));
                }
                Err(error) => {
                    self.end_step(began, StepState::Failed, &error);
                    self.give_up(&version, step, &error).await;
                    return (
                        DeployOutcome::Failed,
                        format!(
                            "{step} failed; the live release is untouched: {}",
                            first_line(&error)
                        ),
                    );
                }
            }
        }
        let ready = version.clone();
        if let Err(error) = self
            .blocking(move |releases| releases.record(&ready, "ready", None, None))
            .await
            .and_then(|result| result.map_err(|error| error.to_string()))
        {
            return (
                DeployOutcome::Failed,
                format!("recording {version}: {error}"),
            );
        }

        // Cutover.
        let previous = self.progress().previous;
        let began = self.begin_step("cutover");
        let new_pid = match self
            .cutover(&version, deploy.strategy, deploy.ready_timeout)
            .await
        {
            Ok(Some(pid)) => {
                self.end_step(
                    began,
                    StepState::Ok,
                    format!("{version} is live (pid {pid})"),
                );
                pid
            }
            Ok(None) => {
                self.end_step(
                    began,
                    StepState::Ok,
                    format!("{version} is live; the agent is not running, it starts with it"),
                );
                self.skip_step("verify", "the agent is not running");
                self.record(&version, "deployed", None, true).await;
                self.cleanup(deploy.keep).await;
                return (
                    DeployOutcome::Deployed,
                    format!(
                        "{version} is live (the agent is stopped: `roster start {}` runs it)",
                        self.agent
                    ),
                );
            }
            Err(CutoverFailure::Untouched(error)) => {
                self.end_step(began, StepState::Failed, &error);
                self.give_up(&version, "cutover", &error).await;
                return (
                    DeployOutcome::Failed,
                    format!("cutover failed; the live release is untouched: {error}"),
                );
            }
            Err(CutoverFailure::Switched(error)) => {
                // A restart-strategy cutover: the old process is gone.
                self.end_step(began, StepState::Failed, &error);
                return self.roll_back(&version, previous, &error).await;
            }
        };

        // Verify.
        let began = self.begin_step("verify");
        match self.verify(new_pid, deploy.verify_for).await {
            Ok(()) => {
                self.end_step(
                    began,
                    StepState::Ok,
                    format!(
                        "up and healthy for {}",
                        roster_core::units::format_duration(deploy.verify_for)
                    ),
                );
            }
            Err(error) => {
                self.end_step(began, StepState::Failed, &error);
                return self.roll_back(&version, previous, &error).await;
            }
        }
        self.record(&version, "deployed", None, false).await;
        self.resolve_alert();
        crash_point("cleanup");
        self.cleanup(deploy.keep).await;
        (
            DeployOutcome::Deployed,
            format!("{version} is live and verified"),
        )
    }

    /// The agent's strategy and ready timeout.
    fn cutover_settings(&self) -> (Strategy, Duration) {
        let defaults = roster_core::deploy::DeploySpec::default();
        let deploy = self.spec.deploy.as_ref().unwrap_or(&defaults);
        (deploy.strategy, deploy.ready_timeout)
    }

    async fn rollback(&self, target: String) -> (DeployOutcome, String) {
        let strategy = self.cutover_settings();
        let began = self.begin_step("cutover");
        match self.cutover(&target, strategy.0, strategy.1).await {
            Ok(pid) => {
                let how = pid
                    .map(|pid| format!("pid {pid}"))
                    .unwrap_or_else(|| "the agent is stopped".into());
                self.end_step(began, StepState::Ok, format!("{target} is live ({how})"));
                self.record(&target, "deployed", None, false).await;
                (DeployOutcome::Deployed, format!("{target} is live again"))
            }
            Err(CutoverFailure::Untouched(error) | CutoverFailure::Switched(error)) => {
                self.end_step(began, StepState::Failed, &error);
                (
                    DeployOutcome::Failed,
                    format!("rollback to {target} failed: {error}"),
                )
            }
        }
    }

    /// Verification failed (or a restart cutover did): the previous release
    /// goes live again, the same way, and an alert fires.
    async fn roll_back(
        &self,
        version: &str,
        previous: Option<String>,
        why: &str,
    ) -> (DeployOutcome, String) {
        self.record(version, "rolled_back", Some(why), false).await;
        let began = self.begin_step("rollback");
        let Some(previous) = previous else {
            self.end_step(began, StepState::Failed, "no earlier release to go back to");
            self.raise_alert(version, why, None);
            return (
                DeployOutcome::Failed,
                format!("{version} failed ({why}) and there is no earlier release to go back to"),
            );
        };
        crash_point("rollback");
        let strategy = self.cutover_settings();
        let result = self.cutover(&previous, strategy.0, strategy.1).await;
        self.raise_alert(version, why, Some(&previous));
        match result {
            Ok(_) => {
                self.end_step(began, StepState::Ok, format!("{previous} is live again"));
                self.record(&previous, "deployed", None, false).await;
                (
                    DeployOutcome::RolledBack,
                    format!("{version} was rolled back ({why}); {previous} is live again"),
                )
            }
            Err(CutoverFailure::Untouched(error) | CutoverFailure::Switched(error)) => {
                self.end_step(began, StepState::Failed, &error);
                (
                    DeployOutcome::RolledBack,
                    format!(
                        "{version} was rolled back ({why}), but {previous} did not come up either: {error}; `roster status {}` shows what runs",
                        self.agent
                    ),
                )
            }
        }
    }

    /// Switches the agent to `release`. `Ok(Some(pid))`: the new process is
    /// ready and `current` names the release; `Ok(None)`: the agent is not
    /// running, `current` names it.
    async fn cutover(
        &self,
        release: &str,
        strategy: Strategy,
        ready_timeout: Duration,
    ) -> Result<Option<u32>, CutoverFailure> {
        let (_, before) = self
            .ask(CutoverStep::Observe)
            .await
            .map_err(CutoverFailure::Untouched)?;
        let (switch, view) = self
            .ask(CutoverStep::Switch {
                release: release.to_owned(),
                strategy,
            })
            .await
            .map_err(CutoverFailure::Untouched)?;
        match switch {
            Some(Switch::Beside { pid: old }) => {
                let new_pid = view.pid.filter(|pid| *pid != old);
                if new_pid.is_none() {
                    let why = format!(
                        "the new release could not start: {}",
                        view.last_error.as_deref().unwrap_or("unknown error")
                    );
                    let _ = self.ask(CutoverStep::Handback(why.clone())).await;
                    return Err(CutoverFailure::Untouched(why));
                }
                crash_point("cutover");
                let ready = match self.wait_ready(new_pid, old, ready_timeout).await {
                    Ok(()) => self.runs_in(new_pid, release).await,
                    Err(why) => Err(why),
                };
                if let Err(why) = ready {
                    let _ = self.ask(CutoverStep::Handback(why.clone())).await;
                    return Err(CutoverFailure::Untouched(why));
                }
                self.switch_current(release)
                    .await
                    .map_err(CutoverFailure::Untouched)?;
                crash_point("current");
                self.hand_over_sockets(old).await;
                let _ = self.ask(CutoverStep::Retire).await;
                Ok(new_pid)
            }
            Some(Switch::Restarting) => {
                self.switch_current(release)
                    .await
                    .map_err(CutoverFailure::Switched)?;
                crash_point("cutover");
                let deadline = Instant::now() + ready_timeout;
                let old = before.pid;
                loop {
                    let (_, view) = self
                        .ask(CutoverStep::Observe)
                        .await
                        .map_err(CutoverFailure::Switched)?;
                    let new_pid = view.pid.filter(|pid| Some(*pid) != old);
                    if let Some(pid) = new_pid {
                        let observed = observed_from(&view, Some(pid));
                        match readiness(observed) {
                            Readiness::Ready => {
                                return match self.runs_in(Some(pid), release).await {
                                    Ok(()) => Ok(Some(pid)),
                                    Err(why) => Err(CutoverFailure::Switched(why)),
                                }
                            }
                            Readiness::Failed(why) => return Err(CutoverFailure::Switched(why)),
                            Readiness::Waiting => {}
                        }
                    }
                    if Instant::now() >= deadline {
                        return Err(CutoverFailure::Switched(format!(
                            "the new process was not ready within {}",
                            roster_core::units::format_duration(ready_timeout)
                        )));
                    }
                    tokio::time::sleep(OBSERVE_EVERY).await;
                }
            }
            Some(Switch::NotRunning) | None => {
                self.switch_current(release)
                    .await
                    .map_err(CutoverFailure::Untouched)?;
                Ok(None)
            }
        }
    }

    /// The cutover's socket step, between `current` and the drain of the
    /// old process (group `old`): the new process takes over the `[listen]`
    /// sockets; when the kernel moved the old ones' queued connections,
    /// the drain waits until the old process holds no connection (at most
    /// `drain_timeout`). What happened goes into the running step's detail.
    async fn hand_over_sockets(&self, old: u32) {
        let (reply, answer) = oneshot::channel();
        let asked = self
            .deploys
            .inbox
            .send(Input::Request(Request::SocketCutover {
                agent: self.agent.clone(),
                reply,
            }));
        let Some(handover) = (if asked { answer.await.ok() } else { None }) else {
            return;
        };
        let note = match handover {
            Handover::Nothing => return,
            Handover::Shared(why) => {
                format!("the old process was drained at once: {}", first_line(&why))
            }
            Handover::Moved(addresses) => {
                let within = self.spec.drain_timeout;
                let (held, waited) = tokio::task::spawn_blocking(move || {
                    crate::listen::wait_until_idle(old, &addresses, within)
                })
                .await
                .unwrap_or((0, Duration::ZERO));
                let moved =
                    "the connections queued on the old process's socket moved to the new one";
                if held == 0 {
                    format!(
                        "{moved}; the old process was drained once it held no connection ({} ms later)",
                        waited.as_millis()
                    )
                } else {
                    format!(
                        "{moved}; the old process still held {held} connection{} after drain_timeout ({}) and was drained anyway",
                        if held == 1 { "" } else { "s" },
                        roster_core::units::format_duration(within)
                    )
                }
            }
        };
        self.update(|progress| {
            if let Some(step) = progress.steps.last_mut() {
                step.detail = Some(note);
            }
        });
    }

    /// Waits until the new process of a blue-green cutover is ready (see
    /// `roster_core::deploy::readiness`). When old and new accept on one
    /// handed-over socket, the agent's health check may be answered by
    /// either, so its verdict alone proves nothing: an HTTP or TCP check is
    /// then also run here, and only an answer from the new process's group
    /// counts. An exec check is judged by its verdict; it gets the new
    /// process's pid as `ROSTER_PID` to ask (and `roster check` warns when
    /// it does not mention it).
    async fn wait_ready(
        &self,
        new_pid: Option<u32>,
        old_pid: u32,
        ready_timeout: Duration,
    ) -> Result<(), String> {
        let attributed = match &self.spec.health {
            Some(health) if !self.spec.listen.is_empty() => match health.check {
                Check::Http(_) | Check::Tcp { .. } => Some(health.clone()),
                Check::Exec(_) => None,
            },
            _ => None,
        };
        let deadline = Instant::now() + ready_timeout;
        let mut failures = 0;
        loop {
            let observed = self.observe(new_pid).await?;
            let running = observed.state == AgentState::Running && observed.primary_pid == new_pid;
            match (readiness(observed), &attributed, new_pid) {
                (Readiness::Failed(why), _, _) => return Err(why),
                (Readiness::Ready, None, _) => return Ok(()),
                (_, Some(health), Some(new)) if running => {
                    let answer =
                        probe_attributed(&health.check, health.timeout, vec![new, old_pid]).await;
                    match answer {
                        Ok((Some(group), Ok(()))) if group == new => return Ok(()),
                        Ok((Some(group), Err(error))) if group == new => {
                            failures += 1;
                            if failures >= health.retries {
                                return Err(format!(
                                    "the new process failed its health check {failures} times: {error}"
                                ));
                            }
                        }
                        // Answered by the old process, or by nobody in time.
                        _ => {}
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the new process was not ready within {}",
                    roster_core::units::format_duration(ready_timeout)
                ));
            }
            tokio::time::sleep(OBSERVE_EVERY).await;
        }
    }

    /// The new process must run the release it was started for: its
    /// working directory inside `releases/VERSION` (issue #14: an agent
    /// started elsewhere kept running the old code while the deploy called
    /// the new one live).
    async fn runs_in(&self, pid: Option<u32>, release: &str) -> Result<(), String> {
        let Some(pid) = pid else {
            return Ok(());
        };
        let release = release.to_owned();
        self.blocking(move |releases| {
            runs_in_release(pid, &releases.release_dir(&release), &release)
        })
        .await?
    }

    async fn switch_current(&self, release: &str) -> Result<(), String> {
        let release = release.to_owned();
        self.blocking(move |releases| releases.switch_current(&release))
            .await
            .and_then(|result| result.map_err(|error| error.to_string()))
    }

    /// Watches the new process for `verify_for`.
    async fn verify(&self, pid: u32, verify_for: Duration) -> Result<(), String> {
        let deadline = Instant::now() + verify_for;
        let mut first = true;
        loop {
            let observed = self.observe(Some(pid)).await?;
            if let Some(why) = verification_failure(observed) {
                return Err(why);
            }
            if first {
                crash_point("verify");
                first = false;
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(OBSERVE_EVERY.max(Duration::from_millis(100))).await;
        }
    }

    async fn observe(&self, pid: Option<u32>) -> Result<Observed, String> {
        let (_, view) = self.ask(CutoverStep::Observe).await?;
        Ok(observed_from(&view, pid))
    }

    async fn ask(&self, step: CutoverStep) -> CutoverReply {
        let (reply, answer) = oneshot::channel();
        if !self.deploys.inbox.send(Input::Request(Request::Cutover {
            agent: self.agent.clone(),
            step,
            reply,
        })) {
            return Err("the daemon is shutting down".into());
        }
        answer
            .await
            .map_err(|_| "the daemon is shutting down".to_owned())?
    }

    /// Runs a build or smoke-test command in the release, its output
    /// appended to `agents/NAME/deploy.log`; `Err` carries why it failed
    /// and the last lines of its output.
    async fn run_command(
        &self,
        step: &str,
        argv: &[String],
        release_dir: &Path,
        version: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let log_path = self.releases.dir().join("deploy.log");
        let header = format!(
            "--- {} {step} of {version}: {}\n",
            crate::clock::rfc3339_millis(crate::clock::unix_millis()),
            argv.join(" ")
        );
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&log_path)
            .and_then(|mut file| {
                use std::io::Write;
                file.write_all(header.as_bytes())?;
                let start = file.seek(SeekFrom::End(0))?;
                Ok((file, start))
            });
        let (mut log, start) =
            opened.map_err(|error| format!("opening {}: {error}", log_path.display()))?;
        let output = log
            .try_clone()
            .map(OwnedFd::from)
            .map_err(|error| format!("opening {}: {error}", log_path.display()))?;
        let mut env = self.spec.environment();
        env.push(("ROSTER_RELEASE".into(), version.to_owned()));
        env.push((
            "ROSTER_SHARED".into(),
            self.releases.shared_dir().to_string_lossy().into_owned(),
        ));
        let (started_answer, ended_answer) =
            DeployCommand::send(&self.deploys.inbox, argv, release_dir, env, output);
        let pid = started_answer
            .await
            .map_err(|_| "the daemon is shutting down".to_owned())??;
        let status = match tokio::time::timeout(timeout, ended_answer).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(_)) => return Err("the daemon is shutting down".into()),
            Err(_) => {
                self.deploys.inbox.send(Input::DeployKill(pid));
                None
            }
        };
        let tail = tokio::task::spawn_blocking(move || tail_of(&mut log, start, 10))
            .await
            .unwrap_or_default();
        let why = match status {
            Some(status) if status.is_success() => return Ok(()),
            Some(status) => format!("{} ended with {status}", argv.join(" ")),
            None => format!(
                "{} took longer than {} and was killed",
                argv.join(" "),
                roster_core::units::format_duration(timeout)
            ),
        };
        if tail.is_empty() {
            Err(why)
        } else {
            Err(format!("{why}; its last output:\n{tail}"))
        }
    }

    /// A release that will not go live: its directory goes, its entry says
    /// why.
    async fn give_up(&self, version: &str, step: &str, error: &str) {
        let version = version.to_owned();
        let detail = format!("{step}: {}", first_line(error));
        let _ = self
            .blocking(move |releases| {
                let _ = releases.record(&version, "failed", Some(&detail), None);
                releases.discard(&version)
            })
            .await;
    }

    async fn record(&self, version: &str, result: &str, detail: Option<&str>, deployed: bool) {
        let version = version.to_owned();
        let result = result.to_owned();
        let detail = detail.map(first_line).map(str::to_owned);
        let deployed = (deployed || result == "deployed").then(unix_now);
        let outcome = self
            .blocking(move |releases| {
                releases.record(&version, &result, detail.as_deref(), deployed)
            })
            .await;
        if let Ok(Err(error)) | Err(error) = outcome.map(|r| r.map_err(|e| e.to_string())) {
            tracing::warn!(agent = %self.agent, "recording a release: {error}");
        }
    }

    async fn cleanup(&self, keep: u32) {
        let began = self.begin_step("cleanup");
        let removed = self
            .blocking(move |releases| releases.cleanup(keep as usize))
            .await
            .and_then(|result| result.map_err(|error| error.to_string()));
        match removed {
            Ok(removed) if removed.is_empty() => self.end_step(
                began,
                StepState::Ok,
                format!("{keep} releases kept, none removed"),
            ),
            Ok(removed) => self.end_step(
                began,
                StepState::Ok,
                format!("removed {}", removed.join(", ")),
            ),
            // Old releases left behind are no reason to fail a deploy.
            Err(error) => self.end_step(began, StepState::Ok, format!("nothing removed: {error}")),
        }
    }

    fn raise_alert(&self, version: &str, why: &str, previous: Option<&str>) {
        let now = crate::clock::rfc3339_millis(crate::clock::unix_millis());
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("release".to_owned(), version.to_owned());
        let summary = match previous {
            Some(previous) => format!(
                "{}: release {version} rolled back to {previous}: {why}",
                self.agent
            ),
            None => format!("{}: release {version} failed: {why}", self.agent),
        };
        self.deploys.inbox.send(Input::Alert(AlertRecord {
            fingerprint: format!("deploy:{}", self.agent),
            name: "DeployRolledBack".into(),
            agent: Some(self.agent.to_string()),
            severity: "critical".into(),
            state: AlertState::Firing,
            summary,
            details: String::new(),
            starts_at: now,
            ends_at: None,
            labels,
        }));
    }

    /// A deploy that went well resolves the agent's rollback alert, if any.
    fn resolve_alert(&self) {
        let now = crate::clock::rfc3339_millis(crate::clock::unix_millis());
        self.deploys.inbox.send(Input::ResolveAlert {
            fingerprint: format!("deploy:{}", self.agent),
            at: now,
        });
    }
}

/// Why a cutover did not happen.
enum CutoverFailure {
    /// The old process still serves (blue-green), `current` unchanged.
    Untouched(String),
    /// The old process is gone (restart strategy): only a rollback helps.
    Switched(String),
}

fn observed_from(view: &AgentView, pid: Option<u32>) -> Observed {
    Observed {
        pid,
        primary_pid: view.pid,
        state: view.state,
        health: view.health,
        has_check: view.has_check,
    }
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

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
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
                    deploys.note(agent, "release_recovered", repair);
                }
            }
            Some(Err(error)) => deploys.note(
                agent,
                "release_store_error",
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
    config: &roster_core::Config,
    read_along: &mut crate::config_file::ReadAlong,
    deploys: &Deploys,
    run: crate::identity::RunCommand<'_>,
) {
    for (agent, note) in crate::identity::prepare_accounts(home, config, run) {
        deploys.note(&agent, "account", note);
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
