//! Draws the [`Model`] into a ratatui frame. ratatui keeps the last frame
//! and writes only the cells that changed, so a redraw every second does
//! not flicker, even over a slow SSH link.

use std::time::Instant;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use roster_core::api::{AgentState, Health};

use super::model::{Link, Mode, Model};
use crate::commands::logs::escape_controls;

/// The bar heights a sparkline is drawn with.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The smallest top of a CPU sparkline's scale, in percent of a core: an
/// idle agent's hundredths of a percent stay on the floor (as its `0.0%`
/// says) instead of filling the bars.
pub const CPU_SCALE_FLOOR: f64 = 1.0;

/// The last `width` values as bars; missing values are blanks, and no
/// values at all a dotted line. `from_zero` scales from 0 to the largest
/// value, at least [`CPU_SCALE_FLOOR`] (CPU: idle is the floor);
/// otherwise from the smallest to the largest (memory: the shape of a
/// leak shows even on a large base), with a flat series drawn at mid
/// height.
pub fn sparkline(values: &[Option<f64>], width: usize, from_zero: bool) -> String {
    if width == 0 {
        return String::new();
    }
    let shown = &values[values.len().saturating_sub(width)..];
    if shown.iter().all(Option::is_none) {
        return "·".repeat(width);
    }
    let top = shown.iter().flatten().copied().fold(f64::MIN, f64::max);
    let top = if from_zero {
        top.max(CPU_SCALE_FLOOR)
    } else {
        top
    };
    let bottom = if from_zero {
        0.0
    } else {
        shown.iter().flatten().copied().fold(f64::MAX, f64::min)
    };
    let last = (BARS.len() - 1) as f64;
    let mut line: String = " ".repeat(width - shown.len());
    for value in shown {
        line.push(match value {
            None => ' ',
            Some(_) if top <= bottom && !from_zero => BARS[BARS.len() / 2 - 1],
            Some(_) if top <= bottom => BARS[0],
            Some(value) => {
                let level = ((value - bottom) / (top - bottom) * last).round();
                BARS[(level.max(0.0) as usize).min(BARS.len() - 1)]
            }
        });
    }
    line
}

/// `512K`, `12.3M`, `1.2G`: memory in at most six characters.
pub fn memory(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "K", "M", "G", "T", "P", "E"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// A state in at most four letters, for a table too narrow for the whole
/// word: abbreviated on purpose, never cut mid-word.
pub fn short_state(state: AgentState) -> &'static str {
    match state {
        AgentState::Starting => "strt",
        AgentState::Running => "run",
        AgentState::Stopping => "stpg",
        AgentState::Stopped => "stop",
        AgentState::Backoff => "boff",
        AgentState::Failed => "fail",
        AgentState::Exited => "exit",
        AgentState::Undeployed => "undp",
    }
}

/// Which columns of the agents' table fit a width, and how wide the
/// variable ones are. The name and the state always show (the state
/// abbreviated when even the whole word would not fit); the others join
/// while they fit, in this order: health, CPU, memory, restarts, uptime;
/// then the name grows towards its longest, and the rest goes to the two
/// sparklines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    /// The name's width.
    pub name: u16,
    /// The state's width: [`STATE_WIDTH`], or 4 for [`short_state`].
    pub state: u16,
    /// HEALTH shows.
    pub health: bool,
    /// CPU shows.
    pub cpu: bool,
    /// MEM shows.
    pub memory: bool,
    /// RST shows.
    pub restarts: bool,
    /// UP shows.
    pub uptime: bool,
    /// Each sparkline's width (0: none).
    pub spark: u16,
}

/// The widest state, `undeployed`.
pub const STATE_WIDTH: u16 = 10;

/// The highlight marker's cells (`> `).
const MARKER: u16 = 2;

