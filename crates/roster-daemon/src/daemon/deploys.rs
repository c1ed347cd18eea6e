//! The loop's side of deploys (the steps themselves run on the runtime,
//! `crate::deploy`): a cutover's steps, performed at once on the
//! supervisor, and the build and smoke-test commands, which the loop
//! spawns and reaps like any child.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use roster_core::supervisor::Switch;
use roster_core::{AgentName, ExitStatus, Supervisor};

use crate::deploy::{CutoverStep, DeployCommand, Deploys};
use crate::spawn;

/// Deploys and the commands they run.
pub(super) struct Deploying {
    /// Deploy commands (build, smoke test) running: pid to its reply.
    commands: HashMap<u32, oneshot::Sender<ExitStatus>>,
    /// Deploys and rollbacks (their steps run on the runtime).
    pub deploys: Arc<Deploys>,
}

impl Deploying {
    pub(super) fn new(deploys: Arc<Deploys>) -> Deploying {
        Deploying {
            commands: HashMap::new(),
            deploys,
        }
    }

    /// Spawns a deploy's build or smoke-test command; its exit is answered
    /// when reaped.
    pub(super) fn run_command(&mut self, command: DeployCommand, home_env: &Path) {
        let DeployCommand {
            argv,
            cwd,
            env,
            output,
            started,
            ended,
        } = command;
        match spawn::spawn_notifier(&argv, &cwd, &env, home_env, &output, None) {
            Ok(pid) => {
                self.commands.insert(pid, ended);
                let _ = started.send(Ok(pid));
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        }
    }

    /// A deploy gave up on its command `pid` (its timeout passed).
    pub(super) fn kill(&self, pid: u32) {
        if self.commands.contains_key(&pid) {
            let _ = spawn::signal_group(pid, libc::SIGKILL);
        }
    }

    /// True when `pid` was a deploy's command (its exit is then answered).
    pub(super) fn reaped(&mut self, pid: u32, status: ExitStatus) -> bool {
        let Some(ended) = self.commands.remove(&pid) else {
            return false;
        };
        let _ = ended.send(status);
        true
    }

    /// Whether `pid` is a deploy's command.
    pub(super) fn contains(&self, pid: u32) -> bool {
        self.commands.contains_key(&pid)
    }

    /// On the way out: no deploy command outlives the daemon.
    pub(super) fn kill_all(&self) {
        for pid in self.commands.keys() {
            let _ = spawn::signal_group(*pid, libc::SIGKILL);
        }
    }
}

/// A step of a deploy's cutover, handed to the supervisor: what the switch
/// did, for `Switch`.
pub(super) fn cutover_step(
    supervisor: &mut Supervisor,
    now: Instant,
    agent: &AgentName,
    step: CutoverStep,
) -> Result<Option<Switch>, String> {
    Ok(match step {
        CutoverStep::Switch { release, strategy } => {
            Some(supervisor.handle_switch(now, agent, &release, strategy)?)
        }
        CutoverStep::Retire => {
            supervisor.handle_retire(now, agent);
            None
        }
        CutoverStep::Handback(reason) => {
            supervisor.handle_handback(now, agent, &reason);
            None
        }
        CutoverStep::Observe => None,
    })
}
