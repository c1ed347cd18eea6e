//! One agent's state as the supervisor keeps it: its [`Phase`], counters,
//! the health check's [`ProbeState`], the processes of earlier releases
//! ([`Outgoing`]), and the deadlines that follow from them. Reads and
//! small updates of one agent only; the transitions between phases are the
//! supervisor's.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::PROBE_GRID;
use crate::api::ExitStatus;
use crate::config::AgentSpec;
use crate::health::Failures;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AfterStop {
    Stay,
    Restart,
    Remove,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) struct Agent {
    pub(super) spec: AgentSpec,
    pub(super) phase: Phase,
    /// Start attempts, successful or not.
    pub(super) attempts: u64,
    /// Start attempts after the first that were not a cutover's: what
    /// `status` shows as restarts. Deploys and rollbacks are no restarts.
    pub(super) restarts: u64,
    /// The next spawn is a cutover's (a deploy or a rollback): it is not
    /// counted in `restarts`.
    pub(super) cutover_spawn: bool,
    /// Why the latest start attempt failed; cleared by a successful one.
    pub(super) last_error: Option<String>,
    pub(super) quick_streak: u32,
    pub(super) quick_deaths: VecDeque<Instant>,
    pub(super) last_exit: Option<ExitStatus>,
    /// The health check's state for the current process.
    pub(super) probe: ProbeState,
    /// When roster restarted it by itself, within the rate-limit window.
    pub(super) auto_restarts: VecDeque<Instant>,
    /// The release the main process runs (or the next spawn will run), for
    /// agents shipped as releases; `None`: whatever `current` names.
    pub(super) release: Option<String>,
    /// Processes of earlier releases: the one a cutover is replacing
    /// (serving, at most one) and those still draining.
    pub(super) outgoing: Vec<Outgoing>,
    /// Removed from the config; forgotten once the outgoing process is gone.
    pub(super) forget_when_alone: bool,
}

/// During a blue-green cutover, the process being replaced: serving until
/// the new one is ready, then draining.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Outgoing {
    pub(super) pid: u32,
    pub(super) since: Instant,
    pub(super) release: Option<String>,
    /// `None` while it serves; once asked to finish, when SIGKILL follows
    /// (`Some(None)`: sent already).
    pub(super) draining: Option<Option<Instant>>,
}

impl Agent {
    pub(super) fn new(spec: AgentSpec) -> Self {
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
    pub(super) fn adopt_release(&mut self, live: Option<&String>) {
        if self.spec.deploy.is_some() && self.release.is_none() {
            self.release = live.cloned();
        }
    }

    /// A start attempt: a restart unless it is the first or a cutover's.
    pub(super) fn count_attempt(&mut self) {
        if self.attempts > 0 && !self.cutover_spawn {
            self.restarts += 1;
        }
        self.attempts += 1;
        self.cutover_spawn = false;
    }

    pub(super) fn pid(&self) -> Option<u32> {
        match self.phase {
            Phase::Starting { pid, .. }
            | Phase::Running { pid, .. }
            | Phase::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    pub(super) fn phase_deadline(&self) -> Option<Instant> {
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
    pub(super) fn probe_deadline(&self) -> Option<Instant> {
        if !matches!(self.phase, Phase::Starting { .. } | Phase::Running { .. }) {
            return None;
        }
        match self.probe.in_flight {
            Some((_, deadline)) => Some(deadline),
            None => self.probe.next_at,
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        [
            self.phase_deadline(),
            self.probe_deadline(),
            self.outgoing_kill_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn outgoing_kill_at(&self) -> Option<Instant> {
        self.outgoing
            .iter()
            .filter_map(|out| out.draining.flatten())
            .min()
    }

    /// The outgoing process that still serves (a cutover under way).
    pub(super) fn serving(&self) -> Option<&Outgoing> {
        self.outgoing.iter().find(|out| out.draining.is_none())
    }
}

/// The health check of the agent's current process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ProbeState {
    pub(super) verdict: Option<bool>,
    pub(super) failures: Failures,
    /// When the process started: failures before `start_period` are ignored.
    pub(super) started: Option<Instant>,
    pub(super) next_at: Option<Instant>,
    /// The probe out: its id and when it times out.
    pub(super) in_flight: Option<(u64, Instant)>,
    /// A suppressed restart was journaled for this unhealthy spell.
    pub(super) suppression_reported: bool,
}

/// `at` rounded up to the probe grid (see [`PROBE_GRID`]).
pub(super) fn on_grid(epoch: Option<Instant>, at: Instant) -> Instant {
    let Some(epoch) = epoch else {
        return at;
    };
    let since = at.saturating_duration_since(epoch).as_nanos();
    let grid = PROBE_GRID.as_nanos();
    let steps = since.div_ceil(grid);
    epoch + Duration::from_nanos((steps * grid).min(u64::MAX as u128) as u64)
}
