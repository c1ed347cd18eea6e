//! Applying a config, whole or not at all: read and checked off the loop
//! (`config_file`), then handed to every room; the conflict with the config
//! this home last applied; SIGHUP's re-read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use roster_core::api::{ApplyReply, EventKind};
use roster_core::config::Config;
use roster_core::Supervisor;

use super::alerts::Alerting;
use super::context::Context;
use super::file_watch::FileWatches;
use super::launch::Launcher;
use super::limits::Limits;
use super::logging::Logs;
use crate::config_file::ReadAlong;
use crate::deploy::Deploys;
use crate::inbox::{ApplyRefusal, Input, Request};
use crate::journal::{Journal, Row};
use crate::metrics::Metrics;

/// A config as read for an apply, or why it could not be.
pub(super) type Loaded = Result<(Config, ReadAlong), String>;

/// The rooms an apply reconfigures.
pub(super) struct Rooms<'a> {
    pub supervisor: &'a mut Supervisor,
    pub metrics: &'a mut Metrics,
    pub web: &'a mut crate::web::WebServer,
    pub launcher: &'a mut Launcher,
    pub logs: &'a mut Logs,
    pub limits: &'a mut Limits,
    pub alerting: &'a mut Alerting,
    pub file_watches: &'a mut FileWatches,
}

/// The config file this home last applied, if any (shared with the API
/// server, which shows it in `status`).
pub(super) struct Applied {
    path: Arc<Mutex<Option<PathBuf>>>,
}

impl Applied {
    pub(super) fn new(path: Arc<Mutex<Option<PathBuf>>>) -> Applied {
        Applied { path }
    }

    fn last(&self) -> Option<PathBuf> {
        self.path
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Applies a config read and validated off the loop, whole or not at
    /// all, unless the apply-conflict rule refuses it (see
    /// `roster_core::apply_rule`: a file that would remove another file's
    /// agents needs `replace`).
    pub(super) fn apply(
        &mut self,
        path: &Path,
        loaded: Loaded,
        start_stopped: bool,
        replace: bool,
        rooms: Rooms<'_>,
        context: &Context,
    ) -> Result<ApplyReply, ApplyRefusal> {
        let journal = &context.journal;
        let display = path.display().to_string();
        let (config, read_along) = match loaded {
            Ok(loaded) => loaded,
            Err(message) => return Err(reject(journal, "", message)),
        };
        let last = self.last();
        let running = rooms.supervisor.names();
        let refused =
            roster_core::apply_rule::conflict(path, &config, last.as_deref(), &running, replace);
        if let Some(conflict) = refused {
            journal.record(Row::now(
                None,
                EventKind::ConfigRejected,
                None,
                roster_core::apply_rule::journal_detail(path, &conflict),
            ));
            return Err(ApplyRefusal::Conflict(conflict));
        }
        let listen = config.metrics.as_ref().map(|metrics| metrics.listen);
        if let Err(message) =
            rooms
                .metrics
                .apply(&context.runtime, listen, read_along.metrics_token.clone())
        {
            return Err(reject(journal, &format!("{display}: "), message));
        }
        // A dashboard that cannot be served is no reason to refuse the
        // agents: journaled, and shown in status until an apply fixes it.
        if let Err(message) = rooms.web.apply(
            &context.runtime,
            config.web.as_ref(),
            read_along.web_tls.as_ref(),
        ) {
            tracing::warn!("{message}");
            journal.record(Row::now(None, EventKind::WebFailed, None, message));
        }
        let handovers = match rooms
            .launcher
            .listeners
            .apply(&config, &rooms.supervisor.main_pids())
        {
            Ok(handovers) => handovers,
            Err(message) => return Err(reject(journal, &format!("{display}: "), message)),
        };
        for (agent, note) in handovers {
            journal.record(Row::now(
                Some(agent.as_str()),
                EventKind::ListenHandover,
                None,
                note,
            ));
        }
        rooms.logs.apply(&config.log);
        let now = Instant::now();
        rooms.launcher.identities.forget_accounts();
        rooms.limits.apply(&config, journal);
        let summary = rooms.supervisor.handle_apply_with_releases(
            now,
            &config,
            start_stopped,
            &read_along.live_releases,
        );
        rooms.alerting.apply(now, &config, rooms.logs, context);
        rooms.file_watches.apply(&config, context);
        rooms.launcher.env_files = read_along.env_files;
        *self
            .path
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(path.to_path_buf());
        journal.record(Row::now(
            None,
            EventKind::ConfigApplied,
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
}

/// Journals why a config was not applied (its first line, after `prefix`)
/// and refuses it.
fn reject(journal: &Journal, prefix: &str, message: String) -> ApplyRefusal {
    let first = message.lines().next().unwrap_or_default();
    journal.record(Row::now(
        None,
        EventKind::ConfigRejected,
        None,
        format!("{prefix}{first}; the previous config stays"),
    ));
    ApplyRefusal::Invalid(message)
}

/// Reads the config given at start, before the loop runs (so nothing else
/// reaps children: a deploy's build runs here and is waited for).
pub(super) fn load_at_start(path: &Path, home: &Path, deploys: &Deploys) -> Loaded {
    let mut loaded = crate::config_file::load_for_apply(path);
    if let Ok((config, read_along)) = &mut loaded {
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
        crate::deploy::prepare_config(home, path, config, read_along, deploys, &run);
    }
    loaded
}

/// SIGHUP: reads the config on a thread of its own (a file can be slow or
/// hostile) and applies it through the inbox like an API request.
pub(super) fn reload_in_background(path: &Path, context: &Context, deploys: &Arc<Deploys>) {
    let path = path.to_path_buf();
    let inbox = context.inbox.clone();
    let home = context.home.root().to_path_buf();
    let deploys = deploys.clone();
    let spawned = std::thread::Builder::new()
        .name("roster-reload".into())
        .spawn(move || {
            let mut loaded = crate::config_file::load_for_apply(&path);
            if let Ok((config, read_along)) = &mut loaded {
                let run = |argv: &[String]| crate::deploy::run_through_loop(&inbox, argv);
                crate::deploy::prepare_config(&home, &path, config, read_along, &deploys, &run);
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
