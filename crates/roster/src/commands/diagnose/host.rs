//! The host's side of `diagnose`: the home's filesystem and what takes
//! space in it, memory, load, the file limit, OOM counters of the agents'
//! cgroups, and who holds an address an agent cannot bind. Plain reads of
//! /proc and /sys; the caller runs each under a timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regex::Regex;

use roster_core::api::StatusReply;
use roster_core::config::Config;
use roster_core::diagnose::{says_address_in_use, Disk, Host, Memory, PortHolder};
use roster_core::health::Check;

/// How long the walk of the home for what takes space may take.
const WALK_BUDGET: Duration = Duration::from_millis(1500);

/// The host's figures (the clock is asked separately: it runs a command).
pub fn host(home: &Path) -> Host {
    Host {
        disk: disk(home),
        memory: memory(),
        load: load(),
        cpus: std::thread::available_parallelism()
            .ok()
            .map(|cpus| cpus.get() as u64),
        open_files_limit: nix::sys::resource::getrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
        )
        .ok(),
        clock_synchronised: None,
        daemon_open_files_limit: None,
        daemon_open_files: None,
    }
}

/// The daemon's open-file limit (soft, hard) and the descriptors it holds,
/// from `/proc/PID/limits` and `/proc/PID/fd` of the pid in its lock
/// (`None` each where not readable: another user's daemon, `hidepid`).
pub fn daemon_files(lock: &Path) -> (Option<(u64, u64)>, Option<u64>) {
    let Some(pid) = std::fs::read_to_string(lock)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return (None, None);
    };
    let limit = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|text| open_files_limit(&text));
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|entries| entries.count() as u64);
    (limit, open)
}

/// `Max open files  SOFT  HARD  files` of a `/proc/PID/limits`.
fn open_files_limit(limits: &str) -> Option<(u64, u64)> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..]
        .split_whitespace()
        .map(|value| match value {
            "unlimited" => Some(u64::MAX),
            number => number.parse::<u64>().ok(),
        });
    Some((values.next()??, values.next()??))
}

fn disk(home: &Path) -> Option<Disk> {
    // A home not made yet is measured where it would be.
    let measured = home
        .ancestors()
        .find(|path| path.exists())
        .unwrap_or(Path::new("/"));
    let stat = nix::sys::statvfs::statvfs(measured).ok()?;
    let unit = stat.fragment_size() as u64;
    let mut usage = usage(home, Instant::now() + WALK_BUDGET);
    usage.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    Some(Disk {
        path: home.display().to_string(),
        total_bytes: stat.blocks() as u64 * unit,
        available_bytes: stat.blocks_available() as u64 * unit,
        used_percent: roster_store::disk::used_percent(measured).unwrap_or(0.0),
        usage,
    })
}

/// What takes space in the home: rotated logs, current logs, releases,
/// everything else. Links are not followed; the walk stops at `deadline`
/// (its figures then say "at least").
fn usage(home: &Path, deadline: Instant) -> Vec<(String, u64)> {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    let mut stack = vec![home.to_path_buf()];
    let mut cut = false;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if Instant::now() >= deadline {
                cut = true;
                break;
            }
            let path = entry.path();
            let Ok(metadata) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if metadata.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = metadata.blocks() * 512;
            let relative = path.strip_prefix(home).unwrap_or(&path);
            let mut parts = relative.iter().map(|part| part.to_string_lossy());
            let first = parts.next().unwrap_or_default();
            let name = relative
                .file_name()
                .map(|name| name.to_string_lossy())
                .unwrap_or_default();
            let kind = if first == "logs" {
                if name.ends_with(".log") {
                    "current logs"
                } else {
                    "rotated logs"
                }
            } else if first == "agents"
                && relative
                    .iter()
                    .nth(2)
                    .is_some_and(|part| part == "releases")
            {
                "releases"
            } else {
                "other files in the home"
            };
            *totals.entry(kind).or_default() += bytes;
        }
        if cut {
            break;
        }
    }
    totals
        .into_iter()
        .map(|(kind, bytes)| {
            let kind = if cut {
                format!("{kind} (at least; the walk ran out of time)")
            } else {
                kind.to_owned()
            };
            (kind, bytes)
        })
        .collect()
}

