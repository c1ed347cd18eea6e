//! Stopping: the stop signal to the whole group, SIGKILL after the timeout,
//! double-forked grandchildren, and no zombies.

use std::time::{Duration, Instant};

use roster_core::api::AgentState;

use crate::util::*;

#[test]
fn stop_signal_reaches_the_agent_and_its_group() {
    let roster = Roster::new();
    let child_pid = roster.path("child.pid");
    roster.config(&sh_agent(
        "polite",
        &format!(
            "sleep 1000 & echo $! > {}; trap 'echo got INT; kill $!; exit 0' INT; echo ready; wait",
            child_pid.display()
        ),
        "stop_signal = \"SIGINT\"",
    ));
    roster.up();
    let log = roster.log_path("polite");
    wait_for("the agent to be ready", SECS(10), || {
        log_lines(&log).contains(&"ready".to_owned()).then_some(())
    });
    let child: u32 = wait_for("the child pid", SECS(5), || {
        std::fs::read_to_string(&child_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    roster.ok(&["stop", "polite"]);
    wait_for("the INT trap to log", SECS(5), || {
        log_lines(&log)
            .contains(&"got INT".to_owned())
            .then_some(())
    });
    assert!(!alive(child), "the agent's child survived the stop");
    let stopped = roster
        .wait_event("polite", "stopped", SECS(10))
        .into_iter()
        .find(|event| event.kind == "stopped")
        .expect("stopped event");
    assert!(stopped.detail.contains("exit code 0"), "{}", stopped.detail);
}

/// A daemon started from a script in the background (`roster up &`,
/// `nohup`) inherits SIGINT and SIGQUIT ignored; its agents must not, or
/// a `stop_signal = "SIGINT"` never reaches their trap and every stop
/// ends in SIGKILL.
#[test]
fn agents_of_a_daemon_started_with_sigint_ignored_still_get_sigint() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "polite",
        "trap 'echo got INT; exit 0' INT; echo ready; while true; do sleep 0.05; done",
        "stop_signal = \"SIGINT\"\nstop_timeout = \"20s\"",
    ));
    let output = std::process::Command::new("sh")
        .args(["-c", "trap '' INT QUIT; exec \"$0\" \"$@\"", BIN, "--home"])
        .arg(roster.home.path())
        .arg("up")
        .env_remove("ROSTER_HOME")
        .current_dir(roster.dir.path())
        .output()
        .expect("run roster up under sh");
    assert!(output.status.success(), "{output:?}");
    let log = roster.log_path("polite");
    wait_for("the agent to be ready", SECS(10), || {
        log_lines(&log).contains(&"ready".to_owned()).then_some(())
    });
    let started = Instant::now();
    roster.ok(&["stop", "polite"]);
    wait_for("the INT trap to log", SECS(5), || {
        log_lines(&log)
            .contains(&"got INT".to_owned())
            .then_some(())
    });
    assert!(
        started.elapsed() < SECS(10),
        "the stop waited for stop_timeout: SIGINT did not reach the agent"
    );
}

#[test]
fn an_agent_ignoring_the_stop_signal_is_killed_after_stop_timeout() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "stubborn",
        "trap '' TERM; echo ignoring; while true; do sleep 0.05; done",
        "stop_timeout = \"700ms\"",
    ));
    roster.up();
    let pid = roster.agent("stubborn").pid.expect("pid");
    wait_for("the trap to be set", SECS(10), || {
        log_lines(&roster.log_path("stubborn"))
            .contains(&"ignoring".to_owned())
            .then_some(())
    });
    let started = Instant::now();
    roster.ok(&["stop", "stubborn"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "stopped too early: {took:?}"
    );
    assert!(took < SECS(5), "stop took {took:?}");
    assert!(!alive(pid));
    let expected = ["stopping", "killed", "stopped"].map(String::from);
    wait_for("stopping, killed, stopped in the journal", SECS(10), || {
        let kinds: Vec<String> = roster
            .events(&["stubborn"])
            .into_iter()
            .map(|event| event.kind)
            .collect();
        let mut wanted = expected.iter().peekable();
        for kind in &kinds {
            if wanted.peek() == Some(&kind) {
                wanted.next();
            }
        }
        wanted.peek().is_none().then_some(())
    });
}

