//! `GET /v1/describe?agent=NAME`: what exactly runs for an agent, as the
//! daemon has it applied (`roster describe NAME --json` prints it). Field
//! names are a contract (README, "describe"); durations are written as the
//! config writes them (`"10s"`, `"1m30s"`), sizes in bytes.
//!
//! Secret values never appear here: the daemon masks them (and any value
//! that contains one) before it builds this answer.

use serde::{Deserialize, Serialize};

use super::AgentState;

/// What a masked value reads as.
pub const MASKED: &str = "********";

/// The answer: one agent, section by section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DescribeReply {
    /// The agent.
    pub name: String,
    /// Its state, as `status` has it.
    pub state: AgentState,
    /// Its main process, while one runs.
    pub pid: Option<u32>,
    /// What is executed, and where.
    pub command: DescribedCommand,
    /// Who it runs as.
    pub user: DescribedUser,
    /// Every variable of its environment, by name, with where it comes from.
    pub environment: Vec<DescribedVariable>,
    /// Its limits and how they are enforced.
    pub limits: DescribedLimits,
    /// `[agents.NAME.listen]`: sockets handed over, in fd order.
    pub sockets: Vec<DescribedSocket>,
    /// For an agent shipped as releases (`[deploy]`): which and where.
    pub release: Option<DescribedRelease>,
    /// Its health check and watch rules in force.
    pub checks: DescribedChecks,
    /// Where its output goes and how that file is rotated.
    pub log: DescribedLog,
    /// Its restart policy and its last exits.
    pub restart: DescribedRestart,
}

/// The command as it will be executed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedCommand {
    /// argv as configured (no shell).
    pub argv: Vec<String>,
    /// The program argv[0] resolves to, looked up as the spawn does (in the
    /// agent's PATH, from its working directory); `null` when not found.
    pub program: Option<String>,
    /// Why the program was not found, when it was not.
    pub program_error: Option<String>,
    /// The working directory it starts in (inside the live release for an
    /// agent shipped as releases).
    pub cwd: String,
    /// Whether it starts through roster's exec shim (sockets, limits or a
    /// user switch need it); the shim then execs `program` in place.
    pub via_shim: bool,
}

/// A group, by id and, when the system knows it, name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedGroup {
    /// Its name, when the group database has one.
    pub name: Option<String>,
    /// Its id.
    pub gid: u32,
}

/// Who the agent runs as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedUser {
    /// The user's name (`null` when it cannot be resolved; see `error`).
    pub name: Option<String>,
    /// Its uid.
    pub uid: Option<u32>,
    /// The primary group.
    pub group: Option<DescribedGroup>,
    /// The supplementary groups.
    pub groups: Vec<DescribedGroup>,
    /// Whether roster switches to this user (else the agent runs as the
    /// daemon does).
    pub switched: bool,
    /// Why the configured user or group could not be resolved.
    pub error: Option<String>,
}

/// Where a variable of the environment comes from (the later ones win).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvSource {
    /// The daemon's own environment, passed on.
    Inherited,
    /// Set by roster (`PYTHONUNBUFFERED`, `ROSTER_*`, `LISTEN_*`, the
    /// user's `HOME`, `USER`, `LOGNAME`, the system PATH for another user).
    Default,
    /// The config's `env` (its own, or `[defaults]`'s).
    Env,
    /// The agent's `env_file`.
    EnvFile,
    /// A secret (`roster secret set`): its value is always masked.
    Secret,
}

impl EnvSource {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvSource::Inherited => "inherited",
            EnvSource::Default => "default",
            EnvSource::Env => "env",
            EnvSource::EnvFile => "env_file",
            EnvSource::Secret => "secret",
        }
    }
}

/// One environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedVariable {
    /// Its name.
    pub name: String,
    /// Its value, or [`MASKED`].
    pub value: String,
    /// Where it comes from.
    pub source: EnvSource,
    /// Whether `value` is masked: a secret, a name that says secret
    /// (`*_TOKEN`, `*PASSWORD*`, ...), a value shaped like an API key, or
    /// one that contains a secret's value.
    pub masked: bool,
}

/// The agent's limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedLimits {
    /// How they are enforced, as `status` says (`cgroup2`, `cgroup1`,
    /// `rlimit`, `none`, `failed`).
    pub enforcement: Option<String>,
    /// The cgroup directories its processes join.
    pub cgroups: Vec<String>,
    /// Each limit the config sets.
    pub items: Vec<DescribedLimit>,
}

