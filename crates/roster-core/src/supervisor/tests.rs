//! The state machine on a fake clock: take `t0` once, feed `t0 + Duration`.

use super::*;
use crate::config::parse;
use crate::deploy::Strategy;
use std::path::Path;

fn config(extra: &str) -> Config {
    let text = format!("[agents.a]\ncommand = \"sleep 100\"\n{extra}\n");
    parse("test.toml", &text, Path::new("/tmp")).expect("valid config")
}

fn name() -> AgentName {
    AgentName::new("a").expect("valid name")
}

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// A supervisor plus the pids it has handed out, driven like the runtime does.
struct Harness {
    sup: Supervisor,
    t0: Instant,
    next_pid: u32,
    events: Vec<String>,
}

impl Harness {
    fn new(extra: &str) -> Self {
        let mut harness = Self {
            sup: Supervisor::new(),
            t0: Instant::now(),
            next_pid: 100,
            events: Vec::new(),
        };
        let t0 = harness.t0;
        harness.sup.handle_apply(t0, &config(extra), false);
        harness.drive(t0);
        harness
    }

    fn at(&self, seconds: f64) -> Instant {
        self.t0 + secs(seconds)
    }

    /// Performs actions like the runtime: spawns succeed with fresh pids.
    fn drive(&mut self, now: Instant) -> Vec<Action> {
        let mut performed = Vec::new();
        while let Some(action) = self.sup.poll_action() {
            if let Action::Spawn { agent } = &action {
                self.next_pid += 1;
                self.sup.handle_spawned(now, agent, Ok(self.next_pid));
            }
            performed.push(action);
        }
        while let Some(event) = self.sup.poll_event() {
            self.events.push(event.kind.name().to_owned());
        }
        performed
    }

    fn pid(&self) -> Option<u32> {
        self.sup.views(self.t0)[0].pid
    }

    fn state(&self, seconds: f64) -> AgentState {
        self.sup.views(self.at(seconds))[0].state
    }

    fn kill(&mut self, seconds: f64) -> Vec<Action> {
        let pid = self.pid().expect("a running pid");
        let now = self.at(seconds);
        assert!(self.sup.handle_exit(now, pid, ExitStatus::Signal(9)));
        self.drive(now)
    }

    fn tick(&mut self, seconds: f64) -> Vec<Action> {
        let now = self.at(seconds);
        self.sup.handle_timeout(now);
        self.drive(now)
    }
}

#[test]
fn apply_starts_and_ready_after_makes_it_running() {
    let mut h = Harness::new("");
    assert_eq!(h.pid(), Some(101));
    assert_eq!(h.state(0.5), AgentState::Starting);
    assert_eq!(h.sup.poll_timeout(), Some(h.at(1.0)));
    h.tick(1.0);
    assert_eq!(h.state(1.0), AgentState::Running);
    assert_eq!(h.events, ["added", "started", "running"]);
}

#[test]
fn first_death_restarts_at_once_with_zero_delay() {
    let mut h = Harness::new("");
    let actions = h.kill(0.2);
    assert!(
        matches!(actions.first(), Some(Action::Spawn { .. })),
        "the spawn comes before the cleanup: {actions:?}"
    );
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Cleanup { pid: 101, .. })));
    assert_eq!(h.pid(), Some(102));
    assert_eq!(h.sup.views(h.t0)[0].restarts, 1);
}

#[test]
fn quick_deaths_back_off_exponentially_up_to_max() {
    let mut h = Harness::new("backoff_max = \"1s\"\ncrash_loop = 0");
    let mut now = 0.0;
    let mut delays = Vec::new();
    for _ in 0..6 {
        now += 0.05;
        h.kill(now);
        match h.sup.poll_timeout() {
            Some(deadline) if h.state(now) == AgentState::Backoff => {
                let delay = deadline - h.at(now);
                delays.push(delay.as_millis());
                now += delay.as_secs_f64();
                h.tick(now);
            }
            _ => delays.push(0),
        }
    }
    assert_eq!(delays, [0, 100, 200, 400, 800, 1000]);
}