#[test]
fn double_forked_grandchildren_are_stopped_and_reaped() {
    let roster = Roster::new();
    let grandchild_pid = roster.path("grandchild.pid");
    // The grandchild leaves the agent's session and process group, and its
    // parent exits: only the subreaper can still find it.
    roster.config(&sh_agent(
        "forker",
        &format!(
            "setsid sh -c 'sleep 1000 & echo $! > {}' & wait; echo forked; exec sleep 1000",
            grandchild_pid.display()
        ),
        "",
    ));
    roster.up();
    let grandchild: u32 = wait_for("the grandchild pid", SECS(10), || {
        std::fs::read_to_string(&grandchild_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    let daemon = roster.daemon_pid().expect("daemon pid");
    wait_for(
        "the grandchild to be reparented to the daemon",
        SECS(5),
        || (roster_daemon::tools::sample(grandchild)?.ppid == daemon).then_some(()),
    );
    roster.ok(&["stop", "forker"]);
    wait_for(
        "the double-forked grandchild to be stopped",
        SECS(5),
        || (!alive(grandchild)).then_some(()),
    );
    assert!(
        zombies_of(daemon).is_empty(),
        "zombies left: {:?}",
        zombies_of(daemon)
    );

    // And on `down`, again with a fresh grandchild.
    std::fs::remove_file(&grandchild_pid).expect("rm");
    roster.ok(&["start", "forker"]);
    let grandchild: u32 = wait_for("the second grandchild pid", SECS(10), || {
        std::fs::read_to_string(&grandchild_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    roster.ok(&["down"]);
    assert!(!alive(grandchild), "a grandchild survived roster down");
    assert!(roster.processes().is_empty(), "{:?}", roster.processes());
}

#[test]
fn no_zombies_after_children_of_agents_exit() {
    let roster = Roster::new();
    // Spawns short-lived children that get orphaned (the subshell exits
    // before its child): the daemon inherits and must reap them.
    roster.config(&sh_agent(
        "spawner",
        "for i in 1 2 3 4 5 6 7 8; do (sleep 0.1 &) ; done; echo spawned; exec sleep 1000",
        "",
    ));
    roster.up();
    let daemon = roster.daemon_pid().expect("daemon pid");
    wait_for("the agent to spawn", SECS(5), || {
        log_lines(&roster.log_path("spawner"))
            .contains(&"spawned".to_owned())
            .then_some(())
    });
    let main = roster.agent("spawner").pid.expect("pid");
    // The orphans are the daemon's children until they exit and are reaped;
    // a zombie would stay listed forever.
    wait_for("orphans to exit and be reaped", SECS(5), || {
        let children = children_of(daemon);
        (children == [main]).then_some(())
    });
    assert!(zombies_of(daemon).is_empty());
    assert_eq!(roster.agent("spawner").state, AgentState::Running);
}

#[test]
fn agents_start_with_no_blocked_or_ignored_signals() {
    // The daemon blocks the signals it reads from a signalfd and Rust
    // ignores SIGPIPE; neither may leak into an agent, or its stop signal
    // would never arrive.
    let roster = Roster::new();
    roster.config(&sh_agent(
        "masks",
        "exec grep -E '^Sig(Blk|Ign)' /proc/self/status",
        "restart = \"never\"",
    ));
    let _ = roster.run(&["up", "--timeout", "2s"]);
    let lines = wait_for("the agent's signal masks", SECS(10), || {
        let lines = log_lines(&roster.log_path("masks"));
        (lines.len() == 2).then_some(lines)
    });
    let mask = |prefix: &str| -> u64 {
        let line = lines
            .iter()
            .find(|line| line.starts_with(prefix))
            .expect("line");
        u64::from_str_radix(line.split_whitespace().nth(1).expect("value"), 16).expect("hex")
    };
    assert_eq!(mask("SigBlk"), 0, "{lines:?}");
    assert_eq!(
        mask("SigIgn") & (1 << (Signal::SIGPIPE as i32 - 1)),
        0,
        "SIGPIPE is ignored: {lines:?}"
    );
}

/// `status` asked while `down` finishes (here: a stray that ignores SIGTERM
/// keeps the daemon two seconds in its last sweep) gets an answer, the
/// status or "shutting down", never a cut connection.
#[test]
fn status_during_down_is_answered_not_cut() {
    let roster = Roster::new();
    roster.config(&sh_agent(
        "leaver",
        "setsid sh -c 'trap \"\" TERM; sleep 30' & exec sleep 1000",
        "",
    ));
    roster.up();
    let asking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let asker = {
        let asking = asking.clone();
        let mut command = roster.command();
        command.args(["status", "--json"]);
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while asking.load(std::sync::atomic::Ordering::Relaxed) {
                let output = command.output().expect("status");
                answers.push((
                    output.status.success(),
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                ));
                std::thread::sleep(Duration::from_millis(20));
            }
            answers
        })
    };
    let started = Instant::now();
    roster.ok(&["down"]);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    asking.store(false, std::sync::atomic::Ordering::Relaxed);
    let answers = asker.join().expect("asker");
    assert!(
        took >= Duration::from_secs(1),
        "the stray should have held down: {took:?}"
    );
    let refused: Vec<&String> = answers
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, said)| said)
        .collect();
    assert!(
        refused.iter().any(|said| said.contains("shutting down")),
        "no status was asked in the last sweep: {answers:?}"
    );
    for said in refused {
        assert!(
            said.contains("shutting down") || said.contains("no roster daemon"),
            "a status during down got: {said}"
        );
    }
}

/// Every agent starts with no signal ignored and none blocked, whether the
/// daemon spawns it directly or through the exec shim (another user). The
/// shim is the `roster` binary, whose runtime ignores SIGPIPE, and an
/// ignored SIGPIPE survives exec: a worker writing to a closed pipe would
/// then get EPIPE errors instead of dying as it expects to. (The shim
/// relies on `Command::exec` resetting SIGPIPE and the mask; this pins it.)
#[test]
fn agents_start_with_no_signal_ignored_or_blocked_with_or_without_the_shim() {
    // The shell reads its own status with builtins: a forked grep would
    // catch it mid-fork, with every signal blocked for a moment.
    let direct = "[agents.direct]\ncommand = [\"sh\", \"-c\", \"while read key value; do case $key in SigIgn:|SigBlk:) echo $key $value;; esac; done < /proc/$$/status; exec sleep 3600\"]\ncwd = \"/\"\n";
    let shimmed = if needs_root("signal_dispositions", "run an agent as nobody") {
        "[agents.shimmed]\ncommand = [\"sh\", \"-c\", \"while read key value; do case $key in SigIgn:|SigBlk:) echo $key $value;; esac; done < /proc/$$/status; exec sleep 3600\"]\ncwd = \"/\"\nuser = \"nobody\"\n"
    } else {
        // Without root the shim still runs for an open-file limit.
        "[agents.shimmed]\ncommand = [\"sh\", \"-c\", \"while read key value; do case $key in SigIgn:|SigBlk:) echo $key $value;; esac; done < /proc/$$/status; exec sleep 3600\"]\ncwd = \"/\"\nopen_files = 777\n"
    };
    let roster = Roster::new();
    roster.config(&format!("{direct}\n{shimmed}"));
    roster.up();
    for agent in ["direct", "shimmed"] {
        let log = roster.log_path(agent);
        let lines = wait_for("the agent's signal masks in its log", SECS(10), || {
            let lines = log_lines(&log);
            (lines.len() >= 2).then_some(lines)
        });
        for mask in ["SigIgn", "SigBlk"] {
            let line = lines
                .iter()
                .find(|line| line.starts_with(mask))
                .unwrap_or_else(|| panic!("{agent}: no {mask} line in {lines:?}"));
            let bits = line.trim_start_matches(mask).trim_start_matches(':').trim();
            let bits = u64::from_str_radix(bits, 16).expect("a hex signal mask");
            // glibc's posix_spawn leaves its two internal signals (32 and
            // 33, below SIGRTMIN) ignored in the child on purpose; no
            // program can use them, and glibc programs take them back.
            let glibc_internal = (1 << 31) | (1 << 32);
            assert_eq!(
                bits & !glibc_internal,
                0,
                "{agent}: {mask} is {bits:016x}, expected no signal (SIGPIPE is 0000000000001000)"
            );
        }
    }
}
