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

use crate::health::{Check, HealthSpec, HttpTarget, OnFailure};
use crate::name::AgentName;
use crate::signal::Signal;
use crate::units::{parse_duration, parse_size};

/// A whole, validated config.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How agent logs are rotated.
    pub log: LogConfig,
    /// Where Prometheus metrics are served (`[metrics]`), if anywhere.
    pub metrics: Option<crate::metrics::MetricsSpec>,
    /// The agents, by name.
    pub agents: BTreeMap<AgentName, AgentSpec>,
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
const METRICS_KEYS: [&str; 1] = ["listen"];
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
const AGENT_KEYS: [&str; 16] = [
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
];
const TOP_KEYS: [&str; 3] = ["log", "agents", "metrics"];

/// Parses and validates a config file's text.
///
/// `file` is how errors name the file; `base_dir` is what relative paths
/// (`cwd`) are resolved against, normally the file's directory.
pub fn parse(file: &str, text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut checker = Checker {
        problems: Vec::new(),
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
        let mut metrics = None;
        for (key, item) in table.iter() {
            match key {
                "metrics" => metrics = self.metrics(item),
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
                            let spec = self.agent(name, agent_table, name_span, base_dir);
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
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, "the top level", &TOP_KEYS);
                }
            }
        }
        Some(Config {
            log,
            metrics,
            agents,
        })
    }

    /// The `[metrics]` table: `listen`, an IP address and port
    /// (default [`crate::metrics::DEFAULT_LISTEN`]).
    fn metrics(&mut self, item: &Item) -> Option<crate::metrics::MetricsSpec> {
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
        for (key, value) in table.iter() {
            match key {
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
        listen.map(|listen| MetricsSpec { listen })
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
        };
        let mut has_command = false;
        let place = format!("agent `{name}`");
        for (key, item) in table.iter() {
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
                        }
                    }
                }
                "env" => spec.env = self.env(item),
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
                "user" => self.problem(
                    key_span(table, key, item),
                    "`user` is not supported yet: agents run as the daemon's user",
                    Some(
                        "remove the key, and start roster as the user the agents should run as"
                            .into(),
                    ),
                ),
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, &place, &AGENT_KEYS);
                }
            }
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
                "interval" | "timeout" | "start_period" => {
                    if let Some(value) = self.duration(item, key) {
                        if key != "start_period" && value.is_zero() {
                            self.problem(span_of(item), format!("`{key}` must be above 0s"), None);
                            continue;
                        }
                        match key {
                            "interval" => spec.interval = value,
                            "timeout" => spec.timeout = value,
                            _ => spec.start_period = value,
                        }
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
            default.metrics.map(|metrics| metrics.listen.to_string()),
            Some("127.0.0.1:9464".to_owned())
        );
        let six = parse_text("[metrics]\nlisten = \"[::1]:9100\"\n").expect("valid");
        assert_eq!(
            six.metrics.map(|metrics| metrics.listen.to_string()),
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
            "roster.toml:15:12: `interval` must be above 0s",
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
}
