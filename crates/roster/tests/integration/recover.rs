//! `roster recover` (issue #17, item 2) end to end: a crash loop whose
//! cause is gone is started and runs; one whose cause remains is left with
//! the reason; `--dry-run` changes nothing; a stopped daemon is brought
//! up; rotated logs filling a small tmpfs are deleted oldest first; a
//! look-alike process (same command line as an agent) is never touched.

use std::path::Path;
use std::process::{Child, Command, Output};

use roster_core::api::AgentState;
use serde_json::Value;

use crate::util::*;

/// A process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `roster recover --json ARGS`: the exit code and the report.
fn recover(roster: &Roster, args: &[&str]) -> (i32, Value, Output) {
    let mut all = vec!["recover", "--json"];
    all.extend_from_slice(args);
    let output = roster.run(&all);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("recover --json is not JSON ({error}):\n{}", text(&output)));
    (output.status.code().unwrap_or(-1), report, output)
}

/// A project: `loop` fails while MARKER is missing, `web` sleeps (with
/// an argv a look-alike copies).
fn project(roster: &Roster, marker: &Path) -> String {
    let looping = sh_agent(
        "loop",
        &format!(
            "test -f {} || {{ echo marker missing; exit 1; }}; exec sleep 4243",
            marker.display()
        ),
        "restart_delay = \"100ms\"\nstable_after = \"1s\"\ncrash_loop = 3",
    );
    let config = format!("{looping}\n[agents.web]\ncommand = [\"sleep\", \"4242\"]\n");
    roster.config(&config);
    config
}

fn look_alike() -> Guard {
    Guard(
        Command::new("sleep")
            .arg("4242")
            .spawn()
            .expect("the look-alike"),
    )
}

fn failed(roster: &Roster) {
    let _ = roster.run(&["up", "--timeout", "20s"]);
    roster.wait_state("loop", AgentState::Failed, SECS(20));
}

/// Findings (a JSON array) without the `ambient` ones of a shared test
/// machine.
fn own(findings: &Value) -> Vec<&Value> {
    findings
        .as_array()
        .into_iter()
        .flatten()
        .filter(|found| !ambient(found))
        .collect()
}

/// What recover left wrong, without the `ambient` findings.
fn own_left(report: &Value) -> Vec<&Value> {
    own(&report["left"])
}

fn recovery_log(roster: &Roster) -> Option<String> {
    std::fs::read_to_string(roster.home_path().join("recovery.log")).ok()
}

