//! The supervisor: every agent's state machine, as a sans-I/O core.
//!
//! The runtime feeds facts in (`handle_*`), performs what comes out of
//! [`Supervisor::poll_action`], journals what comes out of
//! [`Supervisor::poll_event`], and sleeps until the next input or
//! [`Supervisor::poll_timeout`]. Call order after any input:
//! drain `poll_action` (performing each action before taking the next, and
//! answering every [`Action::Spawn`] with [`Supervisor::handle_spawned`]),
//! then drain `poll_event`, then ask `poll_timeout`.
//!
//! Nothing here reads the clock: `now` is always an argument.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::api::{AgentState, EventKind as JournalKind, Health};
pub use crate::api::{ApplySummary, ExitStatus};
use crate::config::{AgentSpec, Config, RestartMode};
use crate::deploy::Strategy as Cutover;
use crate::health::{Check, Failures, OnFailure};
use crate::name::AgentName;
use crate::signal::Signal;
use crate::units::format_duration;

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the agent with its current spec ([`Supervisor::spec`]); answer
    /// with [`Supervisor::handle_spawned`].
    Spawn {
        /// Which agent.
        agent: AgentName,
    },
    /// Send `signal` to the process group led by `pid`.
    Signal {
        /// Which agent.
        agent: AgentName,
        /// The group leader (agents run in their own session, so pgid == pid).
        pid: u32,
        /// What to send.
        signal: Signal,
    },
    /// The agent's main process is gone: kill whatever is left of its
    /// process group, and processes that escaped it (double-forked strays
    /// reparented to the daemon), so no second copy runs beside the next one.
    Cleanup {
        /// Which agent.
        agent: AgentName,
        /// The dead main process, leader of the group to clean up.
        pid: u32,
    },
    /// The agent is gone from the config and fully stopped: drop its
    /// resources (log writer). Its log files stay.
    Forget {
        /// Which agent.
        agent: AgentName,
    },
    /// Run a health probe off the loop; answer with
    /// [`Supervisor::handle_probe`] and this `id`. The supervisor itself
    /// declares it failed at `timeout` (and asks for [`Action::CancelProbe`]).
    Probe {
        /// Which agent.
        agent: AgentName,
        /// Names this probe; results for another id are stale.
        id: u64,
        /// What to probe.
        check: Check,
        /// How long it may take.
        timeout: Duration,
    },
    /// Stop a probe that is no longer wanted (timed out, or its agent
    /// stopped): kill its process, drop its task.
    CancelProbe {
        /// Which agent.
        agent: AgentName,
        /// The probe.
        id: u64,
    },
}

/// What [`Supervisor::handle_switch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// The new release is starting beside this live process.
    Beside {
        /// The live process, serving until the new one is ready.
        pid: u32,
    },
    /// The agent restarts (or starts) with the new release.
    Restarting,
    /// The agent is not running; the release runs when it is started.
    NotRunning,
}

/// Restarts that roster decides on by itself (a failed health check) per
/// agent within [`AUTO_RESTART_WINDOW`]: a flapping check must not cause a
/// restart storm. More are suppressed and journaled.
pub const AUTO_RESTARTS_MAX: usize = 3;
/// See [`AUTO_RESTARTS_MAX`].
pub const AUTO_RESTART_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Probe times are rounded up to this grid, so that a thousand agents'
/// probes come due in a few dozen batches rather than a thousand separate
/// wake-ups of the loop.
pub const PROBE_GRID: Duration = Duration::from_millis(100);

