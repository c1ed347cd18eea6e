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

    /// `describe`: each limit `set` of `agent` with what enforces it (its
    /// cgroup, an rlimit in its stead, or nothing here), and the cgroup
    /// directories its processes join.
    pub(super) fn described(
        &self,
        agent: &AgentName,
        set: &roster_core::hardening::Limits,
    ) -> roster_core::api::DescribedLimits {
        use roster_core::api::{DescribedLimit, DescribedLimits};
        let prepared = self.prepared.get(agent);
        let enforcement = self.enforcement(agent);
        let rlimit = |kind: RlimitKind| {
            prepared.is_some_and(|prepared| prepared.rlimits.iter().any(|(each, _)| *each == kind))
        };
        let unenforced =
            |key: &'static str| prepared.is_none_or(|prepared| prepared.unenforced.contains(&key));
        let by = |key: &'static str, kind: Option<(RlimitKind, &str)>| -> String {
            match kind {
                Some((kind, name)) if rlimit(kind) => format!("rlimit {name}"),
                _ if prepared.is_none() || unenforced(key) => "unenforced".to_owned(),
                _ => enforcement
                    .clone()
                    .unwrap_or_else(|| "unenforced".to_owned()),
            }
        };
        let mut items = Vec::new();
        let mut item = |key: &str, value: String, enforced_by: String| {
            items.push(DescribedLimit {
                key: key.to_owned(),
                value,
                enforced_by,
            })
        };
        if let Some(bytes) = set.memory_max {
            let enforced = by("memory_max", Some((RlimitKind::AddressSpace, "RLIMIT_AS")));
            item("memory_max", bytes.to_string(), enforced);
        }
        if let Some(percent) = set.cpu_quota {
            item("cpu_quota", format!("{percent}%"), by("cpu_quota", None));
        }
        if let Some(tasks) = set.tasks_max {
            let enforced = by("tasks_max", Some((RlimitKind::Processes, "RLIMIT_NPROC")));
            item("tasks_max", tasks.to_string(), enforced);
        }
        if let Some(files) = set.nofile {
            let enforced = by("nofile", Some((RlimitKind::OpenFiles, "RLIMIT_NOFILE")));
            item("nofile", files.to_string(), enforced);
        }
        DescribedLimits {
            enforcement,
            cgroups: prepared
                .map(|prepared| {
                    prepared
                        .join
                        .iter()
                        .map(|dir| dir.display().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            items,
        }
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
