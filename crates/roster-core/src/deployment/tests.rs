//! Deploys on a fake clock, beside a real `Supervisor`: the harness
//! performs the supervisor's actions (spawns get fresh pids) and the
//! deployment's switch, retire and handback on it, feeds the agent's view
//! after every supervisor event, and leaves the other work to the test,
//! which answers it as the runtime would.

use super::*;
use crate::api::Health;
use crate::config::parse;
use crate::supervisor::{Action as SupAction, Supervisor};
use crate::AgentName;
use crate::ExitStatus;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[path = "cutover_tests.rs"]
mod cutover_tests;

fn name() -> AgentName {
    AgentName::new("a").expect("valid name")
}

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

const DEPLOY: &str = "ready_timeout = \"5s\"\nverify_for = \"10s\"\nkeep = 2\n";

struct Harness {
    sup: Supervisor,
    dep: Deployment,
    t0: Instant,
    next_pid: u32,
    /// Answer the supervisor's probes with this verdict (`None`: never).
    probes_pass: Option<bool>,
    /// Refuse every spawn with this error (`None`: spawns succeed).
    spawn_error: Option<String>,
    /// Work waiting for the test's answer, oldest first.
    work: VecDeque<Action>,
    /// Every action of the deployment, in order.
    log: Vec<Action>,
}

impl Harness {
    /// Agent `a` runs release v1 (or none is live), then `job` begins.
    fn new(extra: &str, deploy: &str, live: Option<&str>, job: Job) -> Self {
        let text = format!(
            "[agents.a]\ncommand = \"sleep 100\"\nready_after = \"1s\"\n{extra}\n[agents.a.deploy]\n{deploy}\n"
        );
        let config = parse("test.toml", &text, Path::new("/tmp")).expect("valid config");
        let mut sup = Supervisor::new();
        let t0 = Instant::now();
        let mut releases = BTreeMap::new();
        if let Some(live) = live {
            releases.insert(name(), live.to_owned());
        }
        sup.handle_apply_with_releases(t0, &config, true, &releases);
        let spec = sup.spec(&name()).expect("agent a").clone();
        let kind = match job {
            Job::Deploy { .. } => "deploy",
            Job::Rollback { .. } => "rollback",
        };
        let progress = DeployProgress {
            id: 1,
            agent: "a".into(),
            kind: kind.into(),
            version: None,
            previous: live.map(str::to_owned),
            steps: Vec::new(),
            outcome: None,
            message: None,
        };
        let mut harness = Self {
            sup,
            // Until the job begins: one that ends at once, asking nothing.
            dep: Deployment::new(
                t0,
                deploy_job(),
                progress.clone(),
                AgentSpec {
                    deploy: None,
                    ..spec.clone()
                },
                None,
            ),
            t0,
            next_pid: 100,
            probes_pass: Some(true),
            spawn_error: None,
            work: VecDeque::new(),
            log: Vec::new(),
        };
        harness.drive(t0);
        // The live process counts as running once `ready_after` passed.
        harness.tick(harness.at(1.0));
        let start = harness.at(1.0);
        let seen = harness.sup.view(start, &name());
        harness.dep = Deployment::new(start, job, progress, spec, seen);
        harness.log.clear();
        harness.work.clear();
        harness.drive(start);
        harness
    }

    fn at(&self, seconds: f64) -> Instant {
        self.t0 + secs(seconds)
    }

    fn pid(&self) -> Option<u32> {
        self.sup.view(self.t0, &name()).and_then(|view| view.pid)
    }

