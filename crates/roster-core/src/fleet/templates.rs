//! `[agents.NAME]` templates: read as written (`Template`), every
//! placeholder checked where it is written, and every value checked by
//! roster.toml's own agent reader. For that check the placeholders of
//! the file's text are replaced by a sample instance's values (the first
//! tenant that runs the template, the first host, the first port), the
//! text is read again, and each problem's place is mapped back to the
//! file as written: a problem inside a replaced placeholder points at
//! the placeholder.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml_edit::{Item, TableLike, Value};

use super::fields::check_name;
use super::model::{PortRange, Template, TemplateValue, Tenant};
use super::placeholders::{find, Vars, INSTANCE_PLACEHOLDERS};
use crate::config::{closest, key_span, span_of, Checker};

/// A placeholder of the file's text and the sample value it stands for
/// while the template is checked.
struct Replacement {
    span: Range<usize>,
    value: String,
}

/// What walking one template needs.
struct Walk<'a> {
    text: &'a str,
    template: &'a str,
    vars: Vars<'a>,
    /// Used by more than one tenant: a `listen` address needs `{port}`.
    shared: bool,
    replacements: Vec<Replacement>,
}

pub(super) fn read_templates(
    checker: &mut Checker,
    text: &str,
    table: &dyn TableLike,
    tenants: &BTreeMap<String, Tenant>,
    sample_host: &(String, String),
    ports: Option<PortRange>,
    base_dir: &Path,
) -> BTreeMap<String, Template> {
    let mut templates = BTreeMap::new();
    let mut replacements = Vec::new();
    let mut names = Vec::new();
    for (name, item) in table.iter() {
        let name_span = key_span(table, name, item);
        if !check_name(checker, name, "template", name_span) {
            continue;
        }
        let Some(template_table) = item.as_table_like() else {
            checker.problem(
                span_of(item),
                format!("template `{name}` must be a table"),
                Some(format!("write it as [agents.{name}] with a `command` key")),
            );
            continue;
        };
        // In a fleet, `{instance}` is the instance's name and copies are
        // instances placed on hosts, one per tenant and agent.
        if let Some(instances) = template_table.get("instances") {
            checker.problem(
                key_span(template_table, "instances", instances),
                format!("template `{name}` has `instances`"),
                Some(
                    "a fleet runs one instance of a template per tenant, placed by capacity;                      add tenants, or split the agent into templates (`instances` is for one server's roster.toml)"
                        .into(),
                ),
            );
        }
        let users: Vec<&String> = tenants
            .iter()
            .filter(|(_, tenant)| tenant.agents.iter().any(|agent| agent == name))
            .map(|(tenant, _)| tenant)
            .collect();
        let tenant = users
            .first()
            .map(|tenant| tenant.as_str())
            .unwrap_or("tenant");
        let instance = format!("{tenant}.{name}");
        let mut walk = Walk {
            text,
            template: name,
            vars: Vars {
                tenant,
                agent: name,
                instance: &instance,
                port: ports.map(|ports| ports.first).unwrap_or(8100),
                address: &sample_host.1,
                host: &sample_host.0,
            },
            shared: users.len() > 1,
            replacements: Vec::new(),
        };
        let table = walk.table(checker, template_table, &[]);
        replacements.append(&mut walk.replacements);
        names.push(name.to_owned());
        templates.insert(name.to_owned(), Template { table });
    }
    check_values(checker, text, &names, replacements, base_dir);
    templates
}

