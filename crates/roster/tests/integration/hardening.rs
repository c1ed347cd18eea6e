//! Issue #9: agents as their own users, root only when the config says so,
//! tenants apart, limits enforced, systemd's notifications, and a control
//! socket only its admins may use. Real users (`useradd`), real cgroups,
//! real /proc; tests that need root say so and are counted as skipped.

use std::time::Duration;

use roster_core::api::AgentState;

use crate::util::*;

#[allow(non_snake_case)]
fn SECS(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// A `/proc/PID/status` field's values, e.g. `Uid` → [real, effective, ...].
fn status_field(pid: u32, field: &str) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")).map(str::to_owned))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|value| value.parse().ok())
        .collect()
}

fn group(name: &str) -> Option<u32> {
    if let Ok(Some(group)) = nix::unistd::Group::from_name(name) {
        return Some(group.gid.as_raw());
    }
    let _ = std::process::Command::new("groupadd")
        .args(["--system", name])
        .output();
    Some(nix::unistd::Group::from_name(name).ok()??.gid.as_raw())
}

#[test]
fn an_agent_runs_with_its_configured_uid_gid_and_groups() {
    let Some((uid, _)) = other_user_or_skip("run_as_user", "rt-agent", "switch users") else {
        return;
    };
    let (Some(gid), Some(extra)) = (group("rt-team"), group("rt-extra")) else {
        skip("run_as_user", "could not create groups");
        return;
    };
    let added = std::process::Command::new("usermod")
        .args(["-a", "-G", "rt-extra", "rt-agent"])
        .status()
        .expect("usermod");
    assert!(added.success());
    let roster = Roster::new();
    // The agent needs to reach its cwd: the config dir is a fresh 0700 temp dir.
    let cwd = roster.path("work");
    std::fs::create_dir(&cwd).expect("cwd");
    std::os::unix::fs::chown(&cwd, Some(uid), None).expect("chown");
    std::os::unix::fs::chown(roster.dir.path(), None, None).expect("own");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o711);
    std::fs::set_permissions(roster.dir.path(), mode).expect("chmod");
    roster.config(
        "[agents.worker]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"work\"\nuser = \"rt-agent\"\ngroup = \"rt-team\"\n",
    );
    roster.up();
    let status = roster.agent("worker");
    let pid = status.pid.expect("pid");
    assert_eq!(status_field(pid, "Uid"), [uid, uid, uid, uid]);
    assert_eq!(status_field(pid, "Gid"), [gid, gid, gid, gid]);
    let groups = status_field(pid, "Groups");
    assert!(groups.contains(&extra), "supplementary groups {groups:?}");
    assert!(!groups.contains(&0), "no root group left: {groups:?}");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    assert!(exe.ends_with("sleep"), "the shim became the agent: {exe:?}");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    assert!(
        String::from_utf8_lossy(&environ).contains("USER=rt-agent"),
        "USER is the agent's"
    );
    assert_eq!(status.user.as_deref(), Some("rt-agent"), "status says who");
}

#[test]
fn an_installed_daemon_refuses_root_agents_unless_the_config_says_so() {
    if !needs_root("installed_refuses_root", "run agents as root") {
        return;
    }
    let roster = Roster::new();
    roster.config("[agents.plain]\ncommand = [\"sleep\", \"3600\"]\n");
    let output = roster
        .command()
        .args(["up", "--timeout", "5s"])
        .env("ROSTER_INSTALLED", "1")
        .output()
        .expect("up");
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("refusing to start plain as root"), "{text}");
    assert!(
        text.contains("allow_root = true"),
        "the fix is named: {text}"
    );
    assert!(roster.processes().is_empty(), "nothing ran as root");
    roster.config("[agents.plain]\ncommand = [\"sleep\", \"3600\"]\nallow_root = true\n");
    roster.ok(&["apply"]);
    roster.wait_state("plain", AgentState::Running, SECS(10));
}

