//! The wire types of the control API: the only serialized shapes besides the
//! config. Each is a compatibility promise to scripts: extend, never break.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use std::fmt;

use crate::signal::name_of_number;

mod describe;
mod event_kind;
mod groups;
mod recovery;
pub use describe::{
    DescribeReply, DescribedChecks, DescribedCommand, DescribedExit, DescribedGroup,
    DescribedHealth, DescribedLimit, DescribedLimits, DescribedLog, DescribedRelease,
    DescribedRestart, DescribedRule, DescribedSocket, DescribedUser, DescribedVariable, EnvSource,
    MASKED,
};
pub use event_kind::EventKind;
pub use groups::{comeback, grouped, in_group_order, summary, Comeback, GroupSummary, Listed};
pub use recovery::{
    RecoveryEvent, RecoveryFinding, RecoveryReport, RecoveryStep, RECOVERY_BODY_MAX,
    RECOVERY_ENTRIES_MAX, RECOVERY_PATIENCE_MS, RECOVERY_STALE_MS, RECOVERY_TEXT_MAX,
};

/// The version prefix of every API path.
pub const API_PREFIX: &str = "/v1";

/// An agent's state, as `status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Spawned, not yet up for `ready_after`.
    Starting,
    /// Up.
    Running,
    /// The stop signal was sent; waiting for it to end.
    Stopping,
    /// Not running, by wish.
    Stopped,
    /// Died; waiting to restart.
    Backoff,
    /// Died too often too quickly; left alone until the cool-down ends.
    Failed,
    /// Ended and not restarted (restart policy `never` or `on-failure`).
    Exited,
    /// Shipped as releases (`[deploy]`) and none is deployed yet: it starts
    /// with its first deploy (an extension of the documented contract).
    Undeployed,
}

impl AgentState {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Running => "running",
            AgentState::Stopping => "stopping",
            AgentState::Stopped => "stopped",
            AgentState::Backoff => "backoff",
            AgentState::Failed => "failed",
            AgentState::Exited => "exited",
            AgentState::Undeployed => "undeployed",
        }
    }
}

/// The result of the agent's health checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Checks pass.
    Healthy,
    /// Checks fail.
    Unhealthy,
    /// No checks, or no result yet.
    Unknown,
}

/// `GET /v1/status`: the object `roster status --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    /// Every agent, sorted by name.
    pub agents: Vec<AgentStatus>,
    /// Problems of the home that need a person, e.g. a corrupt journal that
    /// was moved aside (an extension of the documented contract).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The config file this daemon last applied, absolute; `null` before
    /// the first apply (an extension: `roster tmux` opens its panes in
    /// that file's directory).
    #[serde(default)]
    pub config: Option<String>,
}

/// One agent in [`StatusReply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The name.
    pub name: String,
    /// The state.
    pub state: AgentState,
    /// The main process, while one runs.
    pub pid: Option<u32>,
    /// Starts after the first.
    pub restarts: u64,
    /// Seconds since the current process started.
    pub uptime_secs: Option<u64>,
    /// Resident memory of the agent's process group.
    pub memory_bytes: Option<u64>,
    /// CPU use of the agent's process group, percent of one core.
    pub cpu_percent: Option<f64>,
    /// Health.
    pub health: Health,
    /// How the last process ended (an extension of the documented contract).
    #[serde(default)]
    pub last_exit: Option<ExitStatus>,
    /// Log lines dropped for a hard reason such as a full disk (extension).
    #[serde(default)]
    pub log_dropped_lines: u64,
    /// Why the latest start attempt failed (program not found, working
    /// directory missing, ...); `null` once a start succeeds (extension).
    #[serde(default)]
    pub last_error: Option<String>,
    /// From the latest watch sample (every 5 s while rules watch the
    /// agent): memory as a percentage of the machine's (extension).
    #[serde(default)]
    pub memory_percent: Option<f64>,
    /// Open file descriptors of the process group (extension).
    #[serde(default)]
    pub open_files: Option<u64>,
    /// TCP sockets of the process group (extension).
    #[serde(default)]
    pub connections: Option<u64>,
    /// Threads of the process group (extension).
    #[serde(default)]
    pub threads: Option<u64>,
    /// The release the main process runs, for agents shipped as releases
    /// (extension).
    #[serde(default)]
    pub release: Option<String>,
    /// The user it runs as, once started (extension).
    #[serde(default)]
    pub user: Option<String>,
    /// How its limits are enforced: `cgroup2`, `cgroup1`, `rlimit`, or
    /// `none` when it has none (extension).
    #[serde(default)]
    pub limits: Option<String>,
    /// Something about it that needs a person, e.g. it runs as root
    /// unasked (extension; `warnings` summarises these).
    #[serde(default)]
    pub warning: Option<String>,
    /// Whose agent it is, from its `tenant` key (extension; absent when
    /// the config names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// For a copy made by `instances = N`: the agent in the file it is a
    /// copy of, e.g. `worker` for `worker.2` (extension; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_of: Option<String>,
    /// For a copy made by `instances = N`: its number, 1 to N (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
}

