//! Sampling agents and the host for watch rules: each agent's process
//! group (memory, CPU, open files, TCP connections, threads) and the
//! host's disks, available memory and load. Blocking work: it runs on the
//! blocking pool, every few seconds, never on the loop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use roster_core::watch::{AgentSample, HostSample, Readings};
use roster_core::AgentName;

use crate::procfs;

/// CPU ticks of each agent's group at the previous sample, to turn the
/// running total into a percentage, and the reader that remembers the
/// groups' members and counts between samples.
#[derive(Debug)]
pub struct Sampler {
    previous: HashMap<AgentName, (u32, u64, Instant)>,
    groups: procfs::GroupReader,
}

/// How long the descriptors of the groups may take to count in one round;
/// past it they are left unknown for that round.
const DESCRIPTOR_BUDGET: Duration = Duration::from_secs(2);

impl Sampler {
    /// A sampler with no history, reading idle groups less often
    /// ([`procfs::GroupReader::skipping_idle`]).
    pub fn new() -> Self {
        Sampler {
            previous: HashMap::new(),
            groups: procfs::GroupReader::skipping_idle(),
        }
    }

    /// Samples every `(agent, group leader, what its rules need)` and the
    /// host (`disks`: the paths host rules watch). The groups are read by
    /// a [`procfs::GroupReader`], as `/metrics` reads them; descriptors
    /// and TCP sockets only for agents whose rules need them.
    pub fn sample(
        &mut self,
        agents: &[(AgentName, u32, Readings)],
        disks: &[PathBuf],
    ) -> (BTreeMap<AgentName, AgentSample>, HostSample) {
        let now = Instant::now();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let total_bytes = meminfo_kib(&meminfo, "MemTotal:").map(|kib| kib * 1024);
        let mut samples = BTreeMap::new();
        if !agents.is_empty() {
            let mut wanted: HashMap<u32, procfs::Wanted> = HashMap::new();
            for (_, leader, readings) in agents {
                let want = wanted.entry(*leader).or_default();
                want.open_files |= readings.open_files;
                want.connections |= readings.connections;
            }
            let groups = self.groups.read(&wanted, now + DESCRIPTOR_BUDGET);
            let page = procfs::page_size();
            let ticks_per_second = procfs::ticks_per_second() as f64;
            for (agent, leader, _) in agents {
                let Some(group) = groups.get(leader) else {
                    continue;
                };
                let memory = group.rss_pages * page;
                let ticks = group.cpu_ticks;
                // An idle group that sat this read out used no CPU; its
                // next read measures from the last one that was made.
                let rested = self.groups.rested(*leader)
                    && self
                        .previous
                        .get(agent)
                        .is_some_and(|(pid, _, _)| pid == leader);
                let cpu_percent = if rested {
                    Some(0.0)
                } else {
                    match self.previous.insert(agent.clone(), (*leader, ticks, now)) {
                        Some((pid, before, at)) if pid == *leader => {
                            let seconds = now.duration_since(at).as_secs_f64();
                            (seconds > 0.0).then(|| {
                                ticks.saturating_sub(before) as f64 / ticks_per_second / seconds
                                    * 100.0
                            })
                        }
                        _ => None,
                    }
                };
                samples.insert(
                    agent.clone(),
                    AgentSample {
                        memory_bytes: Some(memory as f64),
                        memory_percent: total_bytes
                            .filter(|total| *total > 0)
                            .map(|total| memory as f64 / total as f64 * 100.0),
                        cpu_percent,
                        open_files: group.open_files.map(|files| files as f64),
                        connections: group.tcp_sockets.map(|tcp| tcp as f64),
                        threads: Some(group.threads as f64),
                    },
                );
            }
            let running: HashSet<&AgentName> = agents.iter().map(|(agent, _, _)| agent).collect();
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
            if let Some(percent) = roster_store::disk::used_percent(path) {
                host.disk_percent.insert(path.clone(), percent);
            }
        }
        (samples, host)
    }
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

/// The process tree of one agent for an investigation: each process with
/// its memory and CPU, the open files count, then the last lines of each
/// of its `logs` (`NAME.log`, and `NAME.err.log` when stderr is separate).
pub fn investigate(agent: &str, leader: Option<u32>, logs: &[std::path::PathBuf]) -> String {
    let mut text = String::new();
    if let Some(leader) = leader {
        let page = procfs::page_size();
        let ticks_per_second = procfs::ticks_per_second() as f64;
        let sockets = procfs::tcp_socket_inodes();
        text.push_str(&format!("process group {leader} of {agent}:\n"));
        text.push_str("  PID      RSS        CPU-SECONDS  FILES  TCP  COMMAND\n");
        let mut members: Vec<(u32, procfs::ProcSample)> = procfs::sample_all()
            .into_iter()
            .filter(|(_, sample)| sample.pgid == leader)
            .collect();
        members.sort_unstable_by_key(|(pid, _)| *pid);
        for (pid, sample) in members {
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
            let (files, tcp) = procfs::count_descriptors(pid, &sockets).unwrap_or((0, 0));
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
    for (index, log) in logs.iter().enumerate() {
        if index == 0 {
            text.push_str("last log lines:\n");
        } else {
            let name = log.file_name().unwrap_or_default().to_string_lossy();
            text.push_str(&format!("last lines of {name}:\n"));
        }
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
        let everything = Readings {
            open_files: true,
            connections: true,
        };
        let (samples, host) = sampler.sample(
            &[(agent.clone(), me.pgid, everything)],
            &[PathBuf::from("/")],
        );
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
        let (again, _) = sampler.sample(&[(agent.clone(), me.pgid, Readings::default())], &[]);
        assert!(again[&agent].cpu_percent.is_some());
        assert!(again[&agent].memory_bytes.is_some());
        assert_eq!(
            (again[&agent].open_files, again[&agent].connections),
            (None, None),
            "no rule needs descriptors: none are read"
        );
        assert!(host.disk_percent[&PathBuf::from("/")] > 0.0);
        assert!(host.memory_available_percent.is_some());
        assert!(host.load1.is_some());
        drop(listener);
    }
}
