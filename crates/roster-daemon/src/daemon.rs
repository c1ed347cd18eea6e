//! The daemon loop: one task owns the [`Supervisor`] and every agent's I/O
//! resources; the API server and the log pumps talk to it over channels.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use roster_core::api::ApplyReply;
use roster_core::config::{self, Config};
use roster_core::supervisor::AgentView;
use roster_core::{Action, AgentName, LogConfig, Supervisor};

use crate::home::Home;
use crate::journal::{Journal, Row};
use crate::logs::pump::{pump, LogTrouble, PumpContext};
use crate::logs::LogWriter;
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
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The config given at start is invalid.
    #[error("{0}")]
    Config(String),
}

/// What the daemon needs to start.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The home (absolute).
    pub home: PathBuf,
    /// A config to apply at start.
    pub config: Option<PathBuf>,
}

/// An operator's verb on agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Start.
    Start,
    /// Stop.
    Stop,
    /// Restart.
    Restart,
}

/// A request from the API server to the loop.
pub enum Request {
    /// Current views, with dropped-line counters.
    Status(oneshot::Sender<Vec<(AgentView, u64)>>),
    /// Converge to a config file.
    Apply {
        /// The file.
        path: PathBuf,
        /// Start stopped agents too.
        start_stopped: bool,
        /// The answer.
        reply: oneshot::Sender<Result<ApplyReply, String>>,
    },
    /// start / stop / restart.
    Agents {
        /// Which verb.
        verb: Verb,
        /// Names, or `all`.
        names: Vec<String>,
        /// The answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop every agent, then exit.
    Shutdown(oneshot::Sender<()>),
}

struct AgentIo {
    writer: Arc<Mutex<LogWriter>>,
    dropped: Arc<AtomicU64>,
    /// The pump of the latest run; each pump waits for its predecessor.
    last_pump: Option<JoinHandle<()>>,
}

struct Daemon {
    home: Home,
    home_env: PathBuf,
    supervisor: Supervisor,
    journal: Journal,
    io: BTreeMap<AgentName, AgentIo>,
    log_config: watch::Sender<LogConfig>,
    trouble_sender: mpsc::UnboundedSender<LogTrouble>,
    last_trouble_report: HashMap<String, Instant>,
    shutting_down: bool,
    shutdown_replies: Vec<oneshot::Sender<()>>,
    _lock: File,
}

/// Runs the daemon in the foreground until SIGTERM, SIGINT or `roster down`.
pub fn run(options: DaemonOptions) -> Result<(), DaemonError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("roster")
        .enable_all()
        .build()
        .map_err(|source| DaemonError::Io {
            what: "starting the runtime",
            path: options.home.clone(),
            source,
        })?;
    runtime.block_on(run_async(options))
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_path_buf();
    move |source| DaemonError::Io { what, path, source }
}

fn take_lock(home: &Home) -> Result<File, DaemonError> {
    let path = home.lock();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_error("opening the lock", &path))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .trim()
            .to_owned();
        return Err(DaemonError::AlreadyRunning {
            home: home.root().to_path_buf(),
            pid,
        });
    }
    file.set_len(0)
        .map_err(io_error("writing the lock", &path))?;
    write!(file, "{}", std::process::id()).map_err(io_error("writing the lock", &path))?;
    Ok(file)
}

