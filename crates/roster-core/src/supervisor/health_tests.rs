//! Health checks on a fake clock: probes are scheduled, judged, cut at
//! their timeout, and an unhealthy agent is drained and restarted at most
//! AUTO_RESTARTS_MAX times per window.

use super::driven_tests::{a, Driven};
use super::*;

/// Agent `a` with `[agents.a.health]` as `health`, and `extra` keys.
fn probed(health: &str, extra: &str) -> Driven {
    Driven::new(&format!(
        "[agents.a]\ncommand = \"sleep 100\"\nready_after = \"1s\"\n{extra}\n[agents.a.health]\n{health}\n"
    ))
}

/// Answers the latest probe out.
fn answer(p: &mut Driven, seconds: f64, result: Result<(), &str>) {
    let (id, _) = p.probes.last().cloned().expect("a probe is out");
    let now = p.at(seconds);
    p.sup
        .handle_probe(now, &a(), id, result.map_err(str::to_owned));
    p.drive(now);
}

const HTTP: &str = "http = \"http://127.0.0.1:8001/health\"\ninterval = \"5s\"\ntimeout = \"1s\"\nretries = 2\nstart_period = \"3s\"";

#[test]
fn the_first_probe_comes_when_the_agent_runs_then_every_interval() {
    let mut p = probed(HTTP, "");
    assert!(p.probes.is_empty());
    assert_eq!(p.view(0.5).health, Health::Unknown);
    p.tick(1.0);
    assert_eq!(p.probes.len(), 1, "probed when running");
    assert!(matches!(&p.probes[0].1, Check::Http(target) if target.path == "/health"));
    answer(&mut p, 1.1, Ok(()));
    assert_eq!(p.view(1.1).health, Health::Healthy);
    assert_eq!(
        p.sup.poll_timeout(),
        Some(p.at(6.1)),
        "next after the interval"
    );
    p.tick(6.1);
    assert_eq!(p.probes.len(), 2);
    assert_eq!(p.kinds().iter().filter(|e| **e == "healthy").count(), 1);
}

#[test]
fn failures_in_the_start_period_are_ignored_then_retries_make_it_unhealthy() {
    let mut p = probed(HTTP, "");
    p.tick(1.0);
    answer(&mut p, 1.2, Err("connection refused"));
    assert_eq!(p.view(1.2).health, Health::Unknown, "within start_period");
    p.tick(6.2);
    answer(&mut p, 6.3, Err("status 500"));
    assert_eq!(p.view(6.3).health, Health::Unknown, "1 of 2 retries");
    p.tick(11.3);
    answer(&mut p, 11.4, Err("status 500"));
    assert_eq!(p.view(11.4).health, Health::Unhealthy);
    assert!(p.kinds().contains(&"unhealthy"));
}

#[test]
fn unhealthy_with_restart_drains_with_the_drain_signal_and_timeout() {
    let mut p = probed(
        HTTP,
        "drain_signal = \"SIGUSR1\"\ndrain_timeout = \"7s\"\nstop_timeout = \"1s\"",
    );
    let first = p.pid().expect("a pid");
    p.tick(1.0);
    answer(&mut p, 1.1, Ok(()));
    for at in [6.1, 11.1] {
        p.tick(at);
        answer(&mut p, at, Err("status 503"));
    }
    assert_eq!(p.signals, [(first, Signal::Usr1)], "drained, not stopped");
    assert_eq!(p.view(11.2).state, AgentState::Stopping);
    // Still draining after stop_timeout: drain_timeout rules.
    p.tick(13.0);
    assert_eq!(p.signals.len(), 1);
    p.tick(18.2);
    assert_eq!(p.signals.last(), Some(&(first, Signal::Kill)));
    assert!(p.sup.handle_exit(p.at(18.3), first, ExitStatus::Signal(9)));
    p.drive(p.at(18.3));
    let second = p.pid().expect("a pid");
    assert_ne!(second, first, "restarted");
    assert_eq!(
        p.view(18.3).health,
        Health::Unknown,
        "a new process, a new verdict"
    );
}

