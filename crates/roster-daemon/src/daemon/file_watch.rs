//! The `watch_paths` room: one inotify watcher (the notify crate: its own
//! thread and descriptor) per agent that has `watch_paths`, and none at all
//! for the others. What counts as a change and when a burst of them
//! restarts the agent are the core's (`roster_core::watch_paths`); this
//! room only arms watchers, feeds the debouncer the paths they report
//! with the time, and hands its restarts to the supervisor.
//!
//! Arming walks the watched trees (one inotify watch per directory), so it
//! runs on the blocking pool, never on the loop; the armed watcher comes
//! back through the inbox. Watchers are dropped there too: notify's `Drop`
//! talks to its thread. Every watcher has a generation, so a change
//! reported by one that an apply has since replaced restarts nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind as NotifyKind, RecommendedWatcher, RecursiveMode, Watcher};

use roster_core::api::EventKind;
use roster_core::watch_paths::{Debouncer, WatchPaths};
use roster_core::{AgentName, Config, Supervisor};

use super::context::Context;
use crate::inbox::{FileWatchInput, Inbox, Input};
use crate::journal::{Journal, Row};

/// A watcher sends a change of the same agent at most this often: a
/// process writing a watched file in a loop costs the daemon's loop at
/// most this many wake-ups, and the debouncer's quiet time is ten of them.
const SEND_EVERY: Duration = Duration::from_millis(30);

/// The agents' file watchers and the debouncer that turns what they report
/// into restarts.
pub(super) struct FileWatches {
    agents: HashMap<AgentName, Armed>,
    debouncer: Debouncer,
    next_generation: u64,
}

/// One agent's watcher, as armed for its `watch_paths` and `cwd`.
struct Armed {
    generation: u64,
    paths: Vec<String>,
    cwd: PathBuf,
    /// `None` until arming answers, or when it could not make one.
    watcher: Option<RecommendedWatcher>,
    /// What cannot be watched, for status.
    warning: Option<String>,
}

impl FileWatches {
    pub(super) fn new() -> Self {
        Self {
            agents: HashMap::new(),
            debouncer: Debouncer::default(),
            next_generation: 0,
        }
    }

    /// Arms a watcher for each agent whose `watch_paths` (or `cwd`)
    /// changed, or whose watcher could not watch everything (a directory
    /// created since is watched now), and drops those of agents that no
    /// longer have any.
    pub(super) fn apply(&mut self, config: &Config, context: &Context) {
        let gone: Vec<AgentName> =
            self.agents
                .iter()
                .filter(|(agent, armed)| {
                    armed.warning.is_some()
                        || config.agents.get(*agent).is_none_or(|spec| {
                            spec.watch_paths != armed.paths || spec.cwd != armed.cwd
                        })
                })
                .map(|(agent, _)| agent.clone())
                .collect();
        for agent in gone {
            self.forget(&agent, context);
        }
        for (agent, spec) in &config.agents {
            if spec.watch_paths.is_empty() || self.agents.contains_key(agent) {
                continue;
            }
            self.next_generation += 1;
            let generation = self.next_generation;
            self.agents.insert(
                agent.clone(),
                Armed {
                    generation,
                    paths: spec.watch_paths.clone(),
                    cwd: spec.cwd.clone(),
                    watcher: None,
                    warning: None,
                },
            );
            let arming = Arming {
                agent: agent.clone(),
                generation,
                paths: WatchPaths::new(&spec.watch_paths),
                cwd: spec.cwd.clone(),
                home: context.home.root().to_path_buf(),
                inbox: context.inbox.clone(),
            };
            context.runtime.spawn_blocking(move || arming.arm());
        }
    }

