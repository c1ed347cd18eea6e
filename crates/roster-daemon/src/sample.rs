//! Sampling agents and the host for watch rules: each agent's process
//! group (memory, CPU, open files, TCP connections, threads) and the
//! host's disks, available memory and load. Blocking work: it runs on the
//! blocking pool, every few seconds, never on the loop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use roster_core::watch::{AgentSample, HostSample};
use roster_core::AgentName;

use crate::procfs;

/// CPU ticks of each agent's group at the previous sample, to turn the
/// running total into a percentage.
#[derive(Debug, Default)]
pub struct Sampler {
    previous: HashMap<AgentName, (u32, u64, Instant)>,
}

/// One process of a group.
struct Member {
    pid: u32,
    rss_pages: u64,
    ticks: u64,
    threads: u64,
}

impl Sampler {
    /// A sampler with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples every `(agent, group leader)` and the host (`disks`: the
    /// paths host rules watch).
    pub fn sample(
        &mut self,
        agents: &[(AgentName, u32)],
        disks: &[PathBuf],
    ) -> (BTreeMap<AgentName, AgentSample>, HostSample) {
        let now = Instant::now();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let total_bytes = meminfo_kib(&meminfo, "MemTotal:").map(|kib| kib * 1024);
        let mut samples = BTreeMap::new();
        if !agents.is_empty() {
            let leaders: HashSet<u32> = agents.iter().map(|(_, pid)| *pid).collect();
            let mut groups: HashMap<u32, Vec<Member>> = HashMap::new();
            for pid in procfs::all_pids() {
                let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                let Some(stat) = procfs::parse_stat(&text) else {
                    continue;
                };
                if !leaders.contains(&stat.pgid) {
                    continue;
                }
                groups.entry(stat.pgid).or_default().push(Member {
                    pid,
                    rss_pages: stat.rss_pages,
                    ticks: stat.cpu_ticks,
                    threads: threads_of(&text).unwrap_or(1),
                });
            }
            let sockets = tcp_socket_inodes();
            let page = procfs::page_size();
            let ticks_per_second = procfs::ticks_per_second() as f64;
            for (agent, leader) in agents {
                let Some(members) = groups.get(leader) else {
                    continue;
                };
                let memory = members.iter().map(|member| member.rss_pages).sum::<u64>() * page;
                let ticks: u64 = members.iter().map(|member| member.ticks).sum();
                let cpu_percent = match self.previous.insert(agent.clone(), (*leader, ticks, now)) {
                    Some((pid, before, at)) if pid == *leader => {
                        let seconds = now.duration_since(at).as_secs_f64();
                        (seconds > 0.0).then(|| {
                            ticks.saturating_sub(before) as f64 / ticks_per_second / seconds * 100.0
                        })
                    }
                    _ => None,
                };
                let mut open_files = 0u64;
                let mut connections = 0u64;
                for member in members {
                    let (files, tcp) = descriptors(member.pid, &sockets);
                    open_files += files;
                    connections += tcp;
                }
                samples.insert(
                    agent.clone(),
                    AgentSample {
                        memory_bytes: Some(memory as f64),
                        memory_percent: total_bytes
                            .filter(|total| *total > 0)
                            .map(|total| memory as f64 / total as f64 * 100.0),
                        cpu_percent,
                        open_files: Some(open_files as f64),
                        connections: Some(connections as f64),
                        threads: Some(
                            members.iter().map(|member| member.threads).sum::<u64>() as f64
                        ),
                    },
                );
            }
            let running: HashSet<&AgentName> = agents.iter().map(|(agent, _)| agent).collect();
            self.previous.retain(|agent, _| running.contains(agent));
        }
        let mut host = HostSample {
            memory_available_percent: match (meminfo_kib(&meminfo, "MemAvailable:"), total_bytes) {
                (Some(available), Some(total)) if total > 0 => {
                    Some(available as f64 * 1024.0 / total as f64 * 100.0)
                }
                _ => None,
            },
            load1: fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse().ok()),
            ..HostSample::default()
        };
        for path in disks {
            if let Some(percent) = disk_percent(path) {
                host.disk_percent.insert(path.clone(), percent);
            }
        }
        (samples, host)
    }
}

/// Used space of the filesystem holding `path`, as `df` counts it (blocks
/// reserved for root are not available to others).
pub fn disk_percent(path: &std::path::Path) -> Option<f64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let total = stat.blocks() as f64;
    let free = stat.blocks_free() as f64;
    let available = stat.blocks_available() as f64;
    let used = total - free;
    let usable = used + available;
    (usable > 0.0).then(|| used / usable * 100.0)
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Field 20 of /proc/PID/stat: threads.
fn threads_of(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(17)?.parse().ok()
}

