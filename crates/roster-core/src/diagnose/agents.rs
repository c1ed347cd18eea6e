//! The findings about each agent the daemon reports: crash loops, agents
//! down, taken ports, ill health, OOM kills, an agent near its memory limit.

use super::evidence::{bind_errors, events_of, finding, log_tail, quote};
use super::kernel::owners;
use super::{
    human_bytes, says_address_in_use, ConfigCheck, Facts, Finding, KernelOom, Mode, Severity,
    CRASH_LOOP_DEATHS, LIMIT_SHARE_PERCENT, QUOTED,
};
use crate::api::{AgentState, AgentStatus, EventRecord, Health, StatusReply};

pub(super) fn agent_findings(facts: &Facts, status: &StatusReply, found: &mut Vec<Finding>) {
    for agent in &status.agents {
        let name = agent.name.as_str();
        let deaths: Vec<&EventRecord> =
            events_of(facts, name, &["exited", "spawn_failed"]).collect();
        let last_exit = agent
            .last_exit
            .map(|exit| format!(", last {exit}"))
            .unwrap_or_default();
        let crash_evidence = || {
            let mut evidence = vec![format!(
                "{name} is {} after {} restarts{last_exit}; {} deaths in the last {}",
                agent.state.as_str(),
                agent.restarts,
                deaths.len(),
                facts.window
            )];
            evidence.extend(quote(deaths.iter().copied()));
            evidence.extend(log_tail(facts, name, QUOTED));
            evidence
        };
        match agent.state {
            AgentState::Failed if agent.last_error.is_some() => {
                let error = agent.last_error.as_deref().unwrap_or_default();
                let mut evidence = vec![format!("{name} failed: it cannot start: {error}")];
                evidence.extend(quote(events_of(facts, name, &["failed", "spawn_failed"])));
                found.push(finding(
                    Mode::AgentDown,
                    Severity::Critical,
                    Some(name),
                    evidence,
                    format!("fix what the error names (the command, its directory, its user), then `roster start {name}`"),
                ));
            }
            AgentState::Failed => found.push(finding(
                Mode::CrashLoop,
                Severity::Critical,
                Some(name),
                crash_evidence(),
                format!("read `roster logs {name}` for why it dies, fix it, then `roster start {name}` (it is left alone until its failed_retry)"),
            )),
            AgentState::Backoff => found.push(finding(
                Mode::CrashLoop,
                if deaths.len() >= CRASH_LOOP_DEATHS {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                Some(name),
                crash_evidence(),
                format!("read `roster logs {name}` for why it dies and fix it; roster keeps restarting it with backoff"),
            )),
            AgentState::Running | AgentState::Starting
                if deaths.len() >= CRASH_LOOP_DEATHS && agent.uptime_secs.unwrap_or(0) < 60 =>
            {
                found.push(finding(
                    Mode::CrashLoop,
                    Severity::Warning,
                    Some(name),
                    crash_evidence(),
                    format!("read `roster logs {name}` for why it dies and fix it"),
                ))
            }
            AgentState::Exited if agent.last_exit.is_some_and(|exit| !exit.is_success()) => {
                let mut evidence = vec![format!("{name} ended{last_exit} and is not restarted (its restart policy)")];
                evidence.extend(log_tail(facts, name, QUOTED));
                found.push(finding(
                    Mode::AgentDown,
                    Severity::Warning,
                    Some(name),
                    evidence,
                    format!("read `roster logs {name}`, fix it, then `roster start {name}`"),
                ));
            }
            AgentState::Stopped => found.push(finding(
                Mode::AgentDown,
                Severity::Info,
                Some(name),
                vec![format!("{name} is stopped (by request)")],
                format!("`roster start {name}` when it should run again"),
            )),
            _ => {}
        }
        port_taken(facts, agent, found);
        unhealthy(facts, agent, found);
        oom_killed(facts, name, agent.state, found);
        over_limit(facts, agent, found);
    }
    // A kill of an agent status no longer lists (removed since).
    let mut gone: Vec<String> = kernel_kills(facts)
        .into_iter()
        .filter_map(|(owner, _)| owner)
        .filter(|owner| !status.agents.iter().any(|agent| &agent.name == owner))
        .collect();
    gone.sort_unstable();
    gone.dedup();
    for name in gone {
        oom_killed(facts, &name, AgentState::Running, found);
    }
}

/// The kernel's OOM kills with the agent of this home each belongs to.
pub(super) fn kernel_kills(facts: &Facts) -> Vec<(Option<String>, &KernelOom)> {
    if facts.kernel_oom.is_empty() {
        return Vec::new();
    }
    owners(
        &facts.kernel_oom,
        facts.home_cgroup.as_deref(),
        &facts.events,
    )
    .into_iter()
    .zip(&facts.kernel_oom)
    .collect()
}

/// The last `QUOTED` kernel lines of some kills.
fn quote_kernel(kills: &[&KernelOom]) -> Vec<String> {
    kills[kills.len().saturating_sub(QUOTED)..]
        .iter()
        .map(|kill| kill.quoted())
        .collect()
}

pub(super) fn port_taken(facts: &Facts, agent: &AgentStatus, found: &mut Vec<Finding>) {
    let name = agent.name.as_str();
    let mut evidence: Vec<String> = bind_errors(facts, name)
        .into_iter()
        .map(|line| format!("log: {line}"))
        .collect();
    if let Some(error) = agent
        .last_error
        .as_deref()
        .filter(|error| says_address_in_use(error))
    {
        evidence.push(format!("last error: {error}"));
    }
    if evidence.is_empty() {
        return;
    }
    // Lines from an earlier run do not make the port of an agent that has
    // been up for a while (and so holds what it binds) taken now.
    if agent.state == AgentState::Running
        && agent.health != Health::Unhealthy
        && agent.uptime_secs.unwrap_or(0) >= 30
        && agent.last_error.is_none()
    {
        let last = facts.logs.get(name).and_then(|lines| lines.last());
        if !last.is_some_and(|line| says_address_in_use(line)) {
            return;
        }
    }
    let holders = facts
        .port_holders
        .get(name)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut named = Vec::new();
    for holder in holders {
        match holder.pid {
            Some(pid) => {
                let command = holder.command.as_deref().unwrap_or("?");
                evidence.push(format!("{} is held by pid {pid} ({command})", holder.address));
                named.push(format!("pid {pid} ({command})"));
            }
            None => evidence.push(format!(
                "{}: no holder visible in /proc (another user's process, or another network namespace)",
                holder.address
            )),
        }
    }
    let action = if named.is_empty() {
        format!("find who holds the port (`ss -ltnp`), stop it or give {name} another port, then `roster restart {name}`")
    } else {
        format!(
            "stop {} if it should not run, or give {name} another port; then `roster restart {name}`",
            named.join(", ")
        )
    };
    found.push(finding(
        Mode::PortTaken,
        Severity::Critical,
        Some(name),
        evidence,
        action,
    ));
}

pub(super) fn unhealthy(facts: &Facts, agent: &AgentStatus, found: &mut Vec<Finding>) {
    let name = agent.name.as_str();
    let alert = facts
        .alerts
        .iter()
        .find(|alert| alert.name == "AgentUnhealthy" && alert.agent.as_deref() == Some(name));
    if agent.health != Health::Unhealthy && alert.is_none() {
        return;
    }
    let mut evidence = vec![format!(
        "{name}'s health check fails (state {})",
        agent.state.as_str()
    )];
    let answers = quote(events_of(facts, name, &["unhealthy"]));
    if answers.is_empty() {
        evidence.push(format!("no unhealthy event in the last {}", facts.window));
    }
    evidence.extend(answers);
    if let Some(alert) = alert {
        evidence.push(format!(
            "alert {} firing since {}: {}",
            alert.name, alert.starts_at, alert.summary
        ));
    }
    found.push(finding(
        Mode::Unhealthy,
        Severity::Warning,
        Some(name),
        evidence,
        format!("check what the probe reaches (`roster status {name}`, the health section of the config) and `roster logs {name}`; `roster restart {name}` if it is hung"),
    ));
}

pub(super) fn oom_killed(facts: &Facts, name: &str, state: AgentState, found: &mut Vec<Finding>) {
    let events: Vec<&EventRecord> = events_of(facts, name, &["oom_killed"]).collect();
    let counted = facts.oom_kills.get(name).copied().unwrap_or(0);
    let kernel: Vec<&KernelOom> = kernel_kills(facts)
        .into_iter()
        .filter(|(owner, _)| owner.as_deref() == Some(name))
        .map(|(_, kill)| kill)
        .collect();
    if events.is_empty() && counted == 0 && kernel.is_empty() {
        return;
    }
    let mut evidence = Vec::new();
    if counted > 0 {
        evidence.push(format!("its memory cgroup counts {counted} OOM kills"));
    }
    if !events.is_empty() {
        evidence.push(format!(
            "{} oom_killed events in the last {}",
            events.len(),
            facts.window
        ));
    }
    evidence.extend(quote(events.into_iter()));
    if !kernel.is_empty() {
        evidence.push(format!(
            "the kernel log has {} OOM kills of its processes in the last {}",
            kernel.len(),
            facts.window
        ));
        evidence.extend(quote_kernel(&kernel));
    }
    let down = !matches!(state, AgentState::Running | AgentState::Starting);
    found.push(finding(
        Mode::OomKilled,
        if down { Severity::Critical } else { Severity::Warning },
        Some(name),
        evidence,
        format!("raise {name}'s memory_max if it needs more, or find the leak (`roster logs {name}`, its memory in `roster top`)"),
    ));
}

/// OOM kills when the daemon does not answer: from the journal alone.
pub(super) fn oom_from_events_only(facts: &Facts, found: &mut Vec<Finding>) {
    let mut agents: Vec<&str> = facts
        .events
        .iter()
        .filter(|event| event.kind == "oom_killed")
        .filter_map(|event| event.agent.as_deref())
        .collect();
    agents.extend(facts.oom_kills.keys().map(String::as_str));
    let kernel: Vec<String> = kernel_kills(facts)
        .into_iter()
        .filter_map(|(owner, _)| owner)
        .collect();
    agents.extend(kernel.iter().map(String::as_str));
    agents.sort_unstable();
    agents.dedup();
    for agent in agents {
        oom_killed(facts, agent, AgentState::Running, found);
    }
}

/// The kernel's OOM kills of processes that are no agent of this home:
/// one host-wide finding.
pub(super) fn oom_of_no_agent(facts: &Facts, found: &mut Vec<Finding>) {
    let strangers: Vec<&KernelOom> = kernel_kills(facts)
        .into_iter()
        .filter(|(owner, _)| owner.is_none())
        .map(|(_, kill)| kill)
        .collect();
    let Some(last) = strangers.last() else {
        return;
    };
    let mut evidence = vec![format!(
        "the kernel killed {} processes for memory in the last {} that are no agent of this home",
        strangers.len(),
        facts.window
    )];
    evidence.extend(quote_kernel(&strangers));
    if let Some(memcg) = &last.task_memcg {
        evidence.push(format!("the last was in cgroup {memcg}"));
    }
    let named = match &last.command {
        Some(command) => format!("pid {} ({command})", last.pid),
        None => format!("pid {}", last.pid),
    };
    found.push(finding(
        Mode::OomKilled,
        Severity::Warning,
        None,
        evidence,
        format!("roster did not start {named}: find what holds the host's memory (`ps aux --sort=-rss`, `dmesg`), stop or limit it, or add memory; set memory_max on agents so a leak is killed within its own limit"),
    ));
}

pub(super) fn over_limit(facts: &Facts, agent: &AgentStatus, found: &mut Vec<Finding>) {
    let name = agent.name.as_str();
    let mut evidence = Vec::new();
    if let (Some(used), ConfigCheck::Valid { memory_max, .. }) = (agent.memory_bytes, &facts.config)
    {
        if let Some(limit) = memory_max.get(name).copied().filter(|limit| *limit > 0) {
            let share = used as f64 * 100.0 / limit as f64;
            if share >= LIMIT_SHARE_PERCENT {
                evidence.push(format!(
                    "{name} uses {} of its memory_max {} ({share:.0}%)",
                    human_bytes(used),
                    human_bytes(limit)
                ));
            }
        }
    }
    for alert in facts
        .alerts
        .iter()
        .filter(|alert| alert.name == "AgentMemoryHigh" && alert.agent.as_deref() == Some(name))
    {
        evidence.push(format!(
            "alert {} firing since {}: {}",
            alert.name, alert.starts_at, alert.summary
        ));
    }
    if evidence.is_empty() {
        return;
    }
    found.push(finding(
        Mode::MemoryPressure,
        Severity::Warning,
        Some(name),
        evidence,
        format!("find why {name} grows (`roster top`), raise its memory_max or rule if it needs more, or `roster restart {name}` to relieve it now"),
    ));
}
