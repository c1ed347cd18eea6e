//! Watch rules and alerts, as pure decisions: samples and log-match counts
//! come in with `now`; alerts that fire or resolve and the responses to
//! perform (restart, stop, investigate, clean logs) come out.
//!
//! A rule holds when its metric is past its threshold (or, with `predict`,
//! when the least-squares trend of its recent samples will cross it within
//! the horizon). It fires once it has held for `for`, resolves as soon as
//! it stops holding, and is sent again every `repeat_every` while it fires.
//! An intrusive response (restart, stop) happens once per firing.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::name::AgentName;

mod unhealthy;

pub use unhealthy::{resolve_after, STEADY_FOR};

/// One agent's figures at one sample; `None` where unknown.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentSample {
    /// Resident bytes of the tree.
    pub memory_bytes: Option<f64>,
    /// Of the machine's memory.
    pub memory_percent: Option<f64>,
    /// Of one core, since the previous sample.
    pub cpu_percent: Option<f64>,
    /// Open descriptors.
    pub open_files: Option<f64>,
    /// TCP sockets.
    pub connections: Option<f64>,
    /// Threads.
    pub threads: Option<f64>,
}

impl AgentSample {
    fn get(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::MemoryBytes => self.memory_bytes,
            Metric::MemoryPercent => self.memory_percent,
            Metric::CpuPercent => self.cpu_percent,
            Metric::OpenFiles => self.open_files,
            Metric::Connections => self.connections,
            Metric::Threads => self.threads,
            _ => None,
        }
    }
}

/// The host's figures at one sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostSample {
    /// Used percent per watched path.
    pub disk_percent: BTreeMap<PathBuf, f64>,
    /// MemAvailable of MemTotal.
    pub memory_available_percent: Option<f64>,
    /// The one-minute load average.
    pub load1: Option<f64>,
}

/// An alert as decided: the runtime adds wall-clock times and delivers it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEvent {
    /// Stable identity: agent (or `host`), rule index, metric.
    pub fingerprint: String,
    /// Alertmanager's `alertname`.
    pub name: String,
    /// The agent, or `None` for host rules.
    pub agent: Option<AgentName>,
    /// `warning` or `critical`.
    pub severity: &'static str,
    /// Firing (true) or resolved.
    pub firing: bool,
    /// One line for people.
    pub summary: String,
    /// When the condition started to hold.
    pub since: Instant,
    /// When it stopped (resolved).
    pub until: Option<Instant>,
    /// `rule`, `metric`, `action`.
    pub labels: BTreeMap<String, String>,
    /// A repeat of an alert already sent.
    pub repeat: bool,
}

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// Journal and deliver the alert (and list it in `roster alerts`).
    Alert(AlertEvent),
    /// Build a snapshot of the agent (process tree, open files, last log
    /// lines) off the loop, then deliver the alert with it as details.
    Investigate(AlertEvent),
    /// Drain and restart the agent (the supervisor rate-limits).
    Restart {
        /// Which agent.
        agent: AgentName,
        /// Why, for the journal.
        reason: String,
    },
    /// Stop the agent gracefully.
    Stop {
        /// Which agent.
        agent: AgentName,
        /// Why, for the journal.
        reason: String,
    },
    /// Delete the oldest rotated logs until the filesystem of `path` is
    /// below `percent` used.
    CleanLogs {
        /// The watched path.
        path: PathBuf,
        /// The threshold to get below.
        percent: f64,
    },
}

#[derive(Clone, Debug, Default)]
struct RuleState {
    /// When it started to hold (continuously), if it holds.
    holding_since: Option<Instant>,
    /// When it fired, while it fires.
    fired_at: Option<Instant>,
    last_sent: Option<Instant>,
    /// Recent values (predict).
    history: History,
    /// Log matches counted into the window.
    matches: LogWindow,
}

/// Who a rule belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Agent(AgentName),
    Host,
}

/// The rule engine: every rule's state, by owner and index.
#[derive(Debug, Default)]
pub struct Watcher {
    agents: BTreeMap<AgentName, (Vec<WatchRule>, Vec<RuleState>)>,
    host: (Vec<WatchRule>, Vec<RuleState>),
    responses: VecDeque<Response>,
    /// `AgentUnhealthy` alerts firing (see [`unhealthy`]).
    unhealthy: unhealthy::UnhealthyAlerts,
    /// Whether any rule has deadlines of its own (log windows, repeats):
    /// without one, the loop never asks the watcher for the time.
    timed_rules: bool,
}

impl Watcher {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next response to perform.
    pub fn poll_response(&mut self) -> Option<Response> {
        self.responses.pop_front()
    }