    /// What a watcher or its arming reported.
    pub(super) fn handle(&mut self, now: Instant, input: FileWatchInput, context: &Context) {
        match input {
            FileWatchInput::Armed {
                agent,
                generation,
                watcher,
                problems,
            } => {
                let Some(armed) = self.current(&agent, generation) else {
                    drop_off_loop(watcher, context);
                    return;
                };
                armed.watcher = watcher;
                if !problems.is_empty() {
                    let text = problems.join("; ");
                    armed.warning = Some(format!("{agent}: {text}"));
                    warn(&context.journal, &agent, text);
                } else if armed.watcher.is_some() {
                    tracing::debug!(%agent, "watching its watch_paths");
                }
            }
            FileWatchInput::Changed {
                agent,
                generation,
                path,
            } => {
                if self.current(&agent, generation).is_some() {
                    self.debouncer.handle_change(now, &agent, path);
                }
            }
            FileWatchInput::Trouble {
                agent,
                generation,
                problem,
            } => {
                let Some(armed) = self.current(&agent, generation) else {
                    return;
                };
                // Said once per watcher: a tree that keeps growing past the
                // limit would say it with every new directory.
                if armed.warning.is_none() {
                    armed.warning = Some(format!("{agent}: {problem}"));
                    warn(&context.journal, &agent, problem);
                }
            }
        }
    }

    /// When [`FileWatches::handle_timeout`] has something to do.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.debouncer.poll_timeout()
    }

    /// Bursts of changes that are over restart their agents.
    pub(super) fn handle_timeout(&mut self, now: Instant, supervisor: &mut Supervisor) {
        self.debouncer.handle_timeout(now);
        while let Some(restart) = self.debouncer.poll_restart() {
            supervisor.handle_files_changed(now, &restart.agent, &restart.reason);
        }
    }

    /// Why the agent's `watch_paths` are not (all) watched, for status.
    pub(super) fn warning(&self, agent: &AgentName) -> Option<String> {
        self.agents.get(agent)?.warning.clone()
    }

    /// Every watcher goes (the daemon stops).
    pub(super) fn stop_all(&mut self, context: &Context) {
        let agents: Vec<AgentName> = self.agents.keys().cloned().collect();
        for agent in agents {
            self.forget(&agent, context);
        }
    }

    fn forget(&mut self, agent: &AgentName, context: &Context) {
        if let Some(armed) = self.agents.remove(agent) {
            drop_off_loop(armed.watcher, context);
        }
        self.debouncer.handle_forget(agent);
    }

    fn current(&mut self, agent: &AgentName, generation: u64) -> Option<&mut Armed> {
        self.agents
            .get_mut(agent)
            .filter(|armed| armed.generation == generation)
    }
}

/// Journals (and logs) that an agent's files are not (all) watched.
fn warn(journal: &Journal, agent: &AgentName, problem: String) {
    tracing::warn!(%agent, "watch_paths: {problem}");
    journal.record(Row::now(
        Some(agent.as_str()),
        EventKind::WatchPathsFailed,
        None,
        format!("watch_paths: {problem}"),
    ));
}

/// notify's `Drop` sends its thread a message and wakes it; off the loop,
/// in case that thread is gone.
fn drop_off_loop(watcher: Option<RecommendedWatcher>, context: &Context) {
    if let Some(watcher) = watcher {
        context.runtime.spawn_blocking(move || drop(watcher));
    }
}

/// What a watcher is armed with, moved to the blocking pool.
#[derive(Clone)]
struct Arming {
    agent: AgentName,
    generation: u64,
    paths: WatchPaths,
    cwd: PathBuf,
    home: PathBuf,
    inbox: Inbox,
}

