//! Faults of the supervisor loop and its inputs: the foreground daemon on
//! its own, hostile config files, stopping thousands, agents that cannot
//! start, a second project's config, stopped agents, a dirty start-up
//! environment, and floods of API connections.

use std::process::{Command, Stdio};
use std::time::Instant;

use roster_core::api::AgentState;

use crate::util::*;

/// Defect 1: `roster daemon -f FILE` must start its agents by itself, with
/// nothing else (no status request) touching it, as systemd runs it.
#[test]
fn foreground_daemon_starts_its_agents_with_nothing_else_touching_it() {
    let roster = Roster::new();
    roster.config("[agents.alone]\ncommand = [\"sleep\", \"3602\"]\n");
    let mut daemon = roster.foreground_daemon(&[]);
    // Look only at /proc: no API request may nudge the daemon.
    let pid = wait_for(
        "the agent to be spawned by the daemon alone",
        SECS(10),
        || {
            roster
                .processes()
                .into_iter()
                .find(|(_, agent)| agent == "alone")
                .map(|(pid, _)| pid)
        },
    );
    assert!(alive(pid));
    let exit = terminate(&mut daemon);
    assert!(exit.success(), "daemon exit: {exit}");
    assert!(!alive(pid), "the agent outlived the daemon");
}

/// Defect 9: a FIFO named as the config in an API apply must not block the
/// loop: the apply is refused, and a dying agent is still restarted.
#[test]
fn a_fifo_as_config_is_refused_and_the_loop_keeps_supervising() {
    let roster = Roster::new();
    roster.config("[agents.keep]\ncommand = [\"sleep\", \"3603\"]\n");
    roster.up();
    let before = roster.agent("keep").pid.expect("pid");
    let fifo = roster.path("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let started = Instant::now();
    let (status, body) = api(
        &roster,
        "POST",
        "/v1/apply",
        &format!(
            r#"{{"path": "{}", "start_stopped": false}}"#,
            fifo.display()
        ),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not a regular file"), "{body}");
    assert!(started.elapsed() < SECS(5), "the apply hung");
    // The CLI refuses it too, without hanging.
    let output = roster.run(&["apply", "-f", "fifo.toml"]);
    assert!(!output.status.success());
    // The loop still supervises: a killed agent comes back, no zombie.
    kill(before, Signal::SIGKILL);
    let after = roster.wait_status("a new pid for keep", SECS(10), |status| {
        status.agents[0].pid.is_some_and(|pid| pid != before)
    });
    assert_eq!(after.agents[0].state, AgentState::Starting);
    let daemon = roster.daemon_pid().expect("daemon pid");
    assert!(zombies_of(daemon).is_empty(), "zombies left");
    assert!(roster.event_kinds("keep").contains(&"exited".to_owned()));
}

/// Defect 10: stop signals to many agents go out in one pass, and an agent
/// that ended on its stop signal is never journaled as killed.
#[test]
fn stopping_hundreds_is_quick_and_journals_no_false_kills() {
    let roster = Roster::new();
    let mut text = String::new();
    for index in 0..300 {
        text.push_str(&format!(
            "[agents.s{index:03}]\ncommand = [\"sleep\", \"3604\"]\nstop_timeout = \"2s\"\nready_after = \"0s\"\n"
        ));
    }
    roster.config(&text);
    roster.ok(&["up", "--timeout", "60s"]);
    assert_eq!(roster.processes().len(), 300);
    let started = Instant::now();
    roster.ok(&["down"]);
    let took = started.elapsed();
    assert!(took < SECS(10), "down of 300 took {took:?}");
    assert!(roster.processes().is_empty(), "agents outlived down");
    let events = roster.events(&[]);
    let killed = events.iter().filter(|event| event.kind == "killed").count();
    let stopped = events
        .iter()
        .filter(|event| event.kind == "stopped")
        .count();
    assert_eq!(
        killed, 0,
        "agents that ended on SIGTERM journaled as killed"
    );
    assert_eq!(stopped, 300);
}

/// Defect 11: why an agent cannot start is in status (`last_error`), and
/// `up` and `start` print it; failed attempts count as restarts.
#[test]
fn why_an_agent_cannot_start_is_shown_everywhere() {
    let roster = Roster::new();
    roster.config("[agents.typo]\ncommand = \"pyhton3 main.py\"\ncrash_loop = 3\n");
    // `check` warns (it may be installed later) but passes.
    let check = roster.run(&["check"]);
    assert!(check.status.success());
    let warning = String::from_utf8_lossy(&check.stderr);
    assert!(
        warning.contains("warning") && warning.contains("pyhton3"),
        "{warning}"
    );
    let up = roster.run(&["up", "--timeout", "20s"]);
    assert_eq!(up.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(
        stderr.contains("typo: could not start: pyhton3: not found in PATH"),
        "{stderr}"
    );
    let agent = roster.agent("typo");
    assert!(
        agent
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("not found in PATH")),
        "{agent:?}"
    );
    let json = roster.ok(&["status", "--json"]);
    assert!(json.contains("\"last_error\":"), "{json}");
    let start = roster.run(&["start", "typo"]);
    assert_eq!(start.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&start.stderr).contains("not found in PATH"),
        "start says nothing: {}",
        String::from_utf8_lossy(&start.stderr)
    );
    assert!(roster.agent("typo").restarts >= 1, "failed attempts count");
}

/// Defect 12: `up -f other.toml` from another project must not silently
/// remove the first one's agents.
#[test]
fn another_projects_config_does_not_remove_agents_without_replace() {
    let roster = Roster::new();
    roster.write(
        "a.toml",
        "[agents.alpha]\ncommand = [\"sleep\", \"3605\"]\n[agents.beta]\ncommand = [\"sleep\", \"3605\"]\n",
    );
    roster.write(
        "b.toml",
        "[agents.gamma]\ncommand = [\"sleep\", \"3605\"]\n",
    );
    let first = roster.ok(&["up", "-f", "a.toml"]);
    assert!(first.contains("added:     alpha, beta"), "{first}");
    let alpha = roster.agent("alpha").pid;
    let refused = roster.run(&["up", "-f", "b.toml"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("would remove alpha, beta") && stderr.contains("--replace"),
        "{stderr}"
    );
    assert_eq!(roster.agent("alpha").pid, alpha, "alpha was touched");
    assert_eq!(roster.status().agents.len(), 2);
    // Through the API as well.
    let (status, body) = api_apply(&roster, &roster.path("b.toml"));
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("\"would_remove\":[\"alpha\",\"beta\"]"),
        "{body}"
    );
    // Editing the same file may remove agents.
    roster.write(
        "a.toml",
        "[agents.alpha]\ncommand = [\"sleep\", \"3605\"]\n",
    );
    let applied = roster.ok(&["apply", "-f", "a.toml"]);
    assert!(applied.contains("removed:   beta"), "{applied}");
    // --replace says so and does it.
    let replaced = roster.ok(&["up", "-f", "b.toml", "--replace"]);
    assert!(replaced.contains("added:     gamma"), "{replaced}");
    assert!(replaced.contains("removed:   alpha"), "{replaced}");
    let names: Vec<String> = roster
        .status()
        .agents
        .into_iter()
        .map(|agent| agent.name)
        .collect();
    assert_eq!(names, ["gamma"]);
}

/// `apply` waits for what it added like `up` (and says when it failed);
/// `--no-wait` returns at once.
#[test]
fn apply_waits_for_the_outcome() {
    let roster = Roster::new();
    roster.config("[agents.one]\ncommand = [\"sleep\", \"3606\"]\n");
    roster.up();
    roster.config(
        "[agents.one]\ncommand = [\"sleep\", \"3606\"]\n\
         [agents.two]\ncommand = [\"sleep\", \"3606\"]\nready_after = \"1s\"\n\
         [agents.bad]\ncommand = [\"sh\", \"-c\", \"exit 3\"]\ncrash_loop = 2\n",
    );
    let output = roster.run(&["apply"]);
    assert_eq!(output.status.code(), Some(1), "bad failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let two = stdout
        .lines()
        .find(|line| line.starts_with("two "))
        .expect("two in the table");
    assert!(two.contains("running"), "apply did not wait: {stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("failed: bad"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    roster.config(
        "[agents.one]\ncommand = [\"sleep\", \"3606\"]\n\
         [agents.three]\ncommand = [\"sleep\", \"3606\"]\nready_after = \"30s\"\n",
    );
    let started = Instant::now();
    let quick = roster.ok(&["apply", "--no-wait"]);
    assert!(quick.contains("added:     three"), "{quick}");
    assert!(started.elapsed() < SECS(10), "--no-wait waited");
    assert_eq!(roster.agent("three").state, AgentState::Starting);
}

/// A SIGSTOPped agent is continued after its stop signal, so its handler
/// runs: stopped gracefully, not killed at stop_timeout.
#[test]
fn a_stopped_agent_is_continued_so_its_stop_handler_runs() {
    let roster = Roster::new();
    let marker = roster.path("bye");
    roster.config(&sh_agent(
        "frozen",
        &format!(
            "trap 'echo bye > {}; exit 0' TERM; while true; do sleep 0.05; done",
            marker.display()
        ),
        "stop_timeout = \"8s\"\nready_after = \"0s\"",
    ));
    roster.up();
    let pid = roster.agent("frozen").pid.expect("pid");
    kill_group(pid, Signal::SIGSTOP);
    wait_for("the agent to be stopped", SECS(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()?
            .rsplit_once(')')?
            .1
            .trim_start()
            .starts_with('T')
            .then_some(())
    });
    let started = Instant::now();
    roster.ok(&["stop", "frozen"]);
    assert!(started.elapsed() < SECS(6), "waited for stop_timeout");
    assert_eq!(
        std::fs::read_to_string(&marker)
            .expect("the handler ran")
            .trim(),
        "bye"
    );
    let kinds = roster.event_kinds("frozen");
    assert!(!kinds.contains(&"killed".to_owned()), "{kinds:?}");
}

/// Agents get a clean start from a dirty environment: no systemd variables
/// meant for the daemon, the open-file limit the daemon was given (not its
/// raised one), and only fds 0, 1 and 2.
#[test]
fn agents_start_clean_from_a_dirty_daemon_environment() {
    let roster = Roster::new();
    roster.config("[agents.clean]\ncommand = [\"sleep\", \"3607\"]\n");
    let script = format!(
        "ulimit -S -n 777; exec 7</dev/null; exec 8>/dev/null; exec {} --home {} daemon -f roster.toml",
        BIN,
        roster.home_path().display()
    );
    let mut daemon = Command::new("sh")
        .args(["-c", &script])
        .current_dir(roster.dir.path())
        .env_remove("ROSTER_HOME")
        .env("NOTIFY_SOCKET", "/nonexistent/notify")
        .env("LISTEN_FDS", "2")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDNAMES", "a:b")
        .env("WATCHDOG_USEC", "1000000")
        .env("KEEP_ME", "yes")
        .stderr(Stdio::null())
        .spawn()
        .expect("sh");
    let pid = wait_for("the agent", SECS(10), || {
        roster
            .processes()
            .into_iter()
            .find(|(_, agent)| agent == "clean")
            .map(|(pid, _)| pid)
    });
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    let keys: Vec<&str> = environ
        .split('\0')
        .filter_map(|entry| entry.split_once('=').map(|(key, _)| key))
        .collect();
    for daemon_only in [
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "WATCHDOG_USEC",
    ] {
        assert!(
            !keys.contains(&daemon_only),
            "{daemon_only} reached the agent"
        );
    }
    assert!(
        keys.contains(&"KEEP_ME"),
        "the rest of the environment is kept"
    );
    // The limit is set right after the spawn returns: wait for it.
    let soft_limit = || {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))?
            .to_owned();
        Some(line)
    };
    let open_files = wait_for("the agent's own open-file limit", SECS(5), || {
        soft_limit().filter(|line| line.split_whitespace().nth(3) == Some("777"))
    });
    assert!(open_files.contains("777"), "{open_files}");
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    assert_eq!(
        fds,
        [0, 1, 2],
        "inherited descriptors leaked into the agent"
    );
    let exit = terminate(&mut daemon);
    assert!(exit.success());
}

