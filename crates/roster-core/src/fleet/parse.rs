//! Reading a fleet file: the top level, `[fleet]`, `[ssh]`, `[metrics]`
//! and `[hosts.NAME]` here; templates (`templates`) and tenants with the
//! checks across tables (`tenants`) in their own files. Every problem is
//! collected with the config's `Checker` and reported at once, located
//! `FILE:LINE:COL` with a hint, as roster.toml's are.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike};

use super::capacity::{apply_memory, instance_memory, MEMORY_FLOOR};
use super::fields::{check_name, labels};
use super::model::{Fleet, Host, PortRange, SshSpec, DEFAULT_BINARY};
use super::placeholders::{find, Vars, HOST_PLACEHOLDERS};
use super::templates::read_templates;
use super::tenants::{check_instances, cross_check, read_tenants, Spans};
use crate::config::{key_span, span_of, Checker, ConfigError, Entry, Key, Read};
use crate::hardening::valid_account;
use crate::metrics::parse_listen;

const TOP_KEYS: &[&str] = &["fleet", "ssh", "metrics", "hosts", "agents", "tenants"];

struct FleetDraft {
    name: Option<String>,
    ports: Option<PortRange>,
    instance_memory: Option<u64>,
    binary: Option<String>,
}

const FLEET_KEYS: &[Key<FleetDraft>] = &[
    Key::new("name", Read::Custom(fleet_name)),
    Key::new("ports", Read::Custom(ports)),
    Key::new("binary", Read::Custom(binary)),
    Key::new(
        "instance_memory",
        Read::Custom(|checker, entry, fleet: &mut FleetDraft| {
            fleet.instance_memory = memory(checker, entry).map(|(size, _)| size);
        }),
    ),
];

struct SshDraft {
    base_dir: PathBuf,
    spec: SshSpec,
}

#[rustfmt::skip]
const SSH_KEYS: &[Key<SshDraft>] = &[
    Key::new("user", Read::Custom(ssh_user)),
    Key::new("identity", Read::Custom(ssh_path)),
    Key::new("known_hosts", Read::Custom(ssh_path)),
    Key::new("connect_timeout", Read::PositiveDuration(|s, v| s.spec.connect_timeout = v)),
    Key::new("max_parallel", Read::Integer(1, 1000, |s, v| s.spec.max_parallel = v as u32)),
    Key::new("sudo", Read::Boolean(|s, v| s.spec.sudo = v)),
    Key::new("port", Read::Integer(1, 65535, |s, v| s.spec.port = v as u16)),
];

/// `[metrics]`: its `listen` template and where it is written.
#[derive(Default)]
struct MetricsDraft {
    listen: Option<(String, Range<usize>)>,
}

const METRICS_KEYS: &[Key<MetricsDraft>] = &[Key::new("listen", Read::Custom(metrics_listen))];

#[derive(Default)]
struct HostDraft {
    address: Option<String>,
    capacity: Option<(u32, Range<usize>)>,
    memory: Option<(u64, Range<usize>)>,
    labels: BTreeMap<String, String>,
    user: Option<String>,
    port: Option<u16>,
}

#[rustfmt::skip]
const HOST_KEYS: &[Key<HostDraft>] = &[
    Key::new("address", Read::Custom(host_address)),
    Key::new("capacity", Read::Custom(host_capacity)),
    Key::new("memory", Read::Custom(|checker, entry, host: &mut HostDraft| {
        host.memory = memory(checker, entry);
    })),
    Key::new("labels", Read::Custom(|checker, entry, host: &mut HostDraft| {
        host.labels = labels(checker, entry);
    })),
    Key::new("user", Read::Custom(host_user)),
    Key::new("port", Read::Integer(1, 65535, |h, v| h.port = Some(v as u16))),
];

/// Parses and validates a fleet file's text. `path` is how errors name
/// the file, and its directory is what relative paths (`identity`,
/// `known_hosts`, templates' `cwd`) are resolved against.
pub fn parse(text: &str, path: &Path) -> Result<Fleet, ConfigError> {
    let file = path.display().to_string();
    let base_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut checker = Checker::default();
    let fleet = match toml_edit::Document::parse(text) {
        Ok(document) => read_fleet(&mut checker, text, document.as_item(), &base_dir),
        Err(error) => {
            let message = error.message().trim().to_owned();
            let hint = if message.contains("duplicate key") {
                "each host, template, tenant and key may appear only once"
            } else {
                "this is not valid TOML; see https://toml.io"
            };
            checker.problem(
                error.span().unwrap_or(0..0),
                format!("TOML syntax: {message}"),
                Some(hint.into()),
            );
            None
        }
    };
    match fleet {
        Some(fleet) if checker.problems.is_empty() => Ok(fleet),
        _ => Err(ConfigError::new(&file, text, checker.problems)),
    }
}

