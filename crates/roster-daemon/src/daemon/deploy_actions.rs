//! What the running deployments ask, performed: the loop's side of
//! `roster_core::deployment` (see `deploys.rs` for the room's state).

use std::time::Instant;

use roster_core::api::AgentState;
use roster_core::deployment::{Action, Deployment, Done};
use roster_core::supervisor::Switch;
use roster_core::AgentName;

use super::dispatch::Daemon;
use crate::inbox::{DeployInput, Input};
use crate::journal::Row;
use crate::listen::Handover;

impl Daemon {
    /// A deployment begins, or the answer to its work is in.
    pub(super) fn handle_deployment(&mut self, input: DeployInput) {
        let now = Instant::now();
        match input {
            DeployInput::Begin {
                agent,
                job,
                mut progress,
            } => {
                let spec = self.supervisor.spec(&agent).cloned();
                let refused = match spec {
                    _ if self.shutdown.is_stopping() => {
                        Some("the daemon is shutting down".to_owned())
                    }
                    None => Some(format!("{agent} is no longer in the config")),
                    Some(_) if self.deploys.deployments.running.contains_key(&agent) => {
                        Some(format!("a deploy of {agent} is running"))
                    }
                    Some(_) => None,
                };
                if let Some(message) = refused {
                    progress.outcome = Some(roster_core::api::DeployOutcome::Failed);
                    progress.message = Some(message);
                    self.deploys.deploys.finished(&progress);
                    return;
                }
                let Some(spec) = spec else {
                    return;
                };
                let seen = self.supervisor.view(now, &agent);
                let deployment = Deployment::new(now, job, progress, spec, seen);
                self.deploys.deployments.running.insert(agent, deployment);
            }
            DeployInput::Drainable { agent, id, note } => {
                // A cutover handed back meanwhile left nothing to retire
                // (the supervisor says so and does nothing).
                self.retire(&agent);
                self.answer(&agent, id, now, Done::Retired(Some(note)));
            }
            DeployInput::Done { agent, id, done } => self.answer(&agent, id, now, done),
        }
        self.perform_deployments();
    }

    /// Called once the supervisor's events are journaled: deployments
    /// whose agent changed judge it again.
    pub(super) fn feed_deployments(&mut self) {
        if !self.deploys.deployments.changed.is_empty() {
            self.perform_deployments();
        }
    }

    /// Deployments whose deadline has come.
    pub(super) fn deployment_timeouts(&mut self) {
        let now = Instant::now();
        if self
            .deploys
            .deployments
            .poll_timeout()
            .is_none_or(|due| due > now)
        {
            return;
        }
        for deployment in self.deploys.deployments.running.values_mut() {
            if deployment.poll_timeout().is_some_and(|due| due <= now) {
                deployment.handle_timeout(now);
            }
        }
        self.perform_deployments();
    }

    /// Feeds the deployments the agents that changed and performs what
    /// they ask, until they ask nothing more; publishes their progress.
    fn perform_deployments(&mut self) {
        if self.deploys.deployments.performing {
            return;
        }
        self.deploys.deployments.performing = true;
        loop {
            let changed = std::mem::take(&mut self.deploys.deployments.changed);
            let now = Instant::now();
            for agent in changed {
                let view = self.supervisor.view(now, &agent);
                if view
                    .as_ref()
                    .is_some_and(|view| view.state == AgentState::Running)
                {
                    // A cutover's new process runs: its own sockets get
                    // connections too.
                    self.launcher.listeners.spread(&agent);
                }
                if let Some(deployment) = self.deploys.deployments.running.get_mut(&agent) {
                    deployment.handle_agent(now, view.as_ref());
                }
            }
            let mut acted = false;
            while let Some((agent, id, action)) = self.deploys.deployments.next_action() {
                acted = true;
                self.perform_deployment_action(&agent, id, action);
            }
            if !acted && self.deploys.deployments.changed.is_empty() {
                break;
            }
        }
        let mut finished = Vec::new();
        for (agent, deployment) in &self.deploys.deployments.running {
            if deployment.is_finished() {
                self.deploys.deploys.finished(deployment.progress());
                finished.push(agent.clone());
            } else {
                self.deploys.deploys.publish(deployment.progress());
            }
        }
        for agent in finished {
            self.deploys.deployments.running.remove(&agent);
        }
        self.deploys.deployments.performing = false;
    }

