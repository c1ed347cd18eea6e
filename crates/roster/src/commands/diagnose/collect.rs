//! What `diagnose` collects, each collector on a thread of its own with a
//! deadline (`recv_timeout`): a hung daemon, a locked journal or a slow
//! disk costs its timeout and a line in the manifest, never a hang. A
//! collector that missed its deadline is left to finish on its own; the
//! process exits without waiting for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use roster_core::api::{AlertsReply, EventRecord, StatusReply};
use roster_core::config::Config;
use roster_core::diagnose::{ConfigCheck, Daemon, Host, KernelOom, PortHolder};
use roster_store::Home;

use super::host;
use super::kmsg::{self, KernelLog};
use crate::client::{Client, NotRunning};

/// How long the daemon may take to answer status and alerts.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(3);
/// How long reading the journal, the logs or the config may take.
pub const FILES_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the host's figures (disk walk included) may take.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long doctor's checks may take (bundle only).
pub const DOCTOR_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of each agent's log read.
pub const LOG_LINES: usize = 50;

/// One collector's record, for the manifest and `--json`'s `collected`.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// What was collected.
    pub name: String,
    /// How long it took (its timeout when it hit it).
    pub duration_ms: u64,
    /// Whether it hit its timeout.
    pub timed_out: bool,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was not collected here, when that is no failure (e.g. the
    /// kernel log needs root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A collector under way.
pub struct Pending<T> {
    name: String,
    started: Instant,
    timeout: Duration,
    receiver: mpsc::Receiver<Result<T, String>>,
}

/// Starts `work` on its own thread, to be waited for at most `timeout`
/// from now.
pub fn start<T: Send + 'static>(
    name: &str,
    timeout: Duration,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Pending<T> {
    let (sender, receiver) = mpsc::channel();
    // A thread that cannot be started drops the sender: the wait reports it.
    let _ = std::thread::Builder::new()
        .name(format!("diagnose {name}"))
        .spawn(move || {
            let _ = sender.send(work());
        });
    Pending {
        name: name.to_owned(),
        started: Instant::now(),
        timeout,
        receiver,
    }
}

impl<T> Pending<T> {
    /// Its result, recorded in `items`; `None` when it failed or ran out
    /// of time.
    pub fn wait(self, items: &mut Vec<Item>) -> Option<T> {
        let remaining = (self.started + self.timeout).saturating_duration_since(Instant::now());
        let outcome = self.receiver.recv_timeout(remaining);
        let mut item = Item {
            name: self.name,
            duration_ms: self.started.elapsed().as_millis() as u64,
            timed_out: false,
            error: None,
            skipped: None,
        };
        let value = match outcome {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                item.error = Some(error);
                None
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                item.timed_out = true;
                item.error = Some(format!(
                    "no result within {} ms; left unfinished",
                    self.timeout.as_millis()
                ));
                None
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                item.error = Some("the collector stopped without a result".into());
                None
            }
        };
        items.push(item);
        value
    }
}

/// Everything collected.
pub struct Collected {
    /// Each collector's record.
    pub items: Vec<Item>,
    /// The daemon's status, or why there is none.
    pub daemon: Daemon,
    /// Its alerts, when it answered.
    pub alerts: Option<AlertsReply>,
    /// Journal events in the window.
    pub events: Vec<EventRecord>,
    /// The last lines of each agent's output: of both its logs, by time,
    /// when its stderr has a log of its own (a traceback is often there).
    pub logs: BTreeMap<String, Vec<String>>,
    /// The last lines of each log file read, by file name (`NAME.log`,
    /// `NAME.err.log`): what the bundle holds.
    pub log_files: BTreeMap<String, Vec<String>>,
    /// The host.
    pub host: Host,
    /// The config's verdict.
    pub config: ConfigCheck,
    /// The config, when it loads (the bundle redacts with it).
    pub parsed: Option<Config>,
    /// The config's text, when it could be read.
    pub config_text: Option<String>,
    /// Per agent, who holds the addresses it cannot bind.
    pub port_holders: BTreeMap<String, Vec<PortHolder>>,
    /// Per agent, OOM kills its memory cgroup counts.
    pub oom_kills: BTreeMap<String, u64>,
    /// OOM kills in the kernel log within the window.
    pub kernel_oom: Vec<KernelOom>,
    /// Why the kernel log was not read, when it was not.
    pub kernel_skipped: Option<String>,
    /// This home's cgroup directory name (`roster-<home id>`).
    pub home_cgroup: String,
    /// How far back the events go, for the words of the evidence.
    pub window: String,
}