fn read_fleet(checker: &mut Checker, text: &str, root: &Item, base_dir: &Path) -> Option<Fleet> {
    let top = root.as_table_like()?;
    let mut fleet = FleetDraft {
        name: None,
        ports: None,
        instance_memory: None,
        binary: None,
    };
    let mut ssh = SshDraft {
        base_dir: base_dir.to_path_buf(),
        spec: SshSpec::default(),
    };
    let mut metrics = MetricsDraft::default();
    let mut hosts = BTreeMap::new();
    let mut spans = Spans::default();
    let mut tenants = BTreeMap::new();
    for (key, item) in top.iter() {
        let place = format!("[{key}]");
        match (key, item.as_table_like()) {
            ("fleet", Some(table)) => checker.read_keys(table, FLEET_KEYS, &place, &mut fleet),
            ("ssh", Some(table)) => checker.read_keys(table, SSH_KEYS, &place, &mut ssh),
            ("metrics", Some(table)) => {
                checker.read_keys(table, METRICS_KEYS, &place, &mut metrics)
            }
            ("hosts", Some(table)) => hosts = read_hosts(checker, table, &mut spans),
            ("tenants", Some(table)) => tenants = read_tenants(checker, table, &mut spans),
            ("agents", Some(_)) => {}
            ("fleet" | "ssh" | "metrics" | "hosts" | "agents" | "tenants", None) => {
                checker.problem(
                    span_of(item),
                    format!("`{key}` must be a table"),
                    Some(format!("write it as [{key}] or [{key}.NAME]")),
                );
            }
            _ => checker.unknown_key(key_span(top, key, item), key, "the top level", TOP_KEYS),
        }
    }
    let Some(fleet_item) = top.get("fleet") else {
        checker.problem(
            0..0,
            "the fleet file has no [fleet] table",
            Some("begin with [fleet] name = \"...\" and ports = \"8100-8199\"".into()),
        );
        return None;
    };
    let fleet_span = key_span(top, "fleet", fleet_item);
    for (key, value) in [
        ("name", fleet.name.is_some()),
        ("ports", fleet.ports.is_some()),
    ] {
        let present = fleet_item
            .as_table_like()
            .is_some_and(|table| table.contains_key(key));
        if !value && !present {
            checker.problem(
                fleet_span.clone(),
                format!("[fleet] has no `{key}`"),
                Some("e.g. name = \"agency\" and ports = \"8100-8199\"".into()),
            );
        }
    }
    if hosts.is_empty() && top.get("hosts").is_none() {
        checker.problem(
            0..0,
            "the fleet file has no [hosts.NAME] table",
            Some("add e.g. [hosts.h01] with address = \"10.0.0.11\" and capacity = 3".into()),
        );
    }
    if let Some((listen, span)) = &metrics.listen {
        check_metrics_listen(checker, listen, span, &hosts);
    }
    let templates = match top.get("agents").and_then(Item::as_table_like) {
        Some(table) => read_templates(
            checker,
            text,
            table,
            &tenants,
            &sample_host(&hosts),
            fleet.ports,
            base_dir,
        ),
        None => BTreeMap::new(),
    };
    let ports = fleet.ports?;
    let per_instance = instance_memory(fleet.instance_memory, &templates);
    apply_memory(
        checker,
        &mut hosts,
        &spans.host_memory,
        per_instance,
        ports.len(),
    );
    cross_check(checker, &spans, &hosts, &templates, &tenants, ports);
    let fleet = Fleet {
        name: fleet.name?,
        ports,
        binary: fleet.binary.unwrap_or_else(|| DEFAULT_BINARY.to_owned()),
        ssh: ssh.spec,
        metrics_listen: metrics.listen.map(|(listen, _)| listen),
        hosts,
        templates,
        tenants,
    };
    // Only once the file is otherwise right: a bad template would be
    // reported once per tenant.
    if checker.problems.is_empty() {
        check_instances(checker, &fleet, &spans, base_dir);
    }
    Some(fleet)
}

