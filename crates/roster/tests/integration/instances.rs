//! `instances = N` and `roster scale` (issue #19): three copies of one web
//! worker, each on its own port through `{instance}`, grouped in
//! `status`; `scale` to 1 drains the two highest and leaves the first
//! serving, its process untouched.

use roster_core::api::{AgentState, Health};

use crate::util::*;

/// Serves `instance N pid P` on the socket roster hands over (fd 3); on
/// the drain signal, notes it in DRAINED_DIR and ends.
const SERVER: &str = r#"
import http.server, os, signal, socket
n = os.environ["INSTANCE"]
sock = socket.socket(fileno=3)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"instance {n} pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

def drain(signum, frame):
    with open(os.path.join(os.environ["DRAINED_DIR"], n), "w") as note:
        note.write(f"drained by signal {signum}\n")
    os._exit(0)

signal.signal(signal.SIGUSR1, drain)
server = http.server.HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = sock
print(f"instance {n} serving", flush=True)
server.serve_forever()
"#;

/// A port prefix P (4 digits) whose ports P1, P2 and P3 are all free now,
/// between 10001 and 31993: below the kernel's ephemeral range (from 32768
/// by default), where no test's outgoing connection takes them.
fn port_prefix() -> u16 {
    let start = u32::from(free_port()) + std::process::id();
    for step in 0..2200 {
        let prefix = 1000 + ((start + step) % 2200) as u16;
        let free =
            (1..=3).all(|n| std::net::TcpListener::bind(("127.0.0.1", prefix * 10 + n)).is_ok());
        if free {
            return prefix;
        }
    }
    panic!("no three free ports P1, P2, P3 between 10001 and 31993");
}

