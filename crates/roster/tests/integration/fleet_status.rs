//! `roster fleet status` end to end (issue #16): the built binary in the
//! client namespace, over the system's ssh, to hosts made by
//! `fleet_hosts` that each run a roster daemon.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::fleet_hosts::*;
use crate::util::*;

/// Tenants PREFIX01.. with one `support` instance each, two pinned per
/// host. Each test has its own prefix: every host's home is
/// /var/lib/roster, so their daemons share one cgroup tree on this machine
/// and must not share agent names across the tests that run at once.
fn fleet_file(fleet: &FleetHosts, prefix: &str, connect_timeout: &str) -> String {
    let mut text = fleet.fleet_head(connect_timeout);
    text.push_str(
        "[agents.support]\ncommand = [\"tail\", \"-f\", \"/dev/null\"]\nallow_root = true\n\n",
    );
    for (index, host) in fleet.hosts.iter().enumerate() {
        for slot in 0..2 {
            text.push_str(&format!(
                "[tenants.{prefix}{:02}]\nagents = [\"support\"]\nhost = \"{}\"\n\n",
                index * 2 + slot + 1,
                host.name
            ));
        }
    }
    text
}

/// Each host's roster.toml: its two instances (as `fleet apply` would
/// write them), and on the first host an agent the fleet does not place.
fn host_configs(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let mut text = String::new();
            for slot in 0..2 {
                text.push_str(&format!(
                    "[agents.\"{prefix}{:02}.support\"]\ncommand = [\"tail\", \"-f\", \"/dev/null\"]\nallow_root = true\n\n",
                    index * 2 + slot + 1
                ));
            }
            if index == 0 {
                text.push_str(&format!("[agents.{prefix}stray]\ncommand = [\"tail\", \"-f\", \"/dev/null\"]\nallow_root = true\n"));
            }
            text
        })
        .collect()
}