fn memory() -> Option<Memory> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some(Memory {
        total_bytes: field("MemTotal")?,
        available_bytes: field("MemAvailable")?,
        swap_total_bytes: field("SwapTotal").unwrap_or(0),
        swap_free_bytes: field("SwapFree").unwrap_or(0),
    })
}

fn load() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// OOM kills counted by the agents' cgroup v2 `memory.events`. The home's
/// cgroup is found through a running agent's `/proc/PID/cgroup` (it is
/// `.../roster-<home id>/AGENT`), so another home's cgroups are never read.
pub fn oom_kills(status: &StatusReply) -> BTreeMap<String, u64> {
    let mut kills = BTreeMap::new();
    let parent = status.agents.iter().find_map(|agent| {
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", agent.pid?)).ok()?;
        let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
        let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        (dir.file_name()? == agent.name.as_str()).then(|| dir.parent().map(Path::to_path_buf))?
    });
    let Some(parent) = parent else {
        return kills;
    };
    for agent in &status.agents {
        let Ok(text) = std::fs::read_to_string(parent.join(&agent.name).join("memory.events"))
        else {
            continue;
        };
        let count = text
            .lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if count > 0 {
            kills.insert(agent.name.clone(), count);
        }
    }
    kills
}

/// The name of this home's cgroup directory (`roster-<home id>`) as a
/// running agent's `/proc/PID/cgroup` shows it (v1 or v2): the truth when
/// the daemon saw the home under another path than this CLI does.
pub fn home_cgroup(status: &StatusReply) -> Option<String> {
    status.agents.iter().find_map(|agent| {
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", agent.pid?)).ok()?;
        home_in(&text, &agent.name)
    })
}

/// `roster-<id>` of a `/proc/PID/cgroup` whose path (any hierarchy) ends
/// in `roster-<id>/AGENT`.
fn home_in(cgroups: &str, agent: &str) -> Option<String> {
    cgroups.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let (parent, last) = path.rsplit_once('/')?;
        let home = parent.rsplit('/').next()?;
        (last == agent && home.starts_with("roster-")).then(|| home.to_owned())
    })
}

fn address_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r"(?i)(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9a-f:]+)\]|localhost|\*)?:(\d{2,5})\b|\bport (\d{2,5})\b")
            .unwrap_or_else(|_| unreachable!("a constant pattern"))
    })
}

/// The addresses named in a bind error (`127.0.0.1:8080`, `[::1]:80`,
/// `:8080`, `port 8080`); a bare port as 0.0.0.0, which matches a
/// listener on any address.
pub fn addresses_in(text: &str) -> Vec<SocketAddr> {
    address_pattern()
        .captures_iter(text)
        .filter_map(|captures| {
            let port: u16 = captures
                .get(3)
                .or_else(|| captures.get(4))?
                .as_str()
                .parse()
                .ok()?;
            let ip = if let Some(v4) = captures.get(1) {
                v4.as_str().parse::<IpAddr>().ok()?
            } else if let Some(v6) = captures.get(2) {
                v6.as_str().parse::<IpAddr>().ok()?
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            (port > 0).then_some(SocketAddr::new(ip, port))
        })
        .collect()
}

/// `host:port` as a socket address; a name as any address.
fn host_port(text: &str) -> Option<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let (_, port) = text.rsplit_once(':')?;
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port.parse().ok()?,
    ))
}

