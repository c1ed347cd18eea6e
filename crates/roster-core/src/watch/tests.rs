//! Rules on a fake clock.

use super::*;

fn name(raw: &str) -> AgentName {
    AgentName::new(raw).expect("valid name")
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn memory(percent: f64) -> BTreeMap<AgentName, AgentSample> {
    let mut samples = BTreeMap::new();
    samples.insert(
        name("a"),
        AgentSample {
            memory_percent: Some(percent),
            ..AgentSample::default()
        },
    );
    samples
}

fn drain(watcher: &mut Watcher) -> Vec<Response> {
    std::iter::from_fn(|| watcher.poll_response()).collect()
}

fn with_rules(rules: Vec<WatchRule>) -> (Watcher, Instant) {
    let mut watcher = Watcher::new();
    let t0 = Instant::now();
    let mut agents = BTreeMap::new();
    agents.insert(name("a"), rules);
    watcher.set_rules(t0, agents, Vec::new());
    (watcher, t0)
}

#[test]
fn the_graded_defaults_alert_then_restart_once_each() {
    let (mut w, t0) = with_rules(default_agent_rules());
    let host = HostSample::default();
    let mut fired = Vec::new();
    // 90% for 2 minutes: the 85% alert after 1m, no restart.
    for second in (0..=120).step_by(5) {
        w.handle_samples(t0 + secs(second), &memory(90.0), &host);
        fired.extend(drain(&mut w));
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    let Response::Alert(alert) = &fired[0] else {
        panic!("an alert: {fired:?}");
    };
    assert!(alert.firing);
    assert_eq!(alert.name, "AgentMemoryHigh");
    assert_eq!(alert.since, t0, "since the condition started");
    assert!(
        alert.summary.contains("memory_percent above 85% for 1m"),
        "{}",
        alert.summary
    );
    // 97% for 30s more: the restart rule fires once, with its alert.
    fired.clear();
    for second in (125..=200).step_by(5) {
        w.handle_samples(t0 + secs(second), &memory(97.0), &host);
        fired.extend(drain(&mut w));
    }
    let restarts = fired
        .iter()
        .filter(|response| matches!(response, Response::Restart { .. }))
        .count();
    assert_eq!(restarts, 1, "one restart per firing: {fired:?}");
    // Back to normal: both resolve.
    w.handle_samples(t0 + secs(205), &memory(40.0), &host);
    let resolved: Vec<Response> = drain(&mut w);
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    assert!(resolved
        .iter()
        .all(|response| matches!(response, Response::Alert(alert) if !alert.firing && alert.until.is_some())));
}

#[test]
fn a_dip_below_the_threshold_restarts_the_for_clock() {
    let rule = WatchRule::new(
        Metric::MemoryPercent,
        Threshold::Above(85.0),
        secs(60),
        RuleAction::Alert,
    );
    let (mut w, t0) = with_rules(vec![rule]);
    let host = HostSample::default();
    for (second, value) in [(0, 90.0), (50, 90.0), (55, 80.0), (60, 90.0), (110, 90.0)] {
        w.handle_samples(t0 + secs(second), &memory(value), &host);
    }
    assert!(drain(&mut w).is_empty(), "held only 50s in a row");
    w.handle_samples(t0 + secs(120), &memory(90.0), &host);
    assert_eq!(drain(&mut w).len(), 1);
}

#[test]
fn repeat_every_sends_a_firing_alert_again_and_timeouts_ask_for_it() {
    let mut rule = WatchRule::new(
        Metric::MemoryPercent,
        Threshold::Above(50.0),
        Duration::ZERO,
        RuleAction::Alert,
    );
    rule.repeat_every = Some(secs(600));
    let (mut w, t0) = with_rules(vec![rule]);
    w.handle_samples(t0, &memory(60.0), &HostSample::default());
    assert_eq!(drain(&mut w).len(), 1);
    assert_eq!(w.poll_timeout(), Some(t0 + secs(600)));
    w.handle_timeout(t0 + secs(600));
    let repeated = drain(&mut w);
    assert!(matches!(&repeated[..], [Response::Alert(alert)] if alert.repeat && alert.firing));
}

#[test]
fn log_matches_fire_within_the_window_and_resolve_when_it_slides() {
    let mut rule = WatchRule::new(
        Metric::LogMatches,
        Threshold::Above(5.0),
        Duration::ZERO,
        RuleAction::Alert,
    );
    rule.pattern = Some("(?i)error".into());
    rule.within = secs(100);
    let (mut w, t0) = with_rules(vec![rule]);
    let agent = name("a");
    for second in 0..5 {
        w.handle_log_matches(t0 + secs(second), &agent, 0, 1);
    }
    assert!(drain(&mut w).is_empty(), "5 is not above 5");
    w.handle_log_matches(t0 + secs(10), &agent, 0, 1);
    let fired = drain(&mut w);
    assert!(
        matches!(&fired[..], [Response::Alert(alert)] if alert.firing && alert.name == "AgentLogMatches"),
        "{fired:?}"
    );
    // The first matches leave the window at t0+100s: resolved then.
    assert_eq!(w.poll_timeout(), Some(t0 + secs(100)));
    w.handle_timeout(t0 + secs(100));
    let resolved = drain(&mut w);
    assert!(
        matches!(&resolved[..], [Response::Alert(alert)] if !alert.firing),
        "{resolved:?}"
    );
}

#[test]
fn predict_fires_on_a_trend_before_the_threshold() {
    let mut rule = WatchRule::new(
        Metric::MemoryPercent,
        Threshold::Above(90.0),
        Duration::ZERO,
        RuleAction::Alert,
    );
    rule.predict = Some(secs(1800));
    let (mut w, t0) = with_rules(vec![rule]);
    let host = HostSample::default();
    // +1% a minute from 40%: crosses 90% in 50 minutes; within 30 minutes
    // from 60%+.
    let mut fired_at = None;
    for minute in 0..40u64 {
        w.handle_samples(t0 + secs(minute * 60), &memory(40.0 + minute as f64), &host);
        if !drain(&mut w).is_empty() && fired_at.is_none() {
            fired_at = Some(minute);
        }
    }
    let minute = fired_at.expect("the leak was predicted");
    assert!((20..=21).contains(&minute), "predicted at minute {minute}");
}

#[test]
fn least_squares_matches_a_line() {
    let t0 = Instant::now();
    let history: VecDeque<(Instant, f64)> = (0..10u64)
        .map(|second| (t0 + secs(second), 2.0 * second as f64 + 1.0))
        .collect();
    let value = predict(&history, t0 + secs(9), secs(10)).expect("a fit");
    assert!((value - 39.0).abs() < 1e-9, "{value}");
    let flat: VecDeque<(Instant, f64)> = (0..3).map(|_| (t0, 1.0)).collect();
    assert_eq!(predict(&flat, t0, secs(1)), None, "no spread in time");
}

#[test]
fn host_rules_and_clean_logs() {
    let mut watcher = Watcher::new();
    let t0 = Instant::now();
    let mut disk = WatchRule::new(
        Metric::DiskPercent,
        Threshold::Above(80.0),
        Duration::ZERO,
        RuleAction::CleanLogs,
    );
    disk.path = Some(PathBuf::from("/"));
    let memory = WatchRule::new(
        Metric::MemoryAvailablePercent,
        Threshold::Below(10.0),
        Duration::ZERO,
        RuleAction::Alert,
    );
    watcher.set_rules(t0, BTreeMap::new(), vec![disk, memory]);
    let mut host = HostSample {
        memory_available_percent: Some(5.0),
        load1: Some(0.5),
        ..HostSample::default()
    };
    host.disk_percent.insert(PathBuf::from("/"), 85.0);
    watcher.handle_samples(t0, &BTreeMap::new(), &host);
    let responses = drain(&mut watcher);
    assert!(responses.iter().any(
        |response| matches!(response, Response::CleanLogs { percent, .. } if *percent == 80.0)
    ));
    let names: Vec<&str> = responses
        .iter()
        .filter_map(|response| match response {
            Response::Alert(alert) => Some(alert.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["HostDiskFull", "HostMemoryLow"]);
}

#[test]
fn an_agent_that_stops_running_resolves_its_alerts_and_removed_rules_resolve() {
    let rule = WatchRule::new(
        Metric::MemoryPercent,
        Threshold::Above(50.0),
        Duration::ZERO,
        RuleAction::Alert,
    );
    let (mut w, t0) = with_rules(vec![rule.clone()]);
    w.handle_samples(t0, &memory(60.0), &HostSample::default());
    assert_eq!(drain(&mut w).len(), 1);
    // No sample for it (not running): the condition no longer holds.
    w.handle_samples(t0 + secs(5), &BTreeMap::new(), &HostSample::default());
    assert!(matches!(&drain(&mut w)[..], [Response::Alert(alert)] if !alert.firing));
    // Fire again, then apply a config without the agent.
    w.handle_samples(t0 + secs(10), &memory(60.0), &HostSample::default());
    drain(&mut w);
    w.set_rules(t0 + secs(11), BTreeMap::new(), Vec::new());
    assert!(matches!(&drain(&mut w)[..], [Response::Alert(alert)] if !alert.firing));
}

#[test]
fn health_alerts_fire_and_resolve_once() {
    let mut w = Watcher::new();
    let t0 = Instant::now();
    let agent = name("a");
    let interval = secs(1);
    w.handle_health(t0, &agent, false, interval, "status 500");
    w.handle_health(t0 + secs(1), &agent, false, interval, "status 500");
    let fired = drain(&mut w);
    assert!(
        matches!(&fired[..], [Response::Alert(alert)] if alert.firing && alert.name == "AgentUnhealthy")
    );
    // Healthy again: it resolves once it has stayed so for 30 s, through
    // the watcher's timer (no rule of its own has one).
    w.handle_health(t0 + secs(2), &agent, true, interval, "");
    assert!(drain(&mut w).is_empty());
    let due = w.poll_timeout().expect("the resolution is timed");
    assert_eq!(due, t0 + secs(2) + STEADY_FOR);
    w.handle_timeout(due);
    let resolved = drain(&mut w);
    assert!(
        matches!(&resolved[..], [Response::Alert(alert)] if !alert.firing && alert.since == t0)
    );
    assert_eq!(w.poll_timeout(), None);
}

#[test]
fn a_new_process_resolves_firing_rules_so_a_useless_restart_fires_again() {
    let rule = WatchRule::new(
        Metric::MemoryPercent,
        Threshold::Above(50.0),
        Duration::ZERO,
        RuleAction::Restart,
    );
    let (mut w, t0) = with_rules(vec![rule]);
    w.handle_samples(t0, &memory(60.0), &HostSample::default());
    assert_eq!(drain(&mut w).len(), 2, "alert and restart");
    w.handle_new_process(t0 + secs(1), &name("a"));
    assert!(matches!(&drain(&mut w)[..], [Response::Alert(alert)] if !alert.firing));
    w.handle_samples(t0 + secs(2), &memory(60.0), &HostSample::default());
    let again = drain(&mut w);
    assert!(
        again
            .iter()
            .any(|response| matches!(response, Response::Restart { .. })),
        "{again:?}"
    );
}