/// What status says of an agent that runs as root without the config
/// saying so (its `warning`).
pub fn root_warning(agent: &str) -> String {
    format!(
        "{agent} runs as root (this daemon does, and the config names no user); \
         set user = \"...\" for it or in [defaults], or allow_root = true if intended"
    )
}

/// The one line of `warnings` about every agent that runs as root
/// unasked: a thousand such agents make one line, not a thousand.
pub fn root_summary(agents: &[&str]) -> Option<String> {
    const SHOWN: usize = 8;
    match agents {
        [] => None,
        [one] => Some(root_warning(one)),
        many => {
            let mut names = many[..many.len().min(SHOWN)].join(", ");
            if many.len() > SHOWN {
                names.push_str(&format!(" and {} more", many.len() - SHOWN));
            }
            Some(format!(
                "{} agents run as root (this daemon does, and the config names no user): {names}; \
                 set user = \"...\" for them or in [defaults], or allow_root = true if intended",
                many.len()
            ))
        }
    }
}

/// `POST /v1/apply`: converge to a config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The file's path, absolute, as the daemon should read it.
    pub path: String,
    /// Also start agents that are stopped (what `roster up` does).
    pub start_stopped: bool,
    /// Allow removing agents although the file is not the one this home
    /// last applied (`--replace`). Without it such an apply is refused.
    #[serde(default)]
    pub replace: bool,
}

/// The answer to [`ApplyRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReply {
    /// What changed.
    pub summary: ApplySummary,
}

/// The answer (HTTP 409) to an [`ApplyRequest`] that would remove agents
/// another config file started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyConflict {
    /// What went wrong, ready to print.
    pub error: String,
    /// The file this home last applied.
    pub applied: String,
    /// The agents that the new file would remove.
    pub would_remove: Vec<String>,
}

/// `POST /v1/start`, `/v1/stop`, `/v1/restart`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentsRequest {
    /// Agent names; `["all"]` means every agent.
    pub names: Vec<String>,
    /// `/v1/restart` only: drain as roster restarts for ill health (the
    /// agent's drain signal and drain_timeout) instead of its stop signal
    /// and stop_timeout. Absent (older clients): false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain: bool,
}

/// Any error the API answers with (HTTP 4xx/5xx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, ready to print.
    pub error: String,
}

/// One journal entry, as `roster events --json` prints it (one per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Increasing id.
    pub id: i64,
    /// UTC time, RFC 3339 with milliseconds.
    pub time: String,
    /// The agent, or `null` for daemon events.
    pub agent: Option<String>,
    /// The kind: `started`, `exited`, `failed`, `config_applied`, ... (an
    /// [`EventKind`]'s name; a string, so that kinds a newer roster wrote
    /// still read).
    pub kind: String,
    /// The pid concerned.
    pub pid: Option<u32>,
    /// A description for people.
    pub detail: String,
}

/// Whether an alert holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Its condition holds.
    Firing,
    /// Its condition held and no longer does.
    Resolved,
}

/// One alert: what `roster alerts --json` lists and what notifiers send
/// (webhooks in Prometheus Alertmanager's shape, Alertmanager's API, exec,
/// file). Never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Stable identity of the condition (agent and rule): a firing and its
    /// resolution share it.
    pub fingerprint: String,
    /// What kind of alert, e.g. `AgentUnhealthy`, `MemoryHigh`, `LogErrors`,
    /// `DiskFull` (Alertmanager's `alertname`).
    pub name: String,
    /// The agent, or `null` for host alerts.
    pub agent: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// One line for people.
    pub summary: String,
    /// More context (an investigation's snapshot: process tree, open files,
    /// the last log lines); may be empty.
    #[serde(default)]
    pub details: String,
    /// When the condition started, RFC 3339 UTC.
    pub starts_at: String,
    /// When it stopped holding (resolved alerts), RFC 3339 UTC.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Extra labels (`rule`, `metric`, `host`, ...), sorted.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `GET /v1/alerts`: what `roster alerts --json` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsReply {
    /// Alerts whose condition holds now.
    pub firing: Vec<AlertRecord>,
    /// The latest alert events (firings and resolutions), oldest first.
    pub recent: Vec<AlertRecord>,
}

/// One sample of an agent in `GET /v1/history` (an object of agent name to
/// points, oldest first, for the last hour of watch samples).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// RFC 3339 UTC.
    pub time: String,
    /// Resident bytes of the process group.
    pub memory_bytes: Option<u64>,
    /// Percent of one core.
    pub cpu_percent: Option<f64>,
    /// Open descriptors.
    pub open_files: Option<u64>,
    /// TCP sockets.
    pub connections: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// Exit code 0.
    pub fn is_success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(number) => write!(f, "killed by {}", name_of_number(*number)),
        }
    }
}