#[test]
fn an_ad_hoc_root_daemon_runs_root_agents_but_says_so() {
    if !needs_root("ad_hoc_root", "run agents as root") {
        return;
    }
    let roster = Roster::new();
    roster.config(
        "[agents.plain]\ncommand = [\"sleep\", \"3600\"]\n\n[agents.meant]\ncommand = [\"sleep\", \"3600\"]\nuser = \"root\"\n",
    );
    let output = roster.run(&["up"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("plain runs as root"), "up says so: {text}");
    assert!(
        !text.contains("meant runs as root"),
        "not for user = \"root\": {text}"
    );
    let status = roster.status();
    assert!(status
        .warnings
        .iter()
        .any(|w| w.contains("plain runs as root")));
    assert_eq!(roster.agent("plain").user.as_deref(), Some("root"));
    let kinds = roster.event_kinds("plain");
    assert!(kinds.contains(&"runs_as_root".to_owned()), "{kinds:?}");
}

/// Many root agents make one warning line, `status NAME` speaks only of
/// the named agents, and the verbs that are not about status are quiet
/// (issue #14, item 16).
#[test]
fn the_root_warning_is_one_line_and_only_where_it_belongs() {
    if !needs_root("root_warning_lines", "run agents as root") {
        return;
    }
    let roster = Roster::new();
    let mut config = String::new();
    for index in 0..12 {
        config.push_str(&format!(
            "[agents.w{index:02}]\ncommand = [\"sleep\", \"3600\"]\n"
        ));
    }
    config.push_str("[agents.meant]\ncommand = [\"sleep\", \"3600\"]\nuser = \"root\"\n");
    roster.config(&config);
    let output = roster.run(&["up"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("as root"))
        .collect();
    assert_eq!(lines.len(), 1, "one line for twelve agents: {text}");
    assert!(
        lines[0].contains("12 agents run as root") && lines[0].contains("and 4 more"),
        "{text}"
    );
    assert!(!lines[0].contains("meant"), "{text}");

    let status = roster.status();
    assert_eq!(
        status
            .warnings
            .iter()
            .filter(|w| w.contains("as root"))
            .count(),
        1
    );
    assert!(roster.agent("w03").warning.is_some());
    assert!(roster.agent("meant").warning.is_none());

    let named = roster.run(&["status", "meant"]);
    assert!(named.status.success());
    let said = String::from_utf8_lossy(&named.stderr);
    assert!(
        !said.contains("as root"),
        "meant runs as root by intent: {said}"
    );
    let named = roster.run(&["status", "w05"]);
    let said = String::from_utf8_lossy(&named.stderr);
    assert!(said.contains("w05 runs as root"), "{said}");
    assert!(!said.contains("w06"), "only the named agent: {said}");

    for verb in [
        &["stop", "w01"][..],
        &["start", "w01"],
        &["restart", "w02"],
        &["events", "-n", "1"],
        &["logs", "-n", "1"],
        &["alerts"],
    ] {
        let output = roster.run(verb);
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(!said.contains("as root"), "roster {verb:?} warned: {said}");
    }
}

#[test]
fn tenant_users_cannot_read_each_others_files() {
    if !needs_root("tenants", "create users") {
        return;
    }
    let roster = Roster::new();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o711);
    std::fs::set_permissions(roster.dir.path(), mode).expect("chmod");
    // Each tenant writes a file into its own directory, then tries to read
    // the other's.
    let script = |me: &str, other: &str| {
        format!(
            "echo secret-of-{me} > mine.txt; sleep 0.3; \
             if cat ../{other}/mine.txt >/dev/null 2>&1; then echo read > result.txt; \
             else echo denied > result.txt; fi; exec sleep 3600"
        )
    };
    roster.config(&format!(
        "[defaults]\nuser = \"rt-{{name}}\"\ncreate_user = true\n\n\
         [agents.acme]\ncommand = [\"sh\", \"-c\", {:?}]\ncwd = \"acme\"\n\n\
         [agents.globex]\ncommand = [\"sh\", \"-c\", {:?}]\ncwd = \"globex\"\n",
        script("acme", "globex"),
        script("globex", "acme")
    ));
    roster.up();
    for (tenant, other) in [("acme", "globex"), ("globex", "acme")] {
        let result = roster.path(&format!("{tenant}/result.txt"));
        let verdict = wait_for(&format!("{tenant}'s attempt"), SECS(10), || {
            std::fs::read_to_string(&result).ok()
        });
        assert_eq!(verdict.trim(), "denied", "{tenant} read {other}'s file");
        let user = nix::unistd::User::from_name(&format!("rt-{tenant}"))
            .ok()
            .flatten()
            .expect("the user was created");
        let pid = roster.agent(tenant).pid.expect("pid");
        assert_eq!(status_field(pid, "Uid")[1], user.uid.as_raw());
        let dir = std::fs::metadata(roster.path(tenant)).expect("dir");
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(dir.uid(), user.uid.as_raw(), "its directory is its own");
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    }
    let acme = roster.agent("acme").pid.expect("pid");
    let globex = roster.agent("globex").pid.expect("pid");
    assert_ne!(status_field(acme, "Uid"), status_field(globex, "Uid"));
}

#[test]
fn a_leaking_agent_is_stopped_by_memory_max_and_journaled_as_oom_killed() {
    if !needs_root("memory_max", "create cgroups") {
        return;
    }
    let roster = Roster::new();
    roster.config(
        "[agents.leak]\ncommand = [\"python3\", \"-c\", \"import time\\nheap = []\\nwhile True:\\n    heap.append(bytearray(8 << 20))\\n    time.sleep(0.02)\\n\"]\nmemory_max = \"64MiB\"\nrestart = \"never\"\n\n[agents.calm]\ncommand = [\"sleep\", \"3600\"]\n",
    );
    // The leak may already be dead when `up` looks: it fails then.
    let _ = roster.run(&["up", "--timeout", "5s"]);
    let limits = roster.agent("leak").limits;
    if limits.as_deref() == Some("rlimit") {
        skip("memory_max", "no memory cgroup here: only an rlimit");
        return;
    }
    assert!(
        matches!(limits.as_deref(), Some("cgroup1" | "cgroup2")),
        "{limits:?}"
    );
    let events = roster.wait_event("leak", "oom_killed", SECS(20));
    let oom = events
        .iter()
        .find(|event| event.kind == "oom_killed")
        .expect("oom_killed");
    assert!(
        oom.detail.contains("memory_max (64.0MiB)"),
        "{}",
        oom.detail
    );
    assert_eq!(
        roster.agent("calm").state,
        AgentState::Running,
        "the others run on"
    );
    assert_eq!(roster.agent("calm").limits.as_deref(), Some("none"));
}

/// Under systemd: READY=1 once the agents run, WATCHDOG=1 while the loop
/// is alive (the unit's WatchdogSec), STOPPING=1 on SIGTERM.
#[test]
fn the_daemon_feeds_systemds_watchdog_and_says_when_it_stops() {
    let roster = Roster::new();
    roster.config("[agents.one]\ncommand = [\"sleep\", \"3600\"]\n");
    let socket_path = roster.path("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(SECS(10)))
        .expect("read timeout");
    // WATCHDOG_PID must be the daemon's own pid: exec from a shell.
    let mut daemon = std::process::Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" --home \"$1\" daemon -f roster.toml",
            BIN,
            roster.home_path().to_str().expect("utf-8"),
        ])
        .current_dir(roster.dir.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let mut seen = Vec::new();
    let mut message = [0u8; 256];
    while seen
        .iter()
        .filter(|m: &&String| m.as_str() == "WATCHDOG=1")
        .count()
        < 3
    {
        let length = socket.recv(&mut message).expect("notifications in time");
        seen.push(
            String::from_utf8_lossy(&message[..length])
                .trim()
                .to_owned(),
        );
    }
    assert!(seen.contains(&"READY=1".to_owned()), "{seen:?}");
    kill(daemon.id(), Signal::SIGTERM);
    let stopping = wait_for("STOPPING=1", SECS(10), || {
        let length = socket.recv(&mut message).ok()?;
        let text = String::from_utf8_lossy(&message[..length])
            .trim()
            .to_owned();
        (text == "STOPPING=1").then_some(text)
    });
    assert_eq!(stopping, "STOPPING=1");
    let exit = wait_for("the daemon to exit", SECS(20), || {
        daemon.try_wait().ok().flatten()
    });
    assert!(exit.success());
}

#[test]
fn another_user_on_the_control_socket_is_refused_and_journaled() {
    let Some((uid, _)) = other_user_or_skip("socket_peers", "rt-stranger", "run as another user")
    else {
        return;
    };
    let roster = Roster::new();
    roster.config("[agents.one]\ncommand = [\"sleep\", \"3600\"]\n");
    roster.up();
    // Loosen the way in on purpose: the socket itself must still refuse.
    let mode = |bits| std::os::unix::fs::PermissionsExt::from_mode(bits);
    std::fs::set_permissions(roster.home_path(), mode(0o711)).expect("chmod home");
    let socket = roster.home_path().join("roster.sock");
    std::fs::set_permissions(&socket, mode(0o666)).expect("chmod socket");
    let output = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--home",
            roster.home_path().to_str().expect("utf-8"),
            "stop",
            "one",
        ])
        .output()
        .expect("setpriv");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a stranger stopped an agent: {text}"
    );
    assert!(text.contains("may not control roster"), "{text}");
    assert_eq!(roster.agent("one").state, AgentState::Running);
    let events = roster.events(&[]);
    assert!(
        events.iter().any(
            |event| event.kind == "api_refused" && event.detail.contains(&format!("uid {uid}"))
        ),
        "journaled: {events:?}"
    );
}

