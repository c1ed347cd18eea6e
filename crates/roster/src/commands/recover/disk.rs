//! The disk step: delete the oldest rotated logs (`NAME.log.N`,
//! `NAME.log.N.gz`) of the config's agents, then, if the filesystem is
//! still not below the target, their oldest releases that are neither
//! live nor previous (through the release store, which records each as
//! `removed`), until it is. Nothing else: never a live log, never a file
//! outside what roster's logs and release store name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use roster_core::diagnose::human_bytes;
use roster_core::AgentName;
use roster_store::releases::Releases;
use roster_store::Home;

/// What one kind of deletion freed.
#[derive(Default)]
struct Freed {
    names: Vec<String>,
    bytes: u64,
}

impl Freed {
    fn say(&self, kind: &str) -> String {
        format!(
            "{} {kind} ({}){}",
            self.names.len(),
            human_bytes(self.bytes),
            if self.names.is_empty() {
                String::new()
            } else {
                format!(": {}", self.names.join(", "))
            }
        )
    }
}

/// Runs the disk step, and says how it went.
pub fn free_disk(
    home: &Home,
    percent: f64,
    agents: &[String],
    releases: &[String],
    skipped: &BTreeMap<String, String>,
) -> (&'static str, String) {
    let watched = home.root();
    let below = |used: Option<f64>| used.is_some_and(|used| used < percent);
    let mut used = roster_store::disk::used_percent(watched);
    let logs = rotated_logs(home, agents, percent, &mut used);
    let mut problems = Vec::new();
    let old = if below(used) {
        Freed::default()
    } else {
        old_releases(home, releases, percent, &mut used, &mut problems)
    };
    let now = used
        .map(|used| format!("{used:.1}% used"))
        .unwrap_or_else(|| "use unknown".into());
    let mut detail = format!(
        "deleted {}; {}; now {now}",
        logs.say("rotated logs"),
        old.say("old releases")
    );
    for (agent, why) in skipped {
        detail.push_str(&format!("; releases of {agent} left: {why}"));
    }
    for problem in problems {
        detail.push_str(&format!("; {problem}"));
    }
    if below(used) {
        ("done", detail)
    } else {
        ("left", format!("{detail}; still not below {percent}%"))
    }
}

/// Deletes the oldest rotated logs of `agents` (of their stderr logs too)
/// until the filesystem is below `percent` used or none is left.
fn rotated_logs(home: &Home, agents: &[String], percent: f64, used: &mut Option<f64>) -> Freed {
    let mut rotated: Vec<(SystemTime, std::cmp::Reverse<u32>, PathBuf, u64)> = Vec::new();
    let currents = agents
        .iter()
        .flat_map(|name| [home.agent_log(name), home.agent_err_log(name)]);
    for current in currents {
        for file in roster_store::logs::files::rotated_files(&current) {
            // Never follow a link, never anything but a regular file.
            let Ok(metadata) = file.path.symlink_metadata() else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let Ok(modified) = metadata.modified() else {
                continue;
            };
            rotated.push((
                modified,
                std::cmp::Reverse(file.index),
                file.path,
                metadata.len(),
            ));
        }
    }
    rotated.sort();
    let mut freed = Freed::default();
    for (_, _, path, size) in rotated {
        if used.is_some_and(|used| used < percent) {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            freed.bytes += size;
            freed.names.push(
                path.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            *used = roster_store::disk::used_percent(home.root());
        }
    }
    freed
}

/// Deletes the oldest releases of `agents` that are neither live nor
/// previous, oldest `created` first across agents, until the filesystem
/// is below `percent` used or none is left. Live and previous are asked
/// again before each deletion.
fn old_releases(
    home: &Home,
    agents: &[String],
    percent: f64,
    used: &mut Option<f64>,
    problems: &mut Vec<String>,
) -> Freed {
    let mut candidates: Vec<(String, String, String)> = Vec::new();
    let mut stores = BTreeMap::new();
    for agent in agents {
        let Ok(name) = AgentName::new(agent) else {
            continue;
        };
        let store = Releases::new(home.root(), &name);
        match store.list() {
            Ok(list) => candidates.extend(
                list.into_iter()
                    .filter(|release| !release.live && is_kept_result(&release.result))
                    .map(|release| (release.created, agent.clone(), release.version)),
            ),
            Err(error) => problems.push(format!(
                "the releases of {agent} could not be read: {error}"
            )),
        }
        stores.insert(agent.clone(), store);
    }
    candidates.sort();
    let mut freed = Freed::default();
    for (_, agent, version) in candidates {
        if used.is_some_and(|used| used < percent) {
            break;
        }
        let Some(store) = stores.get(&agent) else {
            continue;
        };
        let protected = match (store.live(), store.previous()) {
            (Ok(live), Ok(previous)) => {
                live.as_deref() == Some(&version) || previous.as_deref() == Some(&version)
            }
            (Err(error), _) | (_, Err(error)) => {
                problems.push(format!(
                    "the releases of {agent} could not be read: {error}"
                ));
                true
            }
        };
        if protected {
            continue;
        }
        let dir = store.release_dir(&version);
        let size = tree_bytes(&dir);
        if let Err(error) = store.discard(&version) {
            problems.push(format!(
                "{agent} release {version} could not be removed: {error}"
            ));
            continue;
        }
        if let Err(error) = store.record(
            &version,
            "removed",
            Some("removed by roster recover to free disk"),
            None,
        ) {
            problems.push(format!(
                "{agent} release {version} was removed but its manifest entry not updated: {error}"
            ));
        }
        freed.bytes += size;
        freed.names.push(format!("{agent} {version}"));
        *used = roster_store::disk::used_percent(home.root());
    }
    freed
}

/// Results whose release directory may still be on disk.
fn is_kept_result(result: &str) -> bool {
    result != "removed" && result != "failed"
}

/// The bytes of the regular files under `path`, links not followed.
fn tree_bytes(path: &Path) -> u64 {
    let Ok(metadata) = path.symlink_metadata() else {
        return 0;
    };
    if metadata.is_file() {
        return metadata.len();
    }
    if !metadata.is_dir() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| tree_bytes(&entry.path()))
        .sum()
}
