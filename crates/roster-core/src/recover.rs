//! `roster recover` as a decision: the findings of `diagnose` (and what
//! the CLI knows of the daemon and the config) in, the smallest safe step
//! for each finding out, or the reason it is left. No I/O: the CLI runs
//! the steps. No step signals a process itself: the steps are starting an
//! agent through the daemon's API, a drained restart of one agent through
//! it (memory pressure), starting the daemon, and deleting rotated logs
//! and old releases roster wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::diagnose::{Finding, Mode};

mod memory;

pub use memory::{choose_memory, Memory};

/// How long a started agent must stay up at most before it counts as
/// recovered (its `stable_after`, capped at this).
pub const VERIFY_CAP: Duration = Duration::from_secs(5);
/// Rotated logs are deleted until the home's filesystem is below this.
pub const DISK_TARGET_PERCENT: f64 = 85.0;
/// How long a drained restart's agent may take to run again, besides its
/// drain_timeout and its `stable_after` (capped at [`VERIFY_CAP`]).
pub const RESTART_BOUND: Duration = Duration::from_secs(10);

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
    /// The agents the daemon runs now (running or starting, with a pid)
    /// and their memory: the only ones a memory step may restart.
    pub memory: BTreeMap<String, Memory>,
    /// The config's agents shipped as releases.
    pub shipped: BTreeSet<String>,
    /// Agents with a deploy or rollback in progress (their releases are
    /// not touched), each with why.
    pub deploying: BTreeMap<String, String>,
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
    /// Delete the oldest rotated logs of the config's agents, then their
    /// oldest releases that are neither live nor previous, until the
    /// filesystem is below `below_percent` used.
    FreeDisk {
        /// The target.
        below_percent: u64,
        /// The agents whose rotated logs may go.
        agents: Vec<String>,
        /// The agents whose old releases may go.
        releases: Vec<String>,
        /// Agents shipped as releases whose releases are not touched, and
        /// why (a deploy in progress, a daemon that does not answer).
        skipped: BTreeMap<String, String>,
    },
    /// Restart AGENT through the daemon, drained (its drain signal and
    /// drain_timeout), then check it runs again with a new pid within
    /// `verify_ms`.
    RestartDrained {
        /// The agent.
        agent: String,
        /// Its pid now.
        pid: u32,
        /// Its memory now, in bytes.
        memory_bytes: u64,
        /// How long it may take to run again.
        verify_ms: u64,
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
    let mut memory: Option<Result<String, String>> = None;
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
                    plan.steps.push(free_disk(finding.mode, context));
                }
            }
            Mode::MemoryPressure => {
                let choice = memory
                    .get_or_insert_with(|| choose_memory(findings, context))
                    .clone();
                let agent = match choice {
                    Ok(agent) => agent,
                    Err(reason) => {
                        plan.left.push(left(reason));
                        continue;
                    }
                };
                let planned = plan
                    .steps
                    .iter()
                    .any(|step| matches!(&step.action, Action::RestartDrained { .. }));
                if !planned {
                    if let Some(step) = restart_drained(finding.mode, &agent, context) {
                        plan.steps.push(step);
                    }
                }
                if let Some(name) = finding.agent.as_ref().filter(|name| **name != agent) {
                    let why = if !context.wanted.contains_key(name) {
                        format!("{name} is not in the config: recover does not restart it")
                    } else if !context.memory.contains_key(name) {
                        format!("{name} does not run under roster now: nothing to restart")
                    } else {
                        format!("one agent is restarted per recover ({agent}, which holds the most); run recover again if the pressure remains")
                    };
                    plan.left.push(left(format!("{why}; {}", finding.action)));
                }
            }
            Mode::PortTaken
            | Mode::Unhealthy
            | Mode::OomKilled
            | Mode::ConfigInvalid
            | Mode::NotifierFailing
            | Mode::JournalReset
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

/// The drained restart of `agent`, if the daemon runs it.
fn restart_drained(mode: Mode, agent: &str, context: &Context) -> Option<Step> {
    let held = context.memory.get(agent)?;
    let verify = context
        .wanted
        .get(agent)
        .copied()
        .unwrap_or(Duration::ZERO)
        .min(VERIFY_CAP);
    let bound = RESTART_BOUND + held.drain_timeout + verify;
    Some(Step {
        mode,
        agent: Some(agent.to_owned()),
        action: Action::RestartDrained {
            agent: agent.to_owned(),
            pid: held.pid,
            memory_bytes: held.bytes,
            verify_ms: bound.as_millis() as u64,
        },
        description: format!(
            "restart {agent} drained (its drain signal, then SIGKILL after {} ms): of the agents roster runs it holds the most memory ({}); check it runs again with a new pid within {} ms",
            held.drain_timeout.as_millis(),
            crate::diagnose::human_bytes(held.bytes),
            bound.as_millis()
        ),
    })
}

/// The disk step: rotated logs of the config's agents, then old releases
/// of those shipped as releases, except those being deployed; with a hung
/// daemon no release is touched (a deploy may be under way).
fn free_disk(mode: Mode, context: &Context) -> Step {
    let mut skipped = context.deploying.clone();
    if context.daemon == DaemonState::Hung {
        for agent in &context.shipped {
            skipped.entry(agent.clone()).or_insert_with(|| {
                "the daemon does not answer: whether a deploy is under way is unknown".into()
            });
        }
    }
    let releases: Vec<String> = context
        .shipped
        .iter()
        .filter(|agent| context.wanted.contains_key(*agent) && !skipped.contains_key(*agent))
        .cloned()
        .collect();
    skipped.retain(|agent, _| context.shipped.contains(agent));
    let mut description = format!(
        "delete the oldest rotated logs of the config's agents, then their oldest releases that are neither live nor previous, until the disk is below {}% used",
        DISK_TARGET_PERCENT as u64
    );
    for (agent, why) in &skipped {
        description.push_str(&format!("; not the releases of {agent}: {why}"));
    }
    Step {
        mode,
        agent: None,
        action: Action::FreeDisk {
            below_percent: DISK_TARGET_PERCENT as u64,
            agents: context.wanted.keys().cloned().collect(),
            releases,
            skipped,
        },
        description,
    }
}

#[cfg(test)]
mod tests;
