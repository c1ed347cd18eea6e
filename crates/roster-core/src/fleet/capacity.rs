//! A host's capacity in instances: its `capacity`, or as many instances as
//! its `memory` holds, or the smaller of the two when both are given.
//! Placement counts instances; this turns memory into a count once, when
//! the file is read, so that every command places the same way.
//!
//! An instance's memory is `[fleet] instance_memory` when set; otherwise
//! the largest `memory_max` of the fleet's templates (an instance may grow
//! to its limit, so a host is never planned past what its instances may
//! take); otherwise [`DEFAULT_INSTANCE_MEMORY`], the figure `roster init`
//! plans an agent with.

use std::collections::BTreeMap;
use std::ops::Range;

use super::model::{Host, Template, TemplateValue};
use crate::config::Checker;
use crate::units::{format_size, parse_size};

/// An instance's memory when neither `instance_memory` nor any template's
/// `memory_max` says: 256 MiB.
pub const DEFAULT_INSTANCE_MEMORY: u64 = 256 * 1024 * 1024;

/// The smallest `memory` or `instance_memory` taken: 1 MiB.
pub(super) const MEMORY_FLOOR: u64 = 1024 * 1024;

/// What one instance is planned to use: `instance_memory`, else the
/// templates' largest `memory_max`, else the default.
pub(super) fn instance_memory(
    instance_memory: Option<u64>,
    templates: &BTreeMap<String, Template>,
) -> u64 {
    instance_memory
        .or_else(|| templates.values().filter_map(memory_max).max())
        .unwrap_or(DEFAULT_INSTANCE_MEMORY)
}

/// A template's `memory_max`, when it sets one that reads (a bad one is
/// reported where the template is checked).
fn memory_max(template: &Template) -> Option<u64> {
    template
        .table
        .iter()
        .find(|(key, _)| key == "memory_max")
        .and_then(|(_, value)| match value {
            TemplateValue::String(raw) => parse_size(raw).ok(),
            TemplateValue::Integer(bytes) => u64::try_from(*bytes).ok(),
            _ => None,
        })
}

/// Lowers the capacity of every host with `memory` to what its memory
/// holds at `per_instance` each, and a host with only `memory` to the
/// `ports` it can give out (an explicit `capacity` beyond them is an
/// error elsewhere); a host whose memory holds none is a problem at its
/// `memory` (from `spans`). Hosts without `memory` come with a capacity.
pub(super) fn apply_memory(
    checker: &mut Checker,
    hosts: &mut BTreeMap<String, Host>,
    spans: &BTreeMap<String, Range<usize>>,
    per_instance: u64,
    ports: u32,
) {
    for (name, host) in hosts.iter_mut() {
        let Some(memory) = host.memory else {
            continue;
        };
        let fits = u32::try_from(memory / per_instance.max(1)).unwrap_or(u32::MAX);
        if fits == 0 {
            checker.problem(
                spans.get(name).cloned().unwrap_or(0..0),
                format!(
                    "host `{name}` has memory = {} and holds no instance of {} each",
                    format_size(memory),
                    format_size(per_instance)
                ),
                Some(
                    "raise its `memory`, lower [fleet] `instance_memory`, or give it `capacity` instead"
                        .into(),
                ),
            );
        }
        host.capacity = match host.capacity {
            // `memory` alone: parse leaves the capacity unbounded.
            u32::MAX => fits.min(ports),
            given => given.min(fits),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(memory_max: Option<TemplateValue>) -> Template {
        let mut table = vec![(
            "command".to_owned(),
            TemplateValue::String("agent".to_owned()),
        )];
        if let Some(value) = memory_max {
            table.push(("memory_max".to_owned(), value));
        }
        Template { table }
    }

    #[test]
    fn an_instance_is_planned_at_the_largest_limit_then_the_default() {
        let mut templates = BTreeMap::new();
        assert_eq!(instance_memory(None, &templates), DEFAULT_INSTANCE_MEMORY);
        templates.insert("a".to_owned(), template(None));
        assert_eq!(instance_memory(None, &templates), DEFAULT_INSTANCE_MEMORY);
        templates.insert(
            "b".to_owned(),
            template(Some(TemplateValue::String("1GiB".into()))),
        );
        templates.insert(
            "c".to_owned(),
            template(Some(TemplateValue::Integer(512 * 1024 * 1024))),
        );
        assert_eq!(instance_memory(None, &templates), 1024 * 1024 * 1024);
        assert_eq!(
            instance_memory(Some(MEMORY_FLOOR), &templates),
            MEMORY_FLOOR
        );
    }
}
