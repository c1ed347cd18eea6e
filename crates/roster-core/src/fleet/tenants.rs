//! `[tenants.NAME]`, and the checks across tables once everything is
//! read: the agents a tenant names exist, pins name known hosts that
//! carry the tenant's labels, pins and instances fit the capacity, each
//! host's capacity fits the port range, instance names are valid.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml_edit::TableLike;

use super::fields::{check_name, labels, name_hint};
use super::model::{Fleet, Host, Placed, PortRange, Template, Tenant};
use super::render::section;
use crate::config::{self, key_span, span_of, Checker, Entry, Key, Read};
use crate::name::AgentName;

/// Where things are written, for the checks across tables.
#[derive(Default)]
pub(super) struct Spans {
    pub(super) host_capacity: BTreeMap<String, Range<usize>>,
    /// Where each host's `memory` is written.
    pub(super) host_memory: BTreeMap<String, Range<usize>>,
    tenant_order: Vec<String>,
    tenant_key: BTreeMap<String, Range<usize>>,
    tenant_host: BTreeMap<String, Range<usize>>,
    tenant_labels: BTreeMap<String, Range<usize>>,
    tenant_agents: BTreeMap<String, Vec<Range<usize>>>,
}

#[derive(Default)]
struct TenantDraft {
    agents: Option<Vec<(String, Range<usize>)>>,
    env: BTreeMap<String, String>,
    host: Option<(String, Range<usize>)>,
    labels: Option<(BTreeMap<String, String>, Range<usize>)>,
}

const TENANT_KEYS: &[Key<TenantDraft>] = &[
    Key::new("agents", Read::Custom(agents)),
    Key::new(
        "env",
        Read::Custom(|checker, entry, tenant: &mut TenantDraft| {
            tenant.env = checker.env(entry.item);
        }),
    ),
    Key::new("host", Read::Custom(pin)),
    Key::new(
        "labels",
        Read::Custom(|checker, entry, tenant: &mut TenantDraft| {
            tenant.labels = Some((labels(checker, entry), span_of(entry.item)));
        }),
    ),
];

pub(super) fn read_tenants(
    checker: &mut Checker,
    table: &dyn TableLike,
    spans: &mut Spans,
) -> BTreeMap<String, Tenant> {
    let mut tenants = BTreeMap::new();
    for (name, item) in table.iter() {
        let name_span = key_span(table, name, item);
        let good_name = check_name(checker, name, "tenant", name_span.clone());
        let Some(tenant_table) = item.as_table_like() else {
            checker.problem(
                span_of(item),
                format!("tenant `{name}` must be a table"),
                Some(format!(
                    "write it as [tenants.{name}] with agents = [\"...\"]"
                )),
            );
            continue;
        };
        let mut tenant = TenantDraft::default();
        checker.read_keys(
            tenant_table,
            TENANT_KEYS,
            &format!("tenant `{name}`"),
            &mut tenant,
        );
        let Some(agents) = tenant.agents else {
            if !tenant_table.contains_key("agents") {
                checker.problem(
                    name_span,
                    format!("tenant `{name}` has no `agents`"),
                    Some("name the templates it runs, e.g. agents = [\"support\"]".into()),
                );
            }
            continue;
        };
        if !good_name {
            continue;
        }
        spans.tenant_order.push(name.to_owned());
        spans.tenant_key.insert(name.to_owned(), name_span);
        spans.tenant_agents.insert(
            name.to_owned(),
            agents.iter().map(|(_, span)| span.clone()).collect(),
        );
        if let Some((_, span)) = &tenant.host {
            spans.tenant_host.insert(name.to_owned(), span.clone());
        }
        if let Some((_, span)) = &tenant.labels {
            spans.tenant_labels.insert(name.to_owned(), span.clone());
        }
        tenants.insert(
            name.to_owned(),
            Tenant {
                agents: agents.into_iter().map(|(agent, _)| agent).collect(),
                env: tenant.env,
                host: tenant.host.map(|(host, _)| host),
                labels: tenant.labels.map(|(labels, _)| labels).unwrap_or_default(),
            },
        );
    }
    tenants
}

