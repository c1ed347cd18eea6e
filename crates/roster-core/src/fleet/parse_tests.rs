//! The fleet file's errors, text pinned: located FILE:LINE:COL, with a
//! hint, every problem of a file at once, as roster.toml's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{parse, TemplateValue};

fn rendered(text: &str) -> String {
    match parse(text, Path::new("fleet.toml")) {
        Ok(_) => panic!("the file has mistakes"),
        Err(error) => error.to_string(),
    }
}

const HOSTS: &str = r#"
[hosts.h01]
address = "10.0.0.11"
capacity = 2
"#;

#[test]
fn the_example_reads_into_the_model() {
    let text = include_str!("../../../../examples/fleet/fleet.toml");
    let fleet = parse(text, Path::new("/srv/fleet/fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fleet.name, "agency");
    assert_eq!(
        (fleet.ports.first, fleet.ports.last, fleet.ports.len()),
        (8100, 8199, 100)
    );
    assert_eq!(fleet.ssh.user, "root");
    assert_eq!(
        fleet.ssh.identity,
        Some(PathBuf::from("/srv/fleet/keys/fleet_ed25519"))
    );
    assert_eq!(
        fleet.ssh.known_hosts,
        Some(PathBuf::from("/srv/fleet/known_hosts"))
    );
    assert_eq!(fleet.ssh.connect_timeout, Duration::from_secs(5));
    assert_eq!(
        (fleet.ssh.max_parallel, fleet.ssh.sudo, fleet.ssh.port),
        (10, false, 22)
    );
    assert_eq!(fleet.metrics_listen.as_deref(), Some("{address}:9464"));
    assert_eq!(fleet.hosts.len(), 3);
    assert_eq!(fleet.hosts["h03"].labels["region"], "us");
    assert_eq!(fleet.tenants["c04"].host.as_deref(), Some("h02"));
    assert_eq!(fleet.tenants["c01"].env["CUSTOMER"], "c01");
    let support = &fleet.templates["support"].table;
    let keys: Vec<&str> = support.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "command",
            "user",
            "create_user",
            "env",
            "listen",
            "health",
            "deploy"
        ]
    );
    assert_eq!(support[1].1, TemplateValue::String("{tenant}".into()));
}

#[test]
fn fleet_ssh_and_host_key_errors_are_pinned() {
    let text = r#"[fleet]
name = "agency"
port = "8100-8199"
[ssh]
usr = "root"
connect_timeout = "0s"
max_parallel = 0
sudo = "yes"
identity = ""
[metrics]
listen = "{adress}:9464"
[hosts.h01]
address = "10.0.0.11"
capacity = 0
memory = "4GiB"
lables = { region = "eu" }
[hosts."bad/host"]
address = "10.0.0.12"
capacity = 1
[hosts.h03]
capacity = 1
labels = { tier = 1 }
[extra]
"#;
    let expected = r#"fleet.toml:1:2: [fleet] has no `ports`
  hint: e.g. name = "agency" and ports = "8100-8199"
fleet.toml:3:1: unknown key `port` in [fleet]
  hint: did you mean `ports`?
fleet.toml:5:1: unknown key `usr` in [ssh]
  hint: did you mean `user`?
fleet.toml:6:19: `connect_timeout` must be above 0s
fleet.toml:7:16: `max_parallel` is 0; it must be between 1 and 1000
fleet.toml:8:8: `sudo` must be true or false
fleet.toml:9:12: `identity` is empty
  hint: leave it out for ssh's own default
fleet.toml:11:10: unknown placeholder `{adress}` in [metrics] `listen`
  hint: [metrics] `listen` may use {address} and {host}
fleet.toml:14:12: `capacity` is 0; it must be between 1 and 65535
fleet.toml:16:1: unknown key `lables` in host `h01`
  hint: did you mean `labels`?
fleet.toml:17:8: bad host name "bad/host": the name contains '/'; only letters, digits, '.', '_' and '-' are allowed
  hint: names are 1 to 64 of letters, digits, '_', '-' (and '.' for hosts), starting with a letter or digit
fleet.toml:20:8: host `h03` has no `address`
  hint: give it e.g. address = "10.0.0.11" and capacity = 3
fleet.toml:22:19: label `tier` must be a string
  hint: quote it: tier = "..."
fleet.toml:23:2: unknown key `extra` in the top level
  hint: known keys here: fleet, ssh, metrics, hosts, agents, tenants"#;
    assert_eq!(rendered(text), expected);
}

