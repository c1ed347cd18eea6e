//! The issue's example fleet, end to end: parsed, placed, each host's
//! roster.toml rendered and read back by roster's own config parser.

use std::path::Path;

use super::{parse, place, render, Fleet, Placement};
use crate::config;

const EXAMPLE: &str = include_str!("../../../../examples/fleet/fleet.toml");

fn example() -> (Fleet, Placement) {
    let fleet = match parse(EXAMPLE, Path::new("/srv/fleet/fleet.toml")) {
        Ok(fleet) => fleet,
        Err(error) => panic!("the example does not parse:\n{error}"),
    };
    let placement = place(&fleet).expect("the example places");
    (fleet, placement)
}

#[test]
fn the_example_renders_configs_roster_accepts() {
    let (fleet, placement) = example();
    assert_eq!(placement.instances.len(), 5);
    for host in fleet.hosts.keys() {
        let text = render(&fleet, &placement, host);
        let config = match config::parse("roster.toml", &text, Path::new("/var/lib/roster")) {
            Ok(config) => config,
            Err(error) => panic!("host {host}'s roster.toml is refused:\n{error}\n{text}"),
        };
        let on_host: Vec<&str> = placement.on_host(host).map(|i| i.name.as_str()).collect();
        let agents: Vec<&str> = config.agents.keys().map(|name| name.as_str()).collect();
        assert_eq!(agents, on_host, "{text}");
        let address = &fleet.hosts[host].address;
        let metrics = config.metrics.expect("[metrics] is rendered");
        assert_eq!(metrics.listen.to_string(), format!("{address}:9464"));
        for instance in placement.on_host(host) {
            let agent = &config.agents[&crate::AgentName::new(&instance.name).expect("valid")];
            let tenant = &instance.tenant;
            assert_eq!(agent.identity.user.as_deref(), Some(tenant.as_str()));
            assert!(agent.identity.create_user);
            assert_eq!(agent.env["PORT"], instance.port.to_string());
            assert_eq!(&agent.env["CUSTOMER"], tenant);
            let listen: Vec<String> = agent.listen.values().map(|a| a.to_string()).collect();
            assert_eq!(listen, [format!("127.0.0.1:{}", instance.port)]);
            assert!(agent.deploy.is_some());
            assert_eq!(agent.tenant.as_deref(), Some(tenant.as_str()));
        }
    }
}

#[test]
fn a_rendered_host_reads_as_written() {
    let (fleet, placement) = example();
    let host = &placement.get("c04.support").expect("c04 is placed").host;
    assert_eq!(host, "h02", "c04 is pinned to h02");
    let text = render(&fleet, &placement, "h02");
    let c04 = placement.get("c04.support").expect("placed");
    let expected_section = format!(
        r#"[agents."c04.support"]
tenant = "c04"
command = ["/usr/bin/python3", "-u", "agent.py"]
user = "c04"
create_user = true
env = {{ CUSTOMER = "c04", PORT = "{port}" }}

[agents."c04.support".listen]
http = "127.0.0.1:{port}"

[agents."c04.support".health]
http = "http://127.0.0.1:{port}/health"

[agents."c04.support".deploy]
strategy = "blue-green"
"#,
        port = c04.port
    );
    // The header gives each instance's port, outside its section.
    let ports: String = placement
        .on_host("h02")
        .map(|i| format!("# port of {} {}\n", i.name, i.port))
        .collect();
    assert!(ports.contains(&format!("# port of c04.support {}\n", c04.port)));
    assert!(
        text.starts_with(&format!(
            "# roster.toml of host h02 in fleet agency, written by `roster fleet`:\n\
             # edit the fleet file, not this one.\n{ports}\n[metrics]\nlisten = \"10.0.0.12:9464\"\n"
        )),
        "{text}"
    );
    assert!(text.contains(&expected_section), "{text}");
    assert_eq!(c04.digest, super::digest(&expected_section));
    // Unknown hosts get the header only.
    assert!(!render(&fleet, &placement, "h99").contains('['));
}

