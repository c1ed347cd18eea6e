//! What a deployment asks of the runtime ([`Action`]) and what the runtime
//! answers ([`Done`]), and the names they use.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::{AlertRecord, EventKind};
use crate::deploy::Strategy;
use crate::health::Check;
use crate::supervisor::{AgentView, Switch};
use crate::ExitStatus;

/// How long a deploy waits between its own probes of a new process that
/// shares its socket with the old one.
pub const PROBE_AGAIN: Duration = Duration::from_millis(50);

/// The alert a rolled-back (or failed, with nothing to go back to) deploy
/// raises.
pub const ALERT_NAME: &str = "DeployRolledBack";

/// The fingerprint of an agent's deploy alert.
pub fn alert_fingerprint(agent: &str) -> String {
    format!("deploy:{agent}")
}

/// A release's result in the release store (`releases.json`, `roster
/// releases`): the same names on the wire and on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseResult {
    /// Staged, built and smoke-tested; never live.
    Ready,
    /// Live, its verification under way.
    Verifying,
    /// Went live and passed verification.
    Deployed,
    /// Went live and failed verification.
    RolledBack,
    /// Build, smoke test or cutover failed; its directory is gone.
    Failed,
    /// The daemon stopped during its cutover or verification.
    Interrupted,
    /// Cleaned up.
    Removed,
}

impl ReleaseResult {
    /// Every result.
    pub const ALL: [ReleaseResult; 7] = [
        ReleaseResult::Ready,
        ReleaseResult::Verifying,
        ReleaseResult::Deployed,
        ReleaseResult::RolledBack,
        ReleaseResult::Failed,
        ReleaseResult::Interrupted,
        ReleaseResult::Removed,
    ];

    /// The name in `releases.json` and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseResult::Ready => "ready",
            ReleaseResult::Verifying => "verifying",
            ReleaseResult::Deployed => "deployed",
            ReleaseResult::RolledBack => "rolled_back",
            ReleaseResult::Failed => "failed",
            ReleaseResult::Interrupted => "interrupted",
            ReleaseResult::Removed => "removed",
        }
    }

    /// The result a name stands for.
    pub fn parse(name: &str) -> Option<ReleaseResult> {
        Self::ALL.into_iter().find(|result| result.as_str() == name)
    }
}

impl std::fmt::Display for ReleaseResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// Ship a source.
    Deploy {
        /// A directory or a .tar.gz, absolute.
        source: PathBuf,
        /// The release name, if given.
        version: Option<String>,
    },
    /// Make an earlier, complete release live again.
    Rollback {
        /// The release.
        to: String,
    },
}

/// The commands a deploy runs in a new release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandStep {
    /// `build`, at the top of the release.
    Build,
    /// `smoke_test`, where the agent runs (`cwd` inside the release).
    SmokeTest,
}

impl CommandStep {
    /// The step's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStep::Build => "build",
            CommandStep::SmokeTest => "smoke_test",
        }
    }
}

