//! `instances = N`: an agent written once, run as N copies named
//! `NAME.1` … `NAME.N`, with `{instance}` replaced by each copy's number in
//! the keys that tell copies apart ([`INSTANCE_KEYS`]). Each copy is then
//! checked as an agent of its own; a mistake common to all is told once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use toml_edit::{Item, TableLike, Value};

use super::diagnostics::{key_span, Checker};
use super::model::{AgentSpec, Instance, StderrMode};
use crate::name::AgentName;

/// The most copies `instances` makes of one agent.
pub const MAX_INSTANCES: u32 = 1000;

/// The keys in which `{instance}` is replaced by a copy's number (in every
/// string inside them, `[defaults]`' values included).
pub const INSTANCE_KEYS: &[&str] = &[
    "command", "cwd", "env", "env_file", "listen", "health", "metrics",
];

/// `{instance}`, as written in a key of an agent with `instances`.
const INSTANCE_MARK: &str = "{instance}";

/// What every agent of `[agents]` is read with.
#[derive(Clone, Copy)]
pub(crate) struct Shared<'a> {
    /// `[defaults]`' items, as written.
    pub(crate) defaults: &'a [(String, Item)],
    /// `[log]`'s `stderr`.
    pub(crate) stderr: StderrMode,
    /// What relative paths are relative to.
    pub(crate) base_dir: &'a Path,
}

/// One `[agents.NAME]` table and where it is written.
pub(crate) struct Place<'a> {
    /// The name as written.
    pub(crate) name: &'a str,
    /// The name, when it is a valid one.
    pub(crate) agent_name: Option<&'a AgentName>,
    pub(crate) table: &'a dyn TableLike,
    pub(crate) name_span: Range<usize>,
}

/// The agents read so far, and who listens where.
#[derive(Default)]
pub(crate) struct Found {
    pub(crate) agents: BTreeMap<AgentName, AgentSpec>,
    listening: BTreeMap<SocketAddr, String>,
}

/// The copies an agent's `instances` asks for, when it is a number in
/// range (one that is not is reported as the agent's keys are read).
fn instances(table: &dyn TableLike) -> Option<u32> {
    let count = table.get("instances")?.as_integer()?;
    u32::try_from(count)
        .ok()
        .filter(|count| (1..=MAX_INSTANCES).contains(count))
}

impl Checker {
    /// The agent at `place`, or its copies when it has `instances`, into
    /// `found`; no address is listened on by two.
    pub(crate) fn agent_and_copies(
        &mut self,
        place: &Place<'_>,
        shared: &Shared<'_>,
        found: &mut Found,
    ) {
        let name = place.name;
        let count = instances(place.table);
        if let (Some(_), Some(deploy)) = (count, place.table.get("deploy")) {
            self.problem(
                key_span(place.table, "deploy", deploy),
                format!("agent `{name}` has `instances` and is shipped as releases"),
                Some(
                    "copies of one agent cannot share releases yet: write each copy as an agent of its own, or drop `instances`"
                        .into(),
                ),
            );
            return;
        }
        let copies: Vec<Option<u32>> = match count {
            Some(count) => (1..=count).map(Some).collect(),
            None => vec![None],
        };
        for instance in copies {
            let before = self.problems.len();
            self.copy(place, shared, instance, found);
            // The same mistake in every copy is told once.
            if self.problems.len() > before {
                break;
            }
        }
    }

