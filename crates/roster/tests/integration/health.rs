//! Health checks end to end: real agents, real probes (HTTP on loopback,
//! TCP, commands), and what roster does about a sick agent.

use std::time::Instant;

use roster_core::api::{AgentState, Health};

use crate::util::*;

/// A Python agent serving /health on `port`: 200, or 500 while a file
/// `sick` exists in its directory. On SIGTERM it finishes its "task"
/// (0.3 s), writes `drained`, and exits 0.
fn http_agent(port: u16) -> String {
    format!(
        r#"
import http.server, os, signal, sys, threading, time

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists("sick") else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("serving", flush=True)

def drain(signum, frame):
    time.sleep(0.3)
    with open("drained", "a") as f:
        f.write("drained\n")
    sys.exit(0)

signal.signal(signal.SIGTERM, drain)
while True:
    time.sleep(0.05)
"#
    )
}

#[test]
fn a_failing_health_endpoint_leads_to_a_drained_restart() {
    let roster = Roster::new();
    let port = free_port();
    roster.write("agent.py", &http_agent(port));
    roster.config(&format!(
        "[agents.web]\ncommand = [\"python3\", \"agent.py\"]\nready_after = \"200ms\"\n\
         drain_timeout = \"10s\"\n\
         [agents.web.health]\nhttp = \"http://127.0.0.1:{port}/health\"\ninterval = \"300ms\"\n\
         timeout = \"1s\"\nretries = 2\nstart_period = \"2s\"\n"
    ));
    roster.up();
    let healthy = roster.wait_status("web healthy", SECS(15), |status| {
        status.agents[0].health == Health::Healthy
    });
    let first = healthy.agents[0].pid.expect("pid");
    let json: serde_json::Value =
        serde_json::from_str(&roster.ok(&["status", "--json"])).expect("json");
    assert_eq!(json["agents"][0]["health"], "healthy", "{json}");
    let table = roster.ok(&["status"]);
    assert!(table.contains("healthy"), "{table}");

    std::fs::write(roster.path("sick"), "").expect("make it sick");
    roster.wait_event("web", "unhealthy", SECS(10));
    std::fs::remove_file(roster.path("sick")).expect("cure it");
    let restarted = roster.wait_status("web restarted and healthy", SECS(20), |status| {
        let web = &status.agents[0];
        web.pid.is_some_and(|pid| pid != first) && web.health == Health::Healthy
    });
    assert_eq!(restarted.agents[0].state, AgentState::Running);
    assert_eq!(
        std::fs::read_to_string(roster.path("drained"))
            .expect("the agent finished its task before the restart")
            .trim(),
        "drained"
    );
    let all = roster.event_kinds("web");
    // The health alert fires and resolves around the restart.
    // (It resolves once the new process has been healthy for 30 s.)
    roster.wait_event("web", "alert_resolved", SECS(60));
    assert!(all.contains(&"alert_firing".to_owned()), "{all:?}");
    let journal: Vec<String> = all
        .into_iter()
        .filter(|kind| !kind.starts_with("alert_"))
        .collect();
    let from = journal
        .iter()
        .position(|kind| kind == "unhealthy")
        .expect("unhealthy");
    assert_eq!(
        &journal[from..from + 4],
        ["unhealthy", "stopping", "stopped", "started"],
        "{journal:?}"
    );
    assert!(!journal.contains(&"killed".to_owned()), "{journal:?}");
    let detail = roster
        .events(&["web"])
        .into_iter()
        .find(|event| event.kind == "unhealthy")
        .expect("unhealthy")
        .detail;
    assert!(detail.contains("status 500"), "{detail}");
}

