//! `[[agents.NAME.watch]]` and `[[host.watch]]` rules: each key read, then
//! the rule checked as a whole (a threshold, a pattern only for log_matches,
//! a path only for disk_percent, an action that fits the metric).

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use super::diagnostics::{closest, key_span, span_of, Checker};
use crate::watch::{Metric, RuleAction, Threshold, WatchRule};

const WATCH_KEYS: [&str; 10] = [
    "metric",
    "above",
    "below",
    "for",
    "action",
    "pattern",
    "within",
    "predict",
    "repeat_every",
    "path",
];

impl Checker {
    /// `watch`: an array of tables (or `[]` for no rules).
    pub(super) fn watch_rules(&mut self, item: &Item, place: &str, host: bool) -> Vec<WatchRule> {
        let mut rules = Vec::new();
        let tables: Vec<&dyn TableLike> = match item {
            Item::ArrayOfTables(array) => {
                array.iter().map(|table| table as &dyn TableLike).collect()
            }
            Item::Value(Value::Array(array)) => {
                let mut tables = Vec::new();
                for value in array.iter() {
                    match value.as_inline_table() {
                        Some(table) => tables.push(table as &dyn TableLike),
                        None => self.problem(
                            value.span().unwrap_or_else(|| span_of(item)),
                            format!("each {place} rule must be a table"),
                            Some("write rules as [[...watch]] tables".into()),
                        ),
                    }
                }
                tables
            }
            _ => {
                self.problem(
                    span_of(item),
                    format!("{place} must be an array of tables"),
                    Some("write each rule as its own [[...watch]] table".into()),
                );
                return rules;
            }
        };
        for table in tables {
            if let Some(rule) = self.watch_rule(table, place, host, span_of(item)) {
                rules.push(rule);
            }
        }
        rules
    }

