//! `roster describe` as decisions: an agent's environment layer by layer
//! with each variable's source and the masking of secret values, its
//! health check, watch rules and restart policy as the answer shows them,
//! and its last exits with their reasons read from the journal's events.
//! The daemon gathers the facts and builds the answer with these; no I/O
//! here.

use std::collections::BTreeMap;
use std::fmt;

use crate::api::{
    DescribedChecks, DescribedExit, DescribedHealth, DescribedRestart, DescribedRule,
    DescribedVariable, EnvSource, EventRecord, MASKED,
};
use crate::diagnose::redact::{is_secret_key, looks_like_token, SCRUB_MIN_LEN};
use crate::health::Check;
use crate::signal::name_of_number;
use crate::units::format_duration;
use crate::AgentSpec;

/// Exits shown, at most.
pub const LAST_EXITS: usize = 5;

/// An agent's environment as its next process gets it, each variable with
/// the layer that set it last. Holds secret values: its `Debug` shows
/// names only, and [`Environment::described`] is the one way out.
#[derive(Default)]
pub struct Environment {
    variables: BTreeMap<String, (String, EnvSource)>,
}

impl Environment {
    /// Sets `name`, replacing what an earlier layer set.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>, source: EnvSource) {
        self.variables.insert(name.into(), (value.into(), source));
    }

    /// Removes `name` (roster's own markers that an agent never gets).
    pub fn remove(&mut self, name: &str) {
        self.variables.remove(name);
    }

    /// The value the process gets, unmasked (for the PATH lookup).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.variables.get(name).map(|(value, _)| value.as_str())
    }

    /// The config's layer: its `env` (its own and `[defaults]`'s), and
    /// `PYTHONUNBUFFERED=1` unless that sets it (see
    /// [`AgentSpec::environment`]).
    pub fn set_config(&mut self, spec: &AgentSpec) {
        for (name, value) in spec.environment() {
            let source = if spec.env.contains_key(&name) {
                EnvSource::Env
            } else {
                EnvSource::Default
            };
            self.set(name, value, source);
        }
    }

    /// Every variable by name, masked where needed: every secret, every
    /// variable whose name says secret or whose value looks like an API
    /// key, and every value that holds a secret's value (`secrets`).
    pub fn described(self, secrets: &[String]) -> Vec<DescribedVariable> {
        self.variables
            .into_iter()
            .map(|(name, (value, source))| {
                let masked = source == EnvSource::Secret
                    || is_secret_key(&name)
                    || looks_like_token(&value)
                    || holds_secret(&value, secrets);
                DescribedVariable {
                    value: if masked { MASKED.to_owned() } else { value },
                    name,
                    source,
                    masked,
                }
            })
            .collect()
    }
}

impl fmt::Debug for Environment {
    // Values may be secrets: names and sources only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.variables
                    .iter()
                    .map(|(name, (_, source))| (name, source.as_str())),
            )
            .finish()
    }
}

/// Whether `text` is a secret's value or holds one (of at least
/// [`SCRUB_MIN_LEN`] bytes: shorter ones only count whole).
fn holds_secret(text: &str, secrets: &[String]) -> bool {
    secrets.iter().any(|secret| {
        !secret.is_empty()
            && (text == secret || (secret.len() >= SCRUB_MIN_LEN && text.contains(secret.as_str())))
    })
}

/// `text`, or [`MASKED`] when it holds a secret's value (an argument of the
/// command, a health check's URL, ...).
pub fn mask_text(text: &str, secrets: &[String]) -> String {
    if holds_secret(text, secrets) {
        MASKED.to_owned()
    } else {
        text.to_owned()
    }
}

/// The health check and the watch rules in force (the graded defaults when
/// the config has no `watch` key), every default filled in.
pub fn checks(spec: &AgentSpec, secrets: &[String]) -> DescribedChecks {
    let health = spec.health.as_ref().map(|health| DescribedHealth {
        kind: match &health.check {
            Check::Http(_) => "http",
            Check::Tcp { .. } => "tcp",
            Check::Exec(_) => "exec",
        }
        .to_owned(),
        check: mask_text(&health.check.to_string(), secrets),
        interval: format_duration(health.interval),
        timeout: format_duration(health.timeout),
        retries: health.retries,
        start_period: format_duration(health.start_period),
        on_failure: health.on_failure.as_str().to_owned(),
    });
    let watch = spec
        .rules()
        .iter()
        .map(|rule| {
            let (threshold, value) = match rule.threshold {
                crate::watch::Threshold::Above(value) => ("above", value),
                crate::watch::Threshold::Below(value) => ("below", value),
            };
            DescribedRule {
                metric: rule.metric.as_str().to_owned(),
                threshold: threshold.to_owned(),
                value,
                hold: format_duration(rule.hold),
                action: rule.action.as_str().to_owned(),
                text: rule.describe(),
            }
        })
        .collect();
    DescribedChecks {
        health,
        watch,
        watch_defaults: spec.watch.is_none(),
    }
}