#[test]
fn an_operators_drained_restart_uses_the_drain_signal_and_drain_timeout() {
    let mut p = probed(
        HTTP,
        "drain_signal = \"SIGUSR1\"\ndrain_timeout = \"7s\"\nstop_timeout = \"1s\"",
    );
    let first = p.pid().expect("a pid");
    let name = a();
    p.sup.handle_restart_drained(p.at(2.0), &name);
    p.drive(p.at(2.0));
    assert_eq!(p.signals, [(first, Signal::Usr1)], "drained, not stopped");
    assert_eq!(p.view(2.1).state, AgentState::Stopping);
    // Past stop_timeout it still drains: drain_timeout rules.
    p.tick(4.0);
    assert_eq!(p.signals.len(), 1);
    p.tick(9.1);
    assert_eq!(p.signals.last(), Some(&(first, Signal::Kill)));
    assert!(p.sup.handle_exit(p.at(9.2), first, ExitStatus::Signal(9)));
    p.drive(p.at(9.2));
    assert_ne!(p.pid(), Some(first), "started again");
    // Not counted against the automatic restarts' limit, and repeatable.
    let second = p.pid().expect("a pid");
    p.sup.handle_restart_drained(p.at(10.0), &name);
    p.drive(p.at(10.0));
    assert_eq!(p.signals.last(), Some(&(second, Signal::Usr1)));
}

#[test]
fn a_drained_restart_without_a_drain_signal_uses_the_stop_signal() {
    let mut p = probed(HTTP, "stop_signal = \"SIGINT\"\ndrain_timeout = \"3s\"");
    let first = p.pid().expect("a pid");
    let name = a();
    p.sup.handle_restart_drained(p.at(2.0), &name);
    p.drive(p.at(2.0));
    assert_eq!(p.signals, [(first, Signal::Int)]);
    assert!(p.sup.handle_exit(p.at(2.5), first, ExitStatus::Code(0)));
    p.drive(p.at(2.5));
    assert_ne!(p.pid(), Some(first), "started again at once after it ended");
}

#[test]
fn a_hung_probe_is_cut_at_its_timeout_and_counts_as_a_failure() {
    let mut p = probed(
        "exec = [\"sleep\", \"100\"]\ninterval = \"2s\"\ntimeout = \"500ms\"\nretries = 1\nstart_period = \"0s\"\non_failure = \"none\"",
        "",
    );
    p.tick(1.0);
    let (id, _) = p.probes[0].clone();
    assert_eq!(p.sup.poll_timeout(), Some(p.at(1.5)));
    p.tick(1.5);
    assert_eq!(p.cancelled, [id], "the hung probe is cancelled");
    assert_eq!(p.view(1.5).health, Health::Unhealthy);
    assert!(p.signals.is_empty(), "on_failure = none leaves it alone");
    // Its late answer is stale and changes nothing.
    let name = a();
    p.sup.handle_probe(p.at(1.7), &name, id, Ok(()));
    assert_eq!(p.view(1.7).health, Health::Unhealthy);
    // The next probe comes an interval after the timeout.
    assert_eq!(p.sup.poll_timeout(), Some(p.at(3.5)));
}

#[test]
fn automatic_restarts_are_rate_limited() {
    let mut p = probed(
        "tcp = \"127.0.0.1:9\"\ninterval = \"1s\"\ntimeout = \"1s\"\nretries = 1\nstart_period = \"0s\"",
        "stop_signal = \"SIGKILL\"\ndrain_signal = \"SIGKILL\"",
    );
    let mut restarts = 0;
    let mut now = 0.0;
    for _ in 0..20 {
        now += 1.0;
        p.run_until(now);
        if p.probes.len() > restarts + p.cancelled.len() {
            answer(&mut p, now, Err("connection refused"));
        }
        if let Some(&(pid, Signal::Kill)) = p.signals.last() {
            if p.sup.handle_exit(p.at(now), pid, ExitStatus::Signal(9)) {
                restarts += 1;
                p.drive(p.at(now));
            }
        }
    }
    assert_eq!(restarts, AUTO_RESTARTS_MAX, "{:?}", p.events);
    assert_eq!(
        p.kinds()
            .iter()
            .filter(|e| **e == "restart_suppressed")
            .count(),
        1,
        "suppression is said once"
    );
    assert_eq!(p.view(now).health, Health::Unhealthy);
}

#[test]
fn an_operator_stop_cancels_the_probe_in_flight() {
    let mut p = probed(HTTP, "");
    p.tick(1.0);
    let (id, _) = p.probes[0].clone();
    let name = a();
    p.sup.handle_stop(p.at(1.1), &name);
    p.drive(p.at(1.1));
    assert_eq!(p.cancelled, [id]);
    assert_eq!(p.view(1.1).health, Health::Unknown);
}
