//! Per-agent cgroups: limits (`memory_max`, `cpu_quota`, `tasks_max`) and OOM detection.
//!
//! Agents' cgroups go under the daemon's OWN cgroup (`/proc/self/cgroup`), as
//! `<own>/roster-<home id>/AGENT`: that is what a service manager delegates
//! (systemd `Delegate=yes`), it needs no write access to the hierarchy's root,
//! and two homes never collide. `detect` (once, at start) takes cgroup v2 when a
//! `cgroup2` mount offers memory, cpu or pids there (a daemon alone in its v2
//! cgroup moves into `roster-<id>/_daemon`, no agent's name, so controllers can
//! be enabled below it); else v1, per controller (memory, cpu, pids); else none,
//! with the reason. A missing controller falls back to an rlimit the exec shim
//! sets (memory: RLIMIT_AS; tasks: RLIMIT_NPROC, per user); `cpu_quota` has no
//! rlimit and is reported unenforced. `nofile` is always an rlimit.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use roster_core::hardening::Limits;

/// The cgroup controllers roster uses.
const CONTROLLERS: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

/// CFS period written with every CPU quota, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// The leaf a daemon alone in its v2 cgroup moves into (agent names start
/// with a letter or digit, so no agent is ever called this).
const DAEMON_LEAF: &str = "_daemon";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V2,
    V1,
}

/// Where this daemon may create agents' cgroups, found once at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cgroups {
    /// `None`: no usable hierarchy.
    version: Option<Version>,
    /// Per controller, the `roster-<id>` directory agents' cgroups go
    /// under (v2: the same directory for each enabled controller).
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
    pids: Option<PathBuf>,
}

/// How an agent's limits are enforced, as `status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// A cgroup v2 (at least one controller).
    Cgroup2,
    /// cgroup v1 hierarchies (at least one controller).
    Cgroup1,
    /// Only rlimits.
    Rlimits,
    /// Nothing: no limits, or none that can be enforced.
    None,
}

impl Enforcement {
    /// The name `status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Cgroup2 => "cgroup2",
            Enforcement::Cgroup1 => "cgroup1",
            Enforcement::Rlimits => "rlimit",
            Enforcement::None => "none",
        }
    }
}

/// An rlimit the exec shim sets on the agent (soft and hard alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RlimitKind {
    /// RLIMIT_AS: address space, for `memory_max` without a memory controller.
    AddressSpace,
    /// RLIMIT_NPROC: processes of the user, for `tasks_max` without pids.
    Processes,
    /// RLIMIT_NOFILE: open files (`nofile`, always an rlimit).
    OpenFiles,
}

/// What `prepare` set up for one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Cgroup directories a new process joins (writes its pid to
    /// `DIR/cgroup.procs`) before exec, and before it drops root: joining
    /// needs write access to `cgroup.procs`.
    pub join: Vec<PathBuf>,
    /// How the limits are enforced.
    pub enforcement: Enforcement,
    /// Limits to set as rlimits instead (and `nofile`).
    pub rlimits: Vec<(RlimitKind, u64)>,
    /// Limits set in the config that nothing enforces here, by config key.
    pub unenforced: Vec<&'static str>,
}

impl Cgroups {
    /// No cgroups: every limit falls back to rlimits.
    pub fn none() -> Cgroups {
        Cgroups::default()
    }

