//! `roster deploy`, `roster rollback` and `roster releases`.
//!
//! A deploy or a rollback runs in the daemon: the CLI asks for one, then
//! polls `GET /v1/deploy?agent=NAME` and prints each step as it finishes.
//! Exit codes: 0 deployed, 1 failed or refused, 3 rolled back (deploy
//! only), 4 when the outcome is unknown (the daemon went away, or the
//! timeout passed first).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use roster_core::api::{
    DeployOutcome, DeployProgress, DeployRequest, DeployStep, ReleaseRecord, ReleasesReply,
    RollbackRequest, StepState,
};
use roster_store::Home;

use crate::client::{ApiError, Client, NotRunning};

/// How often the progress is polled.
const POLL: Duration = Duration::from_millis(100);

/// How long an answer about another deploy (a lower id) is tolerated
/// before concluding the daemon restarted and forgot ours.
const STALE_GRACE: Duration = Duration::from_secs(5);

/// Consecutive failed polls (other than "no daemon") before giving up.
const POLL_ERRORS: u32 = 20;

/// The exit code for an unknown outcome.
const UNKNOWN: u8 = 4;

/// How the progress is shown while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Display {
    /// Finished steps, plus an updating line for the running one.
    Terminal,
    /// Finished steps only, each once.
    Plain,
    /// Nothing until the end, then the final progress as JSON.
    Json,
}

/// Runs `roster deploy NAME SOURCE`.
pub fn deploy(
    home: &Home,
    name: &str,
    source: &Path,
    version: Option<String>,
    json: bool,
    timeout: Duration,
) -> Result<ExitCode> {
    let source = source_path(source)?;
    let request = DeployRequest {
        agent: name.to_owned(),
        source: source.display().to_string(),
        version,
    };
    let client = super::client(home);
    let begun: DeployProgress = client.post("/v1/deploy", &request)?;
    follow(&client, name, "deploy", begun, display(json), timeout)
}

/// Runs `roster rollback NAME`.
pub fn rollback(
    home: &Home,
    name: &str,
    to: Option<String>,
    json: bool,
    timeout: Duration,
) -> Result<ExitCode> {
    let request = RollbackRequest {
        agent: name.to_owned(),
        to,
    };
    let client = super::client(home);
    let begun: DeployProgress = client.post("/v1/rollback", &request)?;
    follow(&client, name, "rollback", begun, display(json), timeout)
}

/// Runs `roster releases NAME`.
pub fn releases(home: &Home, name: &str, json: bool) -> Result<ExitCode> {
    let path = format!("/v1/releases?agent={}", percent_encode(name));
    let reply: ReleasesReply = super::client(home).get(&path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print!("{}", releases_table(name, &reply.releases));
    }
    Ok(ExitCode::SUCCESS)
}

fn display(json: bool) -> Display {
    if json {
        Display::Json
    } else if std::io::stdout().is_terminal() {
        Display::Terminal
    } else {
        Display::Plain
    }
}

