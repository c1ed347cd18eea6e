//! `roster recover`: collect and classify as `roster diagnose` does, plan
//! with `roster_core::recover::plan`, confirm, run each step (`steps.rs`),
//! diagnose again over the time since recover began, then print the
//! report, journal it as `recovery` events (`record.rs`) and append it to
//! `<home>/recovery.log`. recover signals no process itself: the steps
//! are the API's start and drained restart, starting a daemon, and
//! deleting rotated logs and old releases roster wrote. Exit 0 only when
//! nothing is left wrong.

mod disk;
mod record;
mod restart;
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::fcntl::OFlag;
use serde::Serialize;

use roster_core::api::{AgentState, DeployProgress};
use roster_core::diagnose::{classify, render, Daemon, Finding, Mode};
use roster_core::recover::{plan, Context, DaemonState, Memory, Plan};
use roster_store::Home;

use super::diagnose::{collect, facts, window_words};
use crate::client::ApiError;

/// The options of `roster recover`.
pub struct Options<'a> {
    /// `-f FILE`.
    pub file: Option<&'a Path>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--yes`.
    pub yes: bool,
    /// `--json`.
    pub json: bool,
}

/// How far back the first diagnose reads the journal.
const WINDOW: Duration = Duration::from_secs(3600);

/// One step's outcome, as the report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The finding it answered.
    pub mode: Mode,
    /// The agent, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The step's description.
    pub step: String,
    /// `done`, `left` or `failed`.
    pub result: &'static str,
    /// What happened.
    pub detail: String,
}

/// The config to start a daemon with: `-f`, else `./roster.toml`, else
/// the one the journal says the daemon last applied.
fn daemon_config(home: &Home, file: Option<&Path>) -> Option<PathBuf> {
    if let Some(file) = file {
        return Some(file.to_path_buf());
    }
    let local = Path::new("roster.toml");
    if local.is_file() {
        return std::env::current_dir().ok().map(|cwd| cwd.join(local));
    }
    let detail = roster_store::journal::last_config_applied(&home.journal()).ok()??;
    roster_core::backup::config_path_of_applied(&detail).map(PathBuf::from)
}

fn context(home: &Home, file: Option<&Path>, collected: &collect::Collected) -> Context {
    let daemon = match collected.daemon {
        Daemon::Answered(_) => DaemonState::Answered,
        Daemon::NotRunning { .. } => DaemonState::NotRunning,
        Daemon::TimedOut { .. } | Daemon::Failed { .. } => DaemonState::Hung,
    };
    let config = daemon_config(home, file);
    let parsed = match &collected.parsed {
        Some(parsed) => Some(parsed.clone()),
        None => config
            .as_deref()
            .and_then(|path| super::check::load(path).ok()),
    };
    let wanted = parsed
        .as_ref()
        .map(|config| {
            config
                .agents
                .iter()
                .map(|(name, spec)| (name.to_string(), spec.restart.stable_after))
                .collect()
        })
        .unwrap_or_default();
    let shipped: BTreeSet<String> = parsed
        .as_ref()
        .map(|config| {
            config
                .agents
                .iter()
                .filter(|(_, spec)| spec.deploy.is_some())
                .map(|(name, _)| name.to_string())
                .collect()
        })
        .unwrap_or_default();
    let drain_timeout = |name: &str| {
        parsed
            .as_ref()
            .and_then(|config| {
                config
                    .agents
                    .iter()
                    .find(|(agent, _)| agent.as_str() == name)
                    .map(|(_, spec)| spec.stop.drain_timeout)
            })
            .unwrap_or(Duration::from_secs(10))
    };
    let mut running = BTreeSet::new();
    let mut memory = BTreeMap::new();
    if let Daemon::Answered(status) = &collected.daemon {
        for agent in &status.agents {
            if !matches!(agent.state, AgentState::Running | AgentState::Starting) {
                continue;
            }
            running.insert(agent.name.clone());
            if let (Some(pid), Some(bytes)) = (agent.pid, agent.memory_bytes) {
                memory.insert(
                    agent.name.clone(),
                    Memory {
                        pid,
                        bytes,
                        drain_timeout: drain_timeout(&agent.name),
                    },
                );
            }
        }
    }
    let deploying = match daemon {
        DaemonState::Answered => deploys_in_progress(home, &shipped),
        _ => BTreeMap::new(),
    };
    Context {
        daemon,
        running,
        config: config.map(|path| path.display().to_string()),
        wanted,
        memory,
        shipped,
        deploying,
    }
}

/// The agents of `shipped` with a deploy or rollback under way, as
/// `GET /v1/deploy` says; one the daemon cannot be asked about counts as
/// under way (its releases are left), with why.
fn deploys_in_progress(home: &Home, shipped: &BTreeSet<String>) -> BTreeMap<String, String> {
    let client = crate::commands::client(home);
    let mut deploying = BTreeMap::new();
    for agent in shipped {
        let path = format!(
            "/v1/deploy?agent={}",
            crate::commands::deploy::percent_encode(agent)
        );
        match client.get::<DeployProgress>(&path) {
            Ok(progress) if progress.outcome.is_none() => {
                deploying.insert(
                    agent.clone(),
                    format!("a {} of {agent} is in progress", progress.kind),
                );
            }
            Ok(_) => {}
            Err(error)
                if error
                    .downcast_ref::<ApiError>()
                    .is_some_and(|error| error.status == 404) => {}
            Err(error) => {
                deploying.insert(
                    agent.clone(),
                    format!("the daemon could not say whether a deploy of {agent} is in progress: {error:#}"),
                );
            }
        }
    }
    deploying
}

