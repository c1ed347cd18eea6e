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
        memory: Default::default(),
        shipped: Default::default(),
        deploying: Default::default(),
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
            agents: vec!["slow".into(), "web".into()],
            releases: vec![],
            skipped: BTreeMap::new(),
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

fn held(pid: u32, mib: u64) -> Memory {
    Memory {
        pid,
        bytes: mib << 20,
        drain_timeout: Duration::from_secs(3),
    }
}

fn restarted(plan: &Plan) -> Vec<&str> {
    plan.steps
        .iter()
        .filter_map(|step| match &step.action {
            Action::RestartDrained { agent, .. } => Some(agent.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn memory_pressure_restarts_the_largest_agent_over_its_limit_drained_once() {
    let mut context = context(DaemonState::Answered);
    context.memory.insert("web".into(), held(11, 300));
    context.memory.insert("slow".into(), held(12, 900));
    let found = [
        finding(Mode::MemoryPressure, Severity::Warning, Some("web")),
        finding(Mode::MemoryPressure, Severity::Warning, Some("slow")),
        finding(Mode::MemoryPressure, Severity::Critical, None),
    ];
    let plan = plan(&found, &context);
    assert_eq!(
        restarted(&plan),
        ["slow"],
        "one agent: the one holding most"
    );
    assert_eq!(
        plan.steps[0].action,
        Action::RestartDrained {
            agent: "slow".into(),
            pid: 12,
            memory_bytes: 900 << 20,
            // RESTART_BOUND + drain_timeout + stable_after capped at 5 s.
            verify_ms: 18_000,
        }
    );
    assert!(plan.steps[0].description.contains("drained"));
    assert_eq!(plan.left.len(), 1, "web waits for the next recover");
    assert!(plan.left[0]
        .reason
        .contains("one agent is restarted per recover"));
}

#[test]
fn an_agent_over_its_limit_comes_before_a_larger_one_that_is_not() {
    let mut context = context(DaemonState::Answered);
    context.memory.insert("web".into(), held(11, 100));
    context.memory.insert("slow".into(), held(12, 4000));
    let found = [
        finding(Mode::MemoryPressure, Severity::Critical, None),
        finding(Mode::MemoryPressure, Severity::Warning, Some("web")),
    ];
    assert_eq!(restarted(&plan(&found, &context)), ["web"]);
}

#[test]
fn equal_memory_restarts_the_first_by_name() {
    let mut context = context(DaemonState::Answered);
    context.memory.insert("web".into(), held(11, 500));
    context.memory.insert("slow".into(), held(12, 500));
    let found = [
        finding(Mode::MemoryPressure, Severity::Warning, Some("web")),
        finding(Mode::MemoryPressure, Severity::Warning, Some("slow")),
    ];
    assert_eq!(restarted(&plan(&found, &context)), ["slow"]);
    let host = [finding(Mode::MemoryPressure, Severity::Warning, None)];
    assert_eq!(restarted(&plan(&host, &context)), ["slow"]);
}

#[test]
fn host_pressure_alone_restarts_the_largest_agent_of_the_config() {
    let mut context = context(DaemonState::Answered);
    context.memory.insert("web".into(), held(11, 700));
    context.memory.insert("slow".into(), held(12, 200));
    // Running under roster but gone from the config: never chosen.
    context.memory.insert("old".into(), held(13, 9000));
    let found = [finding(Mode::MemoryPressure, Severity::Critical, None)];
    let plan = plan(&found, &context);
    assert_eq!(restarted(&plan), ["web"]);
    assert!(plan.left.is_empty());
}

#[test]
fn an_agent_not_in_the_config_or_not_running_is_never_restarted() {
    let mut context = context(DaemonState::Answered);
    context.memory.insert("old".into(), held(13, 9000));
    let found = [
        finding(Mode::MemoryPressure, Severity::Warning, Some("old")),
        finding(Mode::MemoryPressure, Severity::Warning, Some("web")),
    ];
    let first = plan(&found, &context);
    assert!(first.steps.is_empty());
    assert_eq!(first.left.len(), 2);
    assert!(first.left[0].reason.contains("old is not in the config"));
    assert!(first.left[0]
        .reason
        .contains("web does not run under roster"));
    // With host-wide pressure too, the largest agent of the config goes,
    // and the one outside it is left, saying why.
    context.memory.insert("web".into(), held(11, 10));
    let found = [
        finding(Mode::MemoryPressure, Severity::Warning, Some("old")),
        finding(Mode::MemoryPressure, Severity::Critical, None),
    ];
    let plan = plan(&found, &context);
    assert_eq!(restarted(&plan), ["web"]);
    assert!(plan.left[0].reason.contains("old is not in the config"));
}

#[test]
fn memory_pressure_with_a_hung_daemon_restarts_nothing() {
    let mut context = context(DaemonState::Hung);
    context.memory.insert("web".into(), held(11, 700));
    let found = [
        finding(Mode::MemoryPressure, Severity::Warning, Some("web")),
        finding(Mode::MemoryPressure, Severity::Critical, None),
    ];
    let plan = plan(&found, &context);
    assert!(plan.steps.is_empty());
    assert_eq!(plan.left.len(), 2);
    assert!(plan.left[0].reason.contains("does not answer"));
}

#[test]
fn a_full_disk_frees_old_releases_too_but_not_of_an_agent_being_deployed() {
    let mut context = context(DaemonState::Answered);
    context.shipped.insert("web".into());
    context.shipped.insert("slow".into());
    context
        .deploying
        .insert("slow".into(), "a deploy of slow is in progress".into());
    let found = [finding(Mode::DiskNearlyFull, Severity::Warning, None)];
    let plan = plan(&found, &context);
    let Action::FreeDisk {
        releases, skipped, ..
    } = &plan.steps[0].action
    else {
        panic!("not a disk step: {:?}", plan.steps[0]);
    };
    assert_eq!(releases, &["web"]);
    assert_eq!(skipped.len(), 1);
    assert!(plan.steps[0]
        .description
        .contains("not the releases of slow: a deploy of slow is in progress"));
}

#[test]
fn a_full_disk_with_a_hung_daemon_frees_logs_but_no_release() {
    let mut context = context(DaemonState::Hung);
    context.shipped.insert("web".into());
    let found = [finding(Mode::DiskFull, Severity::Critical, None)];
    let plan = plan(&found, &context);
    let Action::FreeDisk {
        agents,
        releases,
        skipped,
        ..
    } = &plan.steps[0].action
    else {
        panic!("not a disk step: {:?}", plan.steps[0]);
    };
    assert_eq!(agents.len(), 2, "rotated logs still go");
    assert!(releases.is_empty());
    assert!(skipped["web"].contains("does not answer"));
}