#[test]
fn a_hung_exec_probe_is_cut_at_its_timeout_and_supervision_goes_on() {
    let roster = Roster::new();
    roster.config(
        "[agents.slowcheck]\ncommand = [\"sleep\", \"3620\"]\nready_after = \"100ms\"\n\
         [agents.slowcheck.health]\nexec = [\"sleep\", \"3621\"]\ninterval = \"200ms\"\n\
         timeout = \"300ms\"\nretries = 1\nstart_period = \"0s\"\non_failure = \"none\"\n",
    );
    roster.up();
    roster.wait_status("slowcheck unhealthy", SECS(10), |status| {
        status.agents[0].health == Health::Unhealthy
    });
    let detail = roster
        .events(&["slowcheck"])
        .into_iter()
        .find(|event| event.kind == "unhealthy")
        .expect("unhealthy")
        .detail;
    assert!(detail.contains("no answer within 300ms"), "{detail}");
    // Hung probes are killed, not piled up: at most the current one runs.
    let probes = || {
        roster
            .processes()
            .into_iter()
            .filter(|(pid, _)| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.ends_with(b"3621\0"))
            })
            .count()
    };
    for _ in 0..10 {
        assert!(probes() <= 1, "hung probes pile up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A probe hanging never delays supervision: a kill is answered at once.
    let pid = roster.agent("slowcheck").pid.expect("pid");
    let killed = Instant::now();
    kill(pid, Signal::SIGKILL);
    roster.wait_status("a new pid", SECS(5), |status| {
        status.agents[0].pid.is_some_and(|new| new != pid)
    });
    assert!(
        killed.elapsed() < SECS(2),
        "restart took {:?}",
        killed.elapsed()
    );
    // on_failure = "none": never restarted for its health.
    assert!(!roster
        .event_kinds("slowcheck")
        .contains(&"stopping".to_owned()));
    roster.ok(&["down"]);
    assert_eq!(probes(), 0, "a probe outlived down");
}

#[test]
fn tcp_and_exec_checks_report_health_and_alert_leaves_the_agent_alone() {
    let roster = Roster::new();
    let closed = free_port();
    roster.config(&format!(
        "[agents.listening]\ncommand = [\"python3\", \"-c\", \"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {open})); s.listen(); time.sleep(3600)\"]\n\
         ready_after = \"300ms\"\n\
         [agents.listening.health]\ntcp = \"127.0.0.1:{open}\"\ninterval = \"200ms\"\nstart_period = \"0s\"\n\
         [agents.deaf]\ncommand = [\"sleep\", \"3622\"]\nready_after = \"100ms\"\n\
         [agents.deaf.health]\ntcp = \"127.0.0.1:{closed}\"\ninterval = \"200ms\"\nretries = 2\n\
         start_period = \"0s\"\non_failure = \"alert\"\n\
         [agents.checked]\ncommand = [\"sleep\", \"3623\"]\nready_after = \"100ms\"\n\
         [agents.checked.health]\nexec = [\"sh\", \"-c\", \"test -e ok\"]\ninterval = \"200ms\"\n\
         retries = 1\nstart_period = \"0s\"\non_failure = \"none\"\n",
        open = free_port(),
    ));
    roster.up();
    std::fs::write(roster.path("ok"), "").expect("ok file");
    let status = roster.wait_status("verdicts", SECS(15), |status| {
        let health = |name: &str| {
            status
                .agents
                .iter()
                .find(|agent| agent.name == name)
                .map(|agent| agent.health)
        };
        health("listening") == Some(Health::Healthy)
            && health("deaf") == Some(Health::Unhealthy)
            && health("checked") == Some(Health::Healthy)
    });
    let deaf = status
        .agents
        .iter()
        .find(|agent| agent.name == "deaf")
        .and_then(|agent| agent.pid);
    // The exec check runs in the agent's directory: remove its file.
    std::fs::remove_file(roster.path("ok")).expect("rm ok");
    roster.wait_status("checked unhealthy", SECS(10), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "checked" && agent.health == Health::Unhealthy)
    });
    // `alert` journals and leaves the agent running.
    assert_eq!(roster.agent("deaf").pid, deaf);
    let events = roster.event_kinds("deaf");
    assert_eq!(
        events.iter().filter(|kind| *kind == "unhealthy").count(),
        1,
        "{events:?}"
    );
    assert!(!events.contains(&"stopping".to_owned()), "{events:?}");
}

/// An exec check gets `ROSTER_PID`, the pid of the process it judges: a
/// check that asks that process (here: its pid file) is healthy, and after
/// a restart it judges the new process.
#[test]
fn an_exec_check_knows_the_pid_it_judges() {
    let roster = Roster::new();
    roster.config(
        "[agents.pidful]\ncommand = [\"sh\", \"-c\", \"echo $$ > pid; exec sleep 3624\"]\n\
         ready_after = \"100ms\"\n\
         [agents.pidful.health]\nexec = [\"sh\", \"-c\", \"test \\\"$ROSTER_PID\\\" = \\\"$(cat pid)\\\"\"]\n\
         interval = \"200ms\"\nretries = 1\nstart_period = \"0s\"\non_failure = \"none\"\n",
    );
    roster.up();
    let healthy = |what: &str| {
        roster.wait_status(what, SECS(15), |status| {
            status
                .agents
                .iter()
                .any(|agent| agent.name == "pidful" && agent.health == Health::Healthy)
        })
    };
    let first = healthy("healthy: ROSTER_PID is the agent's pid").agents[0].pid;
    roster.ok(&["restart", "pidful"]);
    let second = roster.wait_status("a new healthy process", SECS(15), |status| {
        status.agents.iter().any(|agent| {
            agent.name == "pidful" && agent.pid != first && agent.health == Health::Healthy
        })
    });
    assert_ne!(second.agents[0].pid, first);
    // A pid file naming another process makes the check fail.
    std::fs::write(roster.path("pid"), "1\n").expect("a wrong pid");
    roster.wait_status("unhealthy once the pid differs", SECS(15), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "pidful" && agent.health == Health::Unhealthy)
    });
}