fn render_plan(plan: &Plan) -> String {
    let mut text = String::new();
    if plan.steps.is_empty() && plan.left.is_empty() {
        text.push_str("nothing to recover\n");
    }
    for (number, step) in plan.steps.iter().enumerate() {
        text.push_str(&format!(
            "step {}: [{}] {}\n",
            number + 1,
            step.mode.as_str(),
            step.description
        ));
    }
    for left in &plan.left {
        let agent = left
            .agent
            .as_deref()
            .map(|a| format!(" {a}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "left: [{}]{agent}: {}\n",
            left.mode.as_str(),
            left.reason
        ));
    }
    text
}

fn render_report(found: &[Finding], outcomes: &[Outcome], after: &[Finding]) -> String {
    let mut text = String::from("found:\n");
    if found.iter().all(|f| !f.is_problem()) {
        text.push_str("  nothing wrong\n");
    }
    for finding in found.iter().filter(|f| f.is_problem()) {
        let agent = finding
            .agent
            .as_deref()
            .map(|a| format!(" {a}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "  {} {}{agent}\n",
            finding.severity,
            finding.mode.as_str()
        ));
    }
    text.push_str("done:\n");
    if outcomes.is_empty() {
        text.push_str("  no step\n");
    }
    for outcome in outcomes {
        text.push_str(&format!(
            "  {}: {}: {}\n",
            outcome.result, outcome.step, outcome.detail
        ));
    }
    text.push_str("still wrong:\n");
    let left: Vec<Finding> = after.iter().filter(|f| f.is_problem()).cloned().collect();
    if left.is_empty() {
        text.push_str("  nothing\n");
    } else {
        for line in render(&left).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

/// Appends `block` to `<home>/recovery.log` (0600, created if missing).
fn append_log(home: &Home, block: &str) -> Result<()> {
    let dir = home.create_verified()?;
    let mut file = dir.open_file(
        "recovery.log",
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
        0o600,
    )?;
    let stamp = roster_store::clock::rfc3339_millis(roster_store::clock::unix_millis());
    file.write_all(format!("=== roster recover {stamp}\n{block}\n").as_bytes())?;
    Ok(())
}

fn confirm(count: usize) -> Result<bool> {
    eprint!("apply these {count} steps? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Runs `roster recover`.
pub fn run(home: &Home, options: Options<'_>) -> Result<ExitCode> {
    let began = Instant::now();
    let file = match options.file {
        Some(file) => match collect::named_config(file) {
            Ok(path) => Some(path),
            Err(error) => {
                eprintln!("error: {error}");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    let collected = collect::collect(home, file.as_deref(), WINDOW, window_words(WINDOW));
    let found = classify(&facts(&collected));
    let context = context(home, file.as_deref(), &collected);
    let plan = plan(&found, &context);
    let empty = plan.steps.is_empty() && plan.left.is_empty();
    if options.dry_run {
        if options.json {
            let value = serde_json::json!({"found": found, "plan": plan});
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print!("{}", render_plan(&plan));
        }
        return Ok(if empty {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if !plan.steps.is_empty() && !options.yes {
        if !std::io::stdin().is_terminal() {
            eprint!("{}", render_plan(&plan));
            eprintln!("error: not on a terminal: pass --yes to apply these steps, or --dry-run to only see them");
            return Ok(ExitCode::from(2));
        }
        eprint!("{}", render_plan(&plan));
        if !confirm(plan.steps.len())? {
            eprintln!("nothing changed");
            return Ok(ExitCode::from(1));
        }
    }
    let mut outcomes: Vec<Outcome> = plan
        .steps
        .iter()
        .map(|step| steps::run(home, step))
        .collect();
    for left in &plan.left {
        outcomes.push(Outcome {
            mode: left.mode,
            agent: left.agent.clone(),
            step: "no step".into(),
            result: "left",
            detail: left.reason.clone(),
        });
    }
    // Judge again over the time since recover began: deaths before it
    // are what it answered, not what is still wrong.
    let since = began.elapsed().max(Duration::from_millis(1));
    let again = collect::collect(home, file.as_deref(), since, window_words(since));
    let after = classify(&facts(&again));
    let mut text = render_report(&found, &outcomes, &after);
    let left: Vec<&Finding> = after.iter().filter(|f| f.is_problem()).collect();
    let journaled = record::journal(home, &record::report(&found, &outcomes, &left));
    text.push_str(&journaled);
    text.push('\n');
    let json =
        serde_json::json!({"found": found, "steps": outcomes, "left": left, "journal": journaled});
    if options.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{text}");
    }
    if let Err(error) = append_log(home, &text) {
        eprintln!(
            "warning: the report could not be appended to {}: {error:#}",
            home.root().join("recovery.log").display()
        );
    }
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
