//! The test harness: a temp home and config dir per test, the real `roster`
//! binary, and waits on conditions with deadlines (never bare sleeps).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use roster_core::api::{AgentState, AgentStatus, EventRecord, StatusReply};

pub use nix::sys::signal::Signal;

pub const BIN: &str = env!("CARGO_BIN_EXE_roster");

/// One roster home with its own daemon, torn down on drop.
pub struct Roster {
    pub home: tempfile::TempDir,
    pub dir: tempfile::TempDir,
}

impl Roster {
    pub fn new() -> Self {
        Self {
            home: tempfile::Builder::new()
                .prefix("roster-home-")
                .tempdir()
                .expect("temp home"),
            dir: tempfile::Builder::new()
                .prefix("roster-cfg-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn home_path(&self) -> &Path {
        self.home.path()
    }

    /// Writes `roster.toml` (or another file) into the config dir.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    pub fn config(&self, text: &str) -> PathBuf {
        self.write("roster.toml", text)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .env_remove("ROSTER_HOME")
            .arg("--home")
            .arg(self.home.path())
            .current_dir(self.dir.path());
        command
    }

    /// `roster daemon -f roster.toml` in the foreground, as systemd runs it,
    /// with `env` added; its log is discarded.
    pub fn foreground_daemon(&self, env: &[(&str, &Path)]) -> std::process::Child {
        let mut command = self.command();
        command
            .args(["daemon", "-f", "roster.toml"])
            .stderr(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        command.spawn().expect("roster daemon")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run roster")
    }

    /// Runs with `stdin` written to its standard input (a secret, a
    /// backup), returning its output.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run roster");
        if let Some(mut input) = child.stdin.take() {
            // A refused command may end before it reads: a broken pipe is fine.
            let _ = std::io::Write::write_all(&mut input, stdin);
        }
        child.wait_with_output().expect("roster's output")
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "roster {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn up(&self) -> String {
        self.ok(&["up"])
    }

    pub fn status(&self) -> StatusReply {
        let text = self.ok(&["status", "--json"]);
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("status --json is not the contract ({error}):\n{text}"))
    }

    pub fn agent(&self, name: &str) -> AgentStatus {
        self.status()
            .agents
            .into_iter()
            .find(|agent| agent.name == name)
            .unwrap_or_else(|| panic!("no agent {name} in status"))
    }

    /// Waits until `condition` holds for the status, or fails saying `what`.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&StatusReply) -> bool,
    ) -> StatusReply {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if condition(&status) {
                return status;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}; last status: {status:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_state(&self, name: &str, state: AgentState, timeout: Duration) -> AgentStatus {
        let status = self.wait_status(&format!("{name} to be {state:?}"), timeout, |status| {
            status
                .agents
                .iter()
                .any(|agent| agent.name == name && agent.state == state)
        });
        status
            .agents
            .into_iter()
            .find(|agent| agent.name == name)
            .expect("agent present")
    }

    pub fn events(&self, args: &[&str]) -> Vec<EventRecord> {
        let mut all = vec!["events", "--json"];
        all.extend_from_slice(args);
        self.ok(&all)
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("bad event line {line:?}: {error}"))
            })
            .collect()
    }

    /// The kinds of an agent's events, oldest first.
    pub fn event_kinds(&self, agent: &str) -> Vec<String> {
        self.events(&[agent])
            .into_iter()
            .map(|event| event.kind)
            .collect()
    }

    pub fn wait_event(&self, agent: &str, kind: &str, timeout: Duration) -> Vec<EventRecord> {
        wait_for(&format!("a `{kind}` event for {agent}"), timeout, || {
            let events = self.events(&[agent]);
            events
                .iter()
                .any(|event| event.kind == kind)
                .then_some(events)
        })
    }

    pub fn log_path(&self, agent: &str) -> PathBuf {
        self.home.path().join("logs").join(format!("{agent}.log"))
    }

    /// Processes started for this home (found by their environment marker).
    pub fn processes(&self) -> Vec<(u32, String)> {
        roster_daemon::tools::processes_of_home(&self.home.path().display().to_string())
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home.path().join("daemon.lock"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Roster {
    fn drop(&mut self) {
        let _ = self.command().arg("down").output();
        // Whatever a failed test left behind must not outlive it.
        for (pid, _) in self.processes() {
            kill(pid, Signal::SIGKILL);
        }
    }
}

/// Live processes (zombies excluded) whose command line is exactly `argv`.
pub fn processes_running(argv: &[&str]) -> Vec<u32> {
    let mut wanted = Vec::new();
    for word in argv {
        wanted.extend_from_slice(word.as_bytes());
        wanted.push(0);
    }
    roster_daemon::tools::all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| cmdline == wanted)
                && alive(*pid)
        })
        .collect()
}

