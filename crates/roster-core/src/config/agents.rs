//! `[agents.NAME]`: the one table of agent keys (which of them `[defaults]`
//! may set too), the readers of the keys that need more than a value, and
//! the reading of an agent with its `[defaults]`.

use std::ops::Range;
use std::path::PathBuf;

use toml_edit::TableLike;

use super::diagnostics::{span_of, Checker};
use super::instances::{numbered, Shared, MAX_INSTANCES};
use super::keys::{Entry, Floor, Key, Read};
use super::model::{AgentSpec, RestartMode};
use crate::hardening::{expand, parse_cpu_quota, valid_account};
use crate::health::HttpTarget;

/// An agent while its keys are read.
pub(crate) struct AgentDraft {
    name: String,
    base_dir: PathBuf,
    spec: AgentSpec,
    has_command: bool,
    /// `cwd` as written, for an agent shipped as releases (relative to its
    /// release).
    cwd_given: Option<(String, Range<usize>)>,
    /// Where `watch_paths` is written, when it names anything.
    watch_paths_span: Option<Range<usize>>,
}

/// Every agent key, in the order the "known keys here" hint lists them;
/// `shared` ones may be set in `[defaults]` too.
#[rustfmt::skip]
pub(crate) const AGENT_KEYS: &[Key<AgentDraft>] = &[
    Key::new("command", Read::Custom(command)),
    Key::new("cwd", Read::Custom(cwd)),
    Key::shared("env", Read::Custom(env)),
    Key::shared("restart", Read::Custom(restart)),
    Key::shared("restart_delay", Read::Duration(|a, v| a.spec.restart.delay = v)),
    Key::shared("backoff_max", Read::Duration(|a, v| a.spec.restart.backoff_max = v)),
    Key::shared("stop_signal", Read::Signal(|a, v| a.spec.stop.signal = v)),
    Key::shared("stop_timeout", Read::Duration(|a, v| a.spec.stop.timeout = v)),
    Key::shared("ready_after", Read::Duration(|a, v| a.spec.ready_after = v)),
    Key::shared("stable_after", Read::Duration(|a, v| a.spec.restart.stable_after = v)),
    Key::shared("crash_loop", Read::Integer(0, 1000, |a, v| a.spec.restart.crash_loop = v as u32)),
    Key::shared("crash_window", Read::Duration(|a, v| a.spec.restart.crash_window = v)),
    Key::shared("failed_retry", Read::Custom(failed_retry)),
    Key::shared("health", Read::Custom(health)),
    Key::shared("drain_signal", Read::Signal(|a, v| a.spec.stop.drain_signal = Some(v))),
    Key::shared("drain_timeout", Read::Duration(|a, v| a.spec.stop.drain_timeout = v)),
    Key::shared("watch", Read::Custom(watch)),
    Key::new("metrics", Read::Custom(metrics)),
    Key::new("deploy", Read::Custom(deploy)),
    Key::new("listen", Read::Custom(listen)),
    Key::shared("user", Read::Custom(account)),
    Key::shared("group", Read::Custom(account)),
    Key::shared("allow_root", Read::Boolean(|a, v| a.spec.identity.allow_root = v)),
    Key::shared("create_user", Read::Boolean(|a, v| a.spec.identity.create_user = v)),
    Key::shared("memory_max", Read::Size(MEMORY_FLOOR, |a, v| a.spec.limits.memory_max = Some(v))),
    Key::shared("cpu_quota", Read::Custom(cpu_quota)),
    Key::shared("tasks_max", Read::Integer(1, 4_194_304, |a, v| a.spec.limits.tasks_max = Some(v as u64))),
    Key::shared("nofile", Read::Integer(16, 1 << 30, |a, v| a.spec.limits.nofile = Some(v as u64))),
    Key::shared("env_file", Read::Custom(env_file)),
    Key::new("tenant", Read::Custom(tenant)),
    Key::shared("stderr", Read::Stderr(|a, v| a.spec.stderr = v)),
    Key::new("watch_paths", Read::Custom(watch_paths)),
    // Read before the agent, by `Checker::agents`, which makes the copies.
    Key::new("instances", Read::Integer(1, MAX_INSTANCES as i64, |_, _| {})),
];

const MEMORY_FLOOR: Floor = Floor {
    min: 1024 * 1024,
    message: "`memory_max` below 1MiB would kill the agent at once",
    hint: || "write e.g. \"512MiB\"".into(),
};