#[test]
fn a_stable_run_resets_the_backoff() {
    let mut h = Harness::new("stable_after = \"10s\"");
    h.kill(0.1);
    h.kill(0.2);
    assert_eq!(h.state(0.2), AgentState::Backoff);
    h.tick(0.3);
    assert_eq!(h.state(0.3), AgentState::Starting);
    // Runs 20 s: long enough to count as stable.
    h.tick(1.3);
    h.kill(20.3);
    assert_eq!(h.state(20.3), AgentState::Starting, "restarted at once");
}

#[test]
fn crash_loop_ends_in_failed_then_retries_after_cool_down() {
    let mut h = Harness::new("failed_retry = \"5m\"");
    let mut now = 0.0;
    for _ in 0..5 {
        now += 0.01;
        h.kill(now);
        if let Some(deadline) = h.sup.poll_timeout() {
            if h.state(now) == AgentState::Backoff {
                now = (deadline - h.t0).as_secs_f64();
                h.tick(now);
            }
        }
    }
    assert_eq!(h.state(now), AgentState::Failed);
    assert!(h.events.contains(&"failed".to_owned()));
    assert_eq!(h.pid(), None);
    let retry = h.sup.poll_timeout().expect("a retry is scheduled");
    assert_eq!(retry, h.at(now) + secs(300.0));
    h.tick(now + 299.0);
    assert_eq!(h.state(now + 299.0), AgentState::Failed);
    h.tick(now + 300.0);
    assert_eq!(h.state(now + 300.0), AgentState::Starting);
    assert!(h.events.contains(&"retrying".to_owned()));
}

#[test]
fn failed_with_never_waits_for_an_operator() {
    let mut h = Harness::new("failed_retry = \"never\"\ncrash_loop = 1");
    h.kill(0.1);
    assert_eq!(h.state(0.1), AgentState::Failed);
    assert_eq!(h.sup.poll_timeout(), None, "no busy loop, no retry");
    let now = h.at(0.2);
    h.sup.handle_start(now, &name());
    h.drive(now);
    assert_eq!(h.state(0.2), AgentState::Starting);
}

#[test]
fn restart_policies() {
    let cases = [
        ("always", ExitStatus::Code(0), AgentState::Starting),
        ("always", ExitStatus::Code(3), AgentState::Starting),
        ("on-failure", ExitStatus::Code(0), AgentState::Exited),
        ("on-failure", ExitStatus::Code(3), AgentState::Starting),
        ("on-failure", ExitStatus::Signal(9), AgentState::Starting),
        ("never", ExitStatus::Code(3), AgentState::Exited),
    ];
    for (policy, status, expected) in cases {
        let mut h = Harness::new(&format!("restart = \"{policy}\""));
        let pid = h.pid().expect("pid");
        h.sup.handle_exit(h.at(0.5), pid, status);
        h.drive(h.at(0.5));
        assert_eq!(h.state(0.5), expected, "{policy} after {status}");
    }
}

#[test]
fn stop_signals_then_kills_after_timeout() {
    let mut h = Harness::new("stop_timeout = \"2s\"\nstop_signal = \"SIGINT\"");
    let now = h.at(1.0);
    h.sup.handle_stop(now, &name());
    let actions = h.drive(now);
    assert_eq!(
        actions,
        [Action::Signal {
            agent: name(),
            pid: 101,
            signal: Signal::Int
        }]
    );
    assert_eq!(h.state(1.0), AgentState::Stopping);
    assert_eq!(h.sup.poll_timeout(), Some(h.at(3.0)));
    let actions = h.tick(3.0);
    assert_eq!(
        actions,
        [Action::Signal {
            agent: name(),
            pid: 101,
            signal: Signal::Kill
        }]
    );
    assert_eq!(h.sup.poll_timeout(), None);
    h.sup.handle_exit(h.at(3.1), 101, ExitStatus::Signal(9));
    h.drive(h.at(3.1));
    assert_eq!(h.state(3.1), AgentState::Stopped);
    assert!(h.sup.is_quiet());
    assert_eq!(
        h.events[h.events.len() - 3..],
        ["stopping", "killed", "stopped"]
    );
}

