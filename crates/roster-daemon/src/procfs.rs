//! Reading /proc: process samples for status, and finding the processes a
//! roster home started (they carry `ROSTER_HOME` and `ROSTER_AGENT` in their
//! environment, which survives double forks that escape the process group).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{Duration, Instant};

mod clean_pages;
mod groups;

pub use clean_pages::clean_file_ranges;
pub use groups::{GroupReader, Wanted};

/// One process, as far as status needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcSample {
    /// Parent pid.
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
    /// Start time after boot, in clock ticks: with the pid, identifies a process.
    pub start_ticks: u64,
    /// cutime + cstime: the CPU time of children it waited for, in clock ticks.
    pub children_cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
}

/// Parses `/proc/PID/stat`. The command name may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcSample> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let field = |number: usize| {
        fields
            .get(number - 3)
            .and_then(|value| value.parse::<u64>().ok())
    };
    Some(ProcSample {
        ppid: field(4)? as u32,
        pgid: field(5)? as u32,
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
        // cutime and cstime are signed in proc(5); they are never negative.
        children_cpu_ticks: field(16).unwrap_or(0) + field(17).unwrap_or(0),
        threads: field(20).unwrap_or(1),
    })
}

/// Reads one process's stat.
pub fn sample(pid: u32) -> Option<ProcSample> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process on the machine.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Samples of every process, by pid.
pub fn sample_all() -> HashMap<u32, ProcSample> {
    all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, sample(pid)?)))
        .collect()
}

/// The direct children of this process (including orphans it inherited as
/// subreaper), from `/proc/self/task/*/children`, falling back to a scan.
pub fn own_children() -> Vec<u32> {
    let me = std::process::id();
    let mut children = Vec::new();
    let mut found_any_file = false;
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                found_any_file = true;
                children.extend(
                    text.split_whitespace()
                        .filter_map(|pid| pid.parse::<u32>().ok()),
                );
            }
        }
    }
    if !found_any_file {
        children = sample_all()
            .into_iter()
            .filter(|(_, sample)| sample.ppid == me)
            .map(|(pid, _)| pid)
            .collect();
    }
    children
}