impl Checker {
    /// One agent: the `[defaults]` items it does not set itself first (for
    /// `env`, the defaults' variables under its own), then its own keys;
    /// `stderr` is `[log]`'s, which either may replace. For copy `instance`
    /// of an agent with `instances`, `{instance}` is replaced by its number
    /// in the [`INSTANCE_KEYS`] first.
    pub(crate) fn agent(
        &mut self,
        name: &str,
        table: &dyn TableLike,
        name_span: Range<usize>,
        shared: &Shared<'_>,
        instance: Option<u32>,
    ) -> Option<AgentSpec> {
        let Shared {
            defaults,
            stderr,
            base_dir,
        } = *shared;
        let problems_before = self.problems.len();
        let mut agent = AgentDraft {
            name: name.to_owned(),
            base_dir: base_dir.to_path_buf(),
            spec: AgentSpec {
                stderr,
                ..AgentSpec::defaults_in(base_dir)
            },
            has_command: false,
            cwd_given: None,
            watch_paths_span: None,
        };
        let place = format!("agent `{name}`");
        // A `[defaults]` item is located at its value, not at a key of
        // this agent's table.
        let defaults_table = toml_edit::Table::new();
        for (key, item) in defaults {
            if key == "env" || !table.contains_key(key) {
                let numbered_item = numbered(key, item, instance);
                let before = self.problems.len();
                self.read_key(
                    &defaults_table,
                    key,
                    &numbered_item,
                    AGENT_KEYS,
                    &place,
                    &mut agent,
                );
                self.relocate(before, span_of(item));
            }
        }
        for (key, item) in table.iter() {
            let numbered_item = numbered(key, item, instance);
            let before = self.problems.len();
            self.read_key(table, key, &numbered_item, AGENT_KEYS, &place, &mut agent);
            self.relocate(before, span_of(item));
        }
        let mut spec = agent.spec;
        if let (Some(_), Some(span)) = (&spec.deploy, agent.watch_paths_span) {
            self.problem(
                span,
                format!("agent `{name}` is shipped as releases: `watch_paths` cannot restart it"),
                Some(
                    "`watch_paths` is for development, on an agent that runs from its own directory; \
                     ship changes with `roster deploy`, or remove [deploy] while developing"
                        .into(),
                ),
            );
        }
        if spec.deploy.is_some() {
            self.release_cwd(name, &mut spec, agent.cwd_given, base_dir);
        }
        if !agent.has_command {
            self.problem(
                name_span,
                format!("agent `{name}` has no `command`"),
                Some("add e.g. command = [\"python3\", \"main.py\"]".into()),
            );
        }
        (self.problems.len() == problems_before).then_some(spec)
    }
}

fn command(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    agent.has_command = true;
    if let Some(command) = checker.command(entry.item) {
        agent.spec.command = command;
    }
}

fn cwd(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let item = entry.item;
    if let Some(cwd) = checker.string(item, "cwd") {
        if cwd.is_empty() {
            checker.problem(
                span_of(item),
                "`cwd` is empty",
                Some("leave it out to use the config file's directory".into()),
            );
        } else {
            agent.spec.cwd = agent.base_dir.join(cwd);
            agent.cwd_given = Some((cwd.to_owned(), span_of(item)));
        }
    }
}

/// `[defaults]` env first, the agent's own on top.
fn env(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    agent.spec.env.extend(checker.env(entry.item));
}

fn restart(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let item = entry.item;
    if let Some(mode) = checker.string(item, "restart") {
        match mode {
            "always" => agent.spec.restart.mode = RestartMode::Always,
            "on-failure" => agent.spec.restart.mode = RestartMode::OnFailure,
            "never" => agent.spec.restart.mode = RestartMode::Never,
            other => checker.problem(
                span_of(item),
                format!("unknown restart policy {other:?}"),
                Some("use \"always\", \"on-failure\" or \"never\"".into()),
            ),
        }
    }
}

/// A duration, or "never" (`None`: a failed agent waits for an operator).
fn failed_retry(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    if entry.item.as_str() == Some("never") {
        agent.spec.restart.failed_retry = None;
    } else if let Some(value) = checker.duration(entry.item, entry.key) {
        agent.spec.restart.failed_retry = Some(value);
    }
}

fn health(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let name = &agent.name;
    match entry.item.as_table_like() {
        Some(health) => agent.spec.health = checker.health(name, health, entry.key_span.clone()),
        None => checker.problem(
            span_of(entry.item),
            "`health` must be a table",
            Some(format!(
                "write it as [agents.{name}.health] with one of http, tcp or exec"
            )),
        ),
    }
}

fn watch(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let place = format!("[[agents.{}.watch]]", agent.name);
    agent.spec.watch = Some(checker.watch_rules(entry.item, &place, false));
}