    /// Sets the rules (after a config apply). A rule that stays the same
    /// (same index, same definition) keeps its state, so an apply does not
    /// re-fire or forget firing alerts; removed rules resolve.
    pub fn set_rules(
        &mut self,
        now: Instant,
        agents: BTreeMap<AgentName, Vec<WatchRule>>,
        host: Vec<WatchRule>,
    ) {
        let mut old = std::mem::take(&mut self.agents);
        for (name, rules) in agents {
            let (previous_rules, mut previous_states) = old.remove(&name).unwrap_or_default();
            let mut states = Vec::with_capacity(rules.len());
            for (index, rule) in rules.iter().enumerate() {
                if previous_rules.get(index) == Some(rule) {
                    states.push(std::mem::take(&mut previous_states[index]));
                } else {
                    if let (Some(previous), Some(state)) =
                        (previous_rules.get(index), previous_states.get(index))
                    {
                        self.resolve_if_firing(
                            now,
                            &Owner::Agent(name.clone()),
                            index,
                            previous,
                            state,
                        );
                    }
                    states.push(RuleState::default());
                }
            }
            for index in rules.len()..previous_rules.len() {
                self.resolve_if_firing(
                    now,
                    &Owner::Agent(name.clone()),
                    index,
                    &previous_rules[index],
                    &previous_states[index],
                );
            }
            self.agents.insert(name, (rules, states));
        }
        for (name, (rules, states)) in old {
            for (index, rule) in rules.iter().enumerate() {
                self.resolve_if_firing(
                    now,
                    &Owner::Agent(name.clone()),
                    index,
                    rule,
                    &states[index],
                );
            }
            self.unhealthy.forget(&name);
        }
        let (previous_rules, mut previous_states) = std::mem::take(&mut self.host);
        let mut states = Vec::with_capacity(host.len());
        for (index, rule) in host.iter().enumerate() {
            if previous_rules.get(index) == Some(rule) {
                states.push(std::mem::take(&mut previous_states[index]));
            } else {
                if let (Some(previous), Some(state)) =
                    (previous_rules.get(index), previous_states.get(index))
                {
                    self.resolve_if_firing(now, &Owner::Host, index, previous, state);
                }
                states.push(RuleState::default());
            }
        }
        self.host = (host, states);
        let timed =
            |rule: &WatchRule| rule.metric == Metric::LogMatches || rule.repeat_every.is_some();
        self.timed_rules = self.host.0.iter().any(timed)
            || self
                .agents
                .values()
                .any(|(rules, _)| rules.iter().any(timed));
    }

    fn resolve_if_firing(
        &mut self,
        now: Instant,
        owner: &Owner,
        index: usize,
        rule: &WatchRule,
        state: &RuleState,
    ) {
        if let Some(since) = state.holding_since.filter(|_| state.fired_at.is_some()) {
            let event = alert(owner, index, rule, false, since, Some(now), None);
            self.responses.push_back(Response::Alert(event));
        }
    }

    /// A round of samples: agents that run (others are not judged and their
    /// rules stop holding), and the host.
    pub fn handle_samples(
        &mut self,
        now: Instant,
        agents: &BTreeMap<AgentName, AgentSample>,
        host: &HostSample,
    ) {
        let names: Vec<AgentName> = self.agents.keys().cloned().collect();
        for name in names {
            let sample = agents.get(&name);
            let count = self.agents.get(&name).map_or(0, |(rules, _)| rules.len());
            for index in 0..count {
                let Some((rules, _)) = self.agents.get(&name) else {
                    break;
                };
                let rule = rules[index].clone();
                if rule.metric == Metric::LogMatches {
                    continue;
                }
                let value = sample.and_then(|sample| sample.get(rule.metric));
                self.judge(now, &Owner::Agent(name.clone()), index, &rule, value);
            }
        }
        let host_rules = self.host.0.clone();
        for (index, rule) in host_rules.iter().enumerate() {
            let value = match rule.metric {
                Metric::DiskPercent => rule
                    .path
                    .as_ref()
                    .and_then(|path| host.disk_percent.get(path).copied()),
                Metric::MemoryAvailablePercent => host.memory_available_percent,
                Metric::Load1 => host.load1,
                _ => None,
            };
            self.judge(now, &Owner::Host, index, rule, value);
        }
    }

    /// Log lines matching rule `index` of `agent`: `count` more, now.
    pub fn handle_log_matches(
        &mut self,
        now: Instant,
        agent: &AgentName,
        index: usize,
        count: u64,
    ) {
        let Some((rules, states)) = self.agents.get_mut(agent) else {
            return;
        };
        let (Some(rule), Some(state)) = (rules.get(index).cloned(), states.get_mut(index)) else {
            return;
        };
        state.matches.add(now, count, rule.within);
        let value = state.matches.count(now, rule.within);
        self.judge(
            now,
            &Owner::Agent(agent.clone()),
            index,
            &rule,
            Some(value as f64),
        );
    }