async fn run_async(options: DaemonOptions) -> Result<(), DaemonError> {
    let home = Home::new(options.home.clone());
    for dir in [home.root().to_path_buf(), home.logs()] {
        std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
    }
    let _ = std::fs::set_permissions(home.root(), std::fs::Permissions::from_mode(0o700));
    let lock = take_lock(&home)?;
    raise_open_file_limit();
    if let Err(error) = spawn::become_subreaper() {
        tracing::warn!(
            "could not become a child subreaper: {error}; double-forked agents may escape"
        );
    }
    let journal = Journal::open(&home.journal())?;
    journal.record(Row::now(
        None,
        "daemon_started",
        Some(std::process::id()),
        format!("daemon started for {}", home.root().display()),
    ));

    stop_stale_processes(&home, &journal).await;

    let (request_sender, mut requests) = mpsc::channel::<Request>(256);
    let socket_path = home.socket();
    let _ = std::fs::remove_file(&socket_path);
    let listener = tokio::net::UnixListener::bind(&socket_path)
        .map_err(io_error("listening on", &socket_path))?;
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error("securing", &socket_path))?;
    let server = tokio::spawn(server::serve(listener, request_sender.clone()));

    let (trouble_sender, mut troubles) = mpsc::unbounded_channel();
    let (log_config, _) = watch::channel(LogConfig::default());
    let mut daemon = Daemon {
        home_env: home.root().to_path_buf(),
        home,
        supervisor: Supervisor::new(),
        journal,
        io: BTreeMap::new(),
        log_config,
        trouble_sender,
        last_trouble_report: HashMap::new(),
        shutting_down: false,
        shutdown_replies: Vec::new(),
        _lock: lock,
    };

    if let Some(path) = &options.config {
        if let Err(error) = daemon.apply(path, true) {
            daemon.finish().await;
            server.abort();
            return Err(DaemonError::Config(error));
        }
    }
    notify_systemd_ready();

    let signal_stream = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| DaemonError::Io {
            what: "installing a handler for",
            path: PathBuf::from(name),
            source,
        })
    };
    let mut children = signal_stream(SignalKind::child(), "SIGCHLD")?;
    let mut terminate = signal_stream(SignalKind::terminate(), "SIGTERM")?;
    let mut interrupt = signal_stream(SignalKind::interrupt(), "SIGINT")?;
    let mut hangup = signal_stream(SignalKind::hangup(), "SIGHUP")?;
    let last_config = options.config.clone();

    loop {
        let deadline = daemon.supervisor.poll_timeout();
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = children.recv() => daemon.reap(),
            _ = terminate.recv() => daemon.begin_shutdown("SIGTERM"),
            _ = interrupt.recv() => daemon.begin_shutdown("SIGINT"),
            _ = hangup.recv() => {
                if let Some(path) = &last_config {
                    let _ = daemon.apply(path, false);
                }
            }
            Some(request) = requests.recv() => daemon.handle_request(request),
            Some(trouble) = troubles.recv() => daemon.report_trouble(trouble),
            _ = sleep => daemon.supervisor.handle_timeout(Instant::now()),
        }
        daemon.perform();
        if daemon.shutting_down && daemon.supervisor.is_quiet() {
            break;
        }
    }
    daemon.finish().await;
    server.abort();
    let _ = std::fs::remove_file(&socket_path);
    for reply in daemon.shutdown_replies.drain(..) {
        let _ = reply.send(());
    }
    Ok(())
}

