//! `roster fleet plan` and `roster fleet apply` end to end (issue #16):
//! the built binary in the client namespace, over the system's ssh, to
//! bare hosts made by `fleet_hosts` (an empty /usr/local/bin and
//! /var/lib/roster): apply uploads roster, starts its daemon, writes
//! /etc/roster/roster.toml and applies it; each host's own roster is then
//! asked what it runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::fleet_hosts::*;
use crate::util::*;

/// An agent that notes when it starts and when it is told to stop, in
/// its host's /var/lib/roster/INSTANCE.times, so a test can tell the
/// order of a move's two ends.
const TEMPLATE: &str = r#"[agents.support]
command = ["sh", "-c", "echo start $(date +%s%N) >> /var/lib/roster/{instance}.times; trap 'echo stop $(date +%s%N) >> /var/lib/roster/{instance}.times; exit 0' TERM; while :; do sleep 0.2; done"]
allow_root = true

"#;

/// The fleet file: the fixture's hosts, the template, and `tenants` as
/// (name, pinned host, env value).
fn fleet_file(
    fleet: &FleetHosts,
    connect_timeout: &str,
    tenants: &[(&str, Option<&str>, &str)],
) -> String {
    let mut text = fleet.fleet_head(connect_timeout);
    text.push_str(TEMPLATE);
    for (name, pin, value) in tenants {
        text.push_str(&format!(
            "[tenants.{name}]\nagents = [\"support\"]\nenv = {{ CUSTOMER = \"{value}\" }}\n"
        ));
        if let Some(host) = pin {
            text.push_str(&format!("host = \"{host}\"\n"));
        }
        text.push('\n');
    }
    text
}

fn write_fleet(fleet: &FleetHosts, text: &str) {
    std::fs::write(fleet.dir.path().join("fleet.toml"), text).expect("fleet.toml");
}

fn client(fleet: &FleetHosts, runtime: &Path, args: &[&str]) -> (Output, String) {
    let output = fleet.client_roster(runtime, args);
    let text = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

fn json_of(output: &Output, shown: &str) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {shown}"))
}

/// What a host's own roster says it runs: agent name -> (state, pid).
fn host_agents(host: &FleetHost) -> BTreeMap<String, (String, Option<u64>)> {
    let output = Command::new(BIN)
        .args([
            "--home",
            &host.roster_home().display().to_string(),
            "status",
            "--json",
        ])
        .output()
        .expect("roster status");
    assert!(
        output.status.success(),
        "{}: {}",
        host.name,
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    json["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|agent| {
            (
                agent["name"].as_str().unwrap_or_default().to_owned(),
                (
                    agent["state"].as_str().unwrap_or_default().to_owned(),
                    agent["pid"].as_u64(),
                ),
            )
        })
        .collect()
}

/// Waits until `host`'s own roster says `name` runs.
fn wait_running(host: &FleetHost, name: &str) {
    wait_for(
        &format!("{name} running on {}", host.name),
        Duration::from_secs(20),
        || {
            let agents = host_agents(host);
            (agents.get(name).map(|(state, _)| state.as_str()) == Some("running")).then_some(())
        },
    );
}

fn host_row<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|host| host["name"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {json:#}"))
}

/// The changes of a plan as "kind instance host [from]".
fn changes(json: &serde_json::Value) -> Vec<String> {
    json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|change| {
            let mut line = format!(
                "{} {} {}",
                change["kind"].as_str().unwrap_or_default(),
                change["instance"].as_str().unwrap_or_default(),
                change["host"].as_str().unwrap_or_default()
            );
            if let Some(from) = change.get("from") {
                line.push_str(&format!(" from {}", from.as_str().unwrap_or_default()));
            }
            line
        })
        .collect()
}

