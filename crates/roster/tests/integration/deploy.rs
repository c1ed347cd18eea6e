//! Issue #8: zero-downtime deploys. Real releases staged from directories
//! and tarballs, real Python agents accepting on the socket roster hands
//! over, real HTTP load on loopback, and a daemon SIGKILLed at every step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_core::api::{AgentState, DeployProgress, ReleasesReply};

use crate::util::*;

/// A small web agent: /health on the socket roster hands over (or PORT),
/// answering with its release; graceful stop; `--self-test`. Files in its
/// release steer it: `broken` fails the self-test, `die_after` (seconds)
/// makes it exit 3, `unhealthy` makes /health answer 503, `unhealthy_after`
/// (seconds) from then on.
const WEB_AGENT: &str = r#"
import json, os, signal, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if "--self-test" in sys.argv[1:]:
    sys.exit(1 if os.path.exists("broken") else 0)
release = os.environ.get("ROSTER_RELEASE")
started = time.monotonic()
unhealthy_after = float(open("unhealthy_after").read()) if os.path.exists("unhealthy_after") else None

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        late = unhealthy_after is not None and time.monotonic() - started > unhealthy_after
        status = 503 if os.path.exists("unhealthy") or late else 200
        body = json.dumps({"release": release, "pid": os.getpid()}).encode()
        self.send_response(status)
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
server.daemon_threads = False
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
print(f"serving release {release}", flush=True)
die_after = float(open("die_after").read()) if os.path.exists("die_after") else None
while not stop.wait(0.05):
    if die_after is not None and time.monotonic() - started > die_after:
        print("dying on purpose", flush=True)
        os._exit(3)
server.shutdown()
server.server_close()
"#;

struct Site {
    roster: Roster,
    port: u16,
}

impl Site {
    /// A roster with agent `web` shipped as releases, `extra` appended to
    /// its deploy section.
    fn new(deploy_extra: &str) -> Self {
        let roster = Roster::new();
        let port = free_port();
        let verify = if deploy_extra.contains("verify_for") {
            ""
        } else {
            "verify_for = \"1s\""
        };
        roster.config(&format!(
            r#"
[agents.web]
command = ["python3", "web.py"]
ready_after = "300ms"
stop_timeout = "5s"
drain_timeout = "5s"
restart_delay = "100ms"

[agents.web.deploy]
smoke_test = ["python3", "web.py", "--self-test"]
{verify}
{deploy_extra}

[agents.web.listen]
http = "127.0.0.1:{port}"

[agents.web.health]
http = "http://127.0.0.1:{port}/health"
interval = "200ms"
timeout = "1s"
retries = 2
start_period = "0s"
on_failure = "none"
"#
        ));
        Site { roster, port }
    }

    /// A source directory for release `name` with `files` beside web.py.
    fn source(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.roster.path(&format!("src-{name}"));
        std::fs::create_dir_all(&dir).expect("source dir");
        std::fs::write(dir.join("web.py"), WEB_AGENT).expect("web.py");
        for (file, text) in files {
            std::fs::write(dir.join(file), text).expect("source file");
        }
        dir
    }

    fn deploy(&self, source: &Path, version: &str) -> std::process::Output {
        self.roster.run(&[
            "deploy",
            "web",
            source.to_str().expect("utf-8 path"),
            "--version",
            version,
        ])
    }

    fn deploy_ok(&self, name: &str) {
        let source = self.source(name, &[]);
        let output = self.deploy(&source, name);
        assert_eq!(
            output.status.code(),
            Some(0),
            "deploy {name} failed:\n{}",
            both(&output)
        );
    }

    /// The release that answers on the agent's address.
    fn serving(&self) -> Option<String> {
        let (status, body) = get_health(self.port)?;
        (status == 200).then_some(())?;
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        value["release"].as_str().map(str::to_owned)
    }

    /// Waits until `release` answers (the outgoing process may still
    /// answer while it drains).
    fn wait_serving(&self, release: &str) {
        wait_for(&format!("{release} to serve"), SECS(10), || {
            (self.serving().as_deref() == Some(release)).then_some(())
        });
    }

    fn live(&self) -> Option<String> {
        let link = self.roster.home_path().join("agents/web/current");
        std::fs::read_link(link)
            .ok()
            .and_then(|target| Some(target.file_name()?.to_str()?.to_owned()))
    }