/// The restart policy, with `last_exits` (newest first).
pub fn restart(spec: &AgentSpec, last_exits: Vec<DescribedExit>) -> DescribedRestart {
    let (drain_signal, drain_timeout) = spec.stop.drain();
    DescribedRestart {
        restart: spec.restart.mode.as_str().to_owned(),
        restart_delay: format_duration(spec.restart.delay),
        backoff_max: format_duration(spec.restart.backoff_max),
        stop_signal: spec.stop.signal.name().to_owned(),
        stop_timeout: format_duration(spec.stop.timeout),
        drain_signal: drain_signal.name().to_owned(),
        drain_timeout: format_duration(drain_timeout),
        crash_loop: spec.restart.crash_loop,
        crash_window: format_duration(spec.restart.crash_window),
        last_exits,
    }
}

/// How a process ended, read back from a journal text that
/// [`ExitStatus`](crate::api::ExitStatus)'s `Display` wrote: `exit code N`
/// or `killed by SIGNAME`. (code, signal).
pub fn parse_exit(detail: &str) -> Option<(Option<i32>, Option<String>)> {
    if let Some(rest) = detail.split("exit code ").nth(1) {
        let digits: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        return digits.parse().ok().map(|code| (Some(code), None));
    }
    let rest = detail.split("killed by ").nth(1)?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    if name.is_empty() {
        return None;
    }
    // A number the signal table has no name for is written as the number.
    let name = match name.parse::<i32>() {
        Ok(number) => name_of_number(number),
        Err(_) => name,
    };
    Some((None, Some(name)))
}

/// The agent's last [`LAST_EXITS`] exits, newest first, from its journal
/// events (any order; only the agent's own): each `exited` (on its own; or
/// killed by the kernel at `memory_max` when `oom_killed` names its pid),
/// `stopped` after a `stopping` (stopped by roster: why, when the event
/// before says, and whether it outlived its stop timeout), and `retired`
/// (a process of an earlier release, after a deploy's cutover).
pub fn last_exits(events: &[EventRecord]) -> Vec<DescribedExit> {
    let mut events: Vec<&EventRecord> = events.iter().collect();
    events.sort_by_key(|event| event.id);
    let mut exits = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let before = &events[..index];
        let after = &events[index + 1..];
        let exit = match event.kind.as_str() {
            "exited" => {
                let oom = after.iter().take(4).any(|later| {
                    later.kind == "oom_killed" && later.pid.is_some() && later.pid == event.pid
                });
                let reason = if oom {
                    "killed by the kernel: it reached memory_max".to_owned()
                } else {
                    "ended on its own".to_owned()
                };
                Some((event.pid, reason))
            }
            "stopped" => stopped(before, after),
            "retired" => Some((
                event.pid,
                "a process of the previous release, replaced by a deploy or rollback".to_owned(),
            )),
            _ => None,
        };
        let Some((pid, reason)) = exit else {
            continue;
        };
        let Some((code, signal)) = parse_exit(&event.detail) else {
            continue;
        };
        exits.push(DescribedExit {
            time: event.time.clone(),
            pid,
            code,
            signal,
            reason,
        });
    }
    exits.reverse();
    exits.truncate(LAST_EXITS);
    exits
}

/// A `stopped` event's process and reason: the `stopping` before it names
/// the pid, the event before that why (a failed health check, a changed
/// config, the web dashboard), a `killed` between them that it outlived its
/// stop timeout, and a `started` right after that it was a restart.
fn stopped(before: &[&EventRecord], after: &[&EventRecord]) -> Option<(Option<u32>, String)> {
    let stopping = before.iter().rposition(|event| event.kind == "stopping")?;
    // A `stopped` of another stop lies between: this one had no process.
    if before[stopping + 1..]
        .iter()
        .any(|event| event.kind == "stopped" || event.kind == "exited")
    {
        return None;
    }
    let killed = before[stopping + 1..]
        .iter()
        .any(|event| event.kind == "killed");
    let cause = stopping
        .checked_sub(1)
        .map(|previous| before[previous])
        .and_then(|previous| match previous.kind.as_str() {
            "unhealthy" => Some("restarted by roster: its health check failed".to_owned()),
            "changed" => Some("restarted by roster: its config changed".to_owned()),
            "removed" => Some("stopped by roster: it left the config".to_owned()),
            "web_action" => Some(format!("{} (web dashboard)", previous.detail)),
            "rule_stop" | "alert_firing" | "recovery" => {
                Some(format!("by roster: {}", previous.detail))
            }
            _ => None,
        });
    let restarted = after.first().is_some_and(|next| next.kind == "started");
    let mut reason = cause.unwrap_or_else(|| {
        if restarted {
            "restarted by roster (roster restart, or a rule)".to_owned()
        } else {
            "stopped by roster (roster stop, down, or apply)".to_owned()
        }
    });
    if killed {
        reason.push_str("; it outlived its stop timeout and got SIGKILL");
    }
    Some((before[stopping].pid, reason))
}

#[cfg(test)]
mod tests;