    /// Copy `instance` of the agent at `place` (`None`: the agent itself).
    fn copy(
        &mut self,
        place: &Place<'_>,
        shared: &Shared<'_>,
        instance: Option<u32>,
        found: &mut Found,
    ) {
        let name = place.name;
        let copy_name = match instance {
            Some(number) => format!("{name}.{number}"),
            None => name.to_owned(),
        };
        let copy = match (place.agent_name, instance) {
            (Some(_), Some(number)) => {
                match AgentName::new(&copy_name) {
                    Ok(copy) => Some(copy),
                    Err(error) => {
                        self.problem(
                        place.name_span.clone(),
                        format!("copy {number} of agent `{name}` would be named {copy_name:?}: {error}"),
                        Some("shorten the agent's name".into()),
                    );
                        return;
                    }
                }
            }
            (agent_name, _) => agent_name.cloned(),
        };
        let spec = self.agent(
            &copy_name,
            place.table,
            place.name_span.clone(),
            shared,
            instance,
        );
        for address in spec.iter().flat_map(|spec| spec.listen.values()) {
            if let Some(other) = found.listening.insert(*address, copy_name.clone()) {
                let hint = if instance.is_some() {
                    "give each copy its own address, e.g. \"127.0.0.1:80{instance}\""
                } else {
                    "give each agent its own address"
                };
                self.problem(
                    place.name_span.clone(),
                    format!("agent `{copy_name}` listens on {address}, as agent `{other}` does"),
                    Some(hint.into()),
                );
            }
        }
        let (Some(copy), Some(mut spec)) = (copy, spec) else {
            return;
        };
        if let (Some(of), Some(number)) = (place.agent_name, instance) {
            spec.instance = Some(Instance {
                of: of.clone(),
                number,
            });
        }
        match found.agents.entry(copy) {
            std::collections::btree_map::Entry::Occupied(taken) => self.problem(
                place.name_span.clone(),
                format!(
                    "agent `{}` is written twice: as an agent and as a copy made by `instances`",
                    taken.key()
                ),
                Some("rename one of them".into()),
            ),
            std::collections::btree_map::Entry::Vacant(free) => {
                free.insert(spec);
            }
        }
    }
}

impl Checker {
    /// Problems found since `before` without a place (in a value whose
    /// `{instance}` was replaced, which loses its place in the file) are
    /// put at `span`, where that value is written.
    pub(crate) fn relocate(&mut self, before: usize, span: Range<usize>) {
        for problem in &mut self.problems[before..] {
            if problem.span == (0..0) {
                problem.span = span.clone();
            }
        }
    }
}

/// `item` with `{instance}` replaced by `instance` in each of its strings,
/// when `key` is one of the [`INSTANCE_KEYS`] and there is a number.
pub(crate) fn numbered<'a>(key: &str, item: &'a Item, instance: Option<u32>) -> Cow<'a, Item> {
    match instance {
        Some(number) if INSTANCE_KEYS.contains(&key) && mentions_instance(item) => {
            let mut item = item.clone();
            let number = number.to_string();
            replace_in_item(&mut item, &number);
            Cow::Owned(item)
        }
        _ => Cow::Borrowed(item),
    }
}

fn mentions_instance(item: &Item) -> bool {
    match item {
        Item::Value(value) => value_mentions(value),
        Item::Table(table) => table.iter().any(|(_, item)| mentions_instance(item)),
        Item::ArrayOfTables(tables) => tables
            .iter()
            .any(|table| table.iter().any(|(_, item)| mentions_instance(item))),
        Item::None => false,
    }
}

fn value_mentions(value: &Value) -> bool {
    match value {
        Value::String(text) => text.value().contains(INSTANCE_MARK),
        Value::Array(array) => array.iter().any(value_mentions),
        Value::InlineTable(table) => table.iter().any(|(_, value)| value_mentions(value)),
        _ => false,
    }
}

fn replace_in_item(item: &mut Item, number: &str) {
    match item {
        Item::Value(value) => replace_in_value(value, number),
        Item::Table(table) => {
            for (_, item) in table.iter_mut() {
                replace_in_item(item, number);
            }
        }
        Item::ArrayOfTables(tables) => {
            for table in tables.iter_mut() {
                for (_, item) in table.iter_mut() {
                    replace_in_item(item, number);
                }
            }
        }
        Item::None => {}
    }
}

fn replace_in_value(value: &mut Value, number: &str) {
    match value {
        Value::String(text) if text.value().contains(INSTANCE_MARK) => {
            *value = Value::from(text.value().replace(INSTANCE_MARK, number));
        }
        Value::Array(array) => {
            for value in array.iter_mut() {
                replace_in_value(value, number);
            }
        }
        Value::InlineTable(table) => {
            for (_, value) in table.iter_mut() {
                replace_in_value(value, number);
            }
        }
        _ => {}
    }
}
