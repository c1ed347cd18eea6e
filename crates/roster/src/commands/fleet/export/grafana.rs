//! The fleet's Grafana dashboard and the file provisioning that shows it
//! with no clicking: a dashboards provider for the dashboard's directory
//! and a Prometheus datasource.
//!
//! The series carry `agent` (the instance, `TENANT.AGENT`), `host`, the
//! host's labels and `fleet`; `tenant` is derived from `agent` with
//! `label_replace`. Variables: `datasource`, `host` and `tenant` (each
//! "All" as `.*`); every query is limited to the fleet.

use std::path::Path;

use serde_json::{json, Value};

/// The Prometheus the provisioned datasource points at (edit the file for
/// another).
pub(super) const PROMETHEUS_URL: &str = "http://localhost:9090";

/// The datasource's uid, which the dashboard's `datasource` variable
/// selects by default.
const DATASOURCE_UID: &str = "roster-prometheus";

/// A panel's query: its PromQL and legend.
struct Query {
    expr: String,
    legend: &'static str,
}

fn query(expr: String, legend: &'static str) -> Query {
    Query { expr, legend }
}

/// The dashboard of fleet `fleet`.
pub(super) fn dashboard(fleet: &str) -> Value {
    let fleet_label = format!(
        "fleet=\"{}\"",
        fleet.replace('\\', "\\\\").replace('"', "\\\"")
    );
    // Every instance series: the fleet, the chosen hosts and tenants.
    let s = format!("{fleet_label},host=~\"$host\",agent=~\"($tenant)\\\\..+\"");
    let h = format!("{fleet_label},host=~\"$host\"");
    let by_tenant = |expr: String| format!("sum by (tenant) ({})", with_tenant(&expr));
    let mut panels = Vec::new();
    let mut layout = Layout::default();

    layout.row(&mut panels, "Fleet");
    for (title, expr, unit) in [
        (
            "Instances running",
            format!("sum(roster_agent_up{{{s}}})"),
            "none",
        ),
        (
            "Instances down",
            format!("sum(1 - roster_agent_up{{{s}}})"),
            "none",
        ),
        (
            "Instances unhealthy",
            format!("sum(1 - roster_agent_healthy{{{s}}})"),
            "none",
        ),
        ("Hosts unreachable", format!("sum(1 - up{{{h}}})"), "none"),
        (
            "Restarts (1h)",
            format!("sum(increase(roster_agent_restarts_total{{{s}}}[1h]))"),
            "none",
        ),
        (
            "Alerts firing",
            format!("count(ALERTS{{alertstate=\"firing\",{h}}}) or vector(0)"),
            "none",
        ),
    ] {
        layout.panel(&mut panels, (4, 4), "stat", title, unit, &[query(expr, "")]);
    }

    layout.row(&mut panels, "Per tenant");
    for (title, expr, unit) in [
        (
            "Running instances by tenant",
            by_tenant(format!("roster_agent_up{{{s}}}")),
            "none",
        ),
        (
            "Restarts by tenant (1h)",
            by_tenant(format!("increase(roster_agent_restarts_total{{{s}}}[1h])")),
            "none",
        ),
        (
            "CPU by tenant (cores)",
            by_tenant(format!(
                "rate(roster_agent_cpu_seconds_total{{{s}}}[$__rate_interval])"
            )),
            "none",
        ),
        (
            "Memory by tenant",
            by_tenant(format!("roster_agent_memory_bytes{{{s}}}")),
            "bytes",
        ),
        (
            "Unhealthy instances by tenant",
            by_tenant(format!("1 - roster_agent_healthy{{{s}}}")),
            "none",
        ),
    ] {
        layout.panel(
            &mut panels,
            (8, 8),
            "timeseries",
            title,
            unit,
            &[query(expr, "{{tenant}}")],
        );
    }
    layout.panel(
        &mut panels,
        (8, 8),
        "timeseries",
        "Alerts by tenant",
        "none",
        &[query(
            format!(
                "count by (tenant, alertstate) ({})",
                with_tenant(&format!("ALERTS{{{s}}}"))
            ),
            "{{tenant}} {{alertstate}}",
        )],
    );

    layout.row(&mut panels, "Per host");
    for (title, expr, unit) in [
        (
            "Running instances by host",
            format!("sum by (host) (roster_agent_up{{{s}}})"),
            "none",
        ),
        (
            "CPU by host (cores)",
            format!(
                "sum by (host) (rate(roster_agent_cpu_seconds_total{{{s}}}[$__rate_interval]))"
            ),
            "none",
        ),
        (
            "Memory by host",
            format!("sum by (host) (roster_agent_memory_bytes{{{s}}})"),
            "bytes",
        ),
        (
            "Unhealthy instances by host",
            format!("sum by (host) (1 - roster_agent_healthy{{{s}}})"),
            "none",
        ),
        (
            "Restarts by host (1h)",
            format!("sum by (host) (increase(roster_agent_restarts_total{{{s}}}[1h]))"),
            "none",
        ),
    ] {
        layout.panel(
            &mut panels,
            (8, 8),
            "timeseries",
            title,
            unit,
            &[query(expr, "{{host}}")],
        );
    }
    layout.panel(
        &mut panels,
        (8, 8),
        "timeseries",
        "Alerts by host",
        "none",
        &[
            query(
                format!("sum by (host) (roster_alerts_firing{{{h}}})"),
                "{{host}} roster firing",
            ),
            query(
                format!("count by (host, alertstate) (ALERTS{{{h}}})"),
                "{{host}} Prometheus {{alertstate}}",
            ),
        ],
    );

    layout.row(&mut panels, "Instances");
    layout.panel(
        &mut panels,
        (24, 10),
        "table",
        "Instances",
        "none",
        &[
            query(format!("roster_agent_up{{{s}}}"), "up"),
            query(format!("roster_agent_healthy{{{s}}}"), "healthy"),
            query(format!("roster_agent_restarts_total{{{s}}}"), "restarts"),
            query(
                format!("rate(roster_agent_cpu_seconds_total{{{s}}}[$__rate_interval])"),
                "cpu",
            ),
            query(format!("roster_agent_memory_bytes{{{s}}}"), "memory"),
        ],
    );
    for (title, expr, unit) in [
        (
            "State (1 running)",
            format!("roster_agent_up{{{s}}}"),
            "none",
        ),
        (
            "Health (1 healthy)",
            format!("roster_agent_healthy{{{s}}}"),
            "none",
        ),
        (
            "Restarts (5m)",
            format!("increase(roster_agent_restarts_total{{{s}}}[5m])"),
            "none",
        ),
        (
            "CPU (cores)",
            format!("rate(roster_agent_cpu_seconds_total{{{s}}}[$__rate_interval])"),
            "none",
        ),
        (
            "Memory",
            format!("roster_agent_memory_bytes{{{s}}}"),
            "bytes",
        ),
    ] {
        layout.panel(
            &mut panels,
            (12, 8),
            "timeseries",
            title,
            unit,
            &[query(expr, "{{agent}} on {{host}}")],
        );
    }
    layout.panel(
        &mut panels,
        (12, 8),
        "table",
        "Alerts (pending and firing)",
        "none",
        &[query(format!("ALERTS{{{h}}}"), "{{alertname}}")],
    );

    json!({
        "uid": uid(fleet),
        "title": format!("roster fleet {fleet}"),
        "tags": ["roster", "fleet"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "refresh": "30s",
        "time": { "from": "now-6h", "to": "now" },
        "templating": { "list": [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": { "text": "roster Prometheus", "value": DATASOURCE_UID },
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": []
            },
            variable("host", "Host", &format!("label_values(up{{{fleet_label}}}, host)"), ""),
            variable(
                "tenant",
                "Tenant",
                &format!("label_values(roster_agent_up{{{fleet_label},host=~\"$host\"}}, agent)"),
                r"/^([^.]+)\..+/",
            ),
        ]},
        "annotations": { "list": [] },
        "panels": panels,
    })
}