/// A daemon killed the moment it spawned its first agent of another user
/// leaves enough behind for the next one to find that agent (the uid is in
/// `agent-uids` before the spawn): the next daemon stops it and runs one
/// fresh copy, never a second one beside an unmanaged one.
#[test]
fn a_daemon_killed_right_after_spawning_an_agent_as_another_user_leaves_no_second_copy() {
    if !needs_root("killed_after_spawn", "run an agent as nobody") {
        return;
    }
    let roster = Roster::new();
    roster.config(
        "[agents.worker]\ncommand = [\"sleep\", \"3601\"]\ncwd = \"/\"\nuser = \"nobody\"\n",
    );
    let home = roster.home_path().display().to_string();
    let mut daemon = roster.foreground_daemon(&[]);
    // The moment the agent's process exists (the shim, or already sleep).
    let first = wait_for("the agent spawned", SECS(20), || {
        children_of(daemon.id()).first().copied()
    });
    daemon.kill().expect("SIGKILL");
    daemon.wait().expect("reaped");
    let uids = std::fs::read_to_string(roster.home_path().join("agent-uids")).unwrap_or_default();
    assert!(
        uids.lines().any(|line| line == "65534"),
        "nobody's uid is recorded before the spawn: {uids:?}"
    );
    let mut daemon = roster.foreground_daemon(&[]);
    wait_for("the next daemon to answer", SECS(20), || {
        roster.run(&["status"]).status.success().then_some(())
    });
    let running = roster.wait_state("worker", AgentState::Running, SECS(20));
    let fresh = running.pid.expect("pid");
    assert_ne!(fresh, first);
    wait_for("the left-behind copy gone", SECS(20), || {
        (!alive(first)).then_some(())
    });
    assert_eq!(processes_of_home_any_user(&home), [fresh], "one copy");
    assert!(
        roster
            .events(&[])
            .iter()
            .any(|event| event.kind == "stale_stopped"),
        "the next daemon stopped what the killed one left"
    );
    terminate(&mut daemon);
}

