//! `instances = N` on a fake clock: fewer copies drain the highest
//! numbers with the drain signal and drain_timeout and touch the rest;
//! more copies start only the new ones; removing the agent stops its
//! copies with the stop signal, as any removal.

use std::path::Path;

use super::*;
use crate::config::parse;

fn config(body: &str) -> Config {
    parse("scale.toml", body, Path::new("/tmp")).expect("valid config")
}

fn workers(count: u32) -> Config {
    config(&format!(
        "[agents.w]\ninstances = {count}\ncommand = \"sleep 100\"\n\
         stop_signal = \"SIGINT\"\ndrain_signal = \"SIGUSR1\"\ndrain_timeout = \"20s\"\n"
    ))
}

/// Applies `config` at `now`, performs the actions like the runtime (spawns
/// get fresh pids) and returns the signals sent, by agent name.
fn apply(
    sup: &mut Supervisor,
    now: Instant,
    config: &Config,
    next_pid: &mut u32,
) -> (ApplySummary, Vec<(String, Signal)>) {
    let summary = sup.handle_apply(now, config, false);
    let mut signals = Vec::new();
    while let Some(action) = sup.poll_action() {
        match action {
            Action::Spawn { agent } => {
                *next_pid += 1;
                sup.handle_spawned(now, &agent, Ok(*next_pid));
            }
            Action::Signal { agent, signal, .. } => signals.push((agent.to_string(), signal)),
            _ => {}
        }
    }
    (summary, signals)
}

fn pids(sup: &Supervisor, now: Instant) -> Vec<(String, Option<u32>)> {
    sup.views(now)
        .into_iter()
        .map(|view| (view.name.to_string(), view.pid))
        .collect()
}

#[test]
fn scaling_down_drains_the_highest_copies_and_up_starts_only_new_ones() {
    let mut sup = Supervisor::new();
    let t0 = Instant::now();
    let mut next_pid = 100;
    let (summary, _) = apply(&mut sup, t0, &workers(3), &mut next_pid);
    assert_eq!(summary.added, ["w.1", "w.2", "w.3"]);
    let before = pids(&sup, t0);
    // Past ready_after: running.
    sup.handle_timeout(t0 + Duration::from_secs(2));

    let t1 = t0 + Duration::from_secs(5);
    let (summary, signals) = apply(&mut sup, t1, &workers(1), &mut next_pid);
    assert_eq!(summary.removed, ["w.2", "w.3"]);
    assert_eq!(summary.unchanged, ["w.1"]);
    assert_eq!(
        signals,
        [
            ("w.2".to_owned(), Signal::Usr1),
            ("w.3".to_owned(), Signal::Usr1)
        ],
        "the copies taken away are drained, w.1 is untouched"
    );
    // Still finishing their work until drain_timeout, then killed.
    let states: Vec<AgentState> = sup.views(t1).iter().map(|view| view.state).collect();
    assert_eq!(
        states,
        [
            AgentState::Running,
            AgentState::Stopping,
            AgentState::Stopping
        ]
    );
    sup.handle_timeout(t1 + Duration::from_secs(19));
    assert!(
        std::iter::from_fn(|| sup.poll_action()).all(|action| !matches!(
            action,
            Action::Signal {
                signal: Signal::Kill,
                ..
            }
        )),
        "no SIGKILL before drain_timeout"
    );
    sup.handle_timeout(t1 + Duration::from_secs(21));
    let killed = std::iter::from_fn(|| sup.poll_action())
        .filter(|action| {
            matches!(
                action,
                Action::Signal {
                    signal: Signal::Kill,
                    ..
                }
            )
        })
        .count();
    assert_eq!(killed, 2, "SIGKILL once drain_timeout is over");
    for (name, pid) in &before[1..] {
        let pid = pid.expect("ran");
        assert!(
            sup.handle_exit(t1 + Duration::from_secs(21), pid, ExitStatus::Signal(9)),
            "{name}"
        );
    }
    assert_eq!(pids(&sup, t1), before[..1], "w.1 kept its process");

    // Up again: only w.2 and w.3 start; w.1 keeps running.
    let t2 = t1 + Duration::from_secs(30);
    let (summary, signals) = apply(&mut sup, t2, &workers(3), &mut next_pid);
    assert_eq!(summary.added, ["w.2", "w.3"]);
    assert!(signals.is_empty(), "{signals:?}");
    assert_eq!(pids(&sup, t2)[0], before[0]);
}

#[test]
fn removing_the_agent_stops_its_copies_with_the_stop_signal() {
    let mut sup = Supervisor::new();
    let t0 = Instant::now();
    let mut next_pid = 100;
    apply(&mut sup, t0, &workers(2), &mut next_pid);
    let (summary, signals) = apply(
        &mut sup,
        t0,
        &config("[agents.other]\ncommand = \"sleep 1\"\n"),
        &mut next_pid,
    );
    assert_eq!(summary.removed, ["w.1", "w.2"]);
    assert_eq!(
        signals,
        [
            ("w.1".to_owned(), Signal::Int),
            ("w.2".to_owned(), Signal::Int)
        ]
    );
}
