//! The text `roster init` writes, without I/O: `roster.toml` for a set of
//! answers, and the starter agent `agents/KIND/agent.py`.

use std::fmt::Write as _;

use super::plan::{self, Answers, Instance, Pattern, Recommendation};

/// How the files are laid out on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Whether `roster init` runs as root: only then does the config name
    /// users for the agents (only a root daemon can switch to them).
    pub as_root: bool,
    /// Ports from the first one that were taken when `roster init` ran
    /// (so the agents got later ones): said in the config.
    pub skipped_ports: Vec<u16>,
}

/// The folder, relative to the config, an instance runs in.
pub fn work_dir(instance: &Instance) -> String {
    format!("work/{}", instance.name)
}

/// The starter agent of a kind, relative to the config.
pub fn agent_file(kind: &str) -> String {
    format!("agents/{kind}/agent.py")
}

/// The PATH agents get when they run as users of their own.
pub const SYSTEM_PATH: &str = roster_daemon::tools::SYSTEM_PATH;

/// A TOML basic string.
fn quoted(text: &str) -> String {
    roster_core::config::toml_string(text)
}

/// `roster.toml` for `answers`, heavily commented: the first file a new
/// user reads.
pub fn config_text(
    answers: &Answers,
    recommendation: &Recommendation,
    instances: &[Instance],
    layout: &Layout,
) -> String {
    let mut text = String::new();
    let pattern = recommendation.pattern;
    let thresholds = plan::memory_thresholds(answers);
    let (alert, restart) = (thresholds.alert, thresholds.restart);
    // `writeln!` into a String cannot fail.
    let mut line = |content: &str| {
        text.push_str(content);
        text.push('\n');
    };
    line(&format!(
        "# roster.toml: written by `roster init` for the {} pattern.",
        pattern.name()
    ));
    line("#");
    line(&format!(
        "# Your answers: {} kind{} of agent, {} customer{}, {} server{}, {} requests a day,",
        answers.agents,
        if answers.agents == 1 { "" } else { "s" },
        answers.customers,
        if answers.customers == 1 { "" } else { "s" },
        answers.servers,
        if answers.servers == 1 { "" } else { "s" },
        answers.requests_per_day,
    ));
    line(&format!(
        "# {}% uptime, {} of memory.",
        plan::format_percent(answers.uptime),
        plan::format_size(answers.ram)
    ));
    line("#");
    line(&format!("# Why {}:", pattern.name()));
    for reason in &recommendation.reasons {
        for wrapped in bullet(reason) {
            line(&wrapped);
        }
    }
    if pattern == Pattern::MultiTenant && !layout.as_root {
        line("# Written without root: until roster runs as root, every instance runs");
        line("# as the user who starts it (see [defaults] for the tenants' users).");
    }
    if !recommendation.fleet.is_empty() {
        line("# Fleet mode (roster fleet) would fit better:");
        for reason in &recommendation.fleet {
            for wrapped in bullet(reason) {
                line(&wrapped);
            }
        }
        line("# This file runs everything on one server; `roster fleet --help` and");
        line("# README.md, \"Many servers\", show how to spread it over several.");
    }
    line("#");
    line("# Try it (from this folder):");
    line("#   roster check -f roster.toml   # validate; problems come as FILE:LINE:COL");
    line("#   roster up -f roster.toml      # start the daemon and every agent");
    line("#   roster status                 # state, health, memory of each agent");
    line("#   roster logs -f                # what they print, interleaved, as it comes");
    line("#   roster down                   # stop them gracefully, then the daemon");
    line("#");
    line("# Paths in this file are relative to this file's folder, wherever roster is");
    line("# run from. Unknown keys are errors, so a typo never goes unnoticed.");
    line("");
    line("# How roster keeps each agent's output (stdout and stderr, one line at a");
    line("# time, each stamped with the time): <home>/logs/NAME.log, rotated beside it.");
    line("[log]");
    line("max_size = \"10MiB\"   # rotate a log when it reaches this size (and daily)");
    line("keep = 14            # rotated files kept per agent; older ones are deleted");
    line("compress = true      # gzip rotated files");
    line("");
    line("# Every agent below gets these keys unless it sets them itself.");
    line("[defaults]");
    line("# Start it again whenever it exits (\"on-failure\": only after a crash;");
    line("# \"never\"). Quick deaths back off exponentially, up to backoff_max.");
    line("restart = \"always\"");
    line("backoff_max = \"30s\"");
    line("# Stopping: SIGTERM to the agent's process group; the starter agent");
    line("# finishes the unit of work in hand, then exits 0. Whatever still runs");
    line("# after stop_timeout gets SIGKILL.");
    line("stop_signal = \"SIGTERM\"");
    line("stop_timeout = \"10s\"");
    line("# The same when roster restarts an agent by itself (a failed health check,");
    line("# a watch rule): ask it to finish its work, and wait this long.");
    line("drain_signal = \"SIGTERM\"");
    line("drain_timeout = \"30s\"");
    if layout.as_root {
        match pattern {
            Pattern::MultiTenant => {
                line("# Who the agents run as. Every instance its own system user, {name}");
                line("# replaced by the agent's name (e.g. tenant-worker-customer1): a tenant");
                line("# cannot read another tenant's files. create_user = true: roster creates");
                line("# the user if missing (useradd --system, no login), and gives it the");
                line("# agent's cwd with mode 0700. Never run agents as root.");
                line("user = \"tenant-{name}\"");
            }
            Pattern::SingleAgent | Pattern::MultiAgent => {
                line("# Who the agents run as: one unprivileged system user, never root.");
                line("# create_user = true: roster creates it if missing (useradd --system,");
                line("# no login), and gives it each agent's cwd with mode 0700.");
                line("user = \"agent-runner\"");
            }
        }
        line("create_user = true");
        line("# Their PATH: the system's folders. Root's own PATH may name folders");
        line("# other users cannot enter (/root/.pyenv, ~/.local/bin), and python3");
        line("# must be one the agents' users can run.");
        line(&format!("env = {{ PATH = {} }}", quoted(SYSTEM_PATH)));
    } else {
        line("# The agents run as the user who starts roster. Run roster as root and");
        line("# set user = \"agent-runner\" (or user = \"tenant-{name}\", one per agent)");
        line("# with create_user = true to give them an unprivileged user of their own.");
    }
    line("");
    line("# Watch rules: graded responses to what roster samples every 5s.");
    if thresholds.from_share {
        line(&format!(
            "# Memory: this server's {} shared among {} instance{} is {} each:",
            plan::format_size(answers.ram),
            instances.len(),
            if instances.len() == 1 { "" } else { "s" },
            plan::format_size(answers.ram / (instances.len().max(1) as u64)),
        ));
        line("# alert at 60% of that, restart (drained, at most 3 in 15m) at 80%.");
    } else {
        line(&format!(
            "# Memory: alert above {}, restart (drained, at most 3 in 15m) above {}:",
            plan::format_size(alert),
            plan::format_size(restart)
        ));
        line("# a default that fits one agent (the starter idles at about 20MiB), not");
        line(&format!(
            "# this server's {}. Set them near what `roster status` shows yours use.",
            plan::format_size(answers.ram)
        ));
    }
    line("# `roster alerts` lists what fired.");
    line("[[defaults.watch]]");
    line("metric = \"memory_bytes\"");
    line(&format!(
        "above = {:<18}# {}",
        group_digits(alert),
        plan::format_size(alert)
    ));
    line("for = \"1m\"                # it must hold this long");
    line("action = \"alert\"");
    line("predict = \"30m\"           # also when the trend gets there within 30 minutes");
    line("");
    line("[[defaults.watch]]");
    line("metric = \"memory_bytes\"");
    line(&format!(
        "above = {:<18}# {}",
        group_digits(restart),
        plan::format_size(restart)
    ));
    line("for = \"30s\"");
    line("action = \"restart\"");
    line("");
    line("[[defaults.watch]]");
    line("metric = \"cpu_percent\"   # of one core");
    line("above = 90");
    line("for = \"5m\"");
    line("action = \"investigate\"   # an alert with the process tree and the last log lines");
    line("");
    line("[[defaults.watch]]");
    line("metric = \"log_matches\"   # lines of its log matching `pattern` ...");
    line("pattern = \"(?i)\\\\berror\\\\b\"");
    line("above = 5");
    line("within = \"1m\"            # ... in this window");
    line("action = \"alert\"");
    let (interval, retries) = if answers.uptime >= 99.9 {
        ("5s", 2)
    } else {
        ("10s", 3)
    };
    for (index, instance) in instances.iter().enumerate() {
        line("");
        if index == 0 {
            line("# ---------------------------------------------------------------------------");
            line("# One [agents.NAME] table per agent process. NAME: 1 to 64 letters, digits,");
            line("# '.', '_' or '-'. `roster status`, `roster logs NAME` and `roster restart");
            line("# NAME` use it.");
            line("# ---------------------------------------------------------------------------");
        }
        match &instance.customer {
            Some(customer) => line(&format!(
                "# {} for {customer}: the code in {}, its own folder {}.",
                instance.kind,
                agent_file(&instance.kind),
                work_dir(instance)
            )),
            None => line(&format!(
                "# {}: the code in {}, its own folder {}.",
                instance.kind,
                agent_file(&instance.kind),
                work_dir(instance)
            )),
        }
        if index == 0 && !layout.skipped_ports.is_empty() {
            line(&format!(
                "# Ports: {} {} in use when roster init ran, so the agents use the next free ones.",
                layout
                    .skipped_ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if layout.skipped_ports.len() == 1 {
                    "was"
                } else {
                    "were"
                }
            ));
        }
        line(&format!("[agents.{}]", instance.name));
        if index == 0 {
            line("# argv, run directly (no shell), in `cwd`: so the script's path is");
            line("# relative to cwd. -u: unbuffered output, each line reaches the log at once.");
        }
        line(&format!(
            "command = [\"python3\", \"-u\", {}]",
            quoted(&format!("../../{}", agent_file(&instance.kind)))
        ));
        if index == 0 {
            line("# Its working directory, relative to this file: the place for its own files.");
        }
        line(&format!("cwd = {}", quoted(&work_dir(instance))));
        if index == 0 {
            line("# Environment on top of roster's own (ROSTER_AGENT is the agent's name).");
        }
        let mut env = format!(
            "env = {{ PORT = \"{}\", AGENT_KIND = {}",
            instance.port,
            quoted(&instance.kind)
        );
        if let Some(customer) = &instance.customer {
            let _ = write!(env, ", CUSTOMER = {}", quoted(customer));
        }
        env.push_str(" }");
        line(&env);
        line("");
        if index == 0 {
            line("# Its health check: exactly one of http (a 2xx answer), tcp (a connection)");
            line("# or exec (a command that exits 0). `roster status` shows healthy or");
            line("# unhealthy; `retries` failures in a row make it unhealthy.");
        }
        line(&format!("[agents.{}.health]", instance.name));
        line(&format!(
            "http = \"http://127.0.0.1:{}/health\"",
            instance.port
        ));
        if index == 0 {
            let commented = |setting: String, comment: &str| format!("{setting:<24}# {comment}");
            line(&commented(
                format!("interval = \"{interval}\""),
                &if answers.uptime >= 99.9 {
                    format!(
                        "between probes: short, for a {}% target",
                        plan::format_percent(answers.uptime)
                    )
                } else {
                    "between probes".to_owned()
                },
            ));
            line(&commented(
                "timeout = \"2s\"".into(),
                "a slower answer is a failure",
            ));
            line(&commented(
                format!("retries = {retries}"),
                "failures in a row before unhealthy",
            ));
            line(&commented(
                "start_period = \"10s\"".into(),
                "failures this soon after a start do not count",
            ));
            line(&commented(
                "on_failure = \"restart\"".into(),
                "restart (drained) | alert | none",
            ));
        } else {
            line(&format!("interval = \"{interval}\""));
            line("timeout = \"2s\"");
            line(&format!("retries = {retries}"));
            line("start_period = \"10s\"");
            line("on_failure = \"restart\"");
        }
    }
    line("");
    line("# Host rules: the disk and the memory of this server.");
    line("[[host.watch]]");
    line("metric = \"disk_percent\"");
    line("path = \"/\"");
    line("above = 90");
    line("action = \"alert\"");
    line("");
    line("[[host.watch]]");
    line("metric = \"memory_available_percent\"");
    line("below = 10");
    line("for = \"1m\"");
    line("action = \"alert\"");
    line("");
    line("# Next: alerts to a webhook or Alertmanager ([[notify]]), Prometheus");
    line("# metrics ([metrics] listen = \"127.0.0.1:9464\"), deploys with rollback");
    line("# ([agents.NAME.deploy]), limits (memory_max, cpu_quota): see README.md.");
    text
}

