//! The fleet's alerting rules (rules.yml), on the metrics roster serves
//! (`roster_agent_up`, `roster_agent_healthy`,
//! `roster_agent_restarts_total`, `roster_agent_memory_bytes`) and
//! Prometheus' own `up`, each limited to the fleet's targets.
//!
//! roster serves no memory limit metric: "memory near its limit" is a
//! rule per template whose `memory_max` the fleet file sets, against that
//! limit; templates without one get no such rule.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One alerting rule.
struct Rule {
    alert: String,
    expr: String,
    duration: &'static str,
    severity: &'static str,
    summary: String,
    description: String,
}

/// The text of rules.yml for the fleet `fleet`, with `limits` the
/// templates' `memory_max` in bytes.
pub(super) fn rules(fleet: &str, limits: &BTreeMap<String, u64>) -> String {
    let selector = format!("fleet=\"{}\"", promql_string(fleet));
    let mut rules = vec![
        Rule {
            alert: "RosterInstanceDown".to_owned(),
            expr: format!("roster_agent_up{{{selector}}} == 0"),
            duration: "2m",
            severity: "critical",
            summary: "{{ $labels.agent }} on {{ $labels.host }} is down".to_owned(),
            description: "No process of instance {{ $labels.agent }} has run on host {{ $labels.host }} for 2 minutes (roster_agent_up == 0).".to_owned(),
        },
        Rule {
            alert: "RosterInstanceUnhealthy".to_owned(),
            expr: format!("roster_agent_healthy{{{selector}}} == 0"),
            duration: "2m",
            severity: "warning",
            summary: "{{ $labels.agent }} on {{ $labels.host }} is unhealthy".to_owned(),
            description: "The health check of instance {{ $labels.agent }} on host {{ $labels.host }} has failed for 2 minutes (roster_agent_healthy == 0).".to_owned(),
        },
        Rule {
            alert: "RosterInstanceCrashLooping".to_owned(),
            expr: format!("increase(roster_agent_restarts_total{{{selector}}}[15m]) > 3"),
            duration: "1m",
            severity: "warning",
            summary: "{{ $labels.agent }} on {{ $labels.host }} is crash looping".to_owned(),
            description: "Instance {{ $labels.agent }} on host {{ $labels.host }} restarted {{ $value | humanize }} times in 15 minutes.".to_owned(),
        },
    ];
    for (template, bytes) in limits {
        rules.push(Rule {
            alert: "RosterInstanceMemoryNearLimit".to_owned(),
            expr: format!(
                "roster_agent_memory_bytes{{{selector},agent=~\"[^.]+\\\\.{}\"}} > 0.9 * {bytes}",
                promql_string(&regex_escape(template))
            ),
            duration: "5m",
            severity: "warning",
            summary: "{{ $labels.agent }} on {{ $labels.host }} is near its memory limit".to_owned(),
            description: format!(
                "Instance {{{{ $labels.agent }}}} on host {{{{ $labels.host }}}} uses {{{{ $value | humanize1024 }}}}B, over 90% of its memory_max ({bytes} bytes, template {template}) for 5 minutes."
            ),
        });
    }
    rules.push(Rule {
        alert: "RosterHostUnreachable".to_owned(),
        expr: format!("up{{{selector}}} == 0"),
        duration: "2m",
        severity: "critical",
        summary: "Host {{ $labels.host }} is unreachable".to_owned(),
        description: "Prometheus has not scraped roster on host {{ $labels.host }} ({{ $labels.instance }}) for 2 minutes: the host, its network or its roster daemon is down.".to_owned(),
    });

    let mut text = format!(
        "# Alerting rules for fleet {fleet:?}, written by `roster fleet export prometheus`.\n"
    );
    if limits.is_empty() {
        text.push_str(
            "# No template sets memory_max, so there is no memory limit to alert near.\n",
        );
    }
    let _ = write!(
        text,
        "groups:\n  - name: {}\n    rules:\n",
        yaml_string(&format!("roster-fleet-{fleet}"))
    );
    for rule in &rules {
        let _ = write!(
            text,
            "      - alert: {}\n        expr: {}\n        for: {}\n        labels:\n          severity: {}\n        annotations:\n          summary: {}\n          description: {}\n",
            rule.alert,
            yaml_string(&rule.expr),
            rule.duration,
            rule.severity,
            yaml_string(&rule.summary),
            yaml_string(&rule.description)
        );
    }
    text
}

/// `text` inside a PromQL double-quoted string.
fn promql_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `text` matched literally inside a regular expression.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// `text` as a YAML single-quoted scalar (no escapes but `''`).
fn yaml_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_limited_to_the_fleet_and_has_its_annotations() {
        let text = rules(
            "agency",
            &BTreeMap::from([("support".to_owned(), 512 << 20)]),
        );
        for alert in [
            "RosterInstanceDown",
            "RosterInstanceUnhealthy",
            "RosterInstanceCrashLooping",
            "RosterInstanceMemoryNearLimit",
            "RosterHostUnreachable",
        ] {
            assert!(
                text.contains(&format!("- alert: {alert}\n")),
                "{alert}:\n{text}"
            );
        }
        assert_eq!(text.matches("expr: ").count(), 5);
        assert_eq!(text.matches("fleet=\"agency\"").count(), 5);
        assert_eq!(text.matches("summary: ").count(), 5);
        assert_eq!(text.matches("description: ").count(), 5);
        assert!(text.contains(
            "expr: 'roster_agent_memory_bytes{fleet=\"agency\",agent=~\"[^.]+\\\\.support\"} > 0.9 * 536870912'"
        ), "{text}");
    }

    #[test]
    fn without_memory_max_there_is_no_memory_rule() {
        let text = rules("agency", &BTreeMap::new());
        assert!(!text.contains("RosterInstanceMemoryNearLimit"), "{text}");
        assert!(text.contains("No template sets memory_max"), "{text}");
    }
}