#[test]
fn template_errors_are_located_where_they_are_written() {
    let text = format!(
        r#"[fleet]
name = "agency"
ports = "8100-8199"
{HOSTS}
[agents.support]
command = ["agent", "--port", "{{prot}}"]
user = "{{tenant}}"
restart_dealy = "1s"
stop_timeout = "{{port}}"
env = {{ PORT = "{{port}}", HOME = "${{HOME}}" }}
[agents.support.listen]
http = "127.0.0.1:8080"
[agents.support.health]
htp = "http://127.0.0.1:{{port}}/"

[agents.idle]
cwd = "x"

[agents."a.b"]
command = "true"

[tenants.c01]
agents = ["support", "idle"]
[tenants.c02]
agents = ["support"]
"#
    );
    let expected = r#"fleet.toml:10:32: unknown placeholder `{prot}` in template `support`
  hint: did you mean `{port}`?
fleet.toml:12:1: unknown key `restart_dealy` in agent `support`
  hint: did you mean `restart_delay`?
fleet.toml:13:16: bad duration for `stop_timeout`: 8100 has no unit; write e.g. "8100s"
  hint: write e.g. "500ms", "10s", "5m" or "1h30m"
fleet.toml:16:8: template `support` listens on "127.0.0.1:8080" for every tenant that runs it
  hint: two instances on one host would share the address: write {port} in it, e.g. "127.0.0.1:{port}"
fleet.toml:17:17: [agents.support.health] names no check
  hint: give exactly one of http, tcp or exec
fleet.toml:18:1: unknown key `htp` in [agents.support.health]
  hint: did you mean `http`?
fleet.toml:20:9: agent `idle` has no `command`
  hint: add e.g. command = ["python3", "main.py"]
fleet.toml:23:9: bad template name "a.b": '.' separates the tenant from the agent in an instance's name
  hint: names are 1 to 64 of letters, digits, '_', '-' (and '.' for hosts), starting with a letter or digit
fleet.toml:28:10: tenant `c02` brings the fleet to 3 instances, beyond its hosts' total capacity of 2
  hint: add a host, or raise a host's `capacity`"#;
    assert_eq!(rendered(&text), expected);
}

#[test]
fn tenant_errors_and_capacity_are_pinned() {
    let text = r#"[fleet]
name = "agency"
ports = "8100-8101"
[hosts.h01]
address = "10.0.0.11"
capacity = 3
labels = { region = "eu" }
[hosts.h02]
address = "10.0.0.12"
capacity = 1
[agents.support]
command = "agent --port {port}"
[agents.billing]
command = "billing"
[tenants.c01]
agents = ["suport", "billing", "billing"]
host = "h1"
env = { A = 1 }
[tenants.c02]
agents = ["support", "billing"]
host = "h02"
[tenants.c03]
agents = ["support"]
labels = { region = "us" }
[tenants.c04]
agents = ["support"]
host = "h01"
labels = { region = "us" }
[tenants.c05]
agents = []
[tenants.c06]
agent = ["support"]
[tenants."c07.x"]
agents = ["support"]
[tenants.c08]
agents = ["support"]
"#;
    let expected = r#"fleet.toml:6:12: host `h01` takes 3 instances, but `ports` 8100-8101 holds only 2 ports
  hint: widen [fleet] `ports`, or lower the host's `capacity`
fleet.toml:16:11: tenant `c01` runs agent `suport`, but no [agents.suport] template is defined
  hint: did you mean `support`?
fleet.toml:16:32: agent `billing` is named twice
  hint: a tenant runs one instance of each agent
fleet.toml:17:8: tenant `c01` is pinned to host `h1`, but no [hosts.h1] is defined
  hint: did you mean `h01`?
fleet.toml:18:13: env `A` must be a string
  hint: quote it: numbers and booleans reach the agent as text anyway
fleet.toml:21:8: tenant `c02` brings the instances pinned to host `h02` to 2, beyond its capacity of 1
  hint: pin it to another host, or raise the host's `capacity`
fleet.toml:22:10: tenant `c03` brings the fleet to 5 instances, beyond its hosts' total capacity of 4
  hint: add a host, or raise a host's `capacity`
fleet.toml:24:10: no host carries the labels tenant `c03` asks for (region = "us")
  hint: give a host these `labels`, or change the tenant's
fleet.toml:27:8: tenant `c04` is pinned to host `h01`, which lacks the labels it asks for (region = "us")
  hint: pin it to a host with these `labels`, or change the tenant's
fleet.toml:30:10: `agents` is empty
  hint: name the templates the tenant runs, e.g. agents = ["support"]
fleet.toml:31:10: tenant `c06` has no `agents`
  hint: name the templates it runs, e.g. agents = ["support"]
fleet.toml:32:1: unknown key `agent` in tenant `c06`
  hint: did you mean `agents`?
fleet.toml:33:10: bad tenant name "c07.x": '.' separates the tenant from the agent in an instance's name
  hint: names are 1 to 64 of letters, digits, '_', '-' (and '.' for hosts), starting with a letter or digit"#;
    assert_eq!(rendered(text), expected);
}