/// `#   - TEXT` wrapped at 78 columns, continuation lines indented.
fn bullet(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::from("#   -");
    for word in text.split_whitespace() {
        if current.len() + 1 + word.len() > 78 && current.len() > 5 {
            lines.push(std::mem::replace(&mut current, String::from("#    ")));
        }
        current.push(' ');
        current.push_str(word);
    }
    lines.push(current);
    lines
}

/// `4_915_000`: TOML accepts `_` between digits, and people read it.
fn group_digits(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push('_');
        }
        out.push(digit);
    }
    out
}

/// The starter agent of `kind`, serving /health on `default_port` unless
/// `PORT` says otherwise.
pub fn agent_py(kind: &str, default_port: u16) -> String {
    AGENT_PY
        .replace("__KIND__", kind)
        .replace("__PORT__", &default_port.to_string())
}

const AGENT_PY: &str = r#"#!/usr/bin/env python3
"""__KIND__: a starter agent written by `roster init`.

roster runs one process of this file per instance (see roster.toml), in the
instance's own folder (work/NAME). As written, it does placeholder work:
every WORK_INTERVAL seconds it takes one unit of work and logs one line
about it. Put the real work in do_one_unit() below: read a queue, call a
model, answer a ticket. Everything else is what roster expects of an agent:

  - GET /health on 127.0.0.1:$PORT answers 200 with JSON while it works:
    roster's health check asks it, and restarts the agent when it stops
    answering (a hang looks alive to the kernel, not to a health check);
  - SIGTERM (or SIGINT) asks it to stop: it finishes the unit of work in
    hand, then exits 0. roster sends SIGKILL only after stop_timeout;
  - one line per event on stdout, unbuffered: roster stamps each line and
    keeps it in <home>/logs/NAME.log (`roster logs -f`). Lines with
    "error" in them are counted by a watch rule.

Environment (roster.toml sets it):
  PORT           the /health port (default __PORT__)
  AGENT_KIND     this agent's kind (__KIND__)
  CUSTOMER       the customer this instance serves (multi-tenant), or unset
  WORK_INTERVAL  seconds between units of work (default 2)
  ROSTER_AGENT   set by roster: this instance's name

Standard library only (Python 3.8 or later).
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KIND = "__KIND__"
NAME = os.environ.get("ROSTER_AGENT") or KIND
CUSTOMER = os.environ.get("CUSTOMER") or None
DEFAULT_PORT = __PORT__


def log(message):
    """One line per event on stdout, prefixed with the agent's name."""
    line = f"{NAME}: " + str(message).replace("\r", "\\r").replace("\n", "\\n")
    try:
        print(line, flush=True)
    except (OSError, ValueError):
        pass  # stdout is gone: keep working anyway