/// Polls `probe` until it returns Some, or panics saying what did not happen.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pids an agent wrote to `path`, one a line (`echo $$ >> FILE`).
pub fn pids_in(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// True while the pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text
            .rfind(')')
            .is_some_and(|index| !text[index + 1..].trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Zombie children of `parent`.
pub fn zombies_of(parent: u32) -> Vec<u32> {
    roster_daemon::tools::sample_all()
        .into_iter()
        .filter(|(pid, sample)| {
            sample.ppid == parent
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|text| {
                    text.rfind(')')
                        .is_some_and(|index| text[index + 1..].trim_start().starts_with('Z'))
                })
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// The agent lines of a log (timestamps removed), across rotated files.
pub fn log_lines(path: &Path) -> Vec<String> {
    roster_store::logs::read_lines(path, usize::MAX)
        .expect("read log")
        .into_iter()
        .map(|line| line.text)
        .collect()
}

pub const SECS: fn(u64) -> Duration = Duration::from_secs;

/// An agent table for a shell command.
pub fn sh_agent(name: &str, script: &str, extra: &str) -> String {
    format!(
        "[agents.{name}]\ncommand = [\"sh\", \"-c\", {script:?}]\n{extra}\n",
        script = script
    )
}

/// Direct children of a process, from /proc/PID/task/*/children.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                children.extend(
                    text.split_whitespace()
                        .filter_map(|pid| pid.parse::<u32>().ok()),
                );
            }
        }
    }
    children.sort_unstable();
    children
}

/// A raw HTTP request on the home's socket: (status, body).
pub fn api(roster: &Roster, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream =
        UnixStream::connect(roster.home_path().join("roster.sock")).expect("connect to the API");
    stream
        .set_read_timeout(Some(SECS(20)))
        .expect("read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: roster\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("an answer in time");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Records that a test could not run here, with the reason: printed, and
/// appended to the file named by `ROSTER_TEST_SKIPS` (set by `.ci/run`, which
/// reports skipped tests apart from passed ones instead of counting them as
/// passes). The test then returns.
pub fn skip(test: &str, reason: &str) {
    eprintln!("skipped: {test}: {reason}");
    if let Some(path) = std::env::var_os("ROSTER_TEST_SKIPS") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

/// Skips (see [`skip`]) unless running as root; true when the test may go on.
pub fn needs_root(test: &str, why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(test, &format!("needs root to {why}"));
    false
}

/// Processes whose environment names `home` as their `ROSTER_HOME`, whatever
/// their user (the daemon trusts only its own user's; a test that runs a
/// daemon as another user must still find and clean up after it).
pub fn processes_of_home_any_user(home: &str) -> Vec<u32> {
    let marker = format!("ROSTER_HOME={home}");
    roster_daemon::tools::all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|entry| entry == marker.as_bytes())
            })
        })
        .collect()
}

/// A system user for tests (created once if missing, never deleted):
/// `(uid, gid)`, or None when it cannot be had (not root, no useradd).
pub fn system_user(name: &str) -> Option<(u32, u32)> {
    if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
        return Some((user.uid.as_raw(), user.gid.as_raw()));
    }
    let _ = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .output();
    let user = nix::unistd::User::from_name(name).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// Another user for tests that need one, or None after recording the skip
/// (not root, or the user cannot be created).
pub fn other_user_or_skip(test: &str, user: &str, why: &str) -> Option<(u32, u32)> {
    if !needs_root(test, why) {
        return None;
    }
    let found = system_user(user);
    if found.is_none() {
        skip(test, &format!("could not create the user {user}"));
    }
    found
}

/// `PRAGMA integrity_check` of a home's journal, opened read-only.
pub fn journal_integrity(home: &Path) -> String {
    let journal = rusqlite::Connection::open_with_flags(
        home.join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the journal");
    journal
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check")
}

/// `POST /v1/apply` of `config` straight to the daemon (no CLI check in
/// front): (HTTP status, body).
pub fn api_apply(roster: &Roster, config: &Path) -> (u16, String) {
    api(
        roster,
        "POST",
        "/v1/apply",
        &format!(
            r#"{{"path": "{}", "start_stopped": false}}"#,
            config.display()
        ),
    )
}

/// Sends `signal` to the process `pid`. One already gone is no error here:
/// each test waits for what it expects to follow.
pub fn kill(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
}

/// Sends `signal` to the process group `pgid`.
pub fn kill_group(pgid: u32, signal: Signal) {
    let _ = nix::sys::signal::killpg(Pid::from_raw(pgid as i32), signal);
}

/// Sends SIGTERM to a foreground daemon and waits for it to exit.
pub fn terminate(daemon: &mut std::process::Child) -> std::process::ExitStatus {
    kill(daemon.id(), Signal::SIGTERM);
    wait_for("the daemon to exit", SECS(30), || {
        daemon.try_wait().ok().flatten()
    })
}

/// A port nobody listens on right now (bound, then released), below the
/// kernel's ephemeral range: a port from that range can be taken, while a
/// test's daemon is down, as the local port of any test's outgoing
/// connection, and the daemon's next bind then fails. Each call moves on,
/// so parallel tests get different ports.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = if ephemeral_low > 12_000 {
        (10_000, ephemeral_low)
    } else {
        (1024, 65_535)
    };
    let span = high - low;
    let start = std::process::id() % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + (start + step) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {high}");
}