#[test]
fn a_fleet_file_without_its_tables_says_what_to_add() {
    assert_eq!(
        rendered("[ssh]\nuser = \"deploy\"\n"),
        "fleet.toml:1:1: the fleet file has no [fleet] table\n  \
         hint: begin with [fleet] name = \"...\" and ports = \"8100-8199\""
    );
    assert_eq!(
        rendered("[fleet]\nname = \"f\"\nports = \"9-8\"\n[hosts]\n"),
        "fleet.toml:3:9: bad port range \"9-8\"\n  \
         hint: write FIRST-LAST, e.g. \"8100-8199\", ports from 1 to 65535"
    );
    assert_eq!(
        rendered("[fleet]\nname = \"f\"\nports = \"1-2\"\n[fleet]\n"),
        "fleet.toml:4:2: TOML syntax: duplicate key\n  \
         hint: each host, template, tenant and key may appear only once"
    );
}

#[test]
fn metrics_listen_must_give_each_host_an_ip_address() {
    let text = r#"[fleet]
name = "f"
ports = "9000-9009"
[metrics]
listen = "{address}:9464"
[hosts.web1]
address = "web1.example.com"
capacity = 1
"#;
    assert_eq!(
        rendered(text),
        "fleet.toml:5:10: [metrics] `listen` gives host `web1` the address \"web1.example.com:9464\": expected an IP address and a port\n  \
         hint: roster.toml's [metrics] takes an IP address and a port; give the host's `address` as an IP, or write one here"
    );
}

/// The template is checked with its first tenant; every other tenant's
/// instance is checked as its host's roster.toml will read it.
#[test]
fn every_instance_must_be_one_roster_takes() {
    let text = r#"[fleet]
name = "agency"
ports = "8100-8199"
[hosts.h01]
address = "10.0.0.11"
capacity = 3
[agents.support]
command = "agent --port {port}"
user = "{tenant}"
[tenants.a01]
agents = ["support"]
[tenants.customer-with-a-very-long-name-indeed]
agents = ["support"]
"#;
    assert_eq!(
        rendered(text),
        "fleet.toml:13:11: instance `customer-with-a-very-long-name-indeed.support` would be refused by its host's roster.toml: bad user \"customer-with-a-very-long-name-indeed\" for agent `customer-with-a-very-long-name-indeed.support`\n  \
         hint: a user is a number or a name of letters, digits, '.', '_' and '-' (at most 32), not starting with '-'; {name} is replaced by the agent's name"
    );
}

#[test]
fn a_hosts_memory_is_a_number_of_instances() {
    let text = r#"[fleet]
name = "agency"
ports = "8100-8109"
[hosts.big]
address = "10.0.0.11"
memory = "4GiB"
[hosts.huge]
address = "10.0.0.12"
memory = "1000GiB"
[hosts.both]
address = "10.0.0.13"
memory = "4GiB"
capacity = 3
[agents.support]
command = ["agent"]
memory_max = "1GiB"
[tenants.c01]
agents = ["support"]
"#;
    let fleet = parse(text, Path::new("fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    // 4 GiB at the template's 1 GiB limit; 1000 GiB stops at the 10 ports.
    let capacity = |name: &str| fleet.hosts[name].capacity;
    assert_eq!(
        (capacity("big"), capacity("huge"), capacity("both")),
        (4, 10, 3)
    );
    assert_eq!(fleet.hosts["big"].memory, Some(4 << 30));

    let planned = text.replace(
        "ports = \"8100-8109\"",
        "ports = \"8100-8109\"\ninstance_memory = \"2GiB\"",
    );
    let fleet = parse(&planned, Path::new("fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fleet.hosts["big"].capacity, 2);
    assert_eq!(fleet.hosts["both"].capacity, 2, "the smaller of the two");
}

#[test]
fn memory_that_holds_no_instance_is_located() {
    let text = r#"[fleet]
name = "agency"
ports = "8100-8199"
instance_memory = "1KiB"
[hosts.small]
address = "10.0.0.11"
memory = "100MiB"
[hosts.tiny]
address = "10.0.0.12"
memory = "100KiB"
"#;
    let expected = r#"fleet.toml:4:19: `instance_memory` is below 1MiB
  hint: write e.g. "4GiB"
fleet.toml:7:10: host `small` has memory = 100MiB and holds no instance of 256MiB each
  hint: raise its `memory`, lower [fleet] `instance_memory`, or give it `capacity` instead
fleet.toml:10:10: `memory` is below 1MiB
  hint: write e.g. "4GiB""#;
    assert_eq!(rendered(text), expected);
}

#[test]
fn instances_belong_to_one_servers_config_not_a_template() {
    let text = format!(
        "[fleet]\nname = \"agency\"\nports = \"8100-8199\"\n{HOSTS}\n\
         [agents.w]\ncommand = \"run {{port}}\"\ninstances = 2\n\
         [tenants.c01]\nagents = [\"w\"]\n"
    );
    let error = rendered(&text);
    assert!(error.contains("template `w` has `instances`"), "{error}");
    assert!(error.contains("one server's roster.toml"), "{error}");
}
