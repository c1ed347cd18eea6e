//! Issue #14's deploy faults, one test each: a `cwd` that kept the old code
//! running while the deploy said the new one was live; a `[listen]` address
//! the agent itself held; a tarball that unpacked a thousandfold with
//! world-writable modes; an agent before its first deploy counted as failed,
//! and cutovers counted as restarts. Real daemons, real Python agents on
//! loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use roster_core::api::AgentState;

use crate::util::*;

/// An HTTP agent that answers with what it runs: its release
/// (`ROSTER_RELEASE`), the code it loaded (`code.txt` in its working
/// directory), its pid, and whether it serves on the socket roster handed
/// it (`listen`) or on one it bound itself to `PORT` (`own`).
const AGENT: &str = r#"
import json, os, signal, socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

code = open("code.txt").read().strip() if os.path.exists("code.txt") else "none"
via = "listen" if os.environ.get("LISTEN_PID") == str(os.getpid()) else "own"

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"release": os.environ.get("ROSTER_RELEASE"), "code": code,
                           "pid": os.getpid(), "via": via}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

if via == "listen":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=3)
else:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
while not stop.wait(0.05):
    pass
server.shutdown()
server.server_close()
"#;

/// One GET on a fresh connection, its JSON body; `None` on any failure.
fn get(port: u16) -> Option<serde_json::Value> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    serde_json::from_str(response.split("\r\n\r\n").nth(1)?).ok()
}

/// Waits until the agent on `port` answers with `field` = `value`.
fn wait_answer(port: u16, field: &str, value: &str) -> serde_json::Value {
    wait_for(
        &format!("{field} = {value} on port {port}"),
        SECS(20),
        || get(port).filter(|answer| answer[field] == value),
    )
}

fn both(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A release source `src-NAME` with the agent at `subdir` ("" for the top) and `files`
/// (relative to the source) beside it.
fn source(roster: &Roster, name: &str, subdir: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = roster.path(&format!("src-{name}"));
    std::fs::create_dir_all(dir.join(subdir)).expect("source dir");
    std::fs::write(dir.join(subdir).join("web.py"), AGENT).expect("web.py");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("source file");
    }
    dir
}

fn deploy(roster: &Roster, source: &Path, version: &str) -> std::process::Output {
    roster.run(&[
        "deploy",
        "web",
        source.to_str().expect("utf-8 path"),
        "--version",
        version,
    ])
}

fn deploy_ok(roster: &Roster, source: &Path, version: &str) {
    let output = deploy(roster, source, version);
    assert_eq!(
        output.status.code(),
        Some(0),
        "deploy {version}:\n{}",
        both(&output)
    );
}

/// Agent `web` shipped as releases, on the socket roster hands over;
/// `agent_extra` goes into [agents.web].
fn deployed_web(agent_extra: &str, deploy_extra: &str) -> (Roster, u16) {
    let roster = Roster::new();
    let port = free_port();
    roster.config(&format!(
        r#"
[agents.web]
command = ["python3", "web.py"]
ready_after = "300ms"
stop_timeout = "5s"
drain_timeout = "5s"
{agent_extra}

[agents.web.deploy]
verify_for = "500ms"
{deploy_extra}

[agents.web.listen]
http = "127.0.0.1:{port}"
"#
    ));
    (roster, port)
}

