//! `roster fleet deploy` and `roster fleet rollback` end to end (issue
//! #16): the built binary in the client namespace, over the system's ssh,
//! to hosts made by `fleet_hosts` that each run a roster daemon with small
//! Python web agents shipped as releases.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::fleet_hosts::*;
use crate::util::*;

/// A web agent: /health answers 200 with its release. Its self-test (the
/// deploy's smoke test) fails when the release holds `broken`, or names
/// this host in `broken_on`; it sleeps the seconds in `slow` first.
const WEB_AGENT: &str = r#"
import json, os, socket, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if "--self-test" in sys.argv[1:]:
    if os.path.exists("slow"):
        time.sleep(float(open("slow").read()))
    bad = os.path.exists("broken")
    if os.path.exists("broken_on"):
        bad = socket.gethostname() in open("broken_on").read().split()
    sys.exit(1 if bad else 0)
release = os.environ.get("ROSTER_RELEASE")

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"release": release}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

if os.environ.get("LISTEN_PID") == str(os.getpid()):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=3)
else:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
stop.wait()
server.shutdown()
"#;

/// `per_host` tenants PREFIX01.. per host, each with one `web` instance.
fn fleet_file(fleet: &FleetHosts, prefix: &str, per_host: usize) -> String {
    let mut text = fleet.fleet_head("5s");
    text.push_str(
        "[agents.web]\ncommand = [\"/usr/bin/python3\", \"web.py\"]\nallow_root = true\n\n",
    );
    for (index, host) in fleet.hosts.iter().enumerate() {
        for slot in 0..per_host {
            text.push_str(&format!(
                "[tenants.{prefix}{:02}]\nagents = [\"web\"]\nhost = \"{}\"\n\n",
                index * per_host + slot + 1,
                host.name
            ));
        }
    }
    text
}

/// The instances' names on host `index`.
fn instances(prefix: &str, per_host: usize, index: usize) -> Vec<String> {
    (0..per_host)
        .map(|slot| format!("{prefix}{:02}.web", index * per_host + slot + 1))
        .collect()
}

/// Each host's roster.toml, as `fleet apply` would write it.
fn host_configs(prefix: &str, count: usize, per_host: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let mut text = String::new();
            for (slot, name) in instances(prefix, per_host, index).iter().enumerate() {
                let port = 8101 + slot;
                text.push_str(&format!(
                    r#"[agents."{name}"]
command = ["/usr/bin/python3", "web.py"]
allow_root = true
ready_after = "300ms"
stop_timeout = "5s"
drain_timeout = "5s"
restart_delay = "100ms"

[agents."{name}".deploy]
smoke_test = ["/usr/bin/python3", "web.py", "--self-test"]
verify_for = "1s"

[agents."{name}".listen]
http = "127.0.0.1:{port}"

[agents."{name}".health]
http = "http://127.0.0.1:{port}/health"
interval = "200ms"
timeout = "2s"
retries = 6
start_period = "0s"
on_failure = "none"

"#
                ));
            }
            text
        })
        .collect()
}

/// `count` hosts running `per_host` instances each, and the fleet file.
fn hosts(prefix: &str, count: usize, per_host: usize) -> FleetHosts {
    let fleet = FleetHosts::with_roster(&host_configs(prefix, count, per_host));
    std::fs::write(
        fleet.dir.path().join("fleet.toml"),
        fleet_file(&fleet, prefix, per_host),
    )
    .expect("fleet.toml");
    fleet
}

/// A release source directory `name` with `files` beside web.py.
fn source(fleet: &FleetHosts, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = fleet.dir.path().join(format!("src-{name}"));
    std::fs::create_dir_all(&dir).expect("source dir");
    std::fs::write(dir.join("web.py"), WEB_AGENT).expect("web.py");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("source file");
    }
    dir
}