/// What the runtime must do, in the order given. Actions marked "answer"
/// are answered with one [`Done`] through [`Deployment::handle_done`];
/// the others are performed at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Journal a deploy event of the agent.
    Note {
        /// The event kind (`deploy_started`, `deploy_step`, `deployed`, ...).
        kind: EventKind,
        /// For people.
        detail: String,
    },
    /// Stage the source as a new release (layout ensured). Answer:
    /// [`Done::Staged`].
    Stage {
        /// A directory or a .tar.gz.
        source: PathBuf,
        /// The release name, if given.
        version: Option<String>,
        /// The most bytes of file contents it may hold.
        max_size: u64,
    },
    /// Whether `releases/VERSION/SUBDIR` is a directory. Answer:
    /// [`Done::Workdir`].
    CheckWorkdir {
        /// The release.
        version: String,
        /// Where the agent runs inside it.
        subdir: PathBuf,
    },
    /// Run a build or smoke-test command in `releases/VERSION/SUBDIR`, its
    /// output appended to the agent's `deploy.log`. Answers:
    /// [`Done::CommandStarted`], then [`Done::CommandEnded`].
    RunCommand {
        /// Which.
        step: CommandStep,
        /// argv.
        argv: Vec<String>,
        /// The release.
        version: String,
        /// Where inside the release (empty: its top).
        subdir: PathBuf,
    },
    /// The command ran out of time: kill its process group (its end is
    /// still answered with [`Done::CommandEnded`]).
    KillCommand {
        /// The group leader.
        pid: u32,
    },
    /// Record a release's result. Answer: [`Done::Recorded`].
    Record {
        /// The release.
        version: String,
        /// Its result; `deployed` also sets its `deployed` time.
        result: ReleaseResult,
        /// Why, for `failed` and `rolled_back`.
        detail: Option<String>,
    },
    /// A release that will not go live: recorded `failed` with `detail`,
    /// its directory removed. Answer: [`Done::Recorded`].
    Discard {
        /// The release.
        version: String,
        /// Why.
        detail: String,
    },
    /// Ship `release` to the agent (`Supervisor::handle_switch`), perform
    /// what the supervisor asks, and answer [`Done::Switched`].
    Switch {
        /// The release.
        release: String,
        /// How.
        strategy: Strategy,
    },
    /// Probe `check` and say which of `groups` accepted the connection.
    /// Answer: [`Done::Probed`].
    Probe {
        /// The check.
        check: Check,
        /// How long it may take.
        timeout: Duration,
        /// The new process's group first, then the old one's.
        groups: Vec<u32>,
    },
    /// Whether process `pid` works inside `releases/RELEASE`. Answer:
    /// [`Done::InRelease`].
    CheckRelease {
        /// The process.
        pid: u32,
        /// The release.
        release: String,
    },
    /// Point `current` at `release` (an atomic rename). Answer:
    /// [`Done::Current`].
    SwitchCurrent {
        /// The release.
        release: String,
    },
    /// The new process is ready and `current` names its release: the
    /// process being replaced drains (`Supervisor::handle_retire`). Its
    /// listening sockets are the runtime's business here.
    Retire,
    /// Give the cutover up: the old process serves again
    /// (`Supervisor::handle_handback`).
    Handback {
        /// Why.
        reason: String,
    },
    /// Raise this alert; the runtime stamps `starts_at`.
    RaiseAlert(AlertRecord),
    /// Resolve the agent's deploy alert, if it fires.
    ResolveAlert {
        /// Its fingerprint.
        fingerprint: String,
    },
    /// Remove old releases, keeping `keep`. Answer: [`Done::Cleaned`].
    Cleanup {
        /// How many.
        keep: u32,
    },
    /// A crash-safety test may stop the daemon here
    /// (`ROSTER_TEST_CRASH_AT`): the step's name.
    CrashPoint(&'static str),
    /// The deploy is over; [`Deployment::progress`] has its outcome.
    Finished,
}

/// The answer to an [`Action`].
#[derive(Clone, Debug, PartialEq)]
pub enum Done {
    /// Staging made this release, or failed.
    Staged(Result<String, String>),
    /// Whether the release has the directory the agent runs in.
    Workdir(bool),
    /// The command's pid, or why it could not start.
    CommandStarted(Result<u32, String>),
    /// The command ended (killed, if it ran out of time).
    CommandEnded {
        /// How.
        status: ExitStatus,
        /// The last lines of its output, indented, or empty.
        tail: String,
    },
    /// A store write finished (`Err`: it failed, and why).
    Recorded(Result<(), String>),
    /// The switch: what the supervisor did (or why it refused), the
    /// agent's main pid before it, and the agent after the supervisor's
    /// actions were performed (`None`: it is no longer in the config).
    Switched {
        /// `Supervisor::handle_switch`'s answer.
        result: Result<Switch, String>,
        /// The main pid before the switch.
        before: Option<u32>,
        /// The agent now.
        after: Option<AgentView>,
    },
    /// Which group accepted the probe's connection (`None`: another, or
    /// nobody in time), and the check's verdict.
    Probed {
        /// The acceptor's group.
        group: Option<u32>,
        /// The verdict.
        verdict: Result<(), String>,
    },
    /// Whether the new process runs inside its release (`Err`: where it
    /// runs instead).
    InRelease(Result<(), String>),
    /// `current` was switched, or why not.
    Current(Result<(), String>),
    /// The releases removed, or why none were.
    Cleaned(Result<Vec<String>, String>),
    /// [`Action::Retire`] was performed: the old process drains. What the
    /// daemon noted of it (how the `[listen]` sockets were handed over),
    /// for the cutover step's detail.
    Retired(Option<String>),
}
