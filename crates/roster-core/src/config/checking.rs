//! Reading a config file's TOML tree into the model, checking as it goes:
//! the top level, `[defaults]`, `[log]`, `[metrics]`, `[web]`, `[host]` and the
//! agents table. Every problem is collected (not just the first), each at
//! its own span; `parse` turns them into a located `ConfigError`.
//!
//! The tree is walked by hand rather than through serde so that an unknown
//! key, a bad duration and a bad name in the same file are all reported in
//! one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike};

use super::agents::AGENT_KEYS;
use super::diagnostics::{key_span, span_of, Checker, ConfigError, Diagnostic};
use super::instances::{Found, Place, Shared};
use super::keys::{Entry, Floor, Key, Read};
use super::model::{AgentSpec, Config, LogConfig, StderrMode};
use crate::metrics::{parse_listen, MetricsSpec, DEFAULT_LISTEN};
use crate::name::{AgentName, NameError};
use crate::watch::WatchRule;

const TOP_KEYS: [&str; 7] = [
    "log", "agents", "host", "notify", "metrics", "web", "defaults",
];
const HOST_KEYS: [&str; 1] = ["watch"];

/// `[log]`.
#[rustfmt::skip]
const LOG_KEYS: &[Key<LogConfig>] = &[
    Key::new("max_size", Read::Size(LOG_FLOOR, |log, v| log.max_size = v)),
    Key::new("keep", Read::Integer(0, 10_000, |log, v| log.keep = v as u32)),
    Key::new("compress", Read::Boolean(|log, v| log.compress = v)),
    Key::new("stderr", Read::Stderr(|log, v| log.stderr = v)),
];

const LOG_FLOOR: Floor = Floor {
    min: 4096,
    message: "`max_size` must be at least 4KiB",
    hint: || "a log smaller than a page would rotate on every line".into(),
};

/// `[metrics]` while its keys are read.
struct MetricsDraft {
    base_dir: PathBuf,
    listen: Option<std::net::SocketAddr>,
    bearer_token_file: Option<PathBuf>,
}

const METRICS_KEYS: &[Key<MetricsDraft>] = &[
    Key::new("listen", Read::Custom(metrics_listen)),
    Key::new("bearer_token_file", Read::Custom(bearer_token_file)),
];

/// Parses and validates a config file's text.
///
/// `file` is how errors name the file; `base_dir` is what relative paths
/// (`cwd`) are resolved against, normally the file's directory.
pub fn parse(file: &str, text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut checker = Checker::default();
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
        _ => Err(ConfigError::new(file, text, checker.problems)),
    }
}

impl Checker {
    fn config(&mut self, root: &Item, base_dir: &Path) -> Option<Config> {
        let table = root.as_table_like()?;
        let mut log = LogConfig::default();
        let mut agents = BTreeMap::new();
        let mut host_watch = Vec::new();
        let mut notify = Vec::new();
        let mut metrics = None;
        let mut web = None;
        // Read first: every agent gets them, wherever the table sits.
        let defaults = match table.get("defaults") {
            Some(item) => self.defaults(item),
            None => Vec::new(),
        };
        // Read before the agents too: its `stderr` is every agent's
        // unless the agent or `[defaults]` says.
        if let Some(item) = table.get("log") {
            match item.as_table_like() {
                Some(log_table) => log = self.log(log_table),
                None => self.problem(span_of(item), "`log` must be a table", None),
            }
        }
        for (key, item) in table.iter() {
            match key {
                "defaults" | "log" => {}
                "metrics" => metrics = self.metrics(item, base_dir),
                "web" => web = self.web(item, base_dir),
                "host" => host_watch = self.host(item),
                "agents" => agents = self.agents(item, &defaults, log.stderr, base_dir),
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
            web,
        })
    }

    /// `[defaults]`: its items as written, read with each agent that does
    /// not set the key itself; only the agent keys marked `shared` belong
    /// here.
    fn defaults(&mut self, item: &Item) -> Vec<(String, Item)> {
        let mut items = Vec::new();
        let Some(defaults) = item.as_table_like() else {
            self.problem(
                span_of(item),
                "`defaults` must be a table",
                Some("write it as [defaults] with keys every agent gets".into()),
            );
            return items;
        };
        let shared: Vec<&str> = AGENT_KEYS
            .iter()
            .filter(|key| key.in_defaults)
            .map(|key| key.name)
            .collect();
        for (key, value) in defaults.iter() {
            if shared.contains(&key) {
                items.push((key.to_owned(), value.clone()));
            } else {
                let span = key_span(defaults, key, value);
                self.unknown_key(span, key, "[defaults]", &shared);
            }
        }
        items
    }