/// SOURCE as an absolute path (the daemon has another working directory),
/// checking that it exists.
fn source_path(source: &Path) -> Result<PathBuf> {
    let absolute = if source.is_absolute() {
        source.to_path_buf()
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(source)
    };
    if let Err(error) = std::fs::metadata(&absolute) {
        bail!(
            "cannot read the release source {}: {error}\n  hint: pass a directory or a .tar.gz",
            absolute.display()
        );
    }
    Ok(absolute)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What following a deploy came to.
enum Followed {
    /// It ended.
    Done(DeployProgress),
    /// No outcome: why, and the last progress seen.
    Unknown(String, DeployProgress),
}

/// Polls until the deploy `begun` has an outcome, showing its steps;
/// prints the end and gives the exit code.
fn follow(
    client: &Client,
    name: &str,
    kind: &str,
    begun: DeployProgress,
    display: Display,
    timeout: Duration,
) -> Result<ExitCode> {
    let mut shown = Shown::new(display);
    let followed = poll(client, name, begun, timeout, |progress| {
        shown.update(progress)
    });
    let (progress, unknown) = match followed {
        Followed::Done(progress) => (progress, None),
        Followed::Unknown(why, progress) => (progress, Some(why)),
    };
    shown.update(&progress);
    shown.finish();
    if display == Display::Json {
        println!("{}", serde_json::to_string_pretty(&progress)?);
    }
    if let Some(why) = unknown {
        eprintln!(
            "error: the {kind}'s outcome is unknown: {why}\n  hint: check `roster releases {name}`"
        );
        return Ok(ExitCode::from(UNKNOWN));
    }
    let Some(outcome) = progress.outcome else {
        // `poll` only ends `Done` with an outcome.
        bail!("the {kind} ended without an outcome");
    };
    if display != Display::Json {
        let message = outcome_message(&progress, outcome);
        if outcome == DeployOutcome::Deployed {
            println!("{message}");
        } else {
            eprintln!("{message}");
        }
    }
    Ok(ExitCode::from(exit_code(kind, outcome)))
}

/// 0 deployed, 1 failed, 3 rolled back; a rollback is 1 unless deployed.
fn exit_code(kind: &str, outcome: DeployOutcome) -> u8 {
    match (kind, outcome) {
        (_, DeployOutcome::Deployed) => 0,
        ("deploy", DeployOutcome::RolledBack) => 3,
        _ => 1,
    }
}

/// The daemon's message, or one made from the outcome.
fn outcome_message(progress: &DeployProgress, outcome: DeployOutcome) -> String {
    if let Some(message) = progress.message.as_deref().filter(|text| !text.is_empty()) {
        return message.to_owned();
    }
    let version = progress.version.as_deref().unwrap_or("the release");
    match outcome {
        DeployOutcome::Deployed => format!("{}: {version} is live", progress.agent),
        DeployOutcome::Failed => format!(
            "{}: the {} failed; the live release is untouched",
            progress.agent, progress.kind
        ),
        DeployOutcome::RolledBack => format!(
            "{}: {version} was rolled back to {}",
            progress.agent,
            progress
                .previous
                .as_deref()
                .unwrap_or("the previous release")
        ),
    }
}

/// Polls `GET /v1/deploy?agent=NAME` every [`POLL`] until the deploy with
/// `begun`'s id has an outcome, calling `seen` with each answer about it.
fn poll(
    client: &Client,
    name: &str,
    begun: DeployProgress,
    timeout: Duration,
    mut seen: impl FnMut(&DeployProgress),
) -> Followed {
    let path = format!("/v1/deploy?agent={}", percent_encode(name));
    let started = Instant::now();
    let mut last = begun;
    let mut errors = 0;
    let mut stale_since: Option<Instant> = None;
    loop {
        if last.outcome.is_some() {
            return Followed::Done(last);
        }
        seen(&last);
        if started.elapsed() >= timeout {
            return Followed::Unknown(
                format!(
                    "no outcome after {}",
                    roster_core::units::format_duration(timeout)
                ),
                last,
            );
        }
        std::thread::sleep(POLL);
        match client.get::<DeployProgress>(&path) {
            Ok(progress) if progress.id == last.id => {
                errors = 0;
                stale_since = None;
                last = progress;
            }
            Ok(progress) if progress.id > last.id => {
                return Followed::Unknown(
                    format!(
                        "another {} (#{}) began before this one's end was seen",
                        progress.kind, progress.id
                    ),
                    last,
                );
            }
            Ok(_) => {
                // An older deploy: the daemon may not have published ours
                // yet, or it restarted and forgot it.
                errors = 0;
                let since = *stale_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= STALE_GRACE {
                    return Followed::Unknown(
                        "the daemon no longer knows of it (did it restart?)".to_owned(),
                        last,
                    );
                }
            }
            Err(error) if error.downcast_ref::<NotRunning>().is_some() => {
                return Followed::Unknown("the daemon went away".to_owned(), last);
            }
            Err(error)
                if error
                    .downcast_ref::<ApiError>()
                    .is_some_and(|api| api.status == 404) =>
            {
                return Followed::Unknown(
                    format!("the daemon no longer knows of it ({error})"),
                    last,
                );
            }
            Err(error) => {
                errors += 1;
                if errors >= POLL_ERRORS {
                    return Followed::Unknown(
                        format!("the daemon stopped answering: {error:#}"),
                        last,
                    );
                }
            }
        }
    }
}

/// What has been printed of a deploy's steps.
struct Shown {
    display: Display,
    /// Finished steps printed.
    printed: usize,
    /// Whether an updating line is on screen.
    running_line: bool,
}

impl Shown {
    fn new(display: Display) -> Self {
        Self {
            display,
            printed: 0,
            running_line: false,
        }
    }

    /// Prints the steps that finished since the last call, and on a
    /// terminal an updating line for the running one.
    fn update(&mut self, progress: &DeployProgress) {
        if self.display == Display::Json {
            return;
        }
        let mut out = std::io::stdout().lock();
        for step in progress.steps.iter().skip(self.printed) {
            if step.state == StepState::Running {
                if self.display == Display::Terminal {
                    let _ = write!(out, "\r{}\x1b[K", running_line(step));
                    self.running_line = true;
                }
                break;
            }
            if self.running_line {
                let _ = write!(out, "\r\x1b[K");
                self.running_line = false;
            }
            let _ = writeln!(out, "{}", step_line(step));
            self.printed += 1;
        }
        let _ = out.flush();
    }

    /// Clears an updating line left on screen.
    fn finish(&mut self) {
        if self.running_line {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
            self.running_line = false;
        }
    }
}

/// `0.12s`, `12.34s`, `2m05s`.
fn step_duration(millis: u64) -> String {
    if millis < 60_000 {
        format!("{}.{:02}s", millis / 1000, millis % 1000 / 10)
    } else {
        let seconds = millis / 1000;
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    }
}

fn state_name(state: StepState) -> &'static str {
    match state {
        StepState::Running => "running",
        StepState::Ok => "ok",
        StepState::Failed => "failed",
        StepState::Skipped => "skipped",
    }
}