/// Issue #14, item 6: a root daemon started from a shell whose PATH begins
/// with a directory only root can enter (a pyenv under /root) must not
/// hand that PATH to an agent of another user: the agent's program is
/// found as that user finds it, in the system's PATH.
#[test]
fn an_agent_of_another_user_finds_its_program_in_a_path_it_can_use() {
    if !needs_root("user_path", "run an agent as nobody") {
        return;
    }
    let roster = Roster::new();
    let root_only = roster.path("shims");
    std::fs::create_dir(&root_only).expect("mkdir");
    let fake = root_only.join("python3");
    std::fs::write(&fake, "#!/bin/sh\necho fake python; exit 3\n").expect("write");
    let mode = |bits| std::os::unix::fs::PermissionsExt::from_mode(bits);
    std::fs::set_permissions(&fake, mode(0o755)).expect("chmod");
    std::fs::set_permissions(&root_only, mode(0o700)).expect("chmod");
    roster.config(
        "[agents.py]\ncommand = [\"python3\", \"-c\", \"import time; time.sleep(3600)\"]\ncwd = \"/\"\nuser = \"nobody\"\n\n\
         [agents.own]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"/\"\nuser = \"nobody\"\nenv = { PATH = \"/bin:/usr/bin\" }\n",
    );
    let path = format!(
        "{}:{}",
        root_only.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let up = roster
        .command()
        .arg("up")
        .env("PATH", &path)
        .output()
        .expect("up");
    assert!(
        up.status.success(),
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let agent = roster.wait_state("py", AgentState::Running, SECS(20));
    let pid = agent.pid.expect("pid");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    assert!(
        exe.starts_with("/usr/bin") && exe.to_string_lossy().contains("python3"),
        "the system's python runs, not root's: {exe:?}"
    );
    assert_eq!(status_field(pid, "Uid")[1], 65534);
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2], "the shim's report pipe is not handed on");
    let environ = |pid: u32| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).expect("environ"))
            .split('\0')
            .find_map(|entry| entry.strip_prefix("PATH=").map(str::to_owned))
    };
    assert_eq!(
        environ(pid).as_deref(),
        Some(roster_daemon::tools::SYSTEM_PATH),
        "the daemon's PATH is not handed on"
    );
    let own = roster.agent("own").pid.expect("pid");
    assert_eq!(
        environ(own).as_deref(),
        Some("/bin:/usr/bin"),
        "the agent's own PATH wins"
    );
    assert_eq!(roster.agent("py").restarts, 0);
}

