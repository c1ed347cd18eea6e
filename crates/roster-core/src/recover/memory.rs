//! Which agent a `memory_pressure` finding restarts: one, the one holding
//! the most memory among those over their limit or rule; on host-wide
//! pressure alone, the largest agent. Only agents the daemon runs and the
//! config names: never a process roster did not start.

use std::time::Duration;

use super::{Context, DaemonState};
use crate::diagnose::{Finding, Mode};

/// An agent the daemon runs now, as a memory step sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Its main process.
    pub pid: u32,
    /// Its memory (its cgroup's, else its processes').
    pub bytes: u64,
    /// Its drain_timeout (how long its drained restart may take).
    pub drain_timeout: Duration,
}

/// The agent to restart for the memory findings among `findings`, or why
/// none is. Agents named by a finding (at or over `LIMIT_SHARE_PERCENT`
/// of their memory_max, or with a firing memory rule) come first: the
/// one with the most bytes (ties: the first by name). Without one that
/// can be restarted, host-wide pressure restarts the largest agent.
pub fn choose_memory(findings: &[Finding], context: &Context) -> Result<String, String> {
    if context.daemon != DaemonState::Answered {
        return Err(
            "the daemon does not answer: no agent can be restarted through it, and recover never signals a process itself".into(),
        );
    }
    let memory: Vec<&Finding> = findings
        .iter()
        .filter(|finding| finding.mode == Mode::MemoryPressure && finding.is_problem())
        .collect();
    let mut why_not = Vec::new();
    let mut named = Vec::new();
    for agent in memory.iter().filter_map(|finding| finding.agent.as_deref()) {
        if !context.wanted.contains_key(agent) {
            why_not.push(format!("{agent} is not in the config"));
        } else if !context.memory.contains_key(agent) {
            why_not.push(format!("{agent} does not run under roster now"));
        } else {
            named.push(agent);
        }
    }
    if let Some(agent) = largest(context, named.into_iter()) {
        return Ok(agent);
    }
    if memory.iter().any(|finding| finding.agent.is_none()) {
        let all = context
            .memory
            .keys()
            .map(String::as_str)
            .filter(|agent| context.wanted.contains_key(*agent));
        if let Some(agent) = largest(context, all) {
            return Ok(agent);
        }
        why_not.push("no agent of the config runs under roster now".into());
    }
    why_not.sort();
    why_not.dedup();
    Err(format!(
        "no agent roster runs can be restarted to relieve it: {}",
        why_not.join("; ")
    ))
}

fn largest<'a>(context: &Context, agents: impl Iterator<Item = &'a str>) -> Option<String> {
    agents
        .filter_map(|agent| context.memory.get(agent).map(|held| (agent, held.bytes)))
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(agent, _)| agent.to_owned())
}