    /// Deadlines: log windows that drop matches, repeats of firing alerts,
    /// health alerts that resolve.
    pub fn handle_timeout(&mut self, now: Instant) {
        let resolved = self.unhealthy.handle_timeout(now);
        self.responses
            .extend(resolved.into_iter().map(Response::Alert));
        if !self.timed_rules {
            return;
        }
        let names: Vec<AgentName> = self.agents.keys().cloned().collect();
        for name in names {
            let count = self.agents.get(&name).map_or(0, |(rules, _)| rules.len());
            for index in 0..count {
                let Some((rules, states)) = self.agents.get_mut(&name) else {
                    break;
                };
                let rule = rules[index].clone();
                if rule.metric == Metric::LogMatches {
                    let value = states[index].matches.count(now, rule.within);
                    self.judge(
                        now,
                        &Owner::Agent(name.clone()),
                        index,
                        &rule,
                        Some(value as f64),
                    );
                } else {
                    self.repeat_if_due(now, &Owner::Agent(name.clone()), index, &rule);
                }
            }
        }
        let host_rules = self.host.0.clone();
        for (index, rule) in host_rules.iter().enumerate() {
            self.repeat_if_due(now, &Owner::Host, index, rule);
        }
    }

    /// When [`Watcher::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let health = self.unhealthy.poll_timeout();
        if !self.timed_rules {
            return health;
        }
        let mut next: Option<Instant> = health;
        let mut consider = |at: Instant| next = Some(next.map_or(at, |current| current.min(at)));
        for (rules, states) in self.agents.values().chain(std::iter::once(&self.host)) {
            for (rule, state) in rules.iter().zip(states) {
                if rule.metric == Metric::LogMatches {
                    if let Some(change) = state.matches.next_change(rule.within) {
                        consider(change);
                    }
                }
                if let (Some(every), Some(last)) = (rule.repeat_every, state.last_sent) {
                    if state.fired_at.is_some() {
                        consider(last + every);
                    }
                }
            }
        }
        next
    }

    /// Health verdicts of agents whose check alerts (probed every
    /// `interval`): an `AgentUnhealthy` alert fires when one turns
    /// unhealthy, and resolves once it has stayed healthy (a new process's
    /// verdicts included) for [`resolve_after`] the interval, at
    /// [`Watcher::handle_timeout`].
    pub fn handle_health(
        &mut self,
        now: Instant,
        agent: &AgentName,
        healthy: bool,
        interval: Duration,
        detail: &str,
    ) {
        if let Some(event) = self
            .unhealthy
            .handle_verdict(now, agent, healthy, interval, detail)
        {
            self.responses.push_back(Response::Alert(event));
        }
    }

    fn judge(
        &mut self,
        now: Instant,
        owner: &Owner,
        index: usize,
        rule: &WatchRule,
        value: Option<f64>,
    ) {
        let Some(state) = self.state_mut(owner, index) else {
            return;
        };
        let holds = match value {
            None => false,
            Some(value) => match rule.predict {
                None => rule.threshold.holds(value),
                Some(horizon) => {
                    state.history.record(now, value, rule.hold);
                    rule.threshold.holds(value)
                        || state
                            .history
                            .predict(now, horizon)
                            .is_some_and(|future| rule.threshold.holds(future))
                }
            },
        };
        if !holds {
            let was = state.holding_since.take();
            let fired = state.fired_at.take();
            state.last_sent = None;
            if let (Some(since), Some(_)) = (was, fired) {
                let event = alert(owner, index, rule, false, since, Some(now), value);
                self.responses.push_back(Response::Alert(event));
            }
            return;
        }
        let since = *state.holding_since.get_or_insert(now);
        if state.fired_at.is_some() || now.saturating_duration_since(since) < rule.hold {
            return;
        }
        state.fired_at = Some(now);
        state.last_sent = Some(now);
        let event = alert(owner, index, rule, true, since, None, value);
        let agent = match owner {
            Owner::Agent(agent) => Some(agent.clone()),
            Owner::Host => None,
        };
        let reason = format!("{} fired", rule.describe());
        match (rule.action, agent) {
            (RuleAction::Investigate, Some(_)) => {
                self.responses.push_back(Response::Investigate(event))
            }
            (RuleAction::Restart, Some(agent)) => {
                self.responses.push_back(Response::Alert(event));
                self.responses
                    .push_back(Response::Restart { agent, reason });
            }
            (RuleAction::Stop, Some(agent)) => {
                self.responses.push_back(Response::Alert(event));
                self.responses.push_back(Response::Stop { agent, reason });
            }
            (RuleAction::CleanLogs, None) if rule.metric == Metric::DiskPercent => {
                self.responses.push_back(Response::Alert(event));
                if let Some(path) = rule.path.clone() {
                    self.responses.push_back(Response::CleanLogs {
                        path,
                        percent: rule.threshold.limit(),
                    });
                }
            }
            _ => self.responses.push_back(Response::Alert(event)),
        }
    }

    fn repeat_if_due(&mut self, now: Instant, owner: &Owner, index: usize, rule: &WatchRule) {
        let Some(every) = rule.repeat_every else {
            return;
        };
        let Some(state) = self.state_mut(owner, index) else {
            return;
        };
        let (Some(since), Some(_), Some(last)) =
            (state.holding_since, state.fired_at, state.last_sent)
        else {
            return;
        };
        if now.saturating_duration_since(last) < every {
            return;
        }
        state.last_sent = Some(now);
        let mut event = alert(owner, index, rule, true, since, None, None);
        event.repeat = true;
        self.responses.push_back(Response::Alert(event));
    }

    fn state_mut(&mut self, owner: &Owner, index: usize) -> Option<&mut RuleState> {
        match owner {
            Owner::Agent(agent) => self.agents.get_mut(agent)?.1.get_mut(index),
            Owner::Host => self.host.1.get_mut(index),
        }
    }

    /// The agent has a new process: what its rules judged was the old one,
    /// so firing sample rules resolve and start over (a restart that did
    /// not help fires, and responds, again). Log windows carry over.
    pub fn handle_new_process(&mut self, now: Instant, agent: &AgentName) {
        let Some((rules, states)) = self.agents.get_mut(agent) else {
            return;
        };
        let mut resolved = Vec::new();
        for (index, (rule, state)) in rules.iter().zip(states.iter_mut()).enumerate() {
            if rule.metric == Metric::LogMatches {
                continue;
            }
            if let (Some(since), Some(_)) = (state.holding_since, state.fired_at) {
                resolved.push(alert(
                    &Owner::Agent(agent.clone()),
                    index,
                    rule,
                    false,
                    since,
                    Some(now),
                    None,
                ));
            }
            *state = RuleState::default();
        }
        self.responses
            .extend(resolved.into_iter().map(Response::Alert));
    }

    /// Whether any host rule exists (the host must be sampled).
    pub fn has_host_rules(&self) -> bool {
        !self.host.0.is_empty()
    }

    /// What the sampler must read of an agent's processes for its rules.
    pub fn readings_of(&self, agent: &AgentName) -> Readings {
        Readings::of(self.rules_of(agent))
    }

    /// The rules in force for an agent (for `check` and the pumps).
    pub fn rules_of(&self, agent: &AgentName) -> &[WatchRule] {
        self.agents
            .get(agent)
            .map_or(&[], |(rules, _)| rules.as_slice())
    }
}