#[test]
fn restart_command_stops_then_starts() {
    let mut h = Harness::new("");
    let now = h.at(1.0);
    h.sup.handle_restart(now, &name());
    h.drive(now);
    assert_eq!(h.state(1.0), AgentState::Stopping);
    h.sup.handle_exit(h.at(1.1), 101, ExitStatus::Signal(15));
    h.drive(h.at(1.1));
    assert_eq!(h.pid(), Some(102));
}

#[test]
fn apply_converges_added_changed_removed_unchanged() {
    let mut sup = Supervisor::new();
    let t0 = Instant::now();
    let first = parse(
        "t.toml",
        "[agents.keep]\ncommand = \"sleep 1\"\n[agents.change]\ncommand = \"sleep 1\"\n[agents.drop]\ncommand = \"sleep 1\"\n",
        Path::new("/"),
    )
    .expect("valid");
    sup.handle_apply(t0, &first, false);
    let mut pid = 0;
    while let Some(action) = sup.poll_action() {
        if let Action::Spawn { agent } = action {
            pid += 1;
            sup.handle_spawned(t0, &agent, Ok(pid));
        }
    }
    let second = parse(
        "t.toml",
        "[agents.keep]\ncommand = \"sleep 1\"\n[agents.change]\ncommand = \"sleep 2\"\n[agents.new]\ncommand = \"sleep 1\"\n",
        Path::new("/"),
    )
    .expect("valid");
    let summary = sup.handle_apply(t0, &second, false);
    assert_eq!(summary.added, ["new"]);
    assert_eq!(summary.changed, ["change"]);
    assert_eq!(summary.removed, ["drop"]);
    assert_eq!(summary.unchanged, ["keep"]);
    let actions: Vec<Action> = std::iter::from_fn(|| sup.poll_action()).collect();
    let signalled: Vec<&str> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Signal { agent, .. } => Some(agent.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(signalled, ["drop", "change"], "keep is untouched");
    assert!(actions.contains(&Action::Spawn {
        agent: AgentName::new("new").expect("name")
    }));
}

#[test]
fn a_change_of_web_alone_restarts_nothing() {
    let mut h = Harness::new("");
    h.tick(1.0);
    let pid = h.pid();
    let with_web = "stop_timeout = \"10s\"\n[web]\nlisten = \"127.0.0.1:9400\"";
    let summary = h.sup.handle_apply(h.at(2.0), &config(with_web), false);
    assert_eq!(summary.unchanged, ["a"], "{summary:?}");
    assert!(h.drive(h.at(2.0)).is_empty(), "no signal, no spawn");
    let other = "[web]\nlisten = \"127.0.0.1:9401\"\nsession_ttl = \"1h\"";
    let summary = h.sup.handle_apply(h.at(3.0), &config(other), false);
    assert_eq!(summary.unchanged, ["a"], "{summary:?}");
    assert!(h.drive(h.at(3.0)).is_empty());
    assert_eq!(h.pid(), pid);
}

#[test]
fn a_new_tenant_alone_restarts_nothing_and_shows_at_once() {
    let mut h = Harness::new("tenant = \"c01\"");
    h.tick(1.0);
    let pid = h.pid();
    assert_eq!(h.sup.views(h.at(1.0))[0].tenant.as_deref(), Some("c01"));
    let summary = h
        .sup
        .handle_apply(h.at(2.0), &config("tenant = \"c02\""), false);
    assert_eq!(summary.unchanged, ["a"], "{summary:?}");
    assert!(h.drive(h.at(2.0)).is_empty(), "no signal, no spawn");
    assert_eq!(h.pid(), pid);
    assert_eq!(h.sup.views(h.at(2.0))[0].tenant.as_deref(), Some("c02"));
    // With another change beside it, it is a change.
    let summary = h.sup.handle_apply(
        h.at(3.0),
        &config("tenant = \"c03\"\nstop_timeout = \"3s\""),
        false,
    );
    assert_eq!(summary.changed, ["a"], "{summary:?}");
}

#[test]
fn a_spawn_failure_counts_as_a_quick_death() {
    let mut sup = Supervisor::new();
    let t0 = Instant::now();
    sup.handle_apply(
        t0,
        &config("crash_loop = 2\nfailed_retry = \"never\""),
        false,
    );
    let mut now = t0;
    for _ in 0..10 {
        while let Some(action) = sup.poll_action() {
            if let Action::Spawn { agent } = action {
                sup.handle_spawned(now, &agent, Err("No such file or directory".into()));
            }
        }
        match sup.poll_timeout() {
            Some(deadline) => {
                now = deadline;
                sup.handle_timeout(now);
            }
            None => break,
        }
    }
    assert_eq!(sup.views(now)[0].state, AgentState::Failed);
    let kinds: Vec<&str> = std::iter::from_fn(|| sup.poll_event())
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(
        kinds,
        [
            "added",
            "spawn_failed",
            "restarting",
            "spawn_failed",
            "failed"
        ]
    );
    let view = &sup.views(now)[0];
    assert_eq!(
        view.last_error.as_deref(),
        Some("No such file or directory")
    );
    assert_eq!(view.restarts, 1, "the failed second attempt is a restart");
    // A successful start clears the error.
    sup.handle_start(now, &name());
    while let Some(action) = sup.poll_action() {
        if let Action::Spawn { agent } = action {
            sup.handle_spawned(now, &agent, Ok(4242));
        }
    }
    let view = &sup.views(now)[0];
    assert_eq!(view.last_error, None);
    assert_eq!(view.pid, Some(4242));
}

#[test]
fn backoff_delay_table() {
    let spec = config("restart_delay = \"0s\"\nbackoff_max = \"30s\"").agents[&name()].clone();
    let delays: Vec<u128> = (1..=12)
        .map(|streak| backoff_delay(&spec, streak).as_millis())
        .collect();
    assert_eq!(
        delays,
        [0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
    );
    let slow = config("restart_delay = \"2s\"\nbackoff_max = \"5s\"").agents[&name()].clone();
    let delays: Vec<u128> = (1..=4)
        .map(|streak| backoff_delay(&slow, streak).as_millis())
        .collect();
    assert_eq!(delays, [2000, 2000, 4000, 5000]);
}

// Cutovers (deploys): two processes of one agent for a while.

fn signals(actions: &[Action]) -> Vec<(u32, Signal)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Signal { pid, signal, .. } => Some((*pid, *signal)),
            _ => None,
        })
        .collect()
}