#[test]
fn issue_14_an_absolute_cwd_with_deploy_is_a_check_error_and_a_relative_one_is_in_the_release() {
    let (roster, _) = deployed_web("cwd = \"/srv/web\"", "");
    let output = roster.run(&["check"]);
    let text = both(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("roster.toml:7:7: agent `web` is shipped as releases ([agents.web.deploy]), but its `cwd` \"/srv/web\" is outside them"),
        "{text}"
    );
    assert!(
        text.contains("hint: leave `cwd` out to run in the top directory of the live release"),
        "{text}"
    );
    // `up` refuses the same file, and nothing runs.
    let output = roster.run(&["up", "--timeout", "5s"]);
    assert_eq!(output.status.code(), Some(1), "{}", both(&output));

    // A relative cwd is a directory inside the release.
    let (roster, port) = deployed_web("cwd = \"app\"", "");
    roster.ok(&["check"]);
    roster.ok(&["up", "--timeout", "10s"]);
    let v1 = source(&roster, "v1", "app", &[("app/code.txt", "one")]);
    deploy_ok(&roster, &v1, "v1");
    let answer = wait_answer(port, "code", "one");
    let pid = answer["pid"].as_u64().expect("pid");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd");
    assert!(cwd.ends_with("agents/web/releases/v1/app"), "{cwd:?}");
    let v2 = source(&roster, "v2", "app", &[("app/code.txt", "two")]);
    deploy_ok(&roster, &v2, "v2");
    wait_answer(port, "code", "two");
    // A release without the directory fails before anything goes live.
    let flat = source(&roster, "flat", "", &[]);
    let output = deploy(&roster, &flat, "v3");
    let text = both(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("release v3 has no directory app"), "{text}");
    assert_eq!(get(port).expect("v2 serves")["code"], "two");
}

#[test]
fn issue_14_a_deploy_whose_new_process_runs_outside_its_release_is_not_called_live() {
    let (roster, port) = deployed_web("", "");
    // The agent starts through start.py, which each release writes. Where
    // it runs is looked at once the new process is ready: with a health
    // check, once it serves (start.py has done its work by then); with
    // `ready_after` alone, a start.py slower than that on a loaded machine
    // would still be in its release when looked at.
    let config = std::fs::read_to_string(roster.path("roster.toml")).expect("config");
    roster.config(&format!(
        "{}\n[agents.web.health]\nhttp = \"http://127.0.0.1:{port}/\"\ninterval = \"200ms\"\n",
        config.replace(
            "command = [\"python3\", \"web.py\"]",
            "command = [\"python3\", \"start.py\"]",
        )
    ));
    roster.ok(&["up", "--timeout", "10s"]);
    let start_here = "import os\nos.execvp('python3', ['python3', 'web.py'])\n";
    let v1 = source(
        &roster,
        "v1",
        "",
        &[("start.py", start_here), ("code.txt", "one")],
    );
    deploy_ok(&roster, &v1, "v1");
    wait_answer(port, "code", "one");
    let before = roster.agent("web").pid;

    // v2 starts the code of v1: what an agent with an absolute `cwd` did.
    let v1_dir = roster.home_path().join("agents/web/releases/v1");
    let start_old = format!(
        "import os\nos.chdir({:?})\nos.execvp('python3', ['python3', 'web.py'])\n",
        v1_dir.to_str().expect("utf-8")
    );
    let v2 = source(
        &roster,
        "v2",
        "",
        &[("start.py", &start_old), ("code.txt", "two")],
    );
    let output = deploy(&roster, &v2, "v2");
    let text = both(&output);
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(!text.contains("live and verified"), "{text}");
    assert!(text.contains("outside release v2"), "{text}");
    let live = std::fs::read_link(roster.home_path().join("agents/web/current")).expect("current");
    assert!(live.ends_with("releases/v1"), "{live:?}");
    wait_for("v1's process to serve alone", SECS(20), || {
        (roster.agent("web").pid == before && roster.agent("web").release.as_deref() == Some("v1"))
            .then_some(())
    });
    assert_eq!(get(port).expect("v1 serves")["release"], "v1");
}

