//! `roster fleet logs`, `fleet secret` and `fleet status --watch` with
//! alerts, end to end (issue #16): the built binary in the client
//! namespace, over the system's ssh, to hosts running roster daemons.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::fleet_hosts::*;
use crate::util::*;

/// Prints `hello from HOST`, then whatever appears in /var/lib/roster/say
/// (the host's own); its first line carries TOKEN's value.
const TALKER: &str = "[\"sh\", \"-c\", \"echo hello from $(hostname) token=$TOKEN; \
     while :; do if [ -e /var/lib/roster/say ]; then cat /var/lib/roster/say; \
     rm -f /var/lib/roster/say; fi; sleep 0.1; done\"]";

/// An agent whose health check always fails, so `AgentUnhealthy` fires.
const SICK: &str = "[\"sleep\", \"3690\"]";
const SICK_HEALTH: &str = "exec = [\"false\"]\ninterval = \"200ms\"\nretries = 1\n\
     start_period = \"0s\"\non_failure = \"alert\"\n";

fn agent(name: &str, command: &str, health: Option<&str>) -> String {
    let mut text = format!("[agents.{name}]\ncommand = {command}\nallow_root = true\n\n");
    if let Some(health) = health {
        text.push_str(&format!("[agents.{name}.health]\n{health}\n"));
    }
    text
}

fn tenant(name: &str, agents: &[&str], host: &str) -> String {
    let agents: Vec<String> = agents.iter().map(|agent| format!("{agent:?}")).collect();
    format!(
        "[tenants.{name}]\nagents = [{}]\nhost = \"{host}\"\n\n",
        agents.join(", ")
    )
}

/// The client roster as a child with piped stdout (and stdin when asked).
fn spawn_client(fleet: &FleetHosts, runtime: &Path, args: &[&str], stdin: Stdio) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &fleet.client, BIN])
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .current_dir(fleet.dir.path())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the client roster")
}

/// Its stdout, line by line, on a channel.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn wait_line(lines: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) {
    wait_for(what, Duration::from_secs(15), || {
        while let Ok(line) = lines.try_recv() {
            seen.push(line);
        }
        seen.iter().any(|line| line.contains(what)).then_some(())
    });
}

