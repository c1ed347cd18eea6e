//! The config file: its model, and validation that reports every problem at
//! once with the line and column where it sits.
//!
//! Parsing walks the TOML tree by hand (rather than through serde) so that an
//! unknown key, a bad duration and a bad name in the same file are all
//! reported in one run, each at its own position. Nothing here touches the
//! file system: the caller reads the file and hands over its text and the
//! directory relative paths are resolved against.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use crate::deploy::{DeploySpec, ListenSpec};
use crate::hardening::{expand, parse_cpu_quota, valid_account, Identity, Limits};
use crate::health::{Check, HealthSpec, HttpTarget, OnFailure, MIN_PROBE_PERIOD};
use crate::name::AgentName;
use crate::notify::{
    parse_receiver_url, NotifySpec, NotifyTarget, DEFAULT_NOTIFY_TIMEOUT, NOTIFY_KEYS,
    NOTIFY_TARGETS,
};
use crate::signal::Signal;
use crate::units::{parse_duration, parse_size};
use crate::watch::{default_agent_rules, Metric, RuleAction, Threshold, WatchRule};

mod deploy_checks;
#[cfg(test)]
mod message_tests;

/// A whole, validated config.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How agent logs are rotated.
    pub log: LogConfig,
    /// Where Prometheus metrics are served (`[metrics]`), if anywhere.
    pub metrics: Option<crate::metrics::MetricsSpec>,
    /// The agents, by name.
    pub agents: BTreeMap<AgentName, AgentSpec>,
    /// `[[host.watch]]` rules.
    pub host_watch: Vec<WatchRule>,
    /// Where alerts are delivered (`[[notify]]`), in file order.
    pub notify: Vec<NotifySpec>,
}

/// The `[log]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Rotate a log when it reaches this many bytes (and daily).
    pub max_size: u64,
    /// Rotated files kept per agent.
    pub keep: u32,
    /// Gzip rotated files.
    pub compress: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024,
            keep: 14,
            compress: true,
        }
    }
}

/// When an agent that exited is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartMode {
    /// Whatever the exit.
    Always,
    /// Only after a non-zero exit code or a death by signal.
    OnFailure,
    /// Never: the agent stays `exited`.
    Never,
}

impl RestartMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartMode::Always => "always",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Never => "never",
        }
    }
}

/// One `[agents.NAME]` table, with defaults filled in and paths resolved.
#[derive(Clone, PartialEq)]
pub struct AgentSpec {
    /// argv; never run through a shell.
    pub command: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// Extra environment, on top of the daemon's own.
    pub env: BTreeMap<String, String>,
    /// Restart policy.
    pub restart: RestartMode,
    /// Wait before the first restart after a death.
    pub restart_delay: Duration,
    /// The longest wait between restarts of a crash-looping agent.
    pub backoff_max: Duration,
    /// Sent to the agent's process group to stop it.
    pub stop_signal: Signal,
    /// After this, SIGKILL to the whole process group.
    pub stop_timeout: Duration,
    /// An agent counts as `running` (rather than `starting`) once it has been
    /// up this long.
    pub ready_after: Duration,
    /// A run shorter than this is a quick death: it grows the backoff and
    /// counts towards the crash loop. A longer run resets both.
    pub stable_after: Duration,
    /// This many quick deaths within `crash_window` mark the agent `failed`;
    /// 0 never does.
    pub crash_loop: u32,
    /// The window `crash_loop` counts in.
    pub crash_window: Duration,
    /// A `failed` agent is retried after this; `None` (`"never"`) leaves it
    /// failed until an operator starts it.
    pub failed_retry: Option<Duration>,
    /// The health check, if any.
    pub health: Option<HealthSpec>,
    /// Asks the agent to finish its work before a restart roster decided
    /// on (a failed health check); `None` means the stop signal.
    pub drain_signal: Option<Signal>,
    /// How long a draining agent may take before SIGKILL.
    pub drain_timeout: Duration,
    /// `[[agents.NAME.watch]]` rules; `None` (no `watch` key) means the
    /// graded defaults, `watch = []` none at all.
    pub watch: Option<Vec<WatchRule>>,
    /// Where the agent serves its own Prometheus metrics, listed for
    /// Prometheus in the home's file_sd file.
    pub metrics: Option<HttpTarget>,
    /// `[agents.NAME.deploy]`: the agent is shipped as releases.
    pub deploy: Option<DeploySpec>,
    /// Runs in its live release (`<home>/agents/NAME/releases/VERSION`):
    /// set when `deploy` is given. `cwd` is then the config file's
    /// directory and means nothing; see `release_subdir`.
    pub release_cwd: bool,
    /// With `release_cwd`: the directory inside the release the agent runs
    /// in, from a relative `cwd` (empty: the release's top directory).
    /// Never absolute, never with `..`.
    pub release_subdir: PathBuf,
    /// `[agents.NAME.listen]`: sockets roster binds and hands over.
    pub listen: ListenSpec,
    /// Who it runs as.
    pub identity: Identity,
    /// What it may use.
    pub limits: Limits,
    /// `KEY=VALUE` lines added to its environment at each start (after
    /// `env`), read by the daemon when the config is applied.
    pub env_file: Option<PathBuf>,
}

impl AgentSpec {
    /// The rules in force: the agent's own, or the graded defaults.
    pub fn rules(&self) -> Vec<WatchRule> {
        self.watch.clone().unwrap_or_else(default_agent_rules)
    }
}

impl AgentSpec {
    /// The environment the agent starts with, on top of the daemon's own:
    /// the config's `env`, plus `PYTHONUNBUFFERED=1` unless the config sets
    /// it, so that Python agents' output reaches the log line by line instead
    /// of sitting in a 8 KiB buffer.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut environment: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !self.env.contains_key("PYTHONUNBUFFERED") {
            environment.push(("PYTHONUNBUFFERED".into(), "1".into()));
        }
        environment
    }
}

// A hand-written Debug: `env` often carries API keys, and Debug output ends up
// in logs and panic messages.
impl fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSpec")
            .field("command", &self.command)
            .field("cwd", &self.cwd)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("restart", &self.restart)
            .field("restart_delay", &self.restart_delay)
            .field("backoff_max", &self.backoff_max)
            .field("stop_signal", &self.stop_signal)
            .field("stop_timeout", &self.stop_timeout)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the file's text.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when we know.
    pub hint: Option<String>,
}

/// Every problem found in a config file, with what is needed to print them
/// as `FILE:LINE:COL: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it.
    pub file: String,
    /// The problems, in file order.
    pub diagnostics: Vec<Located>,
}

/// A diagnostic with its 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.diagnostics.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, problem.line, problem.column, problem.message
            )?;
            if let Some(hint) = &problem.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn locate(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|index| index + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

const LOG_KEYS: [&str; 3] = ["max_size", "keep", "compress"];
const METRICS_KEYS: [&str; 2] = ["listen", "bearer_token_file"];
const HEALTH_KEYS: [&str; 8] = [
    "http",
    "tcp",
    "exec",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "on_failure",
];
const WATCH_KEYS: [&str; 10] = [
    "metric",
    "above",
    "below",
    "for",
    "action",
    "pattern",
    "within",
    "predict",
    "repeat_every",
    "path",
];
const HOST_KEYS: [&str; 1] = ["watch"];
/// Keys `[defaults]` may set for every agent (an agent's own value wins).
const DEFAULTS_KEYS: [&str; 24] = [
    "env",
    "restart",
    "restart_delay",
    "backoff_max",
    "stop_signal",
    "stop_timeout",
    "ready_after",
    "stable_after",
    "crash_loop",
    "crash_window",
    "failed_retry",
    "drain_signal",
    "drain_timeout",
    "user",
    "group",
    "allow_root",
    "create_user",
    "memory_max",
    "cpu_quota",
    "tasks_max",
    "nofile",
    "env_file",
    "watch",
    "health",
];
const AGENT_KEYS: [&str; 29] = [
    "command",
    "cwd",
    "env",
    "restart",
    "restart_delay",
    "backoff_max",
    "stop_signal",
    "stop_timeout",
    "ready_after",
    "stable_after",
    "crash_loop",
    "crash_window",
    "failed_retry",
    "health",
    "drain_signal",
    "drain_timeout",
    "watch",
    "metrics",
    "deploy",
    "listen",
    "user",
    "group",
    "allow_root",
    "create_user",
    "memory_max",
    "cpu_quota",
    "tasks_max",
    "nofile",
    "env_file",
];
const TOP_KEYS: [&str; 6] = ["log", "agents", "host", "notify", "metrics", "defaults"];

/// Parses and validates a config file's text.
///
/// `file` is how errors name the file; `base_dir` is what relative paths
/// (`cwd`) are resolved against, normally the file's directory.
pub fn parse(file: &str, text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut checker = Checker {
        problems: Vec::new(),
        defaults: Vec::new(),
    };
    let config = match toml_edit::Document::parse(text) {
        Ok(document) => checker.config(document.as_item(), base_dir),
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = error.message().trim().to_owned();
            let hint = if message.contains("duplicate key") {
                Some("each agent and each key may appear only once".to_owned())
            } else {
                Some("this is not valid TOML; see https://toml.io".to_owned())
            };
            checker.problems.push(Diagnostic {
                span,
                message: format!("TOML syntax: {message}"),
                hint,
            });
            None
        }
    };
    match config {
        Some(config) if checker.problems.is_empty() => Ok(config),
        _ => {
            let mut problems = checker.problems;
            problems.sort_by_key(|problem| problem.span.start);
            // A bad `[defaults]` value is found once per agent: say it once.
            problems.dedup_by(|a, b| a.span == b.span && a.message == b.message);
            Err(ConfigError {
                file: file.to_owned(),
                diagnostics: problems
                    .into_iter()
                    .map(|problem| {
                        let (line, column) = locate(text, problem.span.start);
                        Located {
                            line,
                            column,
                            message: problem.message,
                            hint: problem.hint,
                        }
                    })
                    .collect(),
            })
        }
    }
}