/// Socket inodes of TCP sockets (v4 and v6) on the machine.
fn tcp_socket_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some(inode) = line
                .split_whitespace()
                .nth(9)
                .and_then(|raw| raw.parse().ok())
            {
                if inode != 0 {
                    inodes.insert(inode);
                }
            }
        }
    }
    inodes
}

/// (open descriptors, of which TCP sockets) of one process.
fn descriptors(pid: u32, tcp: &HashSet<u64>) -> (u64, u64) {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let mut files = 0;
    let mut sockets = 0;
    for entry in entries.flatten() {
        files += 1;
        if let Ok(target) = fs::read_link(entry.path()) {
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|raw| raw.parse::<u64>().ok())
            {
                if tcp.contains(&inode) {
                    sockets += 1;
                }
            }
        }
    }
    (files, sockets)
}

/// The process tree of one agent for an investigation: each process with
/// its memory and CPU, the open files count, then the last log lines.
pub fn investigate(agent: &str, leader: Option<u32>, log: &std::path::Path) -> String {
    let mut text = String::new();
    if let Some(leader) = leader {
        let page = procfs::page_size();
        let ticks_per_second = procfs::ticks_per_second() as f64;
        let sockets = tcp_socket_inodes();
        text.push_str(&format!("process group {leader} of {agent}:\n"));
        text.push_str("  PID      RSS        CPU-SECONDS  FILES  TCP  COMMAND\n");
        let mut pids: Vec<u32> = procfs::all_pids();
        pids.sort_unstable();
        for pid in pids {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(sample) = procfs::parse_stat(&stat) else {
                continue;
            };
            if sample.pgid != leader {
                continue;
            }
            let command = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|bytes| {
                    let joined: Vec<String> = bytes
                        .split(|byte| *byte == 0)
                        .filter(|part| !part.is_empty())
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect();
                    joined.join(" ")
                })
                .unwrap_or_default();
            let (files, tcp) = descriptors(pid, &sockets);
            text.push_str(&format!(
                "  {pid:<8} {:<10} {:<12.1} {files:<6} {tcp:<4} {}\n",
                crate::sample::human_bytes(sample.rss_pages * page),
                sample.cpu_ticks as f64 / ticks_per_second,
                command.chars().take(120).collect::<String>()
            ));
        }
    } else {
        text.push_str(&format!("{agent} has no running process\n"));
    }
    text.push_str("last log lines:\n");
    match crate::logs::read_lines(log, 50) {
        Ok(lines) => {
            for line in lines {
                text.push_str("  ");
                text.push_str(&line.text);
                text.push('\n');
            }
        }
        Err(error) => text.push_str(&format!("  (cannot read {}: {error})\n", log.display())),
    }
    text
}

/// `12.3MiB`.
pub fn human_bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_a_real_group_and_the_host() {
        // This test process leads no group of its own; sample its group.
        let me = procfs::sample(std::process::id()).expect("own stat");
        let agent = AgentName::new("me").expect("name");
        let mut sampler = Sampler::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let (samples, host) = sampler.sample(&[(agent.clone(), me.pgid)], &[PathBuf::from("/")]);
        let mine = &samples[&agent];
        assert!(mine.memory_bytes.is_some_and(|bytes| bytes > 0.0));
        assert!(mine
            .memory_percent
            .is_some_and(|percent| percent > 0.0 && percent < 100.0));
        assert!(mine.open_files.is_some_and(|files| files >= 3.0));
        assert!(
            mine.connections.is_some_and(|tcp| tcp >= 1.0),
            "the listener counts"
        );
        assert!(mine.threads.is_some_and(|threads| threads >= 1.0));
        assert_eq!(mine.cpu_percent, None, "no previous sample yet");
        let (again, _) = sampler.sample(&[(agent.clone(), me.pgid)], &[]);
        assert!(again[&agent].cpu_percent.is_some());
        assert!(host.disk_percent[&PathBuf::from("/")] > 0.0);
        assert!(host.memory_available_percent.is_some());
        assert!(host.load1.is_some());
        drop(listener);
    }

    #[test]
    fn reads_threads_from_stat() {
        let text = "42 (a b) S 1 42 42 0 -1 0 0 0 0 0 5 6 0 0 20 0 7 0 100 1000 25";
        assert_eq!(threads_of(text), Some(7));
    }
}