/// Issue #14: a 1 ms `interval` or `timeout` was accepted (and flapped
/// three times a second for ever): `check` refuses less than 100 ms, with
/// the line and a hint, and `up` does not start such a config.
#[test]
fn a_probe_period_below_100ms_is_a_check_error() {
    let roster = Roster::new();
    roster.config(
        "[agents.fast]\ncommand = [\"sleep\", \"3625\"]\n\
         [agents.fast.health]\nexec = [\"true\"]\ninterval = \"1ms\"\ntimeout = \"1ms\"\n",
    );
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "roster.toml:5:12: `interval` must be at least 100ms",
        "roster.toml:6:11: `timeout` must be at least 100ms",
        "hint: probing more often only adds load",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    let up = roster.run(&["up"]);
    assert!(!up.status.success(), "up accepted a 1ms probe");
    assert!(roster.processes().is_empty(), "an agent started");
}

/// Issue #14: `AgentUnhealthy` has hysteresis. A check that passes and
/// fails by turns, every 100 ms, used to fire and resolve the alert with
/// every flap; now it fires once and stays firing while the agent flaps,
/// and it resolves only once the agent has stayed healthy for 30 s.
#[test]
fn a_flapping_check_fires_its_alert_once() {
    let roster = Roster::new();
    // Fails on odd runs, passes on even ones, until `steady` exists.
    roster.config(
        "[agents.flappy]\ncommand = [\"sleep\", \"3626\"]\nready_after = \"100ms\"\n\
         [agents.flappy.health]\nexec = [\"sh\", \"-c\", \
         \"test -e steady && exit 0; n=$(cat n 2>/dev/null || echo 0); echo $((n + 1)) > n; test $((n % 2)) = 0\"]\n\
         interval = \"100ms\"\nretries = 1\nstart_period = \"0s\"\non_failure = \"alert\"\n",
    );
    roster.up();
    roster.wait_event("flappy", "alert_firing", SECS(10));
    // Many flaps: each is an `unhealthy` and a `healthy` event.
    let flaps = || {
        roster
            .event_kinds("flappy")
            .iter()
            .filter(|kind| *kind == "unhealthy")
            .count()
    };
    wait_for("ten flaps", SECS(30), || (flaps() >= 10).then_some(()));
    let alert_events = |kind: &str| {
        roster
            .event_kinds("flappy")
            .iter()
            .filter(|event| *event == kind)
            .count()
    };
    assert_eq!(
        alert_events("alert_firing"),
        1,
        "{:?}",
        roster.event_kinds("flappy")
    );
    assert_eq!(
        alert_events("alert_resolved"),
        0,
        "{:?}",
        roster.event_kinds("flappy")
    );
    // Steady from now on: the alert resolves after 30 s of health, once.
    std::fs::write(roster.path("steady"), "").expect("steady");
    let steady = Instant::now();
    roster.wait_event("flappy", "alert_resolved", SECS(60));
    assert!(
        steady.elapsed() >= SECS(29),
        "resolved after {:?} of health",
        steady.elapsed()
    );
    assert_eq!(alert_events("alert_firing"), 1);
    assert_eq!(alert_events("alert_resolved"), 1);
}

/// Issue #14: an exec check that starts a background process in a session
/// of its own (`setsid cmd &`) leaked one process per run (50 after 55 s
/// at 1 s) until the agent stopped. Now what a run leaves behind is killed
/// once it ends: at most the runs in flight have one, and the agent itself
/// is not touched.
#[test]
fn what_an_exec_check_leaves_running_dies_with_the_run() {
    let roster = Roster::new();
    roster.config(
        "[agents.host]\ncommand = [\"sh\", \"-c\", \"setsid sleep 3629 & exec sleep 3627\"]\n\
         ready_after = \"100ms\"\n\
         [agents.host.health]\nexec = [\"sh\", \"-c\", \"setsid sleep 3628 & \
         setsid sh -c 'setsid sleep 3632 & exec sleep 3633' & echo run >> runs; exit 0\"]\n\
         interval = \"200ms\"\nretries = 1\nstart_period = \"0s\"\non_failure = \"none\"\n",
    );
    roster.up();
    let pid = roster.wait_state("host", AgentState::Running, SECS(10)).pid;
    let runs = || {
        std::fs::read_to_string(roster.path("runs"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    wait_for("ten runs of the check", SECS(30), || {
        (runs() >= 10).then_some(())
    });
    // Over a few more runs, at most those in flight have a leftover.
    let until = Instant::now() + SECS(2);
    let mut most = 0;
    while Instant::now() < until {
        // Children of the check, and a grandchild in a session of its own
        // whose parent outlived the check.
        for argv in [["sleep", "3628"], ["sleep", "3632"], ["sleep", "3633"]] {
            most = most.max(processes_running(&argv).len());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        most <= 2,
        "{most} leftovers of the check after {} runs",
        runs()
    );
    // The agent and the process it started itself in a session of its own
    // are its own business: untouched.
    let agent = roster.agent("host");
    assert_eq!(agent.pid, pid);
    assert_eq!(agent.state, AgentState::Running);
    assert_eq!(processes_running(&["sleep", "3629"]).len(), 1);
    assert!(!roster
        .event_kinds("host")
        .iter()
        .any(|kind| kind == "stray_killed" || kind == "exited"));
    roster.ok(&["down"]);
    for leftover in ["3628", "3629", "3632", "3633"] {
        assert!(processes_running(&["sleep", leftover]).is_empty());
    }
}