impl Walk<'_> {
    fn table(
        &mut self,
        checker: &mut Checker,
        table: &dyn TableLike,
        path: &[&str],
    ) -> Vec<(String, TemplateValue)> {
        let mut entries = Vec::new();
        for (key, item) in table.iter() {
            let mut inner = path.to_vec();
            inner.push(key);
            if let Some(value) = self.item(checker, item, &inner) {
                entries.push((key.to_owned(), value));
            }
        }
        entries
    }

    fn item(&mut self, checker: &mut Checker, item: &Item, path: &[&str]) -> Option<TemplateValue> {
        match item {
            Item::None => None,
            Item::Value(value) => self.value(checker, value, path),
            Item::Table(table) => Some(TemplateValue::Table(self.table(checker, table, path))),
            Item::ArrayOfTables(array) => Some(TemplateValue::Array(
                array
                    .iter()
                    .map(|table| TemplateValue::Table(self.table(checker, table, path)))
                    .collect(),
            )),
        }
    }

    fn value(
        &mut self,
        checker: &mut Checker,
        value: &Value,
        path: &[&str],
    ) -> Option<TemplateValue> {
        Some(match value {
            Value::String(string) => {
                let span = string.span().unwrap_or(0..0);
                self.placeholders(checker, string.value(), span, path);
                TemplateValue::String(string.value().clone())
            }
            Value::Integer(number) => TemplateValue::Integer(*number.value()),
            Value::Float(number) => TemplateValue::Float(*number.value()),
            Value::Boolean(boolean) => TemplateValue::Boolean(*boolean.value()),
            Value::Datetime(_) => {
                checker.problem(
                    value.span().unwrap_or(0..0),
                    format!("a date has no meaning in template `{}`", self.template),
                    Some("quote it if it is meant as text".into()),
                );
                return None;
            }
            Value::Array(array) => TemplateValue::Array(
                array
                    .iter()
                    .filter_map(|element| self.value(checker, element, path))
                    .collect(),
            ),
            Value::InlineTable(table) => TemplateValue::Table(self.table(checker, table, path)),
        })
    }

    /// Checks the placeholders of one string written at `span`, and notes
    /// the sample value of each known one.
    fn placeholders(
        &mut self,
        checker: &mut Checker,
        value: &str,
        span: Range<usize>,
        path: &[&str],
    ) {
        let raw = self.text.get(span.clone()).unwrap_or("");
        for (range, name) in find(raw) {
            let at = span.start + range.start..span.start + range.end;
            if INSTANCE_PLACEHOLDERS.contains(&name) {
                let value = self.vars.substitute(&raw[range]);
                self.replacements.push(Replacement { span: at, value });
            } else {
                checker.problem(
                    at,
                    format!(
                        "unknown placeholder `{{{name}}}` in template `{}`",
                        self.template
                    ),
                    Some(match closest(name, INSTANCE_PLACEHOLDERS) {
                        Some(known) => format!("did you mean `{{{known}}}`?"),
                        None => format!(
                            "placeholders: {}",
                            INSTANCE_PLACEHOLDERS
                                .iter()
                                .map(|known| format!("{{{known}}}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    }),
                );
            }
        }
        if self.shared && path.first() == Some(&"listen") && !value.contains("{port}") {
            checker.problem(
                span,
                format!(
                    "template `{}` listens on {value:?} for every tenant that runs it",
                    self.template
                ),
                Some("two instances on one host would share the address: write {port} in it, e.g. \"127.0.0.1:{port}\"".into()),
            );
        }
    }
}

/// Reads every template's values with roster.toml's agent reader, on the
/// file's text with the placeholders replaced by sample values, and
/// reports each problem where it is written in the file.
fn check_values(
    checker: &mut Checker,
    text: &str,
    names: &[String],
    mut replacements: Vec<Replacement>,
    base_dir: &Path,
) {
    replacements.sort_by_key(|replacement| replacement.span.start);
    let mut substituted = String::with_capacity(text.len());
    let mut rest = 0;
    for replacement in &replacements {
        substituted.push_str(text.get(rest..replacement.span.start).unwrap_or(""));
        substituted.push_str(&replacement.value);
        rest = replacement.span.end;
    }
    substituted.push_str(text.get(rest..).unwrap_or(""));
    // The sample values are names, numbers and addresses: they cannot
    // break the TOML they are put in, so a failure here is a bug, and the
    // values go unchecked rather than the user being told about it.
    let Ok(document) = toml_edit::Document::parse(substituted) else {
        return;
    };
    let Some(agents) = document.get("agents").and_then(Item::as_table_like) else {
        return;
    };
    let mut values = Checker::default();
    for name in names {
        let Some((item, table)) = agents
            .get(name)
            .and_then(|item| Some((item, item.as_table_like()?)))
        else {
            continue;
        };
        let name_span = key_span(agents, name, item);
        let shared = crate::config::Shared {
            defaults: &[],
            stderr: crate::config::StderrMode::default(),
            base_dir,
        };
        values.agent(name, table, name_span, &shared, None);
    }
    for mut problem in values.problems {
        problem.span =
            back(&replacements, problem.span.start)..back(&replacements, problem.span.end);
        checker.problems.push(problem);
    }
}

/// Where an offset of the substituted text sits in the file as written.
fn back(replacements: &[Replacement], offset: usize) -> usize {
    let mut shift: isize = 0;
    for replacement in replacements {
        let start = replacement.span.start as isize + shift;
        let length = replacement.value.len() as isize;
        if (offset as isize) < start {
            break;
        }
        if (offset as isize) < start + length {
            return replacement.span.start;
        }
        shift += length - replacement.span.len() as isize;
    }
    (offset as isize - shift).max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::{back, Replacement};

    #[test]
    fn offsets_map_back_across_replacements() {
        // "a{port}b{host}c" became "a8100bh01c".
        let replacements = [
            Replacement {
                span: 1..7,
                value: "8100".into(),
            },
            Replacement {
                span: 8..14,
                value: "h01".into(),
            },
        ];
        assert_eq!(back(&replacements, 0), 0);
        assert_eq!(back(&replacements, 2), 1);
        assert_eq!(back(&replacements, 5), 7);
        assert_eq!(back(&replacements, 6), 8);
        assert_eq!(back(&replacements, 9), 14);
    }
}
