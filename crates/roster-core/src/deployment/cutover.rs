//! The cutover of a deployment: the switch, waiting for the new process,
//! `current`, and going back when the new release fails.

use std::time::Instant;

use super::{
    alert_fingerprint, first_line, Action, Deployment, Done, Phase, ReleaseResult, Then,
    ALERT_NAME, PROBE_AGAIN,
};
use crate::api::{AgentState, AlertRecord, AlertState, DeployOutcome, StepState};
use crate::deploy::{readiness, verification_failure, Observed, Readiness};
use crate::health::{Check, Failures, HealthSpec};
use crate::supervisor::Switch;
use crate::units::format_duration;

/// Why a cutover did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// The old process still serves (blue-green), `current` unchanged.
    Untouched(String),
    /// The old process is gone (restart strategy): only a rollback helps.
    Switched(String),
}

impl Failure {
    pub(super) fn into_message(self) -> String {
        match self {
            Failure::Untouched(why) | Failure::Switched(why) => why,
        }
    }
}

/// Why a cutover runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The deploy's own.
    Deploy,
    /// A rollback job's.
    Rollback,
    /// Going back to `previous` after the deploy's release failed.
    GoBack {
        /// The release that failed.
        failed: String,
        /// Why.
        why: String,
        /// The release going live again.
        previous: String,
    },
}

/// Where a cutover is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Cut {
    /// Waiting for [`Done::Switched`].
    Switching,
    /// Blue-green: the new process is not spawned yet.
    AwaitNew { old: u32, deadline: Instant },
    /// Blue-green: waiting until the new process is ready.
    Ready {
        new: u32,
        old: u32,
        deadline: Instant,
        failures: Failures,
        probing: bool,
        probe_at: Option<Instant>,
    },
    /// Blue-green: is the new process in its release?
    BesideInRelease { new: u32 },
    /// Blue-green: `current` moving.
    BesideCurrent { new: u32 },
    /// Blue-green: the old process is being retired (the daemon may wait
    /// until it holds no connection); the cutover step ends once it is.
    Retiring { new: u32 },
    /// Restart: `current` moving before the new process starts.
    RestartCurrent { old: Option<u32> },
    /// Restart: waiting for the new process to be ready.
    RestartReady { old: Option<u32>, deadline: Instant },
    /// Restart: is the new process in its release?
    RestartInRelease { pid: u32 },
    /// Not running: `current` moving; the release runs at the next start.
    IdleCurrent,
}

impl Deployment {
    pub(super) fn cutover(&mut self, release: String, purpose: Purpose) {
        let strategy = self.deploy_spec().strategy;
        self.actions.push_back(Action::Switch {
            release: release.clone(),
            strategy,
        });
        self.phase = Phase::Cutover {
            release,
            purpose,
            cut: Cut::Switching,
        };
    }

    pub(super) fn set_cut(&mut self, next: Cut) {
        if let Phase::Cutover { cut, .. } = &mut self.phase {
            *cut = next;
        }
    }

    pub(super) fn set_probe_at(&mut self, at: Option<Instant>) {
        if let Phase::Cutover {
            cut: Cut::Ready { probe_at, .. },
            ..
        } = &mut self.phase
        {
            *probe_at = at;
        }
    }

