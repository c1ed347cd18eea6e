//! Issue #9, points 1 and 6: `roster install` / `uninstall` into a scratch
//! root (real useradd, real files, real modes), and `roster export
//! systemd|logrotate` checked by `systemd-analyze verify` and `logrotate -d`
//! (`export`). Issue #14: no link below the root is followed, purge removes
//! only what install made, ids under a root (`links`).

mod export;
mod links;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{kill, needs_root, skip, Signal, BIN};

fn roster(args: &[&str]) -> Output {
    Command::new(BIN)
        .env_remove("ROSTER_HOME")
        .args(args)
        .output()
        .expect("run roster")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let output = roster(args);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "roster {args:?} failed: {stdout}{stderr}"
    );
    stdout
}

/// Every path under `dir` with its mode, owner and mtime, sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, u32, u32, i64, i64)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("stat");
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                pending.push(entry.expect("entry").path());
            }
        }
        found.push((
            path,
            metadata.mode(),
            metadata.uid(),
            metadata.gid(),
            metadata.mtime(),
            metadata.mtime_nsec(),
        ));
    }
    found.sort();
    found
}

/// `name`'s (uid, gid) in DIR/etc/passwd.
fn scratch_user(root: &Path, name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            return None;
        }
        Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
    })
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    let metadata = std::fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("stat {}: {error}", path.display()));
    (metadata.mode() & 0o7777, metadata.uid(), metadata.gid())
}

/// `systemd-analyze verify FILE` printed nothing and exited 0; None when
/// systemd-analyze is missing.
fn verify_unit(path: &Path) -> Option<()> {
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(path)
        .output()
        .ok()?;
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success() && stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify {} is not silent ({}):\n{stdout}{stderr}\n--- the unit:\n{}",
        path.display(),
        output.status,
        std::fs::read_to_string(path).unwrap_or_default()
    );
    Some(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// An empty scratch root for `install --root`, or None after recording
/// why this test cannot run here (not root, no useradd).
fn scratch_root(test: &str) -> Option<tempfile::TempDir> {
    if !needs_root(test, "create users and chown") {
        return None;
    }
    if !have("useradd") {
        skip(test, "no useradd (Debian's passwd package)");
        return None;
    }
    Some(
        tempfile::Builder::new()
            .prefix("roster-install-")
            .tempdir()
            .expect("scratch"),
    )
}

#[test]
fn install_into_a_scratch_root_then_again_then_uninstall_and_purge() {
    let test = "install::install_into_a_scratch_root_then_again_then_uninstall_and_purge";
    let Some(scratch) = scratch_root(test) else {
        return;
    };
    let root = scratch.path();
    let root_arg = root.to_str().expect("utf-8 temp dir");

    // A dry run lists every change and makes none.
    let dry = ok(&["install", "--root", root_arg, "--dry-run"]);
    for expected in [
        "create system user agent-runner",
        &format!("mkdir {root_arg}/etc/roster 0750 root:agent-runner"),
        &format!("write {root_arg}/etc/roster/roster.toml 0640 root:agent-runner"),
        &format!("mkdir {root_arg}/var/lib/roster 0750 root:root"),
        &format!("mkdir {root_arg}/var/lib/roster/logs 0750 root:root"),
        &format!("mkdir {root_arg}/var/lib/roster/secrets 0700 root:root"),
        &format!("write {root_arg}/etc/systemd/system/roster.service 0644 root:root"),
    ] {
        assert!(dry.contains(expected), "{expected:?} missing from:\n{dry}");
    }
    assert_eq!(
        std::fs::read_dir(root).expect("read scratch").count(),
        0,
        "a dry run wrote into the scratch root:\n{dry}"
    );

    // The real run.
    let first = ok(&["install", "--root", root_arg]);
    assert!(first.contains("create system user agent-runner"), "{first}");
    let (uid, gid) = scratch_user(root, "agent-runner").expect("agent-runner in DIR/etc/passwd");
    assert_ne!(uid, 0);
    assert!(
        std::fs::read_to_string(root.join("etc/passwd"))
            .expect("passwd")
            .contains(":/var/lib/roster:/usr/sbin/nologin"),
        "no login, home /var/lib/roster"
    );
    assert_eq!(mode_and_owner(&root.join("etc/roster")), (0o750, 0, gid));
    assert_eq!(
        mode_and_owner(&root.join("etc/roster/roster.toml")),
        (0o640, 0, gid)
    );
    assert_eq!(mode_and_owner(&root.join("var/lib/roster")), (0o750, 0, 0));
    assert_eq!(
        mode_and_owner(&root.join("var/lib/roster/logs")),
        (0o750, 0, 0)
    );
    assert_eq!(
        mode_and_owner(&root.join("var/lib/roster/secrets")),
        (0o700, 0, 0)
    );
    let unit_path = root.join("etc/systemd/system/roster.service");
    assert_eq!(mode_and_owner(&unit_path), (0o644, 0, 0));
    let unit = std::fs::read_to_string(&unit_path).expect("unit");
    let binary = std::fs::canonicalize(BIN).expect("binary");
    let exec = format!(
        "ExecStart={} daemon -f /etc/roster/roster.toml --home /var/lib/roster",
        binary.display()
    );
    assert!(unit.lines().any(|line| line == exec), "{exec}\n{unit}");
    for line in [
        "Type=notify",
        "Environment=ROSTER_INSTALLED=1",
        "KillMode=mixed",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|got| got == line), "{line}:\n{unit}");
    }
    // The starter config is valid as written.
    ok(&[
        "check",
        "-f",
        root.join("etc/roster/roster.toml").to_str().expect("utf-8"),
    ]);
    if verify_unit(&unit_path).is_none() {
        skip(test, "no systemd-analyze: the unit was not verified");
    }

    // Again: nothing to change, nothing touched.
    let before = snapshot(root);
    let second = ok(&["install", "--root", root_arg]);
    assert_eq!(second.trim(), "nothing to change");
    assert_eq!(before, snapshot(root), "a second install changed files");

    // A mode or owner put wrong is put back, and only that.
    std::fs::set_permissions(
        root.join("var/lib/roster/secrets"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let repair = ok(&["install", "--root", root_arg]);
    assert_eq!(
        repair.lines().next(),
        Some(format!("chmod 0700 {root_arg}/var/lib/roster/secrets").as_str()),
        "{repair}"
    );
    assert_eq!(
        mode_and_owner(&root.join("var/lib/roster/secrets")).0,
        0o700
    );

    // A config edited by hand is never overwritten.
    let config = root.join("etc/roster/roster.toml");
    std::fs::write(&config, "# mine\n").expect("edit config");
    assert_eq!(
        ok(&["install", "--root", root_arg]).trim(),
        "nothing to change"
    );
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        "# mine\n"
    );

    // Uninstall removes the unit, keeps the rest.
    let dry = ok(&["uninstall", "--root", root_arg, "--dry-run"]);
    assert!(dry.contains("remove"), "{dry}");
    assert!(unit_path.exists(), "a dry run removed the unit");
    let out = ok(&["uninstall", "--root", root_arg]);
    assert!(
        out.contains(&format!("remove {}", unit_path.display())),
        "{out}"
    );
    assert!(!unit_path.exists());
    assert!(config.exists(), "the config is kept");
    assert!(root.join("var/lib/roster/logs").is_dir(), "logs are kept");
    assert!(
        scratch_user(root, "agent-runner").is_some(),
        "the user is kept"
    );

    // --purge removes the rest and the user.
    let out = ok(&["uninstall", "--root", root_arg, "--purge"]);
    assert!(out.contains("delete user agent-runner"), "{out}");
    assert!(!root.join("etc/roster").exists());
    assert!(!root.join("var/lib/roster").exists());
    assert!(
        scratch_user(root, "agent-runner").is_none(),
        "the user is gone"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).expect("group");
    assert!(
        !group.contains("agent-runner"),
        "the group is gone: {group}"
    );
    assert_eq!(
        ok(&["uninstall", "--root", root_arg, "--purge"]).trim(),
        "nothing to change"
    );
}

