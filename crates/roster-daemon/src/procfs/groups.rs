//! Reading process groups again and again (the watch sampler every few
//! seconds, `/metrics` at each scrape) while paying only for what changed.
//!
//! - Members: a group's members are found by one scan of every
//!   `/proc/PID/stat` on the machine; between scans only the known members
//!   are read. No process can have joined a group without a new process
//!   being created, which moves the last pid the kernel handed out
//!   (`/proc/loadavg`), so the scan is repeated only when that moved, a
//!   group is new, or [`RESCAN_EVERY`] passed (for the rare `setpgid` of
//!   an existing process into a group).
//! - Open descriptors: the size the kernel gives `/proc/PID/fd` (the
//!   number of open descriptors, since Linux 6.2), one `stat`; listing the
//!   directory only on older kernels.
//! - TCP sockets: only for groups whose rules (or scrape) want them, by
//!   reading each descriptor's link and matching socket inodes against
//!   `/proc/net/tcp` and `tcp6`, which are read only when a descriptor is a
//!   socket (each read of them walks the kernel's whole connection table).
//!   A process that used no CPU time and holds as many descriptors as at
//!   its last count cannot have opened or closed any since: its count is
//!   kept, and taken again at least every [`RECOUNT_EVERY`].
//! - Idle groups (the watch sampler's reader only, [`GroupReader::skipping_idle`]):
//!   a group whose CPU time and members did not change over
//!   [`QUIET_READS`] reads in a row is read only every
//!   [`SKIPS`]` + 1`th time; in between its last figures stand. A process
//!   cannot grow its memory or open descriptors without using CPU time, so
//!   what is missed is at most the little it did within one clock tick,
//!   and is seen [`SKIPS`] reads later. A scan for members reads
//!   everything.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::time::{Duration, Instant};

use super::{parse_stat, socket_inode, GroupUsage, ProcSample};

/// The longest a group's membership is trusted without a scan of /proc.
pub const RESCAN_EVERY: Duration = Duration::from_secs(60);

/// The longest an idle process's TCP count is kept without counting again.
pub const RECOUNT_EVERY: Duration = Duration::from_secs(60);

/// Reads in a row without a change before a group counts as idle.
pub const QUIET_READS: u32 = 2;

/// Reads an idle group sits out between two reads of it.
pub const SKIPS: u32 = 2;

/// What to read of a group beyond its `stat` figures (CPU, memory,
/// threads), which cost nothing more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Open descriptors.
    pub open_files: bool,
    /// TCP sockets among them.
    pub connections: bool,
}

impl Wanted {
    /// Everything (a scrape).
    pub const ALL: Wanted = Wanted {
        open_files: true,
        connections: true,
    };
}

/// A process's TCP count and what it was taken with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counted {
    start_ticks: u64,
    cpu_ticks: u64,
    files: u64,
    tcp: u64,
    at: Instant,
}

/// A group's last figures and how long they have not changed.
#[derive(Clone, Copy, Debug)]
struct Quiet {
    usage: GroupUsage,
    members: usize,
    /// Reads in a row that found the same CPU time and members.
    unchanged: u32,
    /// Reads sat out since the group was last read.
    skipped: u32,
}

impl Quiet {
    /// A group just read, after `last` (its figures at its previous read).
    fn after_read(last: Option<&Quiet>, usage: GroupUsage, members: usize) -> Quiet {
        let unchanged = match last {
            Some(last) if last.usage.cpu_ticks == usage.cpu_ticks && last.members == members => {
                last.unchanged + 1
            }
            _ => 0,
        };
        Quiet {
            usage,
            members,
            unchanged,
            skipped: 0,
        }
    }

    /// Whether the group sits the coming read out (and counts it if so).
    fn rest(&mut self) -> bool {
        let rests = self.unchanged >= QUIET_READS && self.skipped < SKIPS;
        if rests {
            self.skipped += 1;
        }
        rests
    }
}