struct Checker {
    problems: Vec<Diagnostic>,
    /// `[defaults]`: items every agent gets unless it sets them itself.
    defaults: Vec<(String, Item)>,
}

fn span_of(item: &Item) -> Range<usize> {
    item.span().unwrap_or(0..0)
}

fn key_span(table: &dyn TableLike, key: &str, item: &Item) -> Range<usize> {
    table
        .key(key)
        .and_then(|key| key.span())
        .unwrap_or_else(|| span_of(item))
}

fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

impl Checker {
    fn problem(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        self.problems.push(Diagnostic {
            span,
            message: message.into(),
            hint,
        });
    }

    fn unknown_key(&mut self, span: Range<usize>, key: &str, place: &str, known: &[&str]) {
        let hint = match closest(key, known) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => format!("known keys here: {}", known.join(", ")),
        };
        self.problem(span, format!("unknown key `{key}` in {place}"), Some(hint));
    }

    fn config(&mut self, root: &Item, base_dir: &Path) -> Option<Config> {
        let table = root.as_table_like()?;
        let mut log = LogConfig::default();
        let mut agents = BTreeMap::new();
        let mut host_watch = Vec::new();
        let mut notify = Vec::new();
        let mut metrics = None;
        let mut listening = BTreeMap::new();
        if let Some(item) = table.get("defaults") {
            match item.as_table_like() {
                Some(defaults) => {
                    for (key, value) in defaults.iter() {
                        if DEFAULTS_KEYS.contains(&key) {
                            self.defaults.push((key.to_owned(), value.clone()));
                        } else {
                            let span = key_span(defaults, key, value);
                            self.unknown_key(span, key, "[defaults]", &DEFAULTS_KEYS);
                        }
                    }
                }
                None => self.problem(
                    span_of(item),
                    "`defaults` must be a table",
                    Some("write it as [defaults] with keys every agent gets".into()),
                ),
            }
        }
        for (key, item) in table.iter() {
            match key {
                "defaults" => {}
                "metrics" => metrics = self.metrics(item, base_dir),
                "host" => match item.as_table_like() {
                    Some(host) => {
                        for (host_key, host_item) in host.iter() {
                            if host_key == "watch" {
                                host_watch = self.watch_rules(host_item, "[[host.watch]]", true);
                            } else {
                                let span = key_span(host, host_key, host_item);
                                self.unknown_key(span, host_key, "[host]", &HOST_KEYS);
                            }
                        }
                    }
                    None => self.problem(
                        span_of(item),
                        "`host` must be a table",
                        Some("write host rules as [[host.watch]]".into()),
                    ),
                },
                "log" => match item.as_table_like() {
                    Some(log_table) => log = self.log(log_table),
                    None => self.problem(span_of(item), "`log` must be a table", None),
                },
                "agents" => match item.as_table_like() {
                    Some(agents_table) => {
                        for (name, agent_item) in agents_table.iter() {
                            let name_span = key_span(agents_table, name, agent_item);
                            let agent_name = match AgentName::new(name) {
                                Ok(agent_name) => Some(agent_name),
                                Err(error) => {
                                    self.problem(
                                        name_span.clone(),
                                        format!("bad agent name {name:?}: {error}"),
                                        Some("names are 1 to 64 of letters, digits, '.', '_', '-', starting with a letter or digit".into()),
                                    );
                                    None
                                }
                            };
                            let Some(agent_table) = agent_item.as_table_like() else {
                                self.problem(
                                    span_of(agent_item),
                                    format!("agent `{name}` must be a table"),
                                    Some(format!(
                                        "write it as [agents.{name}] with a `command` key"
                                    )),
                                );
                                continue;
                            };
                            let spec = self.agent(name, agent_table, name_span.clone(), base_dir);
                            for address in spec.iter().flat_map(|spec| spec.listen.values()) {
                                if let Some(other) = listening.insert(*address, name.to_owned()) {
                                    self.problem(
                                        name_span.clone(),
                                        format!("agent `{name}` listens on {address}, as agent `{other}` does"),
                                        Some("give each agent its own address".into()),
                                    );
                                }
                            }
                            if let (Some(agent_name), Some(spec)) = (agent_name, spec) {
                                agents.insert(agent_name, spec);
                            }
                        }
                    }
                    None => self.problem(
                        span_of(item),
                        "`agents` must be a table of agents",
                        Some("write each agent as [agents.NAME]".into()),
                    ),
                },
                "notify" => notify = self.notify(item, base_dir),
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, "the top level", &TOP_KEYS);
                }
            }
        }
        Some(Config {
            log,
            agents,
            host_watch,
            notify,
            metrics,
        })
    }

    /// The `[metrics]` table: `listen`, an IP address and port
    /// (default [`crate::metrics::DEFAULT_LISTEN`]).
    fn metrics(&mut self, item: &Item, base_dir: &Path) -> Option<crate::metrics::MetricsSpec> {
        use crate::metrics::{parse_listen, MetricsSpec, DEFAULT_LISTEN};
        let Some(table) = item.as_table_like() else {
            self.problem(
                span_of(item),
                "`metrics` must be a table",
                Some(format!(
                    "write it as [metrics] with listen = \"{DEFAULT_LISTEN}\""
                )),
            );
            return None;
        };
        let problems_before = self.problems.len();
        let mut listen = parse_listen(DEFAULT_LISTEN).ok();
        let mut bearer_token_file = None;
        for (key, value) in table.iter() {
            match key {
                "bearer_token_file" => {
                    if let Some(path) = self.string(value, key) {
                        if path.is_empty() {
                            self.problem(
                                span_of(value),
                                "`bearer_token_file` is empty",
                                Some("name a file holding the token, e.g. \"/etc/roster/metrics.token\"".into()),
                            );
                        } else {
                            bearer_token_file = Some(base_dir.join(path));
                        }
                    }
                }
                "listen" => {
                    let Some(raw) = self.string(value, key) else {
                        continue;
                    };
                    match parse_listen(raw) {
                        Ok(address) => listen = Some(address),
                        Err(error) => self.problem(
                            span_of(value),
                            format!("bad metrics address {raw:?}: {error}"),
                            Some(format!(
                                "write e.g. \"{DEFAULT_LISTEN}\", \"0.0.0.0:9464\" or \"[::1]:9464\""
                            )),
                        ),
                    }
                }
                other => {
                    let span = key_span(table, other, value);
                    self.unknown_key(span, other, "[metrics]", &METRICS_KEYS);
                }
            }
        }
        if self.problems.len() > problems_before {
            return None;
        }
        listen.map(|listen| MetricsSpec {
            listen,
            bearer_token_file,
        })
    }

    fn log(&mut self, table: &dyn TableLike) -> LogConfig {
        let mut log = LogConfig::default();
        for (key, item) in table.iter() {
            match key {
                "max_size" => {
                    if let Some(size) = self.size(item, "max_size") {
                        if size < 4096 {
                            self.problem(
                                span_of(item),
                                "`max_size` must be at least 4KiB",
                                Some("a log smaller than a page would rotate on every line".into()),
                            );
                        } else {
                            log.max_size = size;
                        }
                    }
                }
                "keep" => {
                    if let Some(keep) = self.integer(item, "keep", 0, 10_000) {
                        log.keep = keep as u32;
                    }
                }
                "compress" => {
                    if let Some(compress) = self.boolean(item, "compress") {
                        log.compress = compress;
                    }
                }
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, "[log]", &LOG_KEYS);
                }
            }
        }
        log
    }

    /// `[[notify]]`: an array of tables, each with exactly one target.
    fn notify(&mut self, item: &Item, base_dir: &Path) -> Vec<NotifySpec> {
        let hint = "write each notifier as a [[notify]] table with one of webhook, alertmanager, exec or file";
        let mut tables: Vec<(&dyn TableLike, Range<usize>)> = Vec::new();
        match item {
            Item::ArrayOfTables(array) => {
                for table in array.iter() {
                    tables.push((table as &dyn TableLike, table.span().unwrap_or(0..0)));
                }
            }
            Item::Value(Value::Array(array)) => {
                for value in array.iter() {
                    match value.as_inline_table() {
                        Some(table) => {
                            tables.push((table as &dyn TableLike, table.span().unwrap_or(0..0)))
                        }
                        None => self.problem(
                            value.span().unwrap_or(0..0),
                            "every `notify` entry must be a table",
                            Some(hint.into()),
                        ),
                    }
                }
            }
            _ => {
                self.problem(
                    span_of(item),
                    "`notify` must be an array of tables",
                    Some(hint.into()),
                );
            }
        }
        let mut specs = Vec::new();
        for (index, (table, table_span)) in tables.into_iter().enumerate() {
            if let Some(spec) = self.notifier(index + 1, table, table_span, base_dir) {
                specs.push(spec);
            }
        }
        specs
    }

    fn notifier(
        &mut self,
        number: usize,
        table: &dyn TableLike,
        table_span: Range<usize>,
        base_dir: &Path,
    ) -> Option<NotifySpec> {
        let place = format!("[[notify]] #{number}");
        let target_hint = "give exactly one of webhook = \"http://...\", alertmanager = \"http://127.0.0.1:9093\", exec = [\"cmd\", ...] or file = \"path\"";
        let problems_before = self.problems.len();
        let mut targets: Vec<(NotifyTarget, Range<usize>)> = Vec::new();
        let mut target_keys = 0;
        let mut timeout = DEFAULT_NOTIFY_TIMEOUT;
        for (key, item) in table.iter() {
            if NOTIFY_TARGETS.contains(&key) {
                target_keys += 1;
            }
            match key {
                "webhook" | "alertmanager" => {
                    let Some(url) = self.string(item, key) else {
                        continue;
                    };
                    match parse_receiver_url(url) {
                        Ok(http) => {
                            let target = if key == "webhook" {
                                NotifyTarget::Webhook(http)
                            } else {
                                NotifyTarget::Alertmanager(http)
                            };
                            targets.push((target, span_of(item)));
                        }
                        Err(error) => self.problem(
                            span_of(item),
                            format!("bad {key} URL {url:?}: {error}"),
                            Some(if key == "webhook" {
                                "e.g. webhook = \"http://127.0.0.1:5001/alerts\"".into()
                            } else {
                                "e.g. alertmanager = \"http://127.0.0.1:9093\"".into()
                            }),
                        ),
                    }
                }
                "exec" => {
                    let empty = item.as_array().is_some_and(|array| array.is_empty())
                        || item.as_str().is_some_and(|text| text.trim().is_empty());
                    if empty {
                        self.problem(
                            span_of(item),
                            "`exec` is empty",
                            Some(
                                "name the program to run, e.g. exec = [\"/usr/local/bin/page-me\"]"
                                    .into(),
                            ),
                        );
                    } else if let Some(argv) = self.command(item) {
                        targets.push((
                            NotifyTarget::Exec {
                                argv,
                                cwd: base_dir.to_path_buf(),
                            },
                            span_of(item),
                        ));
                    }
                }
                "file" => {
                    let Some(path) = self.string(item, key) else {
                        continue;
                    };
                    if path.is_empty() || path.contains('\0') {
                        self.problem(
                            span_of(item),
                            "`file` must name a file",
                            Some(
                                "e.g. file = \"alerts.jsonl\" (relative to the config file)".into(),
                            ),
                        );
                    } else {
                        targets.push((NotifyTarget::File(base_dir.join(path)), span_of(item)));
                    }
                }
                "timeout" => {
                    if let Some(value) = self.duration(item, key) {
                        if value.is_zero() {
                            self.problem(
                                span_of(item),
                                "`timeout` must be above 0s",
                                Some("it bounds each delivery attempt; leave it out for 5s".into()),
                            );
                        } else {
                            timeout = value;
                        }
                    }
                }
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, &place, &NOTIFY_KEYS);
                }
            }
        }
        let target = match targets.len() {
            1 => targets.pop().map(|(target, _)| target),
            0 => {
                // A target that is there but invalid was reported already.
                if target_keys == 0 {
                    self.problem(
                        table_span,
                        format!("{place} names no target"),
                        Some(target_hint.into()),
                    );
                }
                None
            }
            _ => {
                self.problem(
                    targets[1].1.clone(),
                    format!("{place} names more than one target"),
                    Some(format!(
                        "{target_hint}; write one [[notify]] table per target"
                    )),
                );
                None
            }
        }?;
        (self.problems.len() == problems_before).then_some(NotifySpec { target, timeout })
    }

    fn agent(
        &mut self,
        name: &str,
        table: &dyn TableLike,
        name_span: Range<usize>,
        base_dir: &Path,
    ) -> Option<AgentSpec> {
        let problems_before = self.problems.len();
        let mut spec = AgentSpec {
            command: Vec::new(),
            cwd: base_dir.to_path_buf(),
            env: BTreeMap::new(),
            restart: RestartMode::Always,
            restart_delay: Duration::ZERO,
            backoff_max: Duration::from_secs(30),
            stop_signal: Signal::Term,
            stop_timeout: Duration::from_secs(10),
            ready_after: Duration::from_secs(1),
            stable_after: Duration::from_secs(10),
            crash_loop: 5,
            crash_window: Duration::from_secs(60),
            failed_retry: Some(Duration::from_secs(300)),
            health: None,
            drain_signal: None,
            drain_timeout: Duration::from_secs(30),
            watch: None,
            metrics: None,
            deploy: None,
            release_cwd: false,
            release_subdir: PathBuf::new(),
            listen: ListenSpec::new(),
            identity: Identity::default(),
            limits: Limits::default(),
            env_file: None,
        };
        let mut has_command = false;
        // `cwd` as written, for an agent shipped as releases (relative to
        // its release).
        let mut cwd_given: Option<(String, Range<usize>)> = None;
        let place = format!("agent `{name}`");
        // `[defaults]` items the agent does not set itself come first.
        let defaults: Vec<(String, Item)> = self
            .defaults
            .iter()
            .filter(|(key, _)| key == "env" || !table.contains_key(key))
            .cloned()
            .collect();
        let own: Vec<(String, Item)> = table
            .iter()
            .map(|(key, item)| (key.to_owned(), item.clone()))
            .collect();
        let defaults_table = toml_edit::Table::new();
        for (key, item, from_defaults) in defaults
            .iter()
            .map(|(key, item)| (key.as_str(), item, true))
            .chain(own.iter().map(|(key, item)| (key.as_str(), item, false)))
        {
            let table: &dyn TableLike = if from_defaults {
                &defaults_table
            } else {
                table
            };
            match key {
                "command" => {
                    has_command = true;
                    if let Some(command) = self.command(item) {
                        spec.command = command;
                    }
                }
                "cwd" => {
                    if let Some(cwd) = self.string(item, "cwd") {
                        if cwd.is_empty() {
                            self.problem(
                                span_of(item),
                                "`cwd` is empty",
                                Some("leave it out to use the config file's directory".into()),
                            );
                        } else {
                            spec.cwd = base_dir.join(cwd);
                            cwd_given = Some((cwd.to_owned(), span_of(item)));
                        }
                    }
                }
                // `[defaults]` env first, the agent's own on top.
                "env" => spec.env.extend(self.env(item)),
                "restart" => {
                    if let Some(mode) = self.string(item, "restart") {
                        match mode {
                            "always" => spec.restart = RestartMode::Always,
                            "on-failure" => spec.restart = RestartMode::OnFailure,
                            "never" => spec.restart = RestartMode::Never,
                            other => self.problem(
                                span_of(item),
                                format!("unknown restart policy {other:?}"),
                                Some("use \"always\", \"on-failure\" or \"never\"".into()),
                            ),
                        }
                    }
                }
                "restart_delay" => {
                    if let Some(value) = self.duration(item, key) {
                        spec.restart_delay = value;
                    }
                }
                "backoff_max" => {
                    if let Some(value) = self.duration(item, key) {
                        spec.backoff_max = value;
                    }
                }
                "stop_timeout" => {
                    if let Some(value) = self.duration(item, key) {
                        spec.stop_timeout = value;
                    }
                }
                "ready_after" => {
                    if let Some(value) = self.duration(item, key) {
                        spec.ready_after = value;
                    }
                }
                "stable_after" => {
                    if let Some(value) = self.duration(item, key) {
                        spec.stable_after = value;
                    }
                }
                "crash_window" => {
                    if let Some(value) = self.duration(item, key) {
                        spec.crash_window = value;
                    }
                }
                "failed_retry" => {
                    if item.as_str() == Some("never") {
                        spec.failed_retry = None;
                    } else if let Some(value) = self.duration(item, key) {
                        spec.failed_retry = Some(value);
                    }
                }
                "crash_loop" => {
                    if let Some(value) = self.integer(item, key, 0, 1000) {
                        spec.crash_loop = value as u32;
                    }
                }
                "stop_signal" => {
                    if let Some(signal) = self.signal(item, key) {
                        spec.stop_signal = signal;
                    }
                }
                "drain_signal" => spec.drain_signal = self.signal(item, key),
                "metrics" => {
                    if let Some(url) = self.string(item, key) {
                        match HttpTarget::parse(url) {
                            Ok(target) => spec.metrics = Some(target),
                            Err(error) => self.problem(
                                span_of(item),
                                format!("bad metrics URL {url:?}: {error}"),
                                Some("e.g. metrics = \"http://127.0.0.1:8001/metrics\"".into()),
                            ),
                        }
                    }
                }
                "watch" => {
                    spec.watch =
                        Some(self.watch_rules(item, &format!("[[agents.{name}.watch]]"), false))
                }
                "drain_timeout" => {
                    if let Some(value) = self.duration(item, key) {
                        spec.drain_timeout = value;
                    }
                }
                "health" => match item.as_table_like() {
                    Some(health) => {
                        spec.health = self.health(name, health, key_span(table, key, item))
                    }
                    None => self.problem(
                        span_of(item),
                        "`health` must be a table",
                        Some(format!(
                            "write it as [agents.{name}.health] with one of http, tcp or exec"
                        )),
                    ),
                },
                "deploy" => match item.as_table_like() {
                    Some(deploy) => spec.deploy = self.deploy(name, deploy),
                    None => self.problem(
                        span_of(item),
                        "`deploy` must be a table",
                        Some(format!("write it as [agents.{name}.deploy]")),
                    ),
                },
                "listen" => match item.as_table_like() {
                    Some(listen) => spec.listen = self.listen(name, listen),
                    None => self.problem(
                        span_of(item),
                        "`listen` must be a table",
                        Some(format!(
                            "write it as [agents.{name}.listen] with e.g. http = \"127.0.0.1:8080\""
                        )),
                    ),
                },
                "user" | "group" => {
                    if let Some(raw) = self.string(item, key) {
                        let value = expand(raw, name);
                        if valid_account(&value) {
                            if key == "user" {
                                spec.identity.user = Some(value);
                            } else {
                                spec.identity.group = Some(value);
                            }
                        } else {
                            self.problem(
                                span_of(item),
                                format!("bad {key} {value:?} for agent `{name}`"),
                                Some(format!(
                                    "a {key} is a number or a name of letters, digits, '.', '_' and '-' (at most 32), not starting with '-'; {{name}} is replaced by the agent's name"
                                )),
                            );
                        }
                    }
                }
                "allow_root" | "create_user" => {
                    if let Some(value) = self.boolean(item, key) {
                        if key == "allow_root" {
                            spec.identity.allow_root = value;
                        } else {
                            spec.identity.create_user = value;
                        }
                    }
                }
                "memory_max" => {
                    if let Some(bytes) = self.size(item, key) {
                        if bytes < 1024 * 1024 {
                            self.problem(
                                span_of(item),
                                "`memory_max` below 1MiB would kill the agent at once",
                                Some("write e.g. \"512MiB\"".into()),
                            );
                        } else {
                            spec.limits.memory_max = Some(bytes);
                        }
                    }
                }
                "cpu_quota" => {
                    let raw = match item.as_integer() {
                        Some(number) => Some(number.to_string()),
                        None => self.string(item, key).map(str::to_owned),
                    };
                    if let Some(raw) = raw {
                        match parse_cpu_quota(&raw) {
                            Ok(percent) => spec.limits.cpu_quota = Some(percent),
                            Err(error) => self.problem(
                                span_of(item),
                                format!("bad cpu_quota: {error}"),
                                Some(
                                    "write a percentage of one core, e.g. \"50%\" or \"200%\""
                                        .into(),
                                ),
                            ),
                        }
                    }
                }
                "tasks_max" => {
                    if let Some(value) = self.integer(item, key, 1, 4_194_304) {
                        spec.limits.tasks_max = Some(value as u64);
                    }
                }
                "nofile" => {
                    if let Some(value) = self.integer(item, key, 16, 1 << 30) {
                        spec.limits.nofile = Some(value as u64);
                    }
                }
                "env_file" => {
                    if let Some(path) = self.string(item, key) {
                        if path.is_empty() {
                            self.problem(span_of(item), "`env_file` is empty", None);
                        } else {
                            spec.env_file = Some(base_dir.join(path));
                        }
                    }
                }
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, &place, &AGENT_KEYS);
                }
            }
        }
        if spec.deploy.is_some() {
            self.release_cwd(name, &mut spec, cwd_given, base_dir);
        }
        if !has_command {
            self.problem(
                name_span,
                format!("agent `{name}` has no `command`"),
                Some("add e.g. command = [\"python3\", \"main.py\"]".into()),
            );
        }
        (self.problems.len() == problems_before).then_some(spec)
    }

    /// `watch`: an array of tables (or `[]` for no rules).
    fn watch_rules(&mut self, item: &Item, place: &str, host: bool) -> Vec<WatchRule> {
        let mut rules = Vec::new();
        let tables: Vec<&dyn TableLike> = match item {
            Item::ArrayOfTables(array) => {
                array.iter().map(|table| table as &dyn TableLike).collect()
            }
            Item::Value(Value::Array(array)) => {
                let mut tables = Vec::new();
                for value in array.iter() {
                    match value.as_inline_table() {
                        Some(table) => tables.push(table as &dyn TableLike),
                        None => self.problem(
                            value.span().unwrap_or_else(|| span_of(item)),
                            format!("each {place} rule must be a table"),
                            Some("write rules as [[...watch]] tables".into()),
                        ),
                    }
                }
                tables
            }
            _ => {
                self.problem(
                    span_of(item),
                    format!("{place} must be an array of tables"),
                    Some("write each rule as its own [[...watch]] table".into()),
                );
                return rules;
            }
        };
        for table in tables {
            if let Some(rule) = self.watch_rule(table, place, host, span_of(item)) {
                rules.push(rule);
            }
        }
        rules
    }

    fn watch_rule(
        &mut self,
        table: &dyn TableLike,
        place: &str,
        host: bool,
        fallback: Range<usize>,
    ) -> Option<WatchRule> {
        let before = self.problems.len();
        let mut metric: Option<(Metric, Range<usize>)> = None;
        let mut threshold: Option<Threshold> = None;
        let mut hold = Duration::ZERO;
        let mut action = RuleAction::Alert;
        let mut action_span = None;
        let mut pattern: Option<(String, Range<usize>)> = None;
        let mut within: Option<(Duration, Range<usize>)> = None;
        let mut predict = None;
        let mut repeat_every = None;
        let mut path: Option<(PathBuf, Range<usize>)> = None;
        let mut first_span = None;
        for (key, item) in table.iter() {
            first_span.get_or_insert_with(|| key_span(table, key, item));
            match key {
                "metric" => {
                    if let Some(raw) = self.string(item, key) {
                        match Metric::from_name(raw) {
                            Some(found) if found.is_host() == host => {
                                metric = Some((found, span_of(item)))
                            }
                            Some(found) => self.problem(
                                span_of(item),
                                format!(
                                    "`{found}` is {} metric",
                                    if found.is_host() { "a host" } else { "an agent" }
                                ),
                                Some(if host {
                                    "host rules watch disk_percent, memory_available_percent or load1".into()
                                } else {
                                    "put it in a [[host.watch]] rule".into()
                                }),
                            ),
                            None => {
                                let names: Vec<&str> = crate::watch::METRICS
                                    .iter()
                                    .filter(|(metric, _)| metric.is_host() == host)
                                    .map(|(_, name)| *name)
                                    .collect();
                                let hint = match closest(raw, &names) {
                                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                                    None => format!("known metrics here: {}", names.join(", ")),
                                };
                                self.problem(span_of(item), format!("unknown metric {raw:?}"), Some(hint));
                            }
                        }
                    }
                }
                "above" | "below" => {
                    let number = item
                        .as_float()
                        .or_else(|| item.as_integer().map(|number| number as f64));
                    match number {
                        Some(value) if value >= 0.0 && value.is_finite() => {
                            if threshold.is_some() {
                                self.problem(
                                    key_span(table, key, item),
                                    "give one of `above` and `below`, not both",
                                    None,
                                );
                            }
                            threshold = Some(if key == "above" {
                                Threshold::Above(value)
                            } else {
                                Threshold::Below(value)
                            });
                        }
                        Some(_) => self.problem(
                            span_of(item),
                            format!("`{key}` must not be negative"),
                            None,
                        ),
                        None => self.problem(
                            span_of(item),
                            format!("`{key}` must be a number"),
                            Some(format!("e.g. {key} = 85")),
                        ),
                    }
                }
                "for" => {
                    if let Some(value) = self.duration(item, key) {
                        hold = value;
                    }
                }
                "action" => {
                    if let Some(raw) = self.string(item, key) {
                        match RuleAction::from_name(raw) {
                            Some(found) => {
                                action = found;
                                action_span = Some(span_of(item));
                            }
                            None => self.problem(
                                span_of(item),
                                format!("unknown action {raw:?}"),
                                Some(if host {
                                    "use \"alert\", or \"clean_logs\" with disk_percent".into()
                                } else {
                                    "use \"alert\", \"investigate\", \"restart\" or \"stop\"".into()
                                }),
                            ),
                        }
                    }
                }
                "pattern" => {
                    if let Some(raw) = self.string(item, key) {
                        match regex::Regex::new(raw) {
                            Ok(_) => pattern = Some((raw.to_owned(), span_of(item))),
                            Err(error) => {
                                let detail = error.to_string();
                                let last = detail.lines().last().unwrap_or("").trim().to_owned();
                                self.problem(
                                    span_of(item),
                                    format!("`pattern` is not a valid regular expression: {last}"),
                                    Some("e.g. pattern = \"(?i)\\\\berror\\\\b\"".into()),
                                );
                            }
                        }
                    }
                }
                "within" => {
                    if let Some(value) = self.duration(item, key) {
                        if value.is_zero() {
                            self.problem(span_of(item), "`within` must be above 0s", None);
                        } else {
                            within = Some((value, span_of(item)));
                        }
                    }
                }
                "predict" => predict = self.duration(item, key),
                "repeat_every" => {
                    if let Some(value) = self.duration(item, key) {
                        if value < Duration::from_secs(1) {
                            self.problem(span_of(item), "`repeat_every` must be at least 1s", None);
                        } else {
                            repeat_every = Some(value);
                        }
                    }
                }
                "path" if host => {
                    if let Some(raw) = self.string(item, key) {
                        if raw.starts_with('/') {
                            path = Some((PathBuf::from(raw), span_of(item)));
                        } else {
                            self.problem(
                                span_of(item),
                                "`path` must be absolute",
                                Some("e.g. path = \"/\"".into()),
                            );
                        }
                    }
                }
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, place, &WATCH_KEYS);
                }
            }
        }
        let rule_span = first_span.unwrap_or(fallback);
        let Some((metric, metric_span)) = metric else {
            if self.problems.len() == before {
                self.problem(
                    rule_span,
                    format!("a {place} rule has no `metric`"),
                    Some("e.g. metric = \"memory_percent\"".into()),
                );
            }
            return None;
        };
        let Some(threshold) = threshold else {
            self.problem(
                metric_span,
                format!("the `{metric}` rule has no threshold"),
                Some("add above = N (or below = N)".into()),
            );
            return None;
        };
        let log_rule = metric == Metric::LogMatches;
        match (&pattern, log_rule) {
            (None, true) => self.problem(
                metric_span.clone(),
                "a log_matches rule needs a `pattern`",
                Some("e.g. pattern = \"(?i)\\\\berror\\\\b\"".into()),
            ),
            (Some((_, span)), false) => self.problem(
                span.clone(),
                "`pattern` only goes with metric = \"log_matches\"",
                None,
            ),
            _ => {}
        }
        if let (Some((_, span)), false) = (&within, log_rule) {
            self.problem(
                span.clone(),
                "`within` only goes with metric = \"log_matches\"",
                None,
            );
        }
        if metric == Metric::DiskPercent && path.is_none() {
            self.problem(
                metric_span.clone(),
                "a disk_percent rule needs a `path`",
                Some("e.g. path = \"/\"".into()),
            );
        }
        if let (Some((_, span)), false) = (&path, metric == Metric::DiskPercent) {
            self.problem(
                span.clone(),
                "`path` only goes with metric = \"disk_percent\"",
                None,
            );
        }
        let allowed = match action {
            RuleAction::CleanLogs => metric == Metric::DiskPercent,
            RuleAction::Alert => true,
            RuleAction::Investigate | RuleAction::Restart | RuleAction::Stop => !host,
        };
        if !allowed {
            self.problem(
                action_span.unwrap_or(metric_span),
                format!(
                    "action \"{}\" does not go with a `{metric}` rule",
                    action.as_str()
                ),
                Some(if host {
                    "host rules alert, and disk_percent rules may clean_logs".into()
                } else {
                    "agent rules alert, investigate, restart or stop".into()
                }),
            );
        }
        if self.problems.len() != before {
            return None;
        }
        let mut rule = WatchRule::new(metric, threshold, hold, action);
        rule.pattern = pattern.map(|(raw, _)| raw);
        if let Some((value, _)) = within {
            rule.within = value;
        }
        rule.predict = predict;
        rule.repeat_every = repeat_every;
        rule.path = path.map(|(value, _)| value);
        Some(rule)
    }

    fn signal(&mut self, item: &Item, key: &str) -> Option<Signal> {
        let raw = self.string(item, key)?;
        let signal = Signal::from_name(raw);
        if signal.is_none() {
            self.problem(
                span_of(item),
                format!("unknown signal {raw:?}"),
                Some(format!(
                    "use one of {}",
                    Signal::known_names().collect::<Vec<_>>().join(", ")
                )),
            );
        }
        signal
    }

    fn health(
        &mut self,
        name: &str,
        table: &dyn TableLike,
        table_span: Range<usize>,
    ) -> Option<HealthSpec> {
        let place = format!("[agents.{name}.health]");
        let mut checks: Vec<(Check, Range<usize>)> = Vec::new();
        let mut check_keys = 0;
        let mut spec = HealthSpec::with_check(Check::Exec(Vec::new()));
        for (key, item) in table.iter() {
            if matches!(key, "http" | "tcp" | "exec") {
                check_keys += 1;
            }
            match key {
                "http" => {
                    if let Some(url) = self.string(item, key) {
                        match HttpTarget::parse(url) {
                            Ok(target) => checks.push((Check::Http(target), span_of(item))),
                            Err(error) => self.problem(
                                span_of(item),
                                format!("bad health URL {url:?}: {error}"),
                                Some("e.g. http = \"http://127.0.0.1:8001/health\"".into()),
                            ),
                        }
                    }
                }
                "tcp" => {
                    if let Some(address) = self.string(item, key) {
                        let port = address.rsplit_once(':').map(|(host, port)| {
                            (
                                !host.is_empty(),
                                port.parse::<u16>().is_ok_and(|port| port > 0),
                            )
                        });
                        if port == Some((true, true)) {
                            checks.push((
                                Check::Tcp {
                                    address: address.to_owned(),
                                },
                                span_of(item),
                            ));
                        } else {
                            self.problem(
                                span_of(item),
                                format!("bad health address {address:?}: expected HOST:PORT"),
                                Some("e.g. tcp = \"127.0.0.1:8001\"".into()),
                            );
                        }
                    }
                }
                "exec" => {
                    if let Some(argv) = self.command(item) {
                        checks.push((Check::Exec(argv), span_of(item)));
                    }
                }
                "interval" => {
                    if let Some(value) = self.probe_period(item, key) {
                        spec.interval = value;
                    }
                }
                "timeout" => {
                    if let Some(value) = self.probe_period(item, key) {
                        spec.timeout = value;
                    }
                }
                "start_period" => {
                    if let Some(value) = self.duration(item, key) {
                        spec.start_period = value;
                    }
                }
                "retries" => {
                    if let Some(value) = self.integer(item, key, 1, 1000) {
                        spec.retries = value as u32;
                    }
                }
                "on_failure" => {
                    if let Some(raw) = self.string(item, key) {
                        match raw {
                            "restart" => spec.on_failure = OnFailure::Restart,
                            "alert" => spec.on_failure = OnFailure::Alert,
                            "none" => spec.on_failure = OnFailure::None,
                            other => self.problem(
                                span_of(item),
                                format!("unknown on_failure {other:?}"),
                                Some("use \"restart\", \"alert\" or \"none\"".into()),
                            ),
                        }
                    }
                }
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, &place, &HEALTH_KEYS);
                }
            }
        }
        match checks.len() {
            1 => {
                let (check, _) = checks.remove(0);
                spec.check = check;
                Some(spec)
            }
            0 => {
                // A check that is there but invalid was reported already.
                if check_keys == 0 {
                    self.problem(
                        table_span,
                        format!("{place} names no check"),
                        Some("give exactly one of http, tcp or exec".into()),
                    );
                }
                None
            }
            _ => {
                self.problem(
                    checks[1].1.clone(),
                    format!("{place} names more than one check"),
                    Some("give exactly one of http, tcp or exec".into()),
                );
                None
            }
        }
    }

    fn command(&mut self, item: &Item) -> Option<Vec<String>> {
        let span = span_of(item);
        let argv = match item.as_value() {
            Some(Value::String(text)) => match shell_words::split(text.value()) {
                Ok(words) => words,
                Err(error) => {
                    self.problem(
                        span,
                        format!("`command` cannot be split into words: {error}"),
                        Some(
                            "check the quotes, or write the command as an array of strings".into(),
                        ),
                    );
                    return None;
                }
            },
            Some(Value::Array(array)) => {
                let mut words = Vec::new();
                for value in array.iter() {
                    match value.as_str() {
                        Some(word) => words.push(word.to_owned()),
                        None => {
                            self.problem(
                                value.span().unwrap_or(span.clone()),
                                "every element of `command` must be a string",
                                Some("quote numbers too: [\"sleep\", \"10\"]".into()),
                            );
                            return None;
                        }
                    }
                }
                words
            }
            _ => {
                self.problem(
                    span,
                    "`command` must be a string or an array of strings",
                    Some("e.g. command = [\"python3\", \"main.py\"]".into()),
                );
                return None;
            }
        };
        if argv.first().is_none_or(|program| program.is_empty()) {
            self.problem(
                span,
                "`command` is empty",
                Some("name the program to run, e.g. command = [\"python3\", \"main.py\"]".into()),
            );
            return None;
        }
        if argv.iter().any(|word| word.contains('\0')) {
            self.problem(span, "`command` contains a NUL byte", None);
            return None;
        }
        Some(argv)
    }

    fn env(&mut self, item: &Item) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Some(table) = item.as_table_like() else {
            self.problem(
                span_of(item),
                "`env` must be a table of strings",
                Some("e.g. env = { MODEL = \"small\" }".into()),
            );
            return env;
        };
        for (key, value) in table.iter() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                self.problem(
                    key_span(table, key, value),
                    format!("{key:?} is not a valid environment variable name"),
                    None,
                );
                continue;
            }
            match value.as_str() {
                Some(text) if !text.contains('\0') => {
                    env.insert(key.to_owned(), text.to_owned());
                }
                Some(_) => self.problem(
                    span_of(value),
                    "environment values may not contain NUL bytes",
                    None,
                ),
                None => self.problem(
                    span_of(value),
                    format!("env `{key}` must be a string"),
                    Some("quote it: numbers and booleans reach the agent as text anyway".into()),
                ),
            }
        }
        env
    }

    fn string<'a>(&mut self, item: &'a Item, key: &str) -> Option<&'a str> {
        let text = item.as_str();
        if text.is_none() {
            self.problem(span_of(item), format!("`{key}` must be a string"), None);
        }
        text
    }

    /// A duration that must be above zero (intervals, timeouts).
    fn positive_duration(&mut self, item: &Item, key: &str) -> Option<Duration> {
        let value = self.duration(item, key)?;
        if value.is_zero() {
            self.problem(span_of(item), format!("`{key}` must be above 0s"), None);
            return None;
        }
        Some(value)
    }

    /// A health check's `interval` or `timeout`: at least
    /// [`MIN_PROBE_PERIOD`].
    fn probe_period(&mut self, item: &Item, key: &str) -> Option<Duration> {
        let value = self.duration(item, key)?;
        if value < MIN_PROBE_PERIOD {
            self.problem(
                span_of(item),
                format!(
                    "`{key}` must be at least {}ms",
                    MIN_PROBE_PERIOD.as_millis()
                ),
                Some(if key == "interval" {
                    "probing more often only adds load, and a check that flaps does so \
                     as often; write e.g. interval = \"1s\""
                        .to_owned()
                } else {
                    "a shorter cut fails answers that are merely a little slow; \
                     write e.g. timeout = \"1s\""
                        .to_owned()
                }),
            );
            return None;
        }
        Some(value)
    }

    fn duration(&mut self, item: &Item, key: &str) -> Option<Duration> {
        let raw = self.string(item, key)?;
        match parse_duration(raw) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.problem(
                    span_of(item),
                    format!("bad duration for `{key}`: {error}"),
                    Some("write e.g. \"500ms\", \"10s\", \"5m\" or \"1h30m\"".into()),
                );
                None
            }
        }
    }

    fn size(&mut self, item: &Item, key: &str) -> Option<u64> {
        if let Some(number) = item.as_integer() {
            if number >= 0 {
                return Some(number as u64);
            }
        }
        let Some(raw) = item.as_str() else {
            self.problem(
                span_of(item),
                format!("`{key}` must be a size such as \"10MiB\""),
                None,
            );
            return None;
        };
        match parse_size(raw) {
            Ok(size) => Some(size),
            Err(error) => {
                self.problem(
                    span_of(item),
                    format!("bad size for `{key}`: {error}"),
                    Some("write e.g. \"512KiB\", \"10MiB\" or \"1GiB\"".into()),
                );
                None
            }
        }
    }

    fn integer(&mut self, item: &Item, key: &str, min: i64, max: i64) -> Option<i64> {
        match item.as_integer() {
            Some(number) if (min..=max).contains(&number) => Some(number),
            Some(number) => {
                self.problem(
                    span_of(item),
                    format!("`{key}` is {number}; it must be between {min} and {max}"),
                    None,
                );
                None
            }
            None => {
                self.problem(
                    span_of(item),
                    format!("`{key}` must be a whole number"),
                    None,
                );
                None
            }
        }
    }

    fn boolean(&mut self, item: &Item, key: &str) -> Option<bool> {
        let value = item.as_bool();
        if value.is_none() {
            self.problem(
                span_of(item),
                format!("`{key}` must be true or false"),
                None,
            );
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse("roster.toml", text, Path::new("/srv/app"))
    }

    #[test]
    fn minimal_agent_gets_defaults() {
        let config = parse_text("[agents.web]\ncommand = \"python3 -u main.py --name 'a b'\"\n")
            .expect("valid");
        let spec = &config.agents[&AgentName::new("web").expect("name")];
        assert_eq!(spec.command, ["python3", "-u", "main.py", "--name", "a b"]);
        assert_eq!(spec.cwd, Path::new("/srv/app"));
        assert_eq!(spec.restart, RestartMode::Always);
        assert_eq!(spec.restart_delay, Duration::ZERO);
        assert_eq!(spec.stop_signal, Signal::Term);
        assert_eq!(config.log, LogConfig::default());
    }

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
[log]
max_size = "10MiB"
keep = 14
compress = true

[agents.customer-support]
command = ["python3", "main.py"]
cwd = "agents/customer-support"
env = { MODEL = "small" }
restart = "always"
restart_delay = "0s"
backoff_max = "30s"
stop_signal = "SIGTERM"
stop_timeout = "10s"
"#;
        let config = parse_text(text).expect("valid");
        let spec = &config.agents[&AgentName::new("customer-support").expect("name")];
        assert_eq!(spec.cwd, Path::new("/srv/app/agents/customer-support"));
        assert_eq!(spec.env["MODEL"], "small");
        assert_eq!(
            spec.environment(),
            [
                ("MODEL".to_owned(), "small".to_owned()),
                ("PYTHONUNBUFFERED".to_owned(), "1".to_owned())
            ]
        );
    }

    #[test]
    fn reports_every_problem_with_line_and_column() {
        let text = "[agents.ok]\ncommand = \"true\"\ncomand = \"x\"\n\n[agents.\"bad name\"]\ncommand = []\nrestart_delay = \"soon\"\nstop_signal = \"SIGFOO\"\n\n[agents.quiet]\ncwd = \"x\"\n";
        let error = parse_text(text).expect_err("invalid");
        let lines: Vec<String> = error.to_string().lines().map(str::to_owned).collect();
        let rendered = error.to_string();
        assert!(
            rendered.contains("roster.toml:3:1: unknown key `comand` in agent `ok`"),
            "{rendered}"
        );
        assert!(
            rendered.contains("hint: did you mean `command`?"),
            "{rendered}"
        );
        assert!(
            rendered.contains("roster.toml:5:9: bad agent name \"bad name\""),
            "{rendered}"
        );
        assert!(
            rendered.contains("roster.toml:6:11: `command` is empty"),
            "{rendered}"
        );
        assert!(
            rendered.contains("roster.toml:7:17: bad duration for `restart_delay`"),
            "{rendered}"
        );
        assert!(
            rendered.contains("roster.toml:8:15: unknown signal \"SIGFOO\""),
            "{rendered}"
        );
        assert!(
            rendered.contains("roster.toml:10:9: agent `quiet` has no `command`"),
            "{rendered}"
        );
        assert!(lines.len() >= 6);
    }

    #[test]
    fn duplicate_agents_are_a_located_error() {
        let error = parse_text("[agents.a]\ncommand = \"true\"\n[agents.a]\ncommand = \"false\"\n")
            .expect_err("duplicate");
        let rendered = error.to_string();
        assert!(rendered.starts_with("roster.toml:3:"), "{rendered}");
        assert!(rendered.contains("duplicate"), "{rendered}");
    }

    #[test]
    fn unknown_top_level_and_log_keys() {
        let error = parse_text("[logs]\nkeep = 1\n[log]\nkep = 3\nmax_size = \"1KiB\"\n")
            .expect_err("invalid");
        let rendered = error.to_string();
        assert!(
            rendered.contains("roster.toml:1:2: unknown key `logs` in the top level"),
            "{rendered}"
        );
        assert!(
            rendered.contains("roster.toml:4:1: unknown key `kep` in [log]"),
            "{rendered}"
        );
        assert!(
            rendered.contains("roster.toml:5:12: `max_size` must be at least 4KiB"),
            "{rendered}"
        );
    }

    #[test]
    fn failed_retry_accepts_never() {
        let config = parse_text("[agents.a]\ncommand = \"true\"\nfailed_retry = \"never\"\n")
            .expect("valid");
        assert_eq!(
            config.agents[&AgentName::new("a").expect("name")].failed_retry,
            None
        );
    }

    #[test]
    fn metrics_tables_are_validated_and_located() {
        let none = parse_text("[agents.a]\ncommand = \"true\"\n").expect("valid");
        assert_eq!(none.metrics, None);
        let default = parse_text("[metrics]\n").expect("valid");
        assert_eq!(
            default
                .metrics
                .as_ref()
                .map(|metrics| metrics.listen.to_string()),
            Some("127.0.0.1:9464".to_owned())
        );
        let token = parse_text("[metrics]\nbearer_token_file = \"secrets/metrics.token\"\n")
            .expect("valid");
        assert_eq!(
            token
                .metrics
                .as_ref()
                .and_then(|metrics| metrics.bearer_token_file.as_ref())
                .map(|path| path.ends_with("secrets/metrics.token") && path.is_absolute()),
            Some(true),
            "relative to the config's directory"
        );
        let empty = parse_text("[metrics]\nbearer_token_file = \"\"\n")
            .expect_err("invalid")
            .to_string();
        assert!(empty.contains("`bearer_token_file` is empty"), "{empty}");
        let six = parse_text("[metrics]\nlisten = \"[::1]:9100\"\n").expect("valid");
        assert_eq!(
            six.metrics
                .as_ref()
                .map(|metrics| metrics.listen.to_string()),
            Some("[::1]:9100".to_owned())
        );

        let text = "[metrics]\nlisten = \"localhost:9464\"\nlisen = 1\n";
        let rendered = parse_text(text).expect_err("invalid").to_string();
        for expected in [
            "roster.toml:2:10: bad metrics address \"localhost:9464\": expected an IP address and a port",
            "hint: write e.g. \"127.0.0.1:9464\"",
            "roster.toml:3:1: unknown key `lisen` in [metrics]",
            "hint: did you mean `listen`?",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in:\n{rendered}"
            );
        }
        for (text, expected) in [
            (
                "metrics = 1\n",
                "roster.toml:1:11: `metrics` must be a table",
            ),
            (
                "[metrics]\nlisten = 9464\n",
                "roster.toml:2:10: `listen` must be a string",
            ),
            (
                "[metrics]\nlisten = \"127.0.0.1:0\"\n",
                "roster.toml:2:10: bad metrics address \"127.0.0.1:0\": port 0",
            ),
        ] {
            let rendered = parse_text(text).expect_err("invalid").to_string();
            assert!(rendered.contains(expected), "{rendered}");
        }
    }

    #[test]
    fn debug_output_hides_environment_values() {
        let config =
            parse_text("[agents.a]\ncommand = \"true\"\nenv = { API_KEY = \"sk-secret\" }\n")
                .expect("valid");
        let debug = format!("{:?}", config);
        assert!(debug.contains("API_KEY"));
        assert!(!debug.contains("sk-secret"), "{debug}");
    }

    #[test]
    fn health_tables_are_validated_and_located() {
        let good = parse_text(
            "[agents.web]\ncommand = \"true\"\ndrain_signal = \"SIGUSR1\"\n[agents.web.health]\nhttp = \"http://127.0.0.1:8001/health\"\nretries = 5\non_failure = \"alert\"\n",
        )
        .expect("valid");
        let web = &good.agents[&AgentName::new("web").expect("name")];
        let health = web.health.as_ref().expect("a health check");
        assert_eq!(health.retries, 5);
        assert_eq!(health.on_failure, OnFailure::Alert);
        assert_eq!(health.interval, Duration::from_secs(10), "default");
        assert_eq!(web.drain_signal, Some(Signal::Usr1));
        assert_eq!(web.drain_timeout, Duration::from_secs(30), "default");

        let text = "[agents.a]\ncommand = \"true\"\n[agents.a.health]\nhttp = \"https://x/\"\n\n[agents.b]\ncommand = \"true\"\n[agents.b.health]\nhttp = \"http://x/\"\ntcp = \"x:1\"\n\n[agents.c]\ncommand = \"true\"\n[agents.c.health]\ninterval = \"0s\"\nretires = 2\non_failure = \"reboot\"\ntcp = \"nohost\"\n";
        let rendered = parse_text(text).expect_err("invalid").to_string();
        for expected in [
            "roster.toml:4:8: bad health URL \"https://x/\": https is not supported",
            "roster.toml:10:7: [agents.b.health] names more than one check",
            "roster.toml:15:12: `interval` must be at least 100ms",
            "roster.toml:16:1: unknown key `retires` in [agents.c.health]",
            "hint: did you mean `retries`?",
            "roster.toml:17:14: unknown on_failure \"reboot\"",
            "roster.toml:18:7: bad health address \"nohost\": expected HOST:PORT",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in:\n{rendered}"
            );
        }
        assert!(!rendered.contains("names no check"), "{rendered}");
    }

    /// Issue #14: a 1 ms `interval` or `timeout` was accepted and flapped
    /// several times a second for ever; 100 ms is the floor.
    #[test]
    fn health_interval_and_timeout_have_a_floor_of_100ms() {
        let text = "[agents.a]\ncommand = \"true\"\n[agents.a.health]\nexec = [\"true\"]\ninterval = \"1ms\"\ntimeout = \"99ms\"\n";
        let rendered = parse_text(text).expect_err("below the floor").to_string();
        for expected in [
            "roster.toml:5:12: `interval` must be at least 100ms",
            "hint: probing more often only adds load",
            "roster.toml:6:11: `timeout` must be at least 100ms",
            "hint: a shorter cut fails answers that are merely a little slow",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in:\n{rendered}"
            );
        }
        let good = parse_text(
            "[agents.a]\ncommand = \"true\"\n[agents.a.health]\nexec = [\"true\"]\ninterval = \"100ms\"\ntimeout = \"100ms\"\n",
        )
        .expect("the floor itself is fine");
        let health = good.agents[&AgentName::new("a").expect("name")]
            .health
            .clone()
            .expect("health");
        assert_eq!(health.interval, MIN_PROBE_PERIOD);
        assert_eq!(health.timeout, MIN_PROBE_PERIOD);
    }

    #[test]
    fn defaults_users_and_limits() {
        let good = parse_text(
            "[defaults]\nuser = \"tenant-{name}\"\ncreate_user = true\nmemory_max = \"512MiB\"\ncpu_quota = \"50%\"\nenv = { A = \"1\", B = \"1\" }\n\n[agents.acme]\ncommand = \"true\"\nenv = { B = \"2\" }\nenv_file = \"acme.env\"\n\n[agents.ops]\ncommand = \"true\"\nuser = \"root\"\nmemory_max = \"2GiB\"\ntasks_max = 64\nnofile = 4096\n",
        )
        .expect("valid");
        let acme = &good.agents[&AgentName::new("acme").expect("name")];
        assert_eq!(acme.identity.user.as_deref(), Some("tenant-acme"));
        assert!(acme.identity.create_user);
        assert_eq!(acme.limits.memory_max, Some(512 * 1024 * 1024));
        assert_eq!(acme.limits.cpu_quota, Some(50));
        assert_eq!(
            acme.env.get("A").map(String::as_str),
            Some("1"),
            "from defaults"
        );
        assert_eq!(
            acme.env.get("B").map(String::as_str),
            Some("2"),
            "its own wins"
        );
        assert_eq!(
            acme.env_file.as_deref(),
            Some(Path::new("/srv/app/acme.env"))
        );
        let ops = &good.agents[&AgentName::new("ops").expect("name")];
        assert!(ops.identity.root_intended());
        assert_eq!(ops.limits.memory_max, Some(2 << 30), "its own wins");
        assert_eq!(
            (ops.limits.tasks_max, ops.limits.nofile),
            (Some(64), Some(4096))
        );

        let text = "[defaults]\nuser = \"tenant/{name}\"\ncommand = \"x\"\n\n[agents.a]\ncommand = \"true\"\n\n[agents.b]\ncommand = \"true\"\nmemory_max = \"1KiB\"\ncpu_quota = \"0%\"\n";
        let rendered = parse_text(text).expect_err("invalid").to_string();
        assert_eq!(
            rendered.matches("bad user").count(),
            2,
            "one per agent (the names differ): {rendered}"
        );
        for expected in [
            "roster.toml:3:1: unknown key `command` in [defaults]",
            "`memory_max` below 1MiB",
            "bad cpu_quota: it must be above 0%",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in:\n{rendered}"
            );
        }
    }

    #[test]
    fn watch_rules_parse_with_defaults_and_bad_ones_are_located() {
        let good = parse_text(
            "[agents.web]\ncommand = \"true\"\n[[agents.web.watch]]\nmetric = \"memory_percent\"\nabove = 85\nfor = \"1m\"\naction = \"alert\"\n[[agents.web.watch]]\nmetric = \"log_matches\"\npattern = \"(?i)\\\\berror\\\\b\"\nabove = 5\nwithin = \"5m\"\n\n[agents.plain]\ncommand = \"true\"\n\n[agents.none]\ncommand = \"true\"\nwatch = []\n\n[[host.watch]]\nmetric = \"disk_percent\"\npath = \"/\"\nabove = 80\naction = \"clean_logs\"\n",
        )
        .expect("valid");
        let web = &good.agents[&AgentName::new("web").expect("name")];
        let rules = web.rules();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].hold, Duration::from_secs(60));
        assert_eq!(rules[1].within, Duration::from_secs(300));
        assert_eq!(rules[1].pattern.as_deref(), Some("(?i)\\berror\\b"));
        let plain = &good.agents[&AgentName::new("plain").expect("name")];
        assert_eq!(plain.rules().len(), 4, "the graded defaults");
        let none = &good.agents[&AgentName::new("none").expect("name")];
        assert!(none.rules().is_empty(), "watch = [] means no rules");
        assert_eq!(good.host_watch.len(), 1);

        let text = "[agents.a]\ncommand = \"true\"\n[[agents.a.watch]]\nmetric = \"memory_precent\"\nabove = 1\n[[agents.a.watch]]\nmetric = \"cpu_percent\"\nabove = -5\n[[agents.a.watch]]\nmetric = \"log_matches\"\npattern = \"(unclosed\"\nabove = 1\n[[agents.a.watch]]\nmetric = \"disk_percent\"\nabove = 1\n[[agents.a.watch]]\nmetric = \"threads\"\nabove = 1\naction = \"reboot\"\n[[host.watch]]\nmetric = \"load1\"\nabove = 4\naction = \"restart\"\n";
        let rendered = parse_text(text).expect_err("invalid").to_string();
        for expected in [
            "roster.toml:4:10: unknown metric \"memory_precent\"",
            "did you mean `memory_percent`?",
            "roster.toml:8:9: `above` must not be negative",
            "roster.toml:11:11: `pattern` is not a valid regular expression",
            "roster.toml:14:10: `disk_percent` is a host metric",
            "roster.toml:19:10: unknown action \"reboot\"",
            "roster.toml:23:10: action \"restart\" does not go with a `load1` rule",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in:\n{rendered}"
            );
        }
    }

    #[test]
    fn notify_tables_parse_with_defaults_and_resolved_paths() {
        let text = r#"
[[notify]]
webhook = "http://127.0.0.1:5001/alerts"

[[notify]]
alertmanager = "http://127.0.0.1:9093"
timeout = "2s"

[[notify]]
exec = ["./page-me", "--loud"]

[[notify]]
file = "alerts.jsonl"
"#;
        let config = parse_text(text).expect("valid");
        assert_eq!(config.notify.len(), 4);
        let webhook = &config.notify[0];
        assert_eq!(webhook.timeout, DEFAULT_NOTIFY_TIMEOUT);
        match &webhook.target {
            NotifyTarget::Webhook(target) => {
                assert_eq!(target.address, "127.0.0.1:5001");
                assert_eq!(target.path, "/alerts");
            }
            other => panic!("not a webhook: {other:?}"),
        }
        assert_eq!(config.notify[1].timeout, Duration::from_secs(2));
        assert!(matches!(
            &config.notify[1].target,
            NotifyTarget::Alertmanager(target) if target.address == "127.0.0.1:9093"
        ));
        assert_eq!(
            config.notify[2].target,
            NotifyTarget::Exec {
                argv: vec!["./page-me".into(), "--loud".into()],
                cwd: PathBuf::from("/srv/app"),
            }
        );
        assert_eq!(
            config.notify[3].target,
            NotifyTarget::File(PathBuf::from("/srv/app/alerts.jsonl"))
        );
        assert!(parse_text("").expect("valid").notify.is_empty());
    }

    #[test]
    fn notify_problems_are_located() {
        let text = "[[notify]]\nwebhook = \"https://hooks.example/x\"\n\n[[notify]]\ntimeout = \"5s\"\n\n[[notify]]\nfile = \"a.jsonl\"\nexec = [\"notify-send\"]\n\n[[notify]]\nexec = []\ntimout = \"1s\"\n\n[[notify]]\nalertmanager = \"127.0.0.1:9093\"\ntimeout = \"soon\"\n\n[[notify]]\nfile = \"b.jsonl\"\ntimeout = \"0s\"\n";
        let rendered = parse_text(text).expect_err("invalid").to_string();
        for expected in [
            "roster.toml:2:11: bad webhook URL \"https://hooks.example/x\": https is not supported for notifiers yet",
            "roster.toml:4:1: [[notify]] #2 names no target",
            "hint: give exactly one of webhook",
            "roster.toml:9:8: [[notify]] #3 names more than one target",
            "roster.toml:12:8: `exec` is empty",
            "roster.toml:13:1: unknown key `timout` in [[notify]] #4",
            "hint: did you mean `timeout`?",
            "roster.toml:16:16: bad alertmanager URL \"127.0.0.1:9093\": the URL must start with http://",
            "roster.toml:17:11: bad duration for `timeout`",
            "roster.toml:21:11: `timeout` must be above 0s",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in:\n{rendered}"
            );
        }
        assert!(!rendered.contains("#4 names no target"), "{rendered}");

        let not_tables = parse_text("notify = \"http://x/\"\n")
            .expect_err("invalid")
            .to_string();
        assert!(
            not_tables.contains("roster.toml:1:10: `notify` must be an array of tables"),
            "{not_tables}"
        );
        let empty = parse_text("[[notify]]\nexec = \"  \"\n")
            .expect_err("invalid")
            .to_string();
        assert!(
            empty.contains("roster.toml:2:8: `exec` is empty"),
            "{empty}"
        );
        let inline = parse_text("notify = [{ file = \"x.jsonl\" }, 3]\n")
            .expect_err("invalid")
            .to_string();
        assert!(
            inline.contains("roster.toml:1:33: every `notify` entry must be a table"),
            "{inline}"
        );
    }
}
