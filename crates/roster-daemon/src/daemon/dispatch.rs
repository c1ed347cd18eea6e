//! The loop: it waits on signals, the inbox and the next deadline, and
//! routes what comes to the rooms (see `mod.rs`), then performs what the
//! supervisor asked for.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal as NixSignal;
use nix::sys::signalfd::SignalFd;

use roster_core::trim::Trim;
use roster_core::{Action, AgentName, EventKind, Supervisor};

use super::alerts::Alerting;
use super::apply::{self, Applied};
use super::context::Context;
use super::deploys::Deploying;
use super::describe;
use super::file_watch::FileWatches;
use super::launch::Launcher;
use super::limits::Limits;
use super::logging::Logs;
use super::notify_exec::NotifyCommands;
use super::probes::Probes;
use super::reap::{self, Strays};
use super::requests;
use super::sampling;
use super::shutdown::{self, Shutdown};
use super::startup::{self, DaemonLock};
use crate::inbox::{ApplyRefusal, Input, Request};
use crate::journal::Row;
use crate::spawn;

/// Inputs taken from the inbox per pass of the loop, at most: between two
/// batches the loop reads signals (a child's death), so a flood of inputs
/// from any source cannot delay a restart.
const INPUTS_PER_PASS: usize = 256;

/// The loop's state: the supervisor, and the rooms that perform what it
/// decides.
pub(super) struct Daemon {
    pub context: Context,
    pub supervisor: Supervisor,
    pub applied: Applied,
    pub launcher: Launcher,
    pub limits: Limits,
    pub logs: Logs,
    pub probes: Probes,
    /// `watch_paths`: file watchers and their debouncer.
    pub file_watches: FileWatches,
    pub alerting: Alerting,
    pub strays: Strays,
    pub deploys: Deploying,
    pub shutdown: Shutdown,
    /// `/metrics`: the server and the snapshots the loop publishes to it.
    pub metrics: crate::metrics::Metrics,
    /// The web dashboard, served while `[web]` says so.
    pub web: crate::web::WebServer,
    pub _lock: DaemonLock,
}

