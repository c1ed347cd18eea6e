//! `watch_paths` restarts on a fake clock: a running agent drains and
//! restarts with the reason journaled, not rate-limited like restarts for
//! ill health; one in backoff starts at once; a stopped one stays stopped;
//! a changed `watch_paths` alone restarts nothing.

use std::path::Path;

use super::*;
use crate::config::parse;

fn config(extra: &str) -> Config {
    let text = format!(
        "[agents.a]\ncommand = \"sleep 100\"\nready_after = \"0s\"\n\
         drain_signal = \"SIGUSR1\"\ndrain_timeout = \"5s\"\n{extra}\n"
    );
    parse("watch.toml", &text, Path::new("/tmp")).expect("valid config")
}

fn name() -> AgentName {
    AgentName::new("a").expect("valid name")
}

struct Watched {
    sup: Supervisor,
    t0: Instant,
    next_pid: u32,
    signals: Vec<(u32, Signal)>,
    /// (kind, detail)
    events: Vec<(String, String)>,
}

impl Watched {
    fn new(extra: &str) -> Self {
        let mut watched = Self {
            sup: Supervisor::new(),
            t0: Instant::now(),
            next_pid: 100,
            signals: Vec::new(),
            events: Vec::new(),
        };
        let t0 = watched.t0;
        watched.sup.handle_apply(t0, &config(extra), false);
        watched.drive(t0);
        watched
    }

    fn at(&self, seconds: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(seconds)
    }

    fn drive(&mut self, now: Instant) {
        while let Some(action) = self.sup.poll_action() {
            match action {
                Action::Spawn { agent } => {
                    self.next_pid += 1;
                    self.sup.handle_spawned(now, &agent, Ok(self.next_pid));
                }
                Action::Signal { pid, signal, .. } => self.signals.push((pid, signal)),
                _ => {}
            }
        }
        while let Some(event) = self.sup.poll_event() {
            self.events
                .push((event.kind.name().to_owned(), event.kind.detail()));
        }
    }

    fn pid(&self) -> Option<u32> {
        self.sup.views(self.t0)[0].pid
    }

    fn files_changed(&mut self, seconds: f64) {
        let now = self.at(seconds);
        self.sup
            .handle_files_changed(now, &name(), "watch_paths: src/main.py changed");
        self.drive(now);
    }

    /// The main process ends (on the drain signal) at `seconds`.
    fn exit(&mut self, seconds: f64) {
        let pid = self.pid().expect("a pid");
        let now = self.at(seconds);
        assert!(self.sup.handle_exit(now, pid, ExitStatus::Signal(10)));
        self.drive(now);
    }
}

#[test]
fn a_change_drains_and_restarts_a_running_agent_with_its_reason() {
    let mut w = Watched::new("watch_paths = [\"src\"]");
    assert_eq!(w.pid(), Some(101));
    w.files_changed(2.0);
    assert_eq!(w.signals, [(101, Signal::Usr1)], "the drain signal");
    assert!(w.events.contains(&(
        "files_changed".into(),
        "restarting: watch_paths: src/main.py changed".into()
    )));
    // SIGKILL after drain_timeout, not stop_timeout.
    assert_eq!(w.sup.poll_timeout(), Some(w.at(7.0)));
    w.exit(2.5);
    assert_eq!(w.pid(), Some(102));
}

#[test]
fn changes_are_not_limited_like_restarts_for_ill_health() {
    let mut w = Watched::new("watch_paths = [\"src\"]");
    for round in 0..(AUTO_RESTARTS_MAX + 3) {
        let at = 2.0 * (round as f64 + 1.0);
        w.files_changed(at);
        w.exit(at + 0.1);
    }
    assert_eq!(w.pid(), Some(101 + AUTO_RESTARTS_MAX as u32 + 3));
    assert!(!w
        .events
        .iter()
        .any(|(kind, _)| kind == "restart_suppressed"));
}

#[test]
fn a_change_starts_an_agent_waiting_out_a_backoff_at_once() {
    let mut w = Watched::new("watch_paths = [\"src\"]\nrestart_delay = \"30s\"");
    w.exit(0.5);
    assert_eq!(w.pid(), None, "waiting out restart_delay");
    w.files_changed(1.0);
    assert_eq!(w.pid(), Some(102));
}

#[test]
fn a_stopped_agent_stays_stopped() {
    let mut w = Watched::new("watch_paths = [\"src\"]");
    let now = w.at(1.0);
    w.sup.handle_stop(now, &name());
    w.drive(now);
    w.exit(1.1);
    let events = w.events.len();
    w.files_changed(2.0);
    assert_eq!(w.pid(), None);
    assert_eq!(w.events.len(), events, "{:?}", &w.events[events..]);
}

#[test]
fn a_new_watch_paths_alone_restarts_nothing() {
    let mut w = Watched::new("watch_paths = [\"src\"]");
    let summary = w.sup.handle_apply(
        w.at(1.0),
        &config("watch_paths = [\"lib\", \"*.py\"]"),
        false,
    );
    assert_eq!(summary.unchanged, ["a"], "{summary:?}");
    w.drive(w.at(1.0));
    assert!(w.signals.is_empty());
    assert_eq!(
        w.sup.spec(&name()).map(|spec| spec.watch_paths.clone()),
        Some(vec!["lib".to_owned(), "*.py".to_owned()])
    );
}
