//! The fleet tests' hosts: network namespaces on a bridge, each running
//! Debian's OpenSSH sshd (key only) with its own hostname and its own
//! /etc, /usr/local/bin and /var/lib/roster, plus a client namespace the
//! CLI under test runs in. Made as root, removed on drop (processes,
//! namespaces, directories), also when the test panics. Names carry the
//! test process's pid and a counter, so parallel tests never collide.
//!
//! Layout: namespace `rfPID-N-br` holds the bridge `br0`; each host
//! `rfPID-N-hI` and the client `rfPID-N-c` has an `eth0` on it, with an
//! address in 10.77.0.0/24 that exists only inside these namespaces. A
//! host's processes run under `unshare --uts --mount` with per-host
//! directories bind-mounted over /etc, /usr/local/bin and /var/lib/roster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::util::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One fixture at a time in this test process: every host's home is
/// /var/lib/roster, so every host's daemon uses the same cgroup tree of
/// this machine (`roster-<home id>`), and a daemon starting or stopping in
/// one test would stop another test's agents.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The client's address on the bridge; hosts are .11, .12, ...
const CLIENT_ADDRESS: &str = "10.77.0.2";

/// One host: its namespace, address, directories and sshd.
pub struct FleetHost {
    /// Its name (`h1`, `h2`, ...), also its hostname.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the bridge.
    pub address: String,
    /// Its own root of per-host directories (etc/, bin/, roster/).
    pub dir: PathBuf,
    sshd: Option<Child>,
}

impl FleetHost {
    /// Its /var/lib/roster as the test sees it.
    pub fn roster_home(&self) -> PathBuf {
        self.dir.join("roster")
    }
}

/// The whole fixture: hosts, the client namespace, the key the client
/// logs in with.
pub struct FleetHosts {
    prefix: String,
    /// Where the fixture keeps its files (keys, host directories).
    pub dir: tempfile::TempDir,
    /// The hosts, in order.
    pub hosts: Vec<FleetHost>,
    /// The client's network namespace.
    pub client: String,
    /// The client's private key (ed25519, no passphrase).
    pub identity: PathBuf,
    /// When building began (after waiting for its turn).
    pub began: Instant,
    // Dropped last, after every namespace and process is gone.
    _turn: MutexGuard<'static, ()>,
}

/// Runs a command, panicking with its output when it fails (fixture setup
/// only: a failure there is the machine's, not roster's).
fn sh(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program} {args:?}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn ip(args: &[&str]) {
    sh("ip", args);
}

/// Whether the fixture can run here; when not, the test is recorded as
/// skipped with the reason (as `needs_root` does).
pub fn fleet_hosts_or_skip(test: &str) -> bool {
    if !needs_root(test, "build network namespaces with sshd") {
        return false;
    }
    for (program, package) in [
        ("/usr/sbin/sshd", "openssh-server"),
        ("/usr/bin/ssh", "openssh-client"),
        ("/usr/bin/ssh-keygen", "openssh-client"),
        ("/usr/bin/unshare", "util-linux"),
    ] {
        if !Path::new(program).exists() {
            skip(test, &format!("{program} is missing (install {package})"));
            return false;
        }
    }
    let probe = Command::new("ip").args(["netns", "list"]).output();
    if !probe.map(|output| output.status.success()).unwrap_or(false) {
        skip(test, "`ip netns` does not work here (install iproute2)");
        return false;
    }
    true
}

impl FleetHosts {
    /// Builds `count` hosts and the client. Call `fleet_hosts_or_skip` first.
    pub fn new(count: usize) -> Self {
        let mut fleet = Self::build(count);
        fleet.start_all();
        fleet
    }

