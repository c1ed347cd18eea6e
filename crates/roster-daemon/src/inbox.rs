//! What reaches the daemon loop from other threads: API requests, log
//! troubles, probe results and notifier requests and outcomes, over a
//! channel with a doorbell pipe the loop polls.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use roster_core::api::{ApplyConflict, ApplyReply, DeployProgress, EventKind};
use roster_core::deployment::{Done, Job};
use roster_core::supervisor::AgentView;
use roster_core::{AgentName, Config, ExitStatus};

use crate::notify::{DeliveryReport, ExecRequest};

/// An operator's verb on agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Start.
    Start,
    /// Stop.
    Stop,
    /// Restart.
    Restart,
    /// Restart drained: the drain signal and drain_timeout.
    RestartDrained,
}

/// A request from the API server to the loop. (An apply carries its
/// config; requests are few, their size does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// Current views, with dropped-line counters.
    Status(oneshot::Sender<Vec<StatusLine>>),
    /// Converge to a config file, already read and validated off the loop
    /// (or the reason it could not be).
    Apply {
        /// The file.
        path: PathBuf,
        /// Its contents, validated, and its agents' `env_file`s; or why not.
        loaded: Result<(Config, crate::config_file::ReadAlong), String>,
        /// Start stopped agents too.
        start_stopped: bool,
        /// Allow removing agents another file started.
        replace: bool,
        /// The answer.
        reply: oneshot::Sender<Result<ApplyReply, ApplyRefusal>>,
    },
    /// start / stop / restart.
    Agents {
        /// Which verb.
        verb: Verb,
        /// Names, or `all`.
        names: Vec<String>,
        /// Who asked, when not the control socket's operator (the web
        /// dashboard's token name): journaled with the verb.
        by: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop every agent, then exit.
    Shutdown(oneshot::Sender<()>),
    /// What the sampler should sample now.
    SampleTargets(oneshot::Sender<SampleTargets>),
    /// For `describe`: what the loop knows of the agent (see
    /// `crate::describe`), or that there is no such agent.
    Describe {
        /// The name asked for.
        agent: String,
        /// The facts, or why not (the known agents' names).
        reply: oneshot::Sender<Result<crate::describe::Gathered, String>>,
    },
    /// For a deploy: the agent's spec, if it is shipped as releases.
    DeployTarget {
        /// The agent.
        agent: AgentName,
        /// Its spec, or why it cannot be deployed to.
        reply: oneshot::Sender<Result<roster_core::AgentSpec, String>>,
    },
}

/// One agent as the loop knows it, for `status`.
#[derive(Debug)]
pub struct StatusLine {
    /// The supervisor's view.
    pub view: AgentView,
    /// Log lines dropped.
    pub dropped: u64,
    /// The user it runs (or will run) as, once resolved.
    pub user: Option<String>,
    /// How its limits are enforced: `cgroup2`, `cgroup1`, `rlimit`, or
    /// `none` (no limits set).
    pub limits: Option<String>,
    /// Something about it that needs a person (it runs as root unasked).
    pub warning: Option<String>,
    /// Why its `watch_paths` are not (all) watched.
    pub watch_warning: Option<String>,
}

/// The sampler's work for one round.
#[derive(Debug, Default)]
pub struct SampleTargets {
    /// Running agents with rules: (agent, group leader, what its rules
    /// need read).
    pub agents: Vec<(AgentName, u32, roster_core::watch::Readings)>,
    /// Paths of `disk_percent` host rules.
    pub disks: Vec<std::path::PathBuf>,
    /// Whether any rule needs samples at all.
    pub wanted: bool,
}

/// Why an apply changed nothing.
#[derive(Debug)]
pub enum ApplyRefusal {
    /// The file could not be read or is invalid.
    Invalid(String),
    /// It would remove agents that another file started (no `--replace`).
    Conflict(ApplyConflict),
    /// The daemon is on its way out.
    ShuttingDown,
}

/// A problem a log pump reports to the daemon loop, to journal.
#[derive(Debug)]
pub struct LogTrouble {
    /// The agent.
    pub agent: String,
    /// Lines dropped by this batch.
    pub dropped_lines: u64,
    /// Why.
    pub error: String,
}

/// Anything for the loop.
pub enum Input {
    /// From the API.
    Request(Request),
    /// From a log pump.
    Trouble(LogTrouble),
    /// A round of samples for watch rules, from the sampler task.
    Samples {
        /// Running agents' figures.
        agents: std::collections::BTreeMap<AgentName, roster_core::watch::AgentSample>,
        /// The host's.
        host: roster_core::watch::HostSample,
    },
    /// Lines matched the agent's `log_matches` rules: the counts wait in
    /// `rules` (sent once until the loop takes them, however many lines).
    LogMatches {
        /// The agent.
        agent: AgentName,
        /// The rules the writer counted for.
        rules: Arc<crate::log_rules::LogRules>,
    },
    /// An investigation's alert, with its snapshot as details.
    Investigated(roster_core::api::AlertRecord),
    /// Something to journal from a worker (logs cleaned, ...).
    Note {
        /// The agent concerned, if any.
        agent: Option<AgentName>,
        /// The event kind.
        kind: EventKind,
        /// For people.
        detail: String,
    },
    /// A network health probe's outcome.
    Probe {
        /// The agent probed.
        agent: AgentName,
        /// The probe, as the supervisor named it.
        id: u64,
        /// `Err` says why it failed.
        result: Result<(), String>,
    },
    /// An exec notifier's command to run (and reap), or to kill.
    NotifyExec(ExecRequest),
    /// The final outcome of an alert's delivery to one target.
    Notified(DeliveryReport),
    /// A command to spawn (and reap) for a deploy's build or smoke test,
    /// or to create a user.
    DeployExec(DeployCommand),
    /// A deployment to begin, or the answer to its work.
    Deployment(DeployInput),
    /// The home was deleted or replaced under the daemon (why): stop
    /// every agent and exit.
    HomeLost(String),
    /// An agent's `watch_paths` watcher: armed, a change, or a trouble.
    FileWatch(FileWatchInput),
}