fn exit(h: &mut Harness, seconds: f64, pid: u32) -> Vec<Action> {
    let now = h.at(seconds);
    assert!(h.sup.handle_exit(now, pid, ExitStatus::Code(0)));
    h.drive(now)
}

#[test]
fn blue_green_starts_beside_the_live_process_and_retires_it_when_asked() {
    let mut h = Harness::new("drain_timeout = \"5s\"");
    h.tick(1.0);
    let switch = h
        .sup
        .handle_switch(h.at(2.0), &name(), "r2", Strategy::BlueGreen);
    assert_eq!(switch, Ok(Switch::Beside { pid: 101 }));
    let actions = h.drive(h.at(2.0));
    assert!(signals(&actions).is_empty(), "the old one keeps serving");
    let view = &h.sup.views(h.at(2.0))[0];
    assert_eq!((view.pid, view.outgoing_pid), (Some(102), Some(101)));
    assert_eq!(view.release.as_deref(), Some("r2"));
    assert_eq!(h.sup.main_pids().len(), 2, "both count as the agent's own");
    // A second cutover while one runs is refused.
    assert!(h
        .sup
        .handle_switch(h.at(2.1), &name(), "r3", Strategy::BlueGreen)
        .is_err());
    assert!(h.sup.handle_retire(h.at(3.0), &name()));
    let actions = h.drive(h.at(3.0));
    assert_eq!(signals(&actions), [(101, Signal::Term)]);
    let actions = exit(&mut h, 3.5, 101);
    assert!(!actions.iter().any(|a| matches!(a, Action::Spawn { .. })));
    let view = &h.sup.views(h.at(3.5))[0];
    assert_eq!((view.pid, view.outgoing_pid), (Some(102), None));
    assert!(h.events.ends_with(&["retiring".into(), "retired".into()]));
}