#[test]
fn issue_14_a_listen_address_the_agent_holds_itself_is_taken_over_by_a_restart() {
    let roster = Roster::new();
    let port = free_port();
    let other_port = free_port();
    std::fs::write(roster.path("web.py"), AGENT).expect("web.py");
    let base = format!(
        r#"
[agents.web]
command = ["python3", "web.py"]
env = {{ PORT = "{port}" }}
ready_after = "300ms"
stop_timeout = "5s"

[agents.other]
command = ["python3", "web.py"]
env = {{ PORT = "{other_port}" }}
ready_after = "300ms"
stop_timeout = "5s"
"#
    );
    roster.config(&base);
    roster.ok(&["up", "--timeout", "20s"]);
    let first = wait_answer(port, "via", "own");
    wait_answer(other_port, "via", "own");
    let other_pid = roster.agent("other").pid;

    // [listen] on the address web holds itself: apply restarts web and
    // hands it the socket instead of refusing.
    roster.config(&format!(
        "{base}\n[agents.web.listen]\nhttp = \"127.0.0.1:{port}\"\n"
    ));
    let output = roster.run(&["apply", "--timeout", "30s"]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let second = wait_answer(port, "via", "listen");
    assert_ne!(second["pid"], first["pid"], "a new process");
    assert_eq!(roster.agent("web").state, AgentState::Running);
    let handover = roster
        .events(&["web"])
        .into_iter()
        .find(|event| event.kind == "listen_handover")
        .expect("the handover is journaled");
    assert!(
        handover.detail.contains("held by web itself"),
        "{}",
        handover.detail
    );
    assert_eq!(roster.agent("other").pid, other_pid, "other untouched");

    // An address another of this roster's agents holds: refused, naming it.
    let with_listen = format!("{base}\n[agents.web.listen]\nhttp = \"127.0.0.1:{port}\"\n");
    roster.config(&format!(
        "{with_listen}\n[agents.api]\ncommand = \"sleep 100\"\n[agents.api.listen]\nhttp = \"127.0.0.1:{other_port}\"\n"
    ));
    let output = roster.run(&["apply"]);
    let text = both(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "agent api: cannot listen on 127.0.0.1:{other_port} (http): agent other (pid {}) holds it",
            other_pid.expect("other's pid")
        )),
        "{text}"
    );
    assert!(text.contains("roster stop other"), "{text}");

    // A stranger's address: refused, naming the process; nothing changed.
    let stranger = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stranger_port = stranger.local_addr().expect("address").port();
    roster.config(&format!(
        "{with_listen}\n[agents.api]\ncommand = \"sleep 100\"\n[agents.api.listen]\nhttp = \"127.0.0.1:{stranger_port}\"\n"
    ));
    let web_pid = roster.agent("web").pid;
    let output = roster.run(&["apply"]);
    let text = both(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "cannot listen on 127.0.0.1:{stranger_port} (http): pid {} (",
            std::process::id()
        )) && text.contains("which is not one of this roster's agents, holds it"),
        "{text}"
    );
    assert!(text.contains("nothing was applied"), "{text}");
    let status = roster.status();
    assert!(
        !status.agents.iter().any(|agent| agent.name == "api"),
        "{status:?}"
    );
    assert_eq!(roster.agent("web").pid, web_pid);
    assert_eq!(get(port).expect("web serves")["via"], "listen");
    drop(stranger);
}

/// A tarball written by Python's tarfile from `script`, which adds members
/// to `tar`.
fn python_tarball(roster: &Roster, name: &str, script: &str) -> PathBuf {
    let path = roster.path(name);
    let program = format!(
        "import io, tarfile\n\
         class Zeros(io.RawIOBase):\n\
         \x20   def __init__(self, n): self.left = n\n\
         \x20   def readable(self): return True\n\
         \x20   def readinto(self, buffer):\n\
         \x20       n = min(len(buffer), self.left)\n\
         \x20       buffer[:n] = bytes(n)\n\
         \x20       self.left -= n\n\
         \x20       return n\n\
         def add(tar, name, data=b'', size=None, mode=0o644, kind=tarfile.REGTYPE):\n\
         \x20   info = tarfile.TarInfo(name)\n\
         \x20   info.type, info.mode = kind, mode\n\
         \x20   if kind == tarfile.REGTYPE:\n\
         \x20       info.size = len(data) if size is None else size\n\
         \x20       tar.addfile(info, io.BytesIO(data) if size is None else io.BufferedReader(Zeros(size)))\n\
         \x20   else:\n\
         \x20       tar.addfile(info)\n\
         with tarfile.open({path:?}, 'w:gz') as tar:\n\
         \x20   add(tar, 'web.py', {agent:?}.encode())\n\
         {script}\n",
        path = path.to_str().expect("utf-8"),
        agent = AGENT,
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &program])
        .status()
        .expect("python3");
    assert!(status.success(), "writing {name}");
    path
}

