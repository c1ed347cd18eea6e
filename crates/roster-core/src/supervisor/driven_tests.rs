//! A supervisor driven as the runtime drives it, on a fake clock, for the
//! tests of one agent `a`: spawns succeed with fresh pids (101, 102, ...),
//! and the probes, cancellations, signals and events it asks for are kept.

use std::path::Path;

use super::*;
use crate::config::parse;

pub(super) struct Driven {
    pub(super) sup: Supervisor,
    pub(super) t0: Instant,
    next_pid: u32,
    /// Probes out: (id, check).
    pub(super) probes: Vec<(u64, Check)>,
    pub(super) cancelled: Vec<u64>,
    /// (pid, signal)
    pub(super) signals: Vec<(u32, Signal)>,
    /// (kind, detail)
    pub(super) events: Vec<(String, String)>,
}

impl Driven {
    /// The config `text` (relative paths against /tmp) applied at `t0`.
    pub(super) fn new(text: &str) -> Self {
        let config = parse("test.toml", text, Path::new("/tmp")).expect("valid config");
        let mut driven = Self {
            sup: Supervisor::new(),
            t0: Instant::now(),
            next_pid: 100,
            probes: Vec::new(),
            cancelled: Vec::new(),
            signals: Vec::new(),
            events: Vec::new(),
        };
        let t0 = driven.t0;
        driven.sup.handle_apply(t0, &config, false);
        driven.drive(t0);
        driven
    }

    pub(super) fn at(&self, seconds: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(seconds)
    }

    /// Performs what the supervisor asked for at `now`, as the runtime does.
    pub(super) fn drive(&mut self, now: Instant) {
        while let Some(action) = self.sup.poll_action() {
            match action {
                Action::Spawn { agent } => {
                    self.next_pid += 1;
                    self.sup.handle_spawned(now, &agent, Ok(self.next_pid));
                }
                Action::Probe { id, check, .. } => self.probes.push((id, check)),
                Action::CancelProbe { id, .. } => self.cancelled.push(id),
                Action::Signal { pid, signal, .. } => self.signals.push((pid, signal)),
                Action::Cleanup { .. } | Action::Forget { .. } => {}
            }
        }
        while let Some(event) = self.sup.poll_event() {
            self.events
                .push((event.kind.name().to_owned(), event.kind.detail()));
        }
    }

    /// The deadlines due at `seconds`.
    pub(super) fn tick(&mut self, seconds: f64) {
        let now = self.at(seconds);
        self.sup.handle_timeout(now);
        self.drive(now);
    }

    /// Runs the clock to `seconds` through every deadline on the way.
    pub(super) fn run_until(&mut self, seconds: f64) {
        while let Some(deadline) = self.sup.poll_timeout() {
            if deadline > self.at(seconds) {
                break;
            }
            self.sup.handle_timeout(deadline);
            self.drive(deadline);
        }
    }

    /// The kinds of the events so far, oldest first.
    pub(super) fn kinds(&self) -> Vec<&str> {
        self.events.iter().map(|(kind, _)| kind.as_str()).collect()
    }

    /// Agent `a` as status shows it at `seconds`.
    pub(super) fn view(&self, seconds: f64) -> AgentView {
        self.sup.views(self.at(seconds))[0].clone()
    }

    /// The main process `a` has, if any.
    pub(super) fn pid(&self) -> Option<u32> {
        self.view(0.0).pid
    }
}

/// Agent `a`'s name.
pub(super) fn a() -> AgentName {
    AgentName::new("a").expect("valid name")
}