#[test]
fn fleet_apply_converges_bare_hosts_then_changes_nothing() {
    let test = "fleet_apply_converges_bare_hosts_then_changes_nothing";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = FleetHosts::new(3);
    let runtime = tempfile::tempdir().expect("runtime dir");
    let tenants: Vec<(String, Option<&str>, &str)> =
        (1..=6).map(|n| (format!("c{n:02}"), None, "x")).collect();
    let tenants: Vec<(&str, Option<&str>, &str)> = tenants
        .iter()
        .map(|(name, pin, value)| (name.as_str(), *pin, *value))
        .collect();
    // roster installed elsewhere than /usr/local/bin/roster, and hosts
    // sized by memory: 1GiB at 512MiB an instance holds two, so the six
    // instances fill the three hosts exactly.
    let good = fleet_file(&fleet, "5s", &tenants)
        .replace(
            "ports = \"8100-8199\"\n",
            "ports = \"8100-8199\"\nbinary = \"/usr/local/bin/roster-fleet\"\ninstance_memory = \"512MiB\"\n",
        )
        .replace("capacity = 10", "memory = \"1GiB\"");

    // A bad fleet file: located, and no host touched.
    write_fleet(
        &fleet,
        &good.replace("allow_root = true", "allow_root = true\nbogus = 1"),
    );
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "apply", "-f", "fleet.toml"],
    );
    assert!(!output.status.success(), "{shown}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = good
        .lines()
        .position(|line| line == "allow_root = true")
        .expect("line")
        + 2;
    assert!(stderr.contains(&format!("fleet.toml:{line}:1")), "{shown}");
    for host in &fleet.hosts {
        assert!(
            !host.dir.join("bin/roster-fleet").exists(),
            "{}: {shown}",
            host.name
        );
        assert!(
            !host.dir.join("etc/roster/roster.toml").exists(),
            "{}",
            host.name
        );
    }

    // The plan of bare hosts: every instance is added, exit 2.
    write_fleet(&fleet, &good);
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "plan", "-f", "fleet.toml", "--json"],
    );
    assert_eq!(output.status.code(), Some(2), "{shown}");
    let plan = json_of(&output, &shown);
    let instances = plan["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 6, "{shown}");
    let placed: BTreeMap<String, String> = instances
        .iter()
        .map(|row| {
            assert_eq!(row["agent"], "support");
            assert!(
                row["port"]
                    .as_u64()
                    .is_some_and(|port| (8100..=8199).contains(&port)),
                "{row}"
            );
            (
                row["name"].as_str().unwrap_or_default().to_owned(),
                row["host"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let adds: Vec<String> = placed
        .iter()
        .map(|(name, host)| format!("add {name} {host}"))
        .collect();
    assert_eq!(changes(&plan), adds, "{shown}");
    for host in &fleet.hosts {
        assert_eq!(host_row(&plan, &host.name)["reachable"], true);
    }

    // Apply from scratch: every host uploaded, started, wrote, applied.
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "apply", "-f", "fleet.toml", "--json"],
    );
    assert!(output.status.success(), "{shown}");
    let applied = json_of(&output, &shown);
    for host in &fleet.hosts {
        let row = host_row(&applied, &host.name);
        for step in ["uploaded", "started", "wrote", "applied"] {
            assert_eq!(row[step], true, "{step} on {}: {shown}", host.name);
        }
        assert_eq!(row["error"], serde_json::Value::Null);
        assert!(
            row["seconds"].as_f64().is_some_and(|seconds| seconds > 0.0),
            "how long {} took: {row}",
            host.name
        );
        assert!(host.dir.join("bin/roster-fleet").is_file(), "{}", host.name);
        assert!(!host.dir.join("bin/roster").exists(), "{}", host.name);
    }
    let mut pids = BTreeMap::new();
    for host in &fleet.hosts {
        let agents = wait_for(
            &format!("{}'s instances running", host.name),
            Duration::from_secs(20),
            || {
                let agents = host_agents(host);
                agents
                    .values()
                    .all(|(state, _)| state == "running")
                    .then_some(agents)
            },
        );
        let expected: Vec<&String> = placed
            .iter()
            .filter(|(_, on)| **on == host.name)
            .map(|(name, _)| name)
            .collect();
        assert_eq!(agents.keys().collect::<Vec<_>>(), expected, "{}", host.name);
        assert_eq!(
            expected.len(),
            2,
            "{}'s memory holds two: {placed:?}",
            host.name
        );
        pids.extend(agents);
    }
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "status", "-f", "fleet.toml"],
    );
    assert!(output.status.success(), "{shown}");

    // Again: nothing to change, no process touched; the plan agrees.
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "apply", "-f", "fleet.toml"],
    );
    assert!(output.status.success(), "{shown}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "nothing to change\n",
        "{shown}"
    );
    let mut after = BTreeMap::new();
    for host in &fleet.hosts {
        after.extend(host_agents(host));
    }
    assert_eq!(after, pids, "no agent restarted");
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "plan", "-f", "fleet.toml"],
    );
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "nothing to change\n",
        "{shown}"
    );
}