/// The real uid of a process, from the `Uid:` line of `/proc/PID/status`.
pub fn real_uid(pid: u32) -> Option<u32> {
    parse_real_uid(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The real uid in the text of `/proc/PID/status`.
pub fn parse_real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `ROSTER_HOME` and `ROSTER_AGENT` markers in a process's environment.
///
/// Any user can put these variables into a process's environment, so they
/// are trusted only on processes of the daemon's own user (real uid equal to
/// our effective uid: agents run as the daemon's user) and with a valid agent
/// name. Otherwise a local user could have a root daemon stop (or journal a
/// forged, terminal-escaping name for) a process of their choosing.
/// Processes of `agent_uids` are trusted too: the users this home's agents
/// run as (a root daemon starts them as those users). A process of one of
/// them with forged markers can only be its own.
pub fn roster_markers_of(pid: u32, agent_uids: &[u32]) -> Option<(String, String)> {
    let environ = trusted_environ(pid, agent_uids)?;
    let mut home = None;
    let mut agent = None;
    for entry in environ.split(|byte| *byte == 0) {
        if let Some(value) = entry.strip_prefix(b"ROSTER_HOME=") {
            home = Some(String::from_utf8_lossy(value).into_owned());
        } else if let Some(value) = entry.strip_prefix(b"ROSTER_AGENT=") {
            agent = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    let agent = agent?;
    roster_core::AgentName::new(&agent).ok()?;
    Some((home?, agent))
}

/// The environment variable that marks a process the daemon runs for
/// itself (an exec health check, an exec notifier) and all it starts:
/// `probe:ID` or `notify:ID`, the run. Like the agents' markers it survives
/// a double fork out of the process group, so what a run left behind is
/// found once the run has ended (`daemon/leftovers.rs`). Never inherited
/// from the daemon's environment nor set by a config.
pub const HELPER_MARKER: &str = "ROSTER_HELPER";

/// The run named by a process's `ROSTER_HELPER` marker
/// ([`HELPER_MARKER`]): the exec health check or notifier it
/// descends from. Trusted like [`roster_markers_of`]: only on processes of
/// the daemon's user or of `agent_uids`.
pub fn helper_run_of(pid: u32, agent_uids: &[u32]) -> Option<String> {
    let environ = trusted_environ(pid, agent_uids)?;
    let prefix = format!("{HELPER_MARKER}=");
    environ.split(|byte| *byte == 0).find_map(|entry| {
        let value = entry.strip_prefix(prefix.as_bytes())?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// A process's environment, when its markers may be trusted: its real uid
/// is our effective uid or one of `agent_uids`.
fn trusted_environ(pid: u32, agent_uids: &[u32]) -> Option<Vec<u8>> {
    let uid = real_uid(pid)?;
    if uid != nix::unistd::geteuid().as_raw() && !agent_uids.contains(&uid) {
        return None;
    }
    fs::read(format!("/proc/{pid}/environ")).ok()
}

/// Processes started for `home` (by this or an earlier daemon), with their
/// agent names, excluding this process.
pub fn processes_of_home(home: &str) -> Vec<(u32, String)> {
    processes_of_home_of(home, &[])
}

/// [`processes_of_home`], also trusting processes of `agent_uids`.
pub fn processes_of_home_of(home: &str, agent_uids: &[u32]) -> Vec<(u32, String)> {
    let me = std::process::id();
    let ours = same_file_id(fs::metadata(home).ok().as_ref());
    all_pids()
        .into_iter()
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let (process_home, agent) = roster_markers_of(pid, agent_uids)?;
            (process_home == home && sees_home(pid, home, ours)).then_some((pid, agent))
        })
        .collect()
}

fn same_file_id(meta: Option<&fs::Metadata>) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    meta.map(|meta| (meta.dev(), meta.ino()))
}

/// Whether `pid`'s `home` (the path as its mount namespace resolves it)
/// is this daemon's home directory. Daemons of machines that share a
/// kernel but not a filesystem (containers, the fleet tests' hosts) use
/// the same home path for different directories, and must not take each
/// other's agents for their own. When either side cannot be looked at,
/// the path alone decides, as before.
fn sees_home(pid: u32, home: &str, ours: Option<(u64, u64)>) -> bool {
    let Some(ours) = ours else { return true };
    let theirs = fs::metadata(format!("/proc/{pid}/root{home}")).ok();
    same_file_id(theirs.as_ref()).is_none_or(|theirs| theirs == ours)
}

/// What one process group uses, summed over its live members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupUsage {
    /// utime + stime of the members, plus the CPU time of the children
    /// they waited for (so a shell agent's finished commands still count).
    pub cpu_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors; `None` when they could not all be counted
    /// (no permission, or out of time).
    pub open_files: Option<u64>,
    /// TCP sockets (IPv4 and IPv6, any state) among those descriptors.
    pub tcp_sockets: Option<u64>,
}

/// A process's open descriptors and how many of them are TCP sockets
/// (their inode in `tcp`). A process that is gone has none; one whose
/// descriptors may not be read gives `None`.
pub fn count_descriptors(pid: u32, tcp: &HashSet<u64>) -> Option<(u64, u64)> {
    let directory = format!("/proc/{pid}/fd");
    let entries = match fs::read_dir(&directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Some((0, 0)),
        Err(_) => return None,
    };
    let mut files = 0;
    let mut sockets = 0;
    for entry in entries.flatten() {
        files += 1;
        if tcp.is_empty() {
            continue;
        }
        // A descriptor closed since the listing just has no link.
        if let Ok(target) = fs::read_link(entry.path()) {
            if socket_inode(target.as_os_str().as_encoded_bytes())
                .is_some_and(|inode| tcp.contains(&inode))
            {
                sockets += 1;
            }
        }
    }
    Some((files, sockets))
}

/// The inode of a descriptor's link text `socket:[INODE]`.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let inode = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inode).ok()?.parse().ok()
}

/// Inodes of every TCP socket in this network namespace.
pub fn tcp_socket_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(parse_socket_table_inodes(&text));
        }
    }
    inodes
}

/// The inode column of a `/proc/net/tcp`-style table (the tenth field;
/// the first line is the header). Inode 0 (a socket in TIME_WAIT, owned by
/// no process) is left out.
pub fn parse_socket_table_inodes(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(9)?.parse::<u64>().ok())
        .filter(|inode| *inode != 0)
}

/// An address as `/proc/net/tcp` and `tcp6` spell it: the IP as 32-bit
/// words in host (little-endian) order, in hex, then `:PORT` in hex.
pub fn socket_table_address(address: std::net::SocketAddr) -> String {
    let words: Vec<String> = match address.ip() {
        std::net::IpAddr::V4(ip) => vec![format!("{:08X}", u32::from_le_bytes(ip.octets()))],
        std::net::IpAddr::V6(ip) => ip
            .octets()
            .chunks(4)
            .map(|chunk| {
                let mut word = [0u8; 4];
                word.copy_from_slice(chunk);
                format!("{:08X}", u32::from_le_bytes(word))
            })
            .collect(),
    };
    format!("{}:{:04X}", words.concat(), address.port())
}