/// What an agent's `watch_paths` watcher tells the loop. Each carries the
/// watcher's generation: what a replaced watcher says is dropped.
pub enum FileWatchInput {
    /// A watcher was made off the loop (`None`: it could not be), with
    /// what it could not watch.
    Armed {
        /// The agent.
        agent: AgentName,
        /// Which arming.
        generation: u64,
        /// The watcher, to keep for as long as the agent watches.
        watcher: Option<notify::RecommendedWatcher>,
        /// What is not watched, and why (for a warning).
        problems: Vec<String>,
    },
    /// A file under the agent's `watch_paths` changed.
    Changed {
        /// The agent.
        agent: AgentName,
        /// Which arming.
        generation: u64,
        /// Which file, relative to the agent's cwd when under it.
        path: String,
    },
    /// The watcher failed at something after it was armed (the inotify
    /// watch limit, reached by a new directory).
    Trouble {
        /// The agent.
        agent: AgentName,
        /// Which arming.
        generation: u64,
        /// What, and what to do.
        problem: String,
    },
}

/// What reaches the loop of a deployment (see `roster_core::deployment`).
#[derive(Debug)]
pub enum DeployInput {
    /// Begin one: checked, and the agent reserved, by `Deploys::begin`.
    Begin {
        /// The agent.
        agent: AgentName,
        /// What to do.
        job: Job,
        /// Its progress as published so far (id, kind, versions).
        progress: DeployProgress,
    },
    /// The answer to a deployment's work done off the loop.
    Done {
        /// The agent.
        agent: AgentName,
        /// The deployment (`DeployProgress::id`); answers to an earlier
        /// one are dropped.
        id: u64,
        /// The answer.
        done: Done,
    },
    /// The old process of a blue-green cutover holds no connection any
    /// more (or `drain_timeout` passed): it may drain now. `note` says
    /// how its sockets were handed over, for the cutover step's detail.
    Drainable {
        /// The agent.
        agent: AgentName,
        /// The deployment (`DeployProgress::id`).
        id: u64,
        /// What happened to the old process's connections.
        note: String,
    },
}

/// A command for the loop to spawn and reap: a deploy's build or smoke
/// test, or a command that creates a user.
#[derive(Debug)]
pub struct DeployCommand {
    /// argv.
    pub argv: Vec<String>,
    /// Where it runs.
    pub cwd: PathBuf,
    /// On top of the daemon's environment.
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go.
    pub output: OwnedFd,
    /// The pid, or why it could not start.
    pub started: oneshot::Sender<Result<u32, String>>,
    /// How it ended, sent when reaped.
    pub ended: oneshot::Sender<ExitStatus>,
}

impl DeployCommand {
    /// Asks the loop to run `argv` in `cwd` (output on `output`): the
    /// answers are its pid (or why it could not start), then how it ended.
    pub fn send(
        inbox: &Inbox,
        argv: &[String],
        cwd: &Path,
        env: Vec<(String, String)>,
        output: OwnedFd,
    ) -> (
        oneshot::Receiver<Result<u32, String>>,
        oneshot::Receiver<ExitStatus>,
    ) {
        let (started, started_answer) = oneshot::channel();
        let (ended, ended_answer) = oneshot::channel();
        inbox.send(Input::DeployExec(DeployCommand {
            argv: argv.to_vec(),
            cwd: cwd.to_path_buf(),
            env,
            output,
            started,
            ended,
        }));
        (started_answer, ended_answer)
    }
}

/// The sending side of the loop's inbox; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Inbox {
    sender: mpsc::Sender<Input>,
    doorbell: Arc<OwnedFd>,
}

impl Inbox {
    /// A new inbox: the sender, the receiver, and the doorbell's read end
    /// for the loop to poll.
    pub fn new() -> std::io::Result<(Inbox, mpsc::Receiver<Input>, OwnedFd)> {
        use nix::fcntl::OFlag;
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(std::io::Error::from)?;
        let (sender, receiver) = mpsc::channel();
        Ok((
            Inbox {
                sender,
                doorbell: Arc::new(write),
            },
            receiver,
            read,
        ))
    }

    /// Queues `input` and rings the doorbell. False when the loop is gone.
    pub fn send(&self, input: Input) -> bool {
        let sent = self.sender.send(input).is_ok();
        // A full doorbell pipe already wakes the loop; EAGAIN is fine.
        let _ = nix::unistd::write(&*self.doorbell, &[1]);
        sent
    }
}