    /// Performs what the supervisor and the deployment ask until neither
    /// asks more without an answer from the test.
    fn drive(&mut self, now: Instant) {
        loop {
            let mut busy = false;
            while let Some(action) = self.sup.poll_action() {
                busy = true;
                match action {
                    SupAction::Spawn { agent } => match &self.spawn_error {
                        Some(error) => self.sup.handle_spawned(now, &agent, Err(error.clone())),
                        None => {
                            self.next_pid += 1;
                            self.sup.handle_spawned(now, &agent, Ok(self.next_pid));
                        }
                    },
                    SupAction::Probe { agent, id, .. } => {
                        if let Some(pass) = self.probes_pass {
                            let result = if pass { Ok(()) } else { Err("503".into()) };
                            self.sup.handle_probe(now, &agent, id, result);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(event) = self.sup.poll_event() {
                busy = true;
                let view = self.sup.view(now, &event.agent);
                self.dep.handle_agent(now, view.as_ref());
            }
            while let Some(action) = self.dep.poll_action() {
                busy = true;
                self.log.push(action.clone());
                match action {
                    Action::Switch { release, strategy } => {
                        let before = self.sup.view(now, &name()).and_then(|view| view.pid);
                        let result = self.sup.handle_switch(now, &name(), &release, strategy);
                        // The supervisor's actions are performed before the answer.
                        while let Some(action) = self.sup.poll_action() {
                            if let SupAction::Spawn { agent } = action {
                                self.next_pid += 1;
                                self.sup.handle_spawned(now, &agent, Ok(self.next_pid));
                            }
                        }
                        let after = self.sup.view(now, &name());
                        self.dep.handle_done(
                            now,
                            Done::Switched {
                                result,
                                before,
                                after,
                            },
                        );
                    }
                    Action::Retire => {
                        self.sup.handle_retire(now, &name());
                        self.dep.handle_done(now, Done::Retired(None));
                    }
                    Action::Handback { reason } => {
                        self.sup.handle_handback(now, &name(), &reason);
                    }
                    Action::Note { .. }
                    | Action::CrashPoint(_)
                    | Action::RaiseAlert(_)
                    | Action::ResolveAlert { .. }
                    | Action::KillCommand { .. }
                    | Action::Finished => {}
                    other => self.work.push_back(other),
                }
            }
            if !busy {
                break;
            }
        }
    }

    /// Deadlines of both machines that are due by `now`.
    fn tick(&mut self, now: Instant) {
        if self.sup.poll_timeout().is_some_and(|at| at <= now) {
            self.sup.handle_timeout(now);
        }
        if self.dep.poll_timeout().is_some_and(|at| at <= now) {
            self.dep.handle_timeout(now);
        }
        self.drive(now);
    }

    /// Time passes in small steps to `seconds`.
    fn run_to(&mut self, seconds: f64) {
        let mut t = self.t0;
        let end = self.at(seconds);
        while t < end {
            t = (t + secs(0.1)).min(end);
            self.tick(t);
        }
    }

    /// The oldest work waiting for an answer.
    fn next(&mut self) -> Action {
        let log = format!("{:#?}", self.log);
        self.work
            .pop_front()
            .unwrap_or_else(|| panic!("no work waiting for an answer; the log: {log}"))
    }

    fn answer(&mut self, now: Instant, done: Done) {
        self.dep.handle_done(now, done);
        self.drive(now);
    }

    fn exit(&mut self, now: Instant, pid: u32, status: ExitStatus) {
        self.sup.handle_exit(now, pid, status);
        self.drive(now);
    }

    /// Stages v2 and goes through the build and smoke test (none
    /// configured) and the `ready` record, at `seconds`.
    fn through_to_cutover(&mut self, seconds: f64) {
        let now = self.at(seconds);
        assert!(matches!(self.next(), Action::Stage { .. }));
        self.answer(now, Done::Staged(Ok("v2".into())));
        assert!(matches!(self.next(), Action::CheckWorkdir { .. }));
        self.answer(now, Done::Workdir(true));
        assert_eq!(
            self.next(),
            Action::Record {
                version: "v2".into(),
                result: ReleaseResult::Ready,
                detail: None
            }
        );
        self.answer(now, Done::Recorded(Ok(())));
    }

    /// Answers the in-release check, then `current`'s switch.
    fn in_release_and_current(&mut self, now: Instant) {
        assert!(matches!(self.next(), Action::CheckRelease { .. }));
        self.answer(now, Done::InRelease(Ok(())));
        assert!(matches!(self.next(), Action::SwitchCurrent { .. }));
        self.answer(now, Done::Current(Ok(())));
    }

    fn steps(&self) -> Vec<String> {
        self.dep
            .progress()
            .steps
            .iter()
            .map(|step| {
                let state = match step.state {
                    StepState::Running => "running",
                    StepState::Ok => "ok",
                    StepState::Failed => "failed",
                    StepState::Skipped => "skipped",
                };
                format!("{} {state}", step.step)
            })
            .collect()
    }

    fn detail(&self, step: &str) -> String {
        self.dep
            .progress()
            .steps
            .iter()
            .rev()
            .find(|s| s.step == step)
            .and_then(|s| s.detail.clone())
            .unwrap_or_default()
    }

    fn notes(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|action| match action {
                Action::Note { kind, detail } => Some(format!("{kind}: {detail}")),
                _ => None,
            })
            .collect()
    }

    fn crash_points(&self) -> Vec<&'static str> {
        self.log
            .iter()
            .filter_map(|action| match action {
                Action::CrashPoint(step) => Some(*step),
                _ => None,
            })
            .collect()
    }

    fn outcome(&self) -> (Option<DeployOutcome>, String) {
        let progress = self.dep.progress();
        (
            progress.outcome,
            progress.message.clone().unwrap_or_default(),
        )
    }

    fn alerts(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|action| match action {
                Action::RaiseAlert(record) => Some(record.summary.clone()),
                _ => None,
            })
            .collect()
    }
}

fn deploy_job() -> Job {
    Job::Deploy {
        source: "/src/app".into(),
        version: None,
    }
}

fn deploy(extra: &str, deploy: &str) -> Harness {
    Harness::new(extra, deploy, Some("v1"), deploy_job())
}

#[test]
fn a_blue_green_deploy_goes_through_every_step() {
    let mut h = deploy("", DEPLOY);
    let old = h.pid().expect("v1 runs");
    h.through_to_cutover(2.0);
    // The new process starts beside the old one, which keeps serving.
    let new = h.pid().expect("v2 starts");
    assert_ne!(new, old);
    assert_eq!(h.sup.outgoing_pid(&name()), Some(old));
    assert_eq!(
        h.steps().last().map(String::as_str),
        Some("cutover running")
    );
    // Ready once it counts as running (ready_after = 1s).
    h.run_to(3.0);
    h.in_release_and_current(h.at(3.0));
    assert_eq!(h.detail("cutover"), format!("v2 is live (pid {new})"));
    assert!(h.log.contains(&Action::Retire));
    // Verification: 10 s of the new process up.
    assert_eq!(h.steps().last().map(String::as_str), Some("verify running"));
    h.run_to(12.9);
    assert_eq!(h.steps().last().map(String::as_str), Some("verify running"));
    h.run_to(13.0);
    assert_eq!(
        h.next(),
        Action::Record {
            version: "v2".into(),
            result: ReleaseResult::Deployed,
            detail: None
        }
    );
    h.answer(h.at(13.0), Done::Recorded(Ok(())));
    assert_eq!(h.next(), Action::Cleanup { keep: 2 });
    assert!(h.log.contains(&Action::ResolveAlert {
        fingerprint: "deploy:a".into()
    }));
    h.answer(h.at(13.0), Done::Cleaned(Ok(vec!["v0".into()])));
    assert_eq!(
        h.steps(),
        [
            "stage ok",
            "build skipped",
            "smoke_test skipped",
            "cutover ok",
            "verify ok",
            "cleanup ok"
        ]
    );
    assert_eq!(h.detail("verify"), "up and healthy for 10s");
    assert_eq!(h.detail("cleanup"), "removed v0");
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::Deployed),
            "v2 is live and verified".into()
        )
    );
    assert_eq!(h.log.last(), Some(&Action::Finished));
    assert!(h.dep.is_finished());
    assert_eq!(
        h.crash_points(),
        ["stage", "cutover", "current", "verify", "cleanup"]
    );
    let notes = h.notes();
    assert_eq!(
        notes.first().map(String::as_str),
        Some("deploy_started: deploying /src/app")
    );
    assert!(notes.contains(&"deploy_step: verify ok in 10.00s: up and healthy for 10s".into()));
    assert!(notes.contains(&"deploy_step: build skipped in 0.00s: no build command".into()));
    assert_eq!(
        notes.last().map(String::as_str),
        Some("deployed: v2 is live and verified")
    );
    // Step durations come from the clock the deploy was fed.
    let cutover = &h.dep.progress().steps[3];
    assert_eq!(cutover.duration_ms, 1000);
}