/// Reads process groups, remembering members and counts between reads.
#[derive(Debug, Default)]
pub struct GroupReader {
    /// Members of the groups asked for, as of the last read.
    members: HashMap<u32, Vec<u32>>,
    /// The last pid handed out before the last scan, and when it ran.
    scanned: Option<(u32, Instant)>,
    /// TCP counts by pid.
    counted: HashMap<u32, Counted>,
    /// Whether idle groups are read less often, and their last figures.
    skip_idle: bool,
    quiet: HashMap<u32, Quiet>,
    /// The groups that sat the last read out.
    rested: HashSet<u32>,
    /// Full scans of /proc so far (for tests and the curious).
    pub scans: u64,
    /// Descriptor tables read link by link so far.
    pub recounts: u64,
    /// Reads of a group sat out because it was idle.
    pub skipped: u64,
}

/// Whether /proc must be scanned for members: never scanned, the last pid
/// handed out is unknown or moved, a group is not known, or the scan is
/// older than [`RESCAN_EVERY`].
pub fn must_rescan(
    scanned: Option<(u32, Instant)>,
    last_pid: Option<u32>,
    all_known: bool,
    now: Instant,
) -> bool {
    match (scanned, last_pid) {
        (Some((then, at)), Some(last)) => {
            then != last || !all_known || now.saturating_duration_since(at) >= RESCAN_EVERY
        }
        _ => true,
    }
}

/// Whether a process's previous TCP count still holds: the same process
/// (start time), no CPU time used since, as many descriptors, and counted
/// within [`RECOUNT_EVERY`].
fn still_holds(previous: &Counted, sample: &ProcSample, files: u64, now: Instant) -> bool {
    previous.start_ticks == sample.start_ticks
        && previous.cpu_ticks == sample.cpu_ticks
        && previous.files == files
        && now.saturating_duration_since(previous.at) < RECOUNT_EVERY
}