    /// Detects v2 or v1 under the daemon's own cgroup and checks that it
    /// can create `roster-<home_id>` there. Returns `Cgroups::none()` with
    /// the reason when it cannot; the reason is also given when only some
    /// controllers are usable.
    pub fn detect(home_id: &str) -> (Cgroups, Option<String>) {
        let mountinfo = match fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => text,
            Err(error) => {
                return (
                    Cgroups::none(),
                    Some(format!(
                        "cannot read /proc/self/mountinfo: {error}; is /proc mounted?"
                    )),
                )
            }
        };
        let membership = match fs::read_to_string("/proc/self/cgroup") {
            Ok(text) => text,
            Err(error) => {
                return (
                    Cgroups::none(),
                    Some(format!(
                        "cannot read /proc/self/cgroup: {error}; is /proc mounted?"
                    )),
                )
            }
        };
        Cgroups::detect_from(home_id, &mountinfo, &membership, std::process::id())
    }

    /// `detect` on given `/proc/self/mountinfo` and `/proc/self/cgroup` texts.
    fn detect_from(
        home_id: &str,
        mountinfo: &str,
        membership: &str,
        pid: u32,
    ) -> (Cgroups, Option<String>) {
        if !is_component(home_id) {
            return (
                Cgroups::none(),
                Some(format!("home id {home_id:?} cannot be a directory name")),
            );
        }
        let mounts = parse_mountinfo(mountinfo);
        let own = parse_membership(membership);
        let mut reasons = Vec::new();
        if let Some(mount) = mounts.iter().find(|mount| mount.fstype == "cgroup2") {
            match detect_v2(home_id, mount, &own, pid) {
                Ok(found) => return found,
                Err(reason) => reasons.push(reason),
            }
        } else {
            reasons.push("no cgroup2 mount".to_owned());
        }
        match detect_v1(home_id, &mounts, &own) {
            Ok(found) => found,
            Err(reason) => {
                reasons.push(reason);
                (Cgroups::none(), Some(reasons.join("; ")))
            }
        }
    }

    /// What `status` reports for agents with cgroups (`None`: rlimits only).
    pub fn version(&self) -> Option<Enforcement> {
        match self.version? {
            Version::V2 => Some(Enforcement::Cgroup2),
            Version::V1 => Some(Enforcement::Cgroup1),
        }
    }

    /// One line for the journal: the version and where each controller's
    /// agent cgroups go, e.g. `cgroup1: memory at /sys/fs/cgroup/memory/roster-ab12, ...`.
    pub fn summary(&self) -> String {
        let Some(version) = self.version() else {
            return "no cgroups: limits are rlimits".to_owned();
        };
        let places: Vec<String> = CONTROLLERS
            .into_iter()
            .map(|controller| match self.base(controller) {
                Some(base) => format!("{} at {}", controller.name(), base.display()),
                None => format!("no {}", controller.name()),
            })
            .collect();
        format!("{}: {}", version.as_str(), places.join(", "))
    }

    fn base(&self, controller: Controller) -> Option<&Path> {
        match controller {
            Controller::Memory => self.memory.as_deref(),
            Controller::Cpu => self.cpu.as_deref(),
            Controller::Pids => self.pids.as_deref(),
        }
    }

    /// The distinct `roster-<id>` directories.
    fn bases(&self) -> Vec<&Path> {
        let mut bases: Vec<&Path> = Vec::new();
        for controller in CONTROLLERS {
            if let Some(base) = self.base(controller) {
                if !bases.contains(&base) {
                    bases.push(base);
                }
            }
        }
        bases
    }

    /// The agent's cgroup directory for `controller`.
    fn agent_dir(&self, controller: Controller, agent: &str) -> Option<PathBuf> {
        Some(self.base(controller)?.join(agent))
    }

    /// The agent's distinct cgroup directories.
    fn agent_dirs(&self, agent: &str) -> Vec<PathBuf> {
        if !is_component(agent) {
            return Vec::new();
        }
        self.bases()
            .into_iter()
            .map(|base| base.join(agent))
            .collect()
    }

    /// Creates (or reuses) the agent's cgroup(s) and writes its limits (a
    /// limit not set is written as "max"/-1, so removing it from the config
    /// takes effect). Limits the hierarchy lacks become rlimits.
    pub fn prepare(&self, agent: &str, limits: &Limits) -> Result<Prepared, String> {
        if !is_component(agent) {
            return Err(format!(
                "agent name {agent:?} cannot be a cgroup directory name"
            ));
        }
        let join = self.agent_dirs(agent);
        for dir in &join {
            create_dir(dir)?;
        }
        let mut rlimits = Vec::new();
        let mut unenforced = Vec::new();
        let v1 = self.version == Some(Version::V1);

        match self.agent_dir(Controller::Memory, agent) {
            Some(dir) if v1 => write_v1_memory(&dir, limits.memory_max)?,
            Some(dir) => {
                write_file(&dir.join("memory.max"), &max_or(limits.memory_max))?;
                // Like v1's memsw limit: the memory limit includes swap.
                let swap = if limits.memory_max.is_some() {
                    "0"
                } else {
                    "max"
                };
                write_optional(&dir.join("memory.swap.max"), swap)?;
            }
            None => {
                if let Some(bytes) = limits.memory_max {
                    rlimits.push((RlimitKind::AddressSpace, bytes));
                }
            }
        }
        let quota = limits
            .cpu_quota
            .map(|percent| u64::from(percent) * CPU_PERIOD_US / 100);
        match self.agent_dir(Controller::Cpu, agent) {
            Some(dir) if v1 => {
                write_file(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                let quota = quota.map_or("-1".to_owned(), |quota| quota.to_string());
                write_file(&dir.join("cpu.cfs_quota_us"), &quota)?;
            }
            Some(dir) => write_file(
                &dir.join("cpu.max"),
                &format!("{} {CPU_PERIOD_US}", max_or(quota)),
            )?,
            None => {
                if limits.cpu_quota.is_some() {
                    unenforced.push("cpu_quota");
                }
            }
        }
        match self.agent_dir(Controller::Pids, agent) {
            Some(dir) => write_file(&dir.join("pids.max"), &max_or(limits.tasks_max))?,
            None => {
                if let Some(tasks) = limits.tasks_max {
                    rlimits.push((RlimitKind::Processes, tasks));
                }
            }
        }
        if let Some(files) = limits.nofile {
            rlimits.push((RlimitKind::OpenFiles, files));
        }
        let enforcement = match self.version() {
            Some(version) => version,
            None if !rlimits.is_empty() => Enforcement::Rlimits,
            None => Enforcement::None,
        };
        Ok(Prepared {
            join,
            enforcement,
            rlimits,
            unenforced,
        })
    }

    /// OOM kills in the agent's memory cgroup so far (v2: `memory.events`,
    /// v1: `memory.oom_control`, kernels >= 4.13); `None` without a memory
    /// cgroup or the counter.
    pub fn oom_kills(&self, agent: &str) -> Option<u64> {
        if !is_component(agent) {
            return None;
        }
        let dir = self.agent_dir(Controller::Memory, agent)?;
        let file = match self.version? {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        let text = fs::read_to_string(dir.join(file)).ok()?;
        parse_key(&text, "oom_kill")
    }

    /// SIGKILLs every process left in the agent's cgroup(s); returns how many.
    /// The tests clean up with it; the daemon does not call it yet.
    #[allow(dead_code)]
    pub fn kill_all(&self, agent: &str) -> usize {
        let mut killed: HashSet<i32> = HashSet::new();
        let me = std::process::id() as i32;
        // A few passes: a process may fork between reading and killing.
        for _ in 0..4 {
            let mut found = false;
            for dir in self.agent_dirs(agent) {
                let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) else {
                    continue;
                };
                for pid in text
                    .lines()
                    .filter_map(|line| line.trim().parse::<i32>().ok())
                {
                    if pid <= 1 || pid == me || killed.contains(&pid) {
                        continue;
                    }
                    found = true;
                    let target = nix::unistd::Pid::from_raw(pid);
                    if nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL).is_ok() {
                        killed.insert(pid);
                    }
                }
            }
            if !found {
                break;
            }
        }
        killed.len()
    }

    /// Removes the agent's cgroup directories if they are empty (EBUSY
    /// while processes remain, which is fine).
    pub fn remove(&self, agent: &str) {
        for dir in self.agent_dirs(agent) {
            remove_dir(&dir);
        }
    }

    /// Removes every (empty) agent cgroup and the `roster-<id>` parents, at
    /// shutdown.
    pub fn remove_all(&self) {
        for base in self.bases() {
            if let Ok(entries) = fs::read_dir(base) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                        remove_dir(&entry.path());
                    }
                }
            }
            remove_dir(base);
        }
    }
}