impl Columns {
    /// The layout for a table `width` cells wide whose longest name has
    /// `longest` characters.
    pub fn fit(width: u16, longest: u16) -> Self {
        let longest = longest.clamp(4, 28);
        let name_min = longest.min(12);
        // "undeployed", the longest state, whole; else four letters.
        let state = if width >= MARKER + name_min.min(4) + 1 + STATE_WIDTH {
            STATE_WIDTH
        } else {
            4
        };
        let mut used = MARKER + name_min + 1 + state;
        let mut shown = [false; 5];
        // health, cpu, memory, restarts, uptime: each with its gap.
        for (index, cells) in [9u16, 6, 6, 4, 6].into_iter().enumerate() {
            if used + 1 + cells > width {
                break;
            }
            used += 1 + cells;
            shown[index] = true;
        }
        let [health, cpu, memory, restarts, uptime] = shown;
        // Names give up to 12 cells (and their gaps) to two sparklines of
        // at least 6 each.
        let spare = width.saturating_sub(used - name_min);
        let reserve = if cpu && memory { 12 + 2 } else { 0 };
        let name = longest
            .min(spare.saturating_sub(reserve).max(12))
            .min(spare.max(name_min.min(width.saturating_sub(MARKER + 1 + state))));
        let left = spare.saturating_sub(name);
        let spark = if cpu && memory {
            (left.saturating_sub(2) / 2).min(30)
        } else {
            0
        };
        Columns {
            name,
            state,
            health,
            cpu,
            memory,
            restarts,
            uptime,
            spark: if spark < 3 { 0 } else { spark },
        }
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &mut Model, now: Instant, home: &str) {
    let area = frame.area();
    let alert_lines = model.alerts.len().min(3) as u16;
    let alerts_height = if alert_lines > 0 { alert_lines + 1 } else { 0 };
    // The log pane takes two fifths of what is left, when there is room.
    let rest = area.height.saturating_sub(2 + alerts_height);
    let log_height = if model.show_log && rest >= 10 {
        (rest * 2 / 5).max(4)
    } else {
        0
    };
    let [header, table, alerts, log, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(alerts_height),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, model, now, home, header);
    table::draw_table(frame, model, now, table);
    if alerts_height > 0 {
        draw_alerts(frame, model, alerts);
    }
    if log_height > 0 {
        draw_log(frame, model, log);
    }
    draw_footer(frame, model, now, footer);
    if model.show_help {
        draw_help(frame, area);
    }
}

/// Every key, in a box over the middle of the screen.
const HELP: [(&str, &str); 14] = [
    ("j k, arrows", "select an agent"),
    ("PgUp PgDn", "a page up or down"),
    ("g G, Home End", "the first or last agent"),
    ("/", "filter by name (Enter keeps it)"),
    ("Esc", "clear the filter"),
    ("s", "sort: name, trouble, CPU, memory, restarts"),
    ("r", "restart the selected agent (asks y/n)"),
    ("x", "stop the selected agent (asks y/n)"),
    ("l", "show or hide the log"),
    ("q, Ctrl-C", "quit"),
    ("", ""),
    ("sparklines", "the last samples, every 5 s"),
    ("red header", "the daemon is not answering"),
    ("", "any key closes this"),
];

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = 60.min(area.width);
    let height = (HELP.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {keys:<14}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(ratatui::widgets::Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" roster top: keys ")),
        popup,
    );
}

/// The header while the daemon does not answer: what to do first (a
/// narrow terminal cuts the end), then the error.
pub fn down_text(away_secs: u64, error: &str) -> String {
    let error = escape_controls(error.lines().next().unwrap_or(error)).into_owned();
    if error.contains("Permission denied") {
        format!(
            " no access to the daemon ({away_secs}s): this user may not use its socket; run as its user or in its admin group: {error}"
        )
    } else {
        format!(" daemon not answering for {away_secs}s (retrying; roster up starts it): {error}")
    }
}