fn json_of(output: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn deploy(fleet: &FleetHosts, runtime: &Path, version: &str, extra: &[&str]) -> Output {
    let src = format!("src-{version}");
    let mut args = vec![
        "fleet",
        "deploy",
        "web",
        &src,
        "-f",
        "fleet.toml",
        "--version",
        version,
    ];
    args.extend(extra);
    fleet.client_roster(runtime, &args)
}

/// Instance `name`'s releases on host `index`, read there directly.
fn releases(fleet: &FleetHosts, index: usize, name: &str) -> serde_json::Value {
    let home = fleet.hosts[index].roster_home();
    let output = Command::new(BIN)
        .args([
            "--home",
            &home.display().to_string(),
            "releases",
            name,
            "--json",
        ])
        .output()
        .expect("roster releases");
    json_of(&output)
}

/// The live release of `name` on host `index`, and every version it has.
fn live(fleet: &FleetHosts, index: usize, name: &str) -> (Option<String>, Vec<String>) {
    let json = releases(fleet, index, name);
    let all = json["releases"].as_array().cloned().unwrap_or_default();
    let live = all
        .iter()
        .find(|release| release["live"] == true)
        .and_then(|release| release["version"].as_str().map(str::to_owned));
    let versions = all
        .iter()
        .filter_map(|release| release["version"].as_str().map(str::to_owned))
        .collect();
    (live, versions)
}

/// Asserts every instance of every host runs `version`.
fn assert_all_on(fleet: &FleetHosts, prefix: &str, per_host: usize, version: &str) {
    for index in 0..fleet.hosts.len() {
        for name in instances(prefix, per_host, index) {
            let (live, _) = live(fleet, index, &name);
            assert_eq!(live.as_deref(), Some(version), "{name} on h{}", index + 1);
        }
    }
}

/// The logs of every host's instances, for failure messages.
fn logs(fleet: &FleetHosts) -> String {
    let mut text = String::new();
    for host in &fleet.hosts {
        let dir = host.roster_home().join("logs");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            text.push_str(&format!("--- {} {}\n", host.name, entry.path().display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

fn host_json<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|host| host["name"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {json:#}"))
}

fn no_lock_left(fleet: &FleetHosts) {
    for host in &fleet.hosts {
        assert!(
            !host.roster_home().join("fleet-deploy.lock").exists(),
            "the lock on {} is released",
            host.name
        );
    }
}

#[test]
fn fleet_deploy_puts_one_release_on_every_instance_and_rollback_puts_it_back() {
    let test = "fleet_deploy_puts_one_release_on_every_instance_and_rollback_puts_it_back";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = hosts("d", 3, 2);
    let runtime = tempfile::tempdir().expect("runtime dir");
    source(&fleet, "v1", &[]);
    source(&fleet, "v2", &[("notes", "two")]);

    let first = deploy(&fleet, runtime.path(), "v1", &["--json"]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_all_on(&fleet, "d", 2, "v1");

    let second = deploy(&fleet, runtime.path(), "v2", &["--json"]);
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let json = json_of(&second);
    assert_eq!(json["version"], "v2");
    assert_eq!(json["result"], "deployed");
    assert_eq!(json["hosts"].as_array().map(Vec::len), Some(3), "{json:#}");
    for (index, host) in fleet.hosts.iter().enumerate() {
        let row = host_json(&json, &host.name);
        assert_eq!(row["result"], "deployed", "{row}");
        assert!(row.get("error").is_none(), "{row}");
        let rows = row["instances"].as_array().expect("instances");
        let names: Vec<&str> = rows.iter().filter_map(|i| i["name"].as_str()).collect();
        assert_eq!(names, instances("d", 2, index));
        for instance in rows {
            assert_eq!(instance["result"], "deployed", "{instance}");
            assert_eq!(instance["release"], "v2", "{instance}");
        }
    }
    assert_all_on(&fleet, "d", 2, "v2");
    // The hosts' own status agrees, and nothing is left behind.
    let status = fleet.client_roster(
        runtime.path(),
        &["fleet", "status", "-f", "fleet.toml", "--json"],
    );
    let status = json_of(&status);
    for row in status["instances"].as_array().expect("instances") {
        assert_eq!(row["release"], "v2", "{row}");
        assert_eq!(row["state"], "running", "{row}");
    }
    no_lock_left(&fleet);
    for host in &fleet.hosts {
        assert!(!host.roster_home().join("fleet-staging/v2").exists());
    }

    // Without --to: the release live before, the same everywhere.
    let back = fleet.client_roster(
        runtime.path(),
        &["fleet", "rollback", "web", "-f", "fleet.toml"],
    );
    let text = String::from_utf8_lossy(&back.stdout);
    assert_eq!(
        back.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert!(text.lines().any(|line| line.starts_with("HOST ")), "{text}");
    assert!(text.contains("h1: d01.web: rolled_back"), "{text}");
    assert!(text.contains("web: v1 is live on every instance"), "{text}");
    assert_all_on(&fleet, "d", 2, "v1");

    // --to: v2 again, then back to v1 with --json.
    let forward = fleet.client_roster(
        runtime.path(),
        &[
            "fleet",
            "rollback",
            "web",
            "-f",
            "fleet.toml",
            "--to",
            "v2",
            "--json",
        ],
    );
    assert_eq!(forward.status.code(), Some(0));
    assert_eq!(json_of(&forward)["result"], "rolled_back");
    assert_all_on(&fleet, "d", 2, "v2");
    let to_v1 = fleet.client_roster(
        runtime.path(),
        &[
            "fleet",
            "rollback",
            "web",
            "-f",
            "fleet.toml",
            "--to",
            "v1",
            "--json",
        ],
    );
    assert_eq!(to_v1.status.code(), Some(0));
    assert_all_on(&fleet, "d", 2, "v1");
    no_lock_left(&fleet);
}

#[test]
fn fleet_deploy_stops_at_a_failure_and_rolls_back_to_the_release_live_everywhere() {
    let test = "fleet_deploy_stops_at_a_failure_and_rolls_back_to_the_release_live_everywhere";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = hosts("e", 3, 1);
    let runtime = tempfile::tempdir().expect("runtime dir");
    source(&fleet, "v1", &[]);
    source(&fleet, "broken", &[("broken", "")]);
    source(&fleet, "v3", &[("broken_on", "h3")]);
    let first = deploy(&fleet, runtime.path(), "v1", &[]);
    let text = String::from_utf8_lossy(&first.stdout);
    assert_eq!(first.status.code(), Some(0), "{text}");
    // One line per host per step off a terminal, then the table.
    assert!(text.contains("h1: uploading"), "{text}");
    assert!(text.contains("h2: e02.web: deployed"), "{text}");
    assert!(text.contains("web: v1 is live on every instance"), "{text}");

    // Broken everywhere: stopped at the canary, nothing else touched.
    let broken = deploy(&fleet, runtime.path(), "broken", &["--json"]);
    assert_eq!(
        broken.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
    let json = json_of(&broken);
    assert_eq!(json["result"], "rolled_back", "{json:#}");
    let canary = host_json(&json, "h1");
    assert_eq!(canary["result"], "failed", "{canary}");
    assert!(canary["error"].as_str().is_some(), "{canary}");
    for name in ["h2", "h3"] {
        assert_eq!(host_json(&json, name)["result"], "skipped", "{json:#}");
    }
    for index in 1..3 {
        let (_, versions) = live(&fleet, index, &format!("e{:02}.web", index + 1));
        assert!(!versions.contains(&"broken".to_owned()), "{versions:?}");
    }
    assert_all_on(&fleet, "e", 1, "v1");

    // Broken on the last host only: the earlier hosts roll back.
    let late = deploy(&fleet, runtime.path(), "v3", &["--batch", "1", "--json"]);
    assert_eq!(
        late.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );
    let json = json_of(&late);
    assert_eq!(json["result"], "rolled_back", "{json:#}");
    for name in ["h1", "h2"] {
        let row = host_json(&json, name);
        assert_eq!(row["result"], "rolled_back", "{row}\n{}", logs(&fleet));
        assert_eq!(row["instances"][0]["release"], "v1", "{row}");
    }
    assert_eq!(host_json(&json, "h3")["result"], "failed", "{json:#}");
    assert_all_on(&fleet, "e", 1, "v1");
    for index in 0..2 {
        let (_, versions) = live(&fleet, index, &format!("e{:02}.web", index + 1));
        assert!(
            versions.contains(&"v3".to_owned()),
            "h{} took v3",
            index + 1
        );
    }

    // The same failure within --max-fail: the rollout goes on.
    source(&fleet, "v4", &[("broken_on", "h3")]);
    let tolerated = deploy(
        &fleet,
        runtime.path(),
        "v4",
        &["--batch", "2", "--max-fail", "50%"],
    );
    let text = String::from_utf8_lossy(&tolerated.stdout);
    assert_eq!(tolerated.status.code(), Some(0), "{text}");
    // It says what it tolerated, not that v4 runs everywhere.
    assert!(
        text.contains("web: v4 is live on 2 of 3 instances; 1 failed within --max-fail 50%: h3"),
        "{text}"
    );
    assert!(!text.contains("every instance"), "{text}");
    assert_eq!(live(&fleet, 1, "e02.web").0.as_deref(), Some("v4"));

    // Instances that disagree: no deploy, and no rollback without --to.
    let refused = deploy(&fleet, runtime.path(), "v1", &["--json"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run different releases"), "{stderr}");
    assert!(stderr.contains("e03.web on h3: v1"), "{stderr}");
    assert!(stderr.contains("e01.web on h1: v4"), "{stderr}");
    no_lock_left(&fleet);
}

/// The client's ssh running `roster deploy` on `address`, if any.
fn deploy_session(address: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let words: Vec<String> = cmdline
            .split(|byte| *byte == 0)
            .map(|word| String::from_utf8_lossy(word).into_owned())
            .collect();
        let line = words.join(" ");
        if words.first().map(String::as_str) == Some("ssh")
            && words.iter().any(|word| word == address)
            && line.contains("roster --home /var/lib/roster deploy ")
        {
            return Some(pid);
        }
    }
    None
}

#[test]
fn fleet_deploy_holds_a_lock_and_survives_a_cut_session() {
    let test = "fleet_deploy_holds_a_lock_and_survives_a_cut_session";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = hosts("g", 3, 1);
    let runtime = tempfile::tempdir().expect("runtime dir");
    source(&fleet, "v1", &[]);
    source(&fleet, "v2", &[("slow", "3")]);
    let first = deploy(&fleet, runtime.path(), "v1", &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    // A deploy whose smoke test takes 3 s, in the background.
    let mut running = Command::new("ip")
        .args(["netns", "exec", &fleet.client, BIN])
        .args([
            "fleet",
            "deploy",
            "web",
            "src-v2",
            "-f",
            "fleet.toml",
            "--version",
            "v2",
            "--json",
        ])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .current_dir(fleet.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleet deploy");
    let lock = fleet.hosts[0]
        .roster_home()
        .join("fleet-deploy.lock/holder");
    wait_for("the lock taken", Duration::from_secs(20), || {
        lock.exists().then_some(())
    });
    let other = tempfile::tempdir().expect("runtime dir");
    let second = deploy(&fleet, other.path(), "v2", &[]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("held by root@"), "{stderr}");
    assert!(
        stderr.contains(&format!("(pid {})", running.id())),
        "{stderr}"
    );
    assert!(stderr.contains("--break-lock"), "{stderr}");

    // Cut the canary's session while its daemon runs the deploy.
    let address = fleet.hosts[0].address.clone();
    let pid = wait_for(
        "the canary's deploy session",
        Duration::from_secs(20),
        || deploy_session(&address),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill ssh");
    wait_for("the fleet deploy to end", Duration::from_secs(60), || {
        running.try_wait().ok().flatten().map(|_| ())
    });
    let ended = running.wait_with_output().expect("fleet deploy output");
    let json = json_of(&ended);
    assert!(
        matches!(ended.status.code(), Some(1) | Some(3)),
        "{json:#}\n{}",
        String::from_utf8_lossy(&ended.stderr)
    );
    assert_ne!(json["result"], "deployed", "{json:#}");
    for name in ["h2", "h3"] {
        assert_eq!(host_json(&json, name)["result"], "skipped", "{json:#}");
    }
    // The canary's own daemon finished or rolled back: one release live,
    // the agent running, no step left open.
    let version = wait_for("the canary settled", Duration::from_secs(30), || {
        let json = releases(&fleet, 0, "g01.web");
        let all = json["releases"].as_array()?.clone();
        // v2's deploy ends in the host's daemon: its release judged.
        let v2 = all.iter().find(|release| release["version"] == "v2")?;
        let judged = ["deployed", "rolled_back", "failed", "interrupted"];
        if !judged.iter().any(|result| v2["result"] == *result) {
            return None;
        }
        let live: Vec<_> = all
            .iter()
            .filter(|release| release["live"] == true)
            .collect();
        (live.len() == 1).then(|| live[0]["version"].as_str().map(str::to_owned))
    });
    assert!(
        matches!(version.as_deref(), Some("v1") | Some("v2")),
        "{version:?}"
    );
    wait_for(
        "the canary's instance running",
        Duration::from_secs(20),
        || {
            let home = fleet.hosts[0].roster_home();
            let output = Command::new(BIN)
                .args(["--home", &home.display().to_string(), "status", "--json"])
                .output()
                .ok()?;
            let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
            status["agents"]
                .as_array()?
                .iter()
                .any(|agent| agent["name"] == "g01.web" && agent["state"] == "running")
                .then_some(())
        },
    );
    for index in 1..3 {
        assert_eq!(
            live(&fleet, index, &format!("g{:02}.web", index + 1))
                .0
                .as_deref(),
            Some("v1")
        );
    }
    no_lock_left(&fleet);
    // Whichever it ended on, one command puts it with the others.
    let align = fleet.client_roster(
        runtime.path(),
        &[
            "fleet",
            "rollback",
            "web",
            "-f",
            "fleet.toml",
            "--to",
            "v1",
            "--hosts",
            "h1",
        ],
    );
    assert_eq!(
        align.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&align.stderr)
    );
    assert_all_on(&fleet, "g", 1, "v1");

    // A lock left by a deploy that is gone: refused, then broken.
    let stale = fleet.hosts[1].roster_home().join("fleet-deploy.lock");
    std::fs::create_dir(&stale).expect("stale lock");
    std::fs::write(
        stale.join("holder"),
        "alice@laptop (pid 42) since 2026-01-01T00:00:00Z\n",
    )
    .expect("holder");
    source(&fleet, "v5", &[]);
    let refused = deploy(&fleet, other.path(), "v5", &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("h2: held by alice@laptop (pid 42) since 2026-01-01T00:00:00Z"),
        "{stderr}"
    );
    assert!(!fleet.hosts[0]
        .roster_home()
        .join("fleet-deploy.lock")
        .exists());
    let broken = deploy(&fleet, other.path(), "v5", &["--break-lock", "--json"]);
    assert_eq!(
        broken.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&broken.stdout)
    );
    assert_all_on(&fleet, "g", 1, "v5");
    no_lock_left(&fleet);

    // Ctrl-C during the canary: the canary's step ends, no later host is
    // touched, the canary goes back to v5 and the lock is released.
    source(&fleet, "v6", &[("slow", "3")]);
    let running = Command::new("ip")
        .args(["netns", "exec", &fleet.client, BIN])
        .args(["fleet", "deploy", "web", "src-v6", "-f", "fleet.toml"])
        .args(["--version", "v6", "--json"])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .current_dir(fleet.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleet deploy");
    wait_for(
        "the canary's deploy session",
        Duration::from_secs(20),
        || deploy_session(&address),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("Ctrl-C");
    let ended = running.wait_with_output().expect("fleet deploy output");
    let json = json_of(&ended);
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(3), "{json:#}\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    for name in ["h2", "h3"] {
        assert_eq!(host_json(&json, name)["result"], "skipped", "{json:#}");
    }
    assert_all_on(&fleet, "g", 1, "v5");
    no_lock_left(&fleet);
}