    fn perform_deployment_action(&mut self, agent: &AgentName, id: u64, action: Action) {
        match action {
            Action::Note { kind, detail } => {
                tracing::info!(%agent, "{kind}: {detail}");
                self.context
                    .journal
                    .record(Row::now(Some(agent.as_str()), kind, None, detail));
            }
            Action::Switch { release, strategy } => {
                let now = Instant::now();
                let before = self.supervisor.view(now, agent).and_then(|view| view.pid);
                let result = if self.shutdown.is_stopping() {
                    Err("the daemon is shutting down".to_owned())
                } else {
                    self.supervisor
                        .handle_switch(now, agent, &release, strategy)
                };
                if let Ok(Switch::Beside { .. }) = &result {
                    self.launcher.listeners.begin_cutover(agent);
                }
                // The new process is spawned before the answer.
                self.perform();
                let after = self.supervisor.view(Instant::now(), agent);
                self.answer_deployment(
                    agent,
                    Done::Switched {
                        result,
                        before,
                        after,
                    },
                );
            }
            Action::Retire => self.retire_outgoing(agent, id),
            Action::Handback { reason } => {
                self.launcher.listeners.end_cutover(agent);
                self.supervisor
                    .handle_handback(Instant::now(), agent, &reason);
                self.perform();
            }
            Action::RaiseAlert(mut record) => {
                record.starts_at = crate::clock::rfc3339_millis(crate::clock::unix_millis());
                self.alerting
                    .record(record, &self.context.journal, &mut self.metrics);
            }
            Action::ResolveAlert { fingerprint } => self.resolve_alert(&fingerprint),
            Action::KillCommand { pid } => {
                self.deploys.kill(pid);
            }
            Action::CrashPoint(step) => crate::deploy::crash_point(step),
            Action::Finished => {}
            work => {
                let Some(spec) = self
                    .deploys
                    .deployments
                    .running
                    .get(agent)
                    .map(|deployment| deployment.spec().clone())
                else {
                    return;
                };
                let worker = crate::deploy::Worker {
                    runtime: self.context.runtime.clone(),
                    inbox: self.context.inbox.clone(),
                    home: self.context.home.root().to_path_buf(),
                };
                worker.start(agent, id, &spec, work);
            }
        }
    }

    /// The answer to deployment `id` of `agent`; answers to one that ended
    /// are dropped.
    fn answer(&mut self, agent: &AgentName, id: u64, now: Instant, done: Done) {
        if let Some(deployment) = self
            .deploys
            .deployments
            .running
            .get_mut(agent)
            .filter(|deployment| deployment.progress().id == id)
        {
            deployment.handle_done(now, done);
        }
    }

    /// The answer to work done on the loop.
    fn answer_deployment(&mut self, agent: &AgentName, done: Done) {
        if let Some(deployment) = self.deploys.deployments.running.get_mut(agent) {
            deployment.handle_done(Instant::now(), done);
        }
    }

    /// The new process of a blue-green cutover is ready and `current`
    /// names its release: it takes over the `[listen]` sockets, and the
    /// process it replaces drains: at once where old and new share one
    /// socket, or, where the kernel moved the old socket's queued
    /// connections to the new one, once the old process holds no
    /// connection (at most `drain_timeout`, waited for off the loop).
    fn retire_outgoing(&mut self, agent: &AgentName, id: u64) {
        let now = Instant::now();
        let old = self
            .supervisor
            .view(now, agent)
            .and_then(|view| view.outgoing_pid);
        let handover = self.launcher.listeners.cut_over(agent);
        let note = match handover {
            Handover::Nothing => None,
            Handover::Shared(why) => Some(format!(
                "the old process was drained at once: {}",
                why.lines().next().unwrap_or_default()
            )),
            Handover::Moved(addresses) => {
                if let (Some(old), Some(spec)) = (old, self.supervisor.spec(agent)) {
                    let within = spec.stop.drain_timeout;
                    let inbox = self.context.inbox.clone();
                    let agent = agent.clone();
                    self.context.runtime.spawn_blocking(move || {
                        let (held, waited) =
                            crate::listen::wait_until_idle(old, &addresses, within);
                        let note = drained_note(held, waited, within);
                        inbox.send(Input::Deployment(DeployInput::Drainable {
                            agent,
                            id,
                            note,
                        }));
                    });
                    return;
                }
                None
            }
        };
        self.retire(agent);
        self.answer_deployment(agent, Done::Retired(note));
    }

    /// The old process of `agent`'s cutover drains.
    fn retire(&mut self, agent: &AgentName) {
        self.supervisor.handle_retire(Instant::now(), agent);
        self.perform();
    }

    /// Resolves the alert `fingerprint`, if it fires.
    fn resolve_alert(&mut self, fingerprint: &str) {
        let at = crate::clock::rfc3339_millis(crate::clock::unix_millis());
        self.alerting
            .resolve(fingerprint, at, &self.context.journal, &mut self.metrics);
    }
}

/// How the old process's connections ended, for the cutover step.
fn drained_note(held: usize, waited: std::time::Duration, within: std::time::Duration) -> String {
    let moved = "the connections queued on the old process's socket moved to the new one";
    if held == 0 {
        format!(
            "{moved}; the old process was drained once it held no connection ({} ms later)",
            waited.as_millis()
        )
    } else {
        format!(
            "{moved}; the old process still held {held} connection{} after drain_timeout ({}) and was drained anyway",
            if held == 1 { "" } else { "s" },
            roster_core::units::format_duration(within)
        )
    }
}
