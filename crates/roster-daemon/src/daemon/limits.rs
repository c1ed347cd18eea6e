//! Agents' limits: their cgroups (made when a config is applied, joined by
//! every process before exec), the rlimits that stand in where no cgroup
//! controller can, and the OOM kills counted in their memory cgroups.

use std::collections::HashMap;

use roster_core::api::EventKind;
use roster_core::config::Config;
use roster_core::{oom, AgentName, ExitStatus};

use crate::cgroup::{Cgroups, Prepared, RlimitKind};
use crate::journal::{Journal, Row};
use crate::spawn;

/// Where agents' cgroups are, how each agent's limits are enforced, and
/// what its processes join.
pub(super) struct Limits {
    /// Where agents' cgroups are made, if anywhere.
    cgroups: Cgroups,
    /// How each agent's limits are enforced (for status).
    enforcement: HashMap<AgentName, String>,
    /// Per agent with limits: its cgroups and rlimits.
    prepared: HashMap<AgentName, Prepared>,
    /// OOM kills counted in an agent's memory cgroup when its process
    /// started: more after a SIGKILL death means the kernel killed it.
    oom_baseline: HashMap<AgentName, u64>,
}

impl Limits {
    pub(super) fn new(cgroups: Cgroups) -> Limits {
        Limits {
            cgroups,
            enforcement: HashMap::new(),
            prepared: HashMap::new(),
            oom_baseline: HashMap::new(),
        }
    }

    /// Creates or updates the cgroups of agents with limits (writes to the
    /// cgroup filesystem: kernel memory, no disk), and notes how each
    /// agent's limits are enforced.
    pub(super) fn apply(&mut self, config: &Config, journal: &Journal) {
        self.enforcement.clear();
        let before: Vec<AgentName> = self.prepared.keys().cloned().collect();
        for agent in before {
            if !config
                .agents
                .get(&agent)
                .is_some_and(|spec| spec.limits.any())
            {
                self.prepared.remove(&agent);
            }
        }
        for (agent, spec) in &config.agents {
            if !spec.limits.any() {
                self.enforcement.insert(agent.clone(), "none".into());
                continue;
            }
            match self.cgroups.prepare(agent.as_str(), &spec.limits) {
                Ok(prepared) => {
                    if !prepared.unenforced.is_empty() {
                        journal.record(Row::now(
                            Some(agent.as_str()),
                            EventKind::LimitsUnenforced,
                            None,
                            format!(
                                "{} cannot be enforced on this host (no cgroup controller for it)",
                                prepared.unenforced.join(", ")
                            ),
                        ));
                    }
                    self.enforcement
                        .insert(agent.clone(), prepared.enforcement.as_str().to_owned());
                    self.prepared.insert(agent.clone(), prepared);
                }
                Err(error) => {
                    journal.record(Row::now(
                        Some(agent.as_str()),
                        EventKind::LimitsFailed,
                        None,
                        error.clone(),
                    ));
                    self.prepared.remove(agent);
                    self.enforcement.insert(agent.clone(), "failed".into());
                }
            }
        }
    }

    /// How `agent`'s limits are enforced, for status.
    pub(super) fn enforcement(&self, agent: &AgentName) -> Option<String> {
        self.enforcement.get(agent).cloned()
    }

    /// Sets what a new process of `agent` (whose config sets limits) joins
    /// and which rlimits it gets, and counts the OOM kills so far. An agent
    /// whose limits could not be set up is not started without them.
    pub(super) fn join(
        &mut self,
        agent: &AgentName,
        launch: &mut spawn::Launch,
    ) -> Result<(), String> {
        let Some(prepared) = self.prepared.get(agent) else {
            return Err(format!(
                "{agent}'s limits could not be set up (see `roster events {agent}`); it is not started without them"
            ));
        };
        launch.cgroups = prepared.join.clone();
        launch.rlimits = prepared
            .rlimits
            .iter()
            .map(|(kind, value)| {
                let name = match kind {
                    RlimitKind::AddressSpace => "as",
                    RlimitKind::Processes => "nproc",
                    RlimitKind::OpenFiles => "nofile",
                };
                (name.to_owned(), *value)
            })
            .collect();
        if let Some(kills) = self.cgroups.oom_kills(agent.as_str()) {
            self.oom_baseline.insert(agent.clone(), kills);
        }
        Ok(())
    }

    /// The agent left the config.
    pub(super) fn forget(&mut self, agent: &AgentName) {
        self.cgroups.remove(agent.as_str());
        self.prepared.remove(agent);
    }

    /// `agent`'s main process `pid` ended with `status`: when the OOM
    /// verdict (`roster_core::oom`) says the kernel killed it at
    /// `memory_max`, says so. The counter is read only for a SIGKILL death
    /// of an agent whose memory cgroup was counted at its start.
    pub(super) fn check_oom(
        &mut self,
        agent: &AgentName,
        pid: u32,
        status: ExitStatus,
        memory_max: Option<u64>,
        journal: &Journal,
    ) {
        if !oom::may_be_oom(status) {
            return;
        }
        let Some(before) = self.oom_baseline.get(agent).copied() else {
            return;
        };
        let after = self.cgroups.oom_kills(agent.as_str());
        let Some(kills) = oom::verdict(status, Some(before), after) else {
            return;
        };
        self.oom_baseline.insert(agent.clone(), kills);
        let limit = memory_max
            .map(crate::sample::human_bytes)
            .unwrap_or_else(|| "its memory limit".into());
        let message =
            format!("pid {pid} was killed by the kernel: it reached memory_max ({limit})");
        tracing::warn!(%agent, "{message}");
        journal.record(Row::now(
            Some(agent.as_str()),
            EventKind::OomKilled,
            Some(pid),
            message,
        ));
    }

    /// On the way out: every agent's cgroup goes.
    pub(super) fn remove_all(&self) {
        self.cgroups.remove_all();
    }
}