enum Answer {
    Answered(Box<StatusReply>, Option<AlertsReply>),
    NotRunning,
    Failed(String),
}

fn ask_daemon(home: &Home) -> Result<Answer, String> {
    let started = Instant::now();
    let client = Client::new(&home.socket()).with_timeout(DAEMON_TIMEOUT);
    let status = match client.get::<StatusReply>("/v1/status") {
        Ok(status) => status,
        Err(error) if error.downcast_ref::<NotRunning>().is_some() => {
            return Ok(Answer::NotRunning)
        }
        Err(error) => return Ok(Answer::Failed(format!("{error:#}"))),
    };
    // Alerts within what is left of the daemon's time, so a slow second
    // answer does not lose the status the first one gave.
    let left = DAEMON_TIMEOUT
        .saturating_sub(started.elapsed())
        .saturating_sub(Duration::from_millis(100));
    let alerts = (!left.is_zero())
        .then(|| {
            Client::new(&home.socket())
                .with_timeout(left)
                .get::<AlertsReply>("/v1/alerts")
                .ok()
        })
        .flatten();
    Ok(Answer::Answered(Box::new(status), alerts))
}

/// The agents of this home by their files (log files, journal), for when
/// the daemon does not say.
/// The last [`LOG_LINES`] of each agent's output (both its logs, by time),
/// and of each of its log files, by file name.
type Tails = (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>);

