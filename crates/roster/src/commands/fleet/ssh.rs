//! The fleet's transport: commands on hosts through the system's `ssh`
//! (so `~/.ssh/config` is honoured: no `-F`), one ControlMaster per host
//! kept in a private runtime directory so the next command reuses it.
//! Every command has a whole-command deadline over ssh's ConnectTimeout:
//! past it the child is killed and the host reported with the reason. It
//! must not decide anything about what the output means: callers do.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use roster_core::fleet::{digest, Fleet, SshSpec};

/// How long the masters outlive the command that opened them.
const CONTROL_PERSIST: &str = "120";
/// How long `ssh -O check` may take before a master counts as hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// One host as ssh reaches it.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its name in the fleet file.
    pub name: String,
    /// What ssh connects to.
    pub address: String,
    /// The login user.
    pub user: String,
    /// The SSH port.
    pub port: u16,
}

/// What one host answered.
#[derive(Debug)]
pub struct Outcome {
    /// Its standard output, or why there is none, in words.
    pub result: Result<Vec<u8>, String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// The transport: the fleet's `[ssh]` and the directory of its masters.
pub struct Ssh {
    spec: SshSpec,
    control_dir: PathBuf,
    /// The hosts' roster binary (`[fleet] binary`), which every remote
    /// roster command names.
    roster: String,
}

impl Ssh {
    /// The transport for `fleet`, with its masters' directory made private.
    pub fn new(fleet: &Fleet) -> Result<Self> {
        Ok(Self {
            spec: fleet.ssh.clone(),
            control_dir: control_dir(&fleet.name)?,
            roster: fleet.binary.clone(),
        })
    }

    /// The path of roster on the hosts.
    pub fn roster(&self) -> &str {
        &self.roster
    }

    /// The hosts of `fleet` named in `only` (all when empty), as targets.
    pub fn targets(&self, fleet: &Fleet, only: &[String]) -> Result<Vec<Target>> {
        for name in only {
            if !fleet.hosts.contains_key(name) {
                bail!("no host named {name:?} in the fleet file");
            }
        }
        Ok(fleet
            .hosts
            .iter()
            .filter(|(name, _)| only.is_empty() || only.contains(name))
            .map(|(name, host)| Target {
                name: name.clone(),
                address: host.address.clone(),
                user: host.user.clone().unwrap_or_else(|| self.spec.user.clone()),
                port: host.port.unwrap_or(self.spec.port),
            })
            .collect())
    }