/// One GET /health on a fresh connection: (status, body), None on any
/// failure (refused, reset, timed out, malformed).
pub fn get_health(port: u16) -> Option<(u16, String)> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1)?.to_owned();
    Some((status, body))
}

/// A tmux server of the test's own (its socket in a temp dir), killed on drop.
pub struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    /// A fresh server, or `None` (the test skipped) without tmux.
    pub fn new(test: &str) -> Option<Self> {
        let found = Command::new("tmux").arg("-V").output();
        if !found.is_ok_and(|output| output.status.success()) {
            skip(test, "tmux is not installed");
            return None;
        }
        Some(Self {
            dir: tempfile::Builder::new()
                .prefix("roster-tmux-")
                .tempdir()
                .expect("tmux dir"),
        })
    }

    /// Where the server's socket lives (tmux's TMUX_TMPDIR).
    fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment a command needs to talk to this server only.
    pub fn apply(&self, command: &mut Command) {
        command
            .env("TMUX_TMPDIR", self.socket_dir())
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .env("TERM", "xterm-256color");
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new("tmux");
        self.apply(&mut command);
        command.args(args).output().expect("tmux")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What the pane shows now.
    pub fn screen(&self, target: &str) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", target]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the pane's screen satisfies `test`; its text.
    pub fn wait_screen(&self, target: &str, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen(target);
            if test(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` literally, then Enter.
    pub fn type_line(&self, target: &str, text: &str) {
        self.ok(&["send-keys", "-t", target, "-l", text]);
        self.ok(&["send-keys", "-t", target, "Enter"]);
    }

    /// Sends keys, tmux's way (`Enter`, `Escape`, or literal text).
    pub fn keys(&self, target: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", target];
        args.extend_from_slice(keys);
        self.ok(&args);
    }

    pub fn has_session(&self, name: &str) -> bool {
        self.run(&["has-session", "-t", &format!("={name}")])
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop (even when
/// the test fails). Declare it before the `Roster` that lives in it, so the
/// roster is stopped first.
pub struct Tmpfs {
    mount_point: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Self {
        let mount_point = tempfile::Builder::new()
            .prefix("roster-tmpfs-")
            .tempdir()
            .expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(mount_point.path())
            .status()
            .expect("run mount");
        assert!(mounted.success(), "could not mount a tmpfs");
        Self { mount_point }
    }

    pub fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// A roster whose home is on this filesystem.
    pub fn roster(&self) -> Roster {
        Roster {
            home: tempfile::Builder::new()
                .prefix("home-")
                .tempdir_in(self.path())
                .expect("home on the tmpfs"),
            dir: tempfile::Builder::new()
                .prefix("roster-cfg-")
                .tempdir()
                .expect("config dir"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.mount_point.path())
            .status();
    }
}

/// Whether a diagnose finding (or a recover `left` one), as JSON, is a
/// host-wide condition of a shared test machine that no test here makes:
/// the load of other builds, the kernel's OOM kills of other tests'
/// processes, a clock without time sync. Tests of a project's findings
/// leave these out, and expect exit 1 for them alone.
pub fn ambient(found: &serde_json::Value) -> bool {
    found["agent"].is_null()
        && matches!(
            found["mode"].as_str(),
            Some("high_load" | "oom_killed" | "clock_unsynced")
        )
}

/// The exit code diagnose or recover gives when nothing but the `ambient`
/// findings of `findings` (a JSON array) is wrong: 1 when one of them is
/// a problem (not `info`), else 0.
pub fn ambient_code(findings: &serde_json::Value) -> i32 {
    let problems = findings
        .as_array()
        .into_iter()
        .flatten()
        .filter(|found| ambient(found) && found["severity"] != "info")
        .count();
    i32::from(problems > 0)
}

/// Writes a file under `dir` until the filesystem is `percent` used.
pub fn fill_to(dir: &Path, name: &str, percent: f64) {
    use std::io::Write;
    let stat = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    let unit = stat.fragment_size() as u64;
    let total = stat.blocks() as u64 * unit;
    let used = (stat.blocks() - stat.blocks_free()) as u64 * unit;
    let wanted = (total as f64 * percent / 100.0) as u64;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("filler");
    let chunk = vec![b'x'; 1 << 16];
    let mut left = wanted.saturating_sub(used);
    while left > 0 {
        let now = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..now]).expect("fill");
        left -= now as u64;
    }
}

/// SIGCONT for a stopped daemon, however the test ends (so the home's
/// `down` works).
pub struct Continue(pub u32);

impl Drop for Continue {
    fn drop(&mut self) {
        kill(self.0, Signal::SIGCONT);
    }
}