fn agents(checker: &mut Checker, entry: &Entry<'_>, tenant: &mut TenantDraft) {
    let Some(array) = entry.item.as_array() else {
        checker.problem(
            span_of(entry.item),
            "`agents` must be an array of template names",
            Some("e.g. agents = [\"support\"]".into()),
        );
        return;
    };
    let mut names: Vec<(String, Range<usize>)> = Vec::new();
    for value in array.iter() {
        let span = value.span().unwrap_or_else(|| span_of(entry.item));
        match value.as_str() {
            Some(name) if names.iter().any(|(seen, _)| seen == name) => checker.problem(
                span,
                format!("agent `{name}` is named twice"),
                Some("a tenant runs one instance of each agent".into()),
            ),
            Some(name) => names.push((name.to_owned(), span)),
            None => checker.problem(span, "every element of `agents` must be a string", None),
        }
    }
    if names.is_empty() && array.is_empty() {
        checker.problem(
            span_of(entry.item),
            "`agents` is empty",
            Some("name the templates the tenant runs, e.g. agents = [\"support\"]".into()),
        );
    }
    tenant.agents = Some(names);
}

fn pin(checker: &mut Checker, entry: &Entry<'_>, tenant: &mut TenantDraft) {
    if let Some(host) = checker.string(entry.item, entry.key) {
        tenant.host = Some((host.to_owned(), span_of(entry.item)));
    }
}

/// The checks that need every table read.
pub(super) fn cross_check(
    checker: &mut Checker,
    spans: &Spans,
    hosts: &BTreeMap<String, Host>,
    templates: &BTreeMap<String, Template>,
    tenants: &BTreeMap<String, Tenant>,
    ports: PortRange,
) {
    let template_names: Vec<&str> = templates.keys().map(String::as_str).collect();
    let host_names: Vec<&str> = hosts.keys().map(String::as_str).collect();
    for (name, host) in hosts {
        if host.capacity > ports.len() {
            checker.problem(
                spans.host_capacity.get(name).cloned().unwrap_or(0..0),
                format!(
                    "host `{name}` takes {} instances, but `ports` {}-{} holds only {} ports",
                    host.capacity,
                    ports.first,
                    ports.last,
                    ports.len()
                ),
                Some("widen [fleet] `ports`, or lower the host's `capacity`".into()),
            );
        }
    }
    let total_capacity: u64 = hosts.values().map(|host| u64::from(host.capacity)).sum();
    let mut total = 0u64;
    let mut pinned: BTreeMap<&str, u64> = BTreeMap::new();
    for name in &spans.tenant_order {
        let Some(tenant) = tenants.get(name) else {
            continue;
        };
        let agent_spans = spans.tenant_agents.get(name).cloned().unwrap_or_default();
        for (agent, span) in tenant.agents.iter().zip(agent_spans) {
            if !templates.contains_key(agent) {
                checker.problem(
                    span.clone(),
                    format!("tenant `{name}` runs agent `{agent}`, but no [agents.{agent}] template is defined"),
                    Some(name_hint(agent, &template_names, "template")),
                );
            }
            let instance = format!("{name}.{agent}");
            if let Err(error) = AgentName::new(&instance) {
                checker.problem(
                    span,
                    format!("instance name {instance:?} is not a valid agent name: {error}"),
                    Some("shorten the tenant's or the template's name".into()),
                );
            }
        }
        let count = tenant.agents.len() as u64;
        if let Some(pin) = &tenant.host {
            let span = spans.tenant_host.get(name).cloned().unwrap_or(0..0);
            check_pin(
                checker,
                name,
                tenant,
                pin,
                span,
                hosts,
                &host_names,
                &mut pinned,
            );
        } else if !tenant.labels.is_empty()
            && !hosts.values().any(|host| host.carries(&tenant.labels))
        {
            checker.problem(
                spans.tenant_labels.get(name).cloned().unwrap_or(0..0),
                format!(
                    "no host carries the labels tenant `{name}` asks for ({})",
                    show(&tenant.labels)
                ),
                Some("give a host these `labels`, or change the tenant's".into()),
            );
        }
        let before = total;
        total += count;
        if before <= total_capacity && total > total_capacity {
            checker.problem(
                spans.tenant_key.get(name).cloned().unwrap_or(0..0),
                format!(
                    "tenant `{name}` brings the fleet to {total} instances, beyond its hosts' total capacity of {total_capacity}"
                ),
                Some("add a host, or raise a host's `capacity`".into()),
            );
        }
    }
}