    /// Runs `remote` (argv, quoted for the remote shell) on every target,
    /// at most `[ssh] max_parallel` at once, each within `timeout`.
    /// Outcomes come back in the targets' order.
    pub fn run_all(
        &self,
        targets: &[Target],
        remote: &[String],
        timeout: Duration,
    ) -> Vec<Outcome> {
        let next = Arc::new(Mutex::new(0usize));
        let results: Arc<Mutex<Vec<Option<Outcome>>>> =
            Arc::new(Mutex::new(targets.iter().map(|_| None).collect()));
        let workers = (self.spec.max_parallel as usize).clamp(1, targets.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let next = Arc::clone(&next);
                let results = Arc::clone(&results);
                scope.spawn(move || loop {
                    let index = {
                        let Ok(mut next) = next.lock() else { return };
                        let index = *next;
                        *next += 1;
                        index
                    };
                    let Some(target) = targets.get(index) else {
                        return;
                    };
                    let started = Instant::now();
                    let result = self.run(target, remote, timeout);
                    let outcome = Outcome {
                        result,
                        elapsed: started.elapsed(),
                    };
                    if let Ok(mut results) = results.lock() {
                        results[index] = Some(outcome);
                    }
                });
            }
        });
        let results = match Arc::try_unwrap(results).map(Mutex::into_inner) {
            Ok(Ok(results)) => results,
            _ => Vec::new(),
        };
        targets
            .iter()
            .zip(results.into_iter().chain(std::iter::repeat_with(|| None)))
            .map(|(_, outcome)| {
                outcome.unwrap_or_else(|| Outcome {
                    result: Err("the worker for this host failed".into()),
                    elapsed: Duration::ZERO,
                })
            })
            .collect()
    }

    /// Runs `remote` on one target within `timeout`: its stdout, or the
    /// reason in words.
    pub fn run(
        &self,
        target: &Target,
        remote: &[String],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        self.run_with_input(target, remote, &[], timeout)
    }

    /// Runs `remote` on one target within `timeout` with `input` as its
    /// standard input (a file to upload, a secret's value: never on the
    /// command line, where `ps` shows it): its stdout, or the reason.
    pub fn run_with_input(
        &self,
        target: &Target,
        remote: &[String],
        input: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let socket = self.socket(target);
        self.clear_stale_master(target, &socket);
        let mut command = self.command(target, &socket);
        let mut line: Vec<String> = Vec::new();
        if self.spec.sudo {
            line.extend(["sudo".to_owned(), "-n".to_owned()]);
        }
        line.extend(remote.iter().map(|word| shell_quote(word)));
        command.arg("--").arg(&target.address).arg(line.join(" "));
        let finished = run_within(command, Some(input), timeout)
            .map_err(|error| format!("cannot run ssh: {error}"))?;
        let Some((code, stdout, stderr)) = finished else {
            return Err(format!("timed out after {}", seconds(timeout)));
        };
        match code {
            Some(0) => Ok(stdout),
            Some(255) | None => Err(ssh_reason(&stderr, self.spec.connect_timeout)),
            Some(code) => Err(remote_reason(code, &stderr)),
        }
    }

    /// The ssh command with the fleet's options, up to the destination.
    fn command(&self, target: &Target, socket: &Path) -> Command {
        let mut command = Command::new("ssh");
        let connect = self.spec.connect_timeout.as_secs_f64().ceil().max(1.0) as u64;
        command
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "ControlMaster=auto"])
            .arg("-o")
            .arg(format!("ControlPath={}", socket.display()))
            .arg("-o")
            .arg(format!("ControlPersist={CONTROL_PERSIST}"))
            .arg("-o")
            .arg(format!("ConnectTimeout={connect}"))
            .args(["-o", "StrictHostKeyChecking=accept-new"]);
        if let Some(known_hosts) = &self.spec.known_hosts {
            command
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()));
        }
        if let Some(identity) = &self.spec.identity {
            command.arg("-i").arg(identity);
        }
        command
            .arg("-p")
            .arg(target.port.to_string())
            .arg("-l")
            .arg(&target.user);
        command
    }

    /// The master's socket for a target: short, whatever the address,
    /// since a Unix socket's path is limited to about 100 bytes.
    fn socket(&self, target: &Target) -> PathBuf {
        let key = format!("{}@{}:{}", target.user, target.address, target.port);
        self.control_dir.join(&digest(&key)[..16])
    }

    /// A master that does not answer `ssh -O check` quickly (dead, or
    /// hung on a host that went away) would stall the command: its socket
    /// is removed so this command opens a new one.
    fn clear_stale_master(&self, target: &Target, socket: &Path) {
        if !socket.exists() {
            return;
        }
        let mut command = self.command(target, socket);
        command.args(["-O", "check", "--"]).arg(&target.address);
        let healthy = matches!(
            run_within(command, None, CHECK_TIMEOUT),
            Ok(Some((Some(0), _, _)))
        );
        if !healthy {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// `$XDG_RUNTIME_DIR/roster/ssh-FLEET`, else `/tmp/roster-UID/ssh-FLEET`:
/// made 0700, and refused when another user owns it or others may enter.
fn control_dir(fleet: &str) -> Result<PathBuf> {
    let uid = nix::unistd::geteuid().as_raw();
    let base = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("roster"),
        _ => std::env::temp_dir().join(format!("roster-{uid}")),
    };
    let dir = base.join(format!("ssh-{}", &digest(fleet)[..8]));
    for path in [&base, &dir] {
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot create {}", path.display()))
            }
        }
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} must be a directory of yours that only you may enter (mode 0700); \
                 remove it and run again",
                path.display()
            );
        }
    }
    Ok(dir)
}

/// Runs `command`, killed past `timeout`: `None` when it was, else its
/// exit code (`None` when killed by a signal), stdout and stderr.
type Finished = Option<(Option<i32>, Vec<u8>, Vec<u8>)>;

/// Runs `command` with `input` on its stdin (none: /dev/null), killed
/// past `timeout`.
fn run_within(
    mut command: Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Finished> {
    let deadline = Instant::now() + timeout;
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Written on a thread of its own: a host that stops reading must not
    // hold this one past the deadline (the kill below ends the write).
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let Some(status) = status else {
        kill(&mut child);
        return Ok(None);
    };
    // A master that went to the background may still hold the pipes; the
    // output is whole once ssh itself has exited, so wait only briefly.
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_millis(500));
    let stdout = stdout.recv_timeout(grace).unwrap_or_default();
    let stderr = stderr.recv_timeout(grace).unwrap_or_default();
    Ok(Some((status.code(), stdout, stderr)))
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads a pipe to its end on a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = sender.send(bytes);
        });
    } else {
        let _ = sender.send(Vec::new());
    }
    receiver
}