    pub(super) fn cutover_done(&mut self, now: Instant, release: String, cut: Cut, done: Done) {
        let ready_timeout = self.deploy_spec().ready_timeout;
        match (cut, done) {
            (
                Cut::Switching,
                Done::Switched {
                    result,
                    before,
                    after,
                },
            ) => {
                self.seen = after;
                match result {
                    Err(error) => self.cutover_failed(now, Failure::Untouched(error)),
                    Ok(Switch::Beside { pid: old }) => {
                        self.set_cut(Cut::AwaitNew {
                            old,
                            deadline: now + ready_timeout,
                        });
                        self.judge(now);
                    }
                    Ok(Switch::Restarting) => {
                        self.actions.push_back(Action::SwitchCurrent { release });
                        self.set_cut(Cut::RestartCurrent { old: before });
                    }
                    Ok(Switch::NotRunning) => {
                        self.actions.push_back(Action::SwitchCurrent { release });
                        self.set_cut(Cut::IdleCurrent);
                    }
                }
            }
            (Cut::Ready { new, .. }, Done::Probed { group, verdict }) => {
                let Phase::Cutover {
                    cut:
                        Cut::Ready {
                            failures, probing, ..
                        },
                    ..
                } = &mut self.phase
                else {
                    return;
                };
                *probing = false;
                let retries = self.spec.health.as_ref().map_or(1, |health| health.retries);
                match (group, verdict) {
                    (Some(group), Ok(())) if group == new => {
                        self.check_release(new, release, true);
                        return;
                    }
                    (Some(group), Err(error)) if group == new && failures.fail(retries) => {
                        let count = failures.count();
                        self.handback(
                            now,
                            format!(
                                "the new process failed its health check {count} times: {error}"
                            ),
                        );
                        return;
                    }
                    // Answered by the old process, or by nobody in time.
                    _ => {}
                }
                self.set_probe_at(Some(now + PROBE_AGAIN));
            }
            (Cut::BesideInRelease { new }, Done::InRelease(result)) => match result {
                Ok(()) => {
                    self.actions.push_back(Action::SwitchCurrent { release });
                    self.set_cut(Cut::BesideCurrent { new });
                }
                Err(why) => self.handback(now, why),
            },
            (Cut::BesideCurrent { new }, Done::Current(result)) => match result {
                Ok(()) => {
                    self.actions.push_back(Action::CrashPoint("current"));
                    self.actions.push_back(Action::Retire);
                    self.set_cut(Cut::Retiring { new });
                }
                Err(error) => self.handback(now, error),
            },
            (Cut::Retiring { new }, Done::Retired(note)) => {
                self.cutover_succeeded(now, release, Some(new));
                if let Some(note) = note {
                    self.annotate("cutover", &note);
                }
            }
            (Cut::RestartCurrent { old }, Done::Current(result)) => match result {
                Ok(()) => {
                    self.actions.push_back(Action::CrashPoint("cutover"));
                    self.set_cut(Cut::RestartReady {
                        old,
                        deadline: now + ready_timeout,
                    });
                    self.judge(now);
                }
                Err(error) => self.cutover_failed(now, Failure::Switched(error)),
            },
            (Cut::RestartInRelease { pid }, Done::InRelease(result)) => match result {
                Ok(()) => self.cutover_succeeded(now, release, Some(pid)),
                Err(why) => self.cutover_failed(now, Failure::Switched(why)),
            },
            (Cut::IdleCurrent, Done::Current(result)) => match result {
                Ok(()) => self.cutover_succeeded(now, release, None),
                Err(error) => self.cutover_failed(now, Failure::Untouched(error)),
            },
            _ => {}
        }
    }

    pub(super) fn check_release(&mut self, pid: u32, release: String, beside: bool) {
        self.actions
            .push_back(Action::CheckRelease { pid, release });
        self.set_cut(if beside {
            Cut::BesideInRelease { new: pid }
        } else {
            Cut::RestartInRelease { pid }
        });
    }

    /// Gives a blue-green cutover up: the old process serves again.
    pub(super) fn handback(&mut self, now: Instant, why: String) {
        self.actions.push_back(Action::Handback {
            reason: why.clone(),
        });
        self.cutover_failed(now, Failure::Untouched(why));
    }

    pub(super) fn not_ready_in_time(&mut self, now: Instant) {
        let Phase::Cutover { cut, .. } = &self.phase else {
            return;
        };
        let why = format!(
            "the new process was not ready within {}",
            format_duration(self.deploy_spec().ready_timeout)
        );
        match cut {
            Cut::RestartReady { .. } => self.cutover_failed(now, Failure::Switched(why)),
            _ => self.handback(now, why),
        }
    }

    /// Health checks the deploy runs itself: HTTP and TCP checks of an
    /// agent whose processes share handed-over sockets.
    pub(super) fn attributed(&self) -> Option<&HealthSpec> {
        match &self.spec.health {
            Some(health) if !self.spec.listen.is_empty() => match health.check {
                Check::Http(_) | Check::Tcp { .. } => Some(health),
                Check::Exec(_) => None,
            },
            _ => None,
        }
    }

    pub(super) fn observed(&self, pid: Option<u32>) -> Observed {
        match &self.seen {
            Some(view) => Observed {
                pid,
                primary_pid: view.pid,
                state: view.state,
                health: view.health,
                has_check: view.has_check,
            },
            None => Observed {
                pid,
                primary_pid: None,
                state: AgentState::Stopped,
                health: crate::api::Health::Unknown,
                has_check: self.spec.health.is_some(),
            },
        }
    }

