//! Tables for people. Scripts use `--json`.

use roster_core::api::{grouped, summary, AgentStatus, Health, Listed};

/// `12.3 MiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `3d4h`, `5m3s`, `42s`: the two largest units.
pub fn uptime(seconds: u64) -> String {
    let parts = [
        (seconds / 86400, "d"),
        (seconds / 3600 % 24, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ];
    let first = parts.iter().position(|(value, _)| *value > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(2)
        .filter(|(value, _)| *value > 0 || first == 3)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect()
}

/// The daemon's warnings, one `warning: ...` line each (for stderr).
pub fn warnings(warnings: &[String]) -> String {
    warnings
        .iter()
        .map(|warning| format!("warning: {warning}\n"))
        .collect()
}

/// The status table: an agent's copies (`instances`) grouped under a line
/// that sums them up, indented, in number order.
pub fn status_table(agents: &[AgentStatus]) -> String {
    if agents.is_empty() {
        return "no agents\n".to_owned();
    }
    let refs: Vec<&AgentStatus> = agents.iter().collect();
    let mut rows: Vec<[String; 9]> = Vec::new();
    for line in grouped(&refs) {
        match line {
            Listed::Agent(agent) => rows.push(agent_row(agent, "")),
            Listed::Group { of, copies } => {
                let sums = summary(&copies);
                rows.push([
                    of.to_owned(),
                    format!("{}/{} running", sums.running, sums.copies),
                    health(sums.health),
                    String::new(),
                    String::new(),
                    sums.restarts.to_string(),
                    sums.memory_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                    cpu(sums.cpu_percent),
                    String::new(),
                ]);
                rows.extend(copies.into_iter().map(|copy| agent_row(copy, "  ")));
            }
        }
    }
    let header = [
        "NAME", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS", "MEMORY", "CPU", "",
    ];
    table(&header, &rows)
}

fn agent_row(agent: &AgentStatus, indent: &str) -> [String; 9] {
    let state = match (agent.state.as_str(), agent.last_exit) {
        ("exited" | "failed" | "backoff", Some(exit)) => {
            format!("{} ({exit})", agent.state.as_str())
        }
        (state, _) => state.to_owned(),
    };
    [
        format!("{indent}{}", agent.name),
        state,
        health(agent.health),
        agent
            .pid
            .map(|pid| pid.to_string())
            .unwrap_or_else(|| "-".into()),
        agent.uptime_secs.map(uptime).unwrap_or_else(|| "-".into()),
        agent.restarts.to_string(),
        agent.memory_bytes.map(bytes).unwrap_or_else(|| "-".into()),
        cpu(agent.cpu_percent),
        match agent.log_dropped_lines {
            0 => String::new(),
            dropped => format!("{dropped} log lines dropped"),
        },
    ]
}

/// A health as the tables write it (`-` for unknown).
pub fn health(health: Health) -> String {
    match health {
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
        Health::Unknown => "-",
    }
    .to_owned()
}

fn cpu(percent: Option<f64>) -> String {
    percent
        .map(|cpu| format!("{cpu:.1}%"))
        .unwrap_or_else(|| "-".into())
}

/// Columns padded to their widest cell (in characters), two spaces apart,
/// no trailing blanks.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|cell| cell.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12 * 1024 * 1024 + 300 * 1024), "12.3 MiB");
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(303), "5m3s");
        assert_eq!(uptime(3 * 86400 + 4 * 3600 + 5), "3d4h");
    }

    #[test]
    fn copies_are_grouped_under_their_agent() {
        let agent = |name: &str, copy: Option<u32>| -> AgentStatus {
            let mut value = serde_json::json!({
                "name": name, "state": "running", "pid": 7, "restarts": 0,
                "uptime_secs": 5, "memory_bytes": 1024, "cpu_percent": 1.0,
                "health": "healthy",
            });
            if let Some(number) = copy {
                value["instance_of"] = "w".into();
                value["instance"] = number.into();
            }
            serde_json::from_value(value).expect("an agent")
        };
        let text = status_table(&[
            agent("a", None),
            agent("w.1", Some(1)),
            agent("w.10", Some(10)),
            agent("w.2", Some(2)),
        ]);
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|line| line.split("  ").find(|cell| !cell.is_empty()).unwrap_or(""))
            .collect();
        assert_eq!(names, ["a", "w", "w.1", "w.2", "w.10"], "{text}");
        let group = text.lines().nth(2).unwrap_or_default();
        assert!(group.contains("3/3 running"), "{text}");
        assert!(
            group.contains("3.0 KiB") && group.contains("3.0%"),
            "{text}"
        );
        assert!(text.contains("\n  w.1 "), "copies are indented: {text}");
    }
}