/// `expr` with a `tenant` label: the part of `agent` (`TENANT.AGENT`)
/// before its first dot, as roster's series carry no `tenant` of their own.
fn with_tenant(expr: &str) -> String {
    format!("label_replace({expr}, \"tenant\", \"$1\", \"agent\", \"([^.]+)\\\\..*\")")
}

/// A query variable over `definition`'s label values, "All" being `.*`.
fn variable(name: &str, label: &str, definition: &str, regex: &str) -> Value {
    json!({
        "name": name,
        "label": label,
        "type": "query",
        "datasource": datasource(),
        "definition": definition,
        "query": { "query": definition, "refId": name },
        "regex": regex,
        "refresh": 2,
        "sort": 1,
        "multi": true,
        "includeAll": true,
        "allValue": ".*",
        "current": { "selected": true, "text": ["All"], "value": ["$__all"] },
        "hide": 0,
        "options": []
    })
}

fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": "${datasource}" })
}

/// A dashboard uid (at most 40 characters of `[A-Za-z0-9_-]`), stable for
/// the fleet.
pub(super) fn uid(fleet: &str) -> String {
    let mut uid: String = format!("roster-fleet-{fleet}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    uid.truncate(40);
    uid
}

/// Panels placed left to right, row under row, on Grafana's 24 columns.
#[derive(Default)]
struct Layout {
    id: u64,
    x: u64,
    y: u64,
    height: u64,
}

impl Layout {
    fn row(&mut self, panels: &mut Vec<Value>, title: &str) {
        self.y += self.height;
        self.x = 0;
        self.height = 0;
        self.id += 1;
        panels.push(json!({
            "id": self.id,
            "type": "row",
            "title": title,
            "collapsed": false,
            "gridPos": { "x": 0, "y": self.y, "w": 24, "h": 1 },
            "panels": []
        }));
        self.y += 1;
    }

    /// Adds a panel of `(width, height)`, on the next line when this one
    /// is full.
    fn panel(
        &mut self,
        panels: &mut Vec<Value>,
        (width, height): (u64, u64),
        kind: &str,
        title: &str,
        unit: &str,
        queries: &[Query],
    ) {
        if self.x + width > 24 {
            self.y += self.height;
            self.x = 0;
            self.height = 0;
        }
        self.id += 1;
        let table = kind == "table";
        let targets: Vec<Value> = queries
            .iter()
            .enumerate()
            .map(|(index, query)| {
                let ref_id = char::from(b'A' + u8::try_from(index % 26).unwrap_or(0)).to_string();
                json!({
                    "refId": ref_id,
                    "datasource": datasource(),
                    "expr": query.expr,
                    "legendFormat": query.legend,
                    "instant": table,
                    "range": !table,
                    "format": if table { "table" } else { "time_series" }
                })
            })
            .collect();
        let mut panel = json!({
            "id": self.id,
            "type": kind,
            "title": title,
            "datasource": datasource(),
            "gridPos": { "x": self.x, "y": self.y, "w": width, "h": height },
            "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
            "options": {},
            "targets": targets,
        });
        if table && queries.len() > 1 {
            panel["transformations"] = json!([
                { "id": "merge", "options": {} },
                { "id": "organize", "options": { "excludeByName": { "Time": true, "__name__": true, "job": true } } }
            ]);
        }
        panels.push(panel);
        self.x += width;
        self.height = self.height.max(height);
    }
}

/// The dashboards provider: the dashboards in `dir`, in a folder "roster".
pub(super) fn provider(fleet: &str, dir: &Path) -> String {
    format!(
        "# Grafana provisioning (dashboards), written by `roster fleet export grafana`.\n\
         apiVersion: 1\n\
         providers:\n  - name: '{}'\n    folder: roster\n    type: file\n    disableDeletion: false\n    allowUiUpdates: true\n    updateIntervalSeconds: 30\n    options:\n      path: '{}'\n      foldersFromFilesStructure: false\n",
        format!("roster-fleet-{fleet}").replace('\'', "''"),
        dir.display().to_string().replace('\'', "''")
    )
}

/// The Prometheus datasource the dashboard uses by default.
pub(super) fn datasource_yaml() -> String {
    format!(
        "# Grafana provisioning (datasources), written by `roster fleet export grafana`:\n\
         # set url to the Prometheus that scrapes the fleet.\n\
         apiVersion: 1\n\
         datasources:\n  - name: roster Prometheus\n    type: prometheus\n    uid: {DATASOURCE_UID}\n    access: proxy\n    url: {PROMETHEUS_URL}\n    isDefault: false\n    editable: true\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `expr` of every panel.
    fn exprs(dashboard: &Value) -> Vec<String> {
        dashboard["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
            .filter_map(|target| target["expr"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn every_query_is_limited_to_the_fleet_and_the_chosen_hosts() {
        let dashboard = dashboard("agency");
        let exprs = exprs(&dashboard);
        assert!(exprs.len() > 20, "{exprs:#?}");
        for expr in &exprs {
            assert!(expr.contains("fleet=\"agency\",host=~\"$host\""), "{expr}");
        }
        let names: Vec<&str> = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|variable| variable["name"].as_str())
            .collect();
        assert_eq!(names, ["datasource", "host", "tenant"]);
        assert_eq!(dashboard["uid"], "roster-fleet-agency");
    }

    #[test]
    fn panels_do_not_overlap() {
        let dashboard = dashboard("agency");
        let boxes: Vec<(u64, u64, u64, u64)> = dashboard["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|panel| {
                let at = |key: &str| panel["gridPos"][key].as_u64().unwrap_or(0);
                (at("x"), at("y"), at("w"), at("h"))
            })
            .collect();
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.0 + a.2 <= 24, "{a:?}");
            for b in &boxes[i + 1..] {
                let apart =
                    a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }
}
