//! The Prometheus text format (0.0.4) of a snapshot and its samples, by
//! `prometheus-client`: a pure function, so the exact output is tested.
//!
//! Every scrape builds a fresh registry holding one collector: the figures
//! are taken at scrape time, never kept in long-lived metric objects.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{AgentSample, MetricsSnapshot};

/// The content type of what [`encode`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The Prometheus text format of `snapshot`, with `samples` taken for its
/// agents (one per agent, in order; a missing sample counts as unknown).
/// Figures that are unknown (no process, /proc unreadable, no health
/// check) are left out rather than reported as 0.
pub fn encode(snapshot: &MetricsSnapshot, samples: &[AgentSample]) -> String {
    let rows = snapshot
        .agents
        .iter()
        .enumerate()
        .map(|(index, agent)| Row {
            agent: agent.name.clone(),
            tenant: agent.tenant.clone(),
            up: agent.is_up(),
            restarts: agent.restarts,
            healthy: agent.healthy,
            sample: samples.get(index).cloned().unwrap_or_default(),
        })
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        rows,
        alerts_firing: snapshot.alerts_firing,
        notify_failures: snapshot.notify_failures.clone(),
    }));
    let mut text = String::with_capacity(256 + snapshot.agents.len() * 600);
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        // Writing into a String cannot fail; say so loudly if it ever does.
        tracing::error!("encoding metrics: {error}");
        debug_assert!(false, "encoding metrics: {error}");
    }
    text
}

#[derive(Debug)]
struct Row {
    agent: String,
    tenant: Option<String>,
    up: bool,
    restarts: u64,
    healthy: Option<bool>,
    sample: AgentSample,
}

#[derive(Debug)]
struct Scrape {
    rows: Vec<Row>,
    alerts_firing: u64,
    /// (target, failed, dropped).
    notify_failures: Vec<(String, u64, u64)>,
}

/// One per-agent family: how to read its value from a row.
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    value: Value,
}

enum Value {
    Gauge(fn(&Row) -> Option<i64>),
    Counter(fn(&Row) -> Option<u64>),
    Seconds(fn(&Row) -> Option<f64>),
}

fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The per-agent families, in the order they are written. Counters get
/// `_total` and units their suffix from the encoder (`roster_agent_memory`
/// with bytes is `roster_agent_memory_bytes`).
const FAMILIES: &[Family] = &[
    Family {
        name: "roster_agent_up",
        help: "Whether a process of the agent runs (1) or not (0).",
        unit: None,
        value: Value::Gauge(|row| Some(i64::from(row.up))),
    },
    Family {
        name: "roster_agent_restarts",
        help: "Start attempts of the agent after the first (failed ones count).",
        unit: None,
        value: Value::Counter(|row| Some(row.restarts)),
    },
    Family {
        name: "roster_agent_cpu",
        help: "CPU time used by the agent's process group (user and system, with its reaped children).",
        unit: Some(Unit::Seconds),
        value: Value::Seconds(|row| row.sample.cpu_seconds_total),
    },
    Family {
        name: "roster_agent_memory",
        help: "Resident memory of the agent's process group.",
        unit: Some(Unit::Bytes),
        value: Value::Gauge(|row| row.sample.memory_bytes.map(saturating)),
    },
    Family {
        name: "roster_agent_open_files",
        help: "Open file descriptors of the agent's process group.",
        unit: None,
        value: Value::Gauge(|row| row.sample.open_files.map(saturating)),
    },
    Family {
        name: "roster_agent_connections",
        help: "TCP sockets (IPv4 and IPv6, any state) of the agent's process group.",
        unit: None,
        value: Value::Gauge(|row| row.sample.connections.map(saturating)),
    },
    Family {
        name: "roster_agent_threads",
        help: "Threads of the agent's process group.",
        unit: None,
        value: Value::Gauge(|row| row.sample.threads.map(saturating)),
    },
    Family {
        name: "roster_agent_healthy",
        help: "The agent's health check verdict: 1 healthy, 0 unhealthy; absent without a check or a verdict.",
        unit: None,
        value: Value::Gauge(|row| row.healthy.map(i64::from)),
    },
    Family {
        name: "roster_log_lines",
        help: "Log lines of the agent stored in its log file.",
        unit: None,
        value: Value::Counter(|row| Some(row.sample.log_lines_total)),
    },
    Family {
        name: "roster_log_dropped_lines",
        help: "Log lines of the agent dropped because they could not be stored (a full disk).",
        unit: None,
        value: Value::Counter(|row| Some(row.sample.log_dropped_lines_total)),
    },
];

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for family in FAMILIES {
            let metric_type = match family.value {
                Value::Gauge(_) => MetricType::Gauge,
                Value::Counter(_) | Value::Seconds(_) => MetricType::Counter,
            };
            let mut family_encoder = encoder.encode_descriptor(
                family.name,
                family.help,
                family.unit.as_ref(),
                metric_type,
            )?;
            for row in &self.rows {
                let mut labels = vec![("agent", row.agent.as_str())];
                if let Some(tenant) = &row.tenant {
                    labels.push(("tenant", tenant.as_str()));
                }
                match family.value {
                    Value::Gauge(read) => {
                        if let Some(value) = read(row) {
                            ConstGauge::new(value)
                                .encode(family_encoder.encode_family(&labels)?)?;
                        }
                    }
                    Value::Counter(read) => {
                        if let Some(value) = read(row) {
                            ConstCounter::new(value)
                                .encode(family_encoder.encode_family(&labels)?)?;
                        }
                    }
                    Value::Seconds(read) => {
                        if let Some(value) = read(row) {
                            ConstCounter::new(value)
                                .encode(family_encoder.encode_family(&labels)?)?;
                        }
                    }
                }
            }
        }
        let alerts = encoder.encode_descriptor(
            "roster_alerts_firing",
            "Alerts whose condition holds now.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(saturating(self.alerts_firing)).encode(alerts)?;
        let mut failures = encoder.encode_descriptor(
            "roster_notify_failures",
            "Alert events not delivered to a notify target: failed after every attempt, \
             or dropped from its full queue.",
            None,
            MetricType::Counter,
        )?;
        for (target, failed, dropped) in &self.notify_failures {
            for (reason, count) in [("failed", failed), ("dropped", dropped)] {
                let labels = [("target", target.as_str()), ("reason", reason)];
                ConstCounter::new(*count).encode(failures.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use super::*;
    use crate::metrics::{AgentMetrics, LogCounters};

    fn agent(name: &str, pid: Option<u32>, restarts: u64, healthy: Option<bool>) -> AgentMetrics {
        AgentMetrics {
            name: name.into(),
            tenant: None,
            pid,
            restarts,
            healthy,
            log: LogCounters {
                lines: Arc::new(AtomicU64::new(0)),
                dropped: Arc::new(AtomicU64::new(0)),
            },
        }
    }

    #[test]
    fn every_family_with_help_type_and_the_agent_label() {
        let snapshot = MetricsSnapshot {
            agents: vec![
                agent("web", Some(4242), 3, Some(true)),
                agent("worker", None, 0, None),
            ],
            alerts_firing: 2,
            notify_failures: vec![("webhook http://127.0.0.1:1/".into(), 3, 1000)],
        };
        let samples = [
            AgentSample {
                cpu_seconds_total: Some(1.5),
                memory_bytes: Some(8 << 20),
                open_files: Some(7),
                connections: Some(2),
                threads: Some(4),
                log_lines_total: 120,
                log_dropped_lines_total: 1,
            },
            AgentSample {
                log_lines_total: 5,
                ..AgentSample::default()
            },
        ];
        let text = encode(&snapshot, &samples);
        let expected = r#"# HELP roster_agent_up Whether a process of the agent runs (1) or not (0).
# TYPE roster_agent_up gauge
roster_agent_up{agent="web"} 1
roster_agent_up{agent="worker"} 0
# HELP roster_agent_restarts_total Start attempts of the agent after the first (failed ones count).
# TYPE roster_agent_restarts_total counter
roster_agent_restarts_total{agent="web"} 3
roster_agent_restarts_total{agent="worker"} 0
# HELP roster_agent_cpu_seconds_total CPU time used by the agent's process group (user and system, with its reaped children).
# TYPE roster_agent_cpu_seconds_total counter
roster_agent_cpu_seconds_total{agent="web"} 1.5
# HELP roster_agent_memory_bytes Resident memory of the agent's process group.
# TYPE roster_agent_memory_bytes gauge
roster_agent_memory_bytes{agent="web"} 8388608
# HELP roster_agent_open_files Open file descriptors of the agent's process group.
# TYPE roster_agent_open_files gauge
roster_agent_open_files{agent="web"} 7
# HELP roster_agent_connections TCP sockets (IPv4 and IPv6, any state) of the agent's process group.
# TYPE roster_agent_connections gauge
roster_agent_connections{agent="web"} 2
# HELP roster_agent_threads Threads of the agent's process group.
# TYPE roster_agent_threads gauge
roster_agent_threads{agent="web"} 4
# HELP roster_agent_healthy The agent's health check verdict: 1 healthy, 0 unhealthy; absent without a check or a verdict.
# TYPE roster_agent_healthy gauge
roster_agent_healthy{agent="web"} 1
# HELP roster_log_lines_total Log lines of the agent stored in its log file.
# TYPE roster_log_lines_total counter
roster_log_lines_total{agent="web"} 120
roster_log_lines_total{agent="worker"} 5
# HELP roster_log_dropped_lines_total Log lines of the agent dropped because they could not be stored (a full disk).
# TYPE roster_log_dropped_lines_total counter
roster_log_dropped_lines_total{agent="web"} 1
roster_log_dropped_lines_total{agent="worker"} 0
# HELP roster_alerts_firing Alerts whose condition holds now.
# TYPE roster_alerts_firing gauge
roster_alerts_firing 2
# HELP roster_notify_failures_total Alert events not delivered to a notify target: failed after every attempt, or dropped from its full queue.
# TYPE roster_notify_failures_total counter
roster_notify_failures_total{target="webhook http://127.0.0.1:1/",reason="failed"} 3
roster_notify_failures_total{target="webhook http://127.0.0.1:1/",reason="dropped"} 1000
"#;
        assert_eq!(text, expected, "got:\n{text}");
    }

    #[test]
    fn unhealthy_is_zero_and_missing_samples_are_unknown() {
        let snapshot = MetricsSnapshot {
            agents: vec![agent("a", Some(7), 0, Some(false))],
            alerts_firing: 0,
            notify_failures: Vec::new(),
        };
        let text = encode(&snapshot, &[]);
        assert!(
            text.contains("roster_agent_healthy{agent=\"a\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("roster_agent_up{agent=\"a\"} 1\n"), "{text}");
        assert!(!text.contains("roster_agent_memory_bytes{"), "{text}");
        assert!(text.contains("roster_alerts_firing 0\n"), "{text}");
    }

    #[test]
    fn no_agents_still_describes_every_family() {
        let text = encode(&MetricsSnapshot::default(), &[]);
        for name in [
            "roster_agent_up",
            "roster_agent_restarts_total",
            "roster_agent_cpu_seconds_total",
            "roster_agent_memory_bytes",
            "roster_agent_open_files",
            "roster_agent_connections",
            "roster_agent_threads",
            "roster_agent_healthy",
            "roster_log_lines_total",
            "roster_log_dropped_lines_total",
            "roster_alerts_firing",
            "roster_notify_failures_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
        }
    }

    #[test]
    fn an_agent_with_a_tenant_carries_it_as_a_label() {
        let mut tenant = agent("c01.support", Some(7), 0, None);
        tenant.tenant = Some("c01".into());
        let snapshot = MetricsSnapshot {
            agents: vec![tenant, agent("plain", Some(8), 0, None)],
            alerts_firing: 0,
            notify_failures: Vec::new(),
        };
        let text = encode(&snapshot, &[AgentSample::default(), AgentSample::default()]);
        assert!(
            text.contains("roster_agent_up{agent=\"c01.support\",tenant=\"c01\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("roster_agent_up{agent=\"plain\"} 1"),
            "{text}"
        );
    }
}