/// Runs the daemon in the foreground until SIGTERM, SIGINT or `roster down`.
impl Daemon {
    pub(super) fn run_loop(
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
        // Memory that bursts of work left behind is given back once quiet.
        let mut trim = Trim::new(Instant::now());
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
            if self.shutdown.is_stopping() && self.supervisor.is_quiet() {
                return;
            }
            // One scan of the agents' deadlines per pass: with a thousand
            // agents probed every few seconds, the loop wakes often.
            let supervisor_deadline = self.supervisor.poll_timeout();
            let next = [
                supervisor_deadline,
                self.strays.sweep_due(),
                self.alerting.deliveries.poll_timeout(),
                self.alerting.watcher.poll_timeout(),
                self.logs.poll_timeout(),
                self.deploys.deployments.poll_timeout(),
                self.file_watches.poll_timeout(),
                next_watchdog,
                trim.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = match next {
                // Inputs left over from the last pass: look at signals, then
                // take the next batch without sleeping.
                _ if inputs_left || !self.launcher.queue.is_empty() => PollTimeout::ZERO,
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
                    Ok(NixSignal::SIGHUP) if !self.shutdown.is_stopping() => {
                        trim.handle_activity(Instant::now());
                        if let Some(path) = config {
                            apply::reload_in_background(path, &self.context, &self.deploys.deploys);
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
                if !is_routine(&input) {
                    trim.handle_activity(Instant::now());
                }
                self.handle_input(input);
                self.perform();
            }
            if self
                .strays
                .sweep_due()
                .is_some_and(|due| due <= Instant::now())
            {
                self.sweep_strays();
            }
            self.alerting.journal_due_deliveries(&self.context.journal);
            self.logs.take_log_matches(&mut self.alerting.watcher);
            if self
                .alerting
                .watcher
                .poll_timeout()
                .is_some_and(|deadline| deadline <= Instant::now())
            {
                self.alerting.watcher.handle_timeout(Instant::now());
            }
            self.deployment_timeouts();
            if self
                .file_watches
                .poll_timeout()
                .is_some_and(|deadline| deadline <= Instant::now())
            {
                if self.shutdown.is_stopping() {
                    // No restart while every agent stops.
                    self.file_watches.stop_all(&self.context);
                } else {
                    // Restarts asked of the supervisor are performed at the
                    // top of the next pass.
                    self.file_watches
                        .handle_timeout(Instant::now(), &mut self.supervisor);
                }
            }
            if trim.handle_timeout(Instant::now()) {
                give_back_memory();
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

    /// Routes one input from the inbox to the room it is for.
    fn handle_input(&mut self, input: Input) {
        let journal = &self.context.journal;
        match input {
            Input::Request(request) => self.handle_request(request),
            Input::Trouble(trouble) => self.logs.report_trouble(trouble, journal),
            Input::Samples { agents, host } => {
                self.alerting
                    .watcher
                    .handle_samples(Instant::now(), &agents, &host);
            }
            Input::LogMatches { agent, rules } => {
                self.logs
                    .handle_matches_notice(Instant::now(), agent, rules);
            }
            Input::Investigated(record) => self.alerting.record(record, journal, &mut self.metrics),
            Input::Note {
                agent,
                kind,
                detail,
            } => {
                journal.record(Row::now(
                    agent.as_ref().map(AgentName::as_str),
                    kind,
                    None,
                    detail,
                ));
            }
            Input::Probe { agent, id, result } => {
                self.probes.finished(id);
                self.supervisor
                    .handle_probe(Instant::now(), &agent, id, result);
            }
            Input::NotifyExec(request) => self
                .alerting
                .notify_commands
                .handle(request, &self.context.home_env),
            Input::Notified(report) => self.alerting.delivered(report, journal, &mut self.metrics),
            Input::DeployExec(command) => self.deploys.run_command(command, &self.context.home_env),
            Input::Deployment(input) => self.handle_deployment(input),
            Input::HomeLost(reason) => {
                self.shutdown
                    .lose_home(reason, &self.context, &mut self.supervisor)
            }
            Input::FileWatch(input) => {
                self.file_watches
                    .handle(Instant::now(), input, &self.context)
            }
        }
    }

    /// Answers a request of the API.
    fn handle_request(&mut self, request: Request) {
        let now = Instant::now();
        let stopping = self.shutdown.is_stopping();
        match request {
            Request::Status(reply) => {
                let _ = reply.send(requests::status(
                    now,
                    &self.supervisor,
                    &self.logs,
                    &self.launcher.identities,
                    &self.limits,
                    &self.file_watches,
                ));
            }
            Request::Apply {
                path,
                loaded,
                start_stopped,
                replace,
                reply,
            } => {
                let result = if stopping {
                    Err(ApplyRefusal::ShuttingDown)
                } else {
                    self.apply(&path, loaded, start_stopped, replace)
                };
                let _ = reply.send(result);
            }
            Request::Agents {
                verb,
                names,
                by,
                reply,
            } => {
                let result =
                    requests::agents_command(now, &mut self.supervisor, stopping, verb, &names);
                if let (Ok(()), Some(token)) = (&result, by) {
                    for name in &names {
                        self.context
                            .journal
                            .record(requests::web_action_row(name, verb, &token));
                    }
                }
                let _ = reply.send(result);
            }
            Request::SampleTargets(reply) => {
                let _ = reply.send(self.alerting.sample_targets(&self.supervisor));
            }
            Request::Shutdown(reply) => {
                self.shutdown.wait(reply);
                self.begin_shutdown("roster down");
            }
            Request::Describe { agent, reply } => {
                let _ = reply.send(describe::gather(
                    now,
                    &agent,
                    &self.supervisor,
                    &self.launcher,
                    &self.limits,
                    &self.logs,
                    &self.context,
                ));
            }
            Request::DeployTarget { agent, reply } => {
                let home = self.context.home.root();
                let _ = reply.send(requests::deploy_target(
                    &self.supervisor,
                    stopping,
                    home,
                    &agent,
                ));
            }
        }
    }

    /// Applies a config (see [`Applied::apply`]).
    pub(super) fn apply(
        &mut self,
        path: &Path,
        loaded: apply::Loaded,
        start_stopped: bool,
        replace: bool,
    ) -> Result<roster_core::api::ApplyReply, ApplyRefusal> {
        let rooms = apply::Rooms {
            supervisor: &mut self.supervisor,
            metrics: &mut self.metrics,
            web: &mut self.web,
            launcher: &mut self.launcher,
            logs: &mut self.logs,
            limits: &mut self.limits,
            alerting: &mut self.alerting,
            file_watches: &mut self.file_watches,
        };
        self.applied
            .apply(path, loaded, start_stopped, replace, rooms, &self.context)
    }

    fn begin_shutdown(&mut self, why: &str) {
        self.shutdown
            .begin(why, &self.context.journal, &mut self.supervisor);
    }

    /// Reaps every child that ended, and hands each to whoever waits for
    /// it: the supervisor (an agent's process), an exec notifier, a deploy,
    /// an exec probe; else it was a stray.
    fn reap(&mut self) {
        while let Some((pid, status)) = spawn::reap_one() {
            let now = Instant::now();
            // An exec shim that could not become the agent said why.
            let handled = match self
                .launcher
                .take_shim_report(pid)
                .and_then(|report| spawn::read_shim_report(&report))
            {
                Some(reason) => self.supervisor.handle_not_started(now, pid, status, reason),
                None => self.supervisor.handle_exit(now, pid, status),
            };
            if !handled {
                if self.alerting.notify_commands.reaped(pid, status) {
                    // An exec notifier's command: its reply is answered.
                    self.strays.leftovers.helper_ended(pid);
                } else if self.deploys.reaped(pid, status) {
                    // A deploy's command: its exit is answered.
                } else if let Some((agent, id, result)) = self.probes.reaped(pid, status) {
                    self.strays.leftovers.helper_ended(pid);
                    self.supervisor.handle_probe(now, &agent, id, result);
                } else {
                    tracing::debug!(pid, %status, "reaped a stray process");
                    self.strays.leftovers.stray_reaped();
                }
            }
            // Respawn before reaping the next: restart latency matters most.
            self.perform();
        }
    }

    /// Performs every pending action and journals every pending event.
    ///
    /// Looking for strays means reading /proc, so it is done at most once per
    /// pass, whatever the number of agents signalled: stopping 5000 agents is
    /// one scan, not 5000.
    pub(super) fn perform(&mut self) {
        let mut strays: Option<HashMap<String, Vec<u32>>> = None;
        let began = Instant::now();
        let mut spawned = 0;
        loop {
            self.perform_actions(&mut strays);
            // Spawns in slices: applying thousands of agents leaves turns of
            // the loop between slices for signals and the API.
            let Some(agent) = self.launcher.queue.next(began, Instant::now(), spawned) else {
                break;
            };
            let result = if self.supervisor.is_spawning(&agent) {
                spawned += 1;
                self.launcher.spawn(
                    &agent,
                    &mut self.supervisor,
                    &mut self.limits,
                    &mut self.logs,
                    &self.context,
                )
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

    /// Performs the supervisor's actions but spawns, which wait in the
    /// launcher's queue for [`Daemon::perform`]'s slices.
    fn perform_actions(&mut self, strays: &mut Option<HashMap<String, Vec<u32>>>) {
        while let Some(action) = self.supervisor.poll_action() {
            match action {
                Action::Spawn { agent } => self.launcher.queue.push(agent),
                Action::Signal { agent, pid, signal } => {
                    reap::signal_main(&agent, pid, signal);
                    let strays = strays.get_or_insert_with(|| self.strays_by_agent());
                    let of_agent = strays.get(agent.as_str()).map_or(&[][..], Vec::as_slice);
                    reap::signal_strays(pid, signal, of_agent);
                }
                Action::Cleanup { agent, pid } => self.strays.cleanup(agent, pid),
                Action::Forget { agent } => {
                    self.logs.forget(&agent);
                    self.limits.forget(&agent);
                }
                Action::Probe {
                    agent,
                    id,
                    check: roster_core::health::Check::Exec(argv),
                    ..
                } => {
                    let launch = self.launcher.launch(
                        &agent,
                        &mut self.supervisor,
                        &mut self.limits,
                        &self.context,
                    );
                    self.probes.start_exec(
                        agent,
                        id,
                        argv,
                        launch,
                        &mut self.supervisor,
                        &self.context.home_env,
                    );
                }
                Action::Probe {
                    agent,
                    id,
                    check,
                    timeout,
                } => self
                    .probes
                    .start_network(agent, id, check, timeout, &self.context),
                Action::CancelProbe { agent: _, id } => self.probes.cancel(id),
            }
        }
    }

    /// Journals the supervisor's events, tells the watcher what they mean,
    /// and performs its responses.
    fn journal_events(&mut self) {
        while let Some(event) = self.supervisor.poll_event() {
            self.metrics.mark_changed();
            self.deploys.deployments.saw(&event.agent);
            tracing::info!(agent = %event.agent, "{}", event.kind.detail());
            self.context.journal.record(Row::now(
                Some(event.agent.as_str()),
                event.kind.journal_kind(),
                event.kind.pid(),
                event.kind.detail(),
            ));
            self.alerting
                .handle_event(Instant::now(), &event, &self.supervisor);
            if let EventKind::Exited { pid, status, .. } = &event.kind {
                let memory_max = self
                    .supervisor
                    .spec(&event.agent)
                    .and_then(|spec| spec.limits.memory_max);
                self.limits.check_oom(
                    &event.agent,
                    *pid,
                    *status,
                    memory_max,
                    &self.context.journal,
                );
            }
        }
        self.feed_deployments();
        while let Some(response) = self.alerting.watcher.poll_response() {
            self.alerting.respond(
                response,
                &mut self.supervisor,
                &mut self.metrics,
                &self.context,
            );
        }
        // A rule's restart or stop asks the supervisor for more.
        if self.supervisor.has_pending() {
            self.perform();
        }
    }

    fn publish_metrics(&mut self) {
        let firing = self.alerting.firing_count();
        sampling::publish_metrics(
            &mut self.metrics,
            &self.supervisor,
            &self.logs,
            &self.alerting.deliveries,
            firing,
        );
    }

    /// Direct children of the daemon (orphans inherited as subreaper
    /// included) that are no agent's main process, and none of the
    /// daemon's own commands (exec probes, notifiers, deploy steps).
    fn untracked_children(&self) -> Vec<u32> {
        untracked_children(
            &self.supervisor,
            &self.probes,
            &self.alerting.notify_commands,
            &self.deploys,
        )
    }

    /// The daemon's untracked children by the agent their marker names.
    fn strays_by_agent(&self) -> HashMap<String, Vec<u32>> {
        reap::strays_by_agent(
            self.untracked_children(),
            self.launcher.identities.agent_uids(),
        )
    }

    /// Every stray, whatever its agent.
    fn all_strays(&self) -> Vec<u32> {
        self.strays_by_agent().into_values().flatten().collect()
    }

    /// Kills what ended exec probes and notifiers left behind, and
    /// processes that escaped the group of an agent's dead main process:
    /// one /proc scan for every cleanup since the last sweep.
    fn sweep_strays(&mut self) {
        let Daemon {
            supervisor,
            probes,
            alerting,
            deploys,
            strays,
            launcher,
            context,
            ..
        } = self;
        let notify = &alerting.notify_commands;
        let untracked = || untracked_children(supervisor, probes, notify, deploys);
        let running = || {
            let mut running: HashSet<String> = notify.running_runs().collect();
            running.extend(probes.running_runs());
            running
        };
        strays.sweep(
            Instant::now(),
            untracked,
            running,
            launcher.identities.agent_uids(),
            &context.journal,
        );
    }

    /// After every agent stopped: stops strays, lets the pumps drain, and
    /// closes the journal.
    pub(super) fn finish(&mut self) {
        self.file_watches.stop_all(&self.context);
        self.alerting.notify_commands.kill_all();
        self.deploys.kill_all();
        shutdown::stop_strays(&self.context.journal, || self.all_strays());
        while spawn::reap_one().is_some() {}
        self.limits.remove_all();
        self.logs.drain();
        shutdown::close_journal(&mut self.context.journal);
    }
}

/// Inputs that come at a steady pace while the daemon idles (the sampler's
/// question and its samples, probe results, log rule matches): they do not
/// keep it from trimming.
fn is_routine(input: &Input) -> bool {
    matches!(
        input,
        Input::Request(Request::SampleTargets(_))
            | Input::Samples { .. }
            | Input::Probe { .. }
            | Input::LogMatches { .. }
    )
}

/// Returns the heap that work freed and drops the pages of code and
/// constants from the mappings; what idle work runs faults back in
/// (`roster_core::trim`).
fn give_back_memory() {
    crate::sys::trim_heap();
    match crate::sys::drop_clean_file_pages() {
        Ok(bytes) => {
            tracing::debug!("dropped the pages of {bytes} bytes of mapped code after quiet")
        }
        Err(error) => tracing::debug!("could not drop mapped code: {error}"),
    }
}

fn untracked_children(
    supervisor: &Supervisor,
    probes: &Probes,
    notify: &NotifyCommands,
    deploys: &Deploying,
) -> Vec<u32> {
    let mains: HashSet<u32> = supervisor
        .main_pids()
        .into_iter()
        .map(|(_, pid)| pid)
        .collect();
    reap::untracked_children(|pid| {
        mains.contains(&pid)
            || probes.contains(pid)
            || notify.contains(pid)
            || deploys.contains(pid)
    })
}