impl Arming {
    /// Makes the watcher and adds every root (a directory with all its
    /// subdirectories; a file through its directory), then hands it to the
    /// loop with what could not be watched.
    fn arm(self) {
        let mut handler = Reporter {
            watching: self.clone(),
            last_sent: None,
        };
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut problems = Vec::new();
        let watcher = match RecommendedWatcher::new(move |event| handler.report(event), config) {
            Ok(mut watcher) => {
                for root in self.paths.roots(&self.cwd) {
                    let (target, mode) = match std::fs::metadata(&root.path) {
                        Ok(metadata) if metadata.is_dir() => {
                            (root.path.clone(), RecursiveMode::Recursive)
                        }
                        Ok(_) => match root.path.parent() {
                            Some(parent) => (parent.to_path_buf(), RecursiveMode::NonRecursive),
                            None => continue,
                        },
                        Err(error) => {
                            problems.push(format!(
                                "cannot watch `{}` ({}): {error}; create it, then `roster apply`",
                                root.written,
                                root.path.display()
                            ));
                            continue;
                        }
                    };
                    if let Err(error) = watcher.watch(&target, mode) {
                        let limit = matches!(error.kind, notify::ErrorKind::MaxFilesWatch);
                        problems.push(describe(&root.written, &error));
                        if limit {
                            break;
                        }
                    }
                }
                Some(watcher)
            }
            Err(error) => {
                problems.push(describe(&self.cwd.display().to_string(), &error));
                None
            }
        };
        self.inbox.send(Input::FileWatch(FileWatchInput::Armed {
            agent: self.agent,
            generation: self.generation,
            watcher,
            problems,
        }));
    }
}

/// What a watcher could not do, and what to do about it.
fn describe(written: &str, error: &notify::Error) -> String {
    let limit_hint = "raise it (e.g. sysctl fs.inotify.max_user_watches=524288) \
                      or watch smaller directories";
    match &error.kind {
        notify::ErrorKind::MaxFilesWatch => format!(
            "the system's limit of inotify watches (fs.inotify.max_user_watches) is reached \
             while watching `{written}`: changes in directories not yet watched restart nothing; \
             {limit_hint}"
        ),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => format!(
            "cannot watch `{written}`: too many inotify instances \
             (fs.inotify.max_user_instances); raise it or watch fewer agents' files"
        ),
        notify::ErrorKind::PathNotFound => {
            format!("cannot watch `{written}`: it does not exist")
        }
        _ => format!("cannot watch `{written}`: {error}"),
    }
}

/// The watcher's event handler, on notify's thread: it keeps only the
/// changes that count (the core's `WatchPaths::relevant`) and sends them to
/// the loop, at most one per [`SEND_EVERY`].
struct Reporter {
    /// What is watched, for whom.
    watching: Arming,
    last_sent: Option<Instant>,
}

impl Reporter {
    fn report(&mut self, event: notify::Result<notify::Event>) {
        let Arming {
            agent,
            generation,
            paths,
            cwd,
            home,
            inbox,
        } = &self.watching;
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                let problem = describe(&written(paths), &error);
                inbox.send(Input::FileWatch(FileWatchInput::Trouble {
                    agent: agent.clone(),
                    generation: *generation,
                    problem,
                }));
                return;
            }
        };
        let path = if event.need_rescan() {
            // The kernel's queue overflowed: anything may have changed.
            Some("many files (inotify's queue overflowed)".to_owned())
        } else if counts(&event.kind) {
            event
                .paths
                .iter()
                .find_map(|path| paths.relevant(cwd, home, path))
        } else {
            None
        };
        let Some(path) = path else {
            return;
        };
        let now = Instant::now();
        if self
            .last_sent
            .is_some_and(|sent| now.saturating_duration_since(sent) < SEND_EVERY)
        {
            return;
        }
        inbox.send(Input::FileWatch(FileWatchInput::Changed {
            agent: agent.clone(),
            generation: *generation,
            path,
        }));
        self.last_sent = Some(now);
    }
}

/// The entries as the config writes them, for messages.
fn written(paths: &WatchPaths) -> String {
    paths
        .roots(Path::new(""))
        .into_iter()
        .map(|root| root.written)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether an event is a change of content or of the tree: not a read
/// (opening and reading files is what the agent does when it starts).
fn counts(kind: &NotifyKind) -> bool {
    match kind {
        NotifyKind::Create(_) | NotifyKind::Modify(_) | NotifyKind::Remove(_) => true,
        NotifyKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        NotifyKind::Access(_) | NotifyKind::Any | NotifyKind::Other => false,
    }
}