    /// Judges the agent as last seen, in the phases that wait on it.
    pub(super) fn judge(&mut self, now: Instant) {
        let phase = self.phase.clone();
        match phase {
            Phase::Cutover { release, cut, .. } => match cut {
                Cut::AwaitNew { old, deadline } => {
                    let Some(view) = self.seen.clone() else {
                        return self.handback(now, self.gone());
                    };
                    match view.pid {
                        Some(new) if new != old => {
                            self.actions.push_back(Action::CrashPoint("cutover"));
                            self.set_cut(Cut::Ready {
                                new,
                                old,
                                deadline,
                                failures: Failures::default(),
                                probing: false,
                                probe_at: None,
                            });
                            self.judge(now);
                        }
                        // Its spawn was put off to the next pass.
                        None if view.state == AgentState::Starting => {}
                        _ => self.handback(
                            now,
                            format!(
                                "the new release could not start: {}",
                                view.last_error.as_deref().unwrap_or("unknown error")
                            ),
                        ),
                    }
                }
                Cut::Ready {
                    new,
                    old,
                    probing,
                    probe_at,
                    ..
                } => {
                    if self.seen.is_none() {
                        return self.handback(now, self.gone());
                    }
                    let observed = self.observed(Some(new));
                    let running =
                        observed.state == AgentState::Running && observed.primary_pid == Some(new);
                    let attributed = self.attributed().cloned();
                    match (readiness(observed), attributed) {
                        (Readiness::Failed(why), _) => self.handback(now, why),
                        (Readiness::Ready, None) => self.check_release(new, release, true),
                        (_, Some(health)) if running && !probing && probe_at.is_none() => {
                            self.actions.push_back(Action::Probe {
                                check: health.check.clone(),
                                timeout: health.timeout,
                                groups: vec![new, old],
                            });
                            if let Phase::Cutover {
                                cut: Cut::Ready { probing, .. },
                                ..
                            } = &mut self.phase
                            {
                                *probing = true;
                            }
                        }
                        _ => {}
                    }
                }
                Cut::RestartReady { old, .. } => {
                    if self.seen.is_none() {
                        let why = self.gone();
                        return self.cutover_failed(now, Failure::Switched(why));
                    }
                    let new = self
                        .seen
                        .as_ref()
                        .and_then(|view| view.pid)
                        .filter(|pid| Some(*pid) != old);
                    if let Some(pid) = new {
                        match readiness(self.observed(Some(pid))) {
                            Readiness::Ready => self.check_release(pid, release, false),
                            Readiness::Failed(why) => {
                                self.cutover_failed(now, Failure::Switched(why))
                            }
                            Readiness::Waiting => {}
                        }
                    } else if let Some(why) = self.seen.as_ref().and_then(start_failed) {
                        // The restart ended without a process: the new
                        // release could not start, or died at once. No
                        // point in waiting out `ready_timeout`.
                        self.cutover_failed(now, Failure::Switched(why));
                    }
                }
                _ => {}
            },
            Phase::Verifying { version, pid, .. } => {
                let failure = if self.seen.is_none() {
                    Some(self.gone())
                } else {
                    verification_failure(self.observed(Some(pid)))
                };
                if let Some(why) = failure {
                    self.end_step(now, StepState::Failed, why.clone());
                    self.roll_back(now, version, why);
                }
            }
            _ => {}
        }
    }

    pub(super) fn gone(&self) -> String {
        format!("{} is no longer in the config", self.progress.agent)
    }

    pub(super) fn cutover_succeeded(&mut self, now: Instant, release: String, pid: Option<u32>) {
        let Phase::Cutover { purpose, .. } = self.phase.clone() else {
            return;
        };
        match purpose {
            Purpose::Deploy => match pid {
                Some(pid) => {
                    self.end_step(now, StepState::Ok, format!("{release} is live (pid {pid})"));
                    self.begin_step(now, "verify");
                    let until = now + self.deploy_spec().verify_for;
                    self.phase = Phase::Verifying {
                        version: release,
                        pid,
                        until,
                    };
                    self.judge(now);
                    if matches!(self.phase, Phase::Verifying { .. }) {
                        self.actions.push_back(Action::CrashPoint("verify"));
                    }
                }
                None => {
                    self.end_step(
                        now,
                        StepState::Ok,
                        format!("{release} is live; the agent is not running, it starts with it"),
                    );
                    self.skip_step(now, "verify", "the agent is not running");
                    let message = format!(
                        "{release} is live (the agent is stopped: `roster start {}` runs it)",
                        self.progress.agent
                    );
                    self.store(
                        Action::Record {
                            version: release,
                            result: ReleaseResult::Deployed,
                            detail: None,
                        },
                        Then::Cleanup {
                            resolve_alert: false,
                            outcome: DeployOutcome::Deployed,
                            message,
                        },
                    );
                }
            },
            Purpose::Rollback => {
                let how = pid
                    .map(|pid| format!("pid {pid}"))
                    .unwrap_or_else(|| "the agent is stopped".into());
                self.end_step(now, StepState::Ok, format!("{release} is live ({how})"));
                let message = format!("{release} is live again");
                self.store(
                    Action::Record {
                        version: release,
                        result: ReleaseResult::Deployed,
                        detail: None,
                    },
                    Then::Finish(DeployOutcome::Deployed, message),
                );
            }
            Purpose::GoBack {
                failed,
                why,
                previous,
            } => {
                self.raise_alert(&failed, &why, Some(&previous));
                self.end_step(now, StepState::Ok, format!("{previous} is live again"));
                let message = format!("{failed} was rolled back ({why}); {previous} is live again");
                self.store(
                    Action::Record {
                        version: previous,
                        result: ReleaseResult::Deployed,
                        detail: None,
                    },
                    Then::Finish(DeployOutcome::RolledBack, message),
                );
            }
        }
    }

