//! A deploy or a rollback of one agent, as a sans-I/O state machine.
//!
//! Steps: `stage`, `build`, `smoke_test`, `cutover`, `verify`, `cleanup`,
//! and `rollback` when the new release misbehaved. The runtime feeds facts
//! in: the results of the work it was asked for ([`Deployment::handle_done`]),
//! the agent as the supervisor sees it after each of its events
//! ([`Deployment::handle_agent`]), and deadlines
//! ([`Deployment::handle_timeout`]); it performs what
//! [`Deployment::poll_action`] gives, in order, and sleeps until
//! [`Deployment::poll_timeout`]. [`Deployment::progress`] is what
//! `GET /v1/deploy` shows.
//!
//! At most one piece of work is outstanding at a time (staging, a command,
//! a store write, the switch, a probe): each is answered by one [`Done`]
//! before the machine goes on, so store writes never race each other and
//! the outcome is published only once everything before it is on disk.
//!
//! Judgements on processes are the supervisor's: the new process is ready
//! when the supervisor says it runs and its health check passed
//! ([`crate::deploy::readiness`]), and it misbehaves when the supervisor
//! says it died or is unhealthy ([`crate::deploy::verification_failure`]).
//! The one check of its own is for agents whose old and new processes
//! accept on one handed-over socket: an HTTP or TCP check may then be
//! answered by either, so the deploy probes too and counts only answers
//! from the new process's group, with the check's own `retries`
//! ([`crate::health::Failures`]).
//!
//! Nothing here reads the clock: `now` is always an argument.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use crate::api::{DeployOutcome, DeployProgress, DeployStep, EventKind, StepState};
use crate::config::AgentSpec;
use crate::supervisor::AgentView;
use crate::units::format_duration;

mod cutover;
mod work;

use cutover::{Cut, Purpose};
pub use work::{
    alert_fingerprint, Action, CommandStep, Done, Job, ReleaseResult, ALERT_NAME, PROBE_AGAIN,
};

/// What follows a store write whose result changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Then {
    /// End with this outcome.
    Finish(DeployOutcome, String),
    /// The failed release is recorded: go back to the previous one.
    GoBack { version: String, why: String },
    /// Remove old releases, then end.
    Cleanup {
        resolve_alert: bool,
        outcome: DeployOutcome,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Staging,
    Workdir {
        version: String,
    },
    Command {
        step: CommandStep,
        argv: Vec<String>,
        version: String,
        pid: Option<u32>,
        deadline: Option<Instant>,
        timed_out: bool,
    },
    RecordingReady {
        version: String,
    },
    Cutover {
        release: String,
        purpose: Purpose,
        cut: Cut,
    },
    Verifying {
        version: String,
        pid: u32,
        until: Instant,
    },
    Storing(Then),
    CleaningUp {
        outcome: DeployOutcome,
        message: String,
    },
    Done,
}

/// One deploy or rollback of one agent.
#[derive(Clone, Debug)]
pub struct Deployment {
    spec: AgentSpec,
    progress: DeployProgress,
    phase: Phase,
    step_began: Instant,
    /// The agent as last seen.
    seen: Option<AgentView>,
    actions: VecDeque<Action>,
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

impl Deployment {
    /// Begins `job` on the agent of `spec`. `progress` is what the runtime
    /// published at the request (its id, agent, kind, version, previous);
    /// `seen` is the agent now.
    pub fn new(
        now: Instant,
        job: Job,
        progress: DeployProgress,
        spec: AgentSpec,
        seen: Option<AgentView>,
    ) -> Self {
        let mut deployment = Self {
            spec,
            progress,
            phase: Phase::Staging,
            step_began: now,
            seen,
            actions: VecDeque::new(),
        };
        match job {
            Job::Deploy { source, version } => {
                deployment.note(
                    EventKind::DeployStarted,
                    format!("deploying {}", source.display()),
                );
                let Some(deploy) = deployment.spec.deploy.clone() else {
                    deployment.finish(DeployOutcome::Failed, "the agent has no deploy section");
                    return deployment;
                };
                deployment.begin_step(now, "stage");
                deployment.actions.push_back(Action::Stage {
                    source,
                    version,
                    max_size: deploy.max_size,
                });
            }
            Job::Rollback { to } => {
                deployment.note(EventKind::RollbackStarted, format!("rolling back to {to}"));
                deployment.progress.version = Some(to.clone());
                deployment.begin_step(now, "cutover");
                deployment.cutover(to, Purpose::Rollback);
            }
        }
        deployment
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Deployment::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Command { deadline, .. } => *deadline,
            Phase::Verifying { until, .. } => Some(*until),
            Phase::Cutover { cut, .. } => match cut {
                Cut::AwaitNew { deadline, .. } | Cut::RestartReady { deadline, .. } => {
                    Some(*deadline)
                }
                Cut::Ready {
                    deadline, probe_at, ..
                } => Some(probe_at.map_or(*deadline, |at| at.min(*deadline))),
                _ => None,
            },
            _ => None,
        }
    }