#[test]
fn build_and_smoke_test_run_in_the_release_and_their_failures_discard_it() {
    for step in ["build", "smoke_test"] {
        let mut h = deploy(
            "cwd = \"app\"",
            &format!("{DEPLOY}build = [\"make\"]\nsmoke_test = [\"./check\"]\n"),
        );
        let now = h.at(2.0);
        assert!(matches!(h.next(), Action::Stage { .. }));
        h.answer(now, Done::Staged(Ok("v2".into())));
        assert_eq!(
            h.next(),
            Action::RunCommand {
                step: CommandStep::Build,
                argv: vec!["make".into()],
                version: "v2".into(),
                subdir: PathBuf::new(),
            }
        );
        h.answer(now, Done::CommandStarted(Ok(500)));
        let fails = step == "build";
        let status = if fails {
            ExitStatus::Code(2)
        } else {
            ExitStatus::Code(0)
        };
        let tail = if fails { "  no rule" } else { "" };
        h.answer(
            h.at(4.0),
            Done::CommandEnded {
                status,
                tail: tail.into(),
            },
        );
        if !fails {
            assert_eq!(
                h.next(),
                Action::CheckWorkdir {
                    version: "v2".into(),
                    subdir: "app".into()
                }
            );
            h.answer(h.at(4.0), Done::Workdir(true));
            assert_eq!(
                h.next(),
                Action::RunCommand {
                    step: CommandStep::SmokeTest,
                    argv: vec!["./check".into()],
                    version: "v2".into(),
                    subdir: "app".into(),
                }
            );
            h.answer(h.at(4.0), Done::CommandStarted(Ok(501)));
            h.answer(
                h.at(5.0),
                Done::CommandEnded {
                    status: ExitStatus::Code(1),
                    tail: String::new(),
                },
            );
        }
        let (command, why) = if fails {
            (
                "make",
                "make ended with exit code 2; its last output:\n  no rule",
            )
        } else {
            ("./check", "./check ended with exit code 1")
        };
        let _ = command;
        assert_eq!(
            h.next(),
            Action::Discard {
                version: "v2".into(),
                detail: format!("{step}: {}", why.lines().next().unwrap_or_default()),
            }
        );
        assert_eq!(h.detail(step), why);
        assert_eq!(h.steps().last(), Some(&format!("{step} failed")));
        assert_eq!(h.dep.progress().outcome, None, "ends once discarded");
        h.answer(h.at(5.0), Done::Recorded(Ok(())));
        assert_eq!(
            h.outcome(),
            (
                Some(DeployOutcome::Failed),
                format!(
                    "{step} failed; the live release is untouched: {}",
                    why.lines().next().unwrap_or_default()
                )
            )
        );
        assert!(h
            .notes()
            .last()
            .is_some_and(|note| note.starts_with("deploy_failed: ")));
        // Nothing was switched.
        assert!(!h.log.iter().any(|a| matches!(a, Action::Switch { .. })));
        if fails {
            assert_eq!(h.crash_points(), ["stage"]);
        } else {
            assert_eq!(h.crash_points(), ["stage", "build"]);
        }
    }
}