#[test]
fn install_without_root_is_refused() {
    let test = "install::install_without_root_is_refused";
    let mut command = if nix::unistd::geteuid().is_root() {
        if !have("setpriv") {
            skip(test, "root, and no setpriv to drop it");
            return;
        }
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        command
    } else {
        Command::new(BIN)
    };
    let output = command
        .args(["install", "--dry-run"])
        .env_remove("ROSTER_HOME")
        .output()
        .expect("run roster");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("must run as root"), "{stderr}");
    assert!(stdout.is_empty(), "nothing planned: {stdout}");
}

#[test]
fn install_with_a_daemon_user_gives_it_the_home() {
    let test = "install::install_with_a_daemon_user_gives_it_the_home";
    let Some(scratch) = scratch_root(test) else {
        return;
    };
    let root = scratch.path();
    let root_arg = root.to_str().expect("utf-8 temp dir");
    let out = ok(&[
        "install",
        "--root",
        root_arg,
        "--user",
        "roster-runner-t",
        "--daemon-user",
        "roster-runner-t",
    ]);
    let (uid, gid) = scratch_user(root, "roster-runner-t").expect("user in DIR/etc/passwd");
    assert_eq!(
        mode_and_owner(&root.join("etc/roster")),
        (0o750, 0, gid),
        "{out}"
    );
    assert_eq!(
        mode_and_owner(&root.join("var/lib/roster")),
        (0o750, uid, gid)
    );
    assert_eq!(
        mode_and_owner(&root.join("var/lib/roster/logs")),
        (0o750, uid, gid)
    );
    assert_eq!(
        mode_and_owner(&root.join("var/lib/roster/secrets")),
        (0o700, uid, gid)
    );
    let unit_path = root.join("etc/systemd/system/roster.service");
    let unit = std::fs::read_to_string(&unit_path).expect("unit");
    assert!(
        unit.lines().any(|line| line == "User=roster-runner-t"),
        "{unit}"
    );
    if verify_unit(&unit_path).is_none() {
        skip(test, "no systemd-analyze: the unit was not verified");
    }
    assert_eq!(
        ok(&[
            "install",
            "--root",
            root_arg,
            "--user",
            "roster-runner-t",
            "--daemon-user",
            "roster-runner-t",
        ])
        .trim(),
        "nothing to change"
    );
    // Another daemon user must exist already.
    let output = roster(&[
        "install",
        "--root",
        root_arg,
        "--daemon-user",
        "nobody-here-t",
    ]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no such user"), "{stderr}");
}

/// The reboot case: the unit `roster install` wrote, started the way
/// systemd starts it (its ExecStart and Environment, NOTIFY_SOCKET), says
/// READY=1 only once its agents run, and after being SIGKILLed (a crash, a
/// power cut) and started again brings every agent back.
#[test]
fn the_installed_unit_starts_its_agents_and_brings_them_back_after_a_kill() {
    if !crate::util::needs_root("installed_unit", "install into a scratch root") {
        return;
    }
    let scratch = tempfile::tempdir().expect("scratch root");
    let root = scratch.path();
    let config = root.join("mine.toml");
    std::fs::write(
        &config,
        "[defaults]\nuser = \"nobody\"\n\n[agents.one]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"/\"\n\n[agents.two]\ncommand = [\"sleep\", \"3601\"]\ncwd = \"/\"\n",
    )
    .expect("config");
    let root_arg = root.to_str().expect("utf-8");
    ok(&[
        "install",
        "--root",
        root_arg,
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/roster.service")).expect("the unit");
    // What systemd would run, with the scratch root's paths.
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("ExecStart")
        .replace("/etc/roster", &format!("{root_arg}/etc/roster"))
        .replace("/var/lib/roster", &format!("{root_arg}/var/lib/roster"));
    let environment: Vec<(String, String)> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    assert!(
        environment
            .iter()
            .any(|(key, value)| key == "ROSTER_INSTALLED" && value == "1"),
        "{unit}"
    );
    let home = root.join("var/lib/roster");
    let socket_path = root.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let start = || {
        let words: Vec<&str> = exec.split_whitespace().collect();
        let mut command = std::process::Command::new(words[0]);
        command
            .args(&words[1..])
            .env_remove("ROSTER_HOME")
            .env("NOTIFY_SOCKET", &socket_path)
            .current_dir("/")
            .stderr(std::process::Stdio::null());
        for (key, value) in &environment {
            command.env(key, value);
        }
        command.spawn().expect("the daemon")
    };
    let agents = || {
        let mut found: Vec<u32> =
            crate::util::processes_of_home_any_user(&home.display().to_string());
        found.sort_unstable();
        found
    };
    let ready = |what: &str| {
        let mut message = [0u8; 256];
        loop {
            let length = socket.recv(&mut message).unwrap_or_else(|error| {
                panic!("no READY=1 ({what}): {error}");
            });
            if String::from_utf8_lossy(&message[..length]).trim() == "READY=1" {
                break;
            }
        }
    };
    // Whatever happens, nothing this test started outlives it.
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // The daemons (their command line names the home), then agents.
            let daemons = roster_daemon::tools::all_pids().into_iter().filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| String::from_utf8_lossy(&line).contains(&self.0))
            });
            let agents = crate::util::processes_of_home_any_user(&self.0);
            for pid in daemons.chain(agents) {
                kill(pid, Signal::SIGKILL);
            }
        }
    }
    let _cleanup = Cleanup(home.display().to_string());
    let mut daemon = start();
    ready("first start");
    // The daemon's children (not their environment, which reads empty for
    // a moment while the shim execs the agent).
    let first = crate::util::children_of(daemon.id());
    assert_eq!(first.len(), 2, "READY=1 came before both agents ran");
    // Killed like a power cut would: no chance to stop anything.
    daemon.kill().expect("SIGKILL");
    daemon.wait().expect("reaped");
    let mut daemon = start();
    ready("after the kill");
    let as_nobody = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("Uid:").map(str::to_owned))
            .is_some_and(|uid| uid.split_whitespace().all(|id| id == "65534"))
    };
    // (A process still in the exec shim is root for a moment: wait until
    // both have become the agent, as nobody.)
    let second = crate::util::wait_for(
        "both agents back, as nobody",
        std::time::Duration::from_secs(20),
        || {
            let now = agents();
            (now.len() == 2 && now.iter().all(|pid| !first.contains(pid) && as_nobody(pid)))
                .then_some(now)
        },
    );
    assert_eq!(second.len(), 2);
    kill(daemon.id(), Signal::SIGTERM);
    let _ = daemon.wait();
}