fn status(
    fleet: &FleetHosts,
    runtime: &Path,
    extra: &[&str],
) -> (Output, Duration, serde_json::Value) {
    let started = Instant::now();
    let mut args = vec!["fleet", "status", "-f", "fleet.toml", "--json"];
    args.extend(extra);
    let output = fleet.client_roster(runtime, &args);
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!(
            "fleet status --json is not JSON ({error}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, elapsed, json)
}

fn host_row<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|host| host["name"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {json:#}"))
}

#[test]
fn fleet_status_lists_every_instance_and_reuses_connections() {
    let test = "fleet_status_lists_every_instance_and_reuses_connections";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = FleetHosts::with_roster(&host_configs("a", 3));
    eprintln!(
        "3 hosts with roster daemons up in {:?}",
        fleet.began.elapsed()
    );
    std::fs::write(
        fleet.dir.path().join("fleet.toml"),
        fleet_file(&fleet, "a", "5s"),
    )
    .expect("fleet.toml");
    let runtime = tempfile::tempdir().expect("runtime dir");

    // Agents start in the background: wait until each host runs its two.
    wait_for(
        "every placed instance running",
        Duration::from_secs(20),
        || {
            let (output, _, json) = status(&fleet, runtime.path(), &[]);
            output.status.success().then_some(json)
        },
    );
    // Cold: new masters (a fresh runtime dir each time); warm: the same
    // dir again. The best of three of each, as the machine is shared.
    let cold_dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("runtime dir"))
        .collect();
    let mut colds = Vec::new();
    let mut json = serde_json::Value::Null;
    for dir in &cold_dirs {
        let (output, elapsed, reply) = status(&fleet, dir.path(), &[]);
        assert!(output.status.success(), "{reply:#}");
        colds.push(elapsed);
        json = reply;
    }
    let cold_dir = &cold_dirs[0];
    let mut warms = Vec::new();
    for _ in 0..3 {
        let (output, elapsed, reply) = status(&fleet, cold_dir.path(), &[]);
        assert!(output.status.success(), "{reply:#}");
        warms.push(elapsed);
    }
    let cold = colds.iter().min().copied().unwrap_or_default();
    let warm = warms.iter().min().copied().unwrap_or_default();
    eprintln!(
        "fleet status over 3 hosts: cold {colds:?} (best {cold:?}), warm {warms:?} (best {warm:?})"
    );
    assert!(
        warm < cold,
        "a second status reuses the masters: cold {cold:?}, warm {warm:?}"
    );

    for host in &fleet.hosts {
        let row = host_row(&json, &host.name);
        assert_eq!(row["address"], host.address.as_str());
        assert_eq!(row["reachable"], true);
        assert_eq!(row["error"], serde_json::Value::Null);
        assert!(row["seconds"].as_f64().is_some(), "{row}");
    }
    let instances = json["instances"].as_array().expect("instances");
    for (index, host) in fleet.hosts.iter().enumerate() {
        for slot in 0..2 {
            let tenant = format!("a{:02}", index * 2 + slot + 1);
            let name = format!("{tenant}.support");
            let row = instances
                .iter()
                .find(|row| row["name"] == name.as_str())
                .unwrap_or_else(|| panic!("no {name} in {json:#}"));
            assert_eq!(row["host"], host.name.as_str());
            assert_eq!(row["tenant"], tenant.as_str());
            assert_eq!(row["agent"], "support");
            assert_eq!(row["state"], "running");
            assert!(row["pid"].as_u64().is_some(), "{row}");
            assert_eq!(row["placed"], true);
            for key in ["health", "release"] {
                assert!(row.get(key).is_some(), "{key} missing: {row}");
            }
        }
    }
    let stray = instances
        .iter()
        .find(|row| row["name"] == "astray")
        .expect("the agent the fleet does not place is shown");
    assert_eq!(stray["host"], "h1");
    assert_eq!(stray["placed"], false);
    assert_eq!(instances.len(), 7, "{json:#}");

    // The table: one line per instance, the stray one marked.
    let table = fleet.client_roster(cold_dir.path(), &["fleet", "status", "-f", "fleet.toml"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("HOST"), "{table}");
    assert!(table.contains("astray (not in the fleet)"), "{table}");
    assert!(
        table.lines().any(|line| line.starts_with("h2")
            && line.contains("a03.support")
            && line.contains("running")),
        "{table}"
    );

    // --hosts: only those.
    let (_, _, only) = status(&fleet, cold_dir.path(), &["--hosts", "h2"]);
    assert_eq!(only["hosts"].as_array().map(Vec::len), Some(1), "{only:#}");
    assert!(only["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .all(|row| row["host"] == "h2"));

    // Masters gone bad under the same sockets: one that accepts and never
    // answers (hung), the others dead (nothing listening). Status clears
    // them and opens new ones, well within its connect timeout (5 s).
    let sockets: Vec<std::path::PathBuf> = std::fs::read_dir(cold_dir.path().join("roster"))
        .expect("the runtime dir's roster directory")
        .flatten()
        .flat_map(|fleet_dir| std::fs::read_dir(fleet_dir.path()).into_iter().flatten())
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert_eq!(sockets.len(), 3, "one master per host: {sockets:?}");
    let mut hung = None;
    for (index, socket) in sockets.iter().enumerate() {
        std::fs::remove_file(socket).expect("remove the master's socket");
        let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind");
        if index == 0 {
            hung = Some(listener);
        }
    }
    let (output, elapsed, reply) = status(&fleet, cold_dir.path(), &[]);
    assert!(output.status.success(), "{reply:#}");
    assert!(
        elapsed < Duration::from_secs(5),
        "stale masters cost {elapsed:?}"
    );
    drop(hung);
}

#[test]
fn fleet_status_reports_unreachable_hosts_with_the_reason() {
    let test = "fleet_status_reports_unreachable_hosts_with_the_reason";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let mut fleet = FleetHosts::with_roster(&host_configs("b", 4));
    std::fs::write(
        fleet.dir.path().join("fleet.toml"),
        fleet_file(&fleet, "b", "2s"),
    )
    .expect("fleet.toml");
    let runtime = tempfile::tempdir().expect("runtime dir");
    // A first status learns every host's key (accept-new).
    wait_for(
        "every placed instance running",
        Duration::from_secs(20),
        || {
            let (output, _, json) = status(&fleet, runtime.path(), &[]);
            output.status.success().then_some(json)
        },
    );

    fleet.black_hole(0);
    fleet.stop_sshd(1);
    fleet.change_host_key(2);
    // Cold, so no master hides the faults.
    let cold = tempfile::tempdir().expect("runtime dir");
    let (output, elapsed, json) = status(&fleet, cold.path(), &[]);
    eprintln!("fleet status with three broken hosts of four: {elapsed:?}");
    assert_eq!(output.status.code(), Some(1), "{json:#}");
    assert!(
        elapsed < Duration::from_secs(3),
        "connect_timeout 2s + 1s, took {elapsed:?}"
    );

    let h1 = host_row(&json, "h1");
    assert_eq!(h1["reachable"], false);
    assert_eq!(h1["error"], "timed out after 2s", "{h1}");
    let h2 = host_row(&json, "h2");
    assert_eq!(h2["error"], "connection refused", "{h2}");
    let h3 = host_row(&json, "h3");
    let reason = h3["error"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("host key changed (known_hosts line "),
        "{h3}"
    );
    let h4 = host_row(&json, "h4");
    assert_eq!(h4["reachable"], true, "{h4}");
    assert_eq!(h4["error"], serde_json::Value::Null);

    let instances = json["instances"].as_array().expect("instances");
    let state = |name: &str| {
        instances
            .iter()
            .find(|row| row["name"] == name)
            .map(|row| row["state"].clone())
            .unwrap_or_else(|| panic!("no {name} in {json:#}"))
    };
    assert_eq!(state("b01.support"), "unknown");
    assert_eq!(state("b07.support"), "running");
    assert_eq!(state("b08.support"), "running");

    // The table says which hosts did not answer, and why.
    let table = fleet.client_roster(cold.path(), &["fleet", "status", "-f", "fleet.toml"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("h2 (10.77.0.12): unreachable: connection refused"),
        "{text}"
    );
}

#[test]
fn fleet_hosts_are_separate_machines_started_quickly() {
    let test = "fleet_hosts_are_separate_machines_started_quickly";
    if !fleet_hosts_or_skip(test) {
        return;
    }
    let fleet = FleetHosts::new(4);
    let took = fleet.began.elapsed();
    eprintln!("4 hosts up in {took:?}");
    assert!(took < Duration::from_secs(5), "4 hosts took {took:?}");
    let known_hosts = fleet.dir.path().join("known_hosts");
    for host in &fleet.hosts {
        // Key only, from the client's namespace: its own hostname and
        // its own /var/lib/roster.
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &fleet.client, "ssh", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=accept-new", "-o"])
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(&fleet.identity)
            .arg(format!("root@{}", host.address))
            .arg("hostname; touch /var/lib/roster/mine; ls /var/lib/roster")
            .output()
            .expect("ssh");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(text.lines().next(), Some(host.name.as_str()));
        assert!(host.roster_home().join("mine").exists(), "{text}");
    }
    assert!(
        !Path::new("/var/lib/roster/mine").exists(),
        "the real /var/lib/roster stays untouched"
    );
    // The addresses exist only inside the namespaces.
    let addresses = std::process::Command::new("ip")
        .args(["-o", "addr"])
        .output()
        .expect("ip addr");
    assert!(!String::from_utf8_lossy(&addresses.stdout).contains("10.77.0."));
}