/// The address in a local or remote column of `/proc/net/tcp` or `tcp6`:
/// the inverse of [`socket_table_address`].
pub fn parse_table_address(text: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_le_bytes);
    let ip: std::net::IpAddr = match ip.len() {
        8 => std::net::Ipv4Addr::from(word(ip)?).into(),
        32 => {
            let mut octets = [0u8; 16];
            for (index, chunk) in octets.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(index * 8..index * 8 + 8)?)?);
            }
            std::net::Ipv6Addr::from(octets).into()
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// The inodes of the listening sockets in a `/proc/net/tcp`-style table
/// that a bind of `address` collides with: the same port, and the same IP
/// or either one unspecified (`0.0.0.0`, `::`).
pub fn parse_listeners_of(text: &str, address: std::net::SocketAddr) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // State 0A is LISTEN.
            if fields.get(3) != Some(&"0A") {
                return None;
            }
            let local = parse_table_address(fields.get(1)?)?;
            let collides = local.port() == address.port()
                && (local.ip() == address.ip()
                    || local.ip().is_unspecified()
                    || address.ip().is_unspecified());
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (collides && inode != 0).then_some(inode)
        })
        .collect()
}

/// The inodes of the connections in a `/proc/net/tcp`-style table made
/// through a listener on one of `addresses`: every state but LISTEN (0A)
/// and CLOSE (07), with the listener's port and its IP (any IP for an
/// unspecified one).
pub fn parse_connections_on(text: &str, addresses: &[std::net::SocketAddr]) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if matches!(fields.get(3), Some(&"0A") | Some(&"07") | None) {
                return None;
            }
            let local = parse_table_address(fields.get(1)?)?;
            let through = addresses.iter().any(|address| {
                local.port() == address.port()
                    && (local.ip() == address.ip() || address.ip().is_unspecified())
            });
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (through && inode != 0).then_some(inode)
        })
        .collect()
}