/// SIGHUP while shutting down must not re-apply the config (which would
/// start agents again and keep `down` from finishing).
#[test]
fn sighup_during_shutdown_starts_nothing() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "slow",
        "trap 'sleep 1; exit 0' TERM; while true; do sleep 0.05; done",
        "stop_timeout = \"10s\"",
    ));
    let mut daemon = roster.foreground_daemon(&[]);
    wait_for("the agent", SECS(10), || {
        (!roster.processes().is_empty()).then_some(())
    });
    roster.config(&format!(
        "{}[agents.late]\ncommand = [\"sleep\", \"3608\"]\n",
        sh_agent(
            "slow",
            "trap 'sleep 1; exit 0' TERM; while true; do sleep 0.05; done",
            "stop_timeout = \"10s\"",
        )
    ));
    kill(daemon.id(), Signal::SIGTERM);
    roster.wait_event("slow", "stopping", SECS(5));
    kill(daemon.id(), Signal::SIGHUP);
    let exit = wait_for("the daemon to exit", SECS(15), || {
        daemon.try_wait().ok().flatten()
    });
    assert!(exit.success());
    assert!(
        !roster
            .events(&[])
            .iter()
            .any(|event| event.agent.as_deref() == Some("late")),
        "late was started"
    );
    assert!(roster.processes().is_empty());
}