    fn releases(&self) -> ReleasesReply {
        let text = self.roster.ok(&["releases", "web", "--json"]);
        serde_json::from_str(&text).expect("releases --json")
    }

    fn release_dirs(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.roster.home_path().join("agents/web/releases"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Up, with release `v1` live and serving.
    fn started() -> Self {
        Self::started_with("")
    }

    fn started_with(deploy_extra: &str) -> Self {
        let site = Site::new(deploy_extra);
        // No release yet: `up` says the agent waits for its first deploy.
        let _ = site.roster.run(&["up", "--timeout", "2s"]);
        site.deploy_ok("v1");
        wait_for("v1 to serve", SECS(20), || {
            (site.serving().as_deref() == Some("v1")).then_some(())
        });
        site
    }
}

/// A command's stdout then stderr, for assertions.
fn both(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[allow(non_snake_case)]
fn SECS(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// Requests in a loop until stopped (at most `limit`), counting failures
/// and the releases that answered.
struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64, BTreeSet<String>, Vec<String>)>,
}

impl Load {
    fn start(port: u16, limit: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut seen = BTreeSet::new();
            let mut failures = Vec::new();
            while !flag.load(Ordering::Relaxed) && ok + failed < limit {
                let at = Instant::now();
                match get_health(port) {
                    Some((200, body)) => {
                        ok += 1;
                        let value: serde_json::Value =
                            serde_json::from_str(&body).unwrap_or_default();
                        seen.insert(value["release"].as_str().unwrap_or("?").to_owned());
                    }
                    other => {
                        failed += 1;
                        if failures.len() < 10 {
                            failures.push(format!("{other:?} after {:?}", at.elapsed()));
                        }
                    }
                }
            }
            (ok, failed, seen, failures)
        });
        Load { stop, thread }
    }

    fn finish(self) -> (u64, u64, BTreeSet<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }
}

fn example_source(dir: &Path) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-agents");
    std::fs::create_dir_all(dir).expect("source dir");
    std::fs::copy(
        examples.join("customer-support/main.py"),
        dir.join("main.py"),
    )
    .expect("copy main.py");
    std::fs::copy(examples.join("agentkit.py"), dir.join("agentkit.py")).expect("copy agentkit");
}