def do_one_unit(number):
    """One unit of real work. REPLACE THIS with what the agent is for.

    Return a short summary for the log; raise to count a failure (the loop
    logs it and carries on). Keep one unit shorter than stop_timeout in
    roster.toml: a stop waits for the unit in hand.
    """
    time.sleep(0.2)  # stands for the real work
    who = f" for {CUSTOMER}" if CUSTOMER else ""
    return f"unit {number} done{who}"


# Set by the signal handler, read by the work loop. A plain variable, not a
# lock or an Event: a signal handler must never wait.
_stop_signal = None


def on_stop_signal(signum, _frame):
    global _stop_signal
    _stop_signal = signum


def stopping():
    return _stop_signal is not None


class Stats:
    """Counters the /health handler thread reads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.handled = 0
        self.failed = 0

    def count(self, ok):
        with self.lock:
            if ok:
                self.handled += 1
            else:
                self.failed += 1

    def health(self):
        with self.lock:
            return {
                "status": "stopping" if stopping() else "ok",
                "agent": NAME,
                "kind": KIND,
                "customer": CUSTOMER,
                "pid": os.getpid(),
                "handled": self.handled,
                "failed": self.failed,
                "uptime_secs": round(time.monotonic() - self.started, 1),
            }


def health_server(port, stats):
    """An HTTP server for GET /health, not yet serving."""

    class Handler(BaseHTTPRequestHandler):
        server_version = f"{KIND}/1"
        timeout = 5

        def do_GET(self):
            if self.path.split("?")[0] == "/health":
                self.reply(200, stats.health())
            else:
                self.reply(404, {"error": "not found", "try": "/health"})

        def reply(self, status, payload):
            body = (json.dumps(payload) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass  # no access log: the health check would flood it

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def number_from_env(key, default, kind):
    raw = os.environ.get(key, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        log(f"error: {key}={raw!r} is not a number; using {default}")
        return default


def main():
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    port = number_from_env("PORT", DEFAULT_PORT, int)
    interval = number_from_env("WORK_INTERVAL", 2.0, float)
    stats = Stats()
    try:
        server = health_server(port, stats)
    except OSError as error:
        # Exit non-zero: roster restarts the agent (backing off), and the
        # reason is in its log.
        log(f"error: cannot serve /health on 127.0.0.1:{port}: {error.strerror or error}")
        return 1
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log(f"starting: pid={os.getpid()} port={port} cwd={os.getcwd()}")

    number = 0
    while not stopping():
        number += 1
        started = time.monotonic()
        try:
            summary = do_one_unit(number)
            stats.count(True)
            log(f"{summary} in {time.monotonic() - started:.2f}s")
        except Exception as error:  # noqa: BLE001 - one bad unit must not stop the agent
            stats.count(False)
            log(f"error: unit {number} failed: {type(error).__name__}: {error}")
        # Wait for the next unit, waking at once when asked to stop.
        deadline = time.monotonic() + interval
        while not stopping() and time.monotonic() < deadline:
            time.sleep(0.1)

    log(
        f"stopping on {signal.Signals(_stop_signal).name}: the unit in hand is finished "
        f"({stats.handled} done, {stats.failed} failed); bye"
    )
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
"#;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::commands::init::plan::recommend;

    fn config_for(agents: u32, customers: u32, as_root: bool) -> (String, Vec<Instance>) {
        let answers = Answers {
            agents,
            customers,
            ..Answers::defaults(4 << 30)
        };
        let instances = plan::instances(&answers, 8100, &|_| true).expect("fits");
        let text = config_text(
            &answers,
            &recommend(&answers),
            &instances,
            &Layout {
                as_root,
                skipped_ports: Vec::new(),
            },
        );
        (text, instances)
    }

    #[test]
    fn every_pattern_writes_a_valid_config_with_each_instance() {
        for (agents, customers) in [(1, 1), (3, 1), (2, 3)] {
            for as_root in [false, true] {
                let (text, instances) = config_for(agents, customers, as_root);
                let config = roster_core::config::parse("roster.toml", &text, Path::new("/p"))
                    .unwrap_or_else(|error| panic!("{error}\n{text}"));
                assert_eq!(config.agents.len(), instances.len());
                for instance in &instances {
                    let name = roster_core::AgentName::new(&instance.name).expect("name");
                    let spec = &config.agents[&name];
                    assert_eq!(spec.cwd, Path::new("/p").join(work_dir(instance)));
                    assert_eq!(
                        spec.env.get("PORT").map(String::as_str),
                        Some(instance.port.to_string().as_str())
                    );
                    assert!(spec.health.is_some());
                    assert_eq!(spec.rules().len(), 4);
                    let user = spec.identity.user.as_deref();
                    match (as_root, customers > 1) {
                        (false, _) => assert_eq!(user, None),
                        (true, false) => assert_eq!(user, Some("agent-runner")),
                        (true, true) => {
                            assert_eq!(user, Some(format!("tenant-{}", instance.name).as_str()))
                        }
                    }
                    assert_eq!(spec.identity.create_user, as_root);
                    assert_eq!(
                        spec.env.get("PATH").map(String::as_str),
                        as_root.then_some(SYSTEM_PATH)
                    );
                }
            }
        }
    }

    /// Issue #14, item 17: the config says where its thresholds and ports
    /// come from.
    #[test]
    fn the_config_says_where_thresholds_and_ports_come_from() {
        let answers = Answers::defaults(24 << 30);
        let taken = |port: u16| port != 8100;
        let instances = plan::instances(&answers, 8100, &taken).expect("fits");
        let text = config_text(
            &answers,
            &recommend(&answers),
            &instances,
            &Layout {
                as_root: false,
                skipped_ports: plan::skipped_ports(8100, &instances),
            },
        );
        assert!(
            text.contains(
                "# Memory: alert above 512MiB, restart (drained, at most 3 in 15m) above 1GiB:"
            ),
            "{text}"
        );
        assert!(text.contains("not\n# this server's 24GiB"), "{text}");
        assert!(text.contains("above = 536_870_912 "), "{text}");
        assert!(text.contains("above = 1_073_741_824 "), "{text}");
        assert!(
            text.contains("# Ports: 8100 was in use when roster init ran"),
            "{text}"
        );
        assert!(text.contains("PORT = \"8101\""), "{text}");
        let crowded = Answers {
            customers: 8,
            ..Answers::defaults(1 << 30)
        };
        let instances = plan::instances(&crowded, 8100, &|_| true).expect("fits");
        let text = config_text(
            &crowded,
            &recommend(&crowded),
            &instances,
            &Layout {
                as_root: false,
                skipped_ports: Vec::new(),
            },
        );
        assert!(
            text.contains("# Memory: this server's 1GiB shared among 8 instances is 128MiB each:"),
            "{text}"
        );
        assert!(!text.contains("# Ports:"), "{text}");
    }

    #[test]
    fn the_starter_agent_names_its_kind_and_port() {
        let text = agent_py("worker2", 8101);
        assert!(text.contains("KIND = \"worker2\""));
        assert!(text.contains("DEFAULT_PORT = 8101"));
        assert!(!text.contains("__KIND__") && !text.contains("__PORT__"));
        assert_eq!(group_digits(5_153_960_754), "5_153_960_754");
        assert_eq!(group_digits(999), "999");
    }
}