/// Thousands of idle API connections neither exhaust the daemon's files
/// (an agent's restart still works) nor keep status from answering once
/// they close.
#[test]
fn thousands_of_idle_api_connections_are_bounded() {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let roster = Roster::new();
    roster.config("[agents.busy]\ncommand = [\"sleep\", \"3609\"]\n");
    roster.up();
    let daemon = roster.daemon_pid().expect("daemon pid");
    let fd_count = || {
        std::fs::read_dir(format!("/proc/{daemon}/fd"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    let baseline = fd_count();
    let address = UnixAddr::new(&roster.home_path().join("roster.sock")).expect("address");
    let mut held = Vec::new();
    for _ in 0..3000 {
        let Ok(fd) = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        ) else {
            break;
        };
        // Past the backlog, a non-blocking connect says EAGAIN.
        if connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &address).is_ok() {
            held.push(fd);
        }
    }
    assert!(
        held.len() > 200,
        "could only open {} connections",
        held.len()
    );
    wait_for("the daemon to accept what it may", SECS(5), || {
        (fd_count() >= baseline + 100).then_some(())
    });
    let during = fd_count();
    assert!(
        during < baseline + 200,
        "the daemon holds {during} descriptors (baseline {baseline})"
    );
    // Supervision goes on: a killed agent is restarted (a new pipe).
    let before = roster
        .processes()
        .first()
        .map(|(pid, _)| *pid)
        .expect("agent");
    kill(before, Signal::SIGKILL);
    wait_for("the agent to come back", SECS(10), || {
        roster
            .processes()
            .into_iter()
            .any(|(pid, _)| pid != before)
            .then_some(())
    });
    drop(held);
    let status = roster.wait_status("status to answer again", SECS(20), |status| {
        status.agents.len() == 1
    });
    assert_eq!(status.agents[0].state, AgentState::Starting);
    // Memory stays bounded too (20,000 unbounded connections once left the
    // daemon at 353 MB).
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{daemon}/status"))
        .expect("daemon status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    assert!(rss_kib < 100 * 1024, "the daemon holds {rss_kib} KiB");
}

/// Whether the daemon closed a control-socket connection.
fn is_closed(mut stream: &std::os::unix::net::UnixStream) -> bool {
    use std::io::Read;
    let mut buffer = [0u8; 256];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => return error.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// A request the daemon works on for longer than the control socket's
/// idle limit (10 s) is answered, however long it takes: here `up` of an
/// agent whose user is created by a `useradd` that takes 13 s. Meanwhile
/// connections that keep the daemon waiting, silent or sending a byte a
/// second, are closed at the limit.
#[test]
fn a_request_the_daemon_works_on_is_never_cut_as_idle() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    if !needs_root("slow_useradd", "create a user") {
        return;
    }
    let useradd = std::path::Path::new("/usr/sbin/useradd");
    if !useradd.is_file() {
        skip("slow_useradd", "no /usr/sbin/useradd");
        return;
    }
    let user = "rt-slow-useradd";
    // A run before this one created it; the test needs useradd to run.
    let _ = Command::new("userdel").arg(user).output();
    let roster = Roster::new();
    std::fs::set_permissions(roster.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod");
    let slow_bin = roster.path("slow-bin");
    std::fs::create_dir(&slow_bin).expect("mkdir");
    let script = slow_bin.join("useradd");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nsleep 13\nexec {} \"$@\"\n", useradd.display()),
    )
    .expect("write useradd");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        slow_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    roster.config("[agents.first]\ncommand = [\"sleep\", \"3610\"]\n");
    // The daemon gets this PATH, and so finds the slow useradd.
    let started = roster
        .command()
        .env("PATH", &path)
        .arg("up")
        .output()
        .expect("roster up");
    assert!(started.status.success(), "{started:?}");

    let socket = roster.home_path().join("roster.sock");
    let silent = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    let trickling = Arc::new(std::os::unix::net::UnixStream::connect(&socket).expect("connect"));
    for stream in [&silent, &*trickling] {
        stream.set_nonblocking(true).expect("non-blocking");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let (trickling, stop) = (trickling.clone(), stop.clone());
        std::thread::spawn(move || {
            let request = format!(
                "GET /v1/status HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
                "x".repeat(100)
            );
            for byte in request.as_bytes() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let _ = (&*trickling).write(std::slice::from_ref(byte));
                // The trickler's pace, not a wait for the daemon.
                std::thread::sleep(SECS(1));
            }
        })
    };

    roster.config(&format!(
        "[agents.first]\ncommand = [\"sleep\", \"3610\"]\n\n\
         [agents.slow]\ncommand = [\"sleep\", \"3611\"]\ncwd = \"slow\"\nuser = \"{user}\"\ncreate_user = true\n"
    ));
    let began = Instant::now();
    let output = roster.run(&["up"]);
    let took = began.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = trickler.join();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "up failed after {took:?}:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(took >= SECS(13), "useradd was not slow: {took:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("added:     slow"), "{stdout}");
    // The clients that kept the daemon waiting did not keep their slots.
    assert!(
        is_closed(&silent),
        "a silent connection outlived the idle limit"
    );
    assert!(
        is_closed(&trickling),
        "a connection sending a byte a second outlived the idle limit"
    );
    drop(roster);
    let _ = Command::new("userdel").arg(user).output();
}