/// Issue #14, item 6: an agent whose user cannot enter its directory or
/// run its program (a project under a 0700 /root) fails once, with a
/// `last_error` naming the path and the user that `up` prints, not five
/// quick deaths of exit 127 with nothing said; `check` warns beforehand.
#[test]
fn an_agent_whose_user_cannot_reach_its_program_or_directory_fails_once_saying_why() {
    if !needs_root("user_reach", "run agents as nobody") {
        return;
    }
    let roster = Roster::new();
    let closed = roster.dir.path().display().to_string();
    let tool = roster.path("bin/tool");
    std::fs::create_dir_all(roster.path("bin")).expect("mkdir");
    std::fs::write(&tool, "#!/bin/sh\nexec sleep 3600\n").expect("write");
    let mode = |bits| std::os::unix::fs::PermissionsExt::from_mode(bits);
    std::fs::set_permissions(&tool, mode(0o755)).expect("chmod");
    std::fs::create_dir(roster.path("work")).expect("mkdir");
    // Root's own, closed to others, like /root.
    std::fs::set_permissions(roster.dir.path(), mode(0o700)).expect("chmod");
    roster.config(&format!(
        "[agents.tool]\ncommand = [\"{}\"]\ncwd = \"/\"\nuser = \"nobody\"\n\n\
         [agents.home]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"work\"\nuser = \"nobody\"\n\n\
         [agents.fine]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"/\"\nuser = \"nobody\"\n",
        tool.display()
    ));
    let check = roster.run(&["check"]);
    let warnings = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "warnings only: {warnings}");
    assert!(
        warnings.contains(&format!(
            "warning: agent `tool` runs as nobody, who cannot run {}: {closed} is not searchable by nobody (mode 0700",
            tool.display()
        )),
        "{warnings}"
    );
    assert!(
        warnings.contains(&format!(
            "warning: agent `home` runs as nobody, who cannot enter its directory {closed}/work: {closed} is not searchable by nobody"
        )),
        "{warnings}"
    );
    assert!(!warnings.contains("`fine`"), "{warnings}");

    let up = roster.run(&["up", "--timeout", "20s"]);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert_eq!(up.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("warning: agent `tool`"),
        "up warns too: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "tool: could not start: cannot run {} as nobody (uid 65534): {closed} is not searchable by nobody (mode 0700",
            tool.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "home: could not start: cannot enter {closed}/work as nobody (uid 65534): {closed} is not searchable"
        )),
        "{stderr}"
    );
    for name in ["tool", "home"] {
        let agent = roster.agent(name);
        assert_eq!(agent.state, AgentState::Failed, "{agent:?}");
        assert!(
            agent
                .last_error
                .as_deref()
                .is_some_and(|error| error.contains(&closed) && error.contains("nobody")),
            "{agent:?}"
        );
        let kinds = roster.event_kinds(name);
        assert_eq!(
            kinds.iter().filter(|kind| *kind == "spawn_failed").count(),
            1,
            "one failure, no crash loop: {kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|kind| *kind == "started").count(),
            1,
            "{kinds:?}"
        );
        assert!(kinds.ends_with(&["failed".to_owned()]), "{kinds:?}");
    }
    assert_eq!(roster.agent("fine").state, AgentState::Running);
    // Opened up, `start` runs them.
    std::fs::set_permissions(roster.dir.path(), mode(0o711)).expect("chmod");
    roster.ok(&["start", "tool", "home"]);
    roster.wait_state("tool", AgentState::Running, SECS(20));
    let home = roster.wait_state("home", AgentState::Running, SECS(20));
    assert_eq!(home.last_error, None);
}

