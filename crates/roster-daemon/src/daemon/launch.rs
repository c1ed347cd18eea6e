//! Starting agents' processes: the queue of agents the supervisor asked to
//! spawn, taken in slices of a pass; what a process starts with (its
//! release, listen sockets, environment, limits, user); its log pipe; and
//! the exec shim's reports of why a process could not become the agent.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_core::api::EventKind;
use roster_core::{AgentName, Supervisor};

use super::context::Context;
use super::identities::Identities;
use super::limits::Limits;
use super::logging::Logs;
use crate::config_file::EnvFiles;
use crate::journal::Row;
use crate::listen::Listeners;
use crate::secrets::Secrets;
use crate::{procfs, spawn};

/// Agents spawned per pass of the loop, at most, and the time a pass may
/// spend spawning: 5,000 agents applied at once start in slices, and
/// `status` is answered between them.
const SPAWNS_PER_PASS: usize = 100;
const SPAWN_SLICE: Duration = Duration::from_millis(50);

/// Agents the supervisor asked to spawn, waiting for a slice of a pass.
#[derive(Default)]
pub(super) struct SpawnQueue {
    waiting: VecDeque<AgentName>,
}

impl SpawnQueue {
    pub(super) fn push(&mut self, agent: AgentName) {
        self.waiting.push_back(agent);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The next agent to spawn in a pass that began at `began` and spawned
    /// `spawned` so far, or none when the pass's slice is used up (the
    /// rest wait for the next pass) or nothing waits.
    pub(super) fn next(
        &mut self,
        began: Instant,
        now: Instant,
        spawned: usize,
    ) -> Option<AgentName> {
        if spawned >= SPAWNS_PER_PASS || now.saturating_duration_since(began) >= SPAWN_SLICE {
            return None;
        }
        self.waiting.pop_front()
    }
}

/// What bounds the size of log pipes (see [`spawn::pipe_bytes_within_budget`]).
struct PipeBudget {
    privileged: bool,
    soft_pages: u64,
    /// The last reduced size journaled, to say it once per change.
    reported: usize,
}

/// What agents' processes are started with, and the queue of those to
/// start.
pub(super) struct Launcher {
    pub queue: SpawnQueue,
    /// Agents' processes started through the exec shim: pid to the pipe
    /// on which the shim says why it could not become the agent.
    shim_reports: HashMap<u32, OwnedFd>,
    pub identities: Identities,
    /// `[agents.NAME.listen]` sockets, bound once, handed to every process.
    pub listeners: Listeners,
    /// Every agent's secrets, kept current by the API: read at each spawn.
    secrets: Arc<Secrets>,
    /// Every agent's `env_file`, read when its config was applied.
    pub env_files: EnvFiles,
    pipe_budget: PipeBudget,
}

impl Launcher {
    pub(super) fn new(secrets: Arc<Secrets>, agent_uids: Vec<u32>) -> Launcher {
        Launcher {
            queue: SpawnQueue::default(),
            shim_reports: HashMap::new(),
            identities: Identities::new(agent_uids),
            listeners: Listeners::default(),
            secrets,
            env_files: EnvFiles::new(),
            pipe_budget: PipeBudget {
                privileged: nix::unistd::geteuid().is_root(),
                soft_pages: spawn::pipe_user_pages_soft().unwrap_or(0),
                reported: spawn::MAX_PIPE_BYTES,
            },
        }
    }

    /// Every agent's secrets, as the next spawn reads them.
    pub(super) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The pipe on which the exec shim of `pid` reports, if it was started
    /// through the shim.
    pub(super) fn take_shim_report(&mut self, pid: u32) -> Option<OwnedFd> {
        self.shim_reports.remove(&pid)
    }

