//! The daemon: one thread owns the [`Supervisor`] and every agent's I/O
//! resources and runs the loop; a tokio runtime beside it serves the API and
//! pumps the logs, and both reach the loop only through its [`Inbox`].
//!
//! The loop is a plain `poll(2)` on a signalfd (SIGCHLD, SIGTERM, SIGINT,
//! SIGHUP) and the inbox's doorbell, with the supervisor's next deadline as
//! timeout. A child's death wakes exactly this thread, which reaps it and
//! spawns the replacement before doing anything else: restart latency is one
//! wake-up, a waitpid and a posix_spawn.
//!
//! This file starts the daemon; `dispatch.rs` holds the `Daemon` and its
//! loop, which routes what comes to the rooms beside them, each owning its
//! part of the state: `apply` (configs), `launch` (spawning, with
//! `identities` and `limits`), `probes`, `alerts` (rules, alerts,
//! `file_sd.json`, with `notify_exec`), `logging` (writers, pumps, log
//! troubles), `reap` (strays and `leftovers`), `deploys`, `requests`,
//! `file_watch` (`watch_paths`), `sampling` and `shutdown`. Rooms take each other as arguments; none uses
//! `dispatch` or this file.

mod alerts;
mod apply;
mod context;
mod deploy_actions;
mod deploys;
mod describe;
mod dispatch;
mod error;
mod file_watch;
mod home_watch;
mod identities;
mod launch;
mod leftovers;
mod limits;
mod log_matches;
mod logging;
mod notify_exec;
mod probes;
mod reap;
mod requests;
mod sampling;
mod shutdown;
mod startup;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal as NixSignal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use roster_core::api::EventKind;
use roster_core::Supervisor;

pub use self::error::DaemonError;
pub use self::startup::home_id;
use crate::inbox::{ApplyRefusal, Inbox};

use self::alerts::Alerting;
use self::apply::Applied;
use self::context::Context;
use self::deploys::Deploying;
use self::dispatch::Daemon;
use self::launch::Launcher;
use self::limits::Limits;
use self::logging::Logs;
use self::probes::Probes;
use self::reap::Strays;
use self::shutdown::Shutdown;
use self::startup::{
    io_error, notify_systemd_ready, raise_open_file_limit, stop_stale_processes, take_lock,
};
use crate::alerts::AlertBook;
use crate::home::Home;
use crate::journal::{Journal, Row};
use crate::{server, spawn};

/// What the daemon needs to start.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The home (absolute).
    pub home: PathBuf,
    /// A config to apply at start.
    pub config: Option<PathBuf>,
}

/// The runtime's worker threads. Its tasks (the API, pumps, probes,
/// notifiers) wait on I/O and do little between waits, and blocking work
/// goes to the blocking pool: one worker carries them, and an idle daemon
/// pays no wake-ups of a second worker looking for work to steal.
const RUNTIME_WORKERS: usize = 1;

/// glibc malloc arenas for the daemon's threads (see
/// [`crate::sys::limit_malloc_arenas`]).
const MALLOC_ARENAS: i32 = 2;

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
        EventKind::DaemonStarted,
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
    let admin_gid = startup::admin_group()?;
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
    let published = server::Published {
        alerts: alerts.clone(),
        history: history.clone(),
        deploys: Some(deploys.clone()),
        home: home.root().to_path_buf(),
        admin_gid,
        secrets: Some(secrets.clone()),
        applied: applied.clone(),
        web_warning: Arc::default(),
    };
    let web = crate::web::WebServer::new(home_dir.clone(), inbox.clone(), published.clone());
    let server = runtime.spawn(server::serve(listener, inbox.clone(), warnings, published));
    let sampler = runtime.spawn(sampling::sample_task(inbox.clone(), history));
    home_watch::spawn(runtime.handle(), home_dir.clone(), inbox.clone());

    let (cgroups, cgroup_note) = crate::cgroup::Cgroups::detect(&startup::home_id(home.root()));
    journal.record(Row::now(
        None,
        EventKind::Limits,
        None,
        match &cgroup_note {
            Some(note) => format!("agents' limits fall back to rlimits: {note}"),
            None => format!("agents' limits: {}", cgroups.summary()),
        },
    ));
    let notifier = notify_exec::start_notifier(runtime.handle(), &inbox);
    let agent_uids = startup::agent_uids(&home);
    let mut daemon = Daemon {
        context: Context {
            home_env: home.root().to_path_buf(),
            home,
            home_dir: home_dir.clone(),
            journal,
            runtime: runtime.handle().clone(),
            inbox,
        },
        supervisor: Supervisor::new(),
        applied: Applied::new(applied),
        launcher: Launcher::new(secrets, agent_uids),
        limits: Limits::new(cgroups),
        logs: Logs::default(),
        probes: Probes::default(),
        file_watches: file_watch::FileWatches::new(),
        alerting: Alerting::new(alerts, notifier),
        strays: Strays::default(),
        deploys: Deploying::new(deploys),
        shutdown: Shutdown::default(),
        metrics: crate::metrics::Metrics::new(),
        web,
        _lock: lock,
    };

    let outcome = match &options.config {
        Some(path) => {
            // The loop does not run yet: nothing else reaps children.
            let loaded =
                apply::load_at_start(path, daemon.context.home.root(), &daemon.deploys.deploys);
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
    let outcome = match (outcome, daemon.shutdown.take_home_lost()) {
        (Ok(()), Some(reason)) => Err(DaemonError::HomeLost {
            home: daemon.context.home.root().to_path_buf(),
            reason,
        }),
        (outcome, _) => outcome,
    };
    daemon.shutdown.answer();
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}