/// Where the agent serves its own Prometheus metrics.
fn metrics(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let item = entry.item;
    if let Some(url) = checker.string(item, entry.key) {
        match HttpTarget::parse(url) {
            Ok(target) => agent.spec.metrics = Some(target),
            Err(error) => checker.problem(
                span_of(item),
                format!("bad metrics URL {url:?}: {error}"),
                Some("e.g. metrics = \"http://127.0.0.1:8001/metrics\"".into()),
            ),
        }
    }
}

fn deploy(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let name = &agent.name;
    match entry.item.as_table_like() {
        Some(deploy) => agent.spec.deploy = checker.deploy(name, deploy),
        None => checker.problem(
            span_of(entry.item),
            "`deploy` must be a table",
            Some(format!("write it as [agents.{name}.deploy]")),
        ),
    }
}

fn listen(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let name = &agent.name;
    match entry.item.as_table_like() {
        Some(listen) => agent.spec.listen = checker.listen(name, listen),
        None => checker.problem(
            span_of(entry.item),
            "`listen` must be a table",
            Some(format!(
                "write it as [agents.{name}.listen] with e.g. http = \"127.0.0.1:8080\""
            )),
        ),
    }
}

/// `user` or `group`, with `{name}` replaced by the agent's name.
fn account(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let (key, item, name) = (entry.key, entry.item, &agent.name);
    let Some(raw) = checker.string(item, key) else {
        return;
    };
    let value = expand(raw, name);
    if valid_account(&value) {
        if key == "user" {
            agent.spec.identity.user = Some(value);
        } else {
            agent.spec.identity.group = Some(value);
        }
    } else {
        checker.problem(
            span_of(item),
            format!("bad {key} {value:?} for agent `{name}`"),
            Some(format!(
                "a {key} is a number or a name of letters, digits, '.', '_' and '-' (at most 32), not starting with '-'; {{name}} is replaced by the agent's name"
            )),
        );
    }
}

/// A percentage of one core, as a number or a string ("50%").
fn cpu_quota(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let item = entry.item;
    let raw = match item.as_integer() {
        Some(number) => Some(number.to_string()),
        None => checker.string(item, entry.key).map(str::to_owned),
    };
    let Some(raw) = raw else {
        return;
    };
    match parse_cpu_quota(&raw) {
        Ok(percent) => agent.spec.limits.cpu_quota = Some(percent),
        Err(error) => checker.problem(
            span_of(item),
            format!("bad cpu_quota: {error}"),
            Some("write a percentage of one core, e.g. \"50%\" or \"200%\"".into()),
        ),
    }
}

/// `tenant = "c01"`: a name of letters, digits, `_`, `-` and `.`.
fn tenant(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let Some(name) = checker.string(entry.item, entry.key) else {
        return;
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        checker.problem(
            span_of(entry.item),
            format!("bad tenant {name:?}"),
            Some("1 to 64 letters, digits, '_', '-' and '.', e.g. tenant = \"c01\"".into()),
        );
    } else {
        agent.spec.tenant = Some(name.to_owned());
    }
}

/// `watch_paths = ["src", "*.py"]`: a list of non-empty strings, paths
/// relative to the agent's `cwd` or globs of file names.
fn watch_paths(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let item = entry.item;
    let hint =
        || Some("e.g. watch_paths = [\"src\", \"*.py\"] (relative to the agent's cwd)".into());
    let Some(array) = item.as_array() else {
        checker.problem(
            span_of(item),
            "`watch_paths` must be a list of paths",
            hint(),
        );
        return;
    };
    let mut paths = Vec::new();
    for value in array.iter() {
        let span = value.span().unwrap_or_else(|| span_of(item));
        match value.as_str() {
            Some("") => checker.problem(span, "an empty path in `watch_paths`", hint()),
            Some(path) if path.contains('\0') => {
                checker.problem(span, "a path in `watch_paths` contains a NUL byte", hint())
            }
            Some(path) => paths.push(path.to_owned()),
            None => checker.problem(
                span,
                "every element of `watch_paths` must be a string",
                hint(),
            ),
        }
    }
    if !paths.is_empty() {
        agent.watch_paths_span = Some(span_of(item));
    }
    agent.spec.watch_paths = paths;
}

fn env_file(checker: &mut Checker, entry: &Entry<'_>, agent: &mut AgentDraft) {
    let item = entry.item;
    if let Some(path) = checker.string(item, entry.key) {
        if path.is_empty() {
            checker.problem(span_of(item), "`env_file` is empty", None);
        } else {
            agent.spec.env_file = Some(agent.base_dir.join(path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AGENT_KEYS;

    /// A key declared twice would be read by its first line only.
    #[test]
    fn every_agent_key_is_declared_once() {
        let mut names: Vec<&str> = AGENT_KEYS.iter().map(|key| key.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{names:?}");
    }
}