/// A process that holds a listening socket on `address` (or one a bind of
/// it collides with), if one can be found: the processes in `first` are
/// looked at before the others, and none after `deadline`.
pub fn listener_holder(
    address: std::net::SocketAddr,
    first: &[u32],
    deadline: Instant,
) -> Option<u32> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(parse_listeners_of(&text, address));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let rest = all_pids().into_iter().filter(|pid| !first.contains(pid));
    for pid in first.iter().copied().chain(rest) {
        if Instant::now() >= deadline {
            return None;
        }
        let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(target) = fs::read_link(entry.path()) {
                if socket_inode(target.as_os_str().as_encoded_bytes())
                    .is_some_and(|inode| inodes.contains(&inode))
                {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// A process's command name (`/proc/PID/comm`), printable characters only.
pub fn command_name(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(
        text.trim_end_matches('\n')
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

/// Which of `groups` (process-group leaders) holds the server side of the
/// connection from `client` to `server`, once a process accepted it:
/// the socket's inode from the TCP tables, then the descriptors of the
/// groups' processes. Tries until `within` has passed.
pub fn acceptor_group(
    server: std::net::SocketAddr,
    client: std::net::SocketAddr,
    groups: &[u32],
    within: Duration,
) -> Option<u32> {
    let deadline = Instant::now() + within;
    let (local, remote) = (socket_table_address(server), socket_table_address(client));
    loop {
        let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .find_map(|table| {
                let text = fs::read_to_string(table).ok()?;
                text.lines().skip(1).find_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let matches = fields.get(1) == Some(&local.as_str())
                        && fields.get(2) == Some(&remote.as_str());
                    let inode: u64 = fields.get(9)?.parse().ok()?;
                    (matches && inode != 0).then_some(inode)
                })
            });
        if let Some(inode) = inode {
            let members = sample_all();
            for (pid, sample) in members {
                if !groups.contains(&sample.pgid) {
                    continue;
                }
                let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if let Ok(target) = fs::read_link(entry.path()) {
                        if socket_inode(target.as_os_str().as_encoded_bytes()) == Some(inode) {
                            return Some(sample.pgid);
                        }
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Bytes per page, for RSS.
pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|size| size as u64)
        .unwrap_or(4096)
}

/// Clock ticks per second, for CPU time.
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|ticks| ticks as u64)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_command_name() {
        let text = "4242 (evil) name) 1 2) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000000 250 18446744073709551615";
        let sample = parse_stat(text).expect("parses");
        assert_eq!(sample.ppid, 1);
        assert_eq!(sample.pgid, 4242);
        assert_eq!(sample.cpu_ticks, 10);
        assert_eq!(sample.start_ticks, 123456);
        assert_eq!(sample.rss_pages, 250);
        assert_eq!(sample.children_cpu_ticks, 0);
        assert_eq!(sample.threads, 1);
    }

    #[test]
    fn finds_the_process_group_that_accepted_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("address");
        let client = std::net::TcpStream::connect(server).expect("connect");
        let (_accepted, _) = listener.accept().expect("accept");
        let ours = client.local_addr().expect("address");
        let group = nix::unistd::getpgrp().as_raw() as u32;
        assert_eq!(
            acceptor_group(server, ours, &[group], Duration::from_millis(200)),
            Some(group)
        );
        assert_eq!(
            acceptor_group(server, ours, &[group + 100_000], Duration::from_millis(20)),
            None
        );
        assert_eq!(
            socket_table_address("127.0.0.1:8080".parse().expect("address")),
            "0100007F:1F90"
        );
    }

    #[test]
    fn finds_who_listens_on_an_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let deadline = Instant::now() + Duration::from_secs(10);
        // The test process itself holds it (it is looked at like any other
        // process when named first).
        let me = std::process::id();
        assert_eq!(listener_holder(address, &[me], deadline), Some(me));
        let any: std::net::SocketAddr = format!("0.0.0.0:{}", address.port())
            .parse()
            .expect("address");
        assert_eq!(listener_holder(any, &[me], deadline), Some(me), "collides");
        drop(listener);
        assert_eq!(listener_holder(address, &[me], deadline), None);

        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1\n   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31338 1\n   2: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 31339 1\n";
        let at = |text: &str| text.parse::<std::net::SocketAddr>().expect("address");
        assert_eq!(parse_listeners_of(table, at("127.0.0.1:8080")), [31337]);
        assert_eq!(parse_listeners_of(table, at("127.0.0.2:8081")), [31338]);
        assert!(parse_listeners_of(table, at("127.0.0.2:8080")).is_empty());
        for text in ["127.0.0.1:8080", "[::1]:8080", "[2001:db8::7]:443"] {
            assert_eq!(
                parse_table_address(&socket_table_address(at(text))),
                Some(at(text))
            );
        }
    }

    #[test]
    fn connections_made_through_a_listener() {
        // A listener on 127.0.0.1:8080, an established and a closing
        // connection through it, one of another port, one in TIME_WAIT
        // (no inode) and a closed socket.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1\n   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 101 1\n   2: 0100007F:1F90 0100007F:9C41 08 00000000:00000000 00:00000000 00000000     0        0 102 1\n   3: 0100007F:1F91 0100007F:9C42 01 00000000:00000000 00:00000000 00000000     0        0 103 1\n   4: 0100007F:1F90 0100007F:9C43 06 00000000:00000000 00:00000000 00000000     0        0 0 1\n   5: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 104 1\n";
        let at = |text: &str| text.parse::<std::net::SocketAddr>().expect("address");
        assert_eq!(
            parse_connections_on(table, &[at("127.0.0.1:8080")]),
            [101, 102]
        );
        assert_eq!(
            parse_connections_on(table, &[at("0.0.0.0:8080"), at("127.0.0.1:8081")]),
            [101, 102, 103]
        );
        assert!(parse_connections_on(table, &[at("127.0.0.2:8080")]).is_empty());
    }

    #[test]
    fn socket_tables_and_links() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:24D8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:24D8 0100007F:9C40 06 00000000:00000000 03:00000F7A 00000000     0        0 0 3 0000000000000000\n";
        assert_eq!(
            parse_socket_table_inodes(table).collect::<Vec<_>>(),
            [31337]
        );
        assert_eq!(socket_inode(b"socket:[31337]"), Some(31337));
        assert_eq!(socket_inode(b"pipe:[31337]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[test]
    fn real_uid_is_the_first_of_four() {
        let status =
            "Name:\tsleep\nUmask:\t0022\nUid:\t1001\t0\t0\t0\nGid:\t1001\t1001\t1001\t1001\n";
        assert_eq!(parse_real_uid(status), Some(1001));
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = sample(std::process::id()).expect("own stat");
        assert!(me.rss_pages > 0);
    }
}