#[test]
fn ten_blue_green_deploys_of_the_example_agent_under_load_fail_no_request() {
    let roster = Roster::new();
    let port = free_port();
    roster.config(&format!(
        r#"
[agents.support]
command = ["python3", "main.py"]
env = {{ PORT = "{port}" }}
ready_after = "300ms"
drain_timeout = "10s"

[agents.support.deploy]
smoke_test = ["python3", "main.py", "--self-test"]
verify_for = "500ms"
keep = 3

[agents.support.listen]
http = "127.0.0.1:{port}"

[agents.support.health]
http = "http://127.0.0.1:{port}/health"
interval = "200ms"
start_period = "0s"
"#
    ));
    let _ = roster.run(&["up", "--timeout", "2s"]);
    let deploy = |version: &str| {
        let source = roster.path(&format!("src-{version}"));
        example_source(&source);
        let output = roster.run(&[
            "deploy",
            "support",
            source.to_str().expect("utf-8"),
            "--version",
            version,
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "deploy {version}:\n{}",
            both(&output)
        );
    };
    deploy("r0");
    wait_for("r0 to serve", SECS(20), || {
        get_health(port).filter(|(status, _)| *status == 200)
    });
    let load = Load::start(port, 200_000);
    let began = Instant::now();
    for index in 1..=10 {
        deploy(&format!("r{index}"));
    }
    let (ok, failed, seen, failures) = load.finish();
    assert_eq!(failed, 0, "failed requests during 10 deploys: {failures:?}");
    assert!(
        ok > 100,
        "the load ran: {ok} requests in {:?}",
        began.elapsed()
    );
    let expected: BTreeSet<String> = (0..=10).map(|index| format!("r{index}")).collect();
    assert!(
        seen.is_subset(&expected),
        "answers came from releases never deployed: {seen:?}"
    );
    assert!(seen.contains("r10"), "the last release served: {seen:?}");
    let text = roster.ok(&["releases", "support", "--json"]);
    let releases: ReleasesReply = serde_json::from_str(&text).expect("releases");
    let live: Vec<&str> = releases
        .releases
        .iter()
        .filter(|release| release.live)
        .map(|release| release.version.as_str())
        .collect();
    assert_eq!(live, ["r10"]);
    // keep = 3: older releases' directories are gone.
    let dirs = std::fs::read_dir(roster.home_path().join("agents/support/releases"))
        .expect("releases dir")
        .count();
    assert!(dirs <= 3, "{dirs} release directories kept with keep = 3");
}

#[test]
fn the_agent_gets_the_socket_by_systemds_protocol_and_nothing_else() {
    let site = Site::started();
    let status = site.roster.agent("web");
    let pid = status.pid.expect("a pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ: Vec<String> = environ
        .split(|byte| *byte == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect();
    assert!(
        environ.contains(&format!("LISTEN_PID={pid}")),
        "{environ:?}"
    );
    assert!(environ.contains(&"LISTEN_FDS=1".to_owned()));
    assert!(environ.contains(&"LISTEN_FDNAMES=http".to_owned()));
    assert!(environ.contains(&"ROSTER_RELEASE=v1".to_owned()));
    // The agent's cwd is the release, reached through no link.
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd");
    assert!(cwd.ends_with("agents/web/releases/v1"), "{cwd:?}");
    // fds 0-2 and the socket at 3, nothing of the daemon's (python's own
    // fds come after).
    let socket = std::fs::read_link(format!("/proc/{pid}/fd/3")).expect("fd 3");
    assert!(
        socket.to_string_lossy().starts_with("socket:"),
        "{socket:?}"
    );
    // The exec shim is gone: the process is python itself.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    assert!(exe.to_string_lossy().contains("python"), "{exe:?}");
}

#[test]
fn a_failing_smoke_test_leaves_the_live_release_untouched() {
    let site = Site::started();
    let pid = site.roster.agent("web").pid;
    let source = site.source("bad", &[("broken", "")]);
    let output = site.deploy(&source, "v2");
    let text = both(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("smoke_test") && text.contains("failed"),
        "{text}"
    );
    assert!(text.contains("live release is untouched"), "{text}");
    assert_eq!(site.live().as_deref(), Some("v1"));
    assert_eq!(
        site.roster.agent("web").pid,
        pid,
        "the live process was not touched"
    );
    assert_eq!(site.serving().as_deref(), Some("v1"));
    assert!(
        !site.release_dirs().contains("v2"),
        "the failed release's files are gone"
    );
    let releases = site.releases();
    let v2 = releases
        .releases
        .iter()
        .find(|release| release.version == "v2")
        .expect("v2 recorded");
    assert_eq!(v2.result, "failed");
}

#[test]
fn a_crash_inside_the_verification_window_rolls_back_by_itself() {
    let site = Site::started_with("verify_for = \"4s\"");
    // v2 is healthy at first, then dies after 1.5 s: inside verify_for.
    let source = site.source("v2", &[("die_after", "1.5")]);
    let output = site.deploy(&source, "v2");
    let text = both(&output);
    assert_eq!(
        output.status.code(),
        Some(3),
        "exit 3 means rolled back:\n{text}"
    );
    assert!(text.contains("rolled back"), "{text}");
    assert_eq!(site.live().as_deref(), Some("v1"));
    wait_for("v1 to serve again", SECS(10), || {
        (site.serving().as_deref() == Some("v1")).then_some(())
    });
    let v2 = site
        .releases()
        .releases
        .into_iter()
        .find(|release| release.version == "v2")
        .expect("v2 recorded");
    assert_eq!(v2.result, "rolled_back");
    let kinds = site.roster.event_kinds("web");
    assert!(kinds.contains(&"rolled_back".to_owned()), "{kinds:?}");
    let alerts = site.roster.ok(&["alerts", "--json"]);
    assert!(alerts.contains("DeployRolledBack"), "{alerts}");
}

#[test]
fn a_release_that_turns_unhealthy_inside_the_verification_window_rolls_back() {
    let site = Site::started_with("verify_for = \"5s\"");
    let source = site.source("v2", &[("unhealthy_after", "1")]);
    let output = site.deploy(&source, "v2");
    assert_eq!(output.status.code(), Some(3), "{}", both(&output));
    assert!(both(&output).contains("unhealthy"), "{}", both(&output));
    assert_eq!(site.live().as_deref(), Some("v1"));
    site.wait_serving("v1");
}

#[test]
fn an_unhealthy_new_release_never_takes_over() {
    let site = Site::started();
    let source = site.source("v2", &[("unhealthy", "")]);
    let output = site.roster.run(&[
        "deploy",
        "web",
        source.to_str().expect("utf-8"),
        "--version",
        "v2",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let progress: DeployProgress =
        serde_json::from_slice(&output.stdout).expect("deploy --json prints the progress");
    let cutover = progress
        .steps
        .iter()
        .find(|step| step.step == "cutover")
        .expect("a cutover step");
    assert!(
        cutover
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("health"),
        "{progress:?}"
    );
    assert_eq!(site.live().as_deref(), Some("v1"));
    // The handed-back v2 may answer (503) while it drains.
    site.wait_serving("v1");
}

#[test]
fn rollback_returns_to_the_previous_release_in_under_two_seconds() {
    let site = Site::started();
    site.deploy_ok("v2");
    site.wait_serving("v2");
    let began = Instant::now();
    let output = site.roster.run(&["rollback", "web"]);
    let took = began.elapsed();
    assert!(output.status.success(), "{}", both(&output));
    assert!(took < Duration::from_secs(2), "rollback took {took:?}");
    assert_eq!(
        site.live().as_deref(),
        Some("v1"),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        site.roster.ok(&["events", "web"])
    );
    site.wait_serving("v1");
    // And forward again by name.
    site.roster.ok(&["rollback", "web", "--to", "v2"]);
    assert_eq!(site.live().as_deref(), Some("v2"));
    let listed = site.roster.ok(&["releases", "web"]);
    assert!(listed.contains("v1") && listed.contains("v2"), "{listed}");
}

#[test]
fn the_restart_strategy_deploys_too() {
    let site = Site::started_with("strategy = \"restart\"");
    let before = site.roster.agent("web").pid;
    site.deploy_ok("v2");
    assert_eq!(site.live().as_deref(), Some("v2"));
    site.wait_serving("v2");
    assert_ne!(site.roster.agent("web").pid, before);
}

/// A deploy with the daemon SIGKILLed at `step`, then `roster up`: a
/// `current` that names a complete release, the agent running it, and no
/// half-staged release anywhere.
fn crash_at(step: &str) {
    let site = Site::started_with("build = [\"true\"]\nverify_for = \"3s\"");
    // The next daemon crashes at `step`: restart it with the variable.
    site.roster.ok(&["down"]);
    let output = site
        .roster
        .command()
        .args(["up", "--timeout", "20s"])
        .env("ROSTER_TEST_CRASH_AT", step)
        .output()
        .expect("up");
    assert!(output.status.success(), "{output:?}");
    // For the rollback step, v2 dies inside its verification window.
    let files: &[(&str, &str)] = if step == "rollback" {
        &[("die_after", "1")]
    } else {
        &[]
    };
    let source = site.source("v2", files);
    let output = site.deploy(&source, "v2");
    assert_eq!(
        output.status.code(),
        Some(4),
        "the deploy's outcome is unknown when the daemon dies at {step}: {}",
        both(&output)
    );
    wait_for("the daemon to be gone", SECS(10), || {
        (!site.roster.daemon_pid().is_some_and(alive)).then_some(())
    });
    site.roster.ok(&["up", "--timeout", "20s"]);
    let live = site.live().expect("current names a release");
    let releases = site.releases();
    let entry = releases
        .releases
        .iter()
        .find(|release| release.version == live)
        .unwrap_or_else(|| panic!("{live} is live but not recorded: {releases:?}"));
    assert!(
        !matches!(entry.result.as_str(), "failed" | "removed"),
        "{entry:?}"
    );
    // Every directory is a recorded, complete release.
    for dir in site.release_dirs() {
        assert!(
            releases
                .releases
                .iter()
                .any(|release| release.version == dir
                    && !matches!(release.result.as_str(), "failed" | "removed")),
            "a half-staged release {dir} survived the crash at {step}: {releases:?}"
        );
    }
    let running = site.roster.wait_state("web", AgentState::Running, SECS(20));
    assert_eq!(
        running.release.as_deref(),
        Some(live.as_str()),
        "status says which release runs"
    );
    wait_for("the live release to serve", SECS(20), || {
        (site.serving().as_deref() == Some(live.as_str())).then_some(())
    });
}

#[test]
fn crash_at_stage() {
    crash_at("stage");
}

#[test]
fn crash_at_build() {
    crash_at("build");
}

#[test]
fn crash_at_smoke_test() {
    crash_at("smoke_test");
}

#[test]
fn crash_at_cutover() {
    crash_at("cutover");
}

#[test]
fn crash_after_current_switched() {
    crash_at("current");
}

#[test]
fn crash_at_verify() {
    crash_at("verify");
}

#[test]
fn crash_at_cleanup() {
    crash_at("cleanup");
}

#[test]
fn crash_at_rollback() {
    crash_at("rollback");
}

/// A tarball written by Python's tarfile: `entries` is Python code adding
/// members to `tar` (a TarFile open for writing).
fn tarball(site: &Site, name: &str, entries: &str) -> PathBuf {
    let path = site.roster.path(name);
    let script = format!(
        "import io, tarfile\n\
         def add(tar, name, data=b'x', **kw):\n\
         \x20   info = tarfile.TarInfo(name)\n\
         \x20   for key, value in kw.items(): setattr(info, key, value)\n\
         \x20   info.size = len(data) if info.type == tarfile.REGTYPE else 0\n\
         \x20   tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)\n\
         with tarfile.open({path:?}, 'w:gz') as tar:\n\
         \x20   add(tar, 'web.py', open({web:?}, 'rb').read())\n\
         {entries}\n",
        path = path.to_str().expect("utf-8"),
        web = site
            .source("tar", &[])
            .join("web.py")
            .to_str()
            .expect("utf-8"),
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3");
    assert!(status.success(), "writing {name}");
    path
}

#[test]
fn bad_inputs_are_refused_and_change_nothing() {
    let site = Site::started();
    let pid = site.roster.agent("web").pid;
    let before = (site.live(), site.release_dirs(), site.releases());
    let refused = |args: &[&str], expect: &str| {
        let output = site.roster.run(args);
        let text = both(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?} was not refused:\n{text}"
        );
        assert!(
            text.to_lowercase().contains(&expect.to_lowercase()),
            "{args:?}: expected {expect:?} in:\n{text}"
        );
        assert_eq!(
            (site.live(), site.release_dirs(), site.releases()),
            before,
            "{args:?} changed something"
        );
        assert_eq!(site.roster.agent("web").pid, pid);
    };
    let missing = site.roster.path("no-such-source");
    refused(
        &["deploy", "web", missing.to_str().expect("utf-8")],
        "no-such-source",
    );
    let good = site.source("good", &[]);
    let good = good.to_str().expect("utf-8");
    refused(&["deploy", "nobody", good], "no agent named nobody");
    refused(&["deploy", "web", good, "--version", "../x"], "version");
    refused(&["deploy", "web", good, "--version", "a/b"], "version");
    refused(&["deploy", "web", good, "--version", "v1"], "v1");
    let dotdot = tarball(&site, "dotdot.tar.gz", "    add(tar, '../escape')");
    refused(
        &["deploy", "web", dotdot.to_str().expect("utf-8")],
        "../escape",
    );
    let absolute = tarball(&site, "absolute.tar.gz", "    add(tar, '/etc/evil')");
    refused(
        &["deploy", "web", absolute.to_str().expect("utf-8")],
        "/etc/evil",
    );
    let device = tarball(
        &site,
        "device.tar.gz",
        "    add(tar, 'null', type=tarfile.CHRTYPE, devmajor=1, devminor=3)",
    );
    refused(&["deploy", "web", device.to_str().expect("utf-8")], "null");
    let link = tarball(
        &site,
        "link.tar.gz",
        "    add(tar, 'passwd', type=tarfile.SYMTYPE, linkname='/etc/passwd')",
    );
    refused(&["deploy", "web", link.to_str().expect("utf-8")], "passwd");
    let up = tarball(
        &site,
        "uplink.tar.gz",
        "    add(tar, 'up', type=tarfile.SYMTYPE, linkname='../../../../x')",
    );
    refused(&["deploy", "web", up.to_str().expect("utf-8")], "up");
    // A directory source with a link out of it.
    let linked = site.source("linked", &[]);
    std::os::unix::fs::symlink("/etc/shadow", linked.join("shadow")).expect("symlink");
    refused(
        &["deploy", "web", linked.to_str().expect("utf-8")],
        "shadow",
    );

    // A good tarball deploys.
    let fine = tarball(
        &site,
        "fine.tar.gz",
        "    add(tar, 'data/readme.txt', b'hello')",
    );
    let output = site.roster.run(&[
        "deploy",
        "web",
        fine.to_str().expect("utf-8"),
        "--version",
        "t1",
    ]);
    assert!(output.status.success(), "{output:?}");
    site.wait_serving("t1");
    assert_eq!(
        std::fs::read_to_string(
            site.roster
                .home_path()
                .join("agents/web/releases/t1/data/readme.txt")
        )
        .ok()
        .as_deref(),
        Some("hello")
    );
}

#[test]
fn a_second_deploy_while_one_runs_is_refused() {
    // The first deploy's build waits for the test: however slow the
    // machine, the second deploy is asked for while the first runs.
    // (Open for the first release, which `started_with` deploys.)
    let gate = std::env::temp_dir().join(format!("roster-deploy-gate-{}", std::process::id()));
    std::fs::write(&gate, "").expect("open the gate");
    let site = Site::started_with(&format!(
        "build = [\"sh\", \"-c\", \"while [ ! -e {gate} ]; do sleep 0.05; done\"]",
        gate = gate.display()
    ));
    std::fs::remove_file(&gate).expect("close the gate");
    let first = site.source("v2", &[]);
    let roster = &site.roster;
    let mut running = roster
        .command()
        .args([
            "deploy",
            "web",
            first.to_str().expect("utf-8"),
            "--version",
            "v2",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("deploy");
    wait_for("the first deploy to build", SECS(10), || {
        roster
            .event_kinds("web")
            .iter()
            .any(|kind| kind == "deploy_started")
            .then_some(())
    });
    let second = site.source("v3", &[]);
    let output = roster.run(&[
        "deploy",
        "web",
        second.to_str().expect("utf-8"),
        "--version",
        "v3",
    ]);
    let text = String::from_utf8_lossy(&output.stderr);
    std::fs::write(&gate, "").expect("open the gate");
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("is running"), "{text}");
    let status = running.wait().expect("first deploy");
    let _ = std::fs::remove_file(&gate);
    assert!(status.success());
    assert_eq!(site.live().as_deref(), Some("v2"));
    assert!(!site.release_dirs().contains("v3"));
}

#[test]
fn deploys_through_the_api_alone() {
    let site = Site::started();
    let source = site.source("api", &[]);
    let body = format!(
        r#"{{"agent": "web", "source": {:?}, "version": "api1"}}"#,
        source.to_str().expect("utf-8")
    );
    let (status, reply) = api(&site.roster, "POST", "/v1/deploy", &body);
    assert_eq!(status, 200, "{reply}");
    let progress: DeployProgress = serde_json::from_str(&reply).expect("progress");
    let done = wait_for("the API deploy to end", SECS(30), || {
        let (_, text) = api(&site.roster, "GET", "/v1/deploy?agent=web", "");
        let now: DeployProgress = serde_json::from_str(&text).ok()?;
        (now.id == progress.id && now.outcome.is_some()).then_some(now)
    });
    assert_eq!(
        done.outcome,
        Some(roster_core::api::DeployOutcome::Deployed),
        "{done:?}"
    );
    site.wait_serving("api1");
    let (status, reply) = api(
        &site.roster,
        "POST",
        "/v1/deploy",
        r#"{"agent": "web", "source": "relative/path"}"#,
    );
    assert_eq!(status, 400, "{reply}");
}

#[test]
fn a_listen_address_that_cannot_be_bound_refuses_the_apply() {
    let roster = Roster::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    roster.config(&format!(
        "[agents.web]\ncommand = \"sleep 100\"\n[agents.web.listen]\nhttp = \"127.0.0.1:{port}\"\n"
    ));
    let output = roster.run(&["up"]);
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
    // Freed, the same file applies.
    drop(taken);
    roster.up();
    assert_eq!(roster.agent("web").state, AgentState::Running);
}
