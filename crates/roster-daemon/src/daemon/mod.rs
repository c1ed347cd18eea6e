//! The daemon: one thread owns the [`Supervisor`] and every agent's I/O
//! resources and runs the loop; a tokio runtime beside it serves the API and
//! pumps the logs, and both reach the loop only through its [`Inbox`].
//!
//! The loop is a plain `poll(2)` on a signalfd (SIGCHLD, SIGTERM, SIGINT,
//! SIGHUP) and the inbox's doorbell, with the supervisor's next deadline as
//! timeout. A child's death wakes exactly this thread, which reaps it and
//! spawns the replacement before doing anything else: restart latency is one
//! wake-up, a waitpid and a posix_spawn.

mod home_watch;
mod leftovers;
mod log_matches;
mod notify_exec;
mod startup;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal as NixSignal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use roster_core::api::{AlertRecord, AlertState};
use roster_core::api::{ApplyConflict, ApplyReply};
use roster_core::config::Config;
use roster_core::watch::{AlertEvent, Response, Watcher};
use roster_core::{Action, AgentName, EventKind, ExitStatus, LogConfig, Supervisor};

pub use crate::inbox::{ApplyRefusal, Inbox, Input, Request, SampleTargets, Verb};
use startup::{
    io_error, notify_systemd_ready, raise_open_file_limit, stop_stale_processes, take_lock,
    DaemonLock,
};

use crate::alerts::AlertBook;
use crate::home::Home;
use crate::journal::{Journal, Row};
use crate::logs::pump::{pump, LogTrouble, PumpContext};
use crate::logs::{LogRules, LogWriter};
use crate::notify::Notifier;
use crate::{procfs, server, spawn};

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds this home.
    #[error("another roster daemon (pid {pid}) already runs for {home}\n  hint: use it (roster status), stop it (roster down), or pick another --home")]
    AlreadyRunning {
        /// The home.
        home: PathBuf,
        /// The other daemon's pid, as its lock file says.
        pid: String,
    },
    /// A file or directory of the home could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The home, or a file in it, may not be used.
    #[error(transparent)]
    Home(#[from] crate::home::HomeError),
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The config given at start is invalid.
    #[error("{0}")]
    Config(String),
    /// The home was deleted or replaced while the daemon ran; it stopped
    /// its agents and exited.
    #[error("the home {home} {reason}; every agent was stopped\n  hint: start roster again (roster up) to use a new home at that path")]
    HomeLost {
        /// The home.
        home: PathBuf,
        /// What happened to it.
        reason: String,
    },
}

/// What the daemon needs to start.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The home (absolute).
    pub home: PathBuf,
    /// A config to apply at start.
    pub config: Option<PathBuf>,
}

struct AgentIo {
    writer: Arc<Mutex<LogWriter>>,
    /// The writer's `log_matches` patterns.
    log_rules: crate::logs::SharedLogRules,
    dropped: Arc<AtomicU64>,
    /// Lines stored, for `/metrics`.
    lines: Arc<AtomicU64>,
    /// The pump of the latest run; each pump waits for its predecessor.
    last_pump: Option<JoinHandle<()>>,
}

/// The shortest time between two looks for strays (see `Daemon::sweep_due`).
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Agents spawned per pass of the loop, at most, and the time a pass may
/// spend spawning: 5,000 agents applied at once start in slices, and
/// `status` is answered between them.
const SPAWNS_PER_PASS: usize = 100;
const SPAWN_SLICE: Duration = Duration::from_millis(50);

/// Inputs taken from the inbox per pass of the loop, at most: between two
/// batches the loop reads signals (a child's death), so a flood of inputs
/// from any source cannot delay a restart.
const INPUTS_PER_PASS: usize = 256;

/// What bounds the size of log pipes (see [`spawn::pipe_bytes_within_budget`]).
struct PipeBudget {
    privileged: bool,
    soft_pages: u64,
    /// The last reduced size journaled, to say it once per change.
    reported: usize,
}

struct Daemon {
    home: Home,
    /// The home as verified at start, held open: what the daemon writes
    /// goes there, never to whatever the path names later.
    home_dir: Arc<crate::home::HomeDir>,
    /// Why the home was lost, once it was.
    home_lost: Option<String>,
    home_env: PathBuf,
    supervisor: Supervisor,
    journal: Journal,
    io: BTreeMap<AgentName, AgentIo>,
    log_config: watch::Sender<LogConfig>,
    runtime: tokio::runtime::Handle,
    inbox: Inbox,
    last_trouble_report: HashMap<String, Instant>,
    /// Per agent: when the daemon last logged a log trouble, and how many
    /// it held back since.
    trouble_warnings: HashMap<String, (Option<Instant>, u64)>,
    shutting_down: bool,
    shutdown_replies: Vec<oneshot::Sender<()>>,
    /// The config file this home last applied, if any (shared with the
    /// API server, which shows it in `status`).
    applied: Arc<Mutex<Option<PathBuf>>>,
    /// Agents whose main process died: (agent, its pid), to look for strays.
    pending_sweeps: Vec<(AgentName, u32)>,
    /// Agents the supervisor asked to spawn, waiting for a slice of a pass.
    spawn_queue: VecDeque<AgentName>,
    /// Agents whose `log_matches` counts wait for the loop to take them.
    log_matches: log_matches::LogMatchCounts,
    last_sweep: Option<Instant>,
    pipe_budget: PipeBudget,
    /// Network probes in flight, by probe id.
    probe_tasks: HashMap<u64, JoinHandle<()>>,
    /// Agents' processes started through the exec shim: pid to the pipe
    /// on which the shim says why it could not become the agent.
    shim_reports: HashMap<u32, OwnedFd>,
    /// Exec probes running: pid to (agent, probe id).
    probe_pids: HashMap<u32, (AgentName, u64)>,
    /// Watch rules and alert decisions.
    watcher: Watcher,
    /// Alerts raised, published for the API.
    alerts: Arc<Mutex<AlertBook>>,
    /// Compiled `log_matches` patterns per agent, handed to its writer.
    log_rules: BTreeMap<AgentName, Option<Arc<LogRules>>>,
    /// Paths that `disk_percent` host rules watch.
    host_disks: Vec<PathBuf>,
    /// What `file_sd.json` was last written with.
    file_sd: Option<String>,
    /// Delivers alerts; its targets follow the applied config.
    notifier: Notifier,
    /// Exec notifiers' commands running (see `notify_exec.rs`).
    notify_commands: notify_exec::NotifyCommands,
    /// Whether exec probes and notifiers may have left processes behind.
    leftovers: leftovers::Leftovers,
    /// Failed deliveries, counted per target and journaled in summaries.
    deliveries: roster_core::delivery_log::DeliveryLog,
    /// `/metrics`: the server and the snapshots the loop publishes to it.
    metrics: crate::metrics::Metrics,
    /// `[agents.NAME.listen]` sockets, bound once, handed to every process.
    listeners: crate::listen::Listeners,
    /// Deploy commands (build, smoke test) running: pid to its reply.
    deploy_commands: HashMap<u32, oneshot::Sender<ExitStatus>>,
    /// Deploys and rollbacks (their steps run on the runtime).
    deploys: Arc<crate::deploy::Deploys>,
    /// Who each agent runs as, resolved at its first start after an apply.
    accounts: HashMap<AgentName, Result<crate::identity::Account, String>>,
    /// Agents already reported running as root without the config saying so.
    root_reported: HashSet<AgentName>,
    /// The uids agents run as besides the daemon's, as `agent-uids` lists
    /// them for the next daemon (and for recognising strays).
    agent_uids: Vec<u32>,
    /// How each agent's limits are enforced (for status).
    enforcement: HashMap<AgentName, String>,
    /// Where agents' cgroups are made, if anywhere.
    cgroups: crate::cgroup::Cgroups,
    /// Per agent with limits: its cgroups and rlimits.
    prepared: HashMap<AgentName, crate::cgroup::Prepared>,
    /// OOM kills counted in an agent's memory cgroup when its process
    /// started: more after a SIGKILL death means the kernel killed it.
    oom_baseline: HashMap<AgentName, u64>,
    /// Every agent's secrets, kept current by the API: read at each spawn.
    secrets: Arc<crate::secrets::Secrets>,
    /// Every agent's `env_file`, read when its config was applied.
    env_files: crate::secrets::EnvFiles,
    _lock: DaemonLock,
}

/// A short stable name for a home, so that two homes' cgroups differ.
fn home_id(home: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in home.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash as u32)
}

/// The admin group named by `ROSTER_ADMIN_GROUP`, if any.
fn admin_group() -> Result<Option<u32>, DaemonError> {
    let Ok(name) = std::env::var("ROSTER_ADMIN_GROUP") else {
        return Ok(None);
    };
    if name.is_empty() {
        return Ok(None);
    }
    let group = match name.parse::<u32>() {
        Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)),
        Err(_) => nix::unistd::Group::from_name(&name),
    };
    match group {
        Ok(Some(group)) => Ok(Some(group.gid.as_raw())),
        _ => Err(DaemonError::Config(format!(
            "ROSTER_ADMIN_GROUP names the group {name:?}, which does not exist\n  hint: create it (groupadd -r {name}) or unset ROSTER_ADMIN_GROUP"
        ))),
    }
}