/// Every instance's section, as a host's roster.toml will have it, is one
/// roster's config reader takes (a tenant's name in `user = "{tenant}"`
/// may be too long for a user name, say). The template was checked with
/// its first tenant; this checks the others, each at its `agents` entry,
/// on its pinned host or else the first it may run on, at the range's
/// first port.
pub(super) fn check_instances(
    checker: &mut Checker,
    fleet: &Fleet,
    spans: &Spans,
    base_dir: &Path,
) {
    for (tenant_name, tenant) in &fleet.tenants {
        let host = match &tenant.host {
            Some(pin) => Some(pin.as_str()),
            None => fleet
                .hosts
                .iter()
                .find(|(_, host)| host.carries(&tenant.labels))
                .map(|(name, _)| name.as_str()),
        };
        let agent_spans = spans
            .tenant_agents
            .get(tenant_name)
            .cloned()
            .unwrap_or_default();
        for (agent, span) in tenant.agents.iter().zip(agent_spans) {
            let instance = Placed {
                name: format!("{tenant_name}.{agent}"),
                tenant: tenant_name.clone(),
                agent: agent.clone(),
                host: host.unwrap_or("").to_owned(),
                port: fleet.ports.first,
                digest: String::new(),
            };
            let text = section(fleet, &instance);
            if let Err(error) = config::parse("roster.toml", &text, base_dir) {
                for problem in error.diagnostics {
                    checker.problem(
                        span.clone(),
                        format!(
                            "instance `{}` would be refused by its host's roster.toml: {}",
                            instance.name, problem.message
                        ),
                        problem.hint,
                    );
                }
            }
        }
    }
}

/// A pin names a known host that carries the tenant's labels and has
/// room left for it after the pins before it.
#[allow(clippy::too_many_arguments)]
fn check_pin<'a>(
    checker: &mut Checker,
    name: &str,
    tenant: &Tenant,
    pin: &'a str,
    span: Range<usize>,
    hosts: &BTreeMap<String, Host>,
    host_names: &[&str],
    pinned: &mut BTreeMap<&'a str, u64>,
) {
    let Some(host) = hosts.get(pin) else {
        checker.problem(
            span,
            format!("tenant `{name}` is pinned to host `{pin}`, but no [hosts.{pin}] is defined"),
            Some(name_hint(pin, host_names, "host")),
        );
        return;
    };
    if !host.carries(&tenant.labels) {
        checker.problem(
            span.clone(),
            format!(
                "tenant `{name}` is pinned to host `{pin}`, which lacks the labels it asks for ({})",
                show(&tenant.labels)
            ),
            Some("pin it to a host with these `labels`, or change the tenant's".into()),
        );
    }
    let count = pinned.entry(pin).or_default();
    let before = *count;
    *count += tenant.agents.len() as u64;
    let capacity = u64::from(host.capacity);
    if before <= capacity && *count > capacity {
        checker.problem(
            span,
            format!(
                "tenant `{name}` brings the instances pinned to host `{pin}` to {}, beyond its capacity of {capacity}",
                *count
            ),
            Some("pin it to another host, or raise the host's `capacity`".into()),
        );
    }
}

fn show(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key} = {value:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
