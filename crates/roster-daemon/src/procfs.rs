//! Reading /proc: process samples for status, and finding the processes a
//! roster home started (they carry `ROSTER_HOME` and `ROSTER_AGENT` in their
//! environment, which survives double forks that escape the process group).

use std::collections::HashMap;
use std::fs;

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
pub fn roster_markers(pid: u32) -> Option<(String, String)> {
    if real_uid(pid)? != nix::unistd::geteuid().as_raw() {
        return None;
    }
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
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

/// Processes started for `home` (by this or an earlier daemon), with their
/// agent names, excluding this process.
pub fn processes_of_home(home: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let (process_home, agent) = roster_markers(pid)?;
            (process_home == home).then_some((pid, agent))
        })
        .collect()
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