/// Why ssh itself failed (exit 255), from its stderr, in words.
pub fn ssh_reason(stderr: &[u8], connect_timeout: Duration) -> String {
    let text = String::from_utf8_lossy(stderr);
    if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        let line = text.lines().find_map(|line| {
            let rest = line.split_once("Offending")?.1;
            let (_, number) = rest.trim_end().rsplit_once(':')?;
            number.trim().parse::<u64>().ok()
        });
        return match line {
            Some(line) => format!("host key changed (known_hosts line {line})"),
            None => "host key changed".to_owned(),
        };
    }
    let known = [
        ("Connection refused", "connection refused".to_owned()),
        (
            "Connection timed out",
            format!("timed out after {}", seconds(connect_timeout)),
        ),
        (
            "Operation timed out",
            format!("timed out after {}", seconds(connect_timeout)),
        ),
        (
            "Permission denied (publickey",
            "permission denied (publickey)".to_owned(),
        ),
        ("Permission denied", "permission denied".to_owned()),
        ("No route to host", "no route to host".to_owned()),
        ("Network is unreachable", "network unreachable".to_owned()),
        (
            "Could not resolve hostname",
            "cannot resolve the host name".to_owned(),
        ),
        (
            "Host key verification failed",
            "host key verification failed".to_owned(),
        ),
        (
            "Connection closed",
            "connection closed by the host".to_owned(),
        ),
        ("Connection reset", "connection reset".to_owned()),
    ];
    for (needle, reason) in known {
        if text.contains(needle) {
            return reason;
        }
    }
    match last_line(&text) {
        Some(line) => format!("ssh failed: {line}"),
        None => "ssh failed".to_owned(),
    }
}

fn remote_reason(code: i32, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    match last_line(&text) {
        Some(line) => format!("the remote command failed (exit {code}): {line}"),
        None => format!("the remote command failed (exit {code})"),
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|line| !line.is_empty())
}

/// `5s`, `1.5s`: a duration as the fleet file writes it.
pub fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{secs:.1}s")
    }
}

/// A word for the remote shell, single-quoted unless plainly safe.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How a streamed command ended.
pub enum Streamed {
    /// The remote command exited with this code (0: it finished).
    Exited(i32),
    /// ssh itself failed or was cut: the reason in words.
    Lost(String),
}

impl Ssh {
    /// Runs `remote` on one target with its stdout and stderr passed
    /// through to ours as they come, without a deadline (`logs --follow`),
    /// until it ends, the connection drops, or we are interrupted. No
    /// terminal is asked for (`-tt`-free); instead the remote command is
    /// wrapped so that it dies when its session's stdin closes, which
    /// happens when this process or its ssh goes away for any reason: a
    /// follower never outlives the session.
    pub fn stream(&self, target: &Target, remote: &[String]) -> Result<Streamed> {
        let socket = self.socket(target);
        self.clear_stale_master(target, &socket);
        let mut command = self.command(target, &socket);
        // `$@` runs in the background; a watcher reads the session's stdin
        // (kept as fd 3: a background job's own stdin is /dev/null) to its
        // end, then ends it.
        let wrapper = "exec 3<&0; \"$@\" </dev/null 3<&- & p=$!; \
                       (cat <&3 >/dev/null 2>&1; kill $p 2>/dev/null) & w=$!; \
                       exec 3<&-; \
                       wait $p; s=$?; kill $w 2>/dev/null; exit $s";
        let mut line: Vec<String> = Vec::new();
        if self.spec.sudo {
            line.extend(["sudo".to_owned(), "-n".to_owned()]);
        }
        line.extend(["sh", "-c", wrapper, "sh"].map(shell_quote));
        line.extend(remote.iter().map(|word| shell_quote(word)));
        command.arg("--").arg(&target.address).arg(line.join(" "));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run ssh")?;
        // Held open (never written) until ssh ends: its end is the
        // remote watcher's signal.
        let stdin = child.stdin.take();
        // Passed through, its tail kept for the reason. A master that went
        // to the background may hold the pipe: wait for its end briefly.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ended, ended_rx) = mpsc::channel::<()>();
        if let Some(mut pipe) = child.stderr.take() {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buffer = [0u8; 4096];
                while let Ok(read) = pipe.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    let _ = std::io::stderr().write_all(&buffer[..read]);
                    if let Ok(mut seen) = seen.lock() {
                        seen.extend_from_slice(&buffer[..read]);
                        let excess = seen.len().saturating_sub(8192);
                        seen.drain(..excess);
                    }
                }
                let _ = ended.send(());
            });
        }
        let status = child.wait().context("waiting for ssh")?;
        drop(stdin);
        let _ = ended_rx.recv_timeout(Duration::from_millis(500));
        let seen = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        Ok(match status.code() {
            Some(255) | None => Streamed::Lost(ssh_reason(&seen, self.spec.connect_timeout)),
            Some(code) => Streamed::Exited(code),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_in_words() {
        let changed = b"@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            Offending ED25519 key in /tmp/x/known_hosts:3\nHost key verification failed.\n";
        assert_eq!(
            ssh_reason(changed, Duration::from_secs(5)),
            "host key changed (known_hosts line 3)"
        );
        let refused = b"ssh: connect to host 10.0.0.1 port 22: Connection refused\n";
        assert_eq!(
            ssh_reason(refused, Duration::from_secs(5)),
            "connection refused"
        );
        let timed = b"ssh: connect to host 10.0.0.1 port 22: Connection timed out\n";
        assert_eq!(
            ssh_reason(timed, Duration::from_secs(2)),
            "timed out after 2s"
        );
        let denied = b"root@10.0.0.1: Permission denied (publickey).\n";
        assert_eq!(
            ssh_reason(denied, Duration::from_secs(5)),
            "permission denied (publickey)"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote("/usr/local/bin/roster"),
            "/usr/local/bin/roster"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
