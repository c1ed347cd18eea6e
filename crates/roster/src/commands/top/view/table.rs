//! The agents' table of `roster top`: one row per agent, an agent's copies
//! (`instances`) under a line that sums them up.

use std::time::Instant;

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use roster_core::api::{grouped, summary, AgentState, AgentStatus, Health, HistoryPoint, Listed};

use super::super::model::{Link, Model};
use super::{memory, short_state, sparkline, Columns, STATE_WIDTH};
use crate::commands::logs::escape_controls;

fn state_style(agent: &AgentStatus) -> Style {
    match agent.state {
        AgentState::Running => Style::new().fg(Color::Green),
        AgentState::Failed => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        AgentState::Backoff => Style::new().fg(Color::Red),
        AgentState::Starting | AgentState::Stopping => Style::new().fg(Color::Yellow),
        AgentState::Stopped | AgentState::Exited | AgentState::Undeployed => {
            Style::new().fg(Color::DarkGray)
        }
    }
}

fn health_cell(health: Health) -> Cell<'static> {
    match health {
        Health::Healthy => Cell::from("healthy").style(Style::new().fg(Color::Green)),
        Health::Unhealthy => Cell::from("unhealthy").style(Style::new().fg(Color::Red)),
        Health::Unknown => Cell::from("-").style(Style::new().fg(Color::DarkGray)),
    }
}

/// Seconds as `1h2m`, counting on from the fetch while the agent runs.
fn uptime(agent: &AgentStatus, since_fetch: u64) -> String {
    match agent.uptime_secs {
        Some(seconds) if agent.state == AgentState::Running => {
            crate::render::uptime(seconds + since_fetch)
        }
        Some(seconds) => crate::render::uptime(seconds),
        None => "-".into(),
    }
}

fn series(history: Option<&Vec<HistoryPoint>>) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    let points = history.map(Vec::as_slice).unwrap_or_default();
    (
        points.iter().map(|point| point.cpu_percent).collect(),
        points
            .iter()
            .map(|point| point.memory_bytes.map(|bytes| bytes as f64))
            .collect(),
    )
}

pub(super) fn draw_table(frame: &mut Frame, model: &mut Model, now: Instant, area: Rect) {
    let stale = !matches!(model.link, Link::Up { .. });
    let since_fetch = model
        .fetched_at
        .map(|at| now.saturating_duration_since(at).as_secs())
        .unwrap_or(0);
    let rows_shown = model.visible();
    // A copy's name is indented under its agent's.
    let longest = rows_shown
        .iter()
        .map(|agent| agent.name.chars().count() + if agent.instance.is_some() { 2 } else { 0 })
        .max()
        .unwrap_or(4)
        .min(usize::from(u16::MAX)) as u16;
    let columns = Columns::fit(area.width, longest);
    let spark_width = columns.spark;
    let mut header = vec!["NAME", "STATE"];
    let mut widths = vec![
        Constraint::Length(columns.name),
        Constraint::Length(columns.state),
    ];
    for (shown, title, width) in [
        (columns.health, "HEALTH", 9),
        (columns.uptime, "UP", 6),
        (columns.restarts, "RST", 4),
        (columns.cpu, "CPU", 6),
        (spark_width > 0, "", spark_width),
        (columns.memory, "MEM", 6),
        (spark_width > 0, "", spark_width),
    ] {
        if shown {
            header.push(title);
            widths.push(Constraint::Length(width));
        }
    }
    let header =
        Row::new(header).style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let cells = Cells {
        columns: &columns,
        since_fetch,
        model: &*model,
    };
    // Each agent's copies under a line that sums them up; the selection
    // marks a row of an agent, never a group's line.
    let mut rows: Vec<Row> = Vec::new();
    let mut selected = None;
    let mut add = |rows: &mut Vec<Row>, agent: &AgentStatus, indent: &str| {
        if model.selected.as_deref() == Some(agent.name.as_str()) {
            selected = Some(rows.len());
        }
        rows.push(cells.agent(agent, indent));
    };
    for line in grouped(&rows_shown) {
        match line {
            Listed::Agent(agent) => add(&mut rows, agent, ""),
            Listed::Group { of, copies } => {
                rows.push(cells.group(of, &copies));
                for copy in copies {
                    add(&mut rows, copy, "  ");
                }
            }
        }
    }
    let empty = rows.is_empty();
    let mut table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    if stale {
        table = table.style(Style::new().add_modifier(Modifier::DIM));
    }
    drop(rows_shown);
    model.page = area.height.saturating_sub(1) as usize;
    model.spark_width = spark_width as usize;
    // The scroll position outlives the frame, so moving up inside the
    // visible rows moves the marker, not the rows.
    let mut state = TableState::default()
        .with_offset(model.table_offset)
        .with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
    model.table_offset = state.offset();
    if empty && area.height > 1 {
        let text = if model.agents.is_empty() {
            if matches!(model.link, Link::Up { .. }) {
                "  no agents: roster up -f roster.toml starts some"
            } else {
                ""
            }
        } else {
            "  no agent matches the filter (Esc clears it)"
        };
        let below = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(text), below);
    }
}

