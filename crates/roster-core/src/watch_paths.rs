//! `watch_paths`: an agent restarted when its files change, for
//! development. Which changed paths count (`WatchPaths::relevant` and the
//! ignore rules of `is_ignored`) and when a burst of changes becomes one
//! restart (`Debouncer`) are decided here, on a fake clock in the tests.
//! The daemon's file watcher only reports paths, and the loop the time; no
//! file is read and no clock is read here.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::name::AgentName;

/// A burst of changes restarts the agent once no change came for this long
/// (an editor's save, a `git checkout`, a formatter run over many files).
pub const QUIET: Duration = Duration::from_millis(300);

/// At most one restart per agent this often, however its files change.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Distinct changed paths remembered per burst, for the journal's text.
const PATHS_REMEMBERED: usize = 64;

/// An agent's `watch_paths` as written, read for matching: each entry is
/// a path relative to the agent's `cwd` (a directory is watched with
/// everything under it), or a glob (`*`, `?`) matched against the names
/// of files anywhere under the `cwd` (against the whole relative path
/// when it has a `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchPaths {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// A file or directory, relative to the cwd (or absolute).
    Path(PathBuf),
    /// A pattern over file names (or relative paths, with a `/`).
    Glob(String),
}

/// Where the watcher must look, under an agent's `cwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// An absolute path: a directory watched with everything under it, or
    /// a file (then its directory is watched, so that an editor that saves
    /// by renaming a new file over it is still seen).
    pub path: PathBuf,
    /// The entry as written, for messages.
    pub written: String,
}

impl WatchPaths {
    /// The entries as the config has them (each non-empty: the config
    /// check refuses empty ones).
    pub fn new(written: &[String]) -> Self {
        let entries = written
            .iter()
            .map(|entry| {
                if entry.contains(['*', '?']) {
                    Entry::Glob(entry.trim_start_matches("./").to_owned())
                } else {
                    Entry::Path(PathBuf::from(entry))
                }
            })
            .collect();
        Self { entries }
    }

    /// No entry: nothing is watched (no watcher at all).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What to watch under `cwd`: every path entry, and `cwd` itself once
    /// when any entry is a glob.
    pub fn roots(&self, cwd: &Path) -> Vec<Root> {
        let mut roots = Vec::new();
        let mut globs = Vec::new();
        for entry in &self.entries {
            match entry {
                Entry::Path(path) => roots.push(Root {
                    path: normalize(&cwd.join(path)),
                    written: path.display().to_string(),
                }),
                Entry::Glob(glob) => globs.push(glob.as_str()),
            }
        }
        if !globs.is_empty() {
            roots.push(Root {
                path: normalize(cwd),
                written: globs.join(", "),
            });
        }
        roots
    }

    /// Whether a change at `path` (absolute, as the watcher reports it)
    /// should restart the agent: under an entry and not ignored, and not
    /// inside roster's `home` (its logs and journal change whenever the
    /// agent runs). Gives the path as people read it: relative to `cwd`
    /// when under it.
    pub fn relevant(&self, cwd: &Path, home: &Path, path: &Path) -> Option<String> {
        let path = normalize(path);
        if path.starts_with(normalize(home)) {
            return None;
        }
        let cwd = normalize(cwd);
        let relative = path.strip_prefix(&cwd).ok();
        if is_ignored(relative.unwrap_or(&path)) {
            return None;
        }
        let matched = self.entries.iter().any(|entry| match entry {
            Entry::Path(entry) => path.starts_with(normalize(&cwd.join(entry))),
            Entry::Glob(glob) => relative.is_some_and(|relative| glob_matches(glob, relative)),
        });
        matched.then(|| relative.unwrap_or(&path).display().to_string())
    }
}

/// Changes no agent is restarted for: anything inside `.git` or
/// `__pycache__`, compiled Python (`*.pyc`), and editors' swap, backup and
/// lock files (`*.swp`, `*.swo`, `*.swx`, `*~`, `.#*`, and vim's `4913`
/// write test).
pub fn is_ignored(path: &Path) -> bool {
    let in_ignored_directory = path.components().any(|component| {
        matches!(component, Component::Normal(name) if name == ".git" || name == "__pycache__")
    });
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return in_ignored_directory;
    };
    in_ignored_directory
        || name.ends_with(".pyc")
        || name.ends_with(".swp")
        || name.ends_with(".swo")
        || name.ends_with(".swx")
        || name.ends_with('~')
        || name.starts_with(".#")
        || name == "4913"
}