/// Runs the daemon in the foreground until SIGTERM, SIGINT or `roster down`.
pub fn run(options: DaemonOptions) -> Result<(), DaemonError> {
    // Before anything is opened: 0, 1 and 2 exist (so no file of ours
    // becomes one), and descriptors inherited from whoever started us are
    // close-on-exec (so they never reach agents).
    crate::sys::ensure_standard_fds();
    crate::sys::close_inherited_descriptors_on_exec();
    // Before any thread exists: the daemon's few threads share two arenas
    // instead of glibc's one per thread, each with its own free memory.
    crate::sys::limit_malloc_arenas(MALLOC_ARENAS);
    let home = Home::new(options.home.clone());
    // Block the signals the loop handles before any other thread exists:
    // every thread inherits the mask, so they reach only the signalfd.
    // (Children start with an empty mask: std resets it when spawning.)
    let mut handled = SigSet::empty();
    for signal in [
        NixSignal::SIGCHLD,
        NixSignal::SIGTERM,
        NixSignal::SIGINT,
        NixSignal::SIGHUP,
    ] {
        handled.add(signal);
    }
    let os_error = |what: &'static str| {
        let path = home.root().to_path_buf();
        move |errno: nix::Error| DaemonError::Io {
            what,
            path,
            source: errno.into(),
        }
    };
    handled
        .thread_block()
        .map_err(os_error("blocking signals for"))?;
    let signals = SignalFd::with_flags(&handled, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(os_error("creating a signalfd for"))?;

    // The home is checked (ours, not writable by others, not a link) and
    // never chmod-ed; the lock comes before anything else is touched in it.
    let home_dir = Arc::new(home.create_verified()?);
    let lock = take_lock(&home_dir)?;
    home_dir.ensure_directory("logs")?;
    raise_open_file_limit();
    if let Err(error) = spawn::become_subreaper() {
        tracing::warn!(
            "could not become a child subreaper: {error}; double-forked agents may escape"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .max_blocking_threads(16)
        .thread_name("roster")
        .enable_all()
        .build()
        .map_err(io_error("starting the runtime for", home.root()))?;
    let (journal, mut warnings) = Journal::open_in_home(&home_dir)?;
    // Secrets are loaded once; the API keeps the copy current. An agent
    // whose file cannot be used starts without its secrets, and status
    // says why (never with a value).
    let (secrets, problems) = crate::secrets::Secrets::load(&home_dir);
    for problem in problems {
        tracing::warn!("{problem}");
        warnings.push(problem);
    }
    let secrets = Arc::new(secrets);
    journal.record(Row::now(
        None,
        "daemon_started",
        Some(std::process::id()),
        format!("daemon started for {}", home.root().display()),
    ));
    stop_stale_processes(&home, &journal);

    let (inbox, inputs, doorbell) =
        Inbox::new().map_err(io_error("creating the inbox of", home.root()))?;
    let socket_path = home.socket();
    home_dir.remove_file("roster.sock")?;
    let listener = {
        let _context = runtime.enter();
        tokio::net::UnixListener::bind(&socket_path)
            .map_err(io_error("listening on", &socket_path))?
    };
    // 0600, or 0660 and the admin group's (ROSTER_ADMIN_GROUP, which
    // `roster install --admin-group` sets in the unit).
    let admin_gid = admin_group()?;
    let mode = if admin_gid.is_some() { 0o660 } else { 0o600 };
    if let Some(gid) = admin_gid {
        nix::unistd::chown(&socket_path, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(
            |errno| DaemonError::Io {
                what: "giving the admin group",
                path: socket_path.clone(),
                source: errno.into(),
            },
        )?;
    }
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(mode))
        .map_err(io_error("securing", &socket_path))?;
    let alerts = Arc::new(Mutex::new(AlertBook::default()));
    let history = Arc::new(Mutex::new(server::History::new()));
    let applied = Arc::new(Mutex::new(None));
    let deploys = crate::deploy::Deploys::new(home.root(), inbox.clone());
    let server = runtime.spawn(server::serve(
        listener,
        inbox.clone(),
        warnings,
        server::Published {
            alerts: alerts.clone(),
            history: history.clone(),
            deploys: Some(deploys.clone()),
            home: home.root().to_path_buf(),
            admin_gid,
            secrets: Some(secrets.clone()),
            applied: applied.clone(),
        },
    ));
    let sampler = runtime.spawn(sample_task(inbox.clone(), history));
    home_watch::spawn(runtime.handle(), home_dir.clone(), inbox.clone());

    let (cgroups, cgroup_note) = crate::cgroup::Cgroups::detect(&home_id(home.root()));
    journal.record(Row::now(
        None,
        "limits",
        None,
        match &cgroup_note {
            Some(note) => format!("agents' limits fall back to rlimits: {note}"),
            None => format!("agents' limits: {}", cgroups.summary()),
        },
    ));
    let (log_config, _) = watch::channel(LogConfig::default());
    let notifier = notify_exec::start_notifier(runtime.handle(), &inbox);
    let home_for_uids = home.clone();
    let mut daemon = Daemon {
        home_env: home.root().to_path_buf(),
        home,
        home_dir: home_dir.clone(),
        home_lost: None,
        supervisor: Supervisor::new(),
        journal,
        io: BTreeMap::new(),
        log_config,
        runtime: runtime.handle().clone(),
        inbox,
        last_trouble_report: HashMap::new(),
        trouble_warnings: HashMap::new(),
        shutting_down: false,
        shutdown_replies: Vec::new(),
        applied,
        pending_sweeps: Vec::new(),
        spawn_queue: VecDeque::new(),
        log_matches: Default::default(),
        last_sweep: None,
        probe_tasks: HashMap::new(),
        shim_reports: HashMap::new(),
        probe_pids: HashMap::new(),
        watcher: Watcher::new(),
        alerts: alerts.clone(),
        log_rules: BTreeMap::new(),
        host_disks: Vec::new(),
        file_sd: None,
        notifier,
        notify_commands: Default::default(),
        leftovers: Default::default(),
        deliveries: Default::default(),
        metrics: crate::metrics::Metrics::new(),
        listeners: crate::listen::Listeners::default(),
        deploy_commands: HashMap::new(),
        deploys,
        accounts: HashMap::new(),
        root_reported: HashSet::new(),
        agent_uids: startup::agent_uids(&home_for_uids),
        enforcement: HashMap::new(),
        cgroups,
        prepared: HashMap::new(),
        oom_baseline: HashMap::new(),
        secrets,
        env_files: crate::secrets::EnvFiles::new(),
        pipe_budget: PipeBudget {
            privileged: nix::unistd::geteuid().is_root(),
            soft_pages: spawn::pipe_user_pages_soft().unwrap_or(0),
            reported: spawn::MAX_PIPE_BYTES,
        },
        _lock: lock,
    };

    let outcome = match &options.config {
        Some(path) => {
            let mut loaded = crate::config_file::load_for_apply(path);
            if let Ok((config, read_along)) = &mut loaded {
                // The loop does not run yet: nothing else reaps children.
                let run = |argv: &[String]| -> Result<bool, String> {
                    let (program, arguments) = argv.split_first().ok_or("an empty command")?;
                    std::process::Command::new(program)
                        .args(arguments)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .status()
                        .map(|status| status.success())
                        .map_err(|error| format!("{program}: {error}"))
                };
                crate::deploy::prepare_config(
                    daemon.home.root(),
                    config,
                    read_along,
                    &daemon.deploys,
                    &run,
                );
            }
            match daemon.apply(path, loaded, true, true) {
                Ok(_) => Ok(()),
                Err(ApplyRefusal::Invalid(message)) => Err(DaemonError::Config(message)),
                Err(refusal) => Err(DaemonError::Config(format!("{refusal:?}"))),
            }
        }
        None => Ok(()),
    };
    if outcome.is_ok() {
        // Agents are spawned before systemd hears we are ready.
        daemon.perform();
        notify_systemd_ready();
        daemon.run_loop(&signals, &doorbell, &inputs, options.config.as_deref());
    }
    // Nothing reads the inbox any more: requests waiting in it, and those
    // that come while the pumps drain, are answered "shutting down" rather
    // than left hanging until the server is dropped (a cut answer).
    drop(inputs);
    daemon.finish();
    server.abort();
    sampler.abort();
    // Through the held home: a new home at the path keeps its own socket.
    let _ = home_dir.remove_file("roster.sock");
    let outcome = match (outcome, daemon.home_lost.take()) {
        (Ok(()), Some(reason)) => Err(DaemonError::HomeLost {
            home: daemon.home.root().to_path_buf(),
            reason,
        }),
        (outcome, _) => outcome,
    };
    for reply in daemon.shutdown_replies.drain(..) {
        let _ = reply.send(());
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

impl Daemon {
    fn run_loop(
        &mut self,
        signals: &SignalFd,
        doorbell: &OwnedFd,
        inputs: &mpsc::Receiver<Input>,
        config: Option<&Path>,
    ) {
        // The watchdog is fed from the loop itself: a loop that hangs is
        // restarted by systemd.
        let watchdog = startup::watchdog_interval();
        let mut next_watchdog = watchdog.map(|_| Instant::now());
        let mut inputs_left = false;
        loop {
            if let (Some(every), Some(due)) = (watchdog, next_watchdog) {
                if due <= Instant::now() {
                    startup::notify_systemd_watchdog();
                    next_watchdog = Some(Instant::now() + every);
                }
            }
            // Whatever the last inputs asked for (the initial apply's spawns
            // included) is done before sleeping.
            self.perform();
            self.publish_metrics();
            if self.shutting_down && self.supervisor.is_quiet() {
                return;
            }
            // One scan of the agents' deadlines per pass: with a thousand
            // agents probed every few seconds, the loop wakes often.
            let supervisor_deadline = self.supervisor.poll_timeout();
            let next = [
                supervisor_deadline,
                self.sweep_due(),
                self.deliveries.poll_timeout(),
                self.watcher.poll_timeout(),
                self.log_matches.poll_timeout(),
                next_watchdog,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = match next {
                // Inputs left over from the last pass: look at signals, then
                // take the next batch without sleeping.
                _ if inputs_left || !self.spawn_queue.is_empty() => PollTimeout::ZERO,
                None => PollTimeout::NONE,
                Some(deadline) => {
                    // Round up: waking a little late is fine, spinning is not.
                    let wait = deadline.saturating_duration_since(Instant::now());
                    let millis = wait.as_micros().div_ceil(1000);
                    PollTimeout::try_from(millis.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(doorbell.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(error) => {
                    tracing::error!("poll failed: {error}; stopping every agent");
                    self.begin_shutdown("an internal error");
                }
            }
            while let Ok(Some(info)) = signals.read_signal() {
                match NixSignal::try_from(info.ssi_signo as i32) {
                    Ok(NixSignal::SIGCHLD) => self.reap(),
                    Ok(NixSignal::SIGTERM) => self.begin_shutdown("SIGTERM"),
                    Ok(NixSignal::SIGINT) => self.begin_shutdown("SIGINT"),
                    // A re-read while stopping would start agents again.
                    Ok(NixSignal::SIGHUP) if !self.shutting_down => {
                        if let Some(path) = config {
                            self.reload_in_background(path);
                        }
                    }
                    _ => {}
                }
            }
            let mut ring = [0u8; 64];
            while matches!(nix::unistd::read(doorbell, &mut ring), Ok(length) if length > 0) {}
            // A batch at most, so no flood of inputs delays reaping and
            // restarts (signals are read first on every pass).
            inputs_left = false;
            for taken in 0.. {
                if taken == INPUTS_PER_PASS {
                    inputs_left = true;
                    break;
                }
                let Ok(input) = inputs.try_recv() else {
                    break;
                };
                match input {
                    Input::Request(request) => self.handle_request(request),
                    Input::Trouble(trouble) => self.report_trouble(trouble),
                    Input::Samples { agents, host } => {
                        self.watcher.handle_samples(Instant::now(), &agents, &host);
                    }
                    Input::LogMatches { agent, rules } => {
                        self.log_matches.handle_notice(Instant::now(), agent, rules);
                    }
                    Input::Investigated(record) => self.record_alert(record),
                    Input::Note {
                        agent,
                        kind,
                        detail,
                    } => {
                        self.journal.record(Row::now(
                            agent.as_ref().map(AgentName::as_str),
                            kind,
                            None,
                            detail,
                        ));
                    }
                    Input::Probe { agent, id, result } => {
                        self.probe_tasks.remove(&id);
                        self.supervisor
                            .handle_probe(Instant::now(), &agent, id, result);
                    }
                    Input::NotifyExec(request) => {
                        self.notify_commands.handle(request, &self.home_env)
                    }
                    Input::Notified(report) => self.journal_delivery(report),
                    Input::DeployExec(command) => self.run_deploy_command(command),
                    Input::DeployKill(pid) => {
                        if self.deploy_commands.contains_key(&pid) {
                            let _ = spawn::signal_group(pid, libc::SIGKILL);
                        }
                    }
                    Input::Alert(record) => self.record_alert(record),
                    Input::HomeLost(reason) => self.lose_home(reason),
                    Input::ResolveAlert { fingerprint, at } => {
                        let firing = self
                            .alerts
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .firing(&fingerprint)
                            .cloned();
                        if let Some(mut record) = firing {
                            record.state = AlertState::Resolved;
                            record.ends_at = Some(at);
                            self.record_alert(record);
                        }
                    }
                }
                self.perform();
            }
            if self.sweep_due().is_some_and(|due| due <= Instant::now()) {
                self.sweep_strays();
            }
            self.journal_due_deliveries();
            self.take_log_matches();
            if self
                .watcher
                .poll_timeout()
                .is_some_and(|deadline| deadline <= Instant::now())
            {
                self.watcher.handle_timeout(Instant::now());
            }
            // A deadline that inputs above moved earlier is met on the next
            // pass (its poll returns at once).
            if supervisor_deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                let now = Instant::now();
                // An agent that ended on its stop signal just now must be
                // seen as stopped, not escalated to SIGKILL. (Only then:
                // waitpid walks every child.)
                if self.supervisor.kill_due(now) {
                    self.reap();
                }
                self.supervisor.handle_timeout(Instant::now());
            }
        }
    }

    /// Hands the `log_matches` counts that are due to the watcher.
    fn take_log_matches(&mut self) {
        let now = Instant::now();
        for (agent, rules) in self.log_matches.take_due(now) {
            let counts = rules.take();
            // Counts for rules an apply has since replaced would land on
            // other rules' indices.
            let current = self.log_rules.get(&agent).and_then(Option::as_ref);
            if current.is_some_and(|current| Arc::ptr_eq(current, &rules)) {
                for (index, count) in counts {
                    self.watcher.handle_log_matches(now, &agent, index, count);
                }
            }
        }
    }

    /// SIGHUP: reads the config on a thread of its own (a file can be slow
    /// or hostile) and applies it through the inbox like an API request.
    fn reload_in_background(&self, path: &Path) {
        let path = path.to_path_buf();
        let inbox = self.inbox.clone();
        let home = self.home.root().to_path_buf();
        let deploys = self.deploys.clone();
        let spawned = std::thread::Builder::new()
            .name("roster-reload".into())
            .spawn(move || {
                let mut loaded = crate::config_file::load_for_apply(&path);
                if let Ok((config, read_along)) = &mut loaded {
                    let run = |argv: &[String]| crate::deploy::run_through_loop(&inbox, argv);
                    crate::deploy::prepare_config(&home, config, read_along, &deploys, &run);
                }
                let (reply, _ignored) = oneshot::channel();
                inbox.send(Input::Request(Request::Apply {
                    path,
                    loaded,
                    start_stopped: false,
                    replace: true,
                    reply,
                }));
            });
        if let Err(error) = spawned {
            tracing::error!("SIGHUP: could not start a thread to read the config: {error}");
        }
    }

    fn handle_request(&mut self, request: Request) {
        let now = Instant::now();
        match request {
            Request::Status(reply) => {
                let views = self
                    .supervisor
                    .views(now)
                    .into_iter()
                    .map(|view| {
                        let dropped = self
                            .io
                            .get(&view.name)
                            .map(|io| io.dropped.load(Ordering::Relaxed))
                            .unwrap_or(0);
                        let user = self
                            .accounts
                            .get(&view.name)
                            .and_then(|account| account.as_ref().ok())
                            .map(|account| account.name.clone());
                        let limits = self.enforcement.get(&view.name).cloned();
                        let warning = self
                            .root_reported
                            .contains(&view.name)
                            .then(|| roster_core::api::root_warning(view.name.as_str()));
                        crate::inbox::StatusLine {
                            view,
                            dropped,
                            user,
                            limits,
                            warning,
                        }
                    })
                    .collect();
                let _ = reply.send(views);
            }
            Request::Apply {
                path,
                loaded,
                start_stopped,
                replace,
                reply,
            } => {
                let result = if self.shutting_down {
                    Err(ApplyRefusal::ShuttingDown)
                } else {
                    self.apply(&path, loaded, start_stopped, replace)
                };
                let _ = reply.send(result);
            }
            Request::Agents { verb, names, reply } => {
                let _ = reply.send(self.agents_command(now, verb, &names));
            }
            Request::SampleTargets(reply) => {
                let agents: Vec<_> = self
                    .supervisor
                    .main_pids()
                    .into_iter()
                    .filter(|(agent, _)| !self.watcher.rules_of(agent).is_empty())
                    .map(|(agent, pid)| {
                        let readings = self.watcher.readings_of(&agent);
                        (agent, pid, readings)
                    })
                    .collect();
                let wanted = !agents.is_empty()
                    || !self.host_disks.is_empty()
                    || self.watcher.has_host_rules();
                let _ = reply.send(SampleTargets {
                    agents,
                    disks: self.host_disks.clone(),
                    wanted,
                });
            }
            Request::Shutdown(reply) => {
                self.shutdown_replies.push(reply);
                self.begin_shutdown("roster down");
            }
            Request::DeployTarget { agent, reply } => {
                let answer = match self.supervisor.spec(&agent) {
                    None => Err(format!(
                        "no agent named {agent}; known agents: {}",
                        self.supervisor
                            .names()
                            .iter()
                            .map(AgentName::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    Some(spec) if spec.deploy.is_none() => Err(format!(
                        "{agent} is not shipped as releases: its config has no [agents.{agent}.deploy] section\n  \
                         hint: add one (it may be empty) and `roster apply`; the agent then runs from {}",
                        crate::releases::Releases::new(self.home.root(), &agent)
                            .current_link()
                            .display()
                    )),
                    Some(_) if self.shutting_down => Err("the daemon is shutting down".into()),
                    Some(spec) => Ok(spec.clone()),
                };
                let _ = reply.send(answer);
            }
            Request::Cutover { agent, step, reply } => {
                let _ = reply.send(self.cutover(now, &agent, step));
            }
        }
    }

    /// A step of a deploy's cutover, performed at once (a new process is
    /// spawned before the answer), and the agent as it is after it.
    fn cutover(
        &mut self,
        now: Instant,
        agent: &AgentName,
        step: crate::deploy::CutoverStep,
    ) -> crate::deploy::CutoverReply {
        use crate::deploy::CutoverStep;
        if self.shutting_down {
            return Err("the daemon is shutting down".into());
        }
        let switch = match step {
            CutoverStep::Switch { release, strategy } => Some(
                self.supervisor
                    .handle_switch(now, agent, &release, strategy)?,
            ),
            CutoverStep::Retire => {
                self.supervisor.handle_retire(now, agent);
                None
            }
            CutoverStep::Handback(reason) => {
                self.supervisor.handle_handback(now, agent, &reason);
                None
            }
            CutoverStep::Observe => None,
        };
        self.perform();
        let view = self
            .supervisor
            .view(Instant::now(), agent)
            .ok_or_else(|| format!("{agent} is no longer in the config"))?;
        Ok((switch, view))
    }

    /// Spawns a deploy's build or smoke-test command; its exit is answered
    /// when reaped.
    fn run_deploy_command(&mut self, command: crate::deploy::DeployCommand) {
        let crate::deploy::DeployCommand {
            argv,
            cwd,
            env,
            output,
            started,
            ended,
        } = command;
        match spawn::spawn_notifier(&argv, &cwd, &env, &self.home_env, &output, None) {
            Ok(pid) => {
                self.deploy_commands.insert(pid, ended);
                let _ = started.send(Ok(pid));
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        }
    }

    fn agents_command(&mut self, now: Instant, verb: Verb, names: &[String]) -> Result<(), String> {
        if self.shutting_down && verb != Verb::Stop {
            return Err("the daemon is shutting down".into());
        }
        let targets: Vec<AgentName> = if names.iter().any(|name| name == "all") {
            self.supervisor.names()
        } else {
            let mut targets = Vec::new();
            let mut unknown = Vec::new();
            for name in names {
                match AgentName::new(name) {
                    Ok(agent) if self.supervisor.contains(&agent) => targets.push(agent),
                    _ => unknown.push(name.as_str()),
                }
            }
            if !unknown.is_empty() {
                return Err(format!(
                    "no agent named {}; known agents: {}",
                    unknown.join(", "),
                    self.supervisor
                        .names()
                        .iter()
                        .map(AgentName::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            targets
        };
        for agent in &targets {
            match verb {
                Verb::Start => self.supervisor.handle_start(now, agent),
                Verb::Stop => self.supervisor.handle_stop(now, agent),
                Verb::Restart => self.supervisor.handle_restart(now, agent),
            }
        }
        Ok(())
    }

    /// Applies a config read and validated off the loop, whole or not at
    /// all. Refuses to remove agents when the file is not the one this home
    /// last applied, unless `replace`: `roster up` in another project's
    /// directory must not silently stop this one's agents.
    fn apply(
        &mut self,
        path: &Path,
        loaded: Result<(Config, crate::config_file::ReadAlong), String>,
        start_stopped: bool,
        replace: bool,
    ) -> Result<ApplyReply, ApplyRefusal> {
        let display = path.display().to_string();
        let (config, read_along) = match loaded {
            Ok(loaded) => loaded,
            Err(message) => return Err(self.reject("", message)),
        };
        let last = self
            .applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(applied) = last.filter(|applied| applied != path) {
            let would_remove: Vec<String> = self
                .supervisor
                .names()
                .into_iter()
                .filter(|name| !config.agents.contains_key(name))
                .map(|name| name.to_string())
                .collect();
            if !replace && !would_remove.is_empty() {
                let applied = applied.display().to_string();
                self.journal.record(Row::now(
                    None,
                    "config_rejected",
                    None,
                    format!(
                        "{display} would remove {} started by {applied}; not applied (no --replace)",
                        would_remove.join(", ")
                    ),
                ));
                return Err(ApplyRefusal::Conflict(ApplyConflict {
                    error: format!(
                        "{display} is not the config this home last applied ({applied}), and applying it would remove {}\n  \
                         hint: pass --replace to apply it anyway, or use another --home for this project",
                        would_remove.join(", ")
                    ),
                    applied,
                    would_remove,
                }));
            }
        }
        let listen = config.metrics.as_ref().map(|metrics| metrics.listen);
        if let Err(message) =
            self.metrics
                .apply(&self.runtime, listen, read_along.metrics_token.clone())
        {
            return Err(self.reject(&format!("{display}: "), message));
        }
        let handovers = match self.listeners.apply(&config, &self.supervisor.main_pids()) {
            Ok(handovers) => handovers,
            Err(message) => return Err(self.reject(&format!("{display}: "), message)),
        };
        for (agent, note) in handovers {
            self.journal.record(Row::now(
                Some(agent.as_str()),
                "listen_handover",
                None,
                note,
            ));
        }
        self.log_config.send_replace(config.log.clone());
        // Pumps hand new settings to their writer with the next output; a
        // quiet agent's writer gets them now, so a lower `keep` removes its
        // surplus files at once. Never wait here: a busy or compressing
        // writer is left to its pump.
        for io in self.io.values() {
            if let Ok(mut writer) = io.writer.try_lock() {
                if !writer.is_compressing() {
                    writer.set_config(config.log.clone());
                }
            }
        }
        let now = Instant::now();
        // Users may have been created or changed since: look them up again.
        self.accounts.clear();
        self.apply_limits(&config);
        let summary = self.supervisor.handle_apply_with_releases(
            now,
            &config,
            start_stopped,
            &read_along.live_releases,
        );
        self.apply_rules(now, &config);
        self.notifier.reconfigure(config.notify.clone());
        self.deliveries
            .retain_targets(now, &self.notifier.targets());
        self.journal_delivery_notes();
        self.env_files = read_along.env_files;
        *self
            .applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(path.to_path_buf());
        self.journal.record(Row::now(
            None,
            "config_applied",
            None,
            format!(
                "{display}: {} added, {} changed, {} removed, {} unchanged",
                summary.added.len(),
                summary.changed.len(),
                summary.removed.len(),
                summary.unchanged.len()
            ),
        ));
        Ok(ApplyReply { summary })
    }

    /// Creates or updates the cgroups of agents with limits (writes to the
    /// cgroup filesystem: kernel memory, no disk), and notes how each
    /// agent's limits are enforced.
    fn apply_limits(&mut self, config: &Config) {
        self.enforcement.clear();
        let before: Vec<AgentName> = self.prepared.keys().cloned().collect();
        for agent in before {
            if !config
                .agents
                .get(&agent)
                .is_some_and(|spec| spec.limits.any())
            {
                self.prepared.remove(&agent);
            }
        }
        for (agent, spec) in &config.agents {
            if !spec.limits.any() {
                self.enforcement.insert(agent.clone(), "none".into());
                continue;
            }
            match self.cgroups.prepare(agent.as_str(), &spec.limits) {
                Ok(prepared) => {
                    if !prepared.unenforced.is_empty() {
                        self.journal.record(Row::now(
                            Some(agent.as_str()),
                            "limits_unenforced",
                            None,
                            format!(
                                "{} cannot be enforced on this host (no cgroup controller for it)",
                                prepared.unenforced.join(", ")
                            ),
                        ));
                    }
                    self.enforcement
                        .insert(agent.clone(), prepared.enforcement.as_str().to_owned());
                    self.prepared.insert(agent.clone(), prepared);
                }
                Err(error) => {
                    self.journal.record(Row::now(
                        Some(agent.as_str()),
                        "limits_failed",
                        None,
                        error.clone(),
                    ));
                    self.prepared.remove(agent);
                    self.enforcement.insert(agent.clone(), "failed".into());
                }
            }
        }
    }

    /// Journals why a config was not applied (its first line, after
    /// `prefix`) and refuses it.
    fn reject(&mut self, prefix: &str, message: String) -> ApplyRefusal {
        let first = message.lines().next().unwrap_or_default();
        self.journal.record(Row::now(
            None,
            "config_rejected",
            None,
            format!("{prefix}{first}; the previous config stays"),
        ));
        ApplyRefusal::Invalid(message)
    }

    /// The home was deleted or replaced: nothing more can be kept in it,
    /// and nobody can reach this daemon. Says so where it still can (its
    /// log, the journal's open file) and stops every agent gracefully.
    fn lose_home(&mut self, reason: String) {
        let message = format!(
            "the home {} {reason}; stopping every agent and exiting (nothing more is written to that path)",
            self.home.root().display()
        );
        tracing::error!("{message}");
        self.journal
            .record(Row::now(None, "home_lost", None, message.clone()));
        self.home_lost = Some(reason);
        self.begin_shutdown("its home is gone");
    }

    fn begin_shutdown(&mut self, why: &str) {
        if !self.shutting_down {
            self.shutting_down = true;
            startup::notify_systemd_stopping();
            self.journal.record(Row::now(
                None,
                "daemon_stopping",
                None,
                format!("stopping every agent ({why})"),
            ));
        }
        self.supervisor.handle_stop_all(Instant::now());
    }

    fn reap(&mut self) {
        while let Some((pid, status)) = spawn::reap_one() {
            let now = Instant::now();
            // An exec shim that could not become the agent said why.
            let handled = match self
                .shim_reports
                .remove(&pid)
                .and_then(|report| spawn::read_shim_report(&report))
            {
                Some(reason) => self.supervisor.handle_not_started(now, pid, status, reason),
                None => self.supervisor.handle_exit(now, pid, status),
            };
            if !handled {
                if self.notify_commands.reaped(pid, status) {
                    // An exec notifier's command: its reply is answered.
                    self.leftovers.helper_ended(pid);
                } else if let Some(ended) = self.deploy_commands.remove(&pid) {
                    let _ = ended.send(status);
                } else if let Some((agent, id)) = self.probe_pids.remove(&pid) {
                    self.leftovers.helper_ended(pid);
                    let result = if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("the health command ended with {status}"))
                    };
                    self.supervisor.handle_probe(now, &agent, id, result);
                } else {
                    tracing::debug!(pid, %status, "reaped a stray process");
                    self.leftovers.stray_reaped();
                }
            }
            // Respawn before reaping the next: restart latency matters most.
            self.perform();
        }
    }

    /// Publishes what `/metrics` shows, when something changed in the pass
    /// and metrics are served: state, pids, restarts and health as the
    /// supervisor has them, and handles on the log counters. No /proc
    /// here: scrapes sample that themselves.
    fn publish_metrics(&mut self) {
        let supervisor = &self.supervisor;
        let io = &self.io;
        let deliveries = &self.deliveries;
        let firing = self
            .alerts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .firing_count() as u64;
        self.metrics.publish_if_changed(|| {
            let mut snapshot = crate::metrics::MetricsSnapshot::from_views(
                supervisor.views(Instant::now()),
                |name| {
                    io.get(name)
                        .map(|io| crate::metrics::LogCounters {
                            lines: io.lines.clone(),
                            dropped: io.dropped.clone(),
                        })
                        .unwrap_or_default()
                },
            );
            snapshot.alerts_firing = firing;
            snapshot.notify_failures = deliveries
                .totals()
                .map(|(target, totals)| (target.to_owned(), totals.failed, totals.dropped))
                .collect();
            snapshot
        });
    }

    /// When the next sweep is due. A sweep looks for the strays of agents
    /// whose main process died and for what ended exec probes and
    /// notifiers left behind, [`SWEEP_INTERVAL`] after the last one, so a
    /// burst of exits (5000 agents stopping) costs one /proc scan per
    /// interval, not one per wake-up.
    fn sweep_due(&self) -> Option<Instant> {
        (!self.pending_sweeps.is_empty() || self.leftovers.is_pending()).then(|| {
            self.last_sweep
                .map_or_else(Instant::now, |last| last + SWEEP_INTERVAL)
        })
    }

    /// Journals the delivery failures whose summary is due.
    fn journal_due_deliveries(&mut self) {
        let now = Instant::now();
        if self.deliveries.poll_timeout().is_some_and(|due| due <= now) {
            self.deliveries.handle_timeout(now);
            self.journal_delivery_notes();
        }
    }

    /// Performs every pending action and journals every pending event.
    ///
    /// Looking for strays means reading /proc, so it is done at most once per
    /// pass, whatever the number of agents signalled: stopping 5000 agents is
    /// one scan, not 5000.
    fn perform(&mut self) {
        let mut strays: Option<HashMap<String, Vec<u32>>> = None;
        let began = Instant::now();
        let mut spawned = 0;
        loop {
            self.perform_actions(&mut strays);
            // Spawns in slices: applying thousands of agents leaves turns of
            // the loop between slices for signals and the API.
            if spawned >= SPAWNS_PER_PASS || began.elapsed() >= SPAWN_SLICE {
                break;
            }
            let Some(agent) = self.spawn_queue.pop_front() else {
                break;
            };
            let result = if self.supervisor.is_spawning(&agent) {
                spawned += 1;
                self.spawn(&agent)
            } else {
                // Stopped or removed while it waited: nothing to start.
                Err("not started: stopped before its turn".to_owned())
            };
            self.supervisor
                .handle_spawned(Instant::now(), &agent, result);
            // A new process may be a child the last scan did not see.
            strays = None;
        }
        self.journal_events();
    }

    /// Performs the supervisor's actions but spawns, which wait in
    /// `spawn_queue` for [`Daemon::perform`]'s slices.
    fn perform_actions(&mut self, strays: &mut Option<HashMap<String, Vec<u32>>>) {
        while let Some(action) = self.supervisor.poll_action() {
            match action {
                Action::Spawn { agent } => self.spawn_queue.push_back(agent),
                Action::Signal { agent, pid, signal } => {
                    if let Err(error) = spawn::signal_group(pid, signal.number()) {
                        tracing::error!(%agent, pid, "sending {signal}: {error}");
                    }
                    let strays = strays.get_or_insert_with(|| self.strays_by_agent());
                    for stray in strays.get(agent.as_str()).into_iter().flatten() {
                        spawn::signal_process(*stray, signal.number());
                    }
                    if signal.resumes_stopped() {
                        // A stopped (SIGSTOP, ^Z) agent cannot run the
                        // handler of its stop signal until it is continued.
                        let _ = spawn::signal_group(pid, libc::SIGCONT);
                        for stray in strays.get(agent.as_str()).into_iter().flatten() {
                            spawn::signal_process(*stray, libc::SIGCONT);
                        }
                    }
                }
                Action::Cleanup { agent, pid } => {
                    // Members of the dead main's group get SIGKILL now; a
                    // stray (a process that left the group) is looked for
                    // once the burst of exits has been reaped.
                    let _ = spawn::signal_group(pid, libc::SIGKILL);
                    self.pending_sweeps.push((agent, pid));
                }
                Action::Forget { agent } => {
                    // The pumps hold the writer until their pipes close.
                    self.io.remove(&agent);
                    self.cgroups.remove(agent.as_str());
                    self.prepared.remove(&agent);
                }
                Action::Probe {
                    agent,
                    id,
                    check,
                    timeout,
                } => self.start_probe(agent, id, check, timeout),
                Action::CancelProbe { agent: _, id } => {
                    if let Some(task) = self.probe_tasks.remove(&id) {
                        task.abort();
                    }
                    // An exec probe: its whole group goes; the reap that
                    // follows is stale to the supervisor.
                    for (pid, _) in self.probe_pids.iter().filter(|(_, (_, out))| *out == id) {
                        let _ = spawn::signal_group(*pid, libc::SIGKILL);
                    }
                }
            }
        }
    }

    /// Journals the supervisor's events, tells the watcher what they mean,
    /// and performs its responses.
    fn journal_events(&mut self) {
        while let Some(event) = self.supervisor.poll_event() {
            self.metrics.mark_changed();
            tracing::info!(agent = %event.agent, "{}", event.kind.detail());
            self.journal.record(Row::now(
                Some(event.agent.as_str()),
                event.kind.name(),
                event.kind.pid(),
                event.kind.detail(),
            ));
            let now = Instant::now();
            let interval = || {
                self.supervisor
                    .spec(&event.agent)
                    .and_then(|spec| spec.health.as_ref())
                    .map_or(Duration::ZERO, |health| health.interval)
            };
            match &event.kind {
                EventKind::Unhealthy { error, action, .. }
                    if *action != roster_core::health::OnFailure::None =>
                {
                    let interval = interval();
                    self.watcher
                        .handle_health(now, &event.agent, false, interval, error);
                }
                EventKind::Healthy => {
                    let interval = interval();
                    self.watcher
                        .handle_health(now, &event.agent, true, interval, "");
                }
                EventKind::Started { .. } => self.watcher.handle_new_process(now, &event.agent),
                EventKind::Exited {
                    pid,
                    status: roster_core::ExitStatus::Signal(9),
                    ..
                } => self.check_oom(&event.agent, *pid),
                _ => {}
            }
        }
        while let Some(response) = self.watcher.poll_response() {
            self.respond(response);
        }
        // A rule's restart or stop asks the supervisor for more.
        if self.supervisor.has_pending() {
            self.perform();
        }
    }

    /// A main process died of SIGKILL: when its memory cgroup counted an
    /// OOM kill since it started, the kernel killed it at `memory_max`.
    fn check_oom(&mut self, agent: &AgentName, pid: u32) {
        let Some(baseline) = self.oom_baseline.get(agent).copied() else {
            return;
        };
        let Some(kills) = self.cgroups.oom_kills(agent.as_str()) else {
            return;
        };
        if kills > baseline {
            self.oom_baseline.insert(agent.clone(), kills);
            let limit = self
                .supervisor
                .spec(agent)
                .and_then(|spec| spec.limits.memory_max)
                .map(crate::sample::human_bytes)
                .unwrap_or_else(|| "its memory limit".into());
            let message =
                format!("pid {pid} was killed by the kernel: it reached memory_max ({limit})");
            tracing::warn!(%agent, "{message}");
            self.journal.record(Row::now(
                Some(agent.as_str()),
                "oom_killed",
                Some(pid),
                message,
            ));
        }
    }

    /// Performs what a watch rule decided.
    fn respond(&mut self, response: Response) {
        let now = Instant::now();
        match response {
            Response::Alert(event) => {
                let record = self.alert_record(&event, String::new());
                self.record_alert(record);
            }
            Response::Investigate(event) => {
                let record = self.alert_record(&event, String::new());
                let leader = event
                    .agent
                    .as_ref()
                    .and_then(|agent| {
                        self.supervisor
                            .main_pids()
                            .into_iter()
                            .find(|(name, _)| name == agent)
                    })
                    .map(|(_, pid)| pid);
                let log = event
                    .agent
                    .as_ref()
                    .map(|agent| self.home.agent_log(agent.as_str()))
                    .unwrap_or_default();
                let inbox = self.inbox.clone();
                let agent = event
                    .agent
                    .as_ref()
                    .map(|agent| agent.to_string())
                    .unwrap_or_default();
                self.runtime.spawn_blocking(move || {
                    let mut record = record;
                    record.details = crate::sample::investigate(&agent, leader, &log);
                    inbox.send(Input::Investigated(record));
                });
            }
            Response::Restart { agent, reason } => {
                self.supervisor.handle_rule_restart(now, &agent, &reason);
            }
            Response::Stop { agent, reason } => {
                self.journal.record(Row::now(
                    Some(agent.as_str()),
                    "rule_stop",
                    None,
                    format!("stopping: {reason}"),
                ));
                self.supervisor.handle_stop(now, &agent);
            }
            Response::CleanLogs { path, percent } => {
                // Through the held home: never another home at the path.
                let logs = home_watch::anchored(&self.home_dir).join("logs");
                let inbox = self.inbox.clone();
                self.runtime.spawn_blocking(move || {
                    let (removed, bytes, after) = crate::logs::clean_oldest(&logs, &path, percent);
                    inbox.send(Input::Note {
                        agent: None,
                        kind: "logs_cleaned",
                        detail: format!(
                            "{} is {}% full: removed {removed} rotated log file(s), {}; now {}",
                            path.display(),
                            percent,
                            crate::sample::human_bytes(bytes),
                            after
                                .map(|after| format!("{after:.1}% used"))
                                .unwrap_or_else(|| "unknown".into())
                        ),
                    });
                });
            }
        }
    }

    /// An alert with wall-clock times, for the journal, `roster alerts` and
    /// notifiers.
    fn alert_record(&self, event: &AlertEvent, details: String) -> AlertRecord {
        let now = Instant::now();
        let wall = |at: Instant| {
            let ago = now.saturating_duration_since(at).as_millis() as i64;
            crate::clock::rfc3339_millis(crate::clock::unix_millis() - ago)
        };
        let mut labels = event.labels.clone();
        labels.insert("alertname".into(), event.name.clone());
        AlertRecord {
            fingerprint: event.fingerprint.clone(),
            name: event.name.clone(),
            agent: event.agent.as_ref().map(|agent| agent.to_string()),
            severity: event.severity.to_owned(),
            state: if event.firing {
                AlertState::Firing
            } else {
                AlertState::Resolved
            },
            summary: event.summary.clone(),
            details,
            starts_at: wall(event.since),
            ends_at: event.until.map(wall),
            labels,
        }
    }

    /// Journals an alert event and publishes it.
    fn record_alert(&mut self, record: AlertRecord) {
        let kind = match record.state {
            AlertState::Firing => "alert_firing",
            AlertState::Resolved => "alert_resolved",
        };
        tracing::warn!(alert = %record.name, "{}", record.summary);
        self.journal.record(Row::now(
            record.agent.as_deref(),
            kind,
            None,
            format!("{}: {}", record.name, record.summary),
        ));
        self.alerts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record(&record);
        self.metrics.mark_changed();
        // Repeats (repeat_every) and new firings alike go to the notifiers;
        // they never wait for a target.
        self.notifier.send(record);
    }

    /// Hands an applied config's rules to the watcher and the log writers.
    fn apply_rules(&mut self, now: Instant, config: &Config) {
        let mut agents = BTreeMap::new();
        self.log_rules.clear();
        for (name, spec) in &config.agents {
            let rules = spec.rules();
            let patterns: Vec<(usize, String)> = rules
                .iter()
                .enumerate()
                .filter_map(|(index, rule)| Some((index, rule.pattern.clone()?)))
                .collect();
            let compiled = LogRules::new(&patterns).map(Arc::new);
            if let Some(io) = self.io.get(name) {
                // Never waits on the writer: the pump reads the handle.
                *io.log_rules
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = compiled.clone();
            }
            self.log_rules.insert(name.clone(), compiled);
            agents.insert(name.clone(), rules);
        }
        self.host_disks = config
            .host_watch
            .iter()
            .filter_map(|rule| rule.path.clone())
            .collect();
        self.watcher
            .set_rules(now, agents, config.host_watch.clone());
        self.write_file_sd(config);
    }

    /// Keeps `<home>/file_sd.json` listing the agents that serve their own
    /// metrics, in Prometheus' file_sd format (labels `agent`, and the
    /// path), so application metrics are scraped beside roster's own.
    /// Written off the loop, atomically, only when it changes.
    fn write_file_sd(&mut self, config: &Config) {
        let targets: Vec<serde_json::Value> = config
            .agents
            .iter()
            .filter_map(|(name, spec)| {
                let target = spec.metrics.as_ref()?;
                Some(serde_json::json!({
                    "targets": [target.address],
                    "labels": {"agent": name.as_str(), "__metrics_path__": target.path},
                }))
            })
            .collect();
        let Ok(mut text) = serde_json::to_string_pretty(&targets) else {
            return;
        };
        text.push('\n');
        if self.file_sd.as_deref() == Some(text.as_str()) {
            return;
        }
        self.file_sd = Some(text.clone());
        let home = self.home_dir.clone();
        self.runtime.spawn_blocking(move || {
            let written = home.write_atomically(FILE_SD, text.as_bytes());
            if let Err(error) = written {
                tracing::warn!("writing {FILE_SD}: {error}");
            }
        });
    }

    /// Starts a health probe. HTTP and TCP run as tasks on the runtime and
    /// report through the inbox; an exec probe is a process in its own
    /// group, spawned here like an agent (the loop is the only reaper) with
    /// its output discarded, and judged when it is reaped.
    fn start_probe(
        &mut self,
        agent: AgentName,
        id: u64,
        check: roster_core::health::Check,
        timeout: Duration,
    ) {
        use roster_core::health::Check;
        match check {
            Check::Exec(argv) => {
                let result = self.spawn_exec_probe(&agent, id, argv);
                match result {
                    Ok(pid) => {
                        self.probe_pids.insert(pid, (agent, id));
                    }
                    Err(error) => {
                        self.supervisor
                            .handle_probe(Instant::now(), &agent, id, Err(error));
                    }
                }
            }
            network => {
                let inbox = self.inbox.clone();
                let task = self.runtime.spawn(async move {
                    let result = crate::probe::probe_network(&network, timeout).await;
                    inbox.send(Input::Probe { agent, id, result });
                });
                self.probe_tasks.insert(id, task);
            }
        }
    }

    /// An exec health check, run as the agent would be: its directory and
    /// environment, its own process group, output to /dev/null; and
    /// `ROSTER_PID`, the pid of the process it judges (during a cutover
    /// the new one), so a check can ask that process and not whichever
    /// answers a shared port. Marked `ROSTER_HELPER=probe:ID`, so that
    /// nothing it starts outlives it (see `leftovers.rs`).
    fn spawn_exec_probe(
        &mut self,
        agent: &AgentName,
        id: u64,
        argv: Vec<String>,
    ) -> Result<u32, String> {
        let mut launch = self.launch(agent)?;
        launch.sockets.clear();
        launch.helper_run = Some(leftovers::probe_run(id));
        if let Some(pid) = self
            .supervisor
            .view(Instant::now(), agent)
            .and_then(|view| view.pid)
        {
            launch
                .environment
                .push(("ROSTER_PID".into(), pid.to_string().into()));
        }
        let Some(spec) = self.supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        let mut probe = spec.clone();
        probe.command = argv;
        let null: OwnedFd = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(|error| format!("opening /dev/null: {error}"))?
            .into();
        spawn::spawn_agent(agent, &probe, &self.home_env, &null, &launch).map(|spawned| spawned.pid)
    }

    /// Who the agent runs as: the configured user (the shim switches to
    /// it), or the daemon's. Root only when the config says so, for the
    /// installed daemon; an ad-hoc root daemon runs it but says so.
    fn set_user(
        &mut self,
        agent: &AgentName,
        identity: &roster_core::hardening::Identity,
        launch: &mut spawn::Launch,
    ) -> Result<(), String> {
        let account = self
            .accounts
            .entry(agent.clone())
            .or_insert_with(|| crate::identity::resolve(identity))
            .clone()?;
        if account.uid == 0 && !identity.root_intended() {
            if crate::identity::installed() {
                return Err(format!(
                    "refusing to start {agent} as root: the installed daemon runs agents as root only when the config says so\n  \
                     hint: set user = \"agent-runner\" (or another user) for it or in [defaults], or allow_root = true"
                ));
            }
            if self.root_reported.insert(agent.clone()) {
                let message = format!(
                    "{agent} runs as root because this daemon does and the config names no user; \
                     set user = \"...\" (or allow_root = true to say it is intended)"
                );
                tracing::warn!("{message}");
                self.journal.record(Row::now(
                    Some(agent.as_str()),
                    "runs_as_root",
                    None,
                    message,
                ));
            }
        }
        if account.uid != nix::unistd::Uid::effective().as_raw()
            && !self.agent_uids.contains(&account.uid)
        {
            self.remember_agent_uid(account.uid);
        }
        if crate::identity::needs_switch(&account) {
            if !nix::unistd::Uid::effective().is_root() {
                return Err(format!(
                    "{agent} should run as {} but this daemon does not run as root and cannot switch users\n  \
                     hint: run roster as root (roster install), or remove `user`",
                    account.name
                ));
            }
            launch.user = Some((account.uid, account.gid, account.groups.clone()));
            launch
                .environment
                .push(("HOME".into(), account.home.clone().into_os_string()));
            launch
                .environment
                .push(("USER".into(), account.name.clone().into()));
            launch
                .environment
                .push(("LOGNAME".into(), account.name.clone().into()));
        }
        Ok(())
    }

    /// Adds a uid to `agent-uids`, durably, before the first agent of that
    /// uid is spawned: a daemon killed right after the spawn must leave a
    /// list the next daemon finds that agent by (else it would survive as
    /// an unmanaged copy beside a fresh one). Written on the loop, once per
    /// uid in the daemon's life; writing it off the loop lost that race.
    fn remember_agent_uid(&mut self, uid: u32) {
        self.agent_uids.push(uid);
        self.agent_uids.sort_unstable();
        let text: String = self
            .agent_uids
            .iter()
            .map(|uid| format!("{uid}\n"))
            .collect();
        let written = self
            .home_dir
            .write_atomically(startup::AGENT_UIDS, text.as_bytes());
        if let Err(error) = written {
            tracing::warn!("writing {}: {error}", startup::AGENT_UIDS);
        }
    }

    /// Where and with what an agent's next process starts: an agent shipped
    /// as releases runs in the release the supervisor names, or else the
    /// one `current` points to (one readlink); its listen sockets; its
    /// `env_file` and then its secrets over the config's `env`, from
    /// memory (no file is read here).
    fn launch(&mut self, agent: &AgentName) -> Result<spawn::Launch, String> {
        let Some(spec) = self.supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        let identity = spec.identity.clone();
        let supervisor = &self.supervisor;
        let sockets = self.listeners.of(agent, || supervisor.main_pids())?;
        let mut launch = spawn::Launch {
            sockets,
            ..Default::default()
        };
        let from_file = self.env_files.get(agent).into_iter().flatten().cloned();
        launch.environment.extend(
            from_file
                .chain(self.secrets.environment(agent))
                .map(|(key, value)| (key.into(), value.into())),
        );
        if let Some(limits) = self.supervisor.spec(agent).map(|spec| spec.limits.clone()) {
            if limits.any() {
                let Some(prepared) = self.prepared.get(agent) else {
                    return Err(format!(
                        "{agent}'s limits could not be set up (see `roster events {agent}`); it is not started without them"
                    ));
                };
                launch.cgroups = prepared.join.clone();
                launch.rlimits = prepared
                    .rlimits
                    .iter()
                    .map(|(kind, value)| {
                        let name = match kind {
                            crate::cgroup::RlimitKind::AddressSpace => "as",
                            crate::cgroup::RlimitKind::Processes => "nproc",
                            crate::cgroup::RlimitKind::OpenFiles => "nofile",
                        };
                        (name.to_owned(), *value)
                    })
                    .collect();
                if let Some(kills) = self.cgroups.oom_kills(agent.as_str()) {
                    self.oom_baseline.insert(agent.clone(), kills);
                }
            }
        }
        self.set_user(agent, &identity, &mut launch)?;
        let Some(spec) = self.supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        if spec.deploy.is_none() {
            return Ok(launch);
        }
        let releases = crate::releases::Releases::new(self.home.root(), agent);
        let release = match self.supervisor.release(agent) {
            Some(release) => Some(release.to_owned()),
            None => {
                let live = std::fs::read_link(releases.current_link())
                    .ok()
                    .and_then(|target| Some(target.file_name()?.to_str()?.to_owned()));
                if let Some(live) = &live {
                    self.supervisor.note_release(agent, live);
                }
                live
            }
        };
        if let Some(release) = &release {
            launch
                .environment
                .push(("ROSTER_RELEASE".into(), release.into()));
        }
        launch.environment.push((
            "ROSTER_SHARED".into(),
            releases.shared_dir().into_os_string(),
        ));
        let Some(spec) = self.supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        if spec.release_cwd {
            let Some(release) = release else {
                return Err(format!(
                    "no release of {agent} is deployed yet\n  hint: roster deploy {agent} DIR"
                ));
            };
            launch.cwd = Some(releases.release_dir(&release).join(&spec.release_subdir));
        }
        Ok(launch)
    }

    /// Kills what ended exec probes and notifiers left behind (see
    /// `leftovers.rs`), and processes that escaped the group of an agent's
    /// dead main process, so no second copy runs beside the next one: one
    /// /proc scan for every cleanup since the last sweep.
    fn sweep_strays(&mut self) {
        self.last_sweep = Some(Instant::now());
        if self.leftovers.is_pending() {
            self.sweep_leftovers();
        }
        if self.pending_sweeps.is_empty() {
            return;
        }
        let sweeps = std::mem::take(&mut self.pending_sweeps);
        let strays = self.strays_by_agent();
        for (agent, dead_main) in sweeps {
            for stray in strays.get(agent.as_str()).into_iter().flatten() {
                let escaped = procfs::sample(*stray).is_some_and(|sample| sample.pgid != dead_main);
                if !escaped {
                    continue;
                }
                self.journal.record(Row::now(
                    Some(agent.as_str()),
                    "stray_killed",
                    Some(*stray),
                    format!("pid {stray} outlived its agent's main process: SIGKILL"),
                ));
                spawn::signal_process(*stray, libc::SIGKILL);
            }
        }
    }

    fn spawn(&mut self, agent: &AgentName) -> Result<u32, String> {
        let beside = self.supervisor.outgoing_pid(agent).is_some();
        let launch = self.launch(agent)?;
        let io = self.io.entry(agent.clone()).or_insert_with(|| {
            let dropped = Arc::new(AtomicU64::new(0));
            let lines = Arc::new(AtomicU64::new(0));
            let mut writer = LogWriter::open_shown(
                agent.as_str(),
                home_watch::anchored(&self.home_dir)
                    .join("logs")
                    .join(format!("{agent}.log")),
                self.home.agent_log(agent.as_str()),
                self.log_config.borrow().clone(),
                dropped.clone(),
            );
            let log_rules = writer.log_rules();
            *log_rules
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                self.log_rules.get(agent).cloned().flatten();
            writer.count_written_lines(lines.clone());
            AgentIo {
                writer: Arc::new(Mutex::new(writer)),
                log_rules,
                dropped,
                lines,
                last_pump: None,
            }
        });
        let wanted = spawn::pipe_bytes_within_budget(
            self.pipe_budget.privileged,
            self.pipe_budget.soft_pages,
            procfs::page_size(),
            self.supervisor.len() + 1,
        );
        let (read, write, granted) =
            spawn::log_pipe(wanted).map_err(|error| format!("creating the log pipe: {error}"))?;
        if granted < spawn::MAX_PIPE_BYTES && granted != self.pipe_budget.reported {
            self.pipe_budget.reported = granted;
            let message = format!(
                "log pipes are {} KiB instead of {} KiB, to stay within this user's pipe budget \
                 (fs.pipe-user-pages-soft); run the daemon as root or raise it for more",
                granted / 1024,
                spawn::MAX_PIPE_BYTES / 1024
            );
            tracing::warn!("{message}");
            self.journal
                .record(Row::now(None, "log_pipe_reduced", None, message));
        }
        let Some(spec) = self.supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        let result = spawn::spawn_agent(agent, spec, &self.home_env, &write, &launch);
        // The daemon keeps no write end: the pump sees EOF when the run's
        // process tree is gone, and ends the run's last line there.
        drop(write);
        let result = result.map(|spawned| {
            if let Some(report) = spawned.report {
                self.shim_reports.insert(spawned.pid, report);
            }
            spawned.pid
        });
        if result.is_ok() {
            let context = PumpContext {
                agent: agent.to_string(),
                writer: io.writer.clone(),
                config: self.log_config.subscribe(),
                trouble: self.inbox.clone(),
                // Beside a cutover's outgoing process, whose output goes on:
                // the two runs' lines interleave, whole.
                previous: if beside { None } else { io.last_pump.take() },
            };
            io.last_pump = Some(self.runtime.spawn(pump(read, context)));
        }
        result
    }

    /// Kills the processes that ended exec probes and notifiers left
    /// behind, once per sweep.
    fn sweep_leftovers(&mut self) {
        let mut running: HashSet<String> = self.notify_commands.running_runs().collect();
        running.extend(
            self.probe_pids
                .values()
                .map(|(_, id)| leftovers::probe_run(*id)),
        );
        let untracked = self.untracked_children();
        let killed = self.leftovers.sweep(&untracked, &running, &self.agent_uids);
        if !killed.is_empty() {
            tracing::info!(
                "killed {} process(es) that ended health checks or notifiers left running: {killed:?}",
                killed.len()
            );
        }
    }

    /// Direct children of the daemon (orphans inherited as subreaper
    /// included) that are no agent's main process, and none of the
    /// daemon's own commands (exec probes, notifiers, deploy steps).
    fn untracked_children(&self) -> Vec<u32> {
        let mains: HashSet<u32> = self
            .supervisor
            .main_pids()
            .into_iter()
            .map(|(_, pid)| pid)
            .collect();
        procfs::own_children()
            .into_iter()
            .filter(|pid| {
                !mains.contains(pid)
                    && !self.probe_pids.contains_key(pid)
                    && !self.notify_commands.contains(*pid)
                    && !self.deploy_commands.contains_key(pid)
            })
            .collect()
    }

    /// Direct children of the daemon that are no agent's main process
    /// (orphans inherited as subreaper), by the agent their marker names.
    fn strays_by_agent(&self) -> HashMap<String, Vec<u32>> {
        let mut strays: HashMap<String, Vec<u32>> = HashMap::new();
        for pid in self.untracked_children() {
            // Only descendants are reparented to a subreaper; one without
            // a marker (it cleared its environment) is kept under "".
            let name = procfs::roster_markers_of(pid, &self.agent_uids)
                .map(|(_, name)| name)
                .unwrap_or_default();
            strays.entry(name).or_default().push(pid);
        }
        strays
    }

    /// Every stray, whatever its agent.
    fn all_strays(&self) -> Vec<u32> {
        self.strays_by_agent().into_values().flatten().collect()
    }

    fn report_trouble(&mut self, trouble: LogTrouble) {
        // Journal the first problem, then at most one summary a minute per
        // agent: a full disk must not turn into a flood of events.
        let now = Instant::now();
        let due = self
            .last_trouble_report
            .get(&trouble.agent)
            .is_none_or(|last| now.duration_since(*last) >= Duration::from_secs(60));
        // The daemon's own log gets at most one warning per agent every
        // 10 s, saying how many were held back: a broken disk or a deleted
        // logs directory fails on every chunk, and the daemon's log often
        // sits on the same disk.
        let warning = self
            .trouble_warnings
            .entry(trouble.agent.clone())
            .or_insert((None, 0));
        if warning
            .0
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10))
        {
            let held_back = std::mem::take(&mut warning.1);
            warning.0 = Some(now);
            tracing::warn!(
                agent = %trouble.agent,
                dropped = trouble.dropped_lines,
                held_back,
                "log: {}",
                trouble.error
            );
        } else {
            warning.1 += 1;
        }
        if due {
            self.last_trouble_report.insert(trouble.agent.clone(), now);
            let total = AgentName::new(&trouble.agent)
                .ok()
                .and_then(|name| self.io.get(&name))
                .map(|io| io.dropped.load(Ordering::Relaxed))
                .unwrap_or(trouble.dropped_lines);
            self.journal.record(Row::now(
                Some(&trouble.agent),
                "log_dropped",
                None,
                format!("{}; {total} line(s) dropped so far", trouble.error),
            ));
        }
    }

    /// After every agent stopped: stops strays, lets the pumps drain, and
    /// closes the journal.
    fn finish(&mut self) {
        self.notify_commands.kill_all();
        for pid in self.deploy_commands.keys() {
            let _ = spawn::signal_group(*pid, libc::SIGKILL);
        }
        let strays = self.all_strays();
        if !strays.is_empty() {
            for pid in &strays {
                spawn::signal_process(*pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && !self.all_strays().is_empty() {
                while spawn::reap_one().is_some() {}
                std::thread::sleep(Duration::from_millis(10));
            }
            for pid in self.all_strays() {
                spawn::signal_process(pid, libc::SIGKILL);
            }
            self.journal.record(Row::now(
                None,
                "strays_stopped",
                None,
                format!("{} stray process(es) stopped", strays.len()),
            ));
        }
        while spawn::reap_one().is_some() {}
        self.cgroups.remove_all();
        let agents: Vec<AgentIo> = std::mem::take(&mut self.io).into_values().collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let pending = |agents: &[AgentIo]| {
            agents.iter().any(|io| {
                io.last_pump
                    .as_ref()
                    .is_some_and(|pump| !pump.is_finished())
            })
        };
        while pending(&agents) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let drained: Result<(), ()> = if pending(&agents) { Err(()) } else { Ok(()) };
        for io in &agents {
            io.writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .close();
        }
        if drained.is_err() {
            tracing::warn!(
                "some log pipes are still held open by processes outside roster's reach"
            );
        }
        self.journal.record(Row::now(
            None,
            "daemon_stopped",
            Some(std::process::id()),
            "daemon stopped",
        ));
        self.journal.close();
    }
}

/// The file listing agents' own metrics endpoints for Prometheus
/// (`file_sd_configs`), in the home.
pub const FILE_SD: &str = "file_sd.json";

/// The runtime's worker threads. Its tasks (the API, pumps, probes,
/// notifiers) wait on I/O and do little between waits, and blocking work
/// goes to the blocking pool: one worker carries them, and an idle daemon
/// pays no wake-ups of a second worker looking for work to steal.
const RUNTIME_WORKERS: usize = 1;

/// glibc malloc arenas for the daemon's threads (see
/// [`crate::sys::limit_malloc_arenas`]).
const MALLOC_ARENAS: i32 = 2;

/// How much sample history is kept per agent.
pub const HISTORY: Duration = Duration::from_secs(3600);

/// How often agents and the host are sampled for watch rules, unless
/// `ROSTER_SAMPLE_INTERVAL` (a duration, at least 100ms) says otherwise.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

fn sample_interval() -> Duration {
    std::env::var("ROSTER_SAMPLE_INTERVAL")
        .ok()
        .and_then(|raw| roster_core::units::parse_duration(&raw).ok())
        .filter(|interval| *interval >= Duration::from_millis(100))
        .unwrap_or(SAMPLE_INTERVAL)
}

/// Samples every [`SAMPLE_INTERVAL`] what the loop says is watched (nothing
/// when no rule needs samples), on the blocking pool, and hands the figures
/// to the loop and to status readers.
async fn sample_task(inbox: Inbox, history: Arc<Mutex<server::History>>) {
    let interval = sample_interval();
    let keep = (HISTORY.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
    let sampler = Arc::new(Mutex::new(crate::sample::Sampler::new()));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (reply, answer) = oneshot::channel();
        if !inbox.send(Input::Request(Request::SampleTargets(reply))) {
            return;
        }
        let Ok(targets) = answer.await else {
            return;
        };
        if !targets.wanted {
            continue;
        }
        let sampler = sampler.clone();
        let sampled = tokio::task::spawn_blocking(move || {
            sampler
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .sample(&targets.agents, &targets.disks)
        })
        .await;
        let Ok((agents, host)) = sampled else {
            continue;
        };
        {
            let now_ms = crate::clock::unix_millis();
            let mut history = history
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            history.retain(|agent, _| agents.contains_key(agent));
            for (agent, sample) in &agents {
                let points = history.entry(agent.clone()).or_default();
                points.push_back((now_ms, sample.clone()));
                while points.len() > keep {
                    points.pop_front();
                }
            }
        }
        inbox.send(Input::Samples { agents, host });
    }
}
