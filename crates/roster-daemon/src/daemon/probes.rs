//! Health probes in flight. HTTP and TCP probes run as tasks on the
//! runtime and report through the inbox; an exec probe is a process in its
//! own group, spawned on the loop like an agent (the loop is the only
//! reaper) with its output discarded, and judged when it is reaped.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use roster_core::health::Check;
use roster_core::{AgentName, ExitStatus, Supervisor};

use super::context::Context;
use super::leftovers;
use crate::inbox::Input;
use crate::spawn;

/// Probes in flight.
#[derive(Default)]
pub(super) struct Probes {
    /// Network probes in flight, by probe id.
    tasks: HashMap<u64, JoinHandle<()>>,
    /// Exec probes running: pid to (agent, probe id).
    pids: HashMap<u32, (AgentName, u64)>,
}

impl Probes {
    /// Starts an HTTP or TCP probe on the runtime; its result comes back
    /// as `Input::Probe`.
    pub(super) fn start_network(
        &mut self,
        agent: AgentName,
        id: u64,
        check: Check,
        timeout: Duration,
        context: &Context,
    ) {
        let inbox = context.inbox.clone();
        let task = context.runtime.spawn(async move {
            let result = crate::probe::probe_network(&check, timeout).await;
            inbox.send(Input::Probe { agent, id, result });
        });
        self.tasks.insert(id, task);
    }

    /// A network probe reported.
    pub(super) fn finished(&mut self, id: u64) {
        self.tasks.remove(&id);
    }

    /// An exec health check, run as the agent would be (`launch`, made for
    /// the agent's next process): its directory and environment, its own
    /// process group, output to /dev/null; and `ROSTER_PID`, the pid of the
    /// process it judges (during a cutover the new one), so a check can ask
    /// that process and not whichever answers a shared port. Marked
    /// `ROSTER_HELPER=probe:ID`, so that nothing it starts outlives it (see
    /// `leftovers.rs`). A probe that cannot start has failed.
    pub(super) fn start_exec(
        &mut self,
        agent: AgentName,
        id: u64,
        argv: Vec<String>,
        launch: Result<spawn::Launch, String>,
        supervisor: &mut Supervisor,
        home_env: &Path,
    ) {
        let spawned = launch
            .and_then(|launch| spawn_exec_probe(&agent, id, argv, launch, supervisor, home_env));
        match spawned {
            Ok(pid) => {
                self.pids.insert(pid, (agent, id));
            }
            Err(error) => {
                supervisor.handle_probe(Instant::now(), &agent, id, Err(error));
            }
        }
    }

    /// Stops probe `id`: a task is aborted; an exec probe's whole group
    /// goes, and the reap that follows is stale to the supervisor.
    pub(super) fn cancel(&mut self, id: u64) {
        if let Some(task) = self.tasks.remove(&id) {
            task.abort();
        }
        for (pid, _) in self.pids.iter().filter(|(_, (_, out))| *out == id) {
            let _ = spawn::signal_group(*pid, libc::SIGKILL);
        }
    }

    /// When `pid` was an exec probe: its agent, its id and its result.
    pub(super) fn reaped(
        &mut self,
        pid: u32,
        status: ExitStatus,
    ) -> Option<(AgentName, u64, Result<(), String>)> {
        let (agent, id) = self.pids.remove(&pid)?;
        let result = if status.is_success() {
            Ok(())
        } else {
            Err(format!("the health command ended with {status}"))
        };
        Some((agent, id, result))
    }

    /// Whether `pid` is an exec probe's process.
    pub(super) fn contains(&self, pid: u32) -> bool {
        self.pids.contains_key(&pid)
    }

    /// The exec probes running, as their helper markers name them.
    pub(super) fn running_runs(&self) -> impl Iterator<Item = String> + '_ {
        self.pids.values().map(|(_, id)| leftovers::probe_run(*id))
    }
}

fn spawn_exec_probe(
    agent: &AgentName,
    id: u64,
    argv: Vec<String>,
    mut launch: spawn::Launch,
    supervisor: &Supervisor,
    home_env: &Path,
) -> Result<u32, String> {
    launch.sockets.clear();
    launch.helper_run = Some(leftovers::probe_run(id));
    if let Some(pid) = supervisor
        .view(Instant::now(), agent)
        .and_then(|view| view.pid)
    {
        launch
            .environment
            .push(("ROSTER_PID".into(), pid.to_string().into()));
    }
    let Some(spec) = supervisor.spec(agent) else {
        return Err("unknown agent".into());
    };
    let mut probe = spec.clone();
    probe.command = argv;
    let null: OwnedFd = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|error| format!("opening /dev/null: {error}"))?
        .into();
    spawn::spawn_agent(
        agent,
        &probe,
        home_env,
        spawn::Output::merged(&null),
        &launch,
    )
    .map(|spawned| spawned.pid)
}