/// v2: enables memory, cpu and pids below the daemon's cgroup.
fn detect_v2(
    home_id: &str,
    mount: &Mount,
    own: &[(Vec<String>, String)],
    pid: u32,
) -> Result<(Cgroups, Option<String>), String> {
    let path = own
        .iter()
        .find(|(controllers, _)| controllers.is_empty())
        .map(|(_, path)| path.as_str())
        .ok_or("cgroup v2: /proc/self/cgroup has no \"0::\" line")?;
    let own_dir = locate(mount, path).ok_or_else(|| {
        format!(
            "cgroup v2: the daemon's cgroup {path} is outside the mount at {}",
            mount.point.display()
        )
    })?;
    let offered = fs::read_to_string(own_dir.join("cgroup.controllers")).map_err(|error| {
        format!(
            "cgroup v2: cannot read {}: {error}",
            own_dir.join("cgroup.controllers").display()
        )
    })?;
    let offered: Vec<Controller> = CONTROLLERS
        .into_iter()
        .filter(|controller| {
            offered
                .split_whitespace()
                .any(|word| word == controller.name())
        })
        .collect();
    if offered.is_empty() {
        return Err(format!(
            "cgroup v2: no memory, cpu or pids controller at {} (not delegated)",
            own_dir.display()
        ));
    }
    let base = own_dir.join(format!("roster-{home_id}"));
    create_dir(&base).map_err(|error| format!("cgroup v2: {error}"))?;
    // Controllers are enabled for the children of own_dir, which then may
    // hold no process itself (unless it is the root): a daemon alone in
    // it moves into a leaf of its own.
    let subtree = own_dir.join("cgroup.subtree_control");
    let enable = |file: &Path, controller: Controller| {
        write_file_raw(file, &format!("+{}", controller.name()))
    };
    if let Err(error) = enable(&subtree, offered[0]) {
        if error.raw_os_error() != Some(libc::EBUSY) {
            return Err(format!(
                "cgroup v2: cannot enable {} in {}: {error}; delegate the daemon's cgroup (systemd: Delegate=yes)",
                offered[0].name(),
                subtree.display()
            ));
        }
        let procs = fs::read_to_string(own_dir.join("cgroup.procs")).unwrap_or_default();
        let others = procs
            .split_whitespace()
            .any(|other| other != pid.to_string());
        if others {
            return Err(format!(
                "cgroup v2: {} holds other processes than the daemon, so no controller can be enabled below it; run the daemon in a cgroup of its own (systemd service or `systemd-run --user -p Delegate=yes`)",
                own_dir.display()
            ));
        }
        let leaf = base.join(DAEMON_LEAF);
        create_dir(&leaf).map_err(|error| format!("cgroup v2: {error}"))?;
        write_file(&leaf.join("cgroup.procs"), &pid.to_string())
            .map_err(|error| format!("cgroup v2: moving the daemon: {error}"))?;
    }
    let mut enabled = Vec::new();
    let mut notes = Vec::new();
    for controller in offered {
        let result = enable(&subtree, controller)
            .and_then(|()| enable(&base.join("cgroup.subtree_control"), controller));
        match result {
            Ok(()) => enabled.push(controller),
            Err(error) => notes.push(format!(
                "cgroup v2: cannot enable {} below {}: {error}",
                controller.name(),
                own_dir.display()
            )),
        }
    }
    if enabled.is_empty() {
        return Err(notes.join("; "));
    }
    let pick = |controller: Controller| enabled.contains(&controller).then(|| base.clone());
    let cgroups = Cgroups {
        version: Some(Version::V2),
        memory: pick(Controller::Memory),
        cpu: pick(Controller::Cpu),
        pids: pick(Controller::Pids),
    };
    notes.extend(missing_note(&cgroups));
    Ok((cgroups, (!notes.is_empty()).then(|| notes.join("; "))))
}