    /// `[host]`: its `[[host.watch]]` rules.
    fn host(&mut self, item: &Item) -> Vec<WatchRule> {
        let mut rules = Vec::new();
        let Some(host) = item.as_table_like() else {
            self.problem(
                span_of(item),
                "`host` must be a table",
                Some("write host rules as [[host.watch]]".into()),
            );
            return rules;
        };
        for (key, value) in host.iter() {
            if key == "watch" {
                rules = self.watch_rules(value, "[[host.watch]]", true);
            } else {
                let span = key_span(host, key, value);
                self.unknown_key(span, key, "[host]", &HOST_KEYS);
            }
        }
        rules
    }

    /// `[agents]`: every agent by name, and no address listened on by two.
    fn agents(
        &mut self,
        item: &Item,
        defaults: &[(String, Item)],
        stderr: StderrMode,
        base_dir: &Path,
    ) -> BTreeMap<AgentName, AgentSpec> {
        let Some(table) = item.as_table_like() else {
            self.problem(
                span_of(item),
                "`agents` must be a table of agents",
                Some("write each agent as [agents.NAME]".into()),
            );
            return BTreeMap::new();
        };
        let mut found = Found::default();
        for (name, agent_item) in table.iter() {
            let name_span = key_span(table, name, agent_item);
            let agent_name = match AgentName::new(name) {
                Ok(agent_name) => Some(agent_name),
                Err(error) => {
                    let hint = match &error {
                        NameError::ErrSuffix(_) => format!(
                            "rename it, e.g. `{}-err`: names ending in \".err\" are kept for stderr logs",
                            name.trim_end_matches(".err")
                        ),
                        _ => "names are 1 to 64 of letters, digits, '.', '_', '-', starting with a letter or digit".into(),
                    };
                    self.problem(
                        name_span.clone(),
                        format!("bad agent name {name:?}: {error}"),
                        Some(hint),
                    );
                    None
                }
            };
            let Some(agent_table) = agent_item.as_table_like() else {
                self.problem(
                    span_of(agent_item),
                    format!("agent `{name}` must be a table"),
                    Some(format!("write it as [agents.{name}] with a `command` key")),
                );
                continue;
            };
            let shared = Shared {
                defaults,
                stderr,
                base_dir,
            };
            let place = Place {
                name,
                agent_name: agent_name.as_ref(),
                table: agent_table,
                name_span,
            };
            self.agent_and_copies(&place, &shared, &mut found);
        }
        found.agents
    }

    /// The `[metrics]` table: `listen`, an IP address and port
    /// (default [`DEFAULT_LISTEN`]), and `bearer_token_file`.
    fn metrics(&mut self, item: &Item, base_dir: &Path) -> Option<MetricsSpec> {
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
        let mut metrics = MetricsDraft {
            base_dir: base_dir.to_path_buf(),
            listen: parse_listen(DEFAULT_LISTEN).ok(),
            bearer_token_file: None,
        };
        self.read_keys(table, METRICS_KEYS, "[metrics]", &mut metrics);
        if self.problems.len() > problems_before {
            return None;
        }
        metrics.listen.map(|listen| MetricsSpec {
            listen,
            bearer_token_file: metrics.bearer_token_file,
        })
    }

    fn log(&mut self, table: &dyn TableLike) -> LogConfig {
        let mut log = LogConfig::default();
        self.read_keys(table, LOG_KEYS, "[log]", &mut log);
        log
    }
}

fn metrics_listen(checker: &mut Checker, entry: &Entry<'_>, metrics: &mut MetricsDraft) {
    let Some(raw) = checker.string(entry.item, entry.key) else {
        return;
    };
    match parse_listen(raw) {
        Ok(address) => metrics.listen = Some(address),
        Err(error) => checker.problem(
            span_of(entry.item),
            format!("bad metrics address {raw:?}: {error}"),
            Some(format!(
                "write e.g. \"{DEFAULT_LISTEN}\", \"0.0.0.0:9464\" or \"[::1]:9464\""
            )),
        ),
    }
}

fn bearer_token_file(checker: &mut Checker, entry: &Entry<'_>, metrics: &mut MetricsDraft) {
    if let Some(path) = checker.string(entry.item, entry.key) {
        if path.is_empty() {
            checker.problem(
                span_of(entry.item),
                "`bearer_token_file` is empty",
                Some("name a file holding the token, e.g. \"/etc/roster/metrics.token\"".into()),
            );
        } else {
            metrics.bearer_token_file = Some(metrics.base_dir.join(path));
        }
    }
}