/// One limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedLimit {
    /// The config key: `memory_max`, `cpu_quota`, `tasks_max`, `nofile`.
    pub key: String,
    /// Its value as the config means it (`536870912`, `50%`, ...).
    pub value: String,
    /// What enforces it: `cgroup2`, `cgroup1`, `rlimit RLIMIT_AS`, ...,
    /// or `unenforced`.
    pub enforced_by: String,
}

/// A socket roster binds and hands over (`LISTEN_FDS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedSocket {
    /// The name (`LISTEN_FDNAMES`).
    pub name: String,
    /// The address.
    pub address: String,
    /// The descriptor the agent finds it on.
    pub fd: u32,
    /// Whether the daemon holds it bound now.
    pub bound: bool,
}

/// The release an agent shipped as releases runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedRelease {
    /// The version its next (or current) process runs; `null` before the
    /// first deploy.
    pub version: Option<String>,
    /// That release's directory.
    pub path: Option<String>,
    /// The `current` link.
    pub current: String,
    /// The directory shared by every release (`ROSTER_SHARED`).
    pub shared: String,
    /// `blue-green` or `restart`.
    pub strategy: String,
    /// After a cutover, how long the new process must stay well.
    pub verify_for: String,
    /// Releases kept.
    pub keep: u32,
}

/// Health check and watch rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DescribedChecks {
    /// The health check, with every default filled in; `null`: none.
    pub health: Option<DescribedHealth>,
    /// The watch rules in force.
    pub watch: Vec<DescribedRule>,
    /// Whether `watch` is roster's graded defaults (the config has no
    /// `watch` key).
    pub watch_defaults: bool,
}

/// The health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedHealth {
    /// `http`, `tcp` or `exec`.
    pub kind: String,
    /// What is probed: `GET URL`, `connect HOST:PORT`, `run ARGV`.
    pub check: String,
    /// Between probes.
    pub interval: String,
    /// A probe's time limit.
    pub timeout: String,
    /// Consecutive failures before `unhealthy`.
    pub retries: u32,
    /// Failures ignored this long after a start.
    pub start_period: String,
    /// `restart`, `alert` or `none`.
    pub on_failure: String,
}

/// One watch rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DescribedRule {
    /// The metric.
    pub metric: String,
    /// `above` or `below`.
    pub threshold: String,
    /// The threshold's value.
    pub value: f64,
    /// How long it must hold (`for`).
    pub hold: String,
    /// What firing does.
    pub action: String,
    /// The rule in one line, as alerts say it.
    pub text: String,
}

/// The agent's log file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedLog {
    /// `<home>/logs/NAME.log`.
    pub path: String,
    /// Rotated at this size (and daily).
    pub max_size_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Whether rotated files are gzipped.
    pub compress: bool,
    /// `<home>/logs/NAME.err.log` with `stderr = "separate"`; `None` when
    /// stderr goes to `path` too.
    #[serde(default)]
    pub stderr_path: Option<String>,
}

/// The restart policy, and how the last processes ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedRestart {
    /// `always`, `on-failure` or `never`.
    pub restart: String,
    /// Before a restart.
    pub restart_delay: String,
    /// The longest wait between restarts of a crash loop.
    pub backoff_max: String,
    /// Sent to stop it.
    pub stop_signal: String,
    /// Then SIGKILL.
    pub stop_timeout: String,
    /// Sent before a restart roster decides on (ill health).
    pub drain_signal: String,
    /// Then SIGKILL.
    pub drain_timeout: String,
    /// Quick deaths in `crash_window` that make it `failed` (0: never).
    pub crash_loop: u32,
    /// The window they are counted in.
    pub crash_window: String,
    /// The last exits, newest first (at most five).
    pub last_exits: Vec<DescribedExit>,
}

/// How one process of the agent ended, from the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedExit {
    /// When (RFC 3339 UTC).
    pub time: String,
    /// The process.
    pub pid: Option<u32>,
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it (`SIGKILL`), when one did.
    pub signal: Option<String>,
    /// Why it ended, for people: on its own, stopped by roster, killed at
    /// `stop_timeout`, killed by the kernel at `memory_max`, replaced by a
    /// new release, ...
    pub reason: String,
}