/// What an apply changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplySummary {
    /// New agents.
    pub added: Vec<String>,
    /// Agents whose config changed (restarted).
    pub changed: Vec<String>,
    /// Agents no longer in the config (stopped and dropped).
    pub removed: Vec<String>,
    /// Agents left as they were.
    pub unchanged: Vec<String>,
}

/// `POST /v1/deploy`: ship a new release of an agent. Answered at once
/// with a [`DeployProgress`] (the steps run in the daemon; follow them at
/// `GET /v1/deploy?agent=NAME`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The agent, which must have a `[agents.NAME.deploy]` section.
    pub agent: String,
    /// A directory or a `.tar.gz`, absolute, as the daemon should read it.
    pub source: String,
    /// The release's name; default: a UTC timestamp and a short content hash.
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST /v1/rollback`: make an earlier release live again, by the same
/// cutover a deploy uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// The agent.
    pub agent: String,
    /// The release; default: the one live before the current one.
    #[serde(default)]
    pub to: Option<String>,
}

/// What a deploy or a rollback does, step by step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployProgress {
    /// Increasing per daemon; tells one deploy from the next.
    pub id: u64,
    /// The agent.
    pub agent: String,
    /// `deploy` or `rollback`.
    pub kind: String,
    /// The release going live (known once staged).
    pub version: Option<String>,
    /// The release that was live when it began.
    pub previous: Option<String>,
    /// The steps so far, in order.
    pub steps: Vec<DeployStep>,
    /// `None` while it runs.
    pub outcome: Option<DeployOutcome>,
    /// One line for people: why it failed or rolled back, or what is live.
    #[serde(default)]
    pub message: Option<String>,
}

/// One step of a deploy: `stage`, `build`, `smoke_test`, `cutover`,
/// `verify`, `cleanup`, and `rollback` when verification failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployStep {
    /// The step's name.
    pub step: String,
    /// Where it is.
    pub state: StepState,
    /// How long it took (so far, while running).
    pub duration_ms: u64,
    /// What it did or why it failed.
    #[serde(default)]
    pub detail: Option<String>,
}

/// Where a deploy step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Under way.
    Running,
    /// Done.
    Ok,
    /// Failed; the deploy stops (or rolls back).
    Failed,
    /// Not needed (no `build` command, ...).
    Skipped,
}

/// How a deploy or rollback ended. `roster deploy` exits 0, 1, 3 for
/// `deployed`, `failed`, `rolled_back`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployOutcome {
    /// The release is live (and verified, for a deploy).
    Deployed,
    /// It failed before the cutover: the live release is untouched.
    Failed,
    /// It went live, misbehaved within `verify_for`, and the previous
    /// release is live again.
    RolledBack,
}

/// `GET /v1/releases?agent=NAME`: what `roster releases NAME --json` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasesReply {
    /// The agent.
    pub agent: String,
    /// Every recorded release, newest first.
    pub releases: Vec<ReleaseRecord>,
}

/// One release of an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// Its name: the directory under `agents/NAME/releases/`.
    pub version: String,
    /// When it was staged, RFC 3339 UTC.
    pub created: String,
    /// When it last went live, RFC 3339 UTC.
    #[serde(default)]
    pub deployed: Option<String>,
    /// Whether `current` points to it.
    pub live: bool,
    /// `ready` (staged, built and smoke-tested; never live), `deployed`
    /// (went live and passed verification), `verifying`, `rolled_back`
    /// (went live and failed verification), `failed` (build, smoke test or
    /// cutover failed; its directory is gone), `interrupted` (the daemon
    /// stopped during its cutover or verification), `removed` (cleaned up).
    pub result: String,
    /// Why, for `failed` and `rolled_back`.
    #[serde(default)]
    pub detail: Option<String>,
}

/// `POST /v1/secrets/set`: stores one secret of an agent. Its `Debug`
/// never shows the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSetRequest {
    /// The agent.
    pub agent: String,
    /// The variable's name, `[A-Za-z_][A-Za-z0-9_]*`.
    pub key: String,
    /// The value: one line, no NUL.
    pub value: String,
}

impl std::fmt::Debug for SecretSetRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSetRequest")
            .field("agent", &self.agent)
            .field("key", &self.key)
            .field("value", &"<hidden>")
            .finish()
    }
}

/// `POST /v1/secrets/rm`: removes one secret of an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRemoveRequest {
    /// The agent.
    pub agent: String,
    /// The variable's name.
    pub key: String,
}

/// `GET /v1/secrets?agent=NAME`: what `roster secret list NAME --json`
/// prints. Names only, never values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsReply {
    /// The agent.
    pub agent: String,
    /// Its secrets' names, sorted.
    pub keys: Vec<String>,
    /// Whether values are stored encrypted (`<home>/secrets/key` exists).
    #[serde(default)]
    pub encrypted: bool,
}