#[test]
fn placeholders_are_replaced_everywhere_and_tenant_env_wins() {
    let text = r#"
[fleet]
name = "f"
ports = "9000-9009"
[hosts.h1]
address = "192.168.1.5"
capacity = 2
[agents.worker]
command = "run --name {instance} --port {port} --host {host}"
cwd = "srv/{tenant}"
user = "{tenant}"
env = { WHO = "{agent}@{address}", SHARED = "template" }
[agents.worker.health]
exec = ["check", "{instance}"]
[[agents.worker.watch]]
metric = "memory_percent"
above = 90
action = "alert"
[tenants.acme]
agents = ["worker"]
env = { SHARED = "tenant" }
"#;
    let fleet = parse(text, Path::new("/srv/fleet.toml")).unwrap_or_else(|error| panic!("{error}"));
    let placement = place(&fleet).expect("placed");
    let port = placement.instances[0].port;
    let rendered = render(&fleet, &placement, "h1");
    let config = config::parse("roster.toml", &rendered, Path::new("/var/lib/roster"))
        .unwrap_or_else(|error| panic!("{error}\n{rendered}"));
    let agent = &config.agents[&crate::AgentName::new("acme.worker").expect("valid")];
    assert_eq!(
        agent.command,
        [
            "run",
            "--name",
            "acme.worker",
            "--port",
            &port.to_string(),
            "--host",
            "h1"
        ]
    );
    assert_eq!(agent.cwd, Path::new("/var/lib/roster/srv/acme"));
    assert_eq!(agent.env["WHO"], "worker@192.168.1.5");
    assert_eq!(agent.env["SHARED"], "tenant");
    assert_eq!(agent.rules().len(), 1);
    assert!(
        rendered.contains(r#"exec = ["check", "acme.worker"]"#),
        "{rendered}"
    );
}

/// The example's placement, pinned: a change to the hashes or the
/// algorithm moves real instances, and must be a decision.
#[test]
fn the_example_places_where_it_always_did() {
    let (_, placement) = example();
    let placed: Vec<String> = placement
        .instances
        .iter()
        .map(|i| format!("{} {} {}", i.name, i.host, i.port))
        .collect();
    assert_eq!(
        placed,
        [
            "c01.support h01 8113",
            "c02.support h01 8192",
            "c03.support h03 8162",
            "c04.support h02 8111",
            "c05.support h01 8183",
        ]
    );
}

/// The order tables are written in changes nothing.
#[test]
fn the_order_of_the_file_does_not_matter() {
    let (_, placement) = example();
    let (head, tenants) = EXAMPLE.split_at(EXAMPLE.find("[tenants.c01]").expect("tenants"));
    let mut blocks: Vec<&str> = tenants.split("\n\n").collect();
    blocks.reverse();
    let reordered = format!("{head}{}\n", blocks.join("\n\n"));
    assert_ne!(reordered, EXAMPLE);
    let fleet =
        parse(&reordered, Path::new("/srv/fleet/fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(place(&fleet), Ok(placement));
}

/// What each host of `placement` runs once it is applied.
fn applied(fleet: &Fleet, placement: &Placement) -> Vec<(String, Vec<super::RunningInstance>)> {
    fleet
        .hosts
        .keys()
        .map(|host| {
            let instances = placement
                .on_host(host)
                .map(|instance| super::RunningInstance {
                    name: instance.name.clone(),
                    digest: instance.digest.clone(),
                })
                .collect();
            (host.clone(), instances)
        })
        .collect()
}

#[test]
fn an_applied_fleet_plans_nothing_and_a_new_host_plans_only_moves() {
    let (fleet, placement) = example();
    assert_eq!(super::plan(&placement, &applied(&fleet, &placement)), []);
    let grown = EXAMPLE.replace(
        "[hosts.h03]",
        "[hosts.h04]\naddress = \"10.0.0.14\"\ncapacity = 3\nlabels = { region = \"eu\" }\n\n[hosts.h03]",
    );
    let bigger =
        parse(&grown, Path::new("/srv/fleet/fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    let after = super::place_with(&bigger, Some(&placement)).expect("placed");
    let changes = super::plan(&after, &applied(&fleet, &placement));
    assert!(!changes.is_empty(), "h04 takes some instances");
    for change in &changes {
        assert_eq!(change.kind, super::ChangeKind::Move, "{change:?}");
        assert_eq!(change.host, "h04");
    }
}

#[test]
fn debug_output_hides_environment_values() {
    let (fleet, _) = example();
    let shown = format!("{:?}", fleet);
    assert!(shown.contains(r#""env": ["PORT"]"#), "{shown}");
    assert!(shown.contains(r#"env: ["CUSTOMER"]"#), "{shown}");
    assert!(!shown.contains(r#"String("{port}")"#), "{shown}");
}

/// What `fleet plan` reads back from a host: the digests `render` gave
/// each instance there and its port, so an unchanged fleet plans nothing
/// and the next placement keeps every port.
#[test]
fn a_rendered_host_reads_back_as_placed() {
    let (fleet, placement) = example();
    let mut current = Vec::new();
    for host in fleet.hosts.keys() {
        let hosted = super::read_rendered(&render(&fleet, &placement, host));
        let expected: Vec<(String, String)> = placement
            .on_host(host)
            .map(|i| (i.name.clone(), i.digest.clone()))
            .collect();
        let read: Vec<(String, String)> = hosted
            .instances
            .iter()
            .map(|i| (i.name.clone(), i.digest.clone()))
            .collect();
        assert_eq!(read, expected, "{host}");
        for instance in placement.on_host(host) {
            assert_eq!(hosted.ports.get(&instance.name), Some(&instance.port));
        }
        current.push((host.clone(), hosted));
    }
    let running: Vec<_> = current
        .iter()
        .map(|(host, hosted)| (host.clone(), hosted.instances.clone()))
        .collect();
    assert_eq!(super::plan(&placement, &running), []);
    let previous = super::previous_placement(&current);
    assert_eq!(previous, placement);
    let again = super::place_with(&fleet, Some(&previous)).expect("places");
    assert_eq!(again, placement);
}