#[test]
fn a_new_process_that_dies_during_the_cutover_hands_back_to_the_old_one() {
    let mut h = Harness::new("");
    h.tick(1.0);
    h.sup
        .handle_switch(h.at(2.0), &name(), "r2", Strategy::BlueGreen)
        .expect("switch");
    h.sup.note_release(&name(), "r2");
    h.drive(h.at(2.0));
    let actions = exit(&mut h, 2.3, 102);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Spawn { .. })),
        "no restart of the broken release: {actions:?}"
    );
    let view = &h.sup.views(h.at(2.3))[0];
    assert_eq!((view.pid, view.outgoing_pid), (Some(101), None));
    assert_eq!(view.state, AgentState::Running);
    assert_eq!(view.release, None, "back to the release it ran");
    assert!(h.events.contains(&"handed_back".to_owned()));
}

#[test]
fn handback_drains_the_new_process_and_its_drain_timeout_ends_in_sigkill() {
    let mut h = Harness::new("drain_timeout = \"2s\"");
    h.tick(1.0);
    h.sup
        .handle_switch(h.at(2.0), &name(), "r2", Strategy::BlueGreen)
        .expect("switch");
    h.drive(h.at(2.0));
    assert!(h.sup.handle_handback(h.at(3.0), &name(), "not ready"));
    let actions = h.drive(h.at(3.0));
    assert_eq!(signals(&actions), [(102, Signal::Term)]);
    let view = &h.sup.views(h.at(3.0))[0];
    assert_eq!((view.pid, view.outgoing_pid), (Some(101), None));
    assert_eq!(h.sup.outgoing_pid(&name()), Some(102), "draining");
    assert_eq!(h.sup.poll_timeout(), Some(h.at(5.0)));
    let actions = h.tick(5.0);
    assert_eq!(signals(&actions), [(102, Signal::Kill)]);
    exit(&mut h, 5.1, 102);
    let view = &h.sup.views(h.at(5.1))[0];
    assert_eq!((view.pid, view.outgoing_pid), (Some(101), None));
}

#[test]
fn stopping_or_removing_during_a_cutover_stops_both_processes() {
    let mut h = Harness::new("");
    h.tick(1.0);
    h.sup
        .handle_switch(h.at(2.0), &name(), "r2", Strategy::BlueGreen)
        .expect("switch");
    h.drive(h.at(2.0));
    let empty = parse("empty.toml", "", Path::new("/tmp")).expect("valid");
    h.sup.handle_apply(h.at(2.5), &empty, false);
    let mut sent = signals(&h.drive(h.at(2.5)));
    sent.sort_by_key(|(pid, _)| *pid);
    assert_eq!(sent, [(101, Signal::Term), (102, Signal::Term)]);
    exit(&mut h, 2.6, 102);
    assert!(
        h.sup.contains(&name()),
        "kept until the old one is gone too"
    );
    assert!(!h.sup.is_quiet());
    let actions = exit(&mut h, 2.7, 101);
    assert!(actions.iter().any(|a| matches!(a, Action::Forget { .. })));
    assert!(!h.sup.contains(&name()));
    assert!(h.sup.pids.is_empty());
}

