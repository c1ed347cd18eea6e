//! `[[notify]]`: where alerts are delivered, each table with exactly one
//! target (webhook, alertmanager, exec or file) and an optional timeout.

use std::ops::Range;
use std::path::Path;

use toml_edit::{Item, TableLike, Value};

use super::diagnostics::{key_span, span_of, Checker};
use crate::notify::{
    parse_receiver_url, NotifySpec, NotifyTarget, DEFAULT_NOTIFY_TIMEOUT, NOTIFY_KEYS,
    NOTIFY_TARGETS,
};

impl Checker {
    /// `[[notify]]`: an array of tables, each with exactly one target.
    pub(super) fn notify(&mut self, item: &Item, base_dir: &Path) -> Vec<NotifySpec> {
        let hint = "write each notifier as a [[notify]] table with one of webhook, alertmanager, exec or file";
        let mut tables: Vec<(&dyn TableLike, Range<usize>)> = Vec::new();
        match item {
            Item::ArrayOfTables(array) => {
                for table in array.iter() {
                    tables.push((table as &dyn TableLike, table.span().unwrap_or(0..0)));
                }
            }
            Item::Value(Value::Array(array)) => {
                for value in array.iter() {
                    match value.as_inline_table() {
                        Some(table) => {
                            tables.push((table as &dyn TableLike, table.span().unwrap_or(0..0)))
                        }
                        None => self.problem(
                            value.span().unwrap_or(0..0),
                            "every `notify` entry must be a table",
                            Some(hint.into()),
                        ),
                    }
                }
            }
            _ => {
                self.problem(
                    span_of(item),
                    "`notify` must be an array of tables",
                    Some(hint.into()),
                );
            }
        }
        let mut specs = Vec::new();
        for (index, (table, table_span)) in tables.into_iter().enumerate() {
            if let Some(spec) = self.notifier(index + 1, table, table_span, base_dir) {
                specs.push(spec);
            }
        }
        specs
    }

    fn notifier(
        &mut self,
        number: usize,
        table: &dyn TableLike,
        table_span: Range<usize>,
        base_dir: &Path,
    ) -> Option<NotifySpec> {
        let place = format!("[[notify]] #{number}");
        let target_hint = "give exactly one of webhook = \"http://...\", alertmanager = \"http://127.0.0.1:9093\", exec = [\"cmd\", ...] or file = \"path\"";
        let problems_before = self.problems.len();
        let mut targets: Vec<(NotifyTarget, Range<usize>)> = Vec::new();
        let mut target_keys = 0;
        let mut timeout = DEFAULT_NOTIFY_TIMEOUT;
        for (key, item) in table.iter() {
            if NOTIFY_TARGETS.contains(&key) {
                target_keys += 1;
            }
            match key {
                "webhook" | "alertmanager" => {
                    let Some(url) = self.string(item, key) else {
                        continue;
                    };
                    match parse_receiver_url(url) {
                        Ok(http) => {
                            let target = if key == "webhook" {
                                NotifyTarget::Webhook(http)
                            } else {
                                NotifyTarget::Alertmanager(http)
                            };
                            targets.push((target, span_of(item)));
                        }
                        Err(error) => self.problem(
                            span_of(item),
                            format!("bad {key} URL {url:?}: {error}"),
                            Some(if key == "webhook" {
                                "e.g. webhook = \"http://127.0.0.1:5001/alerts\"".into()
                            } else {
                                "e.g. alertmanager = \"http://127.0.0.1:9093\"".into()
                            }),
                        ),
                    }
                }
                "exec" => {
                    let empty = item.as_array().is_some_and(|array| array.is_empty())
                        || item.as_str().is_some_and(|text| text.trim().is_empty());
                    if empty {
                        self.problem(
                            span_of(item),
                            "`exec` is empty",
                            Some(
                                "name the program to run, e.g. exec = [\"/usr/local/bin/page-me\"]"
                                    .into(),
                            ),
                        );
                    } else if let Some(argv) = self.command(item) {
                        targets.push((
                            NotifyTarget::Exec {
                                argv,
                                cwd: base_dir.to_path_buf(),
                            },
                            span_of(item),
                        ));
                    }
                }
                "file" => {
                    let Some(path) = self.string(item, key) else {
                        continue;
                    };
                    if path.is_empty() || path.contains('\0') {
                        self.problem(
                            span_of(item),
                            "`file` must name a file",
                            Some(
                                "e.g. file = \"alerts.jsonl\" (relative to the config file)".into(),
                            ),
                        );
                    } else {
                        targets.push((NotifyTarget::File(base_dir.join(path)), span_of(item)));
                    }
                }
                "timeout" => {
                    if let Some(value) = self.duration(item, key) {
                        if value.is_zero() {
                            self.problem(
                                span_of(item),
                                "`timeout` must be above 0s",
                                Some("it bounds each delivery attempt; leave it out for 5s".into()),
                            );
                        } else {
                            timeout = value;
                        }
                    }
                }
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, &place, &NOTIFY_KEYS);
                }
            }
        }
        let target = match targets.len() {
            1 => targets.pop().map(|(target, _)| target),
            0 => {
                // A target that is there but invalid was reported already.
                if target_keys == 0 {
                    self.problem(
                        table_span,
                        format!("{place} names no target"),
                        Some(target_hint.into()),
                    );
                }
                None
            }
            _ => {
                self.problem(
                    targets[1].1.clone(),
                    format!("{place} names more than one target"),
                    Some(format!(
                        "{target_hint}; write one [[notify]] table per target"
                    )),
                );
                None
            }
        }?;
        (self.problems.len() == problems_before).then_some(NotifySpec { target, timeout })
    }
}
