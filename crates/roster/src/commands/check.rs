//! `roster check`: validate a config file without touching any daemon.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use roster_core::config::{self, AgentSpec, Config};

/// Reads and validates a config file. Relative paths inside it are relative
/// to its directory. The error is a [`roster_core::ConfigError`] when the
/// file is invalid.
pub fn load(file: &Path) -> Result<Config> {
    let absolute = super::config_path(file)?;
    let text = roster_store::config_file::read_config_file(&absolute)
        .with_context(|| format!("reading {}", absolute.display()))?;
    let base = absolute.parent().unwrap_or(Path::new("/"));
    Ok(config::parse(&file.display().to_string(), &text, base)?)
}

/// A blue-green cutover on a shared `[listen]` socket judges the new
/// process by its health check; an exec check that asks the shared port
/// may be answered by the old process instead. roster attributes HTTP and
/// TCP answers itself; an exec check must ask `$ROSTER_PID`.
fn cutover_blind_spot(spec: &roster_core::config::AgentSpec) -> Option<String> {
    let deploy = spec.deploy.as_ref()?;
    let health = spec.health.as_ref()?;
    let roster_core::health::Check::Exec(argv) = &health.check else {
        return None;
    };
    let blue_green = deploy.strategy == roster_core::deploy::Strategy::BlueGreen;
    let asks_its_pid = argv.iter().any(|arg| arg.contains("ROSTER_PID"));
    (blue_green && !spec.listen.is_empty() && !asks_its_pid).then(|| {
        "its exec health check cannot tell the new release from the old during a blue-green cutover \
         (both accept on the [listen] socket)\n  hint: use an http or tcp check (roster attributes their answers), \
         or make the check ask the process $ROSTER_PID"
            .to_owned()
    })
}

/// A blue-green agent with `[listen]` on a kernel that cannot move the old
/// process's queued connections to the new one at cutover: old and new
/// share the socket, and an app that dies at once on its drain signal
/// drops what it was answering. `setting` is the text of
/// `net.ipv4.tcp_migrate_req` (None: no such setting).
fn handover_warning(spec: &AgentSpec, setting: Option<&str>) -> Option<String> {
    let deploy = spec.deploy.as_ref()?;
    if deploy.strategy != roster_core::deploy::Strategy::BlueGreen || spec.listen.is_empty() {
        return None;
    }
    match roster_core::deploy::socket_handover(setting) {
        roster_core::deploy::SocketHandover::Migrate => None,
        roster_core::deploy::SocketHandover::Shared(why) => Some(why),
    }
}

/// The account an agent runs as when that is another user than this
/// command's (then the daemon switches to it): None for the daemon's own
/// user, or a user that does not resolve (the daemon says so).
fn other_account(spec: &AgentSpec) -> Option<roster_daemon::tools::Account> {
    spec.identity.user.as_ref()?;
    let account = roster_daemon::tools::resolve_identity(&spec.identity).ok()?;
    (account.uid != nix::unistd::geteuid().as_raw()).then_some(account)
}

/// The PATH the agent's program is looked up in: its own environment's,
/// else [`roster_daemon::tools::SYSTEM_PATH`] for an agent of another
/// user (the daemon's PATH is not handed to it), else this command's.
fn search_path(spec: &AgentSpec, other_user: bool) -> Option<OsString> {
    spec.environment()
        .into_iter()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| OsString::from(value))
        .or_else(|| other_user.then(|| roster_daemon::tools::SYSTEM_PATH.into()))
        .or_else(|| std::env::var_os("PATH"))
}

