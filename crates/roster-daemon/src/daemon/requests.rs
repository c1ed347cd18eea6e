//! Answers to the API's requests that read the supervisor and the rooms
//! (the loop routes each request; see `Daemon::handle_request`).

use std::path::Path;
use std::time::Instant;

use roster_core::{AgentName, AgentSpec, Supervisor};

use super::file_watch::FileWatches;
use super::identities::Identities;
use super::limits::Limits;
use super::logging::Logs;
use crate::inbox::{StatusLine, Verb};

/// `status`: every agent as the supervisor has it, with its dropped log
/// lines, its user, how its limits are enforced, a warning when it runs as
/// root unintended, and one when its `watch_paths` are not all watched.
pub(super) fn status(
    now: Instant,
    supervisor: &Supervisor,
    logs: &Logs,
    identities: &Identities,
    limits: &Limits,
    file_watches: &FileWatches,
) -> Vec<StatusLine> {
    supervisor
        .views(now)
        .into_iter()
        .map(|view| {
            let dropped = logs.dropped(&view.name);
            let user = identities.user(&view.name);
            let limits = limits.enforcement(&view.name);
            let warning = identities
                .runs_as_root(&view.name)
                .then(|| roster_core::api::root_warning(view.name.as_str()));
            let watch_warning = file_watches.warning(&view.name);
            StatusLine {
                view,
                dropped,
                user,
                limits,
                warning,
                watch_warning,
            }
        })
        .collect()
}

/// `start`, `stop`, `restart` of agents by name (or `all`). While the
/// daemon stops, only `stop` is done.
pub(super) fn agents_command(
    now: Instant,
    supervisor: &mut Supervisor,
    stopping: bool,
    verb: Verb,
    names: &[String],
) -> Result<(), String> {
    if stopping && verb != Verb::Stop {
        return Err("the daemon is shutting down".into());
    }
    let targets: Vec<AgentName> = if names.iter().any(|name| name == "all") {
        supervisor.names()
    } else {
        let mut targets = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match AgentName::new(name) {
                Ok(agent) if supervisor.contains(&agent) => targets.push(agent),
                // An agent with `instances`: all of its copies.
                _ => match supervisor.copies_of(name) {
                    copies if copies.is_empty() => unknown.push(name.as_str()),
                    copies => targets.extend(copies),
                },
            }
        }
        if !unknown.is_empty() {
            return Err(format!(
                "no agent named {}; known agents: {}",
                unknown.join(", "),
                known(supervisor)
            ));
        }
        targets
    };
    for agent in &targets {
        match verb {
            Verb::Start => supervisor.handle_start(now, agent),
            Verb::Stop => supervisor.handle_stop(now, agent),
            Verb::Restart => supervisor.handle_restart(now, agent),
            Verb::RestartDrained => supervisor.handle_restart_drained(now, agent),
        }
    }
    Ok(())
}

/// The journal's row for a verb the web dashboard asked for: the token's
/// name says who (`restart by web token ops`).
pub(super) fn web_action_row(agent: &str, verb: Verb, token: &str) -> crate::journal::Row {
    let verb = match verb {
        Verb::Start => "start",
        Verb::Stop => "stop",
        Verb::Restart => "restart",
        Verb::RestartDrained => "drained restart",
    };
    crate::journal::Row::now(
        Some(agent),
        roster_core::api::EventKind::WebAction,
        None,
        format!("{verb} by web token {token}"),
    )
}

/// The spec of an agent a deploy ships to, or why it cannot be deployed.
pub(super) fn deploy_target(
    supervisor: &Supervisor,
    stopping: bool,
    home: &Path,
    agent: &AgentName,
) -> Result<AgentSpec, String> {
    match supervisor.spec(agent) {
        None => Err(format!(
            "no agent named {agent}; known agents: {}",
            known(supervisor)
        )),
        Some(spec) if spec.deploy.is_none() => Err(format!(
            "{agent} is not shipped as releases: its config has no [agents.{agent}.deploy] section\n  \
             hint: add one (it may be empty) and `roster apply`; the agent then runs from {}",
            crate::releases::Releases::new(home, agent)
                .current_link()
                .display()
        )),
        Some(_) if stopping => Err("the daemon is shutting down".into()),
        Some(spec) => Ok(spec.clone()),
    }
}

fn known(supervisor: &Supervisor) -> String {
    supervisor
        .names()
        .iter()
        .map(AgentName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