/// The first host's name and address: what a template's `{host}` and
/// `{address}` stand for while the template is checked.
fn sample_host(hosts: &BTreeMap<String, Host>) -> (String, String) {
    hosts
        .iter()
        .next()
        .map(|(name, host)| (name.clone(), host.address.clone()))
        .unwrap_or_else(|| ("host".into(), "127.0.0.1".into()))
}

fn read_hosts(
    checker: &mut Checker,
    table: &dyn TableLike,
    spans: &mut Spans,
) -> BTreeMap<String, Host> {
    let mut hosts = BTreeMap::new();
    for (name, item) in table.iter() {
        let name_span = key_span(table, name, item);
        let good_name = check_name(checker, name, "host", name_span.clone());
        let Some(host_table) = item.as_table_like() else {
            checker.problem(
                span_of(item),
                format!("host `{name}` must be a table"),
                Some(format!(
                    "write it as [hosts.{name}] with `address` and `capacity`"
                )),
            );
            continue;
        };
        let problems_before = checker.problems.len();
        let mut host = HostDraft::default();
        checker.read_keys(host_table, HOST_KEYS, &format!("host `{name}`"), &mut host);
        for (key, missing) in [
            ("address", host.address.is_none()),
            ("capacity", host.capacity.is_none() && host.memory.is_none()),
        ] {
            let written = host_table.contains_key(key)
                || (key == "capacity" && host_table.contains_key("memory"));
            if missing && !written {
                checker.problem(
                    name_span.clone(),
                    format!("host `{name}` has no `{key}`"),
                    Some("give it e.g. address = \"10.0.0.11\" and capacity = 3".into()),
                );
            }
        }
        if !good_name || checker.problems.len() > problems_before {
            continue;
        }
        let Some(address) = host.address else {
            continue;
        };
        if let Some((_, span)) = &host.memory {
            spans.host_memory.insert(name.to_owned(), span.clone());
        }
        let capacity = match (host.capacity, &host.memory) {
            (Some((capacity, span)), _) => {
                spans.host_capacity.insert(name.to_owned(), span);
                capacity
            }
            (None, Some((_, span))) => {
                spans.host_capacity.insert(name.to_owned(), span.clone());
                u32::MAX
            }
            (None, None) => continue,
        };
        {
            hosts.insert(
                name.to_owned(),
                Host {
                    address,
                    capacity,
                    memory: host.memory.map(|(size, _)| size),
                    labels: host.labels,
                    user: host.user,
                    port: host.port,
                },
            );
        }
    }
    hosts
}

fn fleet_name(checker: &mut Checker, entry: &Entry<'_>, fleet: &mut FleetDraft) {
    if let Some(name) = checker.string(entry.item, entry.key) {
        if name.is_empty() {
            checker.problem(span_of(entry.item), "[fleet] `name` is empty", None);
        } else {
            fleet.name = Some(name.to_owned());
        }
    }
}

