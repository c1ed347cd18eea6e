//! `roster recover` as a decision: the findings of `diagnose` (and what
//! the CLI knows of the daemon and the config) in, the smallest safe step
//! for each finding out, or the reason it is left. No I/O: the CLI runs
//! the steps. No step ever signals a process: the only steps are starting
//! an agent through the daemon's API, starting the daemon, and deleting
//! rotated logs roster wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::diagnose::{Finding, Mode};

/// How long a started agent must stay up at most before it counts as
/// recovered (its `stable_after`, capped at this).
pub const VERIFY_CAP: Duration = Duration::from_secs(5);
/// Rotated logs are deleted until the home's filesystem is below this.
pub const DISK_TARGET_PERCENT: f64 = 85.0;

/// What the CLI knows of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonState {
    /// It answered.
    Answered,
    /// Nothing listens on its socket.
    NotRunning,
    /// It is there but did not answer (or answered with an error).
    Hung,
}

/// What the planner needs besides the findings.
#[derive(Clone, Debug)]
pub struct Context {
    /// The daemon.
    pub daemon: DaemonState,
    /// The config to start a daemon with, if one was found.
    pub config: Option<String>,
    /// The agents the config wants running, with each one's `stable_after`.
    pub wanted: BTreeMap<String, Duration>,
    /// The agents the daemon reports running or starting now (a crash
    /// loop of one of them is not started again).
    pub running: BTreeSet<String>,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Start the daemon as `roster up -f CONFIG` does.
    StartDaemon {
        /// The config.
        config: String,
    },
    /// `roster start AGENT`, then check it stays up for `verify_ms`.
    StartAgent {
        /// The agent.
        agent: String,
        /// How long it must stay running.
        verify_ms: u64,
    },
    /// Delete the oldest rotated logs of the config's agents until the
    /// filesystem is below `below_percent` used.
    FreeDisk {
        /// The target.
        below_percent: u64,
        /// The agents whose rotated logs may go.
        agents: Vec<String>,
    },
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The finding it answers.
    pub mode: Mode,
    /// The agent, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// What it does.
    pub action: Action,
    /// One line saying so.
    pub description: String,
}

/// A finding no step answers, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Left {
    /// The finding's mode.
    pub mode: Mode,
    /// The agent, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Why it is left, and what to do.
    pub reason: String,
}

/// The plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// What no step answers.
    pub left: Vec<Left>,
}

/// The plan for `findings` (info findings are not problems: ignored).
pub fn plan(findings: &[Finding], context: &Context) -> Plan {
    let mut plan = Plan::default();
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut disk = false;
    for finding in findings.iter().filter(|finding| finding.is_problem()) {
        let left = |reason: String| Left {
            mode: finding.mode,
            agent: finding.agent.clone(),
            reason,
        };
        match finding.mode {
            Mode::DaemonUnreachable => match (context.daemon, &context.config) {
                (DaemonState::NotRunning, Some(config)) => plan.steps.push(Step {
                    mode: finding.mode,
                    agent: None,
                    action: Action::StartDaemon {
                        config: config.clone(),
                    },
                    description: format!("start the daemon with {config} (as `roster up -f`)"),
                }),
                (DaemonState::NotRunning, None) => plan.left.push(left(
                    "no config to start the daemon with: pass -f FILE".into(),
                )),
                _ => plan.left.push(left(format!(
                    "the daemon is there but does not answer; recover never kills it: {}",
                    finding.action
                ))),
            },
            Mode::AgentDown | Mode::CrashLoop => {
                let Some(agent) = finding.agent.clone() else {
                    plan.left.push(left(finding.action.clone()));
                    continue;
                };
                let Some(stable) = context.wanted.get(&agent) else {
                    plan.left.push(left(format!(
                        "{agent} is not in the config: not started; {}",
                        finding.action
                    )));
                    continue;
                };
                if context.daemon != DaemonState::Answered {
                    plan.left.push(left(format!(
                        "the daemon does not answer: {agent} cannot be started through it"
                    )));
                    continue;
                }
                if context.running.contains(&agent) {
                    plan.left.push(left(format!(
                        "{agent} runs now but died recently: nothing to start; {}",
                        finding.action
                    )));
                    continue;
                }
                if started.insert(agent.clone()) {
                    let verify = (*stable).min(VERIFY_CAP);
                    plan.steps.push(Step {
                        mode: finding.mode,
                        agent: Some(agent.clone()),
                        action: Action::StartAgent {
                            agent: agent.clone(),
                            verify_ms: verify.as_millis() as u64,
                        },
                        description: format!(
                            "start {agent}, then check it stays running for {} ms",
                            verify.as_millis()
                        ),
                    });
                }
            }
            Mode::DiskFull | Mode::DiskNearlyFull => {
                if !disk {
                    disk = true;
                    plan.steps.push(Step {
                        mode: finding.mode,
                        agent: None,
                        action: Action::FreeDisk {
                            below_percent: DISK_TARGET_PERCENT as u64,
                            agents: context.wanted.keys().cloned().collect(),
                        },
                        description: format!(
                            "delete the oldest rotated logs of the config's agents until the disk is below {}% used",
                            DISK_TARGET_PERCENT as u64
                        ),
                    });
                }
            }
            Mode::PortTaken
            | Mode::Unhealthy
            | Mode::OomKilled
            | Mode::ConfigInvalid
            | Mode::NotifierFailing
            | Mode::JournalReset
            | Mode::MemoryPressure
            | Mode::FileLimit
            | Mode::HighLoad
            | Mode::ClockUnsynced => plan.left.push(left(format!(
                "no automatic step for {}: {}",
                finding.mode.as_str(),
                finding.action
            ))),
        }
    }
    plan
}

#[cfg(test)]
mod tests;