/// v1: per controller, `roster-<id>` under the daemon's cgroup in its hierarchy.
fn detect_v1(
    home_id: &str,
    mounts: &[Mount],
    own: &[(Vec<String>, String)],
) -> Result<(Cgroups, Option<String>), String> {
    let mut cgroups = Cgroups {
        version: Some(Version::V1),
        ..Cgroups::default()
    };
    let mut notes = Vec::new();
    for controller in CONTROLLERS {
        let name = controller.name();
        let Some(mount) = mounts.iter().find(|mount| {
            mount.fstype == "cgroup" && mount.options.iter().any(|option| option == name)
        }) else {
            notes.push(format!("cgroup v1: no {name} hierarchy mounted"));
            continue;
        };
        let Some((_, path)) = own
            .iter()
            .find(|(controllers, _)| controllers.iter().any(|other| other == name))
        else {
            notes.push(format!("cgroup v1: /proc/self/cgroup has no {name} line"));
            continue;
        };
        let Some(own_dir) = locate(mount, path) else {
            notes.push(format!(
                "cgroup v1: the daemon's {name} cgroup {path} is outside the mount at {}",
                mount.point.display()
            ));
            continue;
        };
        let base = own_dir.join(format!("roster-{home_id}"));
        match create_dir(&base) {
            Ok(()) => match controller {
                Controller::Memory => cgroups.memory = Some(base),
                Controller::Cpu => cgroups.cpu = Some(base),
                Controller::Pids => cgroups.pids = Some(base),
            },
            Err(error) => notes.push(format!("cgroup v1: {error}")),
        }
    }
    if cgroups.bases().is_empty() {
        return Err(notes.join("; "));
    }
    let notes: Vec<String> = missing_note(&cgroups).into_iter().chain(notes).collect();
    Ok((cgroups, (!notes.is_empty()).then(|| notes.join("; "))))
}