#[test]
fn restart_strategy_stops_then_starts_the_new_release() {
    let mut h = Harness::new("");
    h.tick(1.0);
    let switch = h
        .sup
        .handle_switch(h.at(2.0), &name(), "r2", Strategy::Restart);
    assert_eq!(switch, Ok(Switch::Restarting));
    assert_eq!(signals(&h.drive(h.at(2.0))), [(101, Signal::Term)]);
    let actions = exit(&mut h, 2.2, 101);
    assert!(actions.iter().any(|a| matches!(a, Action::Spawn { .. })));
    assert_eq!(h.sup.release(&name()), Some("r2"));
    assert_eq!(h.pid(), Some(102));
}

#[test]
fn a_stopped_agent_only_records_the_release() {
    let mut h = Harness::new("");
    h.sup.handle_stop(h.at(0.5), &name());
    h.drive(h.at(0.5));
    exit(&mut h, 0.6, 101);
    let switch = h
        .sup
        .handle_switch(h.at(1.0), &name(), "r2", Strategy::BlueGreen);
    assert_eq!(switch, Ok(Switch::NotRunning));
    assert!(h.drive(h.at(1.0)).is_empty());
    assert_eq!(h.sup.release(&name()), Some("r2"));
}

#[test]
fn a_new_cutover_may_begin_while_the_last_one_drains() {
    let mut h = Harness::new("drain_timeout = \"30s\"");
    h.tick(1.0);
    h.sup
        .handle_switch(h.at(2.0), &name(), "r2", Strategy::BlueGreen)
        .expect("switch");
    h.drive(h.at(2.0));
    assert!(h.sup.handle_retire(h.at(2.5), &name()));
    h.drive(h.at(2.5));
    // 101 still drains; a rollback starts at once.
    let switch = h
        .sup
        .handle_switch(h.at(2.6), &name(), "r1", Strategy::BlueGreen);
    assert_eq!(switch, Ok(Switch::Beside { pid: 102 }));
    h.drive(h.at(2.6));
    assert_eq!(h.sup.main_pids().len(), 3, "new, serving and draining");
    assert!(h.sup.handle_retire(h.at(3.0), &name()));
    let actions = h.drive(h.at(3.0));
    assert_eq!(signals(&actions), [(102, Signal::Term)]);
    exit(&mut h, 3.1, 101);
    exit(&mut h, 3.2, 102);
    let view = &h.sup.views(h.at(3.2))[0];
    assert_eq!((view.pid, view.outgoing_pid), (Some(103), None));
    assert_eq!(h.sup.release(&name()), Some("r1"));
    assert!(h.sup.outgoing_pid(&name()).is_none());
}

// Issue #14: agents shipped as releases before their first deploy, and
// cutovers that are no restarts.

const DEPLOYED: &str = "[agents.a.deploy]";

fn spawns(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|action| matches!(action, Action::Spawn { .. }))
        .count()
}