#[test]
fn issue_14_a_tarball_that_unpacks_a_thousandfold_is_refused_and_modes_are_safe() {
    let (roster, port) = deployed_web("", "");
    roster.ok(&["up", "--timeout", "10s"]);
    let releases = roster.home_path().join("agents/web/releases");
    // 1 GiB of zeros packs into about a megabyte.
    let bomb = python_tarball(
        &roster,
        "bomb.tar.gz",
        "    add(tar, 'padding.bin', size=1 << 30)",
    );
    let packed = std::fs::metadata(&bomb).expect("bomb").len();
    assert!(packed < 4 << 20, "{packed} bytes");
    let output = roster.run(&["deploy", "web", bomb.to_str().expect("utf-8")]);
    let text = both(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("over 100 times its size"), "{text}");
    let left: Vec<_> = std::fs::read_dir(&releases)
        .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing staged: {left:?}");

    // A release's writable modes are not kept: no file or directory that
    // any user of the machine may change.
    let modes = python_tarball(
        &roster,
        "modes.tar.gz",
        "    add(tar, 'tmp', mode=0o1777, kind=tarfile.DIRTYPE)\n    add(tar, 'open.txt', b'x', mode=0o666)",
    );
    let output = roster.run(&[
        "deploy",
        "web",
        modes.to_str().expect("utf-8"),
        "--version",
        "m1",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    wait_answer(port, "release", "m1");
    let mode = |path: &str| {
        std::fs::symlink_metadata(releases.join("m1").join(path))
            .expect(path)
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("tmp"), 0o755);
    assert_eq!(mode("open.txt"), 0o644);
    assert_eq!(mode("web.py"), 0o644);

    // A configured max_size bounds a directory source too.
    let config = std::fs::read_to_string(roster.path("roster.toml")).expect("config");
    roster.config(&config.replace("verify_for", "max_size = \"1MiB\"\nverify_for"));
    roster.ok(&["apply", "--timeout", "20s"]);
    let big = source(&roster, "big", "", &[]);
    std::fs::write(big.join("data.bin"), vec![1u8; 2 << 20]).expect("data");
    let output = deploy(&roster, &big, "b1");
    let text = both(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("more than 1MiB of files (`max_size` of [agents.web.deploy])"),
        "{text}"
    );
    assert!(!releases.join("b1").exists());
}

#[test]
fn issue_14_an_agent_before_its_first_deploy_waits_undeployed_and_cutovers_are_no_restarts() {
    let (roster, port) = deployed_web("", "");
    let output = roster.run(&["up", "--timeout", "10s"]);
    let text = both(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("web waits for its first deploy: roster deploy web DIR"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&roster.ok(&["status", "--json"])).expect("status --json");
    assert_eq!(json["agents"][0]["state"], "undeployed", "{json}");
    let web = roster.agent("web");
    assert_eq!(
        (web.state, web.restarts, web.pid),
        (AgentState::Undeployed, 0, None)
    );
    assert!(web.last_error.is_none(), "{web:?}");
    let kinds = roster.event_kinds("web");
    assert!(kinds.contains(&"undeployed".to_owned()), "{kinds:?}");
    assert!(!kinds.contains(&"spawn_failed".to_owned()), "{kinds:?}");

    // The first deploy starts it; three more cutovers restart nothing.
    for version in ["v1", "v2", "v3"] {
        let dir = source(&roster, version, "", &[]);
        deploy_ok(&roster, &dir, version);
        wait_answer(port, "release", version);
    }
    roster.ok(&["rollback", "web"]);
    wait_answer(port, "release", "v2");
    let web = roster.wait_state("web", AgentState::Running, SECS(20));
    assert_eq!(web.restarts, 0, "deploys and rollbacks are no restarts");

    // A crash still is one.
    let pid = web.pid.expect("pid");
    kill(pid, Signal::SIGKILL);
    let web = roster.wait_status("web to come back", SECS(20), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "web" && agent.pid.is_some_and(|new| new != pid))
    });
    let web = web
        .agents
        .into_iter()
        .find(|agent| agent.name == "web")
        .expect("web");
    assert_eq!(web.restarts, 1);
}
