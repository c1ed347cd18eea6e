//! `roster init`: each pattern's files pass `roster check` and run, every
//! agent healthy; existing files are never overwritten without --force;
//! bad flags exit 2; the questions on a real terminal (tmux).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use roster_core::api::{AgentState, Health};

use crate::util::*;

/// `count` consecutive ports nobody listens on right now.
fn free_ports(count: u16) -> u16 {
    wait_for("consecutive free ports", SECS(10), || {
        let base = free_port();
        let end = base.checked_add(count)?;
        (base..end)
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
            .then_some(base)
    })
}

/// A roster whose config dir other users may enter (the agents of a root
/// run are users of their own), and whose agents, whatever their user,
/// are gone when the test ends, passed or not.
struct Project {
    roster: Roster,
}

impl Project {
    fn new() -> Self {
        let roster = Roster::new();
        std::fs::set_permissions(roster.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the config dir");
        Project { roster }
    }

    fn init(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["init"];
        all.extend_from_slice(args);
        self.roster
            .command()
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .expect("run roster init")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.roster.command().arg("down").output();
        let home = self.roster.home_path().display().to_string();
        for pid in processes_of_home_any_user(&home) {
            kill(pid, Signal::SIGKILL);
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `roster init project --yes FLAGS`, then check, up, every agent running
/// and healthy, down: each agent finished its unit of work and said bye.
fn pattern_runs(flags: &[&str], pattern: &str, names: &[&str]) {
    let project = Project::new();
    let roster = &project.roster;
    let port = free_ports(names.len() as u16).to_string();
    let mut args = vec!["project", "--yes", "--ram", "4GiB", "--port", &port];
    args.extend_from_slice(flags);
    let output = project.init(&args);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "init failed: {stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("Recommended: {pattern}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("roster up -f roster.toml") && stdout.contains("roster logs -f"),
        "next steps: {stdout}"
    );
    assert!(!stdout.contains("How many"), "--yes never asks: {stdout}");
    let config = std::fs::read_to_string(roster.path("project/roster.toml")).expect("config");
    assert!(
        config.contains(&format!("for the {pattern} pattern")),
        "{config}"
    );
    let checked = roster.ok(&["check", "-f", "project/roster.toml"]);
    assert!(
        checked.contains(&format!("ok, {} agent", names.len())),
        "{checked}"
    );
    for file in ["project/roster.toml", "project/agents"] {
        let mode = std::fs::metadata(roster.path(file))
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o755,
            if file.ends_with("toml") { 0o644 } else { 0o755 },
            "{file}"
        );
    }

    roster.ok(&["up", "-f", "project/roster.toml"]);
    let status = roster.wait_status("every agent running and healthy", SECS(30), |status| {
        status.agents.len() == names.len()
            && status
                .agents
                .iter()
                .all(|agent| agent.state == AgentState::Running && agent.health == Health::Healthy)
    });
    let mut running: Vec<&str> = status
        .agents
        .iter()
        .map(|agent| agent.name.as_str())
        .collect();
    running.sort_unstable();
    assert_eq!(running, names);
    if nix::unistd::geteuid().is_root() {
        for agent in &status.agents {
            let expected = if pattern == "multi-tenant" {
                format!("tenant-{}", agent.name)
            } else {
                "agent-runner".to_owned()
            };
            assert_eq!(agent.user.as_deref(), Some(expected.as_str()), "{agent:?}");
        }
    }
    for name in names {
        let log = roster.log_path(name);
        wait_for(&format!("{name} to log a unit of work"), SECS(10), || {
            log_lines(&log)
                .iter()
                .any(|line| line.contains(" done") && line.contains(" in 0."))
                .then_some(())
        });
    }

    roster.ok(&["down"]);
    for name in names {
        let lines = log_lines(&roster.log_path(name));
        assert!(
            lines
                .iter()
                .any(|line| line.contains("stopping on SIGTERM") && line.ends_with("bye")),
            "{name} stopped gracefully: {lines:#?}"
        );
    }
    let stops: Vec<String> = roster
        .events(&[])
        .into_iter()
        .filter(|event| event.kind == "stopped")
        .map(|event| event.detail)
        .collect();
    assert_eq!(stops.len(), names.len(), "{stops:?}");
    assert!(
        stops.iter().all(|message| message.contains("exit code 0")),
        "every agent exits 0 on SIGTERM: {stops:?}"
    );
}

#[test]
fn single_agent_runs_healthy() {
    pattern_runs(
        &["--agents", "1", "--customers", "1"],
        "single-agent",
        &["worker"],
    );
}

#[test]
fn multi_agent_runs_healthy() {
    pattern_runs(
        &["--agents", "3", "--customers", "1"],
        "multi-agent",
        &["worker1", "worker2", "worker3"],
    );
}

#[test]
fn multi_tenant_runs_healthy_each_tenant_its_own_user() {
    pattern_runs(
        &["--agents", "2", "--customers", "3"],
        "multi-tenant",
        &[
            "worker1-customer1",
            "worker1-customer2",
            "worker1-customer3",
            "worker2-customer1",
            "worker2-customer2",
            "worker2-customer3",
        ],
    );
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let project = Project::new();
    let roster = &project.roster;
    std::fs::create_dir(roster.path("project")).expect("mkdir");
    let sentinel = b"# mine, hands off\n[agents.mine]\ncommand = [\"sleep\", \"1\"]\n";
    std::fs::write(roster.path("project/roster.toml"), sentinel).expect("sentinel");

    let refused = project.init(&["project", "--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("project/roster.toml") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(
        std::fs::read(roster.path("project/roster.toml")).expect("kept"),
        sentinel
    );
    assert!(!roster.path("project/agents").exists(), "no agents dir");
    assert!(!roster.path("project/work").exists(), "no work dir");

    let forced = project.init(&["project", "--yes", "--force"]);
    assert!(forced.status.success(), "{forced:?}");
    let config = std::fs::read_to_string(roster.path("project/roster.toml")).expect("config");
    assert!(config.contains("written by `roster init`"), "{config}");
    assert!(roster.path("project/agents/worker/agent.py").is_file());
    // A starter agent alone is in the way too.
    std::fs::remove_file(roster.path("project/roster.toml")).expect("rm");
    let refused = project.init(&["project", "--yes"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("agents/worker/agent.py"),
        "{refused:?}"
    );
    assert!(!roster.path("project/roster.toml").exists());
}

/// A link planted below the project (by another user who can write there)
/// is never followed, not even with --force: nothing lands outside.
#[test]
fn links_planted_below_the_project_are_refused() {
    let project = Project::new();
    let roster = &project.roster;
    let elsewhere = tempfile::tempdir().expect("the link's target");
    for planted in ["agents", "work"] {
        let _ = std::fs::remove_dir_all(roster.path("project"));
        std::fs::create_dir(roster.path("project")).expect("mkdir");
        std::os::unix::fs::symlink(elsewhere.path(), roster.path("project").join(planted))
            .expect("plant a link");
        let refused = project.init(&["project", "--yes", "--force", "--customers", "2"]);
        assert_eq!(refused.status.code(), Some(1), "{planted}: {refused:?}");
        let stderr = text(&refused.stderr);
        assert!(
            stderr.contains("symbolic link") && stderr.contains(planted),
            "{planted}: {stderr}"
        );
        assert!(
            !roster.path("project/roster.toml").exists(),
            "{planted}: nothing written"
        );
        assert_eq!(
            std::fs::read_dir(elsewhere.path()).expect("listed").count(),
            0,
            "{planted}: nothing outside"
        );
    }
}

#[test]
fn several_servers_point_to_fleet_mode_and_stdin_not_a_terminal_never_asks() {
    let project = Project::new();
    let output = project.init(&["three", "--servers", "3"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("Recommended: single-agent"), "{stdout}");
    assert!(
        stdout
            .to_lowercase()
            .contains("fleet mode (roster fleet) is the better fit"),
        "{stdout}"
    );
    assert!(stdout.contains("3 servers"), "{stdout}");
    assert!(
        !stdout.contains("How many"),
        "no questions without a terminal: {stdout}"
    );
    let config = std::fs::read_to_string(project.roster.path("three/roster.toml")).expect("config");
    assert!(
        config.contains("Fleet mode (roster fleet) would fit better"),
        "{config}"
    );
    assert!(config.contains("roster fleet --help"), "{config}");

    let one = project.init(&[
        "one",
        "--servers",
        "1",
        "--ram",
        "64GiB",
        "--uptime",
        "99.9",
    ]);
    assert!(
        !text(&one.stdout).to_lowercase().contains("fleet"),
        "{}",
        text(&one.stdout)
    );
    let crowded = project.init(&[
        "crowded",
        "--agents",
        "4",
        "--customers",
        "5",
        "--ram",
        "1GiB",
    ]);
    let stdout = text(&crowded.stdout);
    assert!(stdout.contains("Recommended: multi-tenant"), "{stdout}");
    assert!(
        stdout.contains("20 instances") && stdout.contains("roster fleet"),
        "{stdout}"
    );
    let strict = project.init(&["strict", "--uptime", "99.99"]);
    assert!(text(&strict.stdout).contains("roster fleet"), "{strict:?}");
}

#[test]
fn bad_flags_exit_2_saying_why_and_write_nothing() {
    let project = Project::new();
    for (flag, value, says) in [
        ("--uptime", "150", "at most 100"),
        ("--uptime", "0", "above 0"),
        ("--ram", "lots", "2GiB"),
        ("--agents", "0", "at least 1"),
        ("--customers", "many", "whole number"),
    ] {
        let output = project.init(&["project", "--yes", flag, value]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value) && stderr.contains(says),
            "{flag} {value}: {stderr}"
        );
        assert!(!project.roster.path("project").exists(), "{flag} {value}");
    }
}

#[test]
fn on_a_terminal_it_asks_with_defaults_and_asks_again_after_a_bad_answer() {
    let Some(tmux) = Tmux::new("init_interactive") else {
        return;
    };
    let project = Project::new();
    let dir = project.roster.path("asked");
    let script = format!("{} init {}; echo EXIT=$?; sleep 600", BIN, dir.display());
    tmux.ok(&[
        "new-session",
        "-d",
        "-s",
        "init",
        "-x",
        "160",
        "-y",
        "50",
        "sh",
        "-c",
        &script,
    ]);

    tmux.wait_screen("init", "the first question", |screen| {
        screen.contains("How many kinds of agent? [1]:")
    });
    tmux.type_line("init", "two");
    tmux.wait_screen("init", "the question again", |screen| {
        screen.contains("\"two\" is not a whole number; try again")
            && screen.matches("How many kinds of agent? [1]:").count() == 2
    });
    tmux.type_line("init", "2");
    tmux.wait_screen("init", "the kinds' names", |screen| {
        screen.contains("Their names, comma-separated? [worker1,worker2]:")
    });
    tmux.type_line("init", "triage, billing");
    tmux.wait_screen("init", "customers", |screen| {
        screen.contains("How many customers, each with its own instance? [1]:")
    });
    tmux.type_line("init", "");
    tmux.wait_screen("init", "servers", |screen| {
        screen.contains("How many servers? [1]:")
    });
    tmux.type_line("init", "");
    tmux.wait_screen("init", "requests", |screen| {
        screen.contains("How many requests a day? [1000]:")
    });
    tmux.type_line("init", "5000");
    tmux.wait_screen("init", "uptime", |screen| {
        screen.contains("Uptime target, in percent? [99.9]:")
    });
    tmux.type_line("init", "150");
    tmux.wait_screen("init", "the uptime again", |screen| {
        screen.contains("at most 100") && screen.matches("Uptime target").count() == 2
    });
    tmux.type_line("init", "99.5");
    let screen = tmux.wait_screen("init", "memory, from /proc/meminfo", |screen| {
        screen.contains("The server's memory? [")
    });
    assert!(
        screen.contains("iB]:"),
        "the default is the host's memory: {screen}"
    );
    tmux.type_line("init", "lots");
    tmux.wait_screen("init", "the memory again", |screen| {
        screen.matches("The server's memory? [").count() == 2
    });
    tmux.type_line("init", "2GiB");
    let screen = tmux.wait_screen("init", "the end", |screen| screen.contains("EXIT="));
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(screen.contains("Recommended: multi-agent"), "{screen}");
    let config = std::fs::read_to_string(dir.join("roster.toml")).expect("written");
    assert!(
        config.contains("2 kinds of agent, 1 customer, 1 server, 5000 requests a day"),
        "{config}"
    );
    assert!(config.contains("99.5% uptime, 2GiB of memory"), "{config}");
    assert!(Path::new(&dir.join("agents/billing/agent.py")).is_file());
    assert!(config.contains("[agents.triage]"), "{config}");
    project.roster.ok(&["check", "-f", "asked/roster.toml"]);
}

/// A disk that fills up half way writes nothing: every file is staged
/// before any is put in place, and what this run made is removed.
#[test]
fn a_full_disk_writes_nothing() {
    if !needs_root("init_full_disk", "mount a small tmpfs") {
        return;
    }
    let disk = Tmpfs::mount("64k");
    // Leave room for a file or two, not for the whole project.
    let filler = disk.path().join("filler");
    let room = 12 * 1024;
    let free = nix::sys::statvfs::statvfs(disk.path())
        .map(|stats| stats.blocks_available() * stats.fragment_size())
        .expect("statvfs");
    std::fs::write(&filler, vec![0u8; (free - room) as usize]).expect("fill the disk");
    let project = disk.path().join("project");
    std::fs::create_dir(&project).expect("the project dir");
    let output = std::process::Command::new(BIN)
        .args(["init", "--yes", "--agents", "3", "--customers", "2"])
        .arg(&project)
        .stdin(Stdio::null())
        .output()
        .expect("roster init");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("No space left") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&project)
        .expect("listed")
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    // With room again, the same command writes the whole project.
    std::fs::remove_file(&filler).expect("free the disk");
    let output = std::process::Command::new(BIN)
        .args(["init", "--yes", "--agents", "3", "--customers", "2"])
        .arg(&project)
        .stdin(Stdio::null())
        .output()
        .expect("roster init");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(project.join("roster.toml").is_file());
}

/// `--kinds` names the kinds: the agents, their folders and the starter
/// agents carry the names; a count that disagrees, or a name roster cannot
/// take, exits 2 and writes nothing.
#[test]
fn kinds_are_named_from_the_command_line() {
    let project = Project::new();
    let output = project.init(&[
        "named",
        "--yes",
        "--kinds",
        "support,billing",
        "--customers",
        "2",
    ]);
    assert!(output.status.success(), "{output:?}");
    let config =
        std::fs::read_to_string(project.roster.path("named/roster.toml")).expect("written");
    for agent in [
        "support-customer1",
        "support-customer2",
        "billing-customer1",
        "billing-customer2",
    ] {
        assert!(
            config.contains(&format!("[agents.{agent}]")),
            "{agent}: {config}"
        );
    }
    assert!(project
        .roster
        .path("named/agents/support/agent.py")
        .is_file());
    project.roster.ok(&["check", "-f", "named/roster.toml"]);
    for (args, says) in [
        (
            &["--kinds", "a,b", "--agents", "3"][..],
            "--agents 3 but --kinds names 2",
        ),
        (&["--kinds", "../etc"][..], "cannot name a kind"),
        (&["--kinds", "a,a"][..], "named twice"),
    ] {
        let mut all = vec!["refused", "--yes"];
        all.extend_from_slice(args);
        let output = project.init(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(text(&output.stderr).contains(says), "{args:?}: {output:?}");
        assert!(!project.roster.path("refused").exists(), "{args:?}");
    }
}

/// Issue #14, item 17: a port another project's agent holds is skipped
/// (8100 by default, or an explicit --port, which is warned about), the
/// config says so, and the agents come up healthy on the ports they got.
#[test]
fn a_taken_port_is_skipped_and_the_agents_come_up_healthy() {
    let project = Project::new();
    let roster = &project.roster;
    // Whoever holds 8100 (this test, or something else on the machine),
    // init must not hand it out.
    let _held = std::net::TcpListener::bind(("127.0.0.1", 8100)).ok();
    let output = project.init(&["project", "--yes", "--agents", "2"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("Ports: 8100 is in use on 127.0.0.1"),
        "{stdout}"
    );
    let config = std::fs::read_to_string(roster.path("project/roster.toml")).expect("config");
    assert!(!config.contains("PORT = \"8100\""), "{config}");
    assert!(
        config.contains("# Ports: 8100 was in use when roster init ran"),
        "{config}"
    );
    roster.ok(&["up", "-f", "project/roster.toml"]);
    roster.wait_status("both agents running and healthy", SECS(30), |status| {
        status.agents.len() == 2
            && status
                .agents
                .iter()
                .all(|agent| agent.state == AgentState::Running && agent.health == Health::Healthy)
    });
    roster.ok(&["down"]);

    // An explicit --port that is taken: a warning, and the next free one.
    let base = free_ports(3);
    let _taken = std::net::TcpListener::bind(("127.0.0.1", base)).expect("hold the port");
    let base_text = base.to_string();
    let output = project.init(&["explicit", "--yes", "--port", &base_text]);
    assert!(output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: port {base} is in use on 127.0.0.1: the agents get {} instead",
            base + 1
        )),
        "{stderr}"
    );
    let config = std::fs::read_to_string(roster.path("explicit/roster.toml")).expect("config");
    assert!(
        config.contains(&format!("PORT = \"{}\"", base + 1)),
        "{config}"
    );
}

/// Issue #14, item 17: memory thresholds fit an agent, not the machine,
/// and the config says where they come from.
#[test]
fn memory_thresholds_fit_an_agent_not_the_machine() {
    let project = Project::new();
    let output = project.init(&["big", "--yes", "--ram", "24GiB", "--port", "20100"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("it alerts above 512MiB and restarts above 1GiB, a default that fits one agent, not the server's 24GiB"),
        "{stdout}"
    );
    let config = std::fs::read_to_string(project.roster.path("big/roster.toml")).expect("config");
    assert!(config.contains("above = 536_870_912 "), "{config}");
    assert!(config.contains("above = 1_073_741_824 "), "{config}");
    assert!(
        config.contains(
            "# Memory: alert above 512MiB, restart (drained, at most 3 in 15m) above 1GiB:"
        ),
        "{config}"
    );
}