#[test]
fn a_command_that_runs_out_of_time_is_killed_and_fails_its_step() {
    for (step, timeout) in [("build", 30.0), ("smoke_test", 20.0)] {
        let mut h = deploy(
            "",
            &format!(
                "{DEPLOY}build = [\"make\"]\nbuild_timeout = \"30s\"\nsmoke_test = [\"./check\"]\nsmoke_timeout = \"20s\"\n"
            ),
        );
        h.next();
        h.answer(h.at(2.0), Done::Staged(Ok("v2".into())));
        h.next();
        h.answer(h.at(2.0), Done::CommandStarted(Ok(500)));
        let mut started = 2.0;
        if step == "smoke_test" {
            h.answer(
                h.at(3.0),
                Done::CommandEnded {
                    status: ExitStatus::Code(0),
                    tail: String::new(),
                },
            );
            h.next();
            h.answer(h.at(3.0), Done::Workdir(true));
            h.next();
            h.answer(h.at(3.0), Done::CommandStarted(Ok(501)));
            started = 3.0;
        }
        let pid = if step == "build" { 500 } else { 501 };
        assert_eq!(h.dep.poll_timeout(), Some(h.at(started + timeout)));
        h.tick(h.at(started + timeout - 0.1));
        assert!(!h.log.contains(&Action::KillCommand { pid }));
        h.tick(h.at(started + timeout));
        assert!(h.log.contains(&Action::KillCommand { pid }));
        // The step ends once the killed command is reaped.
        assert_eq!(h.steps().last(), Some(&format!("{step} running")));
        h.answer(
            h.at(started + timeout + 0.1),
            Done::CommandEnded {
                status: ExitStatus::Signal(9),
                tail: String::new(),
            },
        );
        let command = if step == "build" { "make" } else { "./check" };
        assert_eq!(
            h.detail(step),
            format!("{command} took longer than {timeout}s and was killed")
        );
        assert!(matches!(h.next(), Action::Discard { .. }));
        h.answer(h.at(60.0), Done::Recorded(Ok(())));
        assert_eq!(h.dep.progress().outcome, Some(DeployOutcome::Failed));
    }
}

#[test]
fn a_command_that_cannot_start_fails_its_step() {
    let mut h = deploy("", &format!("{DEPLOY}build = [\"nope\"]\n"));
    h.next();
    h.answer(h.at(2.0), Done::Staged(Ok("v2".into())));
    h.next();
    h.answer(
        h.at(2.0),
        Done::CommandStarted(Err("nope: not found".into())),
    );
    assert_eq!(h.detail("build"), "nope: not found");
    assert!(matches!(h.next(), Action::Discard { .. }));
}

