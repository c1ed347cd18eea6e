//! The config as a model: `Config`, `LogConfig`, `AgentSpec` and their
//! defaults. What a file may say and how it is checked lives in `checking`
//! and the key tables; this is only what a valid file means.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::deploy::{DeploySpec, ListenSpec};
use crate::hardening::{Identity, Limits};
use crate::health::{HealthSpec, HttpTarget};
use crate::name::AgentName;
use crate::notify::NotifySpec;
use crate::signal::Signal;
use crate::watch::{default_agent_rules, WatchRule};

/// A whole, validated config.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How agent logs are rotated.
    pub log: LogConfig,
    /// Where Prometheus metrics are served (`[metrics]`), if anywhere.
    pub metrics: Option<crate::metrics::MetricsSpec>,
    /// Where the web dashboard is served (`[web]` with `listen`), if
    /// anywhere. Changing it restarts no agent.
    pub web: Option<crate::web::WebSpec>,
    /// The agents, by name.
    pub agents: BTreeMap<AgentName, AgentSpec>,
    /// `[[host.watch]]` rules.
    pub host_watch: Vec<WatchRule>,
    /// Where alerts are delivered (`[[notify]]`), in file order.
    pub notify: Vec<NotifySpec>,
}

/// The `[log]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Rotate a log when it reaches this many bytes (and daily).
    pub max_size: u64,
    /// Rotated files kept per agent.
    pub keep: u32,
    /// Gzip rotated files.
    pub compress: bool,
    /// Where agents' stderr goes unless an agent (or `[defaults]`) says.
    pub stderr: StderrMode,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024,
            keep: 14,
            compress: true,
            stderr: StderrMode::Merge,
        }
    }
}

/// Where an agent's stderr goes (`stderr = "merge" | "separate"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StderrMode {
    /// Into `NAME.log` with stdout, through one pipe: the two streams keep
    /// their order between each other.
    #[default]
    Merge,
    /// Into `NAME.err.log`, through a pipe of its own: each stream keeps
    /// its own order, not their order between each other.
    Separate,
}

impl StderrMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StderrMode::Merge => "merge",
            StderrMode::Separate => "separate",
        }
    }

    /// Whether stderr has a log file of its own.
    pub fn is_separate(self) -> bool {
        self == StderrMode::Separate
    }
}

/// When an agent that exited is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartMode {
    /// Whatever the exit.
    Always,
    /// Only after a non-zero exit code or a death by signal.
    OnFailure,
    /// Never: the agent stays `exited`.
    Never,
}

impl RestartMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartMode::Always => "always",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Never => "never",
        }
    }
}

/// When and how fast an agent that exited is started again: the `restart`,
/// `restart_delay`, `backoff_max`, `stable_after`, `crash_loop`,
/// `crash_window` and `failed_retry` keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// When it is restarted (`restart`).
    pub mode: RestartMode,
    /// Wait before the first restart after a death (`restart_delay`).
    pub delay: Duration,
    /// The longest wait between restarts of a crash-looping agent.
    pub backoff_max: Duration,
    /// A run shorter than this is a quick death: it grows the backoff and
    /// counts towards the crash loop. A longer run resets both.
    pub stable_after: Duration,
    /// This many quick deaths within `crash_window` mark the agent `failed`;
    /// 0 never does.
    pub crash_loop: u32,
    /// The window `crash_loop` counts in.
    pub crash_window: Duration,
    /// A `failed` agent is retried after this; `None` (`"never"`) leaves it
    /// failed until an operator starts it.
    pub failed_retry: Option<Duration>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            mode: RestartMode::Always,
            delay: Duration::ZERO,
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            crash_loop: 5,
            crash_window: Duration::from_secs(60),
            failed_retry: Some(Duration::from_secs(300)),
        }
    }
}

/// How an agent is stopped, and drained before a restart roster decided
/// on: the `stop_signal`, `stop_timeout`, `drain_signal` and
/// `drain_timeout` keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopPolicy {
    /// Sent to the agent's process group to stop it (`stop_signal`).
    pub signal: Signal,
    /// After this, SIGKILL to the whole process group (`stop_timeout`).
    pub timeout: Duration,
    /// Asks the agent to finish its work before a restart roster decided
    /// on (a failed health check); `None` means the stop signal.
    pub drain_signal: Option<Signal>,
    /// How long a draining agent may take before SIGKILL.
    pub drain_timeout: Duration,
}