impl GroupReader {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader that reads idle groups less often (see the module's doc):
    /// for the watch sampler, whose rules look at minutes, not at the
    /// figures of one read as a scrape does.
    pub fn skipping_idle() -> Self {
        GroupReader {
            skip_idle: true,
            ..Self::default()
        }
    }

    /// Samples the groups `wanted` names (by leader) and what each wants.
    /// Past `deadline` the descriptors of the processes not yet done are
    /// left uncounted (`None`): a scrape answers in bounded time.
    pub fn read(
        &mut self,
        wanted: &HashMap<u32, Wanted>,
        deadline: Instant,
    ) -> HashMap<u32, GroupUsage> {
        let now = Instant::now();
        let mut found: HashMap<u32, Vec<(u32, ProcSample)>> = HashMap::new();
        if wanted.is_empty() {
            self.members.clear();
            self.counted.clear();
            return HashMap::new();
        }
        let last_pid = last_pid();
        let all_known = wanted.keys().all(|group| self.members.contains_key(group));
        let mut buffer = [0u8; 1024];
        let rescan = must_rescan(self.scanned, last_pid, all_known, now);
        // Idle groups sitting this read out: their last figures stand.
        let mut resting: HashMap<u32, GroupUsage> = HashMap::new();
        if self.skip_idle && !rescan {
            for group in wanted.keys() {
                if let Some(quiet) = self.quiet.get_mut(group) {
                    if quiet.rest() {
                        self.skipped += 1;
                        resting.insert(*group, quiet.usage);
                    }
                }
            }
        }
        if rescan {
            self.scans += 1;
            for pid in super::all_pids() {
                let Some(sample) = read_stat(pid, &mut buffer) else {
                    continue;
                };
                if wanted.contains_key(&sample.pgid) {
                    found.entry(sample.pgid).or_default().push((pid, sample));
                }
            }
            self.scanned = last_pid.map(|last| (last, now));
        } else {
            for group in wanted.keys().filter(|group| !resting.contains_key(group)) {
                for pid in self.members.get(group).into_iter().flatten() {
                    match read_stat(*pid, &mut buffer) {
                        Some(sample) if sample.pgid == *group => {
                            found.entry(*group).or_default().push((*pid, sample));
                        }
                        _ => {}
                    }
                }
            }
        }
        let previous_members = std::mem::take(&mut self.members);
        self.members = wanted
            .keys()
            .map(|group| {
                let pids = if resting.contains_key(group) {
                    previous_members.get(group).cloned().unwrap_or_default()
                } else {
                    found
                        .get(group)
                        .map(|members| members.iter().map(|(pid, _)| *pid).collect())
                        .unwrap_or_default()
                };
                (*group, pids)
            })
            .collect();

        let mut tcp: Option<HashSet<u64>> = None;
        let mut counted = HashMap::new();
        let mut usage = HashMap::new();
        for (group, members) in &found {
            let want = wanted.get(group).copied().unwrap_or_default();
            let mut total = GroupUsage {
                open_files: want.open_files.then_some(0),
                tcp_sockets: want.connections.then_some(0),
                ..GroupUsage::default()
            };
            for (pid, sample) in members {
                total.cpu_ticks += sample.cpu_ticks + sample.children_cpu_ticks;
                total.rss_pages += sample.rss_pages;
                total.threads += sample.threads;
                if !want.open_files && !want.connections {
                    continue;
                }
                let files = if Instant::now() < deadline {
                    open_descriptors(*pid)
                } else {
                    None
                };
                let sockets = match files {
                    None => None,
                    Some(_) if !want.connections => Some(0),
                    Some(files) => match self.counted.get(pid) {
                        Some(previous) if still_holds(previous, sample, files, now) => {
                            counted.insert(*pid, *previous);
                            Some(previous.tcp)
                        }
                        _ => {
                            self.recounts += 1;
                            let count = count_tcp(*pid, &mut tcp);
                            if let Some(count) = count {
                                counted.insert(
                                    *pid,
                                    Counted {
                                        start_ticks: sample.start_ticks,
                                        cpu_ticks: sample.cpu_ticks,
                                        files,
                                        tcp: count,
                                        at: now,
                                    },
                                );
                            }
                            count
                        }
                    },
                };
                match (files, sockets) {
                    (Some(files), Some(sockets)) => {
                        total.open_files = total.open_files.map(|sum| sum + files);
                        total.tcp_sockets = total.tcp_sockets.map(|sum| sum + sockets);
                    }
                    _ => {
                        total.open_files = None;
                        total.tcp_sockets = None;
                    }
                }
            }
            usage.insert(*group, total);
        }
        // The resting groups' TCP counts are kept for their next read.
        for group in resting.keys() {
            for pid in self.members.get(group).into_iter().flatten() {
                if let Some(previous) = self.counted.get(pid) {
                    counted.insert(*pid, *previous);
                }
            }
        }
        self.counted = counted;
        if self.skip_idle {
            self.note_quiet(&found, &usage);
            self.rested = resting.keys().copied().collect();
            usage.extend(resting);
        }
        usage
    }

    /// Whether `group` sat the last read out: its figures are those of an
    /// earlier read (it was idle).
    pub fn rested(&self, group: u32) -> bool {
        self.rested.contains(&group)
    }

    /// Remembers each group just read, and whether it changed since its
    /// last read; forgets groups no longer asked for.
    fn note_quiet(
        &mut self,
        found: &HashMap<u32, Vec<(u32, ProcSample)>>,
        usage: &HashMap<u32, GroupUsage>,
    ) {
        self.quiet
            .retain(|group, _| self.members.contains_key(group));
        for (group, total) in usage {
            let members = found.get(group).map_or(0, Vec::len);
            let quiet = Quiet::after_read(self.quiet.get(group), *total, members);
            self.quiet.insert(*group, quiet);
        }
    }
}

/// The last pid the kernel handed out in this pid namespace (the fifth
/// field of `/proc/loadavg`).
pub fn last_pid() -> Option<u32> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().nth(4)?.parse().ok()
}