#[test]
fn three_copies_serve_their_own_ports_and_scale_to_one_drains_two() {
    let roster = Roster::new();
    roster.write("server.py", SERVER);
    let drained = roster.path("drained");
    std::fs::create_dir(&drained).expect("mkdir");
    let prefix = port_prefix();
    let config = roster.config(&format!(
        "# one web worker, three copies
[agents.web]
instances = 3   # busy season
command = [\"python3\", \"server.py\"]
env = {{ INSTANCE = \"{{instance}}\", DRAINED_DIR = \"{drained}\" }}
listen = {{ http = \"127.0.0.1:{prefix}{{instance}}\" }}
ready_after = \"200ms\"
drain_signal = \"SIGUSR1\"
drain_timeout = \"20s\"

[agents.web.health]
http = \"http://127.0.0.1:{prefix}{{instance}}/\"
interval = \"300ms\"
start_period = \"0s\"

[agents.other]
command = \"sleep 1000\"
",
        drained = drained.display()
    ));
    roster.up();
    let status = roster.wait_status("three healthy copies", SECS(30), |status| {
        (1..=3).all(|n| {
            status.agents.iter().any(|agent| {
                agent.name == format!("web.{n}")
                    && agent.state == AgentState::Running
                    && agent.health == Health::Healthy
            })
        })
    });
    let mut pids = Vec::new();
    for n in 1..=3u16 {
        let agent = status
            .agents
            .iter()
            .find(|agent| agent.name == format!("web.{n}"))
            .expect("a copy");
        assert_eq!(agent.instance_of.as_deref(), Some("web"));
        assert_eq!(agent.instance, Some(u32::from(n)));
        let pid = agent.pid.expect("a pid");
        assert!(alive(pid));
        // Its own port, answered by its own process.
        let (code, body) = get_health(prefix * 10 + n).expect("an answer");
        assert_eq!(code, 200);
        assert_eq!(body, format!("instance {n} pid {pid}\n"));
        pids.push(pid);
    }
    assert!(!status.agents.iter().any(|agent| agent.name == "web"));

    // Grouped in the table, in number order, under a line that sums up.
    let table = roster.ok(&["status"]);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert!(rows[0].starts_with("other "), "{table}");
    assert!(
        rows[1].starts_with("web ") && rows[1].contains("3/3 running"),
        "{table}"
    );
    for (row, n) in rows[2..].iter().zip(1..=3) {
        assert!(row.starts_with(&format!("  web.{n} ")), "{table}");
    }
    // The agent's name stands for its copies.
    let only: serde_json::Value =
        serde_json::from_str(&roster.ok(&["status", "web", "--json"])).expect("json");
    let names: Vec<&str> = only["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|agent| agent["name"].as_str())
        .collect();
    assert_eq!(names, ["web.1", "web.2", "web.3"]);

    let output = roster.ok(&["scale", "web", "1", "-f", config.to_str().expect("utf-8")]);
    assert!(
        output.contains("web: 3 → 1 copy") && output.contains("draining web.2, web.3"),
        "{output}"
    );
    let text = std::fs::read_to_string(&config).expect("read");
    assert!(text.contains("instances = 1   # busy season\n"), "{text}");
    assert!(
        text.starts_with("# one web worker, three copies\n"),
        "{text}"
    );
    // `scale` waited for the two to go.
    let status = roster.status();
    let names: Vec<&str> = status
        .agents
        .iter()
        .map(|agent| agent.name.as_str())
        .collect();
    assert_eq!(names, ["other", "web.1"]);
    for (n, pid) in [(2, pids[1]), (3, pids[2])] {
        let note = std::fs::read_to_string(drained.join(n.to_string()))
            .unwrap_or_else(|_| panic!("web.{n} was not drained"));
        assert_eq!(note, "drained by signal 10\n");
        wait_for(&format!("web.{n} to end"), SECS(10), || {
            (!alive(pid)).then_some(())
        });
        assert!(
            get_health(prefix * 10 + n).is_none(),
            "port of web.{n} still answers"
        );
    }
    // The first copy never stopped.
    assert!(!drained.join("1").exists());
    let first = roster.agent("web.1");
    assert_eq!(first.pid, Some(pids[0]));
    let (_, body) = get_health(prefix * 10 + 1).expect("web.1 answers");
    assert_eq!(body, format!("instance 1 pid {}\n", pids[0]));

    // Back up to two: only web.2 starts.
    roster.ok(&["scale", "web", "2", "-f", config.to_str().expect("utf-8")]);
    let second = roster.wait_state("web.2", AgentState::Running, SECS(20));
    assert_ne!(second.pid, Some(pids[1]));
    assert_eq!(roster.agent("web.1").pid, Some(pids[0]));
    // The agent's name restarts its copies one at a time: web.2 is
    // stopped only once web.1's new process has passed its check.
    let mark = roster
        .events(&["-n", "1"])
        .last()
        .map_or(0, |event| event.id);
    let output = roster.ok(&["restart", "web"]);
    assert!(
        output.contains("web.1 is back (") && output.contains(", healthy), 1/2 of web"),
        "{output}"
    );
    assert!(
        output.contains("web.2 is back (") && output.contains("2/2 of web"),
        "{output}"
    );
    let events: Vec<_> = roster
        .events(&["web.1", "web.2", "-n", "1000"])
        .into_iter()
        .filter(|event| event.id > mark)
        .collect();
    let first = |agent: &str, kind: &str| {
        events
            .iter()
            .find(|event| event.agent.as_deref() == Some(agent) && event.kind == kind)
            .map(|event| event.id)
            .unwrap_or_else(|| panic!("no {kind} of {agent}: {events:#?}"))
    };
    assert!(
        first("web.1", "healthy") < first("web.2", "stopping"),
        "web.2 stopped before web.1 was back: {events:#?}"
    );
    let status = roster.status();
    let restarted: Vec<(&str, Option<u32>)> = status
        .agents
        .iter()
        .filter(|agent| agent.instance_of.as_deref() == Some("web"))
        .map(|agent| (agent.name.as_str(), agent.pid))
        .collect();
    assert_eq!(restarted.len(), 2, "{restarted:?}");
    assert_ne!(restarted[0].1, Some(pids[0]), "web.1 was restarted");
    assert_ne!(restarted[1].1, second.pid, "web.2 was restarted");
    // All at once, when asked.
    let table = roster.ok(&["restart", "web", "--all-at-once"]);
    assert!(table.contains("2/2 running"), "{table}");
    let again = roster.status();
    for (name, pid) in &restarted {
        let now = again
            .agents
            .iter()
            .find(|agent| agent.name == *name)
            .expect("a copy");
        assert_ne!(now.pid, *pid, "{name} was restarted");
    }
    // Each copy is described on its own, with its own socket.
    let output = roster.run(&["describe", "web"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("web runs as 2 copies (web.1 … web.2)")
            && stderr.contains("roster describe web.1"),
        "{stderr}"
    );
    let described = roster.ok(&["describe", "web.2"]);
    assert!(
        described.contains(&format!("127.0.0.1:{prefix}2")),
        "{described}"
    );
    // `roster logs web` reads both copies' logs.
    let logs = roster.ok(&["logs", "web", "-n", "10"]);
    assert!(
        logs.contains("instance 1 serving") && logs.contains("instance 2 serving"),
        "{logs}"
    );
}

#[test]
fn scale_refuses_what_it_cannot_do_and_leaves_the_file_alone() {
    let roster = Roster::new();
    let original = "[agents.web]\ninstances = 2\ncommand = \"sleep 1000\"\n";
    let config = roster.config(original);
    let file = config.to_str().expect("utf-8");
    for (args, says) in [
        (vec!["scale", "web", "0", "-f", file], "at least 1 copy"),
        (
            vec!["scale", "web.2", "3", "-f", file],
            "`web.2` is a copy of `web`: roster scale web 3",
        ),
        (vec!["scale", "nope", "3", "-f", file], "no agent `nope`"),
        (vec!["scale", "web", "1001", "-f", file], "at most 1000"),
    ] {
        let output = roster.run(&args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(std::fs::read_to_string(&config).expect("read"), original);
    }
    // A count that breaks the file (a port per copy past 65535) is
    // checked whole before anything is written.
    let ports = "[agents.web]\ninstances = 2\ncommand = \"sleep 1000\"\nlisten = { http = \"127.0.0.1:6553{instance}\" }\n";
    roster.config(ports);
    let output = roster.run(&["scale", "web", "6", "-f", file]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("65536") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&config).expect("read"), ports);
}

/// A copy that does not come back stops the rolling restart: the copies
/// after it keep their processes, and the command fails saying why.
#[test]
fn a_rolling_restart_stops_at_a_copy_that_does_not_come_back() {
    let roster = Roster::new();
    let broken = roster.path("broken");
    roster.config(&format!(
        "[agents.w]\ninstances = 3\n\
         command = [\"sh\", \"-c\", \"if [ -e {} ]; then echo broken; exit 3; fi; exec sleep 1000\"]\n\
         ready_after = \"200ms\"\nrestart_delay = \"5s\"\n",
        broken.display()
    ));
    roster.up();
    let before: Vec<Option<u32>> = (1..=3)
        .map(|n| {
            roster
                .wait_state(&format!("w.{n}"), AgentState::Running, SECS(20))
                .pid
        })
        .collect();
    std::fs::write(&broken, "").expect("break the next start");
    let output = roster.run(&["restart", "w"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("w.1 did not come back")
            && stderr
                .contains("the rolling restart of w stops here (w.2, w.3 keep their processes)"),
        "{stderr}"
    );
    for (n, pid) in [(2, before[1]), (3, before[2])] {
        assert_eq!(
            roster.agent(&format!("w.{n}")).pid,
            pid,
            "w.{n} was touched"
        );
    }
}
