use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::diagnose::Severity;

fn finding(mode: Mode, severity: Severity, agent: Option<&str>) -> Finding {
    Finding {
        mode,
        severity,
        agent: agent.map(str::to_owned),
        evidence: vec!["seen".into()],
        action: "do the thing".into(),
    }
}

fn context(daemon: DaemonState) -> Context {
    let mut wanted = BTreeMap::new();
    wanted.insert("web".to_owned(), Duration::from_secs(2));
    wanted.insert("slow".to_owned(), Duration::from_secs(60));
    Context {
        daemon,
        config: Some("/etc/roster.toml".into()),
        wanted,
        running: Default::default(),
    }
}

#[test]
fn a_stopped_daemon_is_started_with_the_config() {
    let found = [finding(Mode::DaemonUnreachable, Severity::Critical, None)];
    let plan = plan(&found, &context(DaemonState::NotRunning));
    assert_eq!(
        plan.steps[0].action,
        Action::StartDaemon {
            config: "/etc/roster.toml".into()
        }
    );
    assert!(plan.left.is_empty());
}

#[test]
fn a_stopped_daemon_without_a_config_is_left() {
    let found = [finding(Mode::DaemonUnreachable, Severity::Critical, None)];
    let mut context = context(DaemonState::NotRunning);
    context.config = None;
    let plan = plan(&found, &context);
    assert!(plan.steps.is_empty());
    assert!(plan.left[0].reason.contains("-f FILE"));
}

#[test]
fn a_hung_daemon_is_never_killed_only_left() {
    let found = [finding(Mode::DaemonUnreachable, Severity::Critical, None)];
    let plan = plan(&found, &context(DaemonState::Hung));
    assert!(plan.steps.is_empty());
    assert!(plan.left[0].reason.contains("never kills"));
}

#[test]
fn a_down_or_looping_agent_is_started_once_and_verified_for_its_stable_after() {
    let found = [
        finding(Mode::CrashLoop, Severity::Critical, Some("web")),
        finding(Mode::AgentDown, Severity::Critical, Some("web")),
        finding(Mode::AgentDown, Severity::Critical, Some("slow")),
    ];
    let plan = plan(&found, &context(DaemonState::Answered));
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(
        plan.steps[0].action,
        Action::StartAgent {
            agent: "web".into(),
            verify_ms: 2000
        }
    );
    // stable_after is capped.
    assert_eq!(
        plan.steps[1].action,
        Action::StartAgent {
            agent: "slow".into(),
            verify_ms: VERIFY_CAP.as_millis() as u64
        }
    );
}

#[test]
fn an_agent_outside_the_config_is_not_started() {
    let found = [finding(Mode::AgentDown, Severity::Critical, Some("ghost"))];
    let plan = plan(&found, &context(DaemonState::Answered));
    assert!(plan.steps.is_empty());
    assert!(plan.left[0].reason.contains("not in the config"));
}

#[test]
fn an_agent_is_not_started_without_a_daemon_that_answers() {
    let found = [finding(Mode::AgentDown, Severity::Critical, Some("web"))];
    let plan = plan(&found, &context(DaemonState::Hung));
    assert!(plan.steps.is_empty());
    assert_eq!(plan.left.len(), 1);
}

#[test]
fn a_full_disk_frees_rotated_logs_of_the_config_agents_once() {
    let found = [
        finding(Mode::DiskFull, Severity::Critical, None),
        finding(Mode::DiskNearlyFull, Severity::Warning, None),
    ];
    let plan = plan(&found, &context(DaemonState::Answered));
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(
        plan.steps[0].action,
        Action::FreeDisk {
            below_percent: 85,
            agents: vec!["slow".into(), "web".into()]
        }
    );
}

#[test]
fn the_rest_is_left_with_the_action_as_advice() {
    for mode in [
        Mode::PortTaken,
        Mode::Unhealthy,
        Mode::OomKilled,
        Mode::ConfigInvalid,
        Mode::NotifierFailing,
        Mode::JournalReset,
        Mode::MemoryPressure,
    ] {
        let found = [finding(mode, Severity::Warning, Some("web"))];
        let plan = plan(&found, &context(DaemonState::Answered));
        assert!(plan.steps.is_empty(), "{mode:?}");
        assert_eq!(plan.left[0].mode, mode);
        assert!(plan.left[0].reason.contains("do the thing"));
    }
}

#[test]
fn info_findings_plan_nothing() {
    let found = [finding(Mode::JournalReset, Severity::Info, None)];
    assert_eq!(
        plan(&found, &context(DaemonState::Answered)),
        Plan::default()
    );
}

#[test]
fn a_crash_loop_of_an_agent_running_now_is_not_started_again() {
    let found = [finding(Mode::CrashLoop, Severity::Warning, Some("web"))];
    let mut context = context(DaemonState::Answered);
    context.running.insert("web".into());
    let plan = plan(&found, &context);
    assert!(plan.steps.is_empty());
    assert!(plan.left[0].reason.contains("runs now"));
}
