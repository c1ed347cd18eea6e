//! Issue #15: blue-green deploys of an app that does nothing special on
//! SIGTERM (it dies at once, dropping what it was answering) lose no
//! request, without a proxy: each release gets its own socket, the old
//! one's queued connections move to the new one (`tcp_migrate_req`), and
//! the old process is drained once it holds no connection. Each test runs
//! its daemon in a network namespace of its own, where the setting is what
//! the test needs whatever the machine's is; the load runs in it too.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;

/// The naive app: serves on the socket roster hands over, each answer
/// takes 30 ms, and SIGTERM keeps Python's default (die at once).
const NAIVE_APP: &str = r#"
import json, os, socket, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

release = os.environ.get("ROSTER_RELEASE")

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.03)
        body = json.dumps({"release": release}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=3)
server.serve_forever()
"#;

/// Inside its own network namespace, every port is free.
const PORT: u16 = 8080;
const LOAD_THREADS: usize = 4;
const SWAPS: usize = 5;

const MOVED: &str = "the connections queued on the old process's socket moved to the new one";

/// A roster whose daemon runs in a fresh network namespace with
/// `net.ipv4.tcp_migrate_req` set to `migrate`.
struct Site {
    roster: Roster,
    netns: std::fs::File,
}

impl Site {
    /// None (the test skipped, saying why) where a namespace cannot be
    /// made.
    fn new(test: &str, migrate: u8) -> Option<Site> {
        if !needs_root(test, "make a network namespace") {
            return None;
        }
        if let Some(why) = no_netns() {
            skip(test, &why);
            return None;
        }
        let roster = Roster::new();
        roster.config(&format!(
            r#"
[agents.web]
command = ["python3", "naive.py"]
ready_after = "300ms"
drain_timeout = "5s"

[agents.web.deploy]
strategy = "blue-green"
verify_for = "500ms"
keep = 3

[agents.web.listen]
http = "127.0.0.1:{PORT}"

[agents.web.health]
http = "http://127.0.0.1:{PORT}/health"
interval = "200ms"
start_period = "0s"
"#
        ));
        // No release yet: `up` says the agent waits for its first deploy.
        let output = in_netns(&roster, migrate, &["up", "--timeout", "2s"]);
        let Some(daemon) = roster.daemon_pid() else {
            skip(
                test,
                &format!("no daemon in a new network namespace: {}", both(&output)),
            );
            return None;
        };
        let netns = std::fs::File::open(format!("/proc/{daemon}/ns/net")).expect("daemon's netns");
        Some(Site { roster, netns })
    }

    fn deploy(&self, version: &str) -> String {
        let source = self.roster.path(&format!("src-{version}"));
        std::fs::create_dir_all(&source).expect("source dir");
        std::fs::write(source.join("naive.py"), NAIVE_APP).expect("naive.py");
        let output = self.roster.run(&[
            "deploy",
            "web",
            source.to_str().expect("utf-8 path"),
            "--version",
            version,
        ]);
        let text = both(&output);
        assert_eq!(output.status.code(), Some(0), "deploy {version}:\n{text}");
        text
    }

    /// Runs `work` on a thread in the daemon's network namespace.
    fn inside<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let netns = self.netns.try_clone().expect("netns fd");
        std::thread::spawn(move || {
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            work()
        })
        .join()
        .expect("thread in the namespace")
    }

    fn wait_serving(&self, release: &'static str) {
        self.inside(move || {
            wait_for(
                &format!("{release} to serve"),
                Duration::from_secs(20),
                || (serving().as_deref() == Some(release)).then_some(()),
            )
        });
    }
}

/// The shell line that makes a network namespace ready: loopback up and
/// `net.ipv4.tcp_migrate_req` set to `migrate`.
fn prepare(migrate: u8) -> String {
    format!("ip link set lo up && echo {migrate} > /proc/sys/net/ipv4/tcp_migrate_req")
}

/// Why no network namespace with the setting can be made here, if not.
fn no_netns() -> Option<String> {
    match Command::new("unshare")
        .args(["-n", "sh", "-c", &prepare(1)])
        .output()
    {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!("`unshare -n` failed: {}", both(&output).trim())),
        Err(error) => Some(format!("cannot run unshare: {error}")),
    }
}

/// `roster ARGS` in a new network namespace prepared with `migrate`.
fn in_netns(roster: &Roster, migrate: u8, args: &[&str]) -> Output {
    Command::new("unshare")
        .env_remove("ROSTER_HOME")
        .current_dir(roster.dir.path())
        .args(["-n", "sh", "-c"])
        .arg(format!("{} && exec \"$@\"", prepare(migrate)))
        .args(["sh", BIN, "--home"])
        .arg(roster.home_path())
        .args(args)
        .output()
        .expect("unshare")
}

fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One GET on a fresh connection: (status, body), or why it failed.
fn http_get() -> Result<(u16, String), String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], PORT));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|error| format!("connect: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|error| format!("write: {error}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|error| format!("read: {error}"))?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("no answer: {response:?}"))?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok((status, body.to_owned()))
}

fn serving() -> Option<String> {
    let (status, body) = http_get().ok()?;
    (status == 200).then_some(())?;
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    value["release"].as_str().map(str::to_owned)
}

/// LOAD_THREADS threads of back-to-back requests in the daemon's network
/// namespace.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(site: &Site) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let threads = (0..LOAD_THREADS)
            .map(|_| {
                let netns = site.netns.try_clone().expect("netns fd");
                let (stop, ok, failures, seen) =
                    (stop.clone(), ok.clone(), failures.clone(), seen.clone());
                std::thread::spawn(move || {
                    nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("setns");
                    while !stop.load(Ordering::Relaxed) {
                        match http_get() {
                            Ok((200, body)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                let value: serde_json::Value =
                                    serde_json::from_str(&body).unwrap_or_default();
                                let release = value["release"].as_str().unwrap_or("?").to_owned();
                                seen.lock().expect("seen").insert(release);
                            }
                            Ok((status, _)) => failures
                                .lock()
                                .expect("failures")
                                .push(format!("status {status}")),
                            Err(why) => failures.lock().expect("failures").push(why),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            seen,
            threads,
        }
    }

    /// Waits until `count` more requests were answered.
    fn go_on(&self, count: u64) {
        let from = self.ok.load(Ordering::Relaxed);
        wait_for("the load to go on", Duration::from_secs(20), || {
            (self.ok.load(Ordering::Relaxed) >= from + count).then_some(())
        });
    }

    fn finish(self) -> (u64, Vec<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("load thread");
        }
        let failures = self.failures.lock().expect("failures").clone();
        let seen = self.seen.lock().expect("seen").clone();
        (self.ok.load(Ordering::Relaxed), failures, seen)
    }
}

/// Deploys r1..rSWAPS under load; the outputs of the deploys and what the
/// load saw.
fn swaps_under_load(site: &Site) -> (Vec<String>, u64, Vec<String>, BTreeSet<String>) {
    site.deploy("r0");
    site.wait_serving("r0");
    let load = Load::start(site);
    load.go_on(50);
    let mut outputs = Vec::new();
    for index in 1..=SWAPS {
        outputs.push(site.deploy(&format!("r{index}")));
        load.go_on(50);
    }
    let (ok, failures, seen) = load.finish();
    (outputs, ok, failures, seen)
}

#[test]
fn a_naive_app_loses_no_request_over_blue_green_swaps_when_the_kernel_moves_queued_connections() {
    let test = "a_naive_app_loses_no_request_over_blue_green_swaps";
    let Some(site) = Site::new(test, 1) else {
        return;
    };
    let (outputs, ok, failures, seen) = swaps_under_load(&site);
    for output in &outputs {
        assert!(output.contains(MOVED), "the sockets were moved:\n{output}");
        assert!(
            output.contains("drained once it held no connection"),
            "{output}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed over {SWAPS} swaps: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok > 300, "the load ran: {ok} requests");
    assert!(seen.contains(&format!("r{SWAPS}")), "{seen:?}");
    // `roster check` has nothing to say where the kernel moves them.
    let check = in_netns(&site.roster, 1, &["check"]);
    assert!(
        !both(&check).contains("tcp_migrate_req"),
        "{}",
        both(&check)
    );
}

#[test]
fn without_tcp_migrate_req_cutovers_share_the_socket_and_say_so() {
    let test = "without_tcp_migrate_req_cutovers_share_the_socket_and_say_so";
    let Some(site) = Site::new(test, 0) else {
        return;
    };
    let (outputs, ok, failures, _) = swaps_under_load(&site);
    for output in &outputs {
        assert!(
            output.contains("the old process was drained at once: net.ipv4.tcp_migrate_req is 0"),
            "the fallback is reported:\n{output}"
        );
        assert!(!output.contains(MOVED), "{output}");
    }
    // What the old way loses, for the record (it may be nothing).
    eprintln!(
        "{test}: {} of {} requests failed over {SWAPS} swaps sharing the socket",
        failures.len(),
        ok as usize + failures.len()
    );
    let check = in_netns(&site.roster, 0, &["check"]);
    let text = both(&check);
    assert_eq!(check.status.code(), Some(0), "{text}");
    assert!(
        text.contains("warning: agent `web`: net.ipv4.tcp_migrate_req is 0")
            && text.contains("sysctl -w net.ipv4.tcp_migrate_req=1"),
        "{text}"
    );
}