/// `glob` against a path relative to the cwd: its file name, or the whole
/// path when the glob has a `/` (then `*` stops at `/`).
fn glob_matches(glob: &str, relative: &Path) -> bool {
    let text = if glob.contains('/') {
        relative.to_str()
    } else {
        relative.file_name().and_then(|name| name.to_str())
    };
    text.is_some_and(|text| wildcard(glob.as_bytes(), text.as_bytes()))
}

/// `*` (any run of bytes but `/`) and `?` (one byte but `/`).
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matching with one backtrack point: linear enough for names.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(b'?') if text[t] != b'/' => {
                p += 1;
                t += 1;
            }
            Some(&byte) if byte == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) if text[star_t] != b'/' => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// `.` and `..` taken out lexically (no file is read).
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    normal.push("..");
                }
            }
            other => normal.push(other),
        }
    }
    normal
}

/// A restart the debouncer decided on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    /// The agent.
    pub agent: AgentName,
    /// For the journal: `watch_paths: src/main.py changed`.
    pub reason: String,
}

/// Changes in, "restart now" out: per agent, a burst of changes becomes
/// one restart once [`QUIET`] passed without a change, and never sooner
/// than [`MIN_INTERVAL`] after that agent's previous one.
///
/// Call order: `handle_change` for each relevant change, `handle_timeout`
/// when `poll_timeout` is due, then drain `poll_restart`.
#[derive(Debug, Default)]
pub struct Debouncer {
    agents: BTreeMap<AgentName, Burst>,
    restarts: VecDeque<Restart>,
}

#[derive(Debug, Default)]
struct Burst {
    /// The first path of the burst under way, if one is.
    first: Option<String>,
    /// Other distinct paths of the burst (at most [`PATHS_REMEMBERED`]).
    others: BTreeSet<String>,
    /// More distinct paths than were remembered.
    others_uncounted: bool,
    last_change: Option<Instant>,
    last_restart: Option<Instant>,
}

impl Burst {
    fn due(&self) -> Option<Instant> {
        let last_change = self.last_change?;
        let quiet = last_change + QUIET;
        Some(match self.last_restart {
            Some(restart) => quiet.max(restart + MIN_INTERVAL),
            None => quiet,
        })
    }

    fn reason(&self) -> String {
        let first = self.first.as_deref().unwrap_or("a file");
        match (self.others.len(), self.others_uncounted) {
            (0, _) => format!("watch_paths: {first} changed"),
            (count, false) => {
                let files = if count == 1 { "file" } else { "files" };
                format!("watch_paths: {first} and {count} other {files} changed")
            }
            (count, true) => {
                format!("watch_paths: {first} and more than {count} other files changed")
            }
        }
    }
}

impl Debouncer {
    /// A relevant change to `agent`'s files at `path` (as
    /// [`WatchPaths::relevant`] gives it).
    pub fn handle_change(&mut self, now: Instant, agent: &AgentName, path: String) {
        let burst = self.agents.entry(agent.clone()).or_default();
        burst.last_change = Some(now);
        match &burst.first {
            None => burst.first = Some(path),
            Some(first) if *first == path => {}
            Some(_) if burst.others.len() < PATHS_REMEMBERED => {
                burst.others.insert(path);
            }
            Some(_) => burst.others_uncounted |= !burst.others.contains(&path),
        }
    }

    /// The agent no longer watches its files (removed, or `watch_paths`
    /// taken out): a burst under way restarts nothing.
    pub fn handle_forget(&mut self, agent: &AgentName) {
        self.agents.remove(agent);
    }

    /// When [`Debouncer::handle_timeout`] has something to decide.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.agents.values().filter_map(Burst::due).min()
    }

    /// Bursts that are over become restarts.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (agent, burst) in &mut self.agents {
            if burst.due().is_some_and(|due| due <= now) {
                self.restarts.push_back(Restart {
                    agent: agent.clone(),
                    reason: burst.reason(),
                });
                *burst = Burst {
                    last_restart: Some(now),
                    ..Burst::default()
                };
            }
        }
    }

    /// The next restart to perform.
    pub fn poll_restart(&mut self) -> Option<Restart> {
        self.restarts.pop_front()
    }
}

#[cfg(test)]
mod tests;