/// The head of a step line: name, state, duration.
fn step_head(step: &DeployStep) -> String {
    let duration = if step.state == StepState::Skipped {
        "-".to_owned()
    } else {
        step_duration(step.duration_ms)
    };
    format!(
        "  {:<12} {:<7} {duration:>6}",
        step.step,
        state_name(step.state)
    )
}

/// A finished step: one line with its detail, or when the detail has
/// several lines (a smoke test's last output), each under the step.
fn step_line(step: &DeployStep) -> String {
    let head = step_head(step);
    let detail = step.detail.as_deref().unwrap_or("").trim_end();
    if detail.is_empty() {
        return head;
    }
    if !detail.contains('\n') {
        return format!("{head}  {detail}");
    }
    let mut text = head;
    for line in detail.lines() {
        text.push_str("\n      ");
        text.push_str(line.trim_end());
    }
    text
}

/// The updating line for the running step (no detail: it must not wrap).
fn running_line(step: &DeployStep) -> String {
    let mut running = step.clone();
    running.state = StepState::Running;
    step_head(&running)
}

/// At most `max` characters, with `...` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// The releases table, newest first (the daemon's order).
fn releases_table(name: &str, releases: &[ReleaseRecord]) -> String {
    if releases.is_empty() {
        return format!("no releases yet: ship one with `roster deploy {name} DIR`\n");
    }
    let rows: Vec<[String; 6]> = releases
        .iter()
        .map(|release| {
            [
                release.version.clone(),
                release.created.clone(),
                release.deployed.clone().unwrap_or_else(|| "-".to_owned()),
                if release.live { "*" } else { "" }.to_owned(),
                release.result.clone(),
                release
                    .detail
                    .as_deref()
                    .and_then(|detail| detail.lines().find(|line| !line.trim().is_empty()))
                    .map(|line| truncate(line.trim(), 60))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["VERSION", "CREATED", "DEPLOYED", "LIVE", "RESULT", "DETAIL"];
    crate::render::table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, state: StepState, duration_ms: u64, detail: Option<&str>) -> DeployStep {
        DeployStep {
            step: name.to_owned(),
            state,
            duration_ms,
            detail: detail.map(str::to_owned),
        }
    }

    fn release(version: &str, live: bool, result: &str, detail: Option<&str>) -> ReleaseRecord {
        ReleaseRecord {
            version: version.to_owned(),
            created: "2026-11-29T12:00:00Z".to_owned(),
            deployed: live.then(|| "2026-11-29T12:01:00Z".to_owned()),
            live,
            result: result.to_owned(),
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn durations_under_and_over_a_second() {
        assert_eq!(step_duration(0), "0.00s");
        assert_eq!(step_duration(120), "0.12s");
        assert_eq!(step_duration(999), "0.99s");
        assert_eq!(step_duration(1_000), "1.00s");
        assert_eq!(step_duration(12_345), "12.34s");
        assert_eq!(step_duration(59_999), "59.99s");
        assert_eq!(step_duration(60_000), "1m00s");
        assert_eq!(step_duration(125_400), "2m05s");
    }

    #[test]
    fn an_ok_step_is_one_line() {
        let line = step_line(&step(
            "stage",
            StepState::Ok,
            120,
            Some("staged 20261129T120000Z-1a2b3c4d (14 files)"),
        ));
        assert_eq!(
            line,
            "  stage        ok       0.12s  staged 20261129T120000Z-1a2b3c4d (14 files)"
        );
    }

    #[test]
    fn a_skipped_step_has_no_duration() {
        let line = step_line(&step(
            "build",
            StepState::Skipped,
            0,
            Some("no build command"),
        ));
        assert_eq!(line, "  build        skipped      -  no build command");
        assert_eq!(
            step_line(&step("cleanup", StepState::Skipped, 0, None)),
            "  cleanup      skipped      -"
        );
    }

    #[test]
    fn a_failed_multi_line_detail_goes_under_the_step() {
        let line = step_line(&step(
            "smoke_test",
            StepState::Failed,
            2_500,
            Some(
                "exited with 1; last lines:\nTraceback (most recent call last):\n  KeyError: 'x'\n",
            ),
        ));
        assert_eq!(
            line,
            "  smoke_test   failed   2.50s\n      exited with 1; last lines:\n      Traceback (most recent call last):\n        KeyError: 'x'"
        );
    }

    #[test]
    fn the_running_line_has_no_detail() {
        let line = running_line(&step("verify", StepState::Running, 3_200, Some("watching")));
        assert_eq!(line, "  verify       running  3.20s");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code("deploy", DeployOutcome::Deployed), 0);
        assert_eq!(exit_code("deploy", DeployOutcome::Failed), 1);
        assert_eq!(exit_code("deploy", DeployOutcome::RolledBack), 3);
        assert_eq!(exit_code("rollback", DeployOutcome::Deployed), 0);
        assert_eq!(exit_code("rollback", DeployOutcome::Failed), 1);
        assert_eq!(exit_code("rollback", DeployOutcome::RolledBack), 1);
    }

    #[test]
    fn messages_fall_back_to_the_outcome() {
        let mut progress = DeployProgress {
            id: 7,
            agent: "web".to_owned(),
            kind: "deploy".to_owned(),
            version: Some("v2".to_owned()),
            previous: Some("v1".to_owned()),
            steps: Vec::new(),
            outcome: Some(DeployOutcome::RolledBack),
            message: None,
        };
        assert_eq!(
            outcome_message(&progress, DeployOutcome::RolledBack),
            "web: v2 was rolled back to v1"
        );
        progress.message = Some("web: v2 is live".to_owned());
        assert_eq!(
            outcome_message(&progress, DeployOutcome::Deployed),
            "web: v2 is live"
        );
    }

    #[test]
    fn an_empty_releases_table_says_how_to_ship_one() {
        assert_eq!(
            releases_table("web", &[]),
            "no releases yet: ship one with `roster deploy web DIR`\n"
        );
    }

    #[test]
    fn releases_table_widens_for_long_versions_and_cuts_details() {
        let long_detail = format!("smoke test failed: {}\nsecond line", "x".repeat(80));
        let table = releases_table(
            "web",
            &[
                release(
                    "a-very-long-version-name-from-ci-build-12345",
                    false,
                    "failed",
                    Some(&long_detail),
                ),
                release("v1", true, "deployed", None),
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("VERSION                                       CREATED"));
        assert!(lines[1]
            .starts_with("a-very-long-version-name-from-ci-build-12345  2026-11-29T12:00:00Z  -"));
        assert!(lines[1].contains("failed"));
        assert!(lines[1].ends_with("xxx..."));
        assert!(!table.contains("second line"));
        let detail = lines[1].rsplit("  ").next().unwrap_or("");
        assert_eq!(detail.chars().count(), 60);
        assert!(lines[2].starts_with("v1 "));
        assert!(lines[2].contains("2026-11-29T12:01:00Z  *     deployed"));
    }

    #[test]
    fn encodes_names() {
        assert_eq!(percent_encode("web-1.a_b"), "web-1.a_b");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn a_missing_source_is_an_error() {
        let error =
            source_path(Path::new("/nonexistent/roster-release")).expect_err("missing source");
        assert!(error.to_string().contains("/nonexistent/roster-release"));
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(source_path(dir.path()).expect("exists"), dir.path());
    }
}
