//! `roster describe NAME [--json]`: what exactly runs for an agent, as the
//! running daemon has it applied (`GET /v1/describe`). The daemon masks
//! secret values before it answers; this only prints.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;

use roster_core::api::{DescribeReply, DescribedGroup};
use roster_store::Home;

/// Runs `roster describe`.
pub fn run(home: &Home, name: &str, json: bool) -> Result<ExitCode> {
    let reply: DescribeReply =
        super::client(home).get(&format!("/v1/describe?agent={}", query_value(name)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print!("{}", render(&reply));
    }
    Ok(ExitCode::SUCCESS)
}

/// `value` percent-encoded for a query string (agent names need none; a
/// mistyped one must still reach the daemon whole, to be refused there).
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Lines of `key: value`, the values aligned within a section.
struct Section {
    title: &'static str,
    rows: Vec<(String, String)>,
}

impl Section {
    fn new(title: &'static str) -> Self {
        Section {
            title,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.rows.push((key.into(), value.into()));
        self
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "{}:", self.title);
        if self.rows.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        let width = self
            .rows
            .iter()
            .map(|(key, _)| key.len())
            .max()
            .unwrap_or(0);
        for (key, value) in &self.rows {
            let _ = writeln!(out, "  {key:<width$}  {value}");
        }
    }
}

fn group(group: &DescribedGroup) -> String {
    match &group.name {
        Some(name) => format!("{name} ({})", group.gid),
        None => group.gid.to_string(),
    }
}

fn or_none(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// The readable layout, grouped by section (like `kubectl describe`).
pub fn render(reply: &DescribeReply) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Name:   {}", reply.name);
    let state = match reply.pid {
        Some(pid) => format!("{} (pid {pid})", reply.state.as_str()),
        None => reply.state.as_str().to_owned(),
    };
    let _ = writeln!(out, "State:  {state}");

    let command = &reply.command;
    let mut section = Section::new("Command");
    section
        .row(
            "argv",
            shell_words::join(command.argv.iter().map(String::as_str)),
        )
        .row(
            "program",
            match (&command.program, &command.program_error) {
                (Some(path), _) => path.clone(),
                (None, Some(error)) => format!("not found: {error}"),
                (None, None) => "-".to_owned(),
            },
        )
        .row("cwd", command.cwd.as_str())
        .row("via shim", if command.via_shim { "yes" } else { "no" });
    section.write(&mut out);

    let user = &reply.user;
    let mut section = Section::new("User");
    match (&user.name, user.uid) {
        (Some(name), Some(uid)) => {
            section.row("user", format!("{name} ({uid})"));
        }
        _ => {
            section.row("user", "unresolved");
        }
    }
    if let Some(primary) = &user.group {
        section.row("group", group(primary));
    }
    section.row(
        "groups",
        user.groups.iter().map(group).collect::<Vec<_>>().join(", "),
    );
    section.row(
        "switched",
        if user.switched {
            "yes (roster switches to this user)"
        } else {
            "no (runs as the daemon's user)"
        },
    );
    if let Some(error) = &user.error {
        section.row("error", error.as_str());
    }
    section.write(&mut out);

    let mut section = Section::new("Environment");
    for variable in &reply.environment {
        section.row(
            variable.name.as_str(),
            format!("{}  [{}]", variable.value, variable.source.as_str()),
        );
    }
    section.write(&mut out);

    let limits = &reply.limits;
    let mut section = Section::new("Limits");
    section.row("enforcement", or_none(limits.enforcement.as_deref()));
    for item in &limits.items {
        section.row(
            item.key.as_str(),
            format!("{} (by {})", item.value, item.enforced_by),
        );
    }
    for cgroup in &limits.cgroups {
        section.row("cgroup", cgroup.as_str());
    }
    section.write(&mut out);

    let mut section = Section::new("Sockets");
    for socket in &reply.sockets {
        section.row(
            socket.name.as_str(),
            format!(
                "{} on fd {}{}",
                socket.address,
                socket.fd,
                if socket.bound {
                    ""
                } else {
                    " (bound at next start)"
                }
            ),
        );
    }
    section.write(&mut out);

    let mut section = Section::new("Release");
    if let Some(release) = &reply.release {
        section
            .row("version", or_none(release.version.as_deref()))
            .row("path", or_none(release.path.as_deref()))
            .row("current", release.current.as_str())
            .row("shared", release.shared.as_str())
            .row("strategy", release.strategy.as_str())
            .row("verify_for", release.verify_for.as_str())
            .row("keep", release.keep.to_string());
    }
    section.write(&mut out);

    let mut section = Section::new("Health");
    if let Some(health) = &reply.checks.health {
        section
            .row("check", health.check.as_str())
            .row("interval", health.interval.as_str())
            .row("timeout", health.timeout.as_str())
            .row("retries", health.retries.to_string())
            .row("start_period", health.start_period.as_str())
            .row("on_failure", health.on_failure.as_str());
    }
    section.write(&mut out);

    let mut section = Section::new(if reply.checks.watch_defaults {
        "Watch (defaults)"
    } else {
        "Watch"
    });
    for rule in &reply.checks.watch {
        section.row(rule.action.as_str(), rule.text.as_str());
    }
    section.write(&mut out);

    let log = &reply.log;
    let mut section = Section::new("Log");
    section
        .row("path", log.path.as_str())
        .row(
            "max_size",
            roster_core::watch::format_bytes(log.max_size_bytes as f64),
        )
        .row("keep", log.keep.to_string())
        .row("compress", log.compress.to_string())
        .row(
            "stderr",
            log.stderr_path
                .as_deref()
                .unwrap_or("merged into the log above"),
        );
    section.write(&mut out);

    let restart = &reply.restart;
    let mut section = Section::new("Restart");
    section
        .row("restart", restart.restart.as_str())
        .row("restart_delay", restart.restart_delay.as_str())
        .row("backoff_max", restart.backoff_max.as_str())
        .row("stop_signal", restart.stop_signal.as_str())
        .row("stop_timeout", restart.stop_timeout.as_str())
        .row("drain_signal", restart.drain_signal.as_str())
        .row("drain_timeout", restart.drain_timeout.as_str())
        .row(
            "crash_loop",
            format!("{} in {}", restart.crash_loop, restart.crash_window),
        );
    section.write(&mut out);

    let mut section = Section::new("Last exits");
    for exit in &restart.last_exits {
        let how = match (exit.code, &exit.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by {signal}"),
            (None, None) => "?".to_owned(),
        };
        let pid = exit
            .pid
            .map(|pid| format!("pid {pid} "))
            .unwrap_or_default();
        section.row(exit.time.as_str(), format!("{pid}{how}: {}", exit.reason));
    }
    section.write(&mut out);
    out
}
