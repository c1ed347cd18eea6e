//! `[agents.NAME.health]`: its keys as a table, and the rule that a health
//! table names exactly one check (http, tcp or exec).

use std::ops::Range;

use toml_edit::TableLike;

use super::diagnostics::{span_of, Checker};
use super::keys::{Entry, Key, Read};
use crate::health::{Check, HealthSpec, HttpTarget, OnFailure};

/// A health table while its keys are read.
pub(super) struct HealthDraft {
    spec: HealthSpec,
    /// The valid checks found, each with its value's span.
    checks: Vec<(Check, Range<usize>)>,
    /// Check keys written, valid or not.
    check_keys: usize,
}

#[rustfmt::skip]
const HEALTH_KEYS: &[Key<HealthDraft>] = &[
    Key::new("http", Read::Custom(http)),
    Key::new("tcp", Read::Custom(tcp)),
    Key::new("exec", Read::Custom(exec)),
    Key::new("interval", Read::ProbePeriod(|h, v| h.spec.interval = v)),
    Key::new("timeout", Read::ProbePeriod(|h, v| h.spec.timeout = v)),
    Key::new("retries", Read::Integer(1, 1000, |h, v| h.spec.retries = v as u32)),
    Key::new("start_period", Read::Duration(|h, v| h.spec.start_period = v)),
    Key::new("on_failure", Read::Custom(on_failure)),
];

impl Checker {
    pub(super) fn health(
        &mut self,
        name: &str,
        table: &dyn TableLike,
        table_span: Range<usize>,
    ) -> Option<HealthSpec> {
        let place = format!("[agents.{name}.health]");
        let mut health = HealthDraft {
            spec: HealthSpec::with_check(Check::Exec(Vec::new())),
            checks: Vec::new(),
            check_keys: 0,
        };
        self.read_keys(table, HEALTH_KEYS, &place, &mut health);
        let HealthDraft {
            mut spec,
            mut checks,
            check_keys,
        } = health;
        match checks.len() {
            1 => {
                let (check, _) = checks.remove(0);
                spec.check = check;
                Some(spec)
            }
            0 => {
                // A check that is there but invalid was reported already.
                if check_keys == 0 {
                    self.problem(
                        table_span,
                        format!("{place} names no check"),
                        Some("give exactly one of http, tcp or exec".into()),
                    );
                }
                None
            }
            _ => {
                self.problem(
                    checks[1].1.clone(),
                    format!("{place} names more than one check"),
                    Some("give exactly one of http, tcp or exec".into()),
                );
                None
            }
        }
    }
}

fn http(checker: &mut Checker, entry: &Entry<'_>, health: &mut HealthDraft) {
    health.check_keys += 1;
    let item = entry.item;
    if let Some(url) = checker.string(item, entry.key) {
        match HttpTarget::parse(url) {
            Ok(target) => health.checks.push((Check::Http(target), span_of(item))),
            Err(error) => checker.problem(
                span_of(item),
                format!("bad health URL {url:?}: {error}"),
                Some("e.g. http = \"http://127.0.0.1:8001/health\"".into()),
            ),
        }
    }
}

fn tcp(checker: &mut Checker, entry: &Entry<'_>, health: &mut HealthDraft) {
    health.check_keys += 1;
    let item = entry.item;
    let Some(address) = checker.string(item, entry.key) else {
        return;
    };
    let port = address.rsplit_once(':').map(|(host, port)| {
        (
            !host.is_empty(),
            port.parse::<u16>().is_ok_and(|port| port > 0),
        )
    });
    if port == Some((true, true)) {
        health.checks.push((
            Check::Tcp {
                address: address.to_owned(),
            },
            span_of(item),
        ));
    } else {
        checker.problem(
            span_of(item),
            format!("bad health address {address:?}: expected HOST:PORT"),
            Some("e.g. tcp = \"127.0.0.1:8001\"".into()),
        );
    }
}

fn exec(checker: &mut Checker, entry: &Entry<'_>, health: &mut HealthDraft) {
    health.check_keys += 1;
    if let Some(argv) = checker.command(entry.item) {
        health.checks.push((Check::Exec(argv), span_of(entry.item)));
    }
}

fn on_failure(checker: &mut Checker, entry: &Entry<'_>, health: &mut HealthDraft) {
    let item = entry.item;
    if let Some(raw) = checker.string(item, entry.key) {
        match raw {
            "restart" => health.spec.on_failure = OnFailure::Restart,
            "alert" => health.spec.on_failure = OnFailure::Alert,
            "none" => health.spec.on_failure = OnFailure::None,
            other => checker.problem(
                span_of(item),
                format!("unknown on_failure {other:?}"),
                Some("use \"restart\", \"alert\" or \"none\"".into()),
            ),
        }
    }
}