#[test]
fn an_agent_without_a_release_waits_undeployed_and_counts_no_restart() {
    let mut h = Harness::new(DEPLOYED);
    assert_eq!(h.pid(), None, "no spawn without a release");
    assert_eq!(h.state(0.0), AgentState::Undeployed);
    assert_eq!(h.events, ["added", "undeployed"]);
    assert_eq!(h.sup.poll_timeout(), None, "nothing to wake up for");
    assert!(h.sup.is_quiet());
    // Time passes, the operator starts it, `up` applies again: it waits.
    assert!(h.tick(600.0).is_empty());
    h.sup.handle_start(h.at(601.0), &name());
    assert_eq!(spawns(&h.drive(h.at(601.0))), 0);
    h.sup.handle_apply(h.at(602.0), &config(DEPLOYED), true);
    assert_eq!(spawns(&h.drive(h.at(602.0))), 0);
    let view = &h.sup.views(h.at(602.0))[0];
    assert_eq!((view.state, view.restarts), (AgentState::Undeployed, 0));
    assert_eq!(
        h.events.iter().filter(|kind| *kind == "undeployed").count(),
        1,
        "journaled once: {:?}",
        h.events
    );

    // The first deploy starts it.
    let switch = h
        .sup
        .handle_switch(h.at(603.0), &name(), "r1", Strategy::BlueGreen);
    assert_eq!(switch, Ok(Switch::Restarting));
    assert_eq!(spawns(&h.drive(h.at(603.0))), 1);
    let view = &h.sup.views(h.at(603.0))[0];
    assert_eq!(view.pid, Some(101));
    assert_eq!(view.release.as_deref(), Some("r1"));
    assert_eq!(view.restarts, 0);
}

#[test]
fn deploys_and_rollbacks_are_no_restarts() {
    let mut h = Harness::new(&format!("ready_after = \"0s\"\n{DEPLOYED}"));
    h.sup
        .handle_switch(h.at(1.0), &name(), "r1", Strategy::BlueGreen)
        .expect("first deploy");
    h.drive(h.at(1.0));
    // Blue-green: beside, then the old one retires.
    for (at, release) in [(2.0, "r2"), (4.0, "r1")] {
        let switch = h
            .sup
            .handle_switch(h.at(at), &name(), release, Strategy::BlueGreen);
        assert!(matches!(switch, Ok(Switch::Beside { .. })), "{switch:?}");
        h.drive(h.at(at));
        let old = h.sup.outgoing_pid(&name()).expect("serving");
        assert!(h.sup.handle_retire(h.at(at + 0.5), &name()));
        h.drive(h.at(at + 0.5));
        exit(&mut h, at + 1.0, old);
    }
    // Restart strategy: stop, then start.
    let old = h.pid().expect("running");
    let switch = h
        .sup
        .handle_switch(h.at(6.0), &name(), "r3", Strategy::Restart);
    assert_eq!(switch, Ok(Switch::Restarting));
    h.drive(h.at(6.0));
    exit(&mut h, 6.5, old);
    let view = &h.sup.views(h.at(7.0))[0];
    assert_eq!(view.release.as_deref(), Some("r3"));
    assert_eq!(view.pid, Some(104), "four cutovers started four processes");
    assert_eq!(view.restarts, 0, "a healthy agent showed 7 (issue #14)");

    // A crash is a restart; so is an operator's restart.
    h.kill(10.0);
    assert_eq!(h.sup.views(h.at(10.0))[0].restarts, 1);
    h.sup.handle_restart(h.at(11.0), &name());
    h.drive(h.at(11.0));
    exit(&mut h, 11.5, 105);
    assert_eq!(h.sup.views(h.at(11.5))[0].restarts, 2);
}

