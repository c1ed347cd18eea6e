//! The deploys room: the running deployments
//! (`roster_core::deployment::Deployment`, one per agent at most) and the
//! build and smoke-test commands they run, which the loop spawns and reaps
//! like any child. What the deployments ask is performed in
//! `deploy_actions.rs`, on the loop when it is the supervisor's (switch,
//! retire, hand back), the journal's or the alerts', off the loop
//! (`deploy::Worker`) when it blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use roster_core::deployment::{Action, Deployment};
use roster_core::{AgentName, ExitStatus};

use crate::deploy::Deploys;
use crate::inbox::DeployCommand;
use crate::spawn;

/// Deploys and the commands they run.
pub(super) struct Deploying {
    /// Deploy commands (build, smoke test) running: pid to its reply.
    commands: HashMap<u32, oneshot::Sender<ExitStatus>>,
    /// Deploys and rollbacks as the API sees them.
    pub deploys: Arc<Deploys>,
    /// The deployments under way.
    pub deployments: Deployments,
}

impl Deploying {
    pub(super) fn new(deploys: Arc<Deploys>) -> Deploying {
        Deploying {
            commands: HashMap::new(),
            deploys,
            deployments: Deployments::default(),
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

/// The deployments under way, one per agent at most.
#[derive(Default)]
pub(super) struct Deployments {
    pub(super) running: BTreeMap<AgentName, Deployment>,
    /// Agents the supervisor reported on since their deployment last
    /// looked.
    pub(super) changed: BTreeSet<AgentName>,
    /// Actions are being performed (a switch performs the supervisor's
    /// actions, whose events come back here).
    pub(super) performing: bool,
}

impl Deployments {
    /// When `Daemon::deployment_timeouts` is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.running
            .values()
            .filter_map(Deployment::poll_timeout)
            .min()
    }

    /// The supervisor said something about `agent`.
    pub(super) fn saw(&mut self, agent: &AgentName) {
        if self.running.contains_key(agent) {
            self.changed.insert(agent.clone());
        }
    }

    /// An action of any deployment, with its agent and id.
    pub(super) fn next_action(&mut self) -> Option<(AgentName, u64, Action)> {
        self.running.iter_mut().find_map(|(agent, deployment)| {
            let action = deployment.poll_action()?;
            Some((agent.clone(), deployment.progress().id, action))
        })
    }
}