/// Processes whose command line contains all of `words`.
fn processes_with(words: &[&str]) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if words.iter().all(|word| text.contains(word)) {
            found.push((pid, text));
        }
    }
    found
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn fleet_logs_follow_status_alerts_and_watch() {
    let test = "fleet_logs_follow_status_alerts_and_watch";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let configs = [
        agent("\"o01.talk\"", TALKER, None) + &agent("\"o02.sick\"", SICK, Some(SICK_HEALTH)),
        agent("\"o03.talk\"", TALKER, None),
    ];
    let fleet = FleetHosts::with_roster(&configs);
    let file = fleet.fleet_head("5s")
        + &agent("talk", TALKER, None)
        + &agent("sick", SICK, Some(SICK_HEALTH))
        + &tenant("o01", &["talk"], "h1")
        + &tenant("o02", &["sick"], "h1")
        + &tenant("o03", &["talk"], "h2");
    std::fs::write(fleet.dir.path().join("fleet.toml"), file).expect("fleet.toml");
    let runtime = tempfile::tempdir().expect("runtime dir");
    let roster = |args: &[&str]| fleet.client_roster(runtime.path(), args);

    // Each instance's lines come from its own host.
    for (instance, host) in [("o01.talk", "h1"), ("o03.talk", "h2")] {
        let output = wait_for(&format!("{instance}'s first line"), SECS(20), || {
            let output = roster(&["fleet", "logs", instance, "-f", "fleet.toml"]);
            text(&output.stdout)
                .contains("hello from")
                .then_some(output)
        });
        assert!(output.status.success(), "{}", text(&output.stderr));
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains(&format!("hello from {host} token=")),
            "{stdout}"
        );
    }
    let unknown = roster(&["fleet", "logs", "o01.tlak", "-f", "fleet.toml"]);
    assert!(!unknown.status.success());
    let stderr = text(&unknown.stderr);
    assert!(
        stderr.contains("no instance named \"o01.tlak\"") && stderr.contains("o01.talk"),
        "{stderr}"
    );

    // --follow: a line printed after it started shows; killing the client
    // leaves no `roster logs` on the host.
    let mut follower = spawn_client(
        &fleet,
        runtime.path(),
        &["fleet", "logs", "o01.talk", "--follow", "-n", "5"],
        Stdio::null(),
    );
    let lines = lines_of(&mut follower);
    let mut seen = Vec::new();
    wait_line(&lines, "hello from h1", &mut seen);
    let remote = ["/var/lib/roster", "logs", "o01.talk", "-f"];
    wait_for("the host's roster logs -f", SECS(10), || {
        (!processes_with(&remote).is_empty()).then_some(())
    });
    std::fs::write(
        fleet.hosts[0].roster_home().join("say"),
        "said after following began\n",
    )
    .expect("say");
    wait_line(&lines, "said after following began", &mut seen);
    kill(follower.id(), Signal::SIGKILL);
    let _ = follower.wait();
    wait_for("no roster logs -f left on the host", SECS(10), || {
        processes_with(&remote).is_empty().then_some(())
    });

    // The failing health check's alert shows in the table and the JSON.
    let alerting = wait_for("o02.sick's alert in fleet status", SECS(20), || {
        let output = roster(&["fleet", "status", "-f", "fleet.toml", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        let instances = json["instances"].as_array()?.clone();
        let sick = instances.iter().find(|row| row["name"] == "o02.sick")?;
        (sick["alerts"]
            .as_array()?
            .iter()
            .any(|alert| alert["name"] == "AgentUnhealthy"))
        .then_some(instances)
    });
    for row in &alerting {
        if row["name"] != "o02.sick" {
            assert_eq!(row["alerts"], serde_json::json!([]), "{row:#}");
        }
    }
    let table = roster(&["fleet", "status", "-f", "fleet.toml"]);
    let table = text(&table.stdout);
    assert!(
        table.lines().next().unwrap_or("").contains("ALERTS"),
        "{table}"
    );
    let sick_line = table
        .lines()
        .find(|line| line.contains("o02.sick"))
        .unwrap_or_else(|| panic!("no o02.sick in {table}"));
    assert!(sick_line.contains("AgentUnhealthy"), "{table}");

    // --watch without a terminal: a table per interval until SIGINT.
    let mut watcher = spawn_client(
        &fleet,
        runtime.path(),
        &["fleet", "status", "--watch", "--interval", "300ms"],
        Stdio::null(),
    );
    let lines = lines_of(&mut watcher);
    let mut headers = 0;
    wait_for("two tables from --watch", SECS(20), || {
        while let Ok(line) = lines.try_recv() {
            if line.starts_with("HOST") {
                headers += 1;
            }
        }
        (headers >= 2).then_some(())
    });
    kill(watcher.id(), Signal::SIGINT);
    wait_for("--watch to stop on SIGINT", SECS(5), || {
        watcher.try_wait().ok().flatten()
    });
}

#[test]
fn fleet_secret_set_list_rm_reach_only_the_tenants_hosts() {
    let test = "fleet_secret_set_list_rm_reach_only_the_tenants_hosts";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let configs = [
        agent("\"s01.talk\"", TALKER, None) + &agent("\"s01.echo\"", TALKER, None),
        agent("\"s02.talk\"", TALKER, None),
        agent("\"s03.talk\"", TALKER, None),
    ];
    let fleet = FleetHosts::with_roster(&configs);
    let file = fleet.fleet_head("5s")
        + &agent("talk", TALKER, None)
        + &agent("echo", TALKER, None)
        + &tenant("s01", &["talk", "echo"], "h1")
        + &tenant("s02", &["talk"], "h2")
        + &tenant("s03", &["talk"], "h3");
    std::fs::write(fleet.dir.path().join("fleet.toml"), file).expect("fleet.toml");
    let runtime = tempfile::tempdir().expect("runtime dir");
    let roster = |args: &[&str]| fleet.client_roster(runtime.path(), args);
    let host_roster = |index: usize, args: &[&str]| {
        let home = fleet.hosts[index].roster_home().display().to_string();
        Command::new(BIN)
            .args(["--home", &home])
            .args(args)
            .output()
            .expect("run roster for a host")
    };

    // The value only on stdin: watched for in every process's argv while
    // the command runs.
    let value = "v4lue-0f-s01-never-in-argv";
    let mut setter = spawn_client(
        &fleet,
        runtime.path(),
        &["fleet", "secret", "set", "s01", "TOKEN", "-f", "fleet.toml"],
        Stdio::piped(),
    );
    let mut stdin = setter.stdin.take().expect("piped stdin");
    stdin.write_all(value.as_bytes()).expect("write the value");
    drop(stdin);
    let mut in_argv = Vec::new();
    let status = loop {
        in_argv.extend(processes_with(&[value]));
        if let Some(status) = setter.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let output = setter.wait_with_output().expect("output");
    let stdout = text(&output.stdout);
    assert!(status.success(), "{stdout}{}", text(&output.stderr));
    assert!(in_argv.is_empty(), "the value is in argv: {in_argv:?}");
    assert!(!stdout.contains(value) && !text(&output.stderr).contains(value));
    for instance in ["s01.talk", "s01.echo"] {
        assert!(
            stdout.contains(&format!(
                "h1: {instance}: secret TOKEN set; it takes effect at the agent's next start \
                 (`roster restart {instance}` on h1)"
            )),
            "{stdout}"
        );
    }
    assert!(!stdout.contains("h2") && !stdout.contains("h3"), "{stdout}");
    // Only h1 has it.
    let keys = |index: usize, agent: &str| {
        let output = host_roster(index, &["secret", "list", agent, "--json"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        json["keys"].clone()
    };
    assert_eq!(keys(0, "s01.talk"), serde_json::json!(["TOKEN"]));
    assert_eq!(keys(0, "s01.echo"), serde_json::json!(["TOKEN"]));
    assert_eq!(keys(1, "s02.talk"), serde_json::json!([]));
    assert_eq!(keys(2, "s03.talk"), serde_json::json!([]));

    // After the restart the output names, the agent has it.
    let restart = host_roster(0, &["restart", "s01.talk"]);
    assert!(restart.status.success(), "{}", text(&restart.stderr));
    wait_for("s01.talk started with TOKEN", SECS(20), || {
        let output = roster(&["fleet", "logs", "s01.talk", "-f", "fleet.toml"]);
        text(&output.stdout)
            .contains(&format!("hello from h1 token={value}"))
            .then_some(())
    });

    // list: per host and instance, names only.
    let list = roster(&["fleet", "secret", "list", "s01", "-f", "fleet.toml"]);
    let listed = text(&list.stdout);
    assert!(list.status.success(), "{listed}{}", text(&list.stderr));
    assert!(!listed.contains(value), "{listed}");
    for instance in ["s01.talk", "s01.echo"] {
        let line = listed
            .lines()
            .find(|line| line.contains(instance))
            .unwrap_or_else(|| panic!("no {instance} in {listed}"));
        assert!(
            line.starts_with("h1") && line.trim_end().ends_with("TOKEN"),
            "{listed}"
        );
    }

    // rm: gone everywhere it was; a second rm finds nothing to remove.
    let removed = roster(&["fleet", "secret", "rm", "s01", "TOKEN", "-f", "fleet.toml"]);
    assert!(removed.status.success(), "{}", text(&removed.stdout));
    assert_eq!(keys(0, "s01.talk"), serde_json::json!([]));
    assert_eq!(keys(0, "s01.echo"), serde_json::json!([]));
    let again = roster(&["fleet", "secret", "rm", "s01", "TOKEN", "-f", "fleet.toml"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stdout).contains("h1: s01.talk: no secret TOKEN"),
        "{}",
        text(&again.stdout)
    );

    // An unknown tenant: named, with the tenants there are.
    let unknown = roster(&["fleet", "secret", "list", "s09", "-f", "fleet.toml"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no tenant named \"s09\""),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn fleet_diagnose_brings_back_every_hosts_bundle_and_names_the_unreachable() {
    let test = "fleet_diagnose_brings_back_every_hosts_bundle_and_names_the_unreachable";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    const CRASH: &str = "[\"sh\", \"-c\", \"echo dying; exit 3\"]";
    let configs = [
        agent("\"q01.crash\"", CRASH, None),
        agent("\"q02.talk\"", TALKER, None),
    ];
    let mut fleet = FleetHosts::with_roster(&configs);
    let file = fleet.fleet_head("3s")
        + &agent("crash", CRASH, None)
        + &agent("talk", TALKER, None)
        + &tenant("q01", &["crash"], "h1")
        + &tenant("q02", &["talk"], "h2");
    std::fs::write(fleet.dir.path().join("fleet.toml"), file).expect("fleet.toml");
    let runtime = tempfile::tempdir().expect("runtime dir");
    let out = fleet.dir.path().join("bundles");
    let out_arg = out.display().to_string();
    let args = [
        "fleet",
        "diagnose",
        "-f",
        "fleet.toml",
        "--out",
        &out_arg,
        "--json",
    ];
    // h1's agent fails for good within a few seconds: wait until its
    // diagnose says so.
    let json = wait_for("h1's crash loop diagnosed", Duration::from_secs(30), || {
        let output = fleet.client_roster(runtime.path(), &args);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        let h1 = json["hosts"]
            .as_array()?
            .iter()
            .find(|h| h["name"] == "h1")?;
        h1["modes"]
            .as_array()?
            .iter()
            .any(|mode| mode == "crash_loop")
            .then_some((output.status.code(), json))
    });
    let (code, json) = json;
    assert_eq!(code, Some(1), "a host with findings: {json:#}");
    for host in &fleet.hosts {
        let row = json["hosts"]
            .as_array()
            .and_then(|hosts| hosts.iter().find(|row| row["name"] == host.name.as_str()))
            .unwrap_or_else(|| panic!("no {} in {json:#}", host.name));
        assert_eq!(row["reachable"], true, "{row}");
        // The bundle is the host's own: a tar.gz with its manifest and
        // its daemon's status.
        let bundle = out.join(format!("{}.tar.gz", host.name));
        let reader = flate2::read::GzDecoder::new(std::fs::File::open(&bundle).expect("bundle"));
        let mut archive = tar::Archive::new(reader);
        let mut names = Vec::new();
        let mut status = String::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            if name.ends_with("status.json") {
                std::io::Read::read_to_string(&mut entry, &mut status).expect("read");
            }
            names.push(name);
        }
        assert!(
            names.iter().any(|name| name.ends_with("manifest.json")),
            "{names:?}"
        );
        let expected = format!(
            "q0{}",
            if host.name == "h1" {
                "1.crash"
            } else {
                "2.talk"
            }
        );
        assert!(status.contains(&expected), "{}: {status}", host.name);
        assert!(out.join(format!("{}.json", host.name)).is_file());
    }
    let h2 = json["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|row| row["name"] == "h2"))
        .expect("h2");
    // Nothing wrong on h2 but what the shared test machine itself shows
    // (other builds' load, other tests' OOM kills).
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("h2.json")).expect("h2.json"))
            .expect("h2's diagnose JSON");
    let own: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|found| !ambient(found))
        .collect();
    assert!(own.is_empty(), "{report:#}");
    assert_eq!(
        h2["diagnose_exit"],
        ambient_code(&report["findings"]),
        "{h2}"
    );

    // A host whose sshd is stopped: listed with the reason, the others
    // still collected.
    // (A new runtime dir: no master left open to it.)
    fleet.stop_sshd(1);
    std::fs::remove_dir_all(&out).expect("clear the bundles");
    let cold = tempfile::tempdir().expect("runtime dir");
    let output = fleet.client_roster(cold.path(), &args);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(output.status.code(), Some(1));
    let h2 = json["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|row| row["name"] == "h2"))
        .expect("h2");
    assert_eq!(h2["reachable"], false, "{h2}");
    assert!(h2["error"].as_str().is_some_and(|e| !e.is_empty()), "{h2}");
    assert!(out.join("h1.tar.gz").is_file());
    assert!(!out.join("h2.tar.gz").exists());
    assert!(out.join("hosts.json").is_file());
}