#[test]
fn the_live_release_read_at_apply_starts_a_deploy_agent() {
    let mut h = Harness::new("");
    let mut live = BTreeMap::new();
    // `a` gains [deploy]: it restarts with the release `current` names.
    live.insert(name(), "r7".to_owned());
    h.sup
        .handle_apply_with_releases(h.at(1.0), &config(DEPLOYED), false, &live);
    h.drive(h.at(1.0));
    exit(&mut h, 1.2, 101);
    assert_eq!(h.pid(), Some(102));
    assert_eq!(h.sup.release(&name()), Some("r7"));

    // An undeployed agent whose release appears (restored by hand) starts
    // at the next apply.
    let mut waiting = Harness::new(DEPLOYED);
    assert_eq!(waiting.state(0.0), AgentState::Undeployed);
    waiting
        .sup
        .handle_apply_with_releases(waiting.at(1.0), &config(DEPLOYED), false, &live);
    assert_eq!(spawns(&waiting.drive(waiting.at(1.0))), 1);
    assert_eq!(waiting.sup.release(&name()), Some("r7"));
    assert_eq!(waiting.sup.views(waiting.at(1.0))[0].restarts, 0);

    // Stopping an undeployed agent stops it; it stays stopped.
    let mut stopped = Harness::new(DEPLOYED);
    stopped.sup.handle_stop(stopped.at(1.0), &name());
    stopped.drive(stopped.at(1.0));
    assert_eq!(stopped.state(1.0), AgentState::Stopped);
    let switch = stopped
        .sup
        .handle_switch(stopped.at(2.0), &name(), "r1", Strategy::BlueGreen);
    assert_eq!(switch, Ok(Switch::NotRunning));
}

/// Issue #14, item 6: a start the exec shim reports impossible (the user
/// cannot enter the directory or run the program) is one `last_error` and
/// `failed` at once, not `crash_loop` quick deaths with nothing said.
#[test]
fn a_start_that_cannot_happen_fails_at_once_with_its_reason() {
    let mut h = Harness::new("failed_retry = \"1m\"");
    let reason = "cannot enter /root/project as nobody: /root is not searchable by nobody";
    assert!(h
        .sup
        .handle_not_started(h.at(0.01), 101, ExitStatus::Code(127), reason.into()));
    let actions = h.drive(h.at(0.01));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Spawn { .. })),
        "no restart loop: {actions:?}"
    );
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Cleanup { pid: 101, .. })));
    let view = &h.sup.views(h.at(0.01))[0];
    assert_eq!(view.state, AgentState::Failed);
    assert_eq!(view.last_error.as_deref(), Some(reason));
    assert_eq!(view.pid, None);
    assert_eq!(h.events, ["added", "started", "spawn_failed", "failed"]);
    assert_eq!(
        EventKind::Failed {
            deaths: 0,
            retry_in: Some(secs(60.0))
        }
        .detail(),
        "failed: it cannot start as configured; retrying in 1m"
    );
    // Retried after failed_retry, like any failed agent; a start that
    // works clears the error.
    assert_eq!(h.sup.poll_timeout(), Some(h.at(60.01)));
    h.tick(60.01);
    assert_eq!(h.pid(), Some(102));
    assert_eq!(h.sup.views(h.at(60.01))[0].last_error, None);
    // An unknown pid is not an agent's.
    assert!(!h
        .sup
        .handle_not_started(h.at(61.0), 999, ExitStatus::Code(127), "x".into()));
}

#[test]
fn a_start_that_cannot_happen_with_restart_never_is_exited_and_a_cutover_hands_back() {
    let mut h = Harness::new("restart = \"never\"");
    assert!(h
        .sup
        .handle_not_started(h.at(0.01), 101, ExitStatus::Code(127), "no".into()));
    h.drive(h.at(0.01));
    assert_eq!(h.state(0.01), AgentState::Exited);

    let mut h = Harness::new("");
    h.tick(1.0);
    h.sup
        .handle_switch(h.at(2.0), &name(), "r2", Strategy::BlueGreen)
        .expect("switch");
    h.drive(h.at(2.0));
    assert!(h.sup.handle_not_started(
        h.at(2.1),
        102,
        ExitStatus::Code(127),
        "cannot run ./server as web: Permission denied".into()
    ));
    h.drive(h.at(2.1));
    let view = &h.sup.views(h.at(2.1))[0];
    assert_eq!((view.pid, view.outgoing_pid), (Some(101), None));
    assert_eq!(
        view.state,
        AgentState::Running,
        "the live process serves on"
    );
    assert!(
        h.events.contains(&"handed_back".to_owned()),
        "{:?}",
        h.events
    );
}