#[test]
fn an_agent_shipped_as_releases_runs_as_its_own_user_and_the_config_folder_stays_roots() {
    if !needs_root("releases as a user", "create users") {
        return;
    }
    let roster = Roster::new();
    // `web` ships releases as its own user; `plain` has no cwd, so its
    // folder would be the config's (0755 here): never given to it.
    roster.config(
        "[agents.web]\ncommand = [\"sh\", \"-c\", \"cat VERSION; exec sleep 3600\"]\n\
         user = \"rt-web\"\ncreate_user = true\n\
         [agents.web.deploy]\nstrategy = \"restart\"\nverify_for = \"1s\"\n\n\
         [agents.plain]\ncommand = [\"sleep\", \"3600\"]\nuser = \"rt-plain\"\ncreate_user = true\n",
    );
    // A home as roster makes it: closed to others.
    let closed = std::os::unix::fs::PermissionsExt::from_mode(0o700);
    std::fs::set_permissions(roster.home_path(), closed).expect("chmod");
    let _ = roster.run(&["up"]);
    let source = roster.path("src");
    std::fs::create_dir_all(&source).expect("source");
    std::fs::write(source.join("VERSION"), "v1\n").expect("VERSION");
    let source = source.display().to_string();
    let deployed = roster.run(&["deploy", "web", &source, "--version", "v1"]);
    assert!(
        deployed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&deployed.stdout),
        String::from_utf8_lossy(&deployed.stderr)
    );
    let web = roster.wait_state("web", AgentState::Running, SECS(10));
    let user = nix::unistd::User::from_name("rt-web")
        .ok()
        .flatten()
        .expect("the user was created");
    assert_eq!(
        status_field(web.pid.expect("pid"), "Uid")[1],
        user.uid.as_raw()
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let home = std::fs::metadata(roster.home_path()).expect("home");
    assert_eq!(
        home.permissions().mode() & 0o777,
        0o701,
        "others may traverse it, never list it"
    );

    let config_dir = std::fs::metadata(roster.dir.path()).expect("config dir");
    assert_eq!(config_dir.uid(), 0, "the config's folder stays root's");
    assert_eq!(
        config_dir.permissions().mode() & 0o777,
        0o755,
        "and keeps its mode"
    );
    let refused = roster.events(&["plain"]).into_iter().any(|event| {
        event
            .detail
            .contains("not giving its directory to rt-plain")
    });
    assert!(refused, "the journal says why");
}