#[test]
fn fleet_plan_shows_every_kind_and_a_move_starts_before_it_stops() {
    let test = "fleet_plan_shows_every_kind_and_a_move_starts_before_it_stops";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = FleetHosts::new(2);
    let runtime = tempfile::tempdir().expect("runtime dir");
    write_fleet(
        &fleet,
        &fleet_file(
            &fleet,
            "5s",
            &[
                ("a", Some("h1"), "x"),
                ("b", Some("h1"), "x"),
                ("c", Some("h2"), "x"),
            ],
        ),
    );
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "apply", "-f", "fleet.toml"],
    );
    assert!(output.status.success(), "{shown}");

    // Add d, change a's env, pin b elsewhere, remove c.
    write_fleet(
        &fleet,
        &fleet_file(
            &fleet,
            "5s",
            &[
                ("a", Some("h1"), "y"),
                ("b", Some("h2"), "x"),
                ("d", Some("h2"), "x"),
            ],
        ),
    );
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "plan", "-f", "fleet.toml", "--json"],
    );
    assert_eq!(output.status.code(), Some(2), "{shown}");
    assert_eq!(
        changes(&json_of(&output, &shown)),
        [
            "change a.support h1",
            "move b.support h2 from h1",
            "remove c.support h2",
            "add d.support h2",
        ],
        "{shown}"
    );
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "plan", "-f", "fleet.toml"],
    );
    assert_eq!(output.status.code(), Some(2), "{shown}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.starts_with("CHANGE"), "{shown}");
    assert!(
        table.lines().any(|line| line.starts_with("move")
            && line.contains("b.support")
            && line.ends_with("h1")),
        "{shown}"
    );

    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "apply", "-f", "fleet.toml"],
    );
    assert!(output.status.success(), "{shown}");
    let (h1, h2) = (&fleet.hosts[0], &fleet.hosts[1]);
    let on_h1 = wait_for("h1 without b", Duration::from_secs(20), || {
        let agents = host_agents(h1);
        (!agents.contains_key("b.support")).then_some(agents)
    });
    assert_eq!(on_h1.keys().collect::<Vec<_>>(), ["a.support"]);
    let on_h2 = host_agents(h2);
    assert_eq!(on_h2.keys().collect::<Vec<_>>(), ["b.support", "d.support"]);
    assert!(
        on_h2.values().all(|(state, _)| state == "running"),
        "{on_h2:?}"
    );

    // b started on h2 before it was told to stop on h1.
    let times = |host: &FleetHost, word: &str| -> Vec<u128> {
        std::fs::read_to_string(host.roster_home().join("b.support.times"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.strip_prefix(word)?.trim().parse().ok())
            .collect()
    };
    let started_h2 = times(h2, "start ");
    let stopped_h1 = times(h1, "stop ");
    let events = |host: &FleetHost| {
        let output = Command::new(BIN)
            .args([
                "--home",
                &host.roster_home().display().to_string(),
                "events",
            ])
            .output()
            .expect("events");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // The first start on h2 (a restart may add more) against the last
    // stop on h1 (the one the move asked for).
    let (Some(first_start), Some(last_stop)) = (started_h2.first(), stopped_h1.last()) else {
        panic!(
            "b.support started on h2 at {started_h2:?}, stopped on h1 at {stopped_h1:?}\nh2:\n{}\nh1:\n{}",
            events(h2),
            events(h1)
        );
    };
    assert!(
        first_start < last_stop,
        "started on h2 at {started_h2:?}, stopped on h1 at {stopped_h1:?}"
    );
}

#[test]
fn fleet_apply_goes_on_past_a_black_holed_host_and_converges_it_later() {
    let test = "fleet_apply_goes_on_past_a_black_holed_host_and_converges_it_later";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = FleetHosts::new(3);
    let runtime = tempfile::tempdir().expect("runtime dir");
    let hosts: Vec<String> = fleet.hosts.iter().map(|host| host.name.clone()).collect();
    let tenants: Vec<(&str, Option<&str>, &str)> = vec![
        ("a", Some(hosts[0].as_str()), "x"),
        ("b", Some(hosts[1].as_str()), "x"),
        ("c", Some(hosts[2].as_str()), "x"),
    ];
    write_fleet(&fleet, &fleet_file(&fleet, "2s", &tenants));
    fleet.black_hole(2);
    let started = Instant::now();
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "apply", "-f", "fleet.toml", "--json"],
    );
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{shown}");
    let json = json_of(&output, &shown);
    let dark = host_row(&json, "h3");
    assert_eq!(dark["reachable"], false, "{shown}");
    assert!(
        dark["error"]
            .as_str()
            .is_some_and(|error| error.contains("timed out")),
        "{shown}"
    );
    for (host, tenant) in fleet.hosts.iter().zip(["a", "b"]) {
        assert_eq!(host_row(&json, &host.name)["applied"], true, "{shown}");
        wait_running(host, &format!("{tenant}.support"));
    }
    // The dark host costs its connect timeout, not more: the rest is the
    // other hosts' uploads and applies.
    eprintln!("apply with a black-holed host took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");

    // Back on the network: the next apply converges it, and only it.
    Command::new("ip")
        .args(["-n", &fleet.hosts[2].netns, "link", "set", "eth0", "up"])
        .status()
        .expect("ip link up");
    let json = wait_for("h3 converged", Duration::from_secs(30), || {
        let (output, shown) = client(
            &fleet,
            runtime.path(),
            &["fleet", "apply", "-f", "fleet.toml", "--json"],
        );
        output.status.success().then(|| json_of(&output, &shown))
    });
    assert_eq!(host_row(&json, "h3")["applied"], true, "{json:#}");
    assert_eq!(host_row(&json, "h1")["applied"], false, "{json:#}");
    wait_running(&fleet.hosts[2], "c.support");
}