    /// Namespaces and directories, no process yet.
    fn build(count: usize) -> Self {
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let prefix = format!(
            "rf{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix("roster-fleet-")
            .tempdir()
            .expect("temp dir");
        let identity = dir.path().join("client_ed25519");
        let mut fleet = Self {
            prefix: prefix.clone(),
            identity: identity.clone(),
            dir,
            hosts: Vec::new(),
            client: format!("{prefix}-c"),
            began: Instant::now(),
            _turn: turn,
        };
        let bridge = fleet.bridge();
        keygen(&identity);
        let public_key = std::fs::read_to_string(identity.with_extension("pub")).expect("pub key");
        // sshd's privilege separation directory, and the mount point of
        // /var/lib/roster (an empty directory where none was).
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        std::fs::create_dir_all("/var/lib/roster").expect("/var/lib/roster");
        // One copy of /etc, hard-linked into each host's (copying 1,300
        // small files per host is what would make starting hosts slow);
        // the files a host changes are replaced, never written through.
        let template = fleet.dir.path().join("etc");
        sh("cp", &["-a", "/etc", &template.display().to_string()]);
        ip(&["netns", "add", &bridge]);
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        let client = fleet.client.clone();
        fleet.plug(&client, 0, CLIENT_ADDRESS);
        for index in 0..count {
            let name = format!("h{}", index + 1);
            let netns = format!("{prefix}-{name}");
            let address = format!("10.77.0.{}", 11 + index);
            fleet.plug(&netns, index + 1, &address);
            let host_dir = fleet.dir.path().join(&name);
            make_host_dirs(&template, &host_dir, &name, &public_key);
            fleet.hosts.push(FleetHost {
                name,
                netns,
                address,
                dir: host_dir,
                sshd: None,
            });
        }
        fleet
    }

    fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Makes namespace `netns` with `eth0` at `address` on the bridge. The
    /// client learns each host's MAC permanently, so a black-holed host's
    /// packets are really dropped (not refused for want of ARP).
    fn plug(&self, netns: &str, index: usize, address: &str) {
        let bridge = self.bridge();
        let port = format!("p{index}");
        ip(&["netns", "add", netns]);
        ip(&[
            "-n", &bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            netns,
        ]);
        ip(&["-n", &bridge, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            netns,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", netns, "link", "set", "eth0", "up"]);
        ip(&["-n", netns, "link", "set", "lo", "up"]);
        if netns != self.client {
            let output = sh("ip", &["-n", netns, "-o", "link", "show", "eth0"]);
            let text = String::from_utf8_lossy(&output.stdout);
            let mac = text
                .split_whitespace()
                .skip_while(|word| *word != "link/ether")
                .nth(1)
                .expect("eth0 has a MAC")
                .to_owned();
            ip(&[
                "-n",
                &self.client,
                "neigh",
                "replace",
                address,
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ]);
        }
    }

    /// Starts every host's sshd at once, then waits for each.
    fn start_all(&mut self) {
        for index in 0..self.hosts.len() {
            self.spawn_sshd(index);
        }
        for index in 0..self.hosts.len() {
            self.wait_sshd(index);
        }
    }

    /// Starts host `index`'s sshd (and whatever `boot` script its
    /// directory holds) in its namespaces; `wait_sshd` waits until it
    /// listens.
    fn spawn_sshd(&mut self, index: usize) {
        let host = &mut self.hosts[index];
        let log = host.dir.join("sshd.log");
        let _ = std::fs::remove_file(&log);
        let script = format!(
            "set -e; hostname {name}; \
             mount --bind {dir}/etc /etc; \
             mount --bind {dir}/bin /usr/local/bin; \
             mount --bind {dir}/roster /var/lib/roster; \
             if [ -x /var/lib/roster/boot ]; then /var/lib/roster/boot; fi; \
             exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config 2>{log}",
            name = host.name,
            dir = host.dir.display(),
            log = log.display(),
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.netns,
                "unshare",
                "--uts",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start sshd");
        host.sshd = Some(child);
    }

    fn wait_sshd(&self, index: usize) {
        let host = &self.hosts[index];
        let log = host.dir.join("sshd.log");
        wait_for(&format!("sshd of {} listening", host.name), SECS_10, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("Server listening on").then_some(())
        });
    }

    /// Stops host `index`'s sshd (connections to it are refused).
    pub fn stop_sshd(&mut self, index: usize) {
        if let Some(mut child) = self.hosts[index].sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Drops every packet of host `index` (its link goes down; the client
    /// still knows its MAC, so connecting waits for nothing).
    pub fn black_hole(&self, index: usize) {
        ip(&[
            "-n",
            &self.hosts[index].netns,
            "link",
            "set",
            "eth0",
            "down",
        ]);
    }

    /// Gives host `index` a new host key, and makes its sshd use it
    /// (SIGHUP: sshd re-executes itself and reads its keys again).
    pub fn change_host_key(&mut self, index: usize) {
        let host = &self.hosts[index];
        let key = host.dir.join("etc/ssh/ssh_host_ed25519_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        keygen(&key);
        let log = host.dir.join("sshd.log");
        let listening = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("Server listening on")
                .count()
        };
        let before = listening();
        let pid = host.sshd.as_ref().expect("sshd runs").id();
        kill(pid, Signal::SIGHUP);
        wait_for(&format!("sshd of {} restarted", host.name), SECS_10, || {
            (listening() > before).then_some(())
        });
    }

    /// Runs the built `roster` with `args` in the client namespace, with
    /// `runtime` as its XDG_RUNTIME_DIR (where the SSH masters live).
    pub fn client_roster(&self, runtime: &Path, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.client, BIN])
            .args(args)
            .env("XDG_RUNTIME_DIR", runtime)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run roster in the client namespace")
    }

    /// A fleet file's `[ssh]` and `[hosts.*]` for these hosts.
    pub fn fleet_head(&self, connect_timeout: &str) -> String {
        let mut text = format!(
            "[fleet]\nname = \"test\"\nports = \"8100-8199\"\n\n[ssh]\nuser = \"root\"\n\
             identity = {identity:?}\nknown_hosts = \"known_hosts\"\n\
             connect_timeout = \"{connect_timeout}\"\nmax_parallel = 10\n\n",
            identity = self.identity.display().to_string(),
        );
        for host in &self.hosts {
            text.push_str(&format!(
                "[hosts.{}]\naddress = \"{}\"\ncapacity = 10\n\n",
                host.name, host.address
            ));
        }
        text
    }

    /// Installs the built roster on every host and has each host's boot
    /// script start `roster daemon` with `configs[i]` as its roster.toml
    /// (called before the hosts start: see `with_roster`).
    fn install_roster(&self, configs: &[String]) {
        for (host, config) in self.hosts.iter().zip(configs) {
            let target = host.dir.join("bin/roster");
            if std::fs::hard_link(BIN, &target).is_err() {
                std::fs::copy(BIN, &target).expect("copy roster");
            }
            let home = host.roster_home();
            std::fs::write(home.join("roster.toml"), config).expect("roster.toml");
            let boot = home.join("boot");
            std::fs::write(
                &boot,
                "#!/bin/sh\nROSTER_HOME=/var/lib/roster setsid /usr/local/bin/roster --home /var/lib/roster \
                 daemon -f /var/lib/roster/roster.toml </dev/null >/var/lib/roster/daemon.log 2>&1 &\n",
            )
            .expect("boot script");
            sh("chmod", &["755", &boot.display().to_string()]);
        }
    }

    /// `count` hosts, each running a roster daemon with its roster.toml
    /// from `configs`, waiting until every host's daemon answers.
    pub fn with_roster(configs: &[String]) -> Self {
        let mut fleet = Self::build(configs.len());
        fleet.install_roster(configs);
        fleet.start_all();
        for host in &fleet.hosts {
            let socket_home = host.roster_home();
            wait_for(&format!("roster daemon on {}", host.name), SECS_10, || {
                let output = Command::new(BIN)
                    .args([
                        "--home",
                        &socket_home.display().to_string(),
                        "status",
                        "--json",
                    ])
                    .output()
                    .ok()?;
                output.status.success().then_some(())
            });
        }
        fleet
    }
}

const SECS_10: Duration = Duration::from_secs(10);

fn keygen(path: &Path) {
    sh(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "",
            "-f",
            &path.display().to_string(),
        ],
    );
}

/// Replaces `path` with a file of its own holding `text` (the host's /etc
/// is hard-linked to the template: writing through would change them all).
fn replace(path: &Path, text: &str) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
}

/// A host's own /etc (a copy of the real one with its own host key and
/// sshd_config), /usr/local/bin and /var/lib/roster.
fn make_host_dirs(template: &Path, dir: &Path, name: &str, public_key: &str) {
    std::fs::create_dir_all(dir.join("bin")).expect("bin");
    std::fs::create_dir_all(dir.join("roster")).expect("roster");
    let etc = dir.join("etc").display().to_string();
    sh("cp", &["-al", &template.display().to_string(), &etc]);
    let ssh = dir.join("etc/ssh");
    for entry in std::fs::read_dir(&ssh).expect("etc/ssh").flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("ssh_host_") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    keygen(&ssh.join("ssh_host_ed25519_key"));
    let _ = std::fs::remove_dir_all(ssh.join("sshd_config.d"));
    replace(
        &ssh.join("sshd_config"),
        "# roster's fleet test host\nPort 22\nHostKey /etc/ssh/ssh_host_ed25519_key\n\
         PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\nAuthorizedKeysFile /etc/ssh/authorized_keys/%u\n\
         UsePAM no\nPidFile none\nUseDNS no\nMaxStartups 100\nMaxSessions 100\n\
         Subsystem sftp /usr/lib/openssh/sftp-server\n",
    );
    std::fs::create_dir_all(ssh.join("authorized_keys")).expect("authorized_keys");
    std::fs::write(ssh.join("authorized_keys/root"), public_key).expect("authorized key");
    replace(&dir.join("etc/hostname"), &format!("{name}\n"));
    replace(
        &dir.join("etc/passwd"),
        &plain_root_shell(&dir.join("etc/passwd")),
    );
}

/// The host's /etc/passwd with /bin/sh as root's login shell. The hosts
/// share this machine's /root, and a bash that sshd starts sources its
/// ~/.bashrc, which may run tools that take a lock there (pyenv's rehash);
/// a session killed when a fixture is dropped can leave that lock behind,
/// and every later login would wait on it rather than on roster. POSIX sh
/// reads no start-up file for a command.
fn plain_root_shell(passwd: &Path) -> String {
    let text = std::fs::read_to_string(passwd)
        .unwrap_or_else(|error| panic!("{}: {error}", passwd.display()));
    text.lines()
        .map(|line| match line.strip_prefix("root:") {
            Some(rest) => {
                let before_shell = rest.rsplit_once(':').map_or(rest, |(head, _)| head);
                format!("root:{before_shell}:/bin/sh\n")
            }
            None => format!("{line}\n"),
        })
        .collect()
}

impl Drop for FleetHosts {
    fn drop(&mut self) {
        // Everything the fixture started runs in one of its network
        // namespaces (sshd, its sessions, the daemons and agents, the
        // client's SSH masters): kill what each holds, then remove it.
        let mut namespaces: Vec<String> =
            self.hosts.iter().map(|host| host.netns.clone()).collect();
        namespaces.push(self.client.clone());
        for index in 0..self.hosts.len() {
            self.stop_sshd(index);
        }
        for netns in &namespaces {
            for _ in 0..50 {
                let pids = Command::new("ip")
                    .args(["netns", "pids", netns])
                    .output()
                    .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                    .unwrap_or_default();
                let pids: Vec<u32> = pids
                    .split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect();
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    kill(pid, Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        namespaces.push(self.bridge());
        for netns in &namespaces {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
}