impl Default for StopPolicy {
    fn default() -> Self {
        Self {
            signal: Signal::Term,
            timeout: Duration::from_secs(10),
            drain_signal: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl StopPolicy {
    /// How a drained stop goes: the drain signal (else the stop signal)
    /// and the drain timeout.
    pub fn drain(&self) -> (Signal, Duration) {
        (self.drain_signal.unwrap_or(self.signal), self.drain_timeout)
    }
}

/// One `[agents.NAME]` table, with defaults filled in and paths resolved.
#[derive(Clone, PartialEq)]
pub struct AgentSpec {
    /// argv; never run through a shell.
    pub command: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// Extra environment, on top of the daemon's own.
    pub env: BTreeMap<String, String>,
    /// When and how fast it is started again after it exits.
    pub restart: RestartPolicy,
    /// How it is stopped, and drained before a restart roster decided on.
    pub stop: StopPolicy,
    /// An agent counts as `running` (rather than `starting`) once it has been
    /// up this long.
    pub ready_after: Duration,
    /// The health check, if any.
    pub health: Option<HealthSpec>,
    /// `[[agents.NAME.watch]]` rules; `None` (no `watch` key) means the
    /// graded defaults, `watch = []` none at all.
    pub watch: Option<Vec<WatchRule>>,
    /// Where the agent serves its own Prometheus metrics, listed for
    /// Prometheus in the home's file_sd file.
    pub metrics: Option<HttpTarget>,
    /// `[agents.NAME.deploy]`: the agent is shipped as releases.
    pub deploy: Option<DeploySpec>,
    /// Runs in its live release (`<home>/agents/NAME/releases/VERSION`):
    /// set when `deploy` is given. `cwd` is then the config file's
    /// directory and means nothing; see `release_subdir`.
    pub release_cwd: bool,
    /// With `release_cwd`: the directory inside the release the agent runs
    /// in, from a relative `cwd` (empty: the release's top directory).
    /// Never absolute, never with `..`.
    pub release_subdir: PathBuf,
    /// `[agents.NAME.listen]`: sockets roster binds and hands over.
    pub listen: ListenSpec,
    /// Who it runs as.
    pub identity: Identity,
    /// What it may use.
    pub limits: Limits,
    /// `KEY=VALUE` lines added to its environment at each start (after
    /// `env`), read by the daemon when the config is applied.
    pub env_file: Option<PathBuf>,
    /// `tenant`: whose agent it is (the fleet sets it). A label only:
    /// shown in status, carried on its /metrics series; changing it alone
    /// restarts nothing.
    pub tenant: Option<String>,
    /// Where its stderr goes: its own `stderr`, else `[defaults]`', else
    /// `[log]`'s. A change restarts it (its pipes are set at spawn).
    pub stderr: StderrMode,
    /// `watch_paths`: files and directories (relative to `cwd`) and
    /// globs of file names whose changes restart the agent, for
    /// development (see `crate::watch_paths`); empty: none. Changing it
    /// alone restarts nothing.
    pub watch_paths: Vec<String>,
    /// Which copy it is, for an agent written with `instances = N`
    /// (named `NAME.1` … `NAME.N`); `None` for an agent of its own.
    pub instance: Option<Instance>,
}

/// One of the N copies of an agent written with `instances = N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The name in the file (`worker` for `worker.2`).
    pub of: AgentName,
    /// Its number, 1 to N (`{instance}` in its keys).
    pub number: u32,
}

impl AgentSpec {
    /// An agent that sets nothing but its command: every default, run in
    /// `base_dir` (the config file's directory).
    pub(crate) fn defaults_in(base_dir: &Path) -> Self {
        Self {
            command: Vec::new(),
            cwd: base_dir.to_path_buf(),
            env: BTreeMap::new(),
            restart: RestartPolicy::default(),
            stop: StopPolicy::default(),
            ready_after: Duration::from_secs(1),
            health: None,
            watch: None,
            metrics: None,
            deploy: None,
            release_cwd: false,
            release_subdir: PathBuf::new(),
            listen: ListenSpec::new(),
            identity: Identity::default(),
            limits: Limits::default(),
            env_file: None,
            tenant: None,
            stderr: StderrMode::Merge,
            watch_paths: Vec::new(),
            instance: None,
        }
    }

    /// The rules in force: the agent's own, or the graded defaults.
    pub fn rules(&self) -> Vec<WatchRule> {
        self.watch.clone().unwrap_or_else(default_agent_rules)
    }

    /// The environment the agent starts with, on top of the daemon's own:
    /// the config's `env`, plus `PYTHONUNBUFFERED=1` unless the config sets
    /// it, so that Python agents' output reaches the log line by line instead
    /// of sitting in a 8 KiB buffer.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut environment: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !self.env.contains_key("PYTHONUNBUFFERED") {
            environment.push(("PYTHONUNBUFFERED".into(), "1".into()));
        }
        environment
    }
}

// A hand-written Debug: `env` often carries API keys, and Debug output ends up
// in logs and panic messages.
impl fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSpec")
            .field("command", &self.command)
            .field("cwd", &self.cwd)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("restart", &self.restart)
            .field("stop", &self.stop)
            .field("health", &self.health)
            .field("stderr", &self.stderr)
            .field("watch_paths", &self.watch_paths)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}