    pub(super) fn cutover_failed(&mut self, now: Instant, failure: Failure) {
        let Phase::Cutover {
            release, purpose, ..
        } = self.phase.clone()
        else {
            return;
        };
        match purpose {
            Purpose::Deploy => match failure {
                Failure::Untouched(error) => {
                    self.end_step(now, StepState::Failed, error.clone());
                    let message = format!("cutover failed; the live release is untouched: {error}");
                    self.give_up(&release, "cutover", &error, message);
                }
                // A restart-strategy cutover: the old process is gone.
                Failure::Switched(error) => {
                    self.end_step(now, StepState::Failed, error.clone());
                    self.roll_back(now, release, error);
                }
            },
            Purpose::Rollback => {
                let error = failure.into_message();
                self.end_step(now, StepState::Failed, error.clone());
                self.finish(
                    DeployOutcome::Failed,
                    format!("rollback to {release} failed: {error}"),
                );
            }
            Purpose::GoBack {
                failed,
                why,
                previous,
            } => {
                let error = failure.into_message();
                self.raise_alert(&failed, &why, Some(&previous));
                self.end_step(now, StepState::Failed, error.clone());
                self.finish(
                    DeployOutcome::RolledBack,
                    format!(
                        "{failed} was rolled back ({why}), but {previous} did not come up either: {error}; `roster status {}` shows what runs",
                        self.progress.agent
                    ),
                );
            }
        }
    }

    /// The new release failed (verification, or a restart cutover): it is
    /// recorded `rolled_back`, then the previous release goes live again.
    pub(super) fn roll_back(&mut self, _now: Instant, version: String, why: String) {
        self.store(
            Action::Record {
                version: version.clone(),
                result: ReleaseResult::RolledBack,
                detail: Some(first_line(&why).to_owned()),
            },
            Then::GoBack { version, why },
        );
    }

    pub(super) fn go_back(&mut self, now: Instant, version: String, why: String) {
        self.begin_step(now, "rollback");
        let Some(previous) = self.progress.previous.clone() else {
            self.end_step(now, StepState::Failed, "no earlier release to go back to");
            self.raise_alert(&version, &why, None);
            self.finish(
                DeployOutcome::Failed,
                format!("{version} failed ({why}) and there is no earlier release to go back to"),
            );
            return;
        };
        self.actions.push_back(Action::CrashPoint("rollback"));
        self.cutover(
            previous.clone(),
            Purpose::GoBack {
                failed: version,
                why,
                previous,
            },
        );
    }

    pub(super) fn raise_alert(&mut self, version: &str, why: &str, previous: Option<&str>) {
        let agent = self.progress.agent.clone();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("release".to_owned(), version.to_owned());
        let summary = match previous {
            Some(previous) => {
                format!("{agent}: release {version} rolled back to {previous}: {why}")
            }
            None => format!("{agent}: release {version} failed: {why}"),
        };
        self.actions.push_back(Action::RaiseAlert(AlertRecord {
            fingerprint: alert_fingerprint(&agent),
            name: ALERT_NAME.into(),
            agent: Some(agent),
            severity: "critical".into(),
            state: AlertState::Firing,
            summary,
            details: String::new(),
            starts_at: String::new(),
            ends_at: None,
            labels,
        }));
    }
}

/// Why the agent has no process after a restart began, when that is how
/// the restart ended: it waits to start again, or has given up.
fn start_failed(view: &crate::supervisor::AgentView) -> Option<String> {
    if view.pid.is_some() || !matches!(view.state, AgentState::Backoff | AgentState::Failed) {
        return None;
    }
    Some(match &view.last_error {
        Some(error) => format!("the new release could not start: {}", first_line(error)),
        None => format!(
            "the new process is {} instead of running",
            view.state.as_str()
        ),
    })
}