/// `[fleet] binary`: an absolute path that goes into the hosts' shell
/// commands as it is, so only plain characters.
fn binary(checker: &mut Checker, entry: &Entry<'_>, fleet: &mut FleetDraft) {
    let Some(path) = checker.string(entry.item, entry.key) else {
        return;
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+');
    let named = path.rsplit('/').next().is_some_and(|name| !name.is_empty());
    if path.starts_with('/') && named && path.chars().all(plain) && !path.contains("/../") {
        fleet.binary = Some(path.to_owned());
    } else {
        checker.problem(
            span_of(entry.item),
            format!("bad `binary` {path:?}: it must be an absolute file path of letters, digits, '/', '.', '_', '+' and '-'"),
            Some(format!("e.g. binary = \"{DEFAULT_BINARY}\"")),
        );
    }
}

fn ports(checker: &mut Checker, entry: &Entry<'_>, fleet: &mut FleetDraft) {
    let Some(raw) = checker.string(entry.item, entry.key) else {
        return;
    };
    match parse_ports(raw) {
        Some(range) => fleet.ports = Some(range),
        None => checker.problem(
            span_of(entry.item),
            format!("bad port range {raw:?}"),
            Some("write FIRST-LAST, e.g. \"8100-8199\", ports from 1 to 65535".into()),
        ),
    }
}

/// `"A-B"`, with 1 <= A <= B <= 65535.
fn parse_ports(raw: &str) -> Option<PortRange> {
    let (first, last) = raw.split_once('-')?;
    let first: u16 = first.trim().parse().ok()?;
    let last: u16 = last.trim().parse().ok()?;
    (first >= 1 && first <= last).then_some(PortRange { first, last })
}

fn ssh_user(checker: &mut Checker, entry: &Entry<'_>, ssh: &mut SshDraft) {
    if let Some(user) = account(checker, entry) {
        ssh.spec.user = user;
    }
}

fn ssh_path(checker: &mut Checker, entry: &Entry<'_>, ssh: &mut SshDraft) {
    let Some(path) = checker.string(entry.item, entry.key) else {
        return;
    };
    if path.is_empty() {
        checker.problem(
            span_of(entry.item),
            format!("`{}` is empty", entry.key),
            Some("leave it out for ssh's own default".into()),
        );
        return;
    }
    let path = Some(ssh.base_dir.join(path));
    if entry.key == "identity" {
        ssh.spec.identity = path;
    } else {
        ssh.spec.known_hosts = path;
    }
}

/// A login user: a user name as roster.toml's `user` takes one.
fn account(checker: &mut Checker, entry: &Entry<'_>) -> Option<String> {
    let user = checker.string(entry.item, entry.key)?;
    if valid_account(user) {
        return Some(user.to_owned());
    }
    checker.problem(
        span_of(entry.item),
        format!("bad user {user:?}"),
        Some("a user is a name of letters, digits, '.', '_' and '-' (at most 32), not starting with '-'".into()),
    );
    None
}

fn metrics_listen(checker: &mut Checker, entry: &Entry<'_>, metrics: &mut MetricsDraft) {
    if let Some(listen) = checker.string(entry.item, entry.key) {
        metrics.listen = Some((listen.to_owned(), span_of(entry.item)));
    }
}

/// Every placeholder of `[metrics] listen` is known, and the address it
/// gives each host is one roster.toml's `[metrics]` takes.
fn check_metrics_listen(
    checker: &mut Checker,
    listen: &str,
    span: &Range<usize>,
    hosts: &BTreeMap<String, Host>,
) {
    let mut known = true;
    for (_, name) in find(listen) {
        if !HOST_PLACEHOLDERS.contains(&name) {
            known = false;
            checker.problem(
                span.clone(),
                format!("unknown placeholder `{{{name}}}` in [metrics] `listen`"),
                Some("[metrics] `listen` may use {address} and {host}".into()),
            );
        }
    }
    if !known {
        return;
    }
    for (name, host) in hosts {
        let vars = Vars {
            tenant: "",
            agent: "",
            instance: "",
            port: 0,
            address: &host.address,
            host: name,
        };
        let address = vars.substitute(listen);
        if let Err(error) = parse_listen(&address) {
            checker.problem(
                span.clone(),
                format!("[metrics] `listen` gives host `{name}` the address {address:?}: {error}"),
                Some("roster.toml's [metrics] takes an IP address and a port; give the host's `address` as an IP, or write one here".into()),
            );
        }
    }
}

fn host_address(checker: &mut Checker, entry: &Entry<'_>, host: &mut HostDraft) {
    let Some(address) = checker.string(entry.item, entry.key) else {
        return;
    };
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']');
    if address.is_empty() || !address.chars().all(allowed) {
        checker.problem(
            span_of(entry.item),
            format!("bad host address {address:?}"),
            Some("write an IP address or a host name, e.g. \"10.0.0.11\"".into()),
        );
    } else {
        host.address = Some(address.to_owned());
    }
}

fn host_capacity(checker: &mut Checker, entry: &Entry<'_>, host: &mut HostDraft) {
    if let Some(capacity) = checker.integer(entry.item, entry.key, 1, 65535) {
        host.capacity = Some((capacity as u32, span_of(entry.item)));
    }
}

/// A host's `memory` or `[fleet] instance_memory`: a size of at least
/// 1 MiB, with where it is written.
fn memory(checker: &mut Checker, entry: &Entry<'_>) -> Option<(u64, Range<usize>)> {
    let size = checker.size(entry.item, entry.key)?;
    if size < MEMORY_FLOOR {
        checker.problem(
            span_of(entry.item),
            format!("`{}` is below 1MiB", entry.key),
            Some("write e.g. \"4GiB\"".into()),
        );
        return None;
    }
    Some((size, span_of(entry.item)))
}

fn host_user(checker: &mut Checker, entry: &Entry<'_>, host: &mut HostDraft) {
    if let Some(user) = account(checker, entry) {
        host.user = Some(user);
    }
}