#[test]
fn fleet_apply_runs_each_tenant_as_its_own_user() {
    let test = "fleet_apply_runs_each_tenant_as_its_own_user";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = FleetHosts::new(1);
    let runtime = tempfile::tempdir().expect("runtime dir");
    // Each tenant its own user, created on the host, with a folder of its
    // own (the host's /etc/roster, the default, is never given away).
    let mut text = fleet.fleet_head("5s");
    text.push_str(
        "[agents.worker]\ncommand = [\"sleep\", \"3600\"]\nuser = \"{tenant}\"\ncreate_user = true\n\
         cwd = \"/var/lib/roster/work/{instance}\"\n\n",
    );
    for tenant in ["ua", "ub"] {
        text.push_str(&format!("[tenants.{tenant}]\nagents = [\"worker\"]\n\n"));
    }
    write_fleet(&fleet, &text);
    let (output, shown) = client(
        &fleet,
        runtime.path(),
        &["fleet", "apply", "-f", "fleet.toml"],
    );
    assert!(output.status.success(), "{shown}");
    let host = &fleet.hosts[0];
    let status = || {
        let output = Command::new(BIN)
            .args([
                "--home",
                &host.roster_home().display().to_string(),
                "status",
                "--json",
            ])
            .output()
            .expect("roster status");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("status JSON")
    };
    let json = wait_for("both workers settled", Duration::from_secs(20), || {
        let json = status();
        let agents = json["agents"].as_array()?;
        (agents.len() == 2
            && agents
                .iter()
                .all(|row| row["state"] == "running" || !row["last_error"].is_null()))
        .then_some(json)
    });
    for row in json["agents"].as_array().into_iter().flatten() {
        assert_eq!(row["state"], "running", "{row}");
    }
    let passwd = std::fs::read_to_string(host.dir.join("etc/passwd")).expect("the host's passwd");
    for tenant in ["ua", "ub"] {
        assert!(
            passwd
                .lines()
                .any(|line| line.starts_with(&format!("{tenant}:"))),
            "{tenant} created on the host:\n{passwd}"
        );
        assert!(
            !std::fs::read_to_string("/etc/passwd")
                .unwrap_or_default()
                .lines()
                .any(|line| line.starts_with(&format!("{tenant}:"))),
            "{tenant} is the host's user only"
        );
    }
    for (agent, user) in [("ua.worker", "ua"), ("ub.worker", "ub")] {
        let row = json["agents"]
            .as_array()
            .and_then(|agents| agents.iter().find(|row| row["name"] == agent))
            .unwrap_or_else(|| panic!("no {agent} in {json:#}"));
        assert_eq!(row["tenant"], user, "the fleet names its tenant: {row}");
        let pid = row["pid"].as_u64().expect("a pid");
        // The uid the host's own /etc/passwd gives the tenant.
        let uid = passwd
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.first() == Some(&user)).then(|| fields.get(2).map(|uid| uid.to_string()))
            })
            .flatten()
            .expect("the tenant's uid");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let real = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().next())
            .unwrap_or_default();
        assert_eq!(real, uid, "{agent} runs as {user}");
    }
}
