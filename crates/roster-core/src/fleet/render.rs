//! Rendering a host's roster.toml from the fleet and its placement: the
//! fleet's `[metrics]` with the host's `{address}`, then one
//! `[agents."TENANT.AGENT"]` section per instance on the host, every
//! placeholder replaced and the tenant's `env` over the template's. The
//! text is written here, key by key, so that it is the same byte for
//! byte from one run to the next (its digest is what `plan` compares).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::model::{Fleet, Placed, Placement, TemplateValue};
use super::placeholders::Vars;

/// The roster.toml of `host`: its `[metrics]` and its instances, sorted
/// by name. A host the fleet does not define gets the header only.
pub fn render(fleet: &Fleet, placement: &Placement, host: &str) -> String {
    let mut text = format!(
        "# roster.toml of host {host} in fleet {}, written by `roster fleet`:\n\
         # edit the fleet file, not this one.\n",
        fleet.name
    );
    let Some(host_spec) = fleet.hosts.get(host) else {
        return text;
    };
    // Each instance's port, outside its section (so its digest does not
    // change), for `hosted::read_rendered`: the next placement keeps it.
    for instance in placement.on_host(host) {
        let _ = writeln!(text, "{PORT_MARK}{} {}", instance.name, instance.port);
    }
    if let Some(listen) = &fleet.metrics_listen {
        let vars = Vars {
            tenant: "",
            agent: "",
            instance: "",
            port: 0,
            address: &host_spec.address,
            host,
        };
        let _ = write!(
            text,
            "\n[metrics]\nlisten = {}\n",
            string(&vars.substitute(listen))
        );
    }
    for instance in placement.on_host(host) {
        text.push('\n');
        text.push_str(&section(fleet, instance));
    }
    text
}

/// The start of the header comment line giving an instance's port.
pub(super) const PORT_MARK: &str = "# port of ";

/// One instance's `[agents."NAME"]` section (with its sub-tables), as
/// `render` writes it.
pub(super) fn section(fleet: &Fleet, instance: &Placed) -> String {
    let address = fleet
        .hosts
        .get(&instance.host)
        .map(|host| host.address.as_str())
        .unwrap_or("");
    let vars = Vars {
        tenant: &instance.tenant,
        agent: &instance.agent,
        instance: &instance.name,
        port: instance.port,
        address,
        host: &instance.host,
    };
    let tenant_env = fleet
        .tenants
        .get(&instance.tenant)
        .map(|tenant| tenant.env.clone())
        .unwrap_or_default();
    let template = fleet
        .templates
        .get(&instance.agent)
        .map(|template| template.table.as_slice())
        .unwrap_or(&[]);
    let header = format!("agents.{}", key(&instance.name));
    let mut text = format!("[{header}]\n");
    // Whose instance it is: status and /metrics carry it (a template
    // that names its own `tenant` keeps it).
    if !template.iter().any(|(name, _)| name == "tenant") {
        let _ = writeln!(text, "tenant = {}", string(&instance.tenant));
    }
    let mut tables = Vec::new();
    let mut env_written = false;
    for (name, value) in template {
        if name == "env" {
            let merged = merged_env(value, &tenant_env, &vars);
            let _ = writeln!(text, "env = {}", inline_env(&merged));
            env_written = true;
        } else if let TemplateValue::Table(entries) = value {
            tables.push((name, entries));
        } else {
            let _ = writeln!(text, "{} = {}", key(name), inline(value, &vars));
        }
    }
    if !env_written && !tenant_env.is_empty() {
        let _ = writeln!(text, "env = {}", inline_env(&tenant_env));
    }
    for (name, entries) in tables {
        let _ = writeln!(text, "\n[{header}.{}]", key(name));
        for (name, value) in entries {
            let _ = writeln!(text, "{} = {}", key(name), inline(value, &vars));
        }
    }
    text
}

/// The template's `env`, placeholders replaced, with the tenant's over it.
fn merged_env(
    value: &TemplateValue,
    tenant_env: &BTreeMap<String, String>,
    vars: &Vars<'_>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let TemplateValue::Table(entries) = value {
        for (name, value) in entries {
            if let TemplateValue::String(text) = value {
                env.insert(name.clone(), vars.substitute(text));
            }
        }
    }
    env.extend(
        tenant_env
            .iter()
            .map(|(name, value)| (name.clone(), value.clone())),
    );
    env
}

fn inline_env(env: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = env
        .iter()
        .map(|(name, value)| format!("{} = {}", key(name), string(value)))
        .collect();
    if pairs.is_empty() {
        "{}".into()
    } else {
        format!("{{ {} }}", pairs.join(", "))
    }
}

/// A value as inline TOML, placeholders replaced in every string.
fn inline(value: &TemplateValue, vars: &Vars<'_>) -> String {
    match value {
        TemplateValue::String(text) => string(&vars.substitute(text)),
        TemplateValue::Integer(number) => number.to_string(),
        TemplateValue::Float(number) if number.is_nan() => "nan".into(),
        TemplateValue::Float(number) if number.is_infinite() => {
            if *number > 0.0 { "inf" } else { "-inf" }.into()
        }
        TemplateValue::Float(number) => format!("{number:?}"),
        TemplateValue::Boolean(boolean) => boolean.to_string(),
        TemplateValue::Array(elements) => {
            let elements: Vec<String> = elements
                .iter()
                .map(|element| inline(element, vars))
                .collect();
            format!("[{}]", elements.join(", "))
        }
        TemplateValue::Table(entries) if entries.is_empty() => "{}".into(),
        TemplateValue::Table(entries) => {
            let pairs: Vec<String> = entries
                .iter()
                .map(|(name, value)| format!("{} = {}", key(name), inline(value, vars)))
                .collect();
            format!("{{ {} }}", pairs.join(", "))
        }
    }
}

/// A key: bare when TOML allows it, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_owned()
    } else {
        string(name)
    }
}

/// A TOML basic string.
fn string(text: &str) -> String {
    crate::config::toml_string(text)
}

#[cfg(test)]
mod tests {
    use super::{key, string};

    #[test]
    fn strings_and_keys_are_quoted_as_toml_wants() {
        assert_eq!(string("a\"b\\c\nd\u{7f}é"), r#""a\"b\\c\nd\u007Fé""#);
        assert_eq!(key("c01.support"), "\"c01.support\"");
        assert_eq!(key("PORT_2-x"), "PORT_2-x");
        assert_eq!(key(""), "\"\"");
    }
}