/// What a row's cells are drawn from.
struct Cells<'a> {
    columns: &'a Columns,
    since_fetch: u64,
    model: &'a Model,
}

impl Cells<'_> {
    /// An agent's row; a copy's name is indented under its agent's line.
    fn agent(&self, agent: &AgentStatus, indent: &str) -> Row<'static> {
        let columns = self.columns;
        let spark_width = columns.spark;
        let (cpu, mem) = series(self.model.history.get(&agent.name));
        let state = if columns.state >= STATE_WIDTH {
            agent.state.as_str()
        } else {
            short_state(agent.state)
        };
        let mut cells = vec![
            Cell::from(format!("{indent}{}", escape_controls(&agent.name))),
            Cell::from(state).style(state_style(agent)),
        ];
        if columns.health {
            cells.push(health_cell(agent.health));
        }
        if columns.uptime {
            cells.push(Cell::from(uptime(agent, self.since_fetch)));
        }
        if columns.restarts {
            cells.push(restarts_cell(agent.restarts));
        }
        if columns.cpu {
            cells.push(Cell::from(percent(agent.cpu_percent)));
        }
        if spark_width > 0 {
            cells.push(
                Cell::from(sparkline(&cpu, spark_width as usize, true))
                    .style(Style::new().fg(Color::Cyan)),
            );
        }
        if columns.memory {
            cells.push(Cell::from(
                agent.memory_bytes.map(memory).unwrap_or_else(|| "-".into()),
            ));
        }
        if spark_width > 0 {
            cells.push(
                Cell::from(sparkline(&mem, spark_width as usize, false))
                    .style(Style::new().fg(Color::Magenta)),
            );
        }
        Row::new(cells)
    }

    /// The line over an agent's copies: how many run, and their sums.
    fn group(&self, of: &str, copies: &[&AgentStatus]) -> Row<'static> {
        let columns = self.columns;
        let sums = summary(copies);
        let state_style = if sums.running == sums.copies {
            Style::new().fg(Color::Green)
        } else {
            Style::new().fg(Color::Yellow)
        };
        let state = if columns.state >= STATE_WIDTH {
            format!("{}/{} up", sums.running, sums.copies)
        } else {
            format!("{}/{}", sums.running, sums.copies)
        };
        let mut cells = vec![
            Cell::from(escape_controls(of).into_owned())
                .style(Style::new().add_modifier(Modifier::BOLD)),
            Cell::from(state).style(state_style),
        ];
        if columns.health {
            cells.push(health_cell(sums.health));
        }
        if columns.uptime {
            cells.push(Cell::from(""));
        }
        if columns.restarts {
            cells.push(restarts_cell(sums.restarts));
        }
        if columns.cpu {
            cells.push(Cell::from(percent(sums.cpu_percent)));
        }
        if columns.spark > 0 {
            cells.push(Cell::from(""));
        }
        if columns.memory {
            cells.push(Cell::from(
                sums.memory_bytes.map(memory).unwrap_or_else(|| "-".into()),
            ));
        }
        Row::new(cells)
    }
}

fn restarts_cell(restarts: u64) -> Cell<'static> {
    Cell::from(restarts.to_string()).style(if restarts > 0 {
        Style::new().fg(Color::Yellow)
    } else {
        Style::new()
    })
}

fn percent(cpu: Option<f64>) -> String {
    cpu.map(|cpu| format!("{cpu:.1}%"))
        .unwrap_or_else(|| "-".into())
}