/// A fact to journal: something that happened to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The agent.
    pub agent: AgentName,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// It appeared in the config.
    Added,
    /// Its config changed.
    Changed,
    /// It left the config and is stopped.
    Removed,
    /// A process was started.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// The process could not be started.
    SpawnFailed {
        /// Why, from the OS.
        error: String,
    },
    /// It stayed up for `ready_after`.
    Running {
        /// Its pid.
        pid: u32,
    },
    /// The main process ended on its own.
    Exited {
        /// Its pid.
        pid: u32,
        /// How.
        status: ExitStatus,
        /// How long it ran.
        uptime: Duration,
    },
    /// It will be started again after `delay`.
    Restarting {
        /// The wait before the restart.
        delay: Duration,
    },
    /// It died too often too quickly, or cannot start as configured, and
    /// is left alone for a while.
    Failed {
        /// Quick deaths counted in the window; 0 when it was given up at
        /// once because it cannot start as configured.
        deaths: u32,
        /// When it will be retried; `None` means only by an operator.
        retry_in: Option<Duration>,
    },
    /// The cool-down after `failed` is over; it is started again.
    Retrying,
    /// The stop signal was sent.
    Stopping {
        /// The group leader.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// It outlived `stop_timeout` and got SIGKILL.
    Killed {
        /// The group leader.
        pid: u32,
    },
    /// It is stopped.
    Stopped {
        /// How the process ended, if one was running.
        status: Option<ExitStatus>,
    },
    /// Its health check passes (again).
    Healthy,
    /// Its health check failed `failures` times in a row.
    Unhealthy {
        /// Consecutive failures.
        failures: u32,
        /// The last probe's error.
        error: String,
        /// What roster does about it.
        action: OnFailure,
    },
    /// An automatic restart was not done: too many already.
    RestartSuppressed {
        /// Why a restart was wanted.
        reason: String,
    },
    /// A new release is started beside the live process, which keeps
    /// serving until the new one is ready.
    HandingOver {
        /// The live process.
        pid: u32,
        /// The release starting.
        release: String,
    },
    /// The process of the previous release is asked to finish.
    Retiring {
        /// It.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// The process of the previous release ended.
    Retired {
        /// It.
        pid: u32,
        /// How.
        status: ExitStatus,
    },
    /// A cutover was given up: the process it was replacing serves again.
    HandedBack {
        /// The process serving again.
        pid: u32,
        /// Why.
        reason: String,
    },
    /// It is shipped as releases and none is deployed yet: it is not
    /// started (and no start is counted) until the first deploy.
    Undeployed,
}

impl EventKind {
    /// The journal's kind for this event.
    pub fn journal_kind(&self) -> JournalKind {
        match self {
            EventKind::Added => JournalKind::Added,
            EventKind::Changed => JournalKind::Changed,
            EventKind::Removed => JournalKind::Removed,
            EventKind::Started { .. } => JournalKind::Started,
            EventKind::SpawnFailed { .. } => JournalKind::SpawnFailed,
            EventKind::Running { .. } => JournalKind::Running,
            EventKind::Exited { .. } => JournalKind::Exited,
            EventKind::Restarting { .. } => JournalKind::Restarting,
            EventKind::Failed { .. } => JournalKind::Failed,
            EventKind::Retrying => JournalKind::Retrying,
            EventKind::Stopping { .. } => JournalKind::Stopping,
            EventKind::Killed { .. } => JournalKind::Killed,
            EventKind::Stopped { .. } => JournalKind::Stopped,
            EventKind::Healthy => JournalKind::Healthy,
            EventKind::Unhealthy { .. } => JournalKind::Unhealthy,
            EventKind::RestartSuppressed { .. } => JournalKind::RestartSuppressed,
            EventKind::HandingOver { .. } => JournalKind::Handover,
            EventKind::Retiring { .. } => JournalKind::Retiring,
            EventKind::Retired { .. } => JournalKind::Retired,
            EventKind::HandedBack { .. } => JournalKind::HandedBack,
            EventKind::Undeployed => JournalKind::Undeployed,
        }
    }

    /// The journal's name for this kind of event.
    pub fn name(&self) -> &'static str {
        self.journal_kind().as_str()
    }

    /// The pid concerned, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            EventKind::Started { pid }
            | EventKind::Running { pid }
            | EventKind::Exited { pid, .. }
            | EventKind::Stopping { pid, .. }
            | EventKind::Killed { pid }
            | EventKind::HandingOver { pid, .. }
            | EventKind::Retiring { pid, .. }
            | EventKind::Retired { pid, .. }
            | EventKind::HandedBack { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// A one-line description for people.
    pub fn detail(&self) -> String {
        use crate::units::format_duration;
        match self {
            EventKind::Added => "added to the config".into(),
            EventKind::Changed => "config changed".into(),
            EventKind::Removed => "removed from the config".into(),
            EventKind::Started { pid } => format!("started, pid {pid}"),
            EventKind::SpawnFailed { error } => format!("could not start: {error}"),
            EventKind::Running { pid } => format!("running, pid {pid}"),
            EventKind::Exited {
                pid,
                status,
                uptime,
            } => {
                format!("pid {pid} {status} after {}", format_duration(*uptime))
            }
            EventKind::Restarting { delay } if delay.is_zero() => "restarting now".into(),
            EventKind::Restarting { delay } => {
                format!("restarting in {}", format_duration(*delay))
            }
            EventKind::Failed {
                deaths: 0,
                retry_in,
            } => match retry_in {
                Some(retry) => format!(
                    "failed: it cannot start as configured; retrying in {}",
                    format_duration(*retry)
                ),
                None => "failed: it cannot start as configured; start it by hand once fixed".into(),
            },
            EventKind::Failed { deaths, retry_in } => match retry_in {
                Some(retry) => format!(
                    "failed: {deaths} quick deaths; retrying in {}",
                    format_duration(*retry)
                ),
                None => format!("failed: {deaths} quick deaths; start it by hand"),
            },
            EventKind::Retrying => "cool-down over, starting again".into(),
            EventKind::Stopping { pid, signal } => format!("stopping pid {pid} with {signal}"),
            EventKind::Killed { pid } => format!("pid {pid} outlived stop_timeout: SIGKILL"),
            EventKind::Stopped {
                status: Some(status),
            } => format!("stopped ({status})"),
            EventKind::Stopped { status: None } => "stopped".into(),
            EventKind::Healthy => "health check passes".into(),
            EventKind::Unhealthy {
                failures,
                error,
                action,
            } => {
                let then = match action {
                    OnFailure::Restart => "; draining and restarting",
                    OnFailure::Alert | OnFailure::None => "",
                };
                format!("unhealthy: {failures} failed health checks in a row, last: {error}{then}")
            }
            EventKind::RestartSuppressed { reason } => format!(
                "not restarted ({reason}): already {AUTO_RESTARTS_MAX} automatic restarts in {}",
                format_duration(AUTO_RESTART_WINDOW)
            ),
            EventKind::HandingOver { pid, release } => {
                format!("starting release {release} beside pid {pid}, which keeps serving")
            }
            EventKind::Retiring { pid, signal } => {
                format!("pid {pid} of the previous release drains ({signal})")
            }
            EventKind::Retired { pid, status } => {
                format!("pid {pid} of the previous release ended ({status})")
            }
            EventKind::HandedBack { pid, reason } => {
                format!("cutover given up ({reason}): pid {pid} serves again")
            }
            EventKind::Undeployed => {
                "no release is deployed yet; it starts with its first deploy".into()
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterStop {
    Stay,
    Restart,
    Remove,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Stopped,
    /// A Spawn action is out; the runtime has not answered yet.
    Spawning,
    Starting {
        pid: u32,
        since: Instant,
    },
    Running {
        pid: u32,
        since: Instant,
    },
    Stopping {
        pid: u32,
        since: Instant,
        kill_at: Option<Instant>,
        then: AfterStop,
    },
    Backoff {
        until: Instant,
    },
    Failed {
        retry_at: Option<Instant>,
    },
    Exited,
    /// Shipped as releases, with none deployed: waits for a cutover.
    Undeployed,
}

#[derive(Debug)]
struct Agent {
    spec: AgentSpec,
    phase: Phase,
    /// Start attempts, successful or not.
    attempts: u64,
    /// Start attempts after the first that were not a cutover's: what
    /// `status` shows as restarts. Deploys and rollbacks are no restarts.
    restarts: u64,
    /// The next spawn is a cutover's (a deploy or a rollback): it is not
    /// counted in `restarts`.
    cutover_spawn: bool,
    /// Why the latest start attempt failed; cleared by a successful one.
    last_error: Option<String>,
    quick_streak: u32,
    quick_deaths: VecDeque<Instant>,
    last_exit: Option<ExitStatus>,
    /// The health check's state for the current process.
    probe: ProbeState,
    /// When roster restarted it by itself, within the rate-limit window.
    auto_restarts: VecDeque<Instant>,
    /// The release the main process runs (or the next spawn will run), for
    /// agents shipped as releases; `None`: whatever `current` names.
    release: Option<String>,
    /// Processes of earlier releases: the one a cutover is replacing
    /// (serving, at most one) and those still draining.
    outgoing: Vec<Outgoing>,
    /// Removed from the config; forgotten once the outgoing process is gone.
    forget_when_alone: bool,
}

/// During a blue-green cutover, the process being replaced: serving until
/// the new one is ready, then draining.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outgoing {
    pid: u32,
    since: Instant,
    release: Option<String>,
    /// `None` while it serves; once asked to finish, when SIGKILL follows
    /// (`Some(None)`: sent already).
    draining: Option<Option<Instant>>,
}

impl Agent {
    fn new(spec: AgentSpec) -> Self {
        Self {
            spec,
            phase: Phase::Stopped,
            attempts: 0,
            restarts: 0,
            cutover_spawn: false,
            last_error: None,
            quick_streak: 0,
            quick_deaths: VecDeque::new(),
            last_exit: None,
            probe: ProbeState::default(),
            auto_restarts: VecDeque::new(),
            release: None,
            outgoing: Vec::new(),
            forget_when_alone: false,
        }
    }

    /// Takes `live`, the release the runtime found live, when the agent is
    /// shipped as releases and has none of its own yet.
    fn adopt_release(&mut self, live: Option<&String>) {
        if self.spec.deploy.is_some() && self.release.is_none() {
            self.release = live.cloned();
        }
    }

    /// A start attempt: a restart unless it is the first or a cutover's.
    fn count_attempt(&mut self) {
        if self.attempts > 0 && !self.cutover_spawn {
            self.restarts += 1;
        }
        self.attempts += 1;
        self.cutover_spawn = false;
    }

    fn pid(&self) -> Option<u32> {
        match self.phase {
            Phase::Starting { pid, .. }
            | Phase::Running { pid, .. }
            | Phase::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    fn phase_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Starting { since, .. } => Some(since + self.spec.ready_after),
            Phase::Stopping { kill_at, .. } => kill_at,
            Phase::Backoff { until } => Some(until),
            Phase::Failed { retry_at } => retry_at,
            _ => None,
        }
    }

    /// When the health check needs attention: the next probe is due, or
    /// the one in flight times out. Only while the process is up (not
    /// stopping).
    fn probe_deadline(&self) -> Option<Instant> {
        if !matches!(self.phase, Phase::Starting { .. } | Phase::Running { .. }) {
            return None;
        }
        match self.probe.in_flight {
            Some((_, deadline)) => Some(deadline),
            None => self.probe.next_at,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.phase_deadline(),
            self.probe_deadline(),
            self.outgoing_kill_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn outgoing_kill_at(&self) -> Option<Instant> {
        self.outgoing
            .iter()
            .filter_map(|out| out.draining.flatten())
            .min()
    }

    /// The outgoing process that still serves (a cutover under way).
    fn serving(&self) -> Option<&Outgoing> {
        self.outgoing.iter().find(|out| out.draining.is_none())
    }
}

/// The health check of the agent's current process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ProbeState {
    verdict: Option<bool>,
    failures: Failures,
    /// When the process started: failures before `start_period` are ignored.
    started: Option<Instant>,
    next_at: Option<Instant>,
    /// The probe out: its id and when it times out.
    in_flight: Option<(u64, Instant)>,
    /// A suppressed restart was journaled for this unhealthy spell.
    suppression_reported: bool,
}

/// `at` rounded up to the probe grid (see [`PROBE_GRID`]).
fn on_grid(epoch: Option<Instant>, at: Instant) -> Instant {
    let Some(epoch) = epoch else {
        return at;
    };
    let since = at.saturating_duration_since(epoch).as_nanos();
    let grid = PROBE_GRID.as_nanos();
    let steps = since.div_ceil(grid);
    epoch + Duration::from_nanos((steps * grid).min(u64::MAX as u128) as u64)
}

/// The wait before restarting an agent after its `streak`-th quick death in a
/// row: `restart_delay` for the first, then doubling from
/// max(`restart_delay`, 100 ms), capped at `backoff_max`.
pub fn backoff_delay(spec: &AgentSpec, streak: u32) -> Duration {
    if streak <= 1 {
        return spec.restart_delay;
    }
    let base = spec.restart_delay.max(Duration::from_millis(100));
    let doublings = (streak - 2).min(30);
    base.saturating_mul(1u32 << doublings)
        .min(spec.backoff_max.max(spec.restart_delay))
}

/// One agent as status shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    /// The name.
    pub name: AgentName,
    /// The state.
    pub state: AgentState,
    /// The main process, while one runs.
    pub pid: Option<u32>,
    /// Start attempts after the first (failed ones count), except those of
    /// cutovers (deploys, rollbacks).
    pub restarts: u64,
    /// Since the current process started.
    pub uptime: Option<Duration>,
    /// How the last process ended.
    pub last_exit: Option<ExitStatus>,
    /// Why the latest start attempt failed, until one succeeds.
    pub last_error: Option<String>,
    /// The health check's verdict on the current process.
    pub health: Health,
    /// The release the main process runs (agents shipped as releases).
    pub release: Option<String>,
    /// During a cutover, the process being replaced.
    pub outgoing_pid: Option<u32>,
    /// Whether the agent has a health check.
    pub has_check: bool,
}

/// All agents of one roster home.
#[derive(Debug, Default)]
pub struct Supervisor {
    agents: BTreeMap<AgentName, Agent>,
    /// Main pid to agent, for every agent whose phase holds a pid.
    pids: HashMap<u32, AgentName>,
    next_probe_id: u64,
    /// The first `now` seen: probe times are aligned to a grid from it.
    epoch: Option<Instant>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Supervisor {
    /// An empty supervisor: no agents.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next fact to journal, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Supervisor::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.agents.values().filter_map(Agent::next_deadline).min()
    }

    /// The current spec of an agent.
    pub fn spec(&self, agent: &AgentName) -> Option<&AgentSpec> {
        self.agents.get(agent).map(|entry| &entry.spec)
    }

    /// Whether the name is a known agent.
    pub fn contains(&self, agent: &AgentName) -> bool {
        self.agents.contains_key(agent)
    }

    /// How many agents there are.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether there are no agents.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Whether a stopping agent's SIGKILL deadline has come.
    pub fn kill_due(&self, now: Instant) -> bool {
        self.agents.values().any(|agent| {
            matches!(agent.phase, Phase::Stopping { kill_at: Some(at), .. } if at <= now)
                || agent.outgoing_kill_at().is_some_and(|at| at <= now)
        })
    }

    /// The release the agent's main process runs, or its next spawn will.
    pub fn release(&self, agent: &AgentName) -> Option<&str> {
        self.agents.get(agent)?.release.as_deref()
    }

    /// Records which release a spawn from `current` ran (the runtime read
    /// the link because no release was set).
    pub fn note_release(&mut self, agent: &AgentName, release: &str) {
        if let Some(agent) = self.agents.get_mut(agent) {
            agent.release = Some(release.to_owned());
        }
    }

    /// A process of an earlier release that still runs (being replaced,
    /// or draining), if any.
    pub fn outgoing_pid(&self, agent: &AgentName) -> Option<u32> {
        self.agents.get(agent)?.outgoing.first().map(|out| out.pid)
    }

    /// Whether actions or events wait to be polled.
    pub fn has_pending(&self) -> bool {
        !self.actions.is_empty() || !self.events.is_empty()
    }

    /// A watch rule wants the agent restarted: drained, and rate-limited
    /// with the health check's restarts.
    pub fn handle_rule_restart(&mut self, now: Instant, agent: &AgentName, reason: &str) {
        self.auto_restart(now, agent, reason);
    }

    /// The names of all agents, sorted.
    pub fn names(&self) -> Vec<AgentName> {
        self.agents.keys().cloned().collect()
    }

    /// The pids of every agent's main process.
    /// During a cutover an agent has two: the new one first, then the one
    /// being replaced.
    pub fn main_pids(&self) -> Vec<(AgentName, u32)> {
        self.agents
            .iter()
            .flat_map(|(name, agent)| {
                let outgoing = agent.outgoing.iter().map(|out| out.pid);
                agent
                    .pid()
                    .into_iter()
                    .chain(outgoing)
                    .map(|pid| (name.clone(), pid))
            })
            .collect()
    }

    /// Whether the agent waits for the answer to an [`Action::Spawn`]: a
    /// runtime that spawns in batches asks before a spawn it put off (the
    /// agent may have been stopped or removed since).
    pub fn is_spawning(&self, name: &AgentName) -> bool {
        self.agents
            .get(name)
            .is_some_and(|agent| agent.phase == Phase::Spawning)
    }

    /// True when no agent has a process and none is about to get one.
    pub fn is_quiet(&self) -> bool {
        self.agents.values().all(|agent| {
            agent.outgoing.is_empty()
                && matches!(
                    agent.phase,
                    Phase::Stopped | Phase::Exited | Phase::Failed { .. } | Phase::Undeployed
                )
        })
    }

    /// Status of every agent (or of the named ones), sorted by name.
    pub fn views(&self, now: Instant) -> Vec<AgentView> {
        self.agents
            .iter()
            .map(|(name, agent)| Self::view_of(now, name, agent))
            .collect()
    }

    /// Status of one agent (a running deployment is fed it after each event).
    pub fn view(&self, now: Instant, name: &AgentName) -> Option<AgentView> {
        self.agents
            .get_key_value(name)
            .map(|(name, agent)| Self::view_of(now, name, agent))
    }

    fn view_of(now: Instant, name: &AgentName, agent: &Agent) -> AgentView {
        let (state, uptime) = match agent.phase {
            Phase::Stopped => (AgentState::Stopped, None),
            Phase::Spawning => (AgentState::Starting, None),
            Phase::Starting { since, .. } => (
                AgentState::Starting,
                Some(now.saturating_duration_since(since)),
            ),
            Phase::Running { since, .. } => (
                AgentState::Running,
                Some(now.saturating_duration_since(since)),
            ),
            Phase::Stopping { since, .. } => (
                AgentState::Stopping,
                Some(now.saturating_duration_since(since)),
            ),
            Phase::Backoff { .. } => (AgentState::Backoff, None),
            Phase::Failed { .. } => (AgentState::Failed, None),
            Phase::Exited => (AgentState::Exited, None),
            Phase::Undeployed => (AgentState::Undeployed, None),
        };
        AgentView {
            name: name.clone(),
            state,
            pid: agent.pid(),
            restarts: agent.restarts,
            uptime,
            last_exit: agent.last_exit,
            last_error: agent.last_error.clone(),
            health: match (agent.pid(), agent.probe.verdict) {
                (Some(_), Some(true)) => Health::Healthy,
                (Some(_), Some(false)) => Health::Unhealthy,
                _ => Health::Unknown,
            },
            release: agent.release.clone(),
            outgoing_pid: agent.serving().map(|out| out.pid),
            has_check: agent.spec.health.is_some(),
        }
    }

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
        for name in removed {
            summary.removed.push(name.to_string());
            self.stop_agent(now, &name, AfterStop::Remove);
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
                Some(agent) if agent.spec != *spec => {
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

    /// An operator's `start`: start it if it is not running, clearing
    /// `failed` and any backoff at once.
    pub fn handle_start(&mut self, now: Instant, agent: &AgentName) {
        self.start_agent(now, agent);
    }

    /// An operator's `stop`.
    pub fn handle_stop(&mut self, now: Instant, agent: &AgentName) {
        self.stop_agent(now, agent, AfterStop::Stay);
    }

    /// An operator's `restart`: stop gracefully, then start.
    pub fn handle_restart(&mut self, now: Instant, agent: &AgentName) {
        self.restart_agent(now, agent);
    }

    /// Stops every agent (for `roster down`).
    pub fn handle_stop_all(&mut self, now: Instant) {
        for name in self.names() {
            self.stop_agent(now, &name, AfterStop::Stay);
        }
    }

    /// The runtime's answer to [`Action::Spawn`].
    ///
    /// An agent never has two live processes: a pid that arrives when the
    /// agent already tracks one, or for an agent that is gone, is killed
    /// (with its group) instead of tracked.
    pub fn handle_spawned(&mut self, now: Instant, name: &AgentName, result: Result<u32, String>) {
        let Some(agent) = self.agents.get_mut(name) else {
            if let Ok(pid) = result {
                self.kill_untracked(name, pid);
            }
            return;
        };
        if agent.phase != Phase::Spawning {
            let Ok(pid) = result else {
                return;
            };
            if agent.pid().is_some() {
                self.kill_untracked(name, pid);
                return;
            }
            // Stopped while the spawn was out: the process is not wanted.
            agent.count_attempt();
            agent.last_error = None;
            agent.phase = Phase::Running { pid, since: now };
            self.pids.insert(pid, name.clone());
            self.push_event(name, EventKind::Started { pid });
            self.stop_agent(now, name, AfterStop::Stay);
            return;
        }
        agent.count_attempt();
        match result {
            Ok(pid) => {
                agent.last_error = None;
                agent.phase = if agent.spec.ready_after.is_zero() {
                    Phase::Running { pid, since: now }
                } else {
                    Phase::Starting { pid, since: now }
                };
                let first = agent
                    .spec
                    .health
                    .as_ref()
                    .map(|health| now + agent.spec.ready_after.min(health.interval));
                agent.probe = ProbeState {
                    started: Some(now),
                    // The first probe when the agent counts as running.
                    next_at: first.map(|at| on_grid(self.epoch, at)),
                    ..ProbeState::default()
                };
                self.pids.insert(pid, name.clone());
                self.push_event(name, EventKind::Started { pid });
            }
            Err(error) => {
                agent.last_error = Some(error.clone());
                agent.phase = Phase::Stopped;
                let serving = agent.serving().is_some();
                self.push_event(
                    name,
                    EventKind::SpawnFailed {
                        error: error.clone(),
                    },
                );
                if serving {
                    // The new release cannot start: the live process stays.
                    self.hand_back(
                        now,
                        name,
                        format!("the new release could not start: {error}"),
                    );
                } else {
                    self.after_death(now, name, false, Duration::ZERO);
                }
            }
        }
    }

    /// Ships `release` to an agent (a deploy's or a rollback's cutover).
    ///
    /// Blue-green, with a live process: the live process keeps serving
    /// (it becomes the outgoing one) and the new release is spawned beside
    /// it; [`Supervisor::handle_retire`] then drains the old one, or
    /// [`Supervisor::handle_handback`] gives up. If the new process dies
    /// first, the old one takes over again by itself (`handed_back`).
    /// Restart: stop, then start with the new release. An agent that is
    /// stopped (or exited) stays so and runs the release when started; one
    /// in backoff or failed starts it at once.
    pub fn handle_switch(
        &mut self,
        now: Instant,
        name: &AgentName,
        release: &str,
        strategy: Cutover,
    ) -> Result<Switch, String> {
        let Some(agent) = self.agents.get_mut(name) else {
            return Err(format!("no agent named {name}"));
        };
        if agent.serving().is_some() {
            return Err(format!(
                "{name} is in the middle of a cutover; wait until it ends"
            ));
        }
        let previous = agent.release.replace(release.to_owned());
        // The spawn this switch causes is no restart (see `restarts`).
        let cutover_spawn = agent.cutover_spawn;
        agent.cutover_spawn = true;
        match (agent.phase, strategy) {
            (
                Phase::Starting { pid, since } | Phase::Running { pid, since },
                Cutover::BlueGreen,
            ) => {
                agent.outgoing.push(Outgoing {
                    pid,
                    since,
                    release: previous,
                    draining: None,
                });
                self.cancel_probe(name);
                self.push_event(
                    name,
                    EventKind::HandingOver {
                        pid,
                        release: release.to_owned(),
                    },
                );
                self.spawn(name);
                Ok(Switch::Beside { pid })
            }
            (Phase::Starting { .. } | Phase::Running { .. }, Cutover::Restart) => {
                self.stop_agent(now, name, AfterStop::Restart);
                Ok(Switch::Restarting)
            }
            (Phase::Spawning, _) => {
                agent.release = previous;
                agent.cutover_spawn = cutover_spawn;
                Err(format!("{name} is starting; try again in a moment"))
            }
            (Phase::Stopping { then, .. }, _) => {
                // Already stopping: its next start, if any, is what an
                // operator or a config change asked for.
                agent.cutover_spawn = cutover_spawn;
                Ok(if then == AfterStop::Restart {
                    Switch::Restarting
                } else {
                    Switch::NotRunning
                })
            }
            // An agent waiting for its first release starts with it.
            (Phase::Backoff { .. } | Phase::Failed { .. } | Phase::Undeployed, _) => {
                self.start_agent(now, name);
                Ok(Switch::Restarting)
            }
            (Phase::Stopped | Phase::Exited, _) => {
                agent.cutover_spawn = cutover_spawn;
                Ok(Switch::NotRunning)
            }
        }
    }

    /// The new process of a blue-green cutover is ready: the outgoing one
    /// is asked to finish (drain signal, SIGKILL after `drain_timeout`).
    /// False when there is no serving outgoing process.
    pub fn handle_retire(&mut self, now: Instant, name: &AgentName) -> bool {
        let Some(agent) = self.agents.get(name) else {
            return false;
        };
        if agent.serving().is_none() {
            return false;
        }
        let signal = agent.spec.drain_signal.unwrap_or(agent.spec.stop_signal);
        let timeout = agent.spec.drain_timeout;
        self.retire(now, name, signal, timeout);
        true
    }

    /// Gives up a blue-green cutover: the outgoing process, still serving,
    /// is the agent's main process again, and the new one drains.
    pub fn handle_handback(&mut self, now: Instant, name: &AgentName, reason: &str) -> bool {
        let serving = self
            .agents
            .get(name)
            .is_some_and(|agent| agent.serving().is_some());
        if serving {
            self.hand_back(now, name, reason.to_owned());
        }
        serving
    }

    fn hand_back(&mut self, now: Instant, name: &AgentName, reason: String) {
        self.cancel_probe(name);
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let Some(index) = agent.outgoing.iter().position(|out| out.draining.is_none()) else {
            return;
        };
        let old = agent.outgoing.remove(index);
        let signal = agent.spec.drain_signal.unwrap_or(agent.spec.stop_signal);
        let timeout = agent.spec.drain_timeout;
        // The new process, if it still runs, becomes the outgoing one.
        let new = match agent.phase {
            Phase::Starting { pid, since } | Phase::Running { pid, since } => {
                let kill_at = (signal != Signal::Kill).then(|| now + timeout);
                self.actions.push_back(Action::Signal {
                    agent: name.clone(),
                    pid,
                    signal,
                });
                self.events.push_back(Event {
                    agent: name.clone(),
                    kind: EventKind::Retiring { pid, signal },
                });
                Some((pid, since, Some(kill_at)))
            }
            Phase::Stopping {
                pid,
                since,
                kill_at,
                ..
            } => Some((pid, since, Some(kill_at))),
            _ => None,
        };
        if let Some((pid, since, draining)) = new {
            let release = agent.release.clone();
            agent.outgoing.push(Outgoing {
                pid,
                since,
                release,
                draining,
            });
        }
        agent.release = old.release;
        agent.phase = Phase::Running {
            pid: old.pid,
            since: old.since,
        };
        agent.forget_when_alone = false;
        let first = agent.spec.health.as_ref().map(|health| {
            on_grid(
                self.epoch,
                now + health.interval.min(Duration::from_secs(1)),
            )
        });
        agent.probe = ProbeState {
            started: Some(old.since),
            next_at: first,
            ..ProbeState::default()
        };
        self.push_event(
            name,
            EventKind::HandedBack {
                pid: old.pid,
                reason,
            },
        );
    }

    /// Asks a serving outgoing process to finish with `signal`.
    fn retire(&mut self, now: Instant, name: &AgentName, signal: Signal, timeout: Duration) {
        let Some(outgoing) = self
            .agents
            .get_mut(name)
            .and_then(|agent| agent.outgoing.iter_mut().find(|out| out.draining.is_none()))
        else {
            return;
        };
        let kill_at = (signal != Signal::Kill).then(|| now + timeout);
        outgoing.draining = Some(kill_at);
        let pid = outgoing.pid;
        self.actions.push_back(Action::Signal {
            agent: name.clone(),
            pid,
            signal,
        });
        self.push_event(name, EventKind::Retiring { pid, signal });
    }

    /// A process the runtime started that no agent may track.
    fn kill_untracked(&mut self, name: &AgentName, pid: u32) {
        self.actions.push_back(Action::Signal {
            agent: name.clone(),
            pid,
            signal: Signal::Kill,
        });
    }

    /// A child was reaped. Returns false when the pid is no agent's main
    /// process (a stray the daemon inherited as subreaper).
    pub fn handle_exit(&mut self, now: Instant, pid: u32, status: ExitStatus) -> bool {
        let Some(name) = self.pids.remove(&pid) else {
            return false;
        };
        let Some(agent) = self.agents.get_mut(&name) else {
            return false;
        };
        if let Some(index) = agent.outgoing.iter().position(|out| out.pid == pid) {
            agent.outgoing.remove(index);
            let forget =
                agent.forget_when_alone && agent.pid().is_none() && agent.outgoing.is_empty();
            self.push_event(&name, EventKind::Retired { pid, status });
            self.actions.push_back(Action::Cleanup {
                agent: name.clone(),
                pid,
            });
            if forget {
                self.forget(&name);
            }
            return true;
        }
        self.cancel_probe(&name);
        let Some(agent) = self.agents.get_mut(&name) else {
            return false;
        };
        agent.last_exit = Some(status);
        match agent.phase {
            Phase::Starting { since, .. } | Phase::Running { since, .. } => {
                let uptime = now.saturating_duration_since(since);
                agent.phase = Phase::Stopped;
                let serving = agent.serving().is_some();
                self.push_event(
                    &name,
                    EventKind::Exited {
                        pid,
                        status,
                        uptime,
                    },
                );
                if serving {
                    // The new release died during its cutover: the process
                    // it was to replace still serves, and takes over again.
                    self.hand_back(now, &name, format!("the new process {status}"));
                } else {
                    self.after_death(now, &name, status.is_success(), uptime);
                }
            }
            Phase::Stopping { then, .. } => {
                agent.phase = Phase::Stopped;
                let outgoing = !agent.outgoing.is_empty();
                if then == AfterStop::Remove && outgoing {
                    agent.forget_when_alone = true;
                }
                self.push_event(
                    &name,
                    EventKind::Stopped {
                        status: Some(status),
                    },
                );
                match then {
                    AfterStop::Stay => {}
                    AfterStop::Restart => self.start_agent(now, &name),
                    AfterStop::Remove if outgoing => {}
                    AfterStop::Remove => self.forget(&name),
                }
            }
            _ => debug_assert!(false, "exit of {pid} in a phase without a process"),
        }
        self.actions.push_back(Action::Cleanup { agent: name, pid });
        true
    }

    /// A process ended before it became the agent: the runtime's exec shim
    /// found that the agent cannot start as configured (its user cannot
    /// enter the directory or run the program, a limit could not be set)
    /// and said why. Like a failed spawn it is `last_error` and
    /// `spawn_failed`; unlike one, starting again at once cannot help, so
    /// the agent is `failed` at once (retried after `failed_retry`, or by
    /// `start`) instead of after `crash_loop` quick deaths, or `exited`
    /// with `restart = "never"`. During a cutover the live process serves
    /// on. Returns false when the pid is no agent's.
    pub fn handle_not_started(
        &mut self,
        now: Instant,
        pid: u32,
        status: ExitStatus,
        reason: String,
    ) -> bool {
        let Some(name) = self.pids.get(&pid).cloned() else {
            return false;
        };
        let main = self.agents.get(&name).is_some_and(|agent| {
            matches!(agent.phase, Phase::Starting { pid: main, .. } | Phase::Running { pid: main, .. } if main == pid)
        });
        if !main {
            // Being stopped anyway: it ends as any process does.
            let handled = self.handle_exit(now, pid, status);
            if let Some(agent) = self.agents.get_mut(&name) {
                agent.last_error = Some(reason);
            }
            return handled;
        }
        self.pids.remove(&pid);
        self.cancel_probe(&name);
        let Some(agent) = self.agents.get_mut(&name) else {
            return false;
        };
        agent.last_exit = Some(status);
        agent.last_error = Some(reason.clone());
        agent.phase = Phase::Stopped;
        let serving = agent.serving().is_some();
        let retry_in = agent.spec.failed_retry;
        let never = agent.spec.restart == RestartMode::Never;
        self.push_event(
            &name,
            EventKind::SpawnFailed {
                error: reason.clone(),
            },
        );
        if serving {
            self.hand_back(
                now,
                &name,
                format!("the new release could not start: {reason}"),
            );
        } else if let Some(agent) = self.agents.get_mut(&name) {
            if never {
                agent.phase = Phase::Exited;
            } else {
                agent.phase = Phase::Failed {
                    retry_at: retry_in.map(|retry| now + retry),
                };
                self.push_event(
                    &name,
                    EventKind::Failed {
                        deaths: 0,
                        retry_in,
                    },
                );
            }
        }
        self.actions.push_back(Action::Cleanup { agent: name, pid });
        true
    }

    /// Deadlines that have come: starting becomes running, stop timeouts
    /// escalate to SIGKILL, backoffs and cool-downs end.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Only the agents that are due: with a thousand agents probed every
        // few seconds this runs hundreds of times a second.
        let due: Vec<AgentName> = self
            .agents
            .iter()
            .filter(|(_, agent)| {
                agent
                    .next_deadline()
                    .is_some_and(|deadline| deadline <= now)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(agent) = self.agents.get_mut(&name) else {
                continue;
            };
            if agent.next_deadline().is_none_or(|deadline| deadline > now) {
                continue;
            }
            let mut overdue = Vec::new();
            for outgoing in &mut agent.outgoing {
                if outgoing.draining.flatten().is_some_and(|at| at <= now) {
                    outgoing.draining = Some(None);
                    overdue.push(outgoing.pid);
                }
            }
            for pid in overdue {
                self.actions.push_back(Action::Signal {
                    agent: name.clone(),
                    pid,
                    signal: Signal::Kill,
                });
                self.push_event(&name, EventKind::Killed { pid });
            }
            let Some(agent) = self.agents.get_mut(&name) else {
                continue;
            };
            if agent
                .probe_deadline()
                .is_some_and(|deadline| deadline <= now)
            {
                self.probe_due(now, &name);
            }
            let Some(agent) = self.agents.get_mut(&name) else {
                continue;
            };
            if agent.phase_deadline().is_none_or(|deadline| deadline > now) {
                continue;
            }
            match agent.phase {
                Phase::Starting { pid, since } => {
                    agent.phase = Phase::Running { pid, since };
                    self.push_event(&name, EventKind::Running { pid });
                }
                Phase::Stopping {
                    pid, since, then, ..
                } => {
                    agent.phase = Phase::Stopping {
                        pid,
                        since,
                        kill_at: None,
                        then,
                    };
                    self.actions.push_back(Action::Signal {
                        agent: name.clone(),
                        pid,
                        signal: Signal::Kill,
                    });
                    self.push_event(&name, EventKind::Killed { pid });
                }
                Phase::Backoff { .. } => self.spawn(&name),
                Phase::Failed { .. } => {
                    agent.quick_streak = 0;
                    agent.quick_deaths.clear();
                    self.push_event(&name, EventKind::Retrying);
                    self.spawn(&name);
                }
                _ => {}
            }
        }
    }

    /// A probe is due, or the one in flight has run out of time.
    fn probe_due(&mut self, now: Instant, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let Some(health) = agent.spec.health.clone() else {
            agent.probe = ProbeState::default();
            return;
        };
        match agent.probe.in_flight {
            Some((id, _)) => {
                self.actions.push_back(Action::CancelProbe {
                    agent: name.clone(),
                    id,
                });
                let error = format!(
                    "no answer within {} ({})",
                    format_duration(health.timeout),
                    health.check
                );
                self.handle_probe(now, name, id, Err(error));
            }
            None => {
                self.next_probe_id += 1;
                let id = self.next_probe_id;
                agent.probe.in_flight = Some((id, now + health.timeout));
                agent.probe.next_at = None;
                self.actions.push_back(Action::Probe {
                    agent: name.clone(),
                    id,
                    check: health.check,
                    timeout: health.timeout,
                });
            }
        }
    }

    /// The outcome of [`Action::Probe`] `id` (`Err` says why it failed).
    /// A result for a probe that is no longer the agent's (it timed out, or
    /// the process it checked is gone) is ignored.
    pub fn handle_probe(
        &mut self,
        now: Instant,
        name: &AgentName,
        id: u64,
        result: Result<(), String>,
    ) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        if agent.probe.in_flight.map(|(current, _)| current) != Some(id) {
            return;
        }
        let Some(health) = agent.spec.health.clone() else {
            return;
        };
        agent.probe.in_flight = None;
        agent.probe.next_at = Some(on_grid(self.epoch, now + health.interval));
        if agent.pid().is_none() {
            return;
        }
        match result {
            Ok(()) => {
                agent.probe.failures.pass();
                agent.probe.suppression_reported = false;
                if agent.probe.verdict != Some(true) {
                    agent.probe.verdict = Some(true);
                    self.push_event(name, EventKind::Healthy);
                }
            }
            Err(error) => {
                let starting = agent
                    .probe
                    .started
                    .is_some_and(|started| now < started + health.start_period);
                if starting {
                    return;
                }
                if !agent.probe.failures.fail(health.retries) {
                    return;
                }
                let newly = agent.probe.verdict != Some(false);
                agent.probe.verdict = Some(false);
                let failures = agent.probe.failures.count();
                if newly {
                    self.push_event(
                        name,
                        EventKind::Unhealthy {
                            failures,
                            error,
                            action: health.on_failure,
                        },
                    );
                }
                if health.on_failure == OnFailure::Restart {
                    self.auto_restart(now, name, "failed health checks");
                }
            }
        }
    }

    /// A restart roster decided on by itself: the agent is asked to finish
    /// (its drain signal, then SIGKILL after `drain_timeout`), at most
    /// [`AUTO_RESTARTS_MAX`] times per [`AUTO_RESTART_WINDOW`].
    fn auto_restart(&mut self, now: Instant, name: &AgentName, reason: &str) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        if !matches!(agent.phase, Phase::Starting { .. } | Phase::Running { .. }) {
            return;
        }
        while agent
            .auto_restarts
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= AUTO_RESTART_WINDOW)
        {
            agent.auto_restarts.pop_front();
        }
        if agent.auto_restarts.len() >= AUTO_RESTARTS_MAX {
            if !agent.probe.suppression_reported {
                agent.probe.suppression_reported = true;
                self.push_event(
                    name,
                    EventKind::RestartSuppressed {
                        reason: reason.to_owned(),
                    },
                );
            }
            return;
        }
        agent.auto_restarts.push_back(now);
        let signal = agent.spec.drain_signal.unwrap_or(agent.spec.stop_signal);
        let timeout = agent.spec.drain_timeout;
        self.stop_agent_with(now, name, AfterStop::Restart, signal, timeout);
    }

    /// Cancels the probe in flight, if any: its process is gone.
    fn cancel_probe(&mut self, name: &AgentName) {
        if let Some(agent) = self.agents.get_mut(name) {
            if let Some((id, _)) = agent.probe.in_flight.take() {
                self.actions.push_back(Action::CancelProbe {
                    agent: name.clone(),
                    id,
                });
            }
            agent.probe.next_at = None;
        }
    }

    fn push_event(&mut self, agent: &AgentName, kind: EventKind) {
        self.events.push_back(Event {
            agent: agent.clone(),
            kind,
        });
    }

    /// Asks for a spawn, unless the agent is shipped as releases and has
    /// none: then it waits, `undeployed`, for a cutover (no attempt, no
    /// restart counted).
    fn spawn(&mut self, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        if agent.spec.deploy.is_some() && agent.release.is_none() {
            let newly = agent.phase != Phase::Undeployed;
            agent.phase = Phase::Undeployed;
            agent.cutover_spawn = false;
            if newly {
                self.push_event(name, EventKind::Undeployed);
            }
            return;
        }
        agent.phase = Phase::Spawning;
        self.actions.push_back(Action::Spawn {
            agent: name.clone(),
        });
    }

    fn forget(&mut self, name: &AgentName) {
        self.agents.remove(name);
        self.push_event(name, EventKind::Removed);
        self.actions.push_back(Action::Forget {
            agent: name.clone(),
        });
    }

    /// The restart decision after a process died (or could not start).
    fn after_death(&mut self, now: Instant, name: &AgentName, success: bool, uptime: Duration) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let spec = &agent.spec;
        if uptime < spec.stable_after {
            agent.quick_streak = agent.quick_streak.saturating_add(1);
            agent.quick_deaths.push_back(now);
        } else {
            agent.quick_streak = 0;
            agent.quick_deaths.clear();
        }
        while agent
            .quick_deaths
            .front()
            .is_some_and(|&death| now.saturating_duration_since(death) >= spec.crash_window)
        {
            agent.quick_deaths.pop_front();
        }
        let restart = match spec.restart {
            RestartMode::Always => true,
            RestartMode::OnFailure => !success,
            RestartMode::Never => false,
        };
        if !restart {
            agent.phase = Phase::Exited;
            return;
        }
        let deaths = agent.quick_deaths.len() as u32;
        if spec.crash_loop > 0 && deaths >= spec.crash_loop {
            let retry_in = spec.failed_retry;
            agent.phase = Phase::Failed {
                retry_at: retry_in.map(|retry| now + retry),
            };
            self.push_event(name, EventKind::Failed { deaths, retry_in });
            return;
        }
        let delay = backoff_delay(spec, agent.quick_streak);
        agent.phase = Phase::Backoff { until: now + delay };
        self.push_event(name, EventKind::Restarting { delay });
        if delay.is_zero() {
            self.spawn(name);
        }
    }

    fn start_agent(&mut self, _now: Instant, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        match agent.phase {
            Phase::Stopped
            | Phase::Exited
            | Phase::Failed { .. }
            | Phase::Backoff { .. }
            | Phase::Undeployed => {
                agent.quick_streak = 0;
                agent.quick_deaths.clear();
                self.spawn(name);
            }
            Phase::Stopping {
                pid,
                since,
                kill_at,
                then,
            } => {
                if then == AfterStop::Stay {
                    agent.phase = Phase::Stopping {
                        pid,
                        since,
                        kill_at,
                        then: AfterStop::Restart,
                    };
                }
            }
            Phase::Spawning | Phase::Starting { .. } | Phase::Running { .. } => {}
        }
    }

    fn restart_agent(&mut self, now: Instant, name: &AgentName) {
        let phase = self.agents.get(name).map(|agent| agent.phase);
        match phase {
            Some(Phase::Starting { .. } | Phase::Running { .. }) => {
                self.stop_agent(now, name, AfterStop::Restart)
            }
            Some(_) => self.start_agent(now, name),
            None => {}
        }
    }

    fn stop_agent(&mut self, now: Instant, name: &AgentName, then: AfterStop) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let (signal, timeout) = (agent.spec.stop_signal, agent.spec.stop_timeout);
        self.stop_agent_with(now, name, then, signal, timeout);
    }

    /// Stops with `signal`, then SIGKILL after `timeout`: the stop signal
    /// and stop_timeout for operators, the drain signal and drain_timeout
    /// for restarts roster decided on.
    fn stop_agent_with(
        &mut self,
        now: Instant,
        name: &AgentName,
        then: AfterStop,
        signal: Signal,
        timeout: Duration,
    ) {
        self.cancel_probe(name);
        if then != AfterStop::Restart {
            // Stopping (or removing) an agent stops both of a cutover's
            // processes, and its next start is an operator's.
            self.retire(now, name, signal, timeout);
            if let Some(agent) = self.agents.get_mut(name) {
                agent.cutover_spawn = false;
            }
        }
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        match agent.phase {
            Phase::Starting { pid, since } | Phase::Running { pid, since } => {
                let kill_at = (signal != Signal::Kill).then(|| now + timeout);
                agent.phase = Phase::Stopping {
                    pid,
                    since,
                    kill_at,
                    then,
                };
                self.actions.push_back(Action::Signal {
                    agent: name.clone(),
                    pid,
                    signal,
                });
                self.push_event(name, EventKind::Stopping { pid, signal });
            }
            Phase::Stopping {
                pid,
                since,
                kill_at,
                then: previous,
            } => {
                // A removal wins over anything; otherwise the latest wish wins.
                let then = if previous == AfterStop::Remove {
                    AfterStop::Remove
                } else {
                    then
                };
                agent.phase = Phase::Stopping {
                    pid,
                    since,
                    kill_at,
                    then,
                };
            }
            Phase::Backoff { .. }
            | Phase::Failed { .. }
            | Phase::Exited
            | Phase::Stopped
            | Phase::Spawning
            | Phase::Undeployed => {
                let was_stopped = agent.phase == Phase::Stopped;
                agent.phase = Phase::Stopped;
                match then {
                    AfterStop::Remove if !agent.outgoing.is_empty() => {
                        agent.forget_when_alone = true;
                    }
                    AfterStop::Remove => self.forget(name),
                    AfterStop::Restart => self.start_agent(now, name),
                    AfterStop::Stay if !was_stopped => {
                        self.push_event(name, EventKind::Stopped { status: None })
                    }
                    AfterStop::Stay => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
