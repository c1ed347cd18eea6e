//! What the fleet's tables share: names (of hosts, templates and
//! tenants), label tables, and the "did you mean" of a name.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::config::{closest, span_of, Checker, Entry};
use crate::name::AgentName;

/// A host, template or tenant name: a valid agent name, and for tenants
/// and templates without `.`, which separates them in `TENANT.AGENT`.
pub(super) fn check_name(
    checker: &mut Checker,
    name: &str,
    what: &str,
    span: Range<usize>,
) -> bool {
    let error = match AgentName::new(name) {
        Err(error) => error.to_string(),
        Ok(_) if what != "host" && name.contains('.') => {
            "'.' separates the tenant from the agent in an instance's name".into()
        }
        Ok(_) => return true,
    };
    checker.problem(
        span,
        format!("bad {what} name {name:?}: {error}"),
        Some("names are 1 to 64 of letters, digits, '_', '-' (and '.' for hosts), starting with a letter or digit".into()),
    );
    false
}

/// A table of string labels (`labels = { region = "eu" }`).
pub(super) fn labels(checker: &mut Checker, entry: &Entry<'_>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Some(table) = entry.item.as_table_like() else {
        checker.problem(
            span_of(entry.item),
            "`labels` must be a table of strings",
            Some("e.g. labels = { region = \"eu\" }".into()),
        );
        return labels;
    };
    for (key, value) in table.iter() {
        match value.as_str() {
            Some(text) => {
                labels.insert(key.to_owned(), text.to_owned());
            }
            None => checker.problem(
                span_of(value),
                format!("label `{key}` must be a string"),
                Some(format!("quote it: {key} = \"...\"")),
            ),
        }
    }
    labels
}

/// "did you mean" for a name among `known`, or else the list of them.
pub(super) fn name_hint(name: &str, known: &[&str], what: &str) -> String {
    match closest(name, known) {
        Some(suggestion) => format!("did you mean `{suggestion}`?"),
        None if known.is_empty() => format!("no {what} is defined"),
        None => format!("known {what}s: {}", known.join(", ")),
    }
}