#[test]
fn a_crash_loop_whose_cause_is_gone_is_started_and_one_whose_cause_remains_is_left() {
    let roster = Roster::new();
    let marker = roster.path("marker");
    project(&roster, &marker);
    let mut twin = look_alike();
    failed(&roster);

    // Dry run: the plan, nothing changed, nothing written.
    let output = roster.run(&["recover", "--dry-run"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let plan = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(plan.contains("start loop"), "{plan}");
    assert_eq!(roster.agent("loop").state, AgentState::Failed);
    assert_eq!(recovery_log(&roster), None, "dry-run writes nothing");

    // Not on a terminal, without --yes: refused.
    let output = roster.run(&["recover"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--yes"), "{}", text(&output));
    assert_eq!(roster.agent("loop").state, AgentState::Failed);

    // The cause remains: left, with the reason.
    let (code, report, output) = recover(&roster, &["--yes"]);
    assert_eq!(code, 1, "{report:#}\n{}", text(&output));
    let step = &report["steps"][0];
    assert_eq!(step["agent"], "loop", "{report:#}");
    assert_eq!(step["result"], "left", "{report:#}");
    let detail = step["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("cause remains"), "{detail}");
    assert!(detail.contains("marker missing"), "{detail}");
    assert!(
        report["left"]
            .as_array()
            .is_some_and(|left| left.iter().any(|found| found["agent"] == "loop")),
        "{report:#}"
    );
    assert_eq!(
        twin.0.try_wait().ok().flatten(),
        None,
        "the look-alike runs"
    );

    // The cause removed: started, verified, exit 0, the block written.
    roster.wait_state("loop", AgentState::Failed, SECS(20));
    std::fs::write(&marker, "").expect("marker");
    let (code, report, output) = recover(&roster, &["--yes"]);
    assert_eq!(report["steps"][0]["result"], "done", "{report:#}");
    assert_eq!(own_left(&report), Vec::<&Value>::new(), "{report:#}");
    assert_eq!(
        code,
        ambient_code(&report["left"]),
        "{report:#}\n{}",
        text(&output)
    );
    assert_eq!(roster.agent("loop").state, AgentState::Running);
    let log = recovery_log(&roster).expect("recovery.log");
    assert_eq!(log.matches("=== roster recover ").count(), 2, "{log}");
    assert!(log.contains("done: start loop"), "{log}");
    let mode = std::fs::metadata(roster.home_path().join("recovery.log"))
        .map(|meta| std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777)
        .expect("mode");
    assert_eq!(mode, 0o600);
    assert_eq!(
        twin.0.try_wait().ok().flatten(),
        None,
        "the look-alike runs"
    );

    // Running now (diagnose still warns of its recent deaths): no step.
    let output = roster.run(&["recover", "--dry-run"]);
    let plan = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !plan.lines().any(|line| line.starts_with("step ")),
        "{plan}"
    );
    assert!(plan.contains("loop runs now"), "{plan}");
}

#[test]
fn a_stopped_daemon_is_brought_up_and_a_look_alike_is_untouched() {
    let roster = Roster::new();
    let marker = roster.path("marker");
    std::fs::write(&marker, "").expect("marker");
    project(&roster, &marker);
    roster.up();
    roster.wait_state("web", AgentState::Running, SECS(10));
    roster.ok(&["down"]);
    let mut twin = look_alike();

    let (code, report, output) = recover(&roster, &["--yes", "-f", "roster.toml"]);
    assert_eq!(own_left(&report), Vec::<&Value>::new(), "{report:#}");
    assert_eq!(
        code,
        ambient_code(&report["left"]),
        "{report:#}\n{}",
        text(&output)
    );
    assert_eq!(
        own(&report["found"])[0]["mode"],
        "daemon_unreachable",
        "{report:#}"
    );
    assert_eq!(report["steps"][0]["result"], "done", "{report:#}");
    roster.wait_state("web", AgentState::Running, SECS(10));
    roster.wait_state("loop", AgentState::Running, SECS(10));
    assert_eq!(
        twin.0.try_wait().ok().flatten(),
        None,
        "the look-alike runs"
    );
}

#[test]
fn rotated_logs_filling_the_disk_are_deleted_oldest_first() {
    const TEST: &str = "recover::rotated_logs_filling_the_disk_are_deleted_oldest_first";
    if !needs_root(TEST, "mount a small tmpfs under the home") {
        return;
    }
    let tmpfs = Tmpfs::mount("64M");
    let roster = tmpfs.roster();
    roster.config("[agents.web]\ncommand = [\"sleep\", \"4244\"]\n");
    roster.up();
    roster.wait_state("web", AgentState::Running, SECS(10));
    let logs = roster.home_path().join("logs");
    // Five rotated files of ~12M each (oldest has the highest number),
    // and one file roster did not write.
    let chunk = vec![b'x'; 12 << 20];
    for index in (1..=5).rev() {
        std::fs::write(logs.join(format!("web.log.{index}")), &chunk).expect("rotated");
    }
    std::fs::write(logs.join("notes.txt"), b"mine").expect("other file");
    let (code, report, output) = recover(&roster, &["--yes"]);
    let used = roster_store::disk::used_percent(roster.home_path()).expect("use");
    assert!(used < 85.0, "{used}% used\n{report:#}\n{}", text(&output));
    assert_eq!(
        own(&report["found"])[0]["mode"],
        "disk_nearly_full",
        "{report:#}"
    );
    assert_eq!(report["steps"][0]["result"], "done", "{report:#}");
    assert!(!logs.join("web.log.5").exists(), "the oldest went");
    assert!(logs.join("web.log.1").exists(), "the newest rotated stays");
    assert!(logs.join("web.log").exists(), "the live log stays");
    assert!(logs.join("notes.txt").exists(), "nothing else is touched");
    assert_eq!(own_left(&report), Vec::<&Value>::new(), "{report:#}");
    assert_eq!(code, ambient_code(&report["left"]), "{report:#}");
    assert_eq!(roster.agent("web").state, AgentState::Running);
}