/// `all` means every agent on the command line, so no agent may be named so.
#[test]
fn an_agent_named_all_is_refused() {
    let roster = Roster::new();
    roster.config("[agents.all]\ncommand = [\"sleep\", \"1\"]\n");
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("roster.toml:1:") && stderr.contains("reserved"),
        "{stderr}"
    );
}

/// Under systemd (`Type=notify`) the foreground daemon says `READY=1` once
/// its agents are started, and the agents never see the notify socket.
#[test]
fn foreground_daemon_notifies_systemd_when_its_agents_are_started() {
    let roster = Roster::new();
    roster.config("[agents.ready]\ncommand = [\"sleep\", \"3610\"]\n");
    let socket_path = roster.path("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(SECS(10)))
        .expect("read timeout");
    let mut daemon = roster.foreground_daemon(&[("NOTIFY_SOCKET", &socket_path)]);
    let mut message = [0u8; 256];
    let length = socket.recv(&mut message).expect("a notification in time");
    assert_eq!(
        String::from_utf8_lossy(&message[..length]).trim(),
        "READY=1"
    );
    let agents = roster.processes();
    assert_eq!(agents.len(), 1, "READY=1 before the agent was started");
    let environ = std::fs::read(format!("/proc/{}/environ", agents[0].0)).expect("environ");
    assert!(!String::from_utf8_lossy(&environ).contains("NOTIFY_SOCKET"));
    let exit = terminate(&mut daemon);
    assert!(exit.success());
}

/// An unprivileged daemon keeps its log pipes within the user's pipe budget
/// (`fs.pipe-user-pages-soft`), says so in the journal, and the agents' own
/// pipes keep their normal size.
#[test]
fn an_unprivileged_daemon_sizes_log_pipes_within_the_pipe_budget() {
    // A user of its own: the budget is per user, and nothing else may
    // hold pipes of it.
    let Some((uid, gid)) = other_user_or_skip(
        "pipe_budget",
        "roster-test-pipes",
        "run a daemon as another user",
    ) else {
        return;
    };
    let soft: u64 = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    if soft == 0 || soft > 65536 {
        skip("pipe_budget", "fs.pipe-user-pages-soft is unlimited here");
        return;
    }
    // A directory nobody can use, with the config and the home inside.
    let base = tempfile::Builder::new()
        .prefix("roster-pipes-")
        .tempdir()
        .expect("temp dir");
    nix::unistd::chown(
        base.path(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .expect("chown");
    let count = 120;
    let mut text = String::new();
    for index in 0..count {
        text.push_str(&format!(
            "[agents.p{index:03}]\ncommand = [\"python3\", \"-c\", \"import fcntl, os, time; r, w = os.pipe(); print('own pipe', fcntl.fcntl(r, 1032), flush=True); time.sleep(3600)\"]\n"
        ));
    }
    let config = base.path().join("roster.toml");
    std::fs::write(&config, text).expect("config");
    let home = base.path().join("home");
    let mut daemon = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "--"])
        .arg(BIN)
        .arg("--home")
        .arg(&home)
        .args(["daemon", "-f"])
        .arg(&config)
        .current_dir(base.path())
        .env_remove("ROSTER_HOME")
        .env("HOME", base.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("setpriv");
    let home_text = home.display().to_string();
    // Whatever happens, nothing of this test outlives it.
    struct Reap(String, u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            kill(self.1, Signal::SIGKILL);
            for pid in processes_of_home_any_user(&self.0) {
                kill(pid, Signal::SIGKILL);
            }
        }
    }
    let _reap = Reap(home_text.clone(), daemon.id());
    let agents = wait_for("every agent to print its own pipe size", SECS(60), || {
        let logs: Vec<String> = (0..count)
            .filter_map(|index| {
                std::fs::read_to_string(home.join(format!("logs/p{index:03}.log"))).ok()
            })
            .filter(|text| text.contains("own pipe"))
            .collect();
        (logs.len() == count).then_some(logs)
    });
    for log in &agents {
        assert!(
            log.contains("own pipe 65536"),
            "an agent's own pipe lost its size: {log}"
        );
    }
    // The log pipes themselves: opened through /proc as root.
    let processes = processes_of_home_any_user(&home_text);
    assert_eq!(processes.len(), count);
    let mut total: u64 = 0;
    for pid in &processes {
        let pipe = std::fs::File::open(format!("/proc/{pid}/fd/1")).expect("the agent's stdout");
        let size = nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_GETPIPE_SZ).expect("size");
        total += size as u64;
    }
    assert!(
        total <= soft * 4096 / 2 + count as u64 * 65536,
        "{count} log pipes take {total} bytes, more than half the budget"
    );
    let journal = rusqlite::Connection::open_with_flags(
        home.join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("journal");
    let reduced: i64 = journal
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'log_pipe_reduced'",
            [],
            |row| row.get(0),
        )
        .expect("query");
    assert!(reduced >= 1, "the reduced pipe size was not journaled");
    let exit = terminate(&mut daemon);
    assert!(exit.success(), "{exit}");
}
