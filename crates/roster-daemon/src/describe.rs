//! `GET /v1/describe?agent=NAME`: what exactly runs for an agent. The loop
//! gathers what only it knows ([`Gathered`]: the applied spec, the
//! `env_file` and secrets it holds, the limits and sockets it set up);
//! [`finish`] then does the blocking part on the blocking pool (the user
//! database, the program's lookup in PATH, the `current` link, the
//! journal's exits) and builds the answer with `roster_core::describe`,
//! which masks secret values before anything is serialized.
//!
//! The environment is layered as `spawn::spawn_agent` and
//! `daemon/launch.rs` layer it; a change there must be made here too.

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group};

use roster_core::api::{
    AgentState, DescribeReply, DescribedCommand, DescribedGroup, DescribedLimits, DescribedLog,
    DescribedRelease, DescribedSocket, DescribedUser, EnvSource,
};
use roster_core::describe::{self, Environment};
use roster_core::units::format_duration;
use roster_core::{AgentName, AgentSpec, LogConfig};

use crate::home::Home;
use crate::identity::{self, Account};
use crate::journal::{read_events, EventFilter};
use crate::releases::Releases;
use crate::spawn;

/// Journal events read for the last exits (the agent's newest).
const EVENTS_READ: u32 = 400;

/// What the loop knows of an agent for `describe`. Holds the agent's
/// secret values (to mask them wherever they would show): its `Debug`
/// names them only, and it never leaves the daemon.
pub struct Gathered {
    /// The agent.
    pub name: AgentName,
    /// Its applied spec.
    pub spec: AgentSpec,
    /// State and main process.
    pub state: (AgentState, Option<u32>),
    /// The release the supervisor says its next process runs, if it says.
    pub release: Option<String>,
    /// Its `env_file`'s variables, as read at the apply.
    pub env_file: Vec<(String, String)>,
    /// Its secrets.
    pub secrets: Vec<(String, String)>,
    /// Its limits, as the limits room set them up.
    pub limits: DescribedLimits,
    /// Its sockets.
    pub sockets: Vec<DescribedSocket>,
    /// The applied `[log]`.
    pub log: LogConfig,
    /// The home, and `ROSTER_HOME` as agents see it.
    pub home: (PathBuf, PathBuf),
}

impl std::fmt::Debug for Gathered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs.iter().map(|(name, _)| name.clone()).collect()
        };
        f.debug_struct("Gathered")
            .field("name", &self.name)
            .field("env_file", &names(&self.env_file))
            .field("secrets", &names(&self.secrets))
            .finish_non_exhaustive()
    }
}

