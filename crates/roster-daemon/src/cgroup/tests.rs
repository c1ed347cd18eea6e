use super::*;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

fn limits(memory: Option<u64>, cpu: Option<u32>, tasks: Option<u64>) -> Limits {
    Limits {
        memory_max: memory,
        cpu_quota: cpu,
        tasks_max: tasks,
        nofile: None,
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
        .trim()
        .to_owned()
}

/// The cgroups of a test home on this host; everything removed on drop,
/// even when the test fails.
struct Fixture {
    cgroups: Cgroups,
    agents: Vec<&'static str>,
}

impl Fixture {
    /// Detects under a home id of its own, or says why the test is skipped.
    fn detect(test: &str) -> Option<Fixture> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: not root");
            return None;
        }
        let (cgroups, reason) = Cgroups::detect(&format!("test{}-{test}", std::process::id()));
        eprintln!("detected: {}; note: {reason:?}", cgroups.summary());
        if cgroups.version().is_none() {
            eprintln!("skipped: no usable cgroup hierarchy: {reason:?}");
            return None;
        }
        Some(Fixture {
            cgroups,
            agents: Vec::new(),
        })
    }

    fn prepare(&mut self, agent: &'static str, limits: &Limits) -> Prepared {
        if !self.agents.contains(&agent) {
            self.agents.push(agent);
        }
        self.cgroups
            .prepare(agent, limits)
            .unwrap_or_else(|error| panic!("prepare {agent}: {error}"))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        for agent in &self.agents {
            while Instant::now() < deadline {
                self.cgroups.kill_all(agent);
                self.cgroups.remove(agent);
                if self
                    .cgroups
                    .agent_dirs(agent)
                    .iter()
                    .all(|dir| !dir.exists())
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.cgroups.remove_all();
    }
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// `sh` that joins `dirs` the way the exec shim does (its own pid into each
/// `cgroup.procs`), then execs python3 with `script`.
fn joined_python(dirs: &[PathBuf], script: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"py=$1; code=$2; shift 2; for d in "$@"; do echo $$ > "$d/cgroup.procs" || exit 97; done; exec "$py" -c "$code""#)
        .arg("sh")
        .arg(python())
        .arg(script)
        .args(dirs);
    command
}

#[test]
fn host_prepare_reads_back_reuses_and_removes() {
    let Some(mut fixture) = Fixture::detect("prepare") else {
        return;
    };
    let prepared = fixture.prepare("worker", &limits(Some(64 * MIB), Some(50), Some(32)));
    eprintln!("prepared: {prepared:?}");
    assert!(!prepared.join.is_empty());
    assert!(prepared.join.iter().all(|dir| dir.is_dir()));
    let cgroups = &fixture.cgroups;
    let v1 = cgroups.version == Some(Version::V1);
    assert_eq!(
        prepared.enforcement,
        if v1 {
            Enforcement::Cgroup1
        } else {
            Enforcement::Cgroup2
        }
    );
    let memory = cgroups.agent_dir(Controller::Memory, "worker");
    let cpu = cgroups.agent_dir(Controller::Cpu, "worker");
    let pids = cgroups.agent_dir(Controller::Pids, "worker");
    let check = |removed: bool| {
        if let Some(dir) = &memory {
            if v1 {
                let expected = if removed {
                    "9223372036854771712"
                } else {
                    "67108864"
                };
                assert_eq!(read(&dir.join("memory.limit_in_bytes")), expected);
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    assert_eq!(read(&dir.join("memory.memsw.limit_in_bytes")), expected);
                }
            } else {
                let expected = if removed { "max" } else { "67108864" };
                assert_eq!(read(&dir.join("memory.max")), expected);
            }
        }
        if let Some(dir) = &cpu {
            if v1 {
                assert_eq!(read(&dir.join("cpu.cfs_period_us")), "100000");
                let expected = if removed { "-1" } else { "50000" };
                assert_eq!(read(&dir.join("cpu.cfs_quota_us")), expected);
            } else {
                let expected = if removed {
                    "max 100000"
                } else {
                    "50000 100000"
                };
                assert_eq!(read(&dir.join("cpu.max")), expected);
            }
        }
        if let Some(dir) = &pids {
            assert_eq!(
                read(&dir.join("pids.max")),
                if removed { "max" } else { "32" }
            );
        }
    };
    check(false);
    // A second prepare reuses the directories.
    let again = fixture.prepare("worker", &limits(Some(64 * MIB), Some(50), Some(32)));
    assert_eq!(again.join, prepared.join);
    check(false);
    // Raising the memory limit (v1: memsw must move first).
    fixture.prepare("worker", &limits(Some(128 * MIB), Some(50), Some(32)));
    if let Some(dir) = &memory {
        let file = if v1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        assert_eq!(read(&dir.join(file)), (128 * MIB).to_string());
    }
    // Limits removed from the config are written as max.
    let unlimited = fixture.prepare("worker", &Limits::default());
    assert_eq!(unlimited.join, prepared.join);
    assert!(unlimited.rlimits.is_empty());
    check(true);
    // remove cleans up; remove_all takes the parents.
    fixture.cgroups.remove("worker");
    assert!(prepared.join.iter().all(|dir| !dir.exists()));
    fixture.cgroups.remove_all();
    assert!(fixture.cgroups.bases().iter().all(|base| !base.exists()));
}

#[test]
fn host_oom_kill_is_counted() {
    let Some(mut fixture) = Fixture::detect("oom") else {
        return;
    };
    if fixture.cgroups.memory.is_none() {
        eprintln!("skipped: no memory controller");
        return;
    }
    let prepared = fixture.prepare("hog", &limits(Some(64 * MIB), None, Some(32)));
    let before = fixture.cgroups.oom_kills("hog");
    eprintln!("oom kills before: {before:?}");
    let Some(before) = before else {
        eprintln!("skipped: no oom_kill counter (kernel < 4.13)");
        return;
    };
    let started = Instant::now();
    let status = joined_python(
        &prepared.join,
        "a = bytearray(200 * 1024 * 1024)\nimport time\ntime.sleep(5)",
    )
    .status()
    .expect("spawning sh");
    eprintln!("hog: {status:?} after {:?}", started.elapsed());
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(fixture.cgroups.oom_kills("hog"), Some(before + 1));
    // Nothing left in it: the directories go.
    assert_eq!(fixture.cgroups.kill_all("hog"), 0);
}

#[test]
fn host_tasks_max_stops_a_fork_bomb() {
    let Some(mut fixture) = Fixture::detect("tasks") else {
        return;
    };
    if fixture.cgroups.pids.is_none() {
        eprintln!("skipped: no pids controller");
        return;
    }
    let prepared = fixture.prepare("bomb", &limits(None, None, Some(32)));
    let script = "import subprocess\n\
        started, failed, children = 0, 0, []\n\
        for _ in range(100):\n\
        \x20   try:\n\
        \x20       children.append(subprocess.Popen(['sleep', '5']))\n\
        \x20       started += 1\n\
        \x20   except OSError:\n\
        \x20       failed += 1\n\
        print(started, failed, flush=True)\n\
        import time\n\
        time.sleep(5)\n";
    let mut child = joined_python(&prepared.join, script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawning sh");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    io::BufRead::read_line(&mut io::BufReader::new(stdout), &mut line).expect("reading");
    eprintln!("started, failed: {line:?}");
    let numbers: Vec<u32> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{line:?}");
    assert!(numbers[0] < 32, "{line:?}");
    assert!(numbers[1] > 0, "{line:?}");
    // kill_all takes python and its sleeps.
    let killed = fixture.cgroups.kill_all("bomb");
    assert!(killed as u32 > numbers[0], "killed {killed}");
    let status = child.wait().expect("waiting");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn names_must_be_single_components() {
    let cgroups = Cgroups {
        version: Some(Version::V1),
        memory: Some(PathBuf::from("/nonexistent/roster-x")),
        ..Cgroups::default()
    };
    for bad in ["", ".", "..", "a/b", "../x", "a..b"] {
        assert!(cgroups.prepare(bad, &Limits::default()).is_err(), "{bad:?}");
        assert_eq!(cgroups.oom_kills(bad), None);
        assert!(cgroups.agent_dirs(bad).is_empty());
    }
    let (none, reason) = Cgroups::detect_from("../x", "", "", 1);
    assert_eq!(none, Cgroups::none());
    assert!(reason.is_some());
}

#[test]
fn parses_mountinfo_and_membership() {
    let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
36 30 0:32 /docker/abc /sys/fs/cgroup/my\\040memory rw - cgroup cgroup rw,memory\n";
    let mounts = parse_mountinfo(mountinfo);
    assert_eq!(mounts.len(), 3);
    assert_eq!(mounts[0].fstype, "cgroup2");
    assert_eq!(mounts[1].options, ["rw", "cpu", "cpuacct"]);
    assert_eq!(mounts[2].point, Path::new("/sys/fs/cgroup/my memory"));
    assert_eq!(mounts[2].root, "/docker/abc");
    assert_eq!(
        locate(&mounts[2], "/docker/abc/x"),
        Some(PathBuf::from("/sys/fs/cgroup/my memory/x"))
    );
    assert_eq!(
        locate(&mounts[2], "/docker/abc"),
        Some(PathBuf::from("/sys/fs/cgroup/my memory"))
    );
    assert_eq!(locate(&mounts[2], "/other"), None);
    assert_eq!(locate(&mounts[2], "/docker/abcd"), None);
    assert_eq!(
        locate(&mounts[1], "/"),
        Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
    );
    let own = parse_membership("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/user.slice\n");
    assert_eq!(own[0], (vec!["memory".to_owned()], "/a/b".to_owned()));
    assert_eq!(own[1].0, ["cpu", "cpuacct"]);
    assert_eq!(own[2], (Vec::new(), "/user.slice".to_owned()));
    assert_eq!(parse_key("oom 3\noom_kill 2\n", "oom_kill"), Some(2));
    assert_eq!(parse_key("oom_kill_disable 0\n", "oom_kill"), None);
    assert_eq!(Enforcement::Rlimits.as_str(), "rlimit");
}

/// A v2 tree simulated with plain files: detection enables the offered
/// controllers and `prepare` writes the v2 files.
#[test]
fn simulated_v2_tree() {
    let temp = tempfile::tempdir().expect("tempdir");
    let own = temp.path().join("system.slice/roster.service");
    let base = own.join("roster-h1");
    let agent = base.join("web");
    fs::create_dir_all(&agent).expect("mkdir");
    fs::write(own.join("cgroup.controllers"), "cpuset cpu io memory\n").expect("write");
    for dir in [&own, &base] {
        fs::write(dir.join("cgroup.subtree_control"), "").expect("write");
    }
    for file in ["memory.max", "memory.swap.max", "cpu.max", "pids.max"] {
        fs::write(agent.join(file), "").expect("write");
    }
    let mountinfo = format!(
        "31 30 0:27 / {} rw - cgroup2 cgroup2 rw\n",
        temp.path().display()
    );
    let (cgroups, note) =
        Cgroups::detect_from("h1", &mountinfo, "0::/system.slice/roster.service\n", 1);
    assert_eq!(cgroups.version(), Some(Enforcement::Cgroup2));
    assert_eq!(cgroups.memory.as_deref(), Some(base.as_path()));
    assert_eq!(cgroups.pids, None);
    assert!(note.is_some_and(|note| note.contains("RLIMIT_NPROC")));
    assert_eq!(
        cgroups.summary(),
        format!(
            "cgroup2: memory at {0}, cpu at {0}, no pids",
            base.display()
        )
    );
    assert_eq!(Cgroups::none().summary(), "no cgroups: limits are rlimits");
    // The last write to a file is what the simulation keeps.
    assert_eq!(read(&base.join("cgroup.subtree_control")), "+cpu");
    let mut wanted = limits(Some(64 * MIB), Some(150), Some(10));
    wanted.nofile = Some(1024);
    let prepared = cgroups.prepare("web", &wanted).expect("prepare");
    assert_eq!(prepared.join, std::slice::from_ref(&agent));
    assert_eq!(prepared.enforcement, Enforcement::Cgroup2);
    assert_eq!(
        prepared.rlimits,
        [(RlimitKind::Processes, 10), (RlimitKind::OpenFiles, 1024)]
    );
    assert_eq!(read(&agent.join("memory.max")), "67108864");
    assert_eq!(read(&agent.join("memory.swap.max")), "0");
    assert_eq!(read(&agent.join("cpu.max")), "150000 100000");
    cgroups.prepare("web", &Limits::default()).expect("prepare");
    assert_eq!(read(&agent.join("memory.max")), "max");
    assert_eq!(read(&agent.join("cpu.max")), "max 100000");
    fs::write(
        agent.join("memory.events"),
        "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n",
    )
    .expect("write");
    assert_eq!(cgroups.oom_kills("web"), Some(1));
    // No controllers offered: v2 is refused and, without v1, nothing is left.
    fs::write(own.join("cgroup.controllers"), "cpuset io\n").expect("write");
    let (none, reason) =
        Cgroups::detect_from("h1", &mountinfo, "0::/system.slice/roster.service\n", 1);
    assert_eq!(none, Cgroups::none());
    eprintln!("reason: {reason:?}");
    assert!(reason.is_some_and(|reason| reason.contains("no memory, cpu or pids")));
}

#[test]
fn without_cgroups_limits_become_rlimits() {
    let mut wanted = limits(Some(64 * MIB), Some(50), Some(32));
    let prepared = Cgroups::none().prepare("a", &wanted).expect("prepare");
    assert!(prepared.join.is_empty());
    assert_eq!(prepared.enforcement, Enforcement::Rlimits);
    assert_eq!(
        prepared.rlimits,
        [
            (RlimitKind::AddressSpace, 64 * MIB),
            (RlimitKind::Processes, 32)
        ]
    );
    assert_eq!(prepared.unenforced, ["cpu_quota"]);
    wanted = Limits::default();
    let prepared = Cgroups::none().prepare("a", &wanted).expect("prepare");
    assert_eq!(prepared.enforcement, Enforcement::None);
    assert_eq!(Cgroups::none().oom_kills("a"), None);
    assert_eq!(Cgroups::none().kill_all("a"), 0);
}
