//! The kernel log's OOM kills, read from `/dev/kmsg` records (the CLI
//! reads; this parses), and who they belong to.
//!
//! A record is `PRI,SEQ,USEC,FLAGS[,...];TEXT`, then dictionary lines that
//! start with a space. One kill logs two lines this reads: the summary
//! `oom-kill:constraint=...,oom_memcg=...,task_memcg=...,task=COMM,pid=PID,uid=UID`
//! and `Out of memory: Killed process PID (COMM) ...` (or
//! `Memory cgroup out of memory: Killed process ...`); they are joined by
//! pid. Anything else, garbage and truncated records included, is skipped.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::api::EventRecord;

/// An OOM kill the kernel logged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelOom {
    /// Microseconds since boot of its first line.
    pub usec: u64,
    /// Its wall-clock time, where the reader knows the boot time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The process killed.
    pub pid: u32,
    /// Its command name, as the kernel logged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The memory cgroup of the task killed (`task_memcg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_memcg: Option<String>,
    /// The memory cgroup whose limit was hit (`oom_memcg`), for a cgroup's
    /// OOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_memcg: Option<String>,
    /// The kernel's lines about it as logged, the `Killed process` line
    /// first.
    pub lines: Vec<String>,
}

impl KernelOom {
    /// The line to quote: the `Killed process` line (else the summary),
    /// with its time where known.
    pub fn quoted(&self) -> String {
        let line = self.lines.first().map(String::as_str).unwrap_or_default();
        match &self.time {
            Some(time) => format!("kernel {time}: {line}"),
            None => format!("kernel: {line}"),
        }
    }
}

/// One `/dev/kmsg` record: (usec since boot, its first line). None for
/// anything that is not one.
pub fn kmsg_record(record: &str) -> Option<(u64, &str)> {
    let (prefix, text) = record.split_once(';')?;
    let mut fields = prefix.split(',');
    fields.next()?.trim().parse::<u32>().ok()?;
    fields.next()?.parse::<u64>().ok()?;
    let usec = fields.next()?.parse::<u64>().ok()?;
    let text = text.split('\n').next().unwrap_or_default();
    Some((usec, text.trim_end()))
}

/// `Killed process PID (COMM)` in an OOM line: (pid, comm). The comm may
/// hold spaces and parentheses: it runs to the `)` before ` total-vm`, or
/// the last `)`.
pub fn killed_process(text: &str) -> Option<(u32, Option<String>)> {
    let rest = ["Memory cgroup out of memory: ", "Out of memory: "]
        .iter()
        .find_map(|head| text.find(head).map(|at| &text[at + head.len()..]))?;
    let rest = rest.strip_prefix("Killed process ")?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let pid = rest[..digits].parse::<u32>().ok()?;
    let command = rest[digits..].strip_prefix(" (").and_then(|inner| {
        let end = inner.find(") total-vm").or_else(|| inner.rfind(')'))?;
        Some(inner[..end].to_owned())
    });
    Some((pid, command))
}

/// The `oom-kill:` summary line: its pid, comm, `oom_memcg` and
/// `task_memcg` (time and lines left empty).
pub fn oom_summary(text: &str) -> Option<KernelOom> {
    let at = text.find("oom-kill:")?;
    let body = &text[at + "oom-kill:".len()..];
    // From the right: the comm may hold commas, the numbers cannot.
    let (body, _uid) = body.rsplit_once(",uid=")?;
    let (body, pid) = body.rsplit_once(",pid=")?;
    let pid = pid.parse::<u32>().ok()?;
    let between = |from: &str, to: &str| -> Option<String> {
        let start = body.find(from)? + from.len();
        let end = body[start..].find(to).map_or(body.len(), |end| start + end);
        Some(body[start..end].to_owned())
    };
    let task_memcg = between("task_memcg=", ",task=");
    let oom_memcg = between("oom_memcg=", ",task_memcg=");
    let command = body
        .find(",task=")
        .map(|start| body[start + ",task=".len()..].to_owned());
    Some(KernelOom {
        pid,
        command,
        oom_memcg,
        task_memcg,
        ..KernelOom::default()
    })
}

/// The OOM kills in some `/dev/kmsg` records, those at or after
/// `since_usec` only, oldest first; the two lines of one kill joined.
pub fn oom_kills<'a>(
    records: impl IntoIterator<Item = &'a str>,
    since_usec: u64,
) -> Vec<KernelOom> {
    let mut kills: Vec<KernelOom> = Vec::new();
    for record in records {
        let Some((usec, text)) = kmsg_record(record) else {
            continue;
        };
        if usec < since_usec {
            continue;
        }
        // A kill's lines come within moments of each other; an older kill
        // of a reused pid is another kill.
        let near =
            |kill: &KernelOom, pid: u32| kill.pid == pid && usec.abs_diff(kill.usec) < 5_000_000;
        if let Some(summary) = oom_summary(text) {
            match kills.iter_mut().rev().find(|kill| near(kill, summary.pid)) {
                Some(kill) => {
                    kill.lines.push(text.to_owned());
                    kill.task_memcg = summary.task_memcg;
                    kill.oom_memcg = summary.oom_memcg;
                    kill.command = kill.command.take().or(summary.command);
                }
                None => kills.push(KernelOom {
                    usec,
                    lines: vec![text.to_owned()],
                    ..summary
                }),
            }
        } else if let Some((pid, command)) = killed_process(text) {
            match kills.iter_mut().rev().find(|kill| near(kill, pid)) {
                Some(kill) => {
                    kill.lines.insert(0, text.to_owned());
                    if command.is_some() {
                        kill.command = command;
                    }
                }
                None => kills.push(KernelOom {
                    usec,
                    pid,
                    command,
                    lines: vec![text.to_owned()],
                    ..KernelOom::default()
                }),
            }
        }
    }
    kills
}

/// The agent of this home a kill belongs to: the agent whose cgroup
/// (`<...>/<home_cgroup>/AGENT`) holds the task or hit its limit, else the
/// agent one of whose `started` events in the window names the pid.
pub fn owner(
    kill: &KernelOom,
    home_cgroup: Option<&str>,
    events: &[EventRecord],
) -> Option<String> {
    owners(std::slice::from_ref(kill), home_cgroup, events)
        .pop()
        .flatten()
}

/// [`owner`] of each kill, the events read once (and only when a kill's
/// cgroup does not say).
pub fn owners(
    kills: &[KernelOom],
    home_cgroup: Option<&str>,
    events: &[EventRecord],
) -> Vec<Option<String>> {
    let mut started: Option<HashMap<u32, &str>> = None;
    kills
        .iter()
        .map(|kill| {
            by_cgroup(kill, home_cgroup).or_else(|| {
                let started = started.get_or_insert_with(|| {
                    events
                        .iter()
                        .filter(|event| event.kind == "started")
                        .filter_map(|event| Some((event.pid?, event.agent.as_deref()?)))
                        .collect()
                });
                started.get(&kill.pid).map(|agent| (*agent).to_owned())
            })
        })
        .collect()
}

fn by_cgroup(kill: &KernelOom, home_cgroup: Option<&str>) -> Option<String> {
    let home = home_cgroup.filter(|home| !home.is_empty())?;
    for memcg in [&kill.task_memcg, &kill.oom_memcg].into_iter().flatten() {
        let mut parts = memcg.split('/');
        if parts.by_ref().any(|part| part == home) {
            // `_daemon` is the daemon's own cgroup, no agent.
            if let Some(agent) = parts
                .next()
                .filter(|part| !part.is_empty() && *part != "_daemon")
            {
                return Some(agent.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