/// Per agent whose log tail or last error says its address is in use, the
/// addresses to look up: those the error names, its `[listen]` sockets,
/// its health check's address, and `*PORT*` values of its env.
pub fn wanted_addresses(
    status: Option<&StatusReply>,
    logs: &BTreeMap<String, Vec<String>>,
    config: Option<&Config>,
) -> BTreeMap<String, Vec<SocketAddr>> {
    let mut wanted = BTreeMap::new();
    let mut names: BTreeSet<&str> = logs.keys().map(String::as_str).collect();
    if let Some(status) = status {
        names.extend(status.agents.iter().map(|agent| agent.name.as_str()));
    }
    for name in names {
        let last_error = status
            .and_then(|status| status.agents.iter().find(|agent| agent.name == name))
            .and_then(|agent| agent.last_error.as_deref());
        let errors: Vec<&str> = logs
            .get(name)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .chain(last_error)
            .filter(|line| says_address_in_use(line))
            .collect();
        if errors.is_empty() {
            continue;
        }
        let mut addresses: Vec<SocketAddr> =
            errors.iter().flat_map(|line| addresses_in(line)).collect();
        if let Some(spec) = config.and_then(|config| {
            config
                .agents
                .iter()
                .find(|(agent, _)| agent.as_str() == name)
                .map(|(_, spec)| spec)
        }) {
            addresses.extend(spec.listen.values().copied());
            match spec.health.as_ref().map(|health| &health.check) {
                Some(Check::Http(target)) => addresses.extend(host_port(&target.address)),
                Some(Check::Tcp { address }) => addresses.extend(host_port(address)),
                _ => {}
            }
            for (key, value) in &spec.env {
                if key.to_ascii_uppercase().contains("PORT") {
                    if let Ok(port) = value.trim().parse::<u16>() {
                        addresses.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
                    }
                }
            }
        }
        let mut seen = BTreeSet::new();
        addresses.retain(|address| seen.insert(*address));
        wanted.insert(name.to_owned(), addresses);
    }
    wanted
}

/// Who holds each wanted address, as /proc shows it, until `deadline`.
pub fn port_holders(
    wanted: &BTreeMap<String, Vec<SocketAddr>>,
    deadline: Instant,
) -> BTreeMap<String, Vec<PortHolder>> {
    let mut holders = BTreeMap::new();
    for (agent, addresses) in wanted {
        let found: Vec<PortHolder> = addresses
            .iter()
            .map(|address| {
                let pid = roster_daemon::tools::listener_holder(*address, &[], deadline);
                PortHolder {
                    address: address.to_string(),
                    pid,
                    command: pid.and_then(roster_daemon::tools::command_name),
                }
            })
            .collect();
        holders.insert(agent.clone(), found);
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_name_their_addresses() {
        let at = |text: &str| text.parse::<SocketAddr>().expect("address");
        assert_eq!(
            addresses_in("listen tcp 127.0.0.1:8080: bind: address already in use"),
            [at("127.0.0.1:8080")]
        );
        assert_eq!(
            addresses_in("Error: listen EADDRINUSE: address already in use :::3000"),
            [at("0.0.0.0:3000")]
        );
        assert_eq!(
            addresses_in("could not bind port 9000"),
            [at("0.0.0.0:9000")]
        );
        assert_eq!(addresses_in("[::1]:8443 in use"), [at("[::1]:8443")]);
        assert!(addresses_in("OSError: [Errno 98] Address already in use").is_empty());
    }

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \nMax processes             63704                63704                processes \nMax open files            1024                 unlimited            files     \n";
        assert_eq!(open_files_limit(text), Some((1024, u64::MAX)));
        assert_eq!(open_files_limit("Max open files  x  1 files"), None);
        let lock = std::env::temp_dir().join(format!("roster-lock-{}", std::process::id()));
        std::fs::write(&lock, format!("{}\n", std::process::id())).expect("lock");
        let (limit, open) = daemon_files(&lock);
        let _ = std::fs::remove_file(&lock);
        assert_eq!(
            limit,
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()
        );
        assert!(open.is_some_and(|open| open > 0));
    }

    #[test]
    fn the_homes_cgroup_is_read_from_an_agents_cgroup_file() {
        let v1 = "12:pids:/process_api/ab/roster-a2a5b057/leak\n4:memory:/process_api/ab/roster-a2a5b057/leak\n1:name=systemd:/process_api/ab\n";
        assert_eq!(home_in(v1, "leak").as_deref(), Some("roster-a2a5b057"));
        let v2 = "0::/system.slice/roster.service/roster-0000beef/web\n";
        assert_eq!(home_in(v2, "web").as_deref(), Some("roster-0000beef"));
        assert_eq!(home_in(v2, "db"), None, "another agent's");
        assert_eq!(home_in("0::/user.slice/web\n", "web"), None);
        assert_eq!(home_in("garbage", "web"), None);
    }

    #[test]
    fn the_host_is_read() {
        let host = host(Path::new("/tmp"));
        assert!(host.memory.is_some_and(|memory| memory.total_bytes > 0));
        assert!(host.disk.is_some_and(|disk| disk.total_bytes > 0));
        assert!(host.load.is_some());
    }
}