fn draw_header(frame: &mut Frame, model: &Model, now: Instant, home: &str, area: Rect) {
    let line = match &model.link {
        Link::Connecting => Line::from(format!(" roster top  {home}  connecting to the daemon...")),
        Link::Down { since, error } => {
            let away = now.saturating_duration_since(*since).as_secs();
            Line::from(down_text(away, error)).style(
                Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            )
        }
        Link::Up { back_at, away_for } => {
            let count = |state: AgentState| {
                model
                    .agents
                    .iter()
                    .filter(|agent| agent.state == state)
                    .count()
            };
            let mut spans = vec![
                Span::styled(" roster top ", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!(
                    " {} agents, {} running",
                    model.agents.len(),
                    count(AgentState::Running)
                )),
            ];
            for (state, color) in [
                (AgentState::Failed, Color::Red),
                (AgentState::Backoff, Color::Red),
                (AgentState::Stopped, Color::DarkGray),
            ] {
                let n = count(state);
                if n > 0 {
                    spans.push(Span::styled(
                        format!(", {n} {}", state.as_str()),
                        Style::new().fg(color),
                    ));
                }
            }
            let unhealthy = model
                .agents
                .iter()
                .filter(|agent| agent.health == Health::Unhealthy)
                .count();
            if unhealthy > 0 {
                spans.push(Span::styled(
                    format!(", {unhealthy} unhealthy"),
                    Style::new().fg(Color::Red),
                ));
            }
            if back_at.is_some() {
                spans.push(Span::styled(
                    format!("  daemon back after {}s away", away_for.as_secs()),
                    Style::new()
                        .fg(Color::Black)
                        .bg(Color::Green)
                        .add_modifier(Modifier::BOLD),
                ));
            } else {
                spans.push(Span::styled(
                    format!("  {home}"),
                    Style::new().fg(Color::DarkGray),
                ));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// CPU and memory points of one agent.
fn draw_alerts(frame: &mut Frame, model: &Model, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(format!(" alerts: {} firing ", model.alerts.len()))
        .border_style(Style::new().fg(Color::Red));
    let lines: Vec<Line> = model
        .alerts
        .iter()
        .take(area.height.saturating_sub(1) as usize)
        .map(|alert| {
            let color = if alert.severity == "critical" {
                Color::Red
            } else {
                Color::Yellow
            };
            Line::from(vec![
                Span::styled(format!(" {:<8} ", alert.severity), Style::new().fg(color)),
                Span::raw(format!(
                    "{}{}: {}",
                    alert
                        .agent
                        .as_deref()
                        .map(|agent| format!("{agent} "))
                        .unwrap_or_default(),
                    alert.name,
                    escape_controls(&alert.summary)
                )),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_log(frame: &mut Frame, model: &Model, area: Rect) {
    let title = match &model.log_agent {
        Some(agent) if model.selected.as_deref() == Some(agent.as_str()) => {
            format!(" log: {} ", escape_controls(agent))
        }
        _ => " log ".to_owned(),
    };
    let mut block = Block::new()
        .borders(Borders::TOP)
        .title(title)
        .border_style(Style::new().fg(Color::DarkGray));
    // Why the selected agent could not start, where the eye already is.
    let why = model
        .selected
        .as_deref()
        .and_then(|name| model.agents.iter().find(|agent| agent.name == name))
        .and_then(|agent| agent.last_error.as_deref());
    if let Some(why) = why {
        block = block.title(
            Line::from(format!(
                " cannot start: {} ",
                escape_controls(why.lines().next().unwrap_or(why))
            ))
            .style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
        );
    }
    let height = area.height.saturating_sub(1) as usize;
    let lines: Vec<Line> = if model.log_agent.is_some() && model.log_agent == model.selected {
        model.log[model.log.len().saturating_sub(height)..]
            .iter()
            .map(|line| Line::raw(escape_controls(line).into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_footer(frame: &mut Frame, model: &Model, now: Instant, area: Rect) {
    let key = |text: &'static str| Span::styled(text, Style::new().add_modifier(Modifier::BOLD));
    let line = match &model.mode {
        Mode::Confirm(effect) => {
            let (verb, name) = match effect {
                super::model::Effect::Restart(name) => ("Restart", name),
                super::model::Effect::Stop(name) => ("Stop", name),
                super::model::Effect::Quit => ("Quit", &String::new()),
            };
            Line::from(format!(" {verb} {}? y/n", escape_controls(name))).style(
                Style::new()
                    .fg(Color::Black)
                    .bg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            )
        }
        Mode::Filter => Line::from(vec![
            Span::raw(" filter: "),
            Span::styled(
                format!("{}_", model.filter),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                "  (Enter keeps it, Esc clears it)",
                Style::new().fg(Color::DarkGray),
            ),
        ]),
        Mode::Normal => {
            if let Some(notice) = model.notice(now) {
                Line::from(format!(" {notice}")).style(Style::new().fg(Color::Yellow))
            } else {
                let mut spans = vec![
                    Span::raw(" "),
                    key("q"),
                    Span::raw(" quit  "),
                    key("jk"),
                    Span::raw(" select  "),
                    key("/"),
                    Span::raw(" filter  "),
                    key("s"),
                    Span::raw(format!(" sort:{}  ", model.sort.as_str())),
                    key("r"),
                    Span::raw(" restart  "),
                    key("x"),
                    Span::raw(" stop  "),
                    key("l"),
                    Span::raw(" log  "),
                    key("?"),
                    Span::raw(" help"),
                ];
                if !model.filter.is_empty() {
                    spans.push(Span::styled(
                        format!("  filter: {}", model.filter),
                        Style::new().fg(Color::Cyan),
                    ));
                }
                Line::from(spans)
            }
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

mod table;

#[cfg(test)]
mod screen_tests;
#[cfg(test)]
mod tests;