    /// Where and with what an agent's next process starts: an agent shipped
    /// as releases runs in the release the supervisor names, or else the
    /// one `current` points to (one readlink); its listen sockets; its
    /// `env_file` and then its secrets over the config's `env`, from
    /// memory (no file is read here).
    pub(super) fn launch(
        &mut self,
        agent: &AgentName,
        supervisor: &mut Supervisor,
        limits: &mut Limits,
        context: &Context,
    ) -> Result<spawn::Launch, String> {
        let Some(spec) = supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        let identity = spec.identity.clone();
        let sockets = {
            let supervisor = &*supervisor;
            self.listeners.of(agent, || supervisor.main_pids())?
        };
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
        if supervisor.spec(agent).is_some_and(|spec| spec.limits.any()) {
            limits.join(agent, &mut launch)?;
        }
        self.identities.set_user(
            agent,
            &identity,
            &mut launch,
            &context.home_dir,
            &context.journal,
        )?;
        let Some(spec) = supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        if spec.deploy.is_none() {
            return Ok(launch);
        }
        let releases = crate::releases::Releases::new(context.home.root(), agent);
        let release = match supervisor.release(agent) {
            Some(release) => Some(release.to_owned()),
            None => {
                let live = std::fs::read_link(releases.current_link())
                    .ok()
                    .and_then(|target| Some(target.file_name()?.to_str()?.to_owned()));
                if let Some(live) = &live {
                    supervisor.note_release(agent, live);
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
        let Some(spec) = supervisor.spec(agent) else {
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

    /// Spawns `agent`'s next process, its output piped to its log (and its
    /// stderr to its stderr log, with `stderr = "separate"`).
    pub(super) fn spawn(
        &mut self,
        agent: &AgentName,
        supervisor: &mut Supervisor,
        limits: &mut Limits,
        logs: &mut Logs,
        context: &Context,
    ) -> Result<u32, String> {
        let beside = supervisor.outgoing_pid(agent).is_some();
        let launch = self.launch(agent, supervisor, limits, context)?;
        let separate = supervisor
            .spec(agent)
            .is_some_and(|spec| spec.stderr.is_separate());
        logs.open(agent, separate, context);
        let wanted = spawn::pipe_bytes_within_budget(
            self.pipe_budget.privileged,
            self.pipe_budget.soft_pages,
            procfs::page_size(),
            supervisor.len() + 1,
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
            context
                .journal
                .record(Row::now(None, EventKind::LogPipeReduced, None, message));
        }
        let Some(spec) = supervisor.spec(agent) else {
            return Err("unknown agent".into());
        };
        // stderr's own pipe (`stderr = "separate"`) asks for half of
        // stdout's: it usually carries less, and an agent's two pipes stay
        // within one and a half shares of the budget.
        let errors = if spec.stderr.is_separate() {
            let (read, write, _) = spawn::log_pipe(wanted / 2)
                .map_err(|error| format!("creating the stderr log pipe: {error}"))?;
            Some((read, write))
        } else {
            None
        };
        let output = spawn::Output {
            stdout: &write,
            stderr: errors.as_ref().map(|(_, write)| write),
        };
        let result = spawn::spawn_agent(agent, spec, &context.home_env, output, &launch);
        // The daemon keeps no write end: the pump sees EOF when the run's
        // process tree is gone, and ends the run's last line there.
        drop(write);
        let errors = errors.map(|(read, _write)| read);
        let result = result.map(|spawned| {
            if let Some(report) = spawned.report {
                self.shim_reports.insert(spawned.pid, report);
            }
            spawned.pid
        });
        if result.is_ok() {
            logs.start_pumps(agent, read, errors, beside, context);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> AgentName {
        AgentName::new(text).expect("name")
    }

    fn queue_of(count: usize) -> SpawnQueue {
        let mut queue = SpawnQueue::default();
        for index in 0..count {
            queue.push(name(&format!("a{index}")));
        }
        queue
    }

    #[test]
    fn agents_are_spawned_in_the_order_asked() {
        let began = Instant::now();
        let mut queue = queue_of(3);
        let taken: Vec<AgentName> = std::iter::from_fn(|| queue.next(began, began, 0)).collect();
        assert_eq!(taken, vec![name("a0"), name("a1"), name("a2")]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_pass_spawns_at_most_a_hundred() {
        let began = Instant::now();
        let mut queue = queue_of(250);
        let mut spawned = 0;
        while queue.next(began, began, spawned).is_some() {
            spawned += 1;
        }
        assert_eq!(spawned, SPAWNS_PER_PASS);
        assert!(!queue.is_empty(), "the rest waits for the next pass");
        // The next pass takes the next hundred, from where it stopped.
        assert_eq!(queue.next(began, began, 0), Some(name("a100")));
    }

    #[test]
    fn a_pass_stops_spawning_when_its_time_is_used_up() {
        let began = Instant::now();
        let mut queue = queue_of(5);
        assert_eq!(
            queue.next(began, began + SPAWN_SLICE - Duration::from_millis(1), 3),
            Some(name("a0"))
        );
        assert_eq!(queue.next(began, began + SPAWN_SLICE, 1), None);
        assert_eq!(queue.next(began, began + SPAWN_SLICE * 4, 0), None);
        // Nothing was lost: the next pass takes it.
        let later = began + SPAWN_SLICE * 4;
        assert_eq!(queue.next(later, later, 0), Some(name("a1")));
    }
}