/// One `/proc/PID/stat`, read into `buffer` without asking its size (the
/// file is small: one `read` gives all of it, a second only when it fills
/// the buffer).
fn read_stat(pid: u32, buffer: &mut [u8; 1024]) -> Option<ProcSample> {
    let mut file = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut length = 0;
    while length < buffer.len() {
        match file.read(&mut buffer[length..]) {
            Ok(0) => break,
            Ok(read) => {
                length += read;
                if buffer[..length].ends_with(b"\n") {
                    break;
                }
            }
            Err(_) => return None,
        }
    }
    parse_stat(std::str::from_utf8(&buffer[..length]).ok()?)
}

/// A process's open descriptors: the size of `/proc/PID/fd` where the
/// kernel gives it, else the directory listed. A process that is gone has
/// none; `None` when they may not be read.
fn open_descriptors(pid: u32) -> Option<u64> {
    let directory = format!("/proc/{pid}/fd");
    match fs::metadata(&directory) {
        Ok(metadata) if metadata.len() > 0 => return Some(metadata.len()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Some(0),
        Err(_) => return None,
    }
    match fs::read_dir(&directory) {
        Ok(entries) => Some(entries.flatten().count() as u64),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    }
}

/// A process's TCP sockets: its socket descriptors' inodes found in the
/// TCP tables, which are read (once per [`GroupReader::read`], into `tcp`)
/// only when it holds a socket at all.
fn count_tcp(pid: u32, tcp: &mut Option<HashSet<u64>>) -> Option<u64> {
    let entries = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Some(0),
        Err(_) => return None,
    };
    let mut sockets = 0;
    for entry in entries.flatten() {
        // A descriptor closed since the listing just has no link.
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let Some(inode) = socket_inode(target.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        if tcp
            .get_or_insert_with(super::tcp_socket_inodes)
            .contains(&inode)
        {
            sockets += 1;
        }
    }
    Some(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescans_only_when_a_process_may_have_joined() {
        let start = Instant::now();
        let later = start + Duration::from_secs(5);
        assert!(must_rescan(None, Some(7), true, start), "never scanned");
        assert!(must_rescan(Some((7, start)), None, true, later), "unknown");
        assert!(!must_rescan(Some((7, start)), Some(7), true, later));
        assert!(
            must_rescan(Some((7, start)), Some(8), true, later),
            "a new process"
        );
        assert!(
            must_rescan(Some((7, start)), Some(7), false, later),
            "a new group"
        );
        assert!(must_rescan(
            Some((7, start)),
            Some(7),
            true,
            start + RESCAN_EVERY
        ));
    }

    #[test]
    fn keeps_a_tcp_count_only_while_the_process_is_idle() {
        let start = Instant::now();
        let sample = ProcSample {
            ppid: 1,
            pgid: 10,
            cpu_ticks: 5,
            rss_pages: 100,
            start_ticks: 42,
            children_cpu_ticks: 0,
            threads: 1,
        };
        let previous = Counted {
            start_ticks: 42,
            cpu_ticks: 5,
            files: 4,
            tcp: 1,
            at: start,
        };
        let soon = start + Duration::from_secs(5);
        assert!(still_holds(&previous, &sample, 4, soon));
        assert!(
            !still_holds(&previous, &sample, 5, soon),
            "a descriptor more"
        );
        let busy = ProcSample {
            cpu_ticks: 6,
            ..sample
        };
        assert!(!still_holds(&previous, &busy, 4, soon), "it ran");
        let other = ProcSample {
            start_ticks: 43,
            ..sample
        };
        assert!(!still_holds(&previous, &other, 4, soon), "another process");
        assert!(!still_holds(&previous, &sample, 4, start + RECOUNT_EVERY));
    }

    #[test]
    fn an_idle_group_is_read_every_third_time_and_a_busy_one_every_time() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let spawn = |script: &str| {
            Command::new("sh")
                .args(["-c", script])
                .process_group(0)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn sh")
        };
        let mut idle = spawn("exec sleep 60");
        let mut busy = spawn("while :; do :; done");
        let (idle_group, busy_group) = (idle.id(), busy.id());
        let mut reader = GroupReader::skipping_idle();
        let far = || Instant::now() + Duration::from_secs(10);
        let wanted = HashMap::from([
            (idle_group, Wanted::default()),
            (busy_group, Wanted::default()),
        ]);
        // Past the idle one's start-up (exec of sleep).
        std::thread::sleep(Duration::from_millis(200));
        let mut rested = Vec::new();
        for _ in 0..9 {
            // Spin long enough for the busy group to use a clock tick.
            std::thread::sleep(Duration::from_millis(30));
            let usage = reader.read(&wanted, far());
            assert!(usage[&idle_group].rss_pages > 0, "{usage:?}");
            assert!(
                !reader.rested(busy_group),
                "a busy group is read every time"
            );
            rested.push(reader.rested(idle_group));
        }
        let _ = (idle.kill(), busy.kill(), idle.wait(), busy.wait());
        // Scans for members (other tests fork) read everything; apart from
        // those, after two unchanged reads the idle group sits out two.
        if reader.scans == 1 {
            assert_eq!(
                rested,
                [false, false, false, true, true, false, true, true, false],
                "first read, two unchanged reads, then two rests per read"
            );
        }
        assert!(reader.skipped <= 6);
    }

    #[test]
    fn a_group_rests_two_reads_after_two_unchanged_ones_until_it_changes() {
        let usage = |cpu_ticks| GroupUsage {
            cpu_ticks,
            ..GroupUsage::default()
        };
        // Reads as `read` makes them: rest if the group may, else read.
        let mut quiet: Option<Quiet> = None;
        let mut rested = Vec::new();
        for ticks in [5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6] {
            if let Some(state) = quiet.as_mut() {
                if state.rest() {
                    rested.push(true);
                    continue;
                }
            }
            rested.push(false);
            quiet = Some(Quiet::after_read(quiet.as_ref(), usage(ticks), 1));
        }
        // Reads 1-3 establish it idle; it rests 4-5, is read at 6, rests
        // 7-8 (the change at 8 waits for the read at 9), then starts over.
        assert_eq!(
            rested,
            [false, false, false, true, true, false, true, true, false, false, false]
        );
        // A member more is a change too.
        let one = Quiet::after_read(None, usage(5), 1);
        let same = Quiet::after_read(Some(&one), usage(5), 1);
        assert_eq!(same.unchanged, 1);
        assert_eq!(Quiet::after_read(Some(&same), usage(5), 2).unchanged, 0);
    }

    #[test]
    fn reads_what_each_group_wants() {
        let me = super::super::sample(std::process::id()).expect("own stat");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut reader = GroupReader::new();
        let far = || Instant::now() + Duration::from_secs(10);
        let all = HashMap::from([(me.pgid, Wanted::ALL)]);
        let first = reader.read(&all, far())[&me.pgid];
        assert!(first.rss_pages > 0 && first.threads >= 1);
        assert!(
            first.open_files.is_some_and(|files| files >= 3),
            "{first:?}"
        );
        assert!(
            first.tcp_sockets.is_some_and(|tcp| tcp >= 1),
            "the listener"
        );
        assert_eq!(reader.scans, 1);
        // Only what is wanted is read.
        let stat_only = HashMap::from([(me.pgid, Wanted::default())]);
        let lean = reader.read(&stat_only, far())[&me.pgid];
        assert_eq!((lean.open_files, lean.tcp_sockets), (None, None));
        assert!(lean.rss_pages > 0);
        // Out of time: descriptors unknown, the rest read.
        let late = reader.read(&all, Instant::now())[&me.pgid];
        assert_eq!((late.open_files, late.tcp_sockets), (None, None));
        assert!(late.threads >= 1);
        drop(listener);
    }
}