    /// Adds what the daemon noted while performing `step` (how a
    /// cutover's sockets were handed over) to that step's detail.
    fn annotate(&mut self, step: &str, note: &str) {
        let Some(step) = self
            .progress
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.step == step)
        else {
            return;
        };
        step.detail = Some(match step.detail.take().filter(|d| !d.is_empty()) {
            Some(detail) => format!("{detail}\n{note}"),
            None => note.to_owned(),
        });
    }

    /// Where it is, for `GET /v1/deploy`.
    pub fn progress(&self) -> &DeployProgress {
        &self.progress
    }

    /// The spec of the agent it deploys to, as it was when it began.
    pub fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The agent, after an event of the supervisor about it (`None`: it
    /// left the config).
    pub fn handle_agent(&mut self, now: Instant, view: Option<&AgentView>) {
        self.seen = view.cloned();
        self.judge(now);
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let phase = self.phase.clone();
        match phase {
            Phase::Command {
                pid: Some(pid),
                deadline: Some(deadline),
                step,
                argv,
                version,
                ..
            } if deadline <= now => {
                self.actions.push_back(Action::KillCommand { pid });
                self.phase = Phase::Command {
                    step,
                    argv,
                    version,
                    pid: Some(pid),
                    deadline: None,
                    timed_out: true,
                };
            }
            Phase::Verifying { version, until, .. } if until <= now => {
                let verify_for = self.deploy_spec().verify_for;
                self.end_step(
                    now,
                    StepState::Ok,
                    format!("up and healthy for {}", format_duration(verify_for)),
                );
                self.store(
                    Action::Record {
                        version: version.clone(),
                        result: ReleaseResult::Deployed,
                        detail: None,
                    },
                    Then::Cleanup {
                        resolve_alert: true,
                        outcome: DeployOutcome::Deployed,
                        message: format!("{version} is live and verified"),
                    },
                );
            }
            Phase::Cutover { cut, .. } => match cut {
                Cut::AwaitNew { deadline, .. } | Cut::RestartReady { deadline, .. }
                    if deadline <= now =>
                {
                    self.not_ready_in_time(now)
                }
                Cut::Ready { deadline, .. } if deadline <= now => self.not_ready_in_time(now),
                Cut::Ready {
                    probe_at: Some(at), ..
                } if at <= now => {
                    self.set_probe_at(None);
                    self.judge(now);
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// The answer to the outstanding action. An answer nothing waits for
    /// is ignored.
    pub fn handle_done(&mut self, now: Instant, done: Done) {
        let phase = self.phase.clone();
        match (phase, done) {
            (Phase::Staging, Done::Staged(result)) => self.staged(now, result),
            (Phase::Workdir { version }, Done::Workdir(exists)) => {
                if exists {
                    self.command(now, CommandStep::SmokeTest, version);
                } else {
                    let error = format!(
                        "release {version} has no directory {}, where the agent runs (its `cwd` inside the release)",
                        self.spec.release_subdir.display()
                    );
                    let message = format!("{error}; the live release is untouched");
                    self.give_up(&version, "stage", &error, message);
                }
            }
            (
                Phase::Command {
                    step,
                    argv,
                    version,
                    pid: None,
                    ..
                },
                Done::CommandStarted(started),
            ) => match started {
                Ok(pid) => {
                    let timeout = match step {
                        CommandStep::Build => self.deploy_spec().build_timeout,
                        CommandStep::SmokeTest => self.deploy_spec().smoke_timeout,
                    };
                    self.phase = Phase::Command {
                        step,
                        argv,
                        version,
                        pid: Some(pid),
                        deadline: Some(now + timeout),
                        timed_out: false,
                    };
                }
                Err(error) => self.command_failed(now, step, &version, error),
            },
            (
                Phase::Command {
                    step,
                    argv,
                    version,
                    pid: Some(_),
                    timed_out,
                    ..
                },
                Done::CommandEnded { status, tail },
            ) => {
                let command = argv.join(" ");
                let why = if timed_out {
                    let timeout = match step {
                        CommandStep::Build => self.deploy_spec().build_timeout,
                        CommandStep::SmokeTest => self.deploy_spec().smoke_timeout,
                    };
                    format!(
                        "{command} took longer than {} and was killed",
                        format_duration(timeout)
                    )
                } else if status.is_success() {
                    self.actions.push_back(Action::CrashPoint(step.as_str()));
                    self.end_step(now, StepState::Ok, format!("{command} passed"));
                    self.after_command(step, version);
                    return;
                } else {
                    format!("{command} ended with {status}")
                };
                let error = if tail.is_empty() {
                    why
                } else {
                    format!("{why}; its last output:\n{tail}")
                };
                self.command_failed(now, step, &version, error);
            }
            (Phase::RecordingReady { version }, Done::Recorded(result)) => match result {
                Ok(()) => {
                    self.begin_step(now, "cutover");
                    self.cutover(version, Purpose::Deploy);
                }
                Err(error) => self.finish(
                    DeployOutcome::Failed,
                    format!("recording {version}: {error}"),
                ),
            },
            (Phase::Storing(then), Done::Recorded(_)) => self.then(now, then),
            (Phase::CleaningUp { outcome, message }, Done::Cleaned(removed)) => {
                let keep = self.deploy_spec().keep;
                let detail = match removed {
                    Ok(removed) if removed.is_empty() => {
                        format!("{keep} releases kept, none removed")
                    }
                    Ok(removed) => format!("removed {}", removed.join(", ")),
                    // Old releases left behind are no reason to fail a deploy.
                    Err(error) => format!("nothing removed: {error}"),
                };
                self.end_step(now, StepState::Ok, detail);
                self.finish(outcome, message);
            }
            (Phase::Cutover { release, cut, .. }, done) => {
                self.cutover_done(now, release, cut, done)
            }
            _ => {}
        }
    }

    fn deploy_spec(&self) -> crate::deploy::DeploySpec {
        self.spec.deploy.clone().unwrap_or_default()
    }

    fn note(&mut self, kind: EventKind, detail: String) {
        self.actions.push_back(Action::Note { kind, detail });
    }

    fn begin_step(&mut self, now: Instant, step: &str) {
        self.step_began = now;
        self.progress.steps.push(DeployStep {
            step: step.to_owned(),
            state: StepState::Running,
            duration_ms: 0,
            detail: None,
        });
    }

    fn end_step(&mut self, now: Instant, state: StepState, detail: impl Into<String>) {
        let detail = detail.into();
        let duration_ms = now.saturating_duration_since(self.step_began).as_millis() as u64;
        let Some(step) = self.progress.steps.last_mut() else {
            return;
        };
        step.state = state;
        step.duration_ms = duration_ms;
        step.detail = (!detail.is_empty()).then(|| detail.clone());
        let name = step.step.clone();
        let word = match state {
            StepState::Ok => "ok",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Running => "running",
        };
        let first = first_line(&detail);
        self.note(
            EventKind::DeployStep,
            format!(
                "{name} {word} in {:.2}s{}{first}",
                duration_ms as f64 / 1000.0,
                if first.is_empty() { "" } else { ": " }
            ),
        );
    }

    fn skip_step(&mut self, now: Instant, step: &str, detail: &str) {
        self.begin_step(now, step);
        self.end_step(now, StepState::Skipped, detail);
    }

    fn finish(&mut self, outcome: DeployOutcome, message: impl Into<String>) {
        let message = message.into();
        let rollback = self.progress.kind == "rollback";
        let kind = match (outcome, rollback) {
            (DeployOutcome::Deployed, true) => EventKind::RollbackDone,
            (DeployOutcome::Deployed, false) => EventKind::Deployed,
            (DeployOutcome::Failed, true) => EventKind::RollbackFailed,
            (DeployOutcome::Failed, false) => EventKind::DeployFailed,
            (DeployOutcome::RolledBack, _) => EventKind::RolledBack,
        };
        self.note(kind, message.clone());
        self.progress.outcome = Some(outcome);
        self.progress.message = Some(message);
        self.phase = Phase::Done;
        self.actions.push_back(Action::Finished);
    }

    /// A store write; `then` once it is done.
    fn store(&mut self, action: Action, then: Then) {
        self.actions.push_back(action);
        self.phase = Phase::Storing(then);
    }

    fn then(&mut self, now: Instant, then: Then) {
        match then {
            Then::Finish(outcome, message) => self.finish(outcome, message),
            Then::GoBack { version, why } => self.go_back(now, version, why),
            Then::Cleanup {
                resolve_alert,
                outcome,
                message,
            } => {
                if resolve_alert {
                    self.actions.push_back(Action::ResolveAlert {
                        fingerprint: alert_fingerprint(&self.progress.agent),
                    });
                    self.actions.push_back(Action::CrashPoint("cleanup"));
                }
                self.begin_step(now, "cleanup");
                self.actions.push_back(Action::Cleanup {
                    keep: self.deploy_spec().keep,
                });
                self.phase = Phase::CleaningUp { outcome, message };
            }
        }
    }

    /// A release that will not go live: its directory goes, its entry says
    /// why; then the deploy ends as failed with `message`.
    fn give_up(&mut self, version: &str, step: &str, error: &str, message: String) {
        self.store(
            Action::Discard {
                version: version.to_owned(),
                detail: format!("{step}: {}", first_line(error)),
            },
            Then::Finish(DeployOutcome::Failed, message),
        );
    }

    fn staged(&mut self, now: Instant, result: Result<String, String>) {
        match result {
            Err(error) => {
                self.end_step(now, StepState::Failed, error.clone());
                self.finish(
                    DeployOutcome::Failed,
                    format!(
                        "staging failed; the live release is untouched: {}",
                        first_line(&error)
                    ),
                );
            }
            Ok(version) => {
                self.progress.version = Some(version.clone());
                self.actions.push_back(Action::CrashPoint("stage"));
                self.end_step(now, StepState::Ok, format!("staged {version}"));
                self.command(now, CommandStep::Build, version);
            }
        }
    }

    /// Runs (or skips) `step`; the smoke test only once the release is
    /// known to have the agent's directory.
    fn command(&mut self, now: Instant, step: CommandStep, version: String) {
        let deploy = self.deploy_spec();
        let argv = match step {
            CommandStep::Build => deploy.build,
            CommandStep::SmokeTest => deploy.smoke_test,
        };
        let Some(argv) = argv else {
            self.skip_step(now, step.as_str(), &format!("no {} command", step.as_str()));
            self.after_command(step, version);
            return;
        };
        self.begin_step(now, step.as_str());
        self.actions.push_back(Action::RunCommand {
            step,
            argv: argv.clone(),
            version: version.clone(),
            subdir: match step {
                CommandStep::Build => PathBuf::new(),
                CommandStep::SmokeTest => self.spec.release_subdir.clone(),
            },
        });
        self.phase = Phase::Command {
            step,
            argv,
            version,
            pid: None,
            deadline: None,
            timed_out: false,
        };
    }

    fn after_command(&mut self, step: CommandStep, version: String) {
        match step {
            // Where the agent runs must exist before its smoke test (the
            // build may make it).
            CommandStep::Build => {
                self.actions.push_back(Action::CheckWorkdir {
                    version: version.clone(),
                    subdir: self.spec.release_subdir.clone(),
                });
                self.phase = Phase::Workdir { version };
            }
            CommandStep::SmokeTest => {
                self.actions.push_back(Action::Record {
                    version: version.clone(),
                    result: ReleaseResult::Ready,
                    detail: None,
                });
                self.phase = Phase::RecordingReady { version };
            }
        }
    }

    fn command_failed(&mut self, now: Instant, step: CommandStep, version: &str, error: String) {
        self.end_step(now, StepState::Failed, error.clone());
        let message = format!(
            "{} failed; the live release is untouched: {}",
            step.as_str(),
            first_line(&error)
        );
        self.give_up(version, step.as_str(), &error, message);
    }
}

#[cfg(test)]
#[path = "deployment/tests.rs"]
mod tests;