/// Agents of another user that cannot reach their directory or program
/// (a project under a 0700 /root): one warning each, naming the path in
/// the way and the user. Warnings, not errors: judged from mode bits here,
/// while the daemon's exec shim tries for real, as the user, and says why
/// in `last_error` if it cannot.
pub fn reach_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, spec) in &config.agents {
        let Some(account) = other_account(spec) else {
            continue;
        };
        let user = &account.name;
        if !spec.release_cwd {
            if let Some(why) = roster_daemon::tools::unreachable(&account, &spec.cwd, true) {
                warnings.push(format!(
                    "agent `{name}` runs as {user}, who cannot enter its directory {}: {why}\n  \
                     hint: let {user} through, or move the agent's files where it can reach them",
                    spec.cwd.display()
                ));
                continue;
            }
        }
        let (Some(program), true) = (spec.command.first(), spec.cwd.is_dir()) else {
            continue;
        };
        let candidates: Vec<PathBuf> = if program.contains('/') {
            vec![spec.cwd.join(program)]
        } else {
            let search_path = search_path(spec, true).unwrap_or_default();
            std::env::split_paths(&search_path)
                .map(|directory| spec.cwd.join(directory).join(program))
                .filter(|candidate| candidate.is_file())
                .collect()
        };
        // Like a shell, the user runs the first one it can reach.
        let problems: Vec<String> = candidates
            .iter()
            .map_while(|candidate| roster_daemon::tools::unreachable(&account, candidate, false))
            .collect();
        if !candidates.is_empty() && problems.len() == candidates.len() {
            warnings.push(format!(
                "agent `{name}` runs as {user}, who cannot run {program}: {}\n  \
                 hint: let {user} through, install the program where it can reach it, or set PATH in the agent's env",
                problems[0]
            ));
        }
    }
    warnings
}

/// Runs `roster check`.
pub fn run(file: &Path) -> Result<ExitCode> {
    let config = load(file)?;
    let problems = problems(file, &config);
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{}: {problem}", file.display());
        }
        return Ok(ExitCode::from(1));
    }
    println!(
        "{}: ok, {} agent{}",
        file.display(),
        config.agents.len(),
        if config.agents.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// What `roster check` finds in a valid config beyond its text: each
/// problem returned (a working directory that does not exist, an
/// unreadable metrics token), each warning printed to stderr as
/// `FILE: warning: ...`.
pub fn problems(file: &Path, config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, spec) in &config.agents {
        // An agent shipped as releases runs in its release, which `check`
        // cannot see (it is the daemon's).
        if !spec.release_cwd && !spec.cwd.is_dir() {
            problems.push(format!(
                "agent `{name}`: working directory {} does not exist",
                spec.cwd.display()
            ));
        }
    }
    for (name, spec) in &config.agents {
        let Some(program) = spec.command.first() else {
            continue;
        };
        let search_path = search_path(spec, other_account(spec).is_some());
        // A relative program of a release is in the release.
        let in_release = spec.release_cwd && program.contains('/');
        if spec.cwd.is_dir() && !in_release {
            let found =
                roster_daemon::tools::resolve_program(program, &spec.cwd, search_path.as_deref())
                    .and_then(|path| {
                        if spec.cwd.join(&path).is_file() {
                            Ok(path)
                        } else {
                            Err(format!("{program}: no such file"))
                        }
                    });
            if let Err(error) = found {
                // A warning: it may be installed before the agent starts.
                eprintln!(
                    "{}: warning: agent `{name}`: {error}\n  hint: install it, fix the spelling, or give its full path",
                    file.display()
                );
            }
        }
    }
    for warning in reach_warnings(config) {
        eprintln!("{}: warning: {warning}", file.display());
    }
    for (name, spec) in &config.agents {
        if let Some(warning) = cutover_blind_spot(spec) {
            eprintln!("{}: warning: agent `{name}`: {warning}", file.display());
        }
    }
    let setting = std::fs::read_to_string(roster_core::deploy::MIGRATE_SYSCTL).ok();
    for (name, spec) in &config.agents {
        if let Some(warning) = handover_warning(spec, setting.as_deref()) {
            eprintln!("{}: warning: agent `{name}`: {warning}", file.display());
        }
    }
    if let Some(token_file) = config
        .metrics
        .as_ref()
        .and_then(|metrics| metrics.bearer_token_file.as_ref())
    {
        if let Err(problem) = roster_store::config_file::read_token_file(token_file) {
            let denied = nix::unistd::access(token_file.as_path(), nix::unistd::AccessFlags::R_OK)
                == Err(nix::errno::Errno::EACCES);
            if denied {
                // The daemon's user may read what this one may not; the
                // apply checks it as that user.
                eprintln!(
                    "{}: warning: [metrics] {problem}\n  hint: `roster apply` checks it as the daemon's user",
                    file.display()
                );
            } else {
                problems.push(format!("[metrics] {problem}"));
            }
        }
    }
    problems
}