/// Which limits fall back to rlimits (or nothing) on a partial hierarchy.
fn missing_note(cgroups: &Cgroups) -> Option<String> {
    let mut missing = Vec::new();
    if cgroups.memory.is_none() {
        missing.push("memory_max falls back to RLIMIT_AS, OOM kills are not detected");
    }
    if cgroups.cpu.is_none() {
        missing.push("cpu_quota is not enforced");
    }
    if cgroups.pids.is_none() {
        missing.push("tasks_max falls back to RLIMIT_NPROC");
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// One cgroup mount of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    /// The cgroup path the mount shows at its mount point.
    root: String,
    point: PathBuf,
    fstype: String,
    /// Super options (v1: the controllers, e.g. `rw,cpu,cpuacct`).
    options: Vec<String>,
}

/// The cgroup and cgroup2 mounts of a mountinfo text.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let fstype = after.next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let _source = after.next()?;
            let options = after.next().unwrap_or("");
            Some(Mount {
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: fstype.to_owned(),
                options: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let digits = bytes.get(index + 1..index + 4).unwrap_or_default();
        if bytes[index] == b'\\'
            && digits.len() == 3
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(value) = u8::try_from(value) {
                out.push(value);
                index += 4;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/proc/self/cgroup` as (controllers, path); v2's line has no controllers.
fn parse_membership(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            Some((controllers, path.to_owned()))
        })
        .collect()
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` gives it) in `mount`.
fn locate(mount: &Mount, path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let relative = if root.is_empty() {
        path
    } else if path == root {
        ""
    } else {
        path.strip_prefix(root)?.strip_prefix('/')?
    };
    let relative = relative.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        return None;
    }
    Some(if relative.is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(relative)
    })
}

/// The number after `key` in a `key value` per line text.
fn parse_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// Whether `name` is a safe single path component.
fn is_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && !name.contains('/')
        && !name.contains("..")
        && !name.contains('\0')
}

fn max_or(value: Option<u64>) -> String {
    value.map_or("max".to_owned(), |value| value.to_string())
}

/// v1 memory: `memory.limit_in_bytes`, then `memory.memsw.limit_in_bytes`
/// (if the kernel accounts swap) to the same value. memsw must stay at
/// least the memory limit, so when raising (EINVAL) memsw goes first.
fn write_v1_memory(dir: &Path, limit: Option<u64>) -> Result<(), String> {
    let value = limit.map_or("-1".to_owned(), |bytes| bytes.to_string());
    let memory = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    match write_file_raw(&memory, &value) {
        Ok(()) => write_optional(&memsw, &value),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) && memsw.exists() => {
            write_optional(&memsw, &value)?;
            write_file(&memory, &value)
        }
        Err(error) => Err(write_error(&memory, &value, &error)),
    }
}

/// Creates a cgroup directory, or reuses it.
fn create_dir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(error) => Err(format!(
            "cannot create cgroup {}: {error}; the daemon needs write access to its own cgroup (run as root, or delegate it: systemd Delegate=yes)",
            dir.display()
        )),
    }
}

/// Writes an existing control file (never creates one).
fn write_file_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(value.as_bytes())
}

fn write_error(path: &Path, value: &str, error: &io::Error) -> String {
    format!(
        "cannot write {value:?} to {}: {error}; check that the cgroup is writable by the daemon and the value is valid",
        path.display()
    )
}

fn write_file(path: &Path, value: &str) -> Result<(), String> {
    write_file_raw(path, value).map_err(|error| write_error(path, value, &error))
}

/// Writes a control file that some kernels lack (ENOENT is fine).
fn write_optional(path: &Path, value: &str) -> Result<(), String> {
    match write_file_raw(path, value) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        result => result.map_err(|error| write_error(path, value, &error)),
    }
}

/// rmdir, quiet when already gone or still in use.
fn remove_dir(dir: &Path) {
    if let Err(error) = fs::remove_dir(dir) {
        let busy = error.raw_os_error() == Some(libc::EBUSY)
            || error.raw_os_error() == Some(libc::ENOTEMPTY);
        if error.kind() != io::ErrorKind::NotFound && !busy {
            tracing::warn!("cannot remove cgroup {}: {error}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests;