fn owner_key(owner: &Owner) -> String {
    match owner {
        Owner::Agent(agent) => agent.to_string(),
        Owner::Host => "host".to_owned(),
    }
}

fn base_alert(
    owner: &Owner,
    rule: &str,
    name: &str,
    severity: &'static str,
    firing: bool,
    since: Instant,
) -> AlertEvent {
    let mut labels = BTreeMap::new();
    labels.insert("rule".to_owned(), rule.to_owned());
    AlertEvent {
        fingerprint: format!("{}/{rule}", owner_key(owner)),
        name: name.to_owned(),
        agent: match owner {
            Owner::Agent(agent) => Some(agent.clone()),
            Owner::Host => None,
        },
        severity,
        firing,
        summary: String::new(),
        since,
        until: None,
        labels,
        repeat: false,
    }
}

fn alert(
    owner: &Owner,
    index: usize,
    rule: &WatchRule,
    firing: bool,
    since: Instant,
    until: Option<Instant>,
    value: Option<f64>,
) -> AlertEvent {
    let rule_id = format!("watch{index}");
    let mut event = base_alert(
        owner,
        &rule_id,
        rule.metric.alert_name(),
        rule.action.severity(),
        firing,
        since,
    );
    event.until = until;
    event
        .labels
        .insert("metric".to_owned(), rule.metric.as_str().to_owned());
    event
        .labels
        .insert("action".to_owned(), rule.action.as_str().to_owned());
    let who = match owner {
        Owner::Agent(agent) => agent.to_string(),
        Owner::Host => "host".to_owned(),
    };
    event.summary = format!("{who}: {}", rule.summary(firing, value));
    event
}

mod predict;
mod rule;
mod text;
mod window;

pub use predict::{predict, History};
pub use rule::{default_agent_rules, Metric, Readings, RuleAction, Threshold, WatchRule, METRICS};
pub use text::format_bytes;
pub use window::LogWindow;

#[cfg(test)]
mod tests;