    fn watch_rule(
        &mut self,
        table: &dyn TableLike,
        place: &str,
        host: bool,
        fallback: Range<usize>,
    ) -> Option<WatchRule> {
        let before = self.problems.len();
        let mut metric: Option<(Metric, Range<usize>)> = None;
        let mut threshold: Option<Threshold> = None;
        let mut hold = Duration::ZERO;
        let mut action = RuleAction::Alert;
        let mut action_span = None;
        let mut pattern: Option<(String, Range<usize>)> = None;
        let mut within: Option<(Duration, Range<usize>)> = None;
        let mut predict = None;
        let mut repeat_every = None;
        let mut path: Option<(PathBuf, Range<usize>)> = None;
        let mut first_span = None;
        for (key, item) in table.iter() {
            first_span.get_or_insert_with(|| key_span(table, key, item));
            match key {
                "metric" => {
                    if let Some(raw) = self.string(item, key) {
                        match Metric::from_name(raw) {
                            Some(found) if found.is_host() == host => {
                                metric = Some((found, span_of(item)))
                            }
                            Some(found) => self.problem(
                                span_of(item),
                                format!(
                                    "`{found}` is {} metric",
                                    if found.is_host() { "a host" } else { "an agent" }
                                ),
                                Some(if host {
                                    "host rules watch disk_percent, memory_available_percent or load1".into()
                                } else {
                                    "put it in a [[host.watch]] rule".into()
                                }),
                            ),
                            None => {
                                let names: Vec<&str> = crate::watch::METRICS
                                    .iter()
                                    .filter(|(metric, _)| metric.is_host() == host)
                                    .map(|(_, name)| *name)
                                    .collect();
                                let hint = match closest(raw, &names) {
                                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                                    None => format!("known metrics here: {}", names.join(", ")),
                                };
                                self.problem(span_of(item), format!("unknown metric {raw:?}"), Some(hint));
                            }
                        }
                    }
                }
                "above" | "below" => {
                    let number = item
                        .as_float()
                        .or_else(|| item.as_integer().map(|number| number as f64));
                    match number {
                        Some(value) if value >= 0.0 && value.is_finite() => {
                            if threshold.is_some() {
                                self.problem(
                                    key_span(table, key, item),
                                    "give one of `above` and `below`, not both",
                                    None,
                                );
                            }
                            threshold = Some(if key == "above" {
                                Threshold::Above(value)
                            } else {
                                Threshold::Below(value)
                            });
                        }
                        Some(_) => self.problem(
                            span_of(item),
                            format!("`{key}` must not be negative"),
                            None,
                        ),
                        None => self.problem(
                            span_of(item),
                            format!("`{key}` must be a number"),
                            Some(format!("e.g. {key} = 85")),
                        ),
                    }
                }
                "for" => {
                    if let Some(value) = self.duration(item, key) {
                        hold = value;
                    }
                }
                "action" => {
                    if let Some(raw) = self.string(item, key) {
                        match RuleAction::from_name(raw) {
                            Some(found) => {
                                action = found;
                                action_span = Some(span_of(item));
                            }
                            None => self.problem(
                                span_of(item),
                                format!("unknown action {raw:?}"),
                                Some(if host {
                                    "use \"alert\", or \"clean_logs\" with disk_percent".into()
                                } else {
                                    "use \"alert\", \"investigate\", \"restart\" or \"stop\"".into()
                                }),
                            ),
                        }
                    }
                }
                "pattern" => {
                    if let Some(raw) = self.string(item, key) {
                        match regex::Regex::new(raw) {
                            Ok(_) => pattern = Some((raw.to_owned(), span_of(item))),
                            Err(error) => {
                                let detail = error.to_string();
                                let last = detail.lines().last().unwrap_or("").trim().to_owned();
                                self.problem(
                                    span_of(item),
                                    format!("`pattern` is not a valid regular expression: {last}"),
                                    Some("e.g. pattern = \"(?i)\\\\berror\\\\b\"".into()),
                                );
                            }
                        }
                    }
                }
                "within" => {
                    if let Some(value) = self.duration(item, key) {
                        if value.is_zero() {
                            self.problem(span_of(item), "`within` must be above 0s", None);
                        } else {
                            within = Some((value, span_of(item)));
                        }
                    }
                }
                "predict" => predict = self.duration(item, key),
                "repeat_every" => {
                    if let Some(value) = self.duration(item, key) {
                        if value < Duration::from_secs(1) {
                            self.problem(span_of(item), "`repeat_every` must be at least 1s", None);
                        } else {
                            repeat_every = Some(value);
                        }
                    }
                }
                "path" if host => {
                    if let Some(raw) = self.string(item, key) {
                        if raw.starts_with('/') {
                            path = Some((PathBuf::from(raw), span_of(item)));
                        } else {
                            self.problem(
                                span_of(item),
                                "`path` must be absolute",
                                Some("e.g. path = \"/\"".into()),
                            );
                        }
                    }
                }
                other => {
                    let span = key_span(table, other, item);
                    self.unknown_key(span, other, place, &WATCH_KEYS);
                }
            }
        }
        let rule_span = first_span.unwrap_or(fallback);
        let Some((metric, metric_span)) = metric else {
            if self.problems.len() == before {
                self.problem(
                    rule_span,
                    format!("a {place} rule has no `metric`"),
                    Some("e.g. metric = \"memory_percent\"".into()),
                );
            }
            return None;
        };
        let Some(threshold) = threshold else {
            self.problem(
                metric_span,
                format!("the `{metric}` rule has no threshold"),
                Some("add above = N (or below = N)".into()),
            );
            return None;
        };
        let log_rule = metric == Metric::LogMatches;
        match (&pattern, log_rule) {
            (None, true) => self.problem(
                metric_span.clone(),
                "a log_matches rule needs a `pattern`",
                Some("e.g. pattern = \"(?i)\\\\berror\\\\b\"".into()),
            ),
            (Some((_, span)), false) => self.problem(
                span.clone(),
                "`pattern` only goes with metric = \"log_matches\"",
                None,
            ),
            _ => {}
        }
        if let (Some((_, span)), false) = (&within, log_rule) {
            self.problem(
                span.clone(),
                "`within` only goes with metric = \"log_matches\"",
                None,
            );
        }
        if metric == Metric::DiskPercent && path.is_none() {
            self.problem(
                metric_span.clone(),
                "a disk_percent rule needs a `path`",
                Some("e.g. path = \"/\"".into()),
            );
        }
        if let (Some((_, span)), false) = (&path, metric == Metric::DiskPercent) {
            self.problem(
                span.clone(),
                "`path` only goes with metric = \"disk_percent\"",
                None,
            );
        }
        let allowed = match action {
            RuleAction::CleanLogs => metric == Metric::DiskPercent,
            RuleAction::Alert => true,
            RuleAction::Investigate | RuleAction::Restart | RuleAction::Stop => !host,
        };
        if !allowed {
            self.problem(
                action_span.unwrap_or(metric_span),
                format!(
                    "action \"{}\" does not go with a `{metric}` rule",
                    action.as_str()
                ),
                Some(if host {
                    "host rules alert, and disk_percent rules may clean_logs".into()
                } else {
                    "agent rules alert, investigate, restart or stop".into()
                }),
            );
        }
        if self.problems.len() != before {
            return None;
        }
        let mut rule = WatchRule::new(metric, threshold, hold, action);
        rule.pattern = pattern.map(|(raw, _)| raw);
        if let Some((value, _)) = within {
            rule.within = value;
        }
        rule.predict = predict;
        rule.repeat_every = repeat_every;
        rule.path = path.map(|(value, _)| value);
        Some(rule)
    }
}