fn read_logs(home: &Home, names: Vec<String>) -> Tails {
    let mut output = BTreeMap::new();
    let mut files = BTreeMap::new();
    for name in names {
        let mut merged = Vec::new();
        let paths = home.agent_logs(&name);
        let two = paths.len() > 1;
        for path in paths {
            let lines = roster_store::logs::files::read_lines(&path, LOG_LINES).unwrap_or_default();
            let file_name = path
                .file_name()
                .map(|file_name| file_name.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.insert(
                file_name,
                lines.iter().map(|line| line.text.clone()).collect(),
            );
            merged.extend(lines);
        }
        if two {
            // Stable: each file's lines keep their order; stamps order the two.
            merged.sort_by(|a, b| a.time.cmp(&b.time));
        }
        let skip = merged.len().saturating_sub(LOG_LINES);
        output.insert(
            name,
            merged
                .into_iter()
                .skip(skip)
                .map(|line| line.text)
                .collect(),
        );
    }
    (output, files)
}

fn agents_on_disk(home: &Home) -> Vec<String> {
    super::super::known_agents(home).unwrap_or_default()
}

/// What `diagnose` needs to judge: `file` is `-f`, checked to exist by
/// the caller; `since` bounds the events.
pub fn collect(home: &Home, file: Option<&Path>, since: Duration, window: String) -> Collected {
    let mut items = Vec::new();
    let since_ms = roster_store::clock::unix_millis() - since.as_millis() as i64;

    // First wave, all at once: the daemon, the journal, the host.
    let daemon = {
        let home = home.clone();
        start("daemon", DAEMON_TIMEOUT, move || ask_daemon(&home))
    };
    let events = {
        let journal = home.journal();
        start("events", FILES_TIMEOUT, move || {
            let filter = roster_store::journal::EventFilter {
                since_ms: Some(since_ms),
                ..Default::default()
            };
            roster_store::journal::read_events(&journal, &filter).map_err(|error| error.to_string())
        })
    };
    let host_facts = {
        let root = home.root().to_path_buf();
        start("host", HOST_TIMEOUT, move || Ok(host::host(&root)))
    };
    let clock = start("clock", FILES_TIMEOUT, || {
        Ok(super::super::doctor::clock_synchronised())
    });
    let kernel = start("kernel log", FILES_TIMEOUT, move || {
        let margin = Duration::from_millis(200);
        Ok(kmsg::read(
            since,
            Instant::now() + FILES_TIMEOUT.saturating_sub(margin),
        ))
    });

    let (daemon, status, alerts) = match daemon.wait(&mut items) {
        Some(Answer::Answered(status, alerts)) => {
            (Daemon::Answered((*status).clone()), Some(*status), alerts)
        }
        Some(Answer::NotRunning) => (
            Daemon::NotRunning {
                socket: home.socket().display().to_string(),
            },
            None,
            None,
        ),
        Some(Answer::Failed(error)) => (
            Daemon::Failed {
                socket: home.socket().display().to_string(),
                error,
            },
            None,
            None,
        ),
        None => (
            Daemon::TimedOut {
                socket: home.socket().display().to_string(),
                waited_ms: DAEMON_TIMEOUT.as_millis() as u64,
            },
            None,
            None,
        ),
    };

    // Second wave: what depends on the daemon's answer.
    let judged = super::super::doctor::config_to_judge(
        file,
        Path::new("roster.toml").exists(),
        status.as_ref(),
    )
    .map(|path| {
        std::env::current_dir()
            .map(|cwd| cwd.join(&path))
            .unwrap_or(path)
    });
    let config = judged
        .clone()
        .map(|path| start("config", FILES_TIMEOUT, move || Ok(read_config(&path))));
    let names: Vec<String> = match &status {
        Some(status) => status
            .agents
            .iter()
            .map(|agent| agent.name.clone())
            .collect(),
        None => agents_on_disk(home),
    };
    let logs = {
        let home = home.clone();
        let names = names.clone();
        start("logs", FILES_TIMEOUT, move || Ok(read_logs(&home, names)))
    };

    let events = events.wait(&mut items).unwrap_or_default();
    let mut host = host_facts.wait(&mut items).unwrap_or_default();
    host.clock_synchronised = clock.wait(&mut items).flatten();
    let (kernel_oom, kernel_skipped) = match kernel.wait(&mut items) {
        Some(KernelLog::Read { kills, cut }) => {
            if cut {
                if let Some(item) = items.last_mut() {
                    item.error = Some("the deadline came before the end of the kernel log; later kills are missing".into());
                }
            }
            (kills, None)
        }
        Some(KernelLog::Skipped(reason)) => {
            if let Some(item) = items.last_mut() {
                item.skipped = Some(reason.clone());
            }
            (Vec::new(), Some(reason))
        }
        None => (Vec::new(), None),
    };
    let (config, parsed, config_text) =
        match (config.and_then(|pending| pending.wait(&mut items)), judged) {
            (Some(read), _) => read,
            (None, Some(path)) => (
                ConfigCheck::Invalid {
                    path: path.display().to_string(),
                    error: "it could not be read in time (a hung filesystem?)".into(),
                },
                None,
                None,
            ),
            (None, None) => (ConfigCheck::NotFound, None, None),
        };
    let (logs, log_files) = logs.wait(&mut items).unwrap_or_default();

    // Third wave: /proc, for agents whose log or error says their address
    // is taken, and the cgroups' OOM counters.
    let ports = {
        let wanted = host::wanted_addresses(status.as_ref(), &logs, parsed.as_ref());
        start("ports", FILES_TIMEOUT, move || {
            Ok(host::port_holders(&wanted, Instant::now() + FILES_TIMEOUT))
        })
    };
    let oom = {
        let status = status.clone();
        start("oom", FILES_TIMEOUT, move || {
            Ok(status
                .map(|status| (host::oom_kills(&status), host::home_cgroup(&status)))
                .unwrap_or_default())
        })
    };
    let daemon_files = status.is_some().then(|| {
        let lock = home.lock();
        start("daemon limits", FILES_TIMEOUT, move || {
            Ok(host::daemon_files(&lock))
        })
    });
    let port_holders = ports.wait(&mut items).unwrap_or_default();
    let (oom_kills, seen_cgroup) = oom.wait(&mut items).unwrap_or_default();
    let home_cgroup = seen_cgroup
        .unwrap_or_else(|| format!("roster-{}", roster_daemon::tools::home_id(home.root())));
    if let Some((limit, open)) = daemon_files.and_then(|pending| pending.wait(&mut items)) {
        host.daemon_open_files_limit = limit;
        host.daemon_open_files = open;
    }

    Collected {
        items,
        daemon,
        alerts,
        events,
        logs,
        log_files,
        host,
        config,
        parsed,
        config_text,
        port_holders,
        oom_kills,
        kernel_oom,
        kernel_skipped,
        home_cgroup,
        window,
    }
}

/// A config's verdict, the config, and its text.
fn read_config(path: &Path) -> (ConfigCheck, Option<Config>, Option<String>) {
    let shown = path.display().to_string();
    if !path.exists() {
        return (
            ConfigCheck::Invalid {
                path: shown,
                error: "the file is not there (the daemon runs it, but it was moved or deleted)"
                    .into(),
            },
            None,
            None,
        );
    }
    let text = roster_store::config_file::read_config_file(path).ok();
    match roster_store::config_file::load_config(path) {
        Ok(config) => {
            let memory_max = config
                .agents
                .iter()
                .filter_map(|(name, spec)| Some((name.to_string(), spec.limits.memory_max?)))
                .collect();
            let nofile = config
                .agents
                .iter()
                .filter_map(|(name, spec)| Some((name.to_string(), spec.limits.nofile?)))
                .collect();
            (
                ConfigCheck::Valid {
                    path: shown,
                    memory_max,
                    nofile,
                },
                Some(config),
                text,
            )
        }
        Err(error) => (ConfigCheck::Invalid { path: shown, error }, None, text),
    }
}

/// `-f FILE` as an absolute path that exists, or the usage error.
pub fn named_config(file: &Path) -> Result<PathBuf, String> {
    super::super::config_path(file).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a separate stderr log, diagnose judges both streams by time
    /// (a traceback is often on stderr), and the bundle gets each file.
    #[test]
    fn both_logs_of_an_agent_are_read_and_judged_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().to_path_buf());
        std::fs::create_dir_all(home.logs()).expect("logs");
        let stamp = |second: u32| format!("2026-12-06T18:00:{second:02}.000Z");
        std::fs::write(
            home.agent_log("web"),
            format!("{} starting\n{} serving\n", stamp(1), stamp(3)),
        )
        .expect("web.log");
        std::fs::write(
            home.agent_err_log("web"),
            format!(
                "{} Traceback\n{} OSError: address in use\n",
                stamp(2),
                stamp(4)
            ),
        )
        .expect("web.err.log");
        std::fs::write(home.agent_log("db"), format!("{} ready\n", stamp(1))).expect("db.log");

        let (judged, files) = read_logs(&home, vec!["web".into(), "db".into()]);
        assert_eq!(
            judged["web"],
            [
                "starting",
                "Traceback",
                "serving",
                "OSError: address in use"
            ]
        );
        assert_eq!(judged["db"], ["ready"]);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["db.log", "web.err.log", "web.log"]
        );
        assert_eq!(
            files["web.err.log"],
            ["Traceback", "OSError: address in use"]
        );
    }
}
