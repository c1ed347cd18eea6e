//! What the supervisor journals: [`Event`] and its [`EventKind`], with the
//! journal's kind, the pid concerned and the one-line text people read.
//! Pure data and formatting; no decisions are made here.

use std::time::Duration;

use super::{AUTO_RESTARTS_MAX, AUTO_RESTART_WINDOW};
use crate::api::{EventKind as JournalKind, ExitStatus};
use crate::health::OnFailure;
use crate::name::AgentName;
use crate::signal::Signal;

/// A fact to journal: something that happened to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The agent.
    pub agent: AgentName,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// It appeared in the config.
    Added,
    /// Its config changed.
    Changed,
    /// It left the config and is stopped.
    Removed,
    /// A process was started.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// The process could not be started.
    SpawnFailed {
        /// Why, from the OS.
        error: String,
    },
    /// It stayed up for `ready_after`.
    Running {
        /// Its pid.
        pid: u32,
    },
    /// The main process ended on its own.
    Exited {
        /// Its pid.
        pid: u32,
        /// How.
        status: ExitStatus,
        /// How long it ran.
        uptime: Duration,
    },
    /// It will be started again after `delay`.
    Restarting {
        /// The wait before the restart.
        delay: Duration,
    },
    /// It died too often too quickly, or cannot start as configured, and
    /// is left alone for a while.
    Failed {
        /// Quick deaths counted in the window; 0 when it was given up at
        /// once because it cannot start as configured.
        deaths: u32,
        /// When it will be retried; `None` means only by an operator.
        retry_in: Option<Duration>,
    },
    /// The cool-down after `failed` is over; it is started again.
    Retrying,
    /// The stop signal was sent.
    Stopping {
        /// The group leader.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// It outlived `stop_timeout` and got SIGKILL.
    Killed {
        /// The group leader.
        pid: u32,
    },
    /// It is stopped.
    Stopped {
        /// How the process ended, if one was running.
        status: Option<ExitStatus>,
    },
    /// Its health check passes (again).
    Healthy,
    /// Its health check failed `failures` times in a row.
    Unhealthy {
        /// Consecutive failures.
        failures: u32,
        /// The last probe's error.
        error: String,
        /// What roster does about it.
        action: OnFailure,
    },
    /// An automatic restart was not done: too many already.
    RestartSuppressed {
        /// Why a restart was wanted.
        reason: String,
    },
    /// A new release is started beside the live process, which keeps
    /// serving until the new one is ready.
    HandingOver {
        /// The live process.
        pid: u32,
        /// The release starting.
        release: String,
    },
    /// The process of the previous release is asked to finish.
    Retiring {
        /// It.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// The process of the previous release ended.
    Retired {
        /// It.
        pid: u32,
        /// How.
        status: ExitStatus,
    },
    /// A cutover was given up: the process it was replacing serves again.
    HandedBack {
        /// The process serving again.
        pid: u32,
        /// Why.
        reason: String,
    },
    /// It is shipped as releases and none is deployed yet: it is not
    /// started (and no start is counted) until the first deploy.
    Undeployed,
    /// Files under its `watch_paths` changed: it is restarted, drained.
    FilesChanged {
        /// Which: `watch_paths: src/main.py changed`.
        reason: String,
    },
}

impl EventKind {
    /// The journal's kind for this event.
    pub fn journal_kind(&self) -> JournalKind {
        match self {
            EventKind::Added => JournalKind::Added,
            EventKind::Changed => JournalKind::Changed,
            EventKind::Removed => JournalKind::Removed,
            EventKind::Started { .. } => JournalKind::Started,
            EventKind::SpawnFailed { .. } => JournalKind::SpawnFailed,
            EventKind::Running { .. } => JournalKind::Running,
            EventKind::Exited { .. } => JournalKind::Exited,
            EventKind::Restarting { .. } => JournalKind::Restarting,
            EventKind::Failed { .. } => JournalKind::Failed,
            EventKind::Retrying => JournalKind::Retrying,
            EventKind::Stopping { .. } => JournalKind::Stopping,
            EventKind::Killed { .. } => JournalKind::Killed,
            EventKind::Stopped { .. } => JournalKind::Stopped,
            EventKind::Healthy => JournalKind::Healthy,
            EventKind::Unhealthy { .. } => JournalKind::Unhealthy,
            EventKind::RestartSuppressed { .. } => JournalKind::RestartSuppressed,
            EventKind::HandingOver { .. } => JournalKind::Handover,
            EventKind::Retiring { .. } => JournalKind::Retiring,
            EventKind::Retired { .. } => JournalKind::Retired,
            EventKind::HandedBack { .. } => JournalKind::HandedBack,
            EventKind::Undeployed => JournalKind::Undeployed,
            EventKind::FilesChanged { .. } => JournalKind::FilesChanged,
        }
    }

    /// The journal's name for this kind of event.
    pub fn name(&self) -> &'static str {
        self.journal_kind().as_str()
    }

    /// The pid concerned, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            EventKind::Started { pid }
            | EventKind::Running { pid }
            | EventKind::Exited { pid, .. }
            | EventKind::Stopping { pid, .. }
            | EventKind::Killed { pid }
            | EventKind::HandingOver { pid, .. }
            | EventKind::Retiring { pid, .. }
            | EventKind::Retired { pid, .. }
            | EventKind::HandedBack { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// A one-line description for people.
    pub fn detail(&self) -> String {
        use crate::units::format_duration;
        match self {
            EventKind::Added => "added to the config".into(),
            EventKind::Changed => "config changed".into(),
            EventKind::Removed => "removed from the config".into(),
            EventKind::Started { pid } => format!("started, pid {pid}"),
            EventKind::SpawnFailed { error } => format!("could not start: {error}"),
            EventKind::Running { pid } => format!("running, pid {pid}"),
            EventKind::Exited {
                pid,
                status,
                uptime,
            } => {
                format!("pid {pid} {status} after {}", format_duration(*uptime))
            }
            EventKind::Restarting { delay } if delay.is_zero() => "restarting now".into(),
            EventKind::Restarting { delay } => {
                format!("restarting in {}", format_duration(*delay))
            }
            EventKind::Failed {
                deaths: 0,
                retry_in,
            } => match retry_in {
                Some(retry) => format!(
                    "failed: it cannot start as configured; retrying in {}",
                    format_duration(*retry)
                ),
                None => "failed: it cannot start as configured; start it by hand once fixed".into(),
            },
            EventKind::Failed { deaths, retry_in } => match retry_in {
                Some(retry) => format!(
                    "failed: {deaths} quick deaths; retrying in {}",
                    format_duration(*retry)
                ),
                None => format!("failed: {deaths} quick deaths; start it by hand"),
            },
            EventKind::Retrying => "cool-down over, starting again".into(),
            EventKind::Stopping { pid, signal } => format!("stopping pid {pid} with {signal}"),
            EventKind::Killed { pid } => format!("pid {pid} outlived stop_timeout: SIGKILL"),
            EventKind::Stopped {
                status: Some(status),
            } => format!("stopped ({status})"),
            EventKind::Stopped { status: None } => "stopped".into(),
            EventKind::Healthy => "health check passes".into(),
            EventKind::Unhealthy {
                failures,
                error,
                action,
            } => {
                let then = match action {
                    OnFailure::Restart => "; draining and restarting",
                    OnFailure::Alert | OnFailure::None => "",
                };
                format!("unhealthy: {failures} failed health checks in a row, last: {error}{then}")
            }
            EventKind::RestartSuppressed { reason } => format!(
                "not restarted ({reason}): already {AUTO_RESTARTS_MAX} automatic restarts in {}",
                format_duration(AUTO_RESTART_WINDOW)
            ),
            EventKind::HandingOver { pid, release } => {
                format!("starting release {release} beside pid {pid}, which keeps serving")
            }
            EventKind::Retiring { pid, signal } => {
                format!("pid {pid} of the previous release drains ({signal})")
            }
            EventKind::Retired { pid, status } => {
                format!("pid {pid} of the previous release ended ({status})")
            }
            EventKind::HandedBack { pid, reason } => {
                format!("cutover given up ({reason}): pid {pid} serves again")
            }
            EventKind::Undeployed => {
                "no release is deployed yet; it starts with its first deploy".into()
            }
            EventKind::FilesChanged { reason } => format!("restarting: {reason}"),
        }
    }
}
