//! Faults of the home: someone else's or world-writable homes, links planted
//! in a home, a deleted `daemon.lock`, a corrupt journal, forged environment
//! markers, concurrent `up` on a fresh home, and a daemon started with its
//! standard descriptors closed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use roster_core::api::{AgentState, StatusReply};

use crate::util::*;

const OTHER_USER: &str = "roster-test-other";

/// `roster --home HOME` (for homes that are not a `Roster`'s temp dir).
fn roster_at(home: &Path, dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("ROSTER_HOME")
        .arg("--home")
        .arg(home)
        .current_dir(dir);
    command
}

/// Waits for a child to exit, killing it after `timeout` (then fails).
fn exit_within(mut child: Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("output");
                panic!(
                    "{what} did not exit within {timeout:?}; stderr:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `roster daemon -f CONFIG` in the foreground, expecting it to refuse
/// to start (and to exit) quickly.
fn daemon_refuses(home: &Path, dir: &Path, config: &Path) -> Output {
    let child = roster_at(home, dir)
        .arg("daemon")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    let output = exit_within(child, SECS(10), "a daemon that should refuse to start");
    assert!(
        !output.status.success(),
        "the daemon started in {}",
        home.display()
    );
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Running `roster daemon` processes for `home`, from /proc/*/cmdline.
fn daemons_of(home: &Path) -> Vec<u32> {
    let home = home.as_os_str().as_encoded_bytes();
    roster_daemon::tools::all_pids()
        .into_iter()
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
            args.first().is_some_and(|arg| arg.ends_with(b"roster"))
                && args.contains(&&b"daemon"[..])
                && args.contains(&home)
        })
        .collect()
}

fn two_sleepers() -> String {
    let mut text = sh_agent("alpha", "exec sleep 1000", "ready_after = \"100ms\"");
    text.push_str(&sh_agent(
        "beta",
        "exec sleep 1000",
        "ready_after = \"100ms\"",
    ));
    text
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

/// Victim files outside the home that a link in the home points to.
struct Victims {
    dir: tempfile::TempDir,
}

impl Victims {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("roster-victims-")
            .tempdir()
            .expect("victims dir");
        for name in ["secret-a", "secret-b", "secret-c"] {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{name} must stay\n")).expect("victim");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        std::fs::create_dir(dir.path().join("drop")).expect("drop dir");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn assert_untouched(&self) {
        for name in ["secret-a", "secret-b", "secret-c"] {
            let text = std::fs::read_to_string(self.path(name)).expect("read victim");
            assert_eq!(text, format!("{name} must stay\n"), "{name} was written");
        }
        let dropped: Vec<_> = std::fs::read_dir(self.path("drop"))
            .expect("read drop dir")
            .collect();
        assert!(
            dropped.is_empty(),
            "files were written through a link: {dropped:?}"
        );
    }
}

#[test]
fn a_home_owned_by_another_user_is_refused_and_nothing_follows_its_links() {
    let Some((other_uid, other_gid)) = other_user_or_skip(
        "foreign_home",
        OTHER_USER,
        "create a home owned by another user",
    ) else {
        return;
    };
    let roster = Roster::new();
    let config = roster.config(&two_sleepers());
    // Like /tmp: a world-writable, sticky directory where anyone may create
    // the home first.
    let world = roster.path("world");
    std::fs::create_dir(&world).expect("world dir");
    std::fs::set_permissions(&world, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let home = world.join("home");
    std::fs::create_dir(&home).expect("home");
    let victims = Victims::new();
    std::os::unix::fs::symlink(victims.path("secret-a"), home.join("daemon.lock")).expect("ln");
    std::os::unix::fs::symlink(victims.path("secret-b"), home.join("daemon.log")).expect("ln");
    std::os::unix::fs::symlink(victims.path("drop"), home.join("logs")).expect("ln");
    for name in ["daemon.lock", "daemon.log", "logs"] {
        std::os::unix::fs::lchown(home.join(name), Some(other_uid), Some(other_gid))
            .expect("lchown");
    }
    std::os::unix::fs::chown(&home, Some(other_uid), Some(other_gid)).expect("chown");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let output = roster_at(&home, roster.dir.path())
        .arg("up")
        .output()
        .expect("run up");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "up: {text}");
    assert!(
        text.contains(&format!("owned by uid {other_uid}")) && text.contains("hint: chown"),
        "no clear refusal: {text}"
    );

    let output = daemon_refuses(&home, roster.dir.path(), &config);
    assert!(
        stderr(&output).contains(&format!("owned by uid {other_uid}")),
        "{}",
        stderr(&output)
    );

    victims.assert_untouched();
    let metadata = std::fs::symlink_metadata(&home).expect("stat home");
    assert_eq!(metadata.uid(), other_uid, "the home changed hands");
    assert_eq!(mode_of(&home), 0o755, "the home's mode changed");
    assert!(
        roster_daemon::tools::processes_of_home(&home.display().to_string()).is_empty(),
        "agents were started"
    );
}

#[test]
fn links_planted_in_an_own_home_are_never_followed() {
    let roster = Roster::new();
    let config = roster.config(&two_sleepers());
    let home = roster.home_path().to_path_buf();
    let victims = Victims::new();
    let plant = |name: &str, target: &Path| {
        std::os::unix::fs::symlink(target, home.join(name)).expect("ln");
    };

    // `up` opens daemon.log itself.
    plant("daemon.log", &victims.path("secret-a"));
    let output = roster.run(&["up"]);
    assert_eq!(output.status.code(), Some(1), "up: {}", stderr(&output));
    assert!(
        stderr(&output).contains("daemon.log is a symbolic link"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_file(home.join("daemon.log")).expect("rm");

    // The daemon opens the lock, the logs directory and the journal.
    for (name, target) in [
        ("daemon.lock", victims.path("secret-b")),
        ("logs", victims.path("drop")),
        ("journal.db", victims.path("secret-c")),
    ] {
        plant(name, &target);
        let output = daemon_refuses(&home, roster.dir.path(), &config);
        assert!(
            stderr(&output).contains("symbolic link"),
            "{name}: {}",
            stderr(&output)
        );
        std::fs::remove_file(home.join(name)).expect("rm");
    }
    victims.assert_untouched();
    assert!(roster.processes().is_empty(), "agents were started");

    // With the links gone, the same home works.
    roster.up();
    assert_eq!(roster.status().agents.len(), 2);
}

#[test]
fn an_existing_world_writable_home_is_refused_and_its_mode_kept() {
    let roster = Roster::new();
    roster.config(&two_sleepers());
    let home = roster.home_path();
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let output = roster.run(&["up"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "up: {text}");
    assert!(
        text.contains("writable by group and others") && text.contains("hint: chown/chmod"),
        "no clear refusal: {text}"
    );
    assert_eq!(mode_of(home), 0o1777, "roster changed the mode of {home:?}");
    assert!(
        !home.join("daemon.log").exists() && !home.join("journal.db").exists(),
        "roster wrote into the refused home"
    );
    // Read-only commands do not create or change anything either.
    let missing = roster.path("never-created");
    let output = roster_at(&missing, roster.dir.path())
        .args(["events"])
        .output()
        .expect("events");
    assert_eq!(output.status.code(), Some(1), "events: {}", stderr(&output));
    let _ = roster_at(&missing, roster.dir.path())
        .args(["status"])
        .output()
        .expect("status");
    assert!(!missing.exists(), "a read-only command created the home");
}

#[test]
fn deleting_daemon_lock_does_not_let_a_second_daemon_in() {
    let roster = Roster::new();
    let config = roster.config(&two_sleepers());
    roster.up();
    let first = roster.daemon_pid().expect("daemon pid");
    let pids = |status: &StatusReply| -> Vec<Option<u32>> {
        status.agents.iter().map(|agent| agent.pid).collect()
    };
    let before = pids(&roster.status());
    std::fs::remove_file(roster.home_path().join("daemon.lock")).expect("rm daemon.lock");

    let output = daemon_refuses(roster.home_path(), roster.dir.path(), &config);
    assert!(
        stderr(&output).contains("already runs"),
        "{}",
        stderr(&output)
    );
    roster.up();
    assert_eq!(daemons_of(roster.home_path()), vec![first]);
    let after = roster.status();
    assert_eq!(pids(&after), before, "the agents were replaced");
    assert!(after
        .agents
        .iter()
        .all(|agent| agent.state == AgentState::Running && agent.restarts == 0));
    assert!(
        !roster
            .events(&[])
            .iter()
            .any(|event| event.kind == "stale_stopped"),
        "a second daemon stopped the first one's agents"
    );
}

#[test]
fn a_corrupt_journal_is_moved_aside_and_the_agents_run() {
    let roster = Roster::new();
    roster.config(&two_sleepers());
    roster.up();
    roster.ok(&["down"]);
    let journal = roster.home_path().join("journal.db");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open journal")
        .set_len(100)
        .expect("truncate journal");

    roster.up();
    let status = roster.status();
    assert!(status
        .agents
        .iter()
        .all(|agent| agent.state == AgentState::Running));
    // (A root test run also warns that the agent runs as root.)
    let journal_warnings: Vec<&String> = status
        .warnings
        .iter()
        .filter(|warning| !warning.contains("as root"))
        .collect();
    assert_eq!(journal_warnings.len(), 1, "{:?}", status.warnings);
    let warning = journal_warnings[0];
    let aside: PathBuf = std::fs::read_dir(roster.home_path())
        .expect("read home")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().to_str()?.to_owned();
            (name.starts_with("journal.db.corrupt-") && !name.ends_with("-wal"))
                .then(|| entry.path())
        })
        .next()
        .expect("no moved-aside journal");
    assert!(
        warning.contains(&aside.display().to_string()),
        "the warning does not name {aside:?}: {warning}"
    );
    assert_eq!(std::fs::metadata(&aside).expect("aside").len(), 100);
    let events = roster.events(&[]);
    assert!(
        events.iter().any(|event| event.kind == "journal_reset"),
        "{events:#?}"
    );
    let table = roster.run(&["status"]);
    assert!(
        stderr(&table).contains("warning: the journal was corrupt"),
        "{}",
        stderr(&table)
    );
}

#[test]
fn markers_of_another_user_are_not_trusted() {
    let Some((other_uid, other_gid)) = other_user_or_skip(
        "forged_markers",
        OTHER_USER,
        "run a process as another user",
    ) else {
        return;
    };
    let roster = Roster::new();
    roster.config(&sh_agent(
        "worker",
        "exec sleep 1000",
        "ready_after = \"100ms\"",
    ));
    let home = roster.home_path().display().to_string();
    // One with a forged, terminal-escaping name and one with a valid name:
    // neither belongs to this root daemon.
    let foreign: Vec<Child> = ["evil\n\x1b[31m", "worker"]
        .into_iter()
        .map(|agent| {
            Command::new("setpriv")
                .arg(format!("--reuid={other_uid}"))
                .arg(format!("--regid={other_gid}"))
                .arg("--clear-groups")
                .arg("env")
                .arg(format!("ROSTER_HOME={home}"))
                .arg(format!("ROSTER_AGENT={agent}"))
                .args(["sleep", "60"])
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn a foreign process")
        })
        .collect();
    let pids: Vec<u32> = foreign.iter().map(Child::id).collect();
    for pid in &pids {
        wait_for("the foreign process to exec sleep", SECS(5), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .filter(|comm| comm.trim() == "sleep")
        });
    }

    let started = Instant::now();
    roster.up();
    let took = started.elapsed();
    for pid in &pids {
        assert!(alive(*pid), "the daemon stopped foreign process {pid}");
    }
    for mut child in foreign {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        took < SECS(8),
        "up waited {took:?} (a stale-stop of foreign processes?)"
    );
    let events = roster.events(&[]);
    assert!(
        !events
            .iter()
            .any(|event| event.pid.is_some_and(|pid| pids.contains(&pid))
                || event.detail.contains("evil")
                || event.detail.contains('\x1b')
                || event
                    .agent
                    .as_deref()
                    .is_some_and(|agent| agent.contains("evil"))),
        "{events:#?}"
    );
    assert_eq!(roster.agent("worker").state, AgentState::Running);
}

#[test]
fn concurrent_up_on_a_fresh_home_all_succeed_with_one_daemon() {
    let roster = Roster::new();
    roster.config(&two_sleepers());
    // Not yet there: the five race to create it too.
    let home = roster.path("fresh/home");
    let outputs: Vec<Output> = (0..5)
        .map(|_| {
            roster_at(&home, roster.dir.path())
                .arg("up")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn up")
        })
        .collect::<Vec<Child>>()
        .into_iter()
        .map(|child| exit_within(child, SECS(20), "roster up"))
        .collect();
    let teardown = || {
        let _ = roster_at(&home, roster.dir.path()).arg("down").output();
    };
    for output in &outputs {
        if !output.status.success() {
            teardown();
            panic!("an `up` failed: {}", stderr(output));
        }
    }
    let daemons = daemons_of(&home);
    let agents = roster_daemon::tools::processes_of_home(&home.display().to_string());
    let status = roster_at(&home, roster.dir.path())
        .args(["status", "--json"])
        .output()
        .expect("status");
    teardown();
    assert_eq!(daemons.len(), 1, "daemons: {daemons:?}");
    // No daemon that lost the race takes over once the winner is gone.
    wait_for("every daemon of the home to exit", SECS(10), || {
        daemons_of(&home).is_empty().then_some(())
    });
    let mut names: Vec<&str> = agents.iter().map(|(_, name)| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["alpha", "beta"], "each agent once");
    let status: StatusReply = serde_json::from_slice(&status.stdout).expect("status json");
    assert!(status
        .agents
        .iter()
        .all(|agent| agent.state == AgentState::Running && agent.restarts == 0));
    assert_eq!(mode_of(&home), 0o700);
}

#[test]
fn a_daemon_started_with_closed_standard_fds_keeps_its_journal_intact() {
    let roster = Roster::new();
    let config = roster.config(&two_sleepers());
    let script = format!(
        "exec '{}' --home '{}' daemon -f '{}' <&- >&- 2>&-",
        BIN,
        roster.home_path().display(),
        config.display()
    );
    let mut shell = Command::new("sh")
        .args(["-c", &script])
        .env_remove("ROSTER_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    wait_for("the daemon to answer", SECS(15), || {
        roster.run(&["status"]).status.success().then_some(())
    });
    roster.wait_status("both agents running", SECS(15), |status| {
        status.agents.len() == 2
            && status
                .agents
                .iter()
                .all(|agent| agent.state == AgentState::Running)
    });
    // The daemon logs (to its fd 2) at every start; that must not land in
    // the journal or a log.
    roster.ok(&["restart", "alpha"]);
    roster.ok(&["down"]);
    let _ = exit_within_child(&mut shell);
    assert_eq!(journal_integrity(roster.home_path()), "ok");
    let kinds: Vec<String> = roster
        .events(&[])
        .into_iter()
        .map(|event| event.kind)
        .collect();
    for expected in [
        "daemon_started",
        "config_applied",
        "stopped",
        "daemon_stopped",
    ] {
        assert!(
            kinds.iter().any(|kind| kind == expected),
            "no {expected}: {kinds:?}"
        );
    }
    let starts = kinds.iter().filter(|kind| *kind == "started").count();
    assert_eq!(starts, 3, "two starts and a restart: {kinds:?}");
    for agent in ["alpha", "beta"] {
        let text = std::fs::read_to_string(roster.log_path(agent)).unwrap_or_default();
        assert!(
            !text.contains("INFO"),
            "daemon log text in {agent}'s log: {text}"
        );
    }
}

fn exit_within_child(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + SECS(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// A home deleted under a running daemon, and a new directory made at its
/// path (a script that reused it) with a second daemon in it: the first
/// notices within seconds, says so, stops its agent gracefully and exits
/// 1, and writes nothing into the new home (issue #14, item 8: it ran on,
/// unreachable, and its log writer recreated `logs/web.log` there).
#[test]
fn a_daemon_whose_home_is_deleted_stops_its_agents_and_exits() {
    let parent = tempfile::tempdir().expect("temp dir");
    let home = parent.path().join("home");
    let dir = tempfile::tempdir().expect("config dir");
    let config = dir.path().join("roster.toml");
    let bye = dir.path().join("bye");
    std::fs::write(
        &config,
        sh_agent(
            "web",
            &format!(
                "trap 'echo bye > {}; exit 0' TERM; while :; do echo tick; sleep 0.05; done",
                bye.display()
            ),
            "",
        ),
    )
    .expect("config");
    let daemon = roster_at(&home, dir.path())
        .args(["daemon", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon");
    let status_of = |home: &Path| -> Option<StatusReply> {
        let output = roster_at(home, dir.path())
            .args(["status", "--json"])
            .output()
            .ok()?;
        serde_json::from_slice(&output.stdout).ok()
    };
    let agent = wait_for("web to run", SECS(20), || {
        let status = status_of(&home)?;
        let web = status.agents.first()?;
        (web.state == AgentState::Running).then_some(web.pid?)
    });

    std::fs::remove_dir_all(&home).expect("rm -rf the home");
    std::fs::create_dir(&home).expect("a new home at the path");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("mode");
    // A second daemon takes the new home with an agent of its own.
    let other_dir = tempfile::tempdir().expect("other config dir");
    let other = other_dir.path().join("roster.toml");
    std::fs::write(&other, sh_agent("other", "exec sleep 1000", "")).expect("config");
    let up = roster_at(&home, other_dir.path())
        .args(["up", "-f"])
        .arg(&other)
        .output()
        .expect("up");
    assert!(up.status.success(), "up in the new home: {}", stderr(&up));

    let output = exit_within(daemon, SECS(20), "the daemon whose home was deleted");
    assert_eq!(output.status.code(), Some(1), "exit status");
    let said = stderr(&output);
    assert!(
        said.contains(&format!("the home {} was deleted", home.display())),
        "{said}"
    );
    assert!(!alive(agent), "its agent outlived it");
    assert_eq!(
        std::fs::read_to_string(&bye).unwrap_or_default().trim(),
        "bye",
        "the agent was not stopped gracefully"
    );
    // Nothing of the old daemon landed in the new home; the new daemon
    // still answers on its own socket.
    assert!(
        !home.join("logs").join("web.log").exists(),
        "the old daemon wrote into the new home"
    );
    let status = status_of(&home).expect("the new daemon answers");
    assert_eq!(status.agents.len(), 1);
    assert_eq!(status.agents[0].name, "other");
    roster_at(&home, other_dir.path())
        .arg("down")
        .output()
        .expect("down");
}