impl Daemon {
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
                        (view, dropped)
                    })
                    .collect();
                let _ = reply.send(views);
            }
            Request::Apply {
                path,
                start_stopped,
                reply,
            } => {
                let result = if self.shutting_down {
                    Err("the daemon is shutting down".to_owned())
                } else {
                    self.apply(&path, start_stopped)
                };
                let _ = reply.send(result);
            }
            Request::Agents { verb, names, reply } => {
                let _ = reply.send(self.agents_command(now, verb, &names));
            }
            Request::Shutdown(reply) => {
                self.shutdown_replies.push(reply);
                self.begin_shutdown("roster down");
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

    /// Reads, validates and applies a config file, whole or not at all.
    fn apply(&mut self, path: &Path, start_stopped: bool) -> Result<ApplyReply, String> {
        let display = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                let message = format!("cannot read {display}: {error}");
                self.journal
                    .record(Row::now(None, "config_rejected", None, message.clone()));
                return Err(message);
            }
        };
        let base = path.parent().unwrap_or(Path::new("/"));
        let config: Config = match config::parse(&display, &text, base) {
            Ok(config) => config,
            Err(error) => {
                let message = error.to_string();
                self.journal.record(Row::now(
                    None,
                    "config_rejected",
                    None,
                    format!(
                        "{display}: {} problem(s); the previous config stays",
                        error.diagnostics.len()
                    ),
                ));
                return Err(message);
            }
        };
        self.log_config.send_replace(config.log.clone());
        let summary = self
            .supervisor
            .handle_apply(Instant::now(), &config, start_stopped);
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

    fn begin_shutdown(&mut self, why: &str) {
        if !self.shutting_down {
            self.shutting_down = true;
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
            if !self.supervisor.handle_exit(now, pid, status) {
                tracing::debug!(pid, %status, "reaped a stray process");
            }
            // Respawn before reaping the next: restart latency matters most.
            self.perform();
        }
    }

    /// Performs every pending action and journals every pending event.
    fn perform(&mut self) {
        while let Some(action) = self.supervisor.poll_action() {
            match action {
                Action::Spawn { agent } => {
                    let result = self.spawn(&agent);
                    self.supervisor
                        .handle_spawned(Instant::now(), &agent, result);
                }
                Action::Signal { agent, pid, signal } => {
                    if let Err(error) = spawn::signal_group(pid, signal.number()) {
                        tracing::error!(%agent, pid, "sending {signal}: {error}");
                    }
                    for stray in self.strays_of(Some(&agent)) {
                        spawn::signal_process(stray, signal.number());
                    }
                }
                Action::Cleanup { agent, pid } => {
                    let _ = spawn::signal_group(pid, libc::SIGKILL);
                    for stray in self.strays_of(Some(&agent)) {
                        self.journal.record(Row::now(
                            Some(agent.as_str()),
                            "stray_killed",
                            Some(stray),
                            format!("pid {stray} outlived its agent's main process: SIGKILL"),
                        ));
                        spawn::signal_process(stray, libc::SIGKILL);
                    }
                }
                Action::Forget { agent } => {
                    // The pumps hold the writer until their pipes close.
                    self.io.remove(&agent);
                }
            }
        }
        while let Some(event) = self.supervisor.poll_event() {
            tracing::info!(agent = %event.agent, "{}", event.kind.detail());
            self.journal.record(Row::now(
                Some(event.agent.as_str()),
                event.kind.name(),
                event.kind.pid(),
                event.kind.detail(),
            ));
        }
    }

    fn spawn(&mut self, agent: &AgentName) -> Result<u32, String> {
        let Some(spec) = self.supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        let io = self.io.entry(agent.clone()).or_insert_with(|| {
            let dropped = Arc::new(AtomicU64::new(0));
            let writer = LogWriter::open(
                agent.as_str(),
                self.home.agent_log(agent.as_str()),
                self.log_config.borrow().clone(),
                dropped.clone(),
            );
            AgentIo {
                writer: Arc::new(Mutex::new(writer)),
                dropped,
                last_pump: None,
            }
        });
        let (read, write) =
            spawn::log_pipe().map_err(|error| format!("creating the log pipe: {error}"))?;
        let result = spawn::spawn_agent(agent, spec, &self.home_env, &write);
        // The daemon keeps no write end: the pump sees EOF when the run's
        // process tree is gone, and ends the run's last line there.
        drop(write);
        if result.is_ok() {
            let context = PumpContext {
                agent: agent.to_string(),
                writer: io.writer.clone(),
                config: self.log_config.subscribe(),
                trouble: self.trouble_sender.clone(),
                previous: io.last_pump.take(),
            };
            io.last_pump = Some(tokio::spawn(pump(read, context)));
        }
        result
    }

    /// Direct children of the daemon that are no agent's main process:
    /// orphans inherited as subreaper. With `agent`, only that agent's.
    fn strays_of(&self, agent: Option<&AgentName>) -> Vec<u32> {
        let mains: Vec<u32> = self
            .supervisor
            .main_pids()
            .into_iter()
            .map(|(_, pid)| pid)
            .collect();
        procfs::own_children()
            .into_iter()
            .filter(|pid| !mains.contains(pid))
            .filter(|pid| match agent {
                None => true,
                Some(agent) => {
                    procfs::roster_markers(*pid).is_some_and(|(_, name)| name == agent.as_str())
                }
            })
            .collect()
    }

    fn report_trouble(&mut self, trouble: LogTrouble) {
        // Journal the first problem, then at most one summary a minute per
        // agent: a full disk must not turn into a flood of events.
        let now = Instant::now();
        let due = self
            .last_trouble_report
            .get(&trouble.agent)
            .is_none_or(|last| now.duration_since(*last) >= Duration::from_secs(60));
        tracing::warn!(agent = %trouble.agent, dropped = trouble.dropped_lines, "log: {}", trouble.error);
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
    async fn finish(&mut self) {
        let strays = self.strays_of(None);
        if !strays.is_empty() {
            for pid in &strays {
                spawn::signal_process(*pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && !self.strays_of(None).is_empty() {
                while spawn::reap_one().is_some() {}
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for pid in self.strays_of(None) {
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
        let agents: Vec<AgentIo> = std::mem::take(&mut self.io).into_values().collect();
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            for io in agents.iter() {
                if let Some(pump) = &io.last_pump {
                    while !pump.is_finished() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        })
        .await;
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

/// Stops processes an earlier daemon of this home started and left behind
/// (it was killed): they cannot be adopted, since their output pipe died with
/// it, so they are stopped, and the config then starts fresh copies. This
/// keeps "never a second copy beside an unmanaged one".
async fn stop_stale_processes(home: &Home, journal: &Journal) {
    let home_text = home.root().display().to_string();
    let stale = procfs::processes_of_home(&home_text);
    if stale.is_empty() {
        return;
    }
    for (pid, agent) in &stale {
        journal.record(Row::now(
            Some(agent),
            "stale_stopped",
            Some(*pid),
            format!("pid {pid} was left by an earlier daemon: stopping it"),
        ));
        spawn::signal_process(*pid, libc::SIGTERM);
        let _ = spawn::signal_group(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = |pid: u32| procfs::sample(pid).is_some() && !is_zombie(pid);
    while Instant::now() < deadline && stale.iter().any(|(pid, _)| alive(*pid)) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (pid, _) in &stale {
        if alive(*pid) {
            spawn::signal_process(*pid, libc::SIGKILL);
            let _ = spawn::signal_group(*pid, libc::SIGKILL);
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|text| {
            text.rfind(')')
                .map(|index| text[index + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Each agent costs the daemon two descriptors (its pipe and its log file):
/// lift the soft limit to the hard one so a thousand agents fit.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("could not raise the open-file limit from {soft}: {error}");
            }
        }
    }
}

/// `READY=1` to systemd when it started us as `Type=notify`.
fn notify_systemd_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|address| socket.send_to_addr(b"READY=1", &address))
    } else {
        socket.send_to(b"READY=1", Path::new(&path))
    };
    if let Err(error) = result {
        tracing::warn!("could not notify systemd: {error}");
    }
}
