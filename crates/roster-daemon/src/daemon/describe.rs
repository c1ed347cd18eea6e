//! `describe` on the loop: what the rooms know of one agent, gathered in
//! one pass without I/O (the rest is `crate::describe::finish`, off the
//! loop).

use std::time::Instant;

use roster_core::api::DescribedSocket;
use roster_core::{AgentName, Supervisor};

use super::context::Context;
use super::launch::Launcher;
use super::limits::Limits;
use super::logging::Logs;
use crate::describe::Gathered;

/// The facts of `agent`, or why there are none (with the known names).
pub(super) fn gather(
    now: Instant,
    agent: &str,
    supervisor: &Supervisor,
    launcher: &Launcher,
    limits: &Limits,
    logs: &Logs,
    context: &Context,
) -> Result<Gathered, String> {
    let found = AgentName::new(agent).ok().and_then(|name| {
        let spec = supervisor.spec(&name)?.clone();
        let view = supervisor.view(now, &name)?;
        Some((name, spec, view))
    });
    let Some((name, spec, view)) = found else {
        let known: Vec<String> = supervisor.names().iter().map(|n| n.to_string()).collect();
        let copies = supervisor.copies_of(agent);
        return Err(
            if let (Some(first), Some(last)) = (copies.first(), copies.last()) {
                format!(
                "{agent} runs as {} copies ({first} … {last}), each described on its own: roster describe {first}",
                copies.len()
            )
            } else if known.is_empty() {
                format!("no agent named {agent}: this daemon runs none")
            } else {
                format!("no agent named {agent}; known agents: {}", known.join(", "))
            },
        );
    };
    let sockets = spec
        .listen
        .iter()
        .enumerate()
        .map(|(index, (socket, address))| DescribedSocket {
            name: socket.clone(),
            address: address.to_string(),
            fd: 3 + index as u32,
            bound: launcher.listeners.is_bound(&name, socket),
        })
        .collect();
    Ok(Gathered {
        state: (view.state, view.pid),
        release: supervisor.release(&name).map(str::to_owned),
        env_file: launcher.env_files.get(&name).cloned().unwrap_or_default(),
        secrets: launcher.secrets().environment(&name),
        limits: limits.described(&name, &spec.limits),
        sockets,
        log: logs.log_config(),
        home: (context.home.root().to_path_buf(), context.home_env.clone()),
        name,
        spec,
    })
}