#[test]
fn staging_that_fails_leaves_everything_as_it_was() {
    let mut h = deploy("", DEPLOY);
    assert!(
        matches!(h.next(), Action::Stage { max_size, .. } if max_size == crate::deploy::DEFAULT_MAX_SIZE)
    );
    h.answer(h.at(2.0), Done::Staged(Err("too big\nmore".into())));
    assert_eq!(h.steps(), ["stage failed"]);
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::Failed),
            "staging failed; the live release is untouched: too big".into()
        )
    );
    assert!(h.work.is_empty(), "nothing staged, nothing to discard");
    assert!(h.crash_points().is_empty());
}

#[test]
fn a_release_without_the_agents_directory_is_discarded_before_the_smoke_test() {
    let mut h = deploy("cwd = \"app\"", DEPLOY);
    h.next();
    h.answer(h.at(2.0), Done::Staged(Ok("v2".into())));
    h.next();
    h.answer(h.at(2.0), Done::Workdir(false));
    let error =
        "release v2 has no directory app, where the agent runs (its `cwd` inside the release)";
    assert_eq!(
        h.next(),
        Action::Discard {
            version: "v2".into(),
            detail: format!("stage: {error}")
        }
    );
    h.answer(h.at(2.0), Done::Recorded(Ok(())));
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::Failed),
            format!("{error}; the live release is untouched")
        )
    );
    assert_eq!(h.steps(), ["stage ok", "build skipped"]);
}

#[test]
fn a_ready_record_that_cannot_be_written_fails_the_deploy() {
    let mut h = deploy("", DEPLOY);
    h.next();
    h.answer(h.at(2.0), Done::Staged(Ok("v2".into())));
    h.next();
    h.answer(h.at(2.0), Done::Workdir(true));
    h.next();
    h.answer(h.at(2.0), Done::Recorded(Err("disk full".into())));
    assert_eq!(
        h.outcome(),
        (
            Some(DeployOutcome::Failed),
            "recording v2: disk full".into()
        )
    );
}

#[test]
fn answers_nothing_waits_for_are_ignored() {
    let mut h = deploy("", DEPLOY);
    h.answer(h.at(2.0), Done::Cleaned(Ok(Vec::new())));
    h.answer(
        h.at(2.0),
        Done::Probed {
            group: None,
            verdict: Ok(()),
        },
    );
    assert_eq!(h.steps(), ["stage running"]);
    assert!(matches!(h.next(), Action::Stage { .. }));
    assert!(h.work.is_empty());
}

#[test]
fn release_results_keep_their_names() {
    for result in ReleaseResult::ALL {
        assert_eq!(ReleaseResult::parse(result.as_str()), Some(result));
        let json = serde_json_like(result);
        assert_eq!(json, result.as_str());
    }
    assert_eq!(ReleaseResult::RolledBack.as_str(), "rolled_back");
    assert_eq!(ReleaseResult::parse("gone"), None);
}

/// The serde name of a result.
fn serde_json_like(result: ReleaseResult) -> String {
    serde_json::to_string(&result)
        .expect("serializes")
        .trim_matches('"')
        .to_owned()
}

#[test]
fn health_of_the_view_is_what_readiness_reads() {
    // A guard on the harness: the supervisor's verdict reaches the view.
    let health = "[agents.a.health]\nhttp = \"http://127.0.0.1:8001/\"\ninterval = \"1s\"\nstart_period = \"0s\"";
    let mut h = deploy(health, DEPLOY);
    h.run_to(1.5);
    let view = h.sup.view(h.at(1.5), &name()).expect("a");
    assert_eq!(view.health, Health::Healthy);
}

#[test]
fn a_note_of_the_daemon_is_added_to_the_step_it_performed() {
    let mut h = deploy("", DEPLOY);
    h.through_to_cutover(2.0);
    h.run_to(3.0);
    h.in_release_and_current(h.at(3.0));
    let new = h.pid().expect("v2 runs");
    // The socket handover is noted after the cutover ended.
    h.dep
        .annotate("cutover", "the old process was drained at once");
    assert_eq!(
        h.detail("cutover"),
        format!("v2 is live (pid {new})\nthe old process was drained at once")
    );
    // A step that never ran is left alone.
    h.dep.annotate("rollback", "nothing");
    assert!(h
        .dep
        .progress()
        .steps
        .iter()
        .all(|step| step.step != "rollback"));
}