/// The answer, built off the loop (it reads the user database, the file
/// system and the journal).
pub fn finish(gathered: Gathered) -> DescribeReply {
    let Gathered {
        name,
        spec,
        state,
        release,
        env_file,
        secrets,
        limits,
        sockets,
        log,
        home: (home, home_env),
    } = gathered;
    let secret_values: Vec<String> = secrets.iter().map(|(_, value)| value.clone()).collect();
    let account = identity::resolve(&spec.identity);
    let switched = account.as_ref().is_ok_and(identity::needs_switch);
    let user = user(&account, switched);

    let described_release = spec.deploy.as_ref().map(|deploy| {
        let releases = Releases::new(&home, &name);
        let version = release.or_else(|| {
            std::fs::read_link(releases.current_link())
                .ok()
                .and_then(|target| Some(target.file_name()?.to_str()?.to_owned()))
        });
        DescribedRelease {
            path: version
                .as_ref()
                .map(|version| releases.release_dir(version).display().to_string()),
            version,
            current: releases.current_link().display().to_string(),
            shared: releases.shared_dir().display().to_string(),
            strategy: deploy.strategy.as_str().to_owned(),
            verify_for: format_duration(deploy.verify_for),
            keep: deploy.keep,
        }
    });
    let cwd = match &described_release {
        Some(release) if spec.release_cwd => match &release.path {
            // An empty subdirectory is the release's top (no trailing `/`).
            Some(path) if spec.release_subdir.as_os_str().is_empty() => PathBuf::from(path),
            Some(path) => Path::new(path).join(&spec.release_subdir),
            None => spec.cwd.clone(),
        },
        _ => spec.cwd.clone(),
    };

    let mut environment = Environment::default();
    for (key, value) in spawn::daemon_environment() {
        environment.set(
            key.to_string_lossy(),
            value.to_string_lossy(),
            EnvSource::Inherited,
        );
    }
    if switched {
        environment.set("PATH", spawn::SYSTEM_PATH, EnvSource::Default);
    }
    environment.set_config(&spec);
    for (key, value) in env_file {
        environment.set(key, value, EnvSource::EnvFile);
    }
    for (key, value) in secrets {
        environment.set(key, value, EnvSource::Secret);
    }
    if let Some(release) = &described_release {
        if let Some(version) = &release.version {
            environment.set("ROSTER_RELEASE", version.as_str(), EnvSource::Default);
        }
        environment.set("ROSTER_SHARED", release.shared.as_str(), EnvSource::Default);
    }
    if let (true, Ok(account)) = (switched, &account) {
        environment.set("HOME", account.home.to_string_lossy(), EnvSource::Default);
        environment.set("USER", account.name.as_str(), EnvSource::Default);
        environment.set("LOGNAME", account.name.as_str(), EnvSource::Default);
    }
    environment.set(
        "ROSTER_HOME",
        home_env.to_string_lossy(),
        EnvSource::Default,
    );
    environment.set("ROSTER_AGENT", name.as_str(), EnvSource::Default);
    environment.remove(spawn::HELPER_MARKER);
    if !sockets.is_empty() {
        let names: Vec<&str> = sockets.iter().map(|socket| socket.name.as_str()).collect();
        environment.set("LISTEN_FDS", sockets.len().to_string(), EnvSource::Default);
        environment.set("LISTEN_FDNAMES", names.join(":"), EnvSource::Default);
        let pid = state
            .1
            .map_or_else(|| "the agent's pid".to_owned(), |pid| pid.to_string());
        environment.set("LISTEN_PID", pid, EnvSource::Default);
    }

    let (program, program_error) = program(&spec.command, &cwd, environment.get("PATH"));
    let via_shim = !sockets.is_empty()
        || !limits.cgroups.is_empty()
        || limits
            .items
            .iter()
            .any(|item| item.enforced_by.starts_with("rlimit"))
        || switched;
    let command = DescribedCommand {
        argv: spec
            .command
            .iter()
            .map(|argument| describe::mask_text(argument, &secret_values))
            .collect(),
        program: program.map(|path| describe::mask_text(&path, &secret_values)),
        program_error: program_error.map(|error| describe::mask_text(&error, &secret_values)),
        cwd: cwd.display().to_string(),
        via_shim,
    };

    let paths = Home::new(home.clone());
    let events = read_events(
        &paths.journal(),
        &EventFilter {
            agents: vec![name.to_string()],
            limit: Some(EVENTS_READ),
            ..EventFilter::default()
        },
    );
    let last_exits = match events {
        Ok(events) => describe::last_exits(&events),
        Err(error) => {
            tracing::warn!(agent = %name, "describe: reading the journal: {error}");
            Vec::new()
        }
    };

    DescribeReply {
        name: name.to_string(),
        state: state.0,
        pid: state.1,
        command,
        user,
        environment: environment.described(&secret_values),
        limits,
        sockets,
        release: described_release,
        checks: describe::checks(&spec, &secret_values),
        log: DescribedLog {
            path: paths.agent_log(name.as_str()).display().to_string(),
            max_size_bytes: log.max_size,
            keep: log.keep,
            compress: log.compress,
            stderr_path: (spec.stderr == roster_core::config::StderrMode::Separate)
                .then(|| paths.agent_err_log(name.as_str()).display().to_string()),
        },
        restart: describe::restart(&spec, last_exits),
    }
}

/// The program argv[0] names, found as the spawn finds it: a name with a
/// `/` is a path from the working directory, any other is looked up in
/// the agent's PATH. (An agent of another user has it looked up again as
/// that user by the exec shim; the answer is the same unless that user
/// may not reach it, which `roster check` warns about.)
fn program(argv: &[String], cwd: &Path, path: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(name) = argv.first() else {
        return (None, Some("the command is empty".into()));
    };
    let search = path.map(std::ffi::OsStr::new);
    match spawn::resolve_program(name, cwd, search) {
        Ok(found) => {
            let found = if found.is_relative() {
                cwd.join(found)
            } else {
                found
            };
            if found.is_file() {
                (Some(found.display().to_string()), None)
            } else {
                (None, Some(format!("{}: no such file", found.display())))
            }
        }
        Err(error) => (None, Some(error)),
    }
}

/// The user section: the resolved account, and the groups the agent runs
/// with (the account's when roster switches to it, else the daemon's own).
fn user(account: &Result<Account, String>, switched: bool) -> DescribedUser {
    let group = |gid: u32| DescribedGroup {
        name: Group::from_gid(Gid::from_raw(gid))
            .ok()
            .flatten()
            .map(|group| group.name),
        gid,
    };
    match account {
        Ok(account) => {
            let (gid, groups) = if switched {
                (account.gid, account.groups.clone())
            } else {
                let own: Vec<u32> = nix::unistd::getgroups()
                    .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
                    .unwrap_or_default();
                (Gid::effective().as_raw(), own)
            };
            DescribedUser {
                name: Some(account.name.clone()),
                uid: Some(account.uid),
                group: Some(group(gid)),
                groups: groups.into_iter().map(group).collect(),
                switched,
                error: None,
            }
        }
        Err(error) => DescribedUser {
            name: None,
            uid: None,
            group: None,
            groups: Vec::new(),
            switched: false,
            error: Some(error.clone()),
        },
    }
}
