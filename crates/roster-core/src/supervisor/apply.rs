//! Applying a config: the difference between the agents the supervisor
//! has and the ones `config` names (added, changed, removed, unchanged),
//! and the starts, restarts and stops that converge to it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::agent::{AfterStop, Agent, Phase};
use super::events::EventKind;
use super::Supervisor;
use crate::api::ApplySummary;
use crate::config::{AgentSpec, Config};
use crate::name::AgentName;
use crate::signal::Signal;

impl Supervisor {
    /// Converges to `config`: new agents start, removed ones stop and are
    /// dropped, changed ones restart, the rest are untouched, except that
    /// with `start_stopped` (what `roster up` asks for) agents that are not
    /// running are started too. Agents shipped as releases are taken to
    /// have none deployed unless they run one already: see
    /// [`Supervisor::handle_apply_with_releases`].
    pub fn handle_apply(
        &mut self,
        now: Instant,
        config: &Config,
        start_stopped: bool,
    ) -> ApplySummary {
        self.handle_apply_with_releases(now, config, start_stopped, &BTreeMap::new())
    }

    /// [`Supervisor::handle_apply`], with what the runtime read of the
    /// release stores: the live release of each agent shipped as releases
    /// (`live`; an agent missing from it has none). An agent that has no
    /// release of its own yet takes the live one; one with none at all is
    /// not started but `undeployed` until a cutover gives it a release.
    pub fn handle_apply_with_releases(
        &mut self,
        now: Instant,
        config: &Config,
        start_stopped: bool,
        live: &BTreeMap<AgentName, String>,
    ) -> ApplySummary {
        self.epoch.get_or_insert(now);
        let mut summary = ApplySummary::default();
        let removed: Vec<AgentName> = self
            .agents
            .keys()
            .filter(|name| !config.agents.contains_key(*name))
            .cloned()
            .collect();
        // The agents the config still runs copies of.
        let with_copies: BTreeSet<&AgentName> = config
            .agents
            .values()
            .filter_map(|spec| spec.instance.as_ref().map(|copy| &copy.of))
            .collect();
        for name in removed {
            summary.removed.push(name.to_string());
            match self
                .agents
                .get(&name)
                .and_then(|agent| scaled_down(&agent.spec, &with_copies))
            {
                // A copy that fewer `instances` took away finishes its
                // work, as in any stop roster decides on.
                Some((signal, timeout)) => {
                    self.stop_agent_with(now, &name, AfterStop::Remove, signal, timeout)
                }
                None => self.stop_agent(now, &name, AfterStop::Remove),
            }
        }
        for (name, spec) in &config.agents {
            match self.agents.get_mut(name) {
                None => {
                    summary.added.push(name.to_string());
                    let mut agent = Agent::new(spec.clone());
                    agent.adopt_release(live.get(name));
                    self.agents.insert(name.clone(), agent);
                    self.push_event(name, EventKind::Added);
                    self.start_agent(now, name);
                }
                Some(agent) if agent.spec != *spec && !restarts_nothing(&agent.spec, spec) => {
                    summary.changed.push(name.to_string());
                    agent.spec = spec.clone();
                    agent.adopt_release(live.get(name));
                    self.push_event(name, EventKind::Changed);
                    let phase = self.agents.get(name).map(|agent| agent.phase);
                    match phase {
                        Some(Phase::Stopped | Phase::Exited) if !start_stopped => {}
                        _ => self.restart_agent(now, name),
                    }
                }
                Some(agent) => {
                    summary.unchanged.push(name.to_string());
                    agent.spec.tenant.clone_from(&spec.tenant);
                    agent.spec.watch_paths.clone_from(&spec.watch_paths);
                    agent.adopt_release(live.get(name));
                    // Undeployed means "runs once it has a release".
                    let released = agent.phase == Phase::Undeployed && agent.release.is_some();
                    if released
                        || start_stopped
                            && matches!(
                                agent.phase,
                                Phase::Stopped | Phase::Exited | Phase::Failed { .. }
                            )
                    {
                        self.start_agent(now, name);
                    }
                }
            }
        }
        summary
    }
}

/// For a copy made by `instances` whose agent still has copies (fewer of
/// them), among `with_copies`: how it is drained, its drain signal (or
/// stop signal) and drain timeout.
fn scaled_down(spec: &AgentSpec, with_copies: &BTreeSet<&AgentName>) -> Option<(Signal, Duration)> {
    let of = &spec.instance.as_ref()?.of;
    with_copies.contains(of).then(|| spec.stop.drain())
}

/// Whether two specs differ only in what restarts nothing: labels
/// (`tenant`) and `watch_paths` (the runtime re-arms its file watcher).
fn restarts_nothing(old: &AgentSpec, new: &AgentSpec) -> bool {
    let without = |spec: &AgentSpec| AgentSpec {
        tenant: None,
        watch_paths: Vec::new(),
        ..spec.clone()
    };
    without(old) == without(new)
}
