//! What `roster top` shows and how keys change it: a pure state machine.
//! It takes the daemon's answers and key presses, with the time passed in,
//! and says what the I/O layer should do ([`Effect`]); it never reads a
//! socket, a file or a clock. The view draws from it; the tests drive it.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use roster_core::api::{
    in_group_order, AgentState, AgentStatus, AlertRecord, Health, HistoryPoint, StatusReply,
};

/// The lines of an agent's log the pane keeps.
pub const LOG_LINES: usize = 500;

/// The characters of a log line the pane keeps (no terminal is wider; an
/// agent's megabyte line must not cost the dashboard a megabyte).
pub const LOG_LINE_CHARS: usize = 1000;

/// How long "the daemon is back" stays on the header.
pub const BACK_NOTICE: Duration = Duration::from_secs(10);

/// How long a notice (an action's outcome) stays on the footer.
pub const NOTICE_FOR: Duration = Duration::from_secs(8);

/// A key, as the dashboard understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Backspace,
    /// Ctrl-C: quits from any mode.
    Interrupt,
}

/// What the I/O layer should do after a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Leave the dashboard.
    Quit,
    /// Ask the daemon to restart this agent.
    Restart(String),
    /// Ask the daemon to stop this agent.
    Stop(String),
}

/// Which key input is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Keys are commands.
    Normal,
    /// Keys edit the name filter.
    Filter,
    /// A y/n question about an effect.
    Confirm(Effect),
}

/// The order of the rows; `s` cycles through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// By name.
    Name,
    /// Trouble first (failed, backoff, unhealthy, ...), then by name.
    State,
    /// Most CPU first.
    Cpu,
    /// Most memory first.
    Memory,
    /// Most restarts first.
    Restarts,
}

impl Sort {
    /// The next order.
    pub fn next(self) -> Self {
        match self {
            Sort::Name => Sort::State,
            Sort::State => Sort::Cpu,
            Sort::Cpu => Sort::Memory,
            Sort::Memory => Sort::Restarts,
            Sort::Restarts => Sort::Name,
        }
    }

    /// As the footer names it, and the README and the help (`trouble`:
    /// failed, backoff, unhealthy first, not the states' order).
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::State => "trouble",
            Sort::Cpu => "cpu",
            Sort::Memory => "memory",
            Sort::Restarts => "restarts",
        }
    }
}

/// Whether the daemon answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// No answer yet, either way.
    Connecting,
    /// It answers; `back_at` is set when it came back after being away.
    Up {
        /// When it answered again after an outage.
        back_at: Option<Instant>,
        /// How long it had been away.
        away_for: Duration,
    },
    /// It stopped answering at `since`; `error` says how.
    Down {
        /// The first failed request.
        since: Instant,
        /// What the last request met.
        error: String,
    },
}

/// The dashboard's whole state.
#[derive(Debug)]
pub struct Model {
    /// The latest status (kept while the daemon is away, shown as stale).
    pub agents: Vec<AgentStatus>,
    /// When `agents` was fetched.
    pub fetched_at: Option<Instant>,
    /// The daemon's warnings.
    pub warnings: Vec<String>,
    /// CPU and memory samples per agent, oldest first.
    pub history: BTreeMap<String, Vec<HistoryPoint>>,
    /// Firing alerts.
    pub alerts: Vec<AlertRecord>,
    /// The selected agent, by name (stays put when rows move).
    pub selected: Option<String>,
    /// Rows shown only if their name contains this (case-insensitive).
    pub filter: String,
    /// Which key input is for.
    pub mode: Mode,
    /// The order of the rows.
    pub sort: Sort,
    /// Whether the log pane is shown.
    pub show_log: bool,
    /// The selected agent's last log lines.
    pub log: Vec<String>,
    /// Whose lines `log` holds.
    pub log_agent: Option<String>,
    /// Whether the daemon answers.
    pub link: Link,
    /// An action's outcome, and when it was set.
    pub notice: Option<(String, Instant)>,
    /// How many rows a page moves (the view sets it from the table's height).
    pub page: usize,
    /// How many samples a sparkline shows (the view sets it from the
    /// width; the poller asks for no more).
    pub spark_width: usize,
    /// The first table row shown (kept by the view between frames).
    pub table_offset: usize,
    /// Whether the key help covers the screen (`?`; any key closes it).
    pub show_help: bool,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            agents: Vec::new(),
            fetched_at: None,
            warnings: Vec::new(),
            history: BTreeMap::new(),
            alerts: Vec::new(),
            selected: None,
            filter: String::new(),
            mode: Mode::Normal,
            sort: Sort::Name,
            show_log: true,
            log: Vec::new(),
            log_agent: None,
            link: Link::Connecting,
            notice: None,
            page: 10,
            spark_width: 0,
            table_offset: 0,
            show_help: false,
        }
    }
}

/// How far up "trouble first" puts an agent (lower is worse).
fn trouble(agent: &AgentStatus) -> u8 {
    match (agent.state, agent.health) {
        (AgentState::Failed, _) => 0,
        (AgentState::Backoff, _) => 1,
        (_, Health::Unhealthy) => 2,
        (AgentState::Exited, _) => 3,
        (AgentState::Starting | AgentState::Stopping, _) => 4,
        (AgentState::Stopped | AgentState::Undeployed, _) => 5,
        (AgentState::Running, _) => 6,
    }
}

impl Model {
    /// The rows to show: filtered, then sorted, an agent's copies
    /// (`instances`) kept together where the first of them sorts, in
    /// number order.
    pub fn visible(&self) -> Vec<&AgentStatus> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&AgentStatus> = self
            .agents
            .iter()
            .filter(|agent| needle.is_empty() || agent.name.to_lowercase().contains(&needle))
            .collect();
        match self.sort {
            Sort::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
            Sort::State => rows.sort_by(|a, b| (trouble(a), &a.name).cmp(&(trouble(b), &b.name))),
            Sort::Cpu => rows.sort_by(|a, b| {
                b.cpu_percent
                    .unwrap_or(-1.0)
                    .total_cmp(&a.cpu_percent.unwrap_or(-1.0))
                    .then_with(|| a.name.cmp(&b.name))
            }),
            Sort::Memory => {
                rows.sort_by_key(|agent| (Reverse(agent.memory_bytes), agent.name.clone()));
            }
            Sort::Restarts => {
                rows.sort_by_key(|agent| (Reverse(agent.restarts), agent.name.clone()))
            }
        }
        in_group_order(&rows)
    }

    /// The selected row's index among [`Model::visible`].
    pub fn selected_index(&self) -> Option<usize> {
        let selected = self.selected.as_deref()?;
        self.visible()
            .iter()
            .position(|agent| agent.name == selected)
    }

    /// Keeps the selection on a visible row: the same agent if it is still
    /// shown, else the first row.
    fn settle_selection(&mut self) {
        if self.selected_index().is_none() {
            self.selected = self.visible().first().map(|agent| agent.name.clone());
        }
    }

    /// Moves the selection by `delta` rows, stopping at the ends.
    fn step(&mut self, delta: isize) {
        let names: Vec<String> = self
            .visible()
            .iter()
            .map(|agent| agent.name.clone())
            .collect();
        if names.is_empty() {
            self.selected = None;
            return;
        }
        let current = self
            .selected
            .as_deref()
            .and_then(|selected| names.iter().position(|name| name == selected))
            .unwrap_or(0) as isize;
        let last = names.len() as isize - 1;
        let next = (current + delta).clamp(0, last) as usize;
        self.selected = names.get(next).cloned();
    }

    /// A status answer, or why there was none.
    pub fn on_status(&mut self, answer: Result<StatusReply, String>, now: Instant) {
        match answer {
            Ok(reply) => {
                self.link = match &self.link {
                    Link::Down { since, .. } => Link::Up {
                        back_at: Some(now),
                        away_for: now.saturating_duration_since(*since),
                    },
                    Link::Up { back_at, away_for } => Link::Up {
                        back_at: back_at
                            .filter(|at| now.saturating_duration_since(*at) < BACK_NOTICE),
                        away_for: *away_for,
                    },
                    Link::Connecting => Link::Up {
                        back_at: None,
                        away_for: Duration::ZERO,
                    },
                };
                self.agents = reply.agents;
                self.warnings = reply.warnings;
                self.fetched_at = Some(now);
                self.settle_selection();
            }
            Err(error) => {
                self.link = match &self.link {
                    Link::Down { since, .. } => Link::Down {
                        since: *since,
                        error,
                    },
                    _ => Link::Down { since: now, error },
                };
            }
        }
    }

    /// An alerts answer (ignored when the daemon did not answer: the
    /// status answer already says so).
    pub fn on_alerts(&mut self, firing: Vec<AlertRecord>) {
        self.alerts = firing;
    }

    /// A history answer.
    pub fn on_history(&mut self, history: BTreeMap<String, Vec<HistoryPoint>>) {
        self.history = history;
    }

    /// New lines of `agent`'s log; `replace` when they are a fresh tail.
    pub fn on_log(&mut self, agent: &str, lines: Vec<String>, replace: bool) {
        if replace || self.log_agent.as_deref() != Some(agent) {
            self.log.clear();
            self.log_agent = Some(agent.to_owned());
        }
        self.log.extend(lines.into_iter().map(|mut line| {
            if let Some((cut, _)) = line.char_indices().nth(LOG_LINE_CHARS) {
                line.truncate(cut);
            }
            line
        }));
        let excess = self.log.len().saturating_sub(LOG_LINES);
        self.log.drain(..excess);
    }

    /// An action's outcome, shown on the footer for a while.
    pub fn notify(&mut self, text: String, now: Instant) {
        self.notice = Some((text, now));
    }

    /// The notice to show now, if any.
    pub fn notice(&self, now: Instant) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) < NOTICE_FOR)
            .map(|(text, _)| text.as_str())
    }

    /// Whose log the pane should follow: the selection, while it is shown.
    pub fn wanted_log(&self) -> Option<&str> {
        if self.show_log {
            self.selected.as_deref()
        } else {
            None
        }
    }

    /// A key press.
    pub fn on_key(&mut self, key: Key) -> Option<Effect> {
        if key == Key::Interrupt {
            return Some(Effect::Quit);
        }
        if self.show_help {
            self.show_help = false;
            return None;
        }
        match self.mode.clone() {
            Mode::Confirm(effect) => {
                self.mode = Mode::Normal;
                match key {
                    Key::Char('y' | 'Y') => Some(effect),
                    _ => None,
                }
            }
            Mode::Filter => {
                match key {
                    Key::Char(c) if !c.is_control() => self.filter.push(c),
                    Key::Backspace => {
                        self.filter.pop();
                    }
                    Key::Enter => self.mode = Mode::Normal,
                    Key::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    Key::Up => self.step(-1),
                    Key::Down => self.step(1),
                    _ => {}
                }
                self.settle_selection();
                None
            }
            Mode::Normal => {
                match key {
                    Key::Char('q') => return Some(Effect::Quit),
                    Key::Char('k') | Key::Up => self.step(-1),
                    Key::Char('j') | Key::Down => self.step(1),
                    Key::PageUp => self.step(-(self.page.max(1) as isize)),
                    Key::PageDown => self.step(self.page.max(1) as isize),
                    Key::Char('g') | Key::Home => self.step(isize::MIN / 2),
                    Key::Char('G') | Key::End => self.step(isize::MAX / 2),
                    Key::Char('/') => self.mode = Mode::Filter,
                    Key::Esc => {
                        self.filter.clear();
                        self.settle_selection();
                    }
                    Key::Char('s') => {
                        self.sort = self.sort.next();
                    }
                    Key::Char('l') => self.show_log = !self.show_log,
                    Key::Char('?') => self.show_help = true,
                    Key::Char('r') => {
                        if let Some(name) = self.selected.clone() {
                            self.mode = Mode::Confirm(Effect::Restart(name));
                        }
                    }
                    Key::Char('x') => {
                        if let Some(name) = self.selected.clone() {
                            self.mode = Mode::Confirm(Effect::Stop(name));
                        }
                    }
                    _ => {}
                }
                None
            }
        }
    }
}

#[cfg(test)]
impl Model {
    /// A model that has had one status answer, listing `agents`.
    pub fn showing(agents: Vec<AgentStatus>) -> Self {
        let mut model = Model::default();
        model.on_status(
            Ok(StatusReply {
                agents,
                warnings: vec![],
                config: None,
            }),
            Instant::now(),
        );
        model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, state: AgentState, cpu: f64, memory: u64, restarts: u64) -> AgentStatus {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "state": state.as_str(),
            "pid": 1,
            "restarts": restarts,
            "uptime_secs": 5,
            "memory_bytes": memory,
            "cpu_percent": cpu,
            "health": "unknown",
        }))
        .expect("an agent")
    }

    fn model() -> Model {
        Model::showing(vec![
            agent("alpha", AgentState::Running, 1.0, 300, 0),
            agent("beta", AgentState::Failed, 50.0, 100, 7),
            agent("gamma", AgentState::Running, 10.0, 200, 1),
        ])
    }

    fn names(model: &Model) -> Vec<&str> {
        model
            .visible()
            .iter()
            .map(|agent| agent.name.as_str())
            .collect()
    }

    #[test]
    fn selection_moves_and_stops_at_the_ends() {
        let mut model = model();
        assert_eq!(model.selected.as_deref(), Some("alpha"));
        model.on_key(Key::Char('k'));
        assert_eq!(model.selected.as_deref(), Some("alpha"));
        model.on_key(Key::Char('j'));
        model.on_key(Key::Down);
        model.on_key(Key::Down);
        assert_eq!(model.selected.as_deref(), Some("gamma"));
        model.on_key(Key::Home);
        assert_eq!(model.selected.as_deref(), Some("alpha"));
    }

    #[test]
    fn sort_cycles_and_the_selection_follows_its_agent() {
        let mut model = model();
        model.on_key(Key::Char('j'));
        assert_eq!(model.selected.as_deref(), Some("beta"));
        model.on_key(Key::Char('s'));
        assert_eq!(model.sort, Sort::State);
        assert_eq!(
            model.sort.as_str(),
            "trouble",
            "the footer's name is the README's (issue #14, item 20)"
        );
        assert_eq!(names(&model), ["beta", "alpha", "gamma"]);
        model.on_key(Key::Char('s'));
        assert_eq!(names(&model), ["beta", "gamma", "alpha"]);
        model.on_key(Key::Char('s'));
        assert_eq!(names(&model), ["alpha", "gamma", "beta"]);
        model.on_key(Key::Char('s'));
        assert_eq!(names(&model), ["beta", "gamma", "alpha"]);
        assert_eq!(model.selected.as_deref(), Some("beta"));
        model.on_key(Key::Char('s'));
        assert_eq!(model.sort, Sort::Name);
    }

    #[test]
    fn the_filter_narrows_rows_and_esc_clears_it() {
        let mut model = model();
        model.on_key(Key::Char('/'));
        for c in "AM".chars() {
            model.on_key(Key::Char(c));
        }
        assert_eq!(names(&model), ["gamma"]);
        assert_eq!(model.selected.as_deref(), Some("gamma"));
        // `q` is text while filtering, not quit.
        assert_eq!(model.on_key(Key::Char('q')), None);
        model.on_key(Key::Backspace);
        model.on_key(Key::Enter);
        assert_eq!(model.mode, Mode::Normal);
        assert_eq!(names(&model), ["gamma"]);
        model.on_key(Key::Esc);
        assert_eq!(names(&model).len(), 3);
    }

    #[test]
    fn restart_and_stop_happen_only_after_yes() {
        let mut model = model();
        assert_eq!(model.on_key(Key::Char('r')), None);
        assert_eq!(model.mode, Mode::Confirm(Effect::Restart("alpha".into())));
        assert_eq!(model.on_key(Key::Char('n')), None);
        assert_eq!(model.mode, Mode::Normal);
        model.on_key(Key::Char('r'));
        assert_eq!(
            model.on_key(Key::Char('y')),
            Some(Effect::Restart("alpha".into()))
        );
        model.on_key(Key::Char('x'));
        assert_eq!(model.on_key(Key::Esc), None);
        model.on_key(Key::Char('x'));
        assert_eq!(
            model.on_key(Key::Char('Y')),
            Some(Effect::Stop("alpha".into()))
        );
        assert_eq!(model.on_key(Key::Char('q')), Some(Effect::Quit));
    }

    #[test]
    fn help_opens_on_question_mark_and_any_key_closes_it_without_acting() {
        let mut model = model();
        model.on_key(Key::Char('?'));
        assert!(model.show_help);
        assert_eq!(model.on_key(Key::Char('q')), None, "q closes the help only");
        assert!(!model.show_help);
        assert_eq!(model.on_key(Key::Char('q')), Some(Effect::Quit));
    }

    #[test]
    fn the_link_goes_down_and_comes_back() {
        let mut model = model();
        let start = Instant::now();
        model.on_status(Err("refused".into()), start);
        model.on_status(Err("refused again".into()), start + Duration::from_secs(3));
        match &model.link {
            Link::Down { since, error } => {
                assert_eq!(*since, start);
                assert_eq!(error, "refused again");
            }
            other => panic!("{other:?}"),
        }
        // The last known rows stay.
        assert_eq!(names(&model).len(), 3);
        let back = start + Duration::from_secs(5);
        model.on_status(
            Ok(StatusReply {
                agents: vec![],
                warnings: vec![],
                config: None,
            }),
            back,
        );
        assert_eq!(
            model.link,
            Link::Up {
                back_at: Some(back),
                away_for: Duration::from_secs(5)
            }
        );
        assert_eq!(model.selected, None);
        model.on_status(
            Ok(StatusReply {
                agents: vec![],
                warnings: vec![],
                config: None,
            }),
            back + BACK_NOTICE,
        );
        assert!(matches!(model.link, Link::Up { back_at: None, .. }));
    }

    #[test]
    fn the_log_keeps_the_newest_lines_of_one_agent() {
        let mut model = model();
        model.on_log(
            "alpha",
            (0..LOG_LINES + 5).map(|n| n.to_string()).collect(),
            true,
        );
        assert_eq!(model.log.len(), LOG_LINES);
        assert_eq!(model.log.first().map(String::as_str), Some("5"));
        model.on_log("gamma", vec!["g".into()], false);
        assert_eq!(model.log, ["g"]);
        model.on_log("gamma", vec!["é".repeat(LOG_LINE_CHARS * 3)], false);
        assert_eq!(model.log[1].chars().count(), LOG_LINE_CHARS);
        model.on_key(Key::Char('l'));
        assert_eq!(model.wanted_log(), None);
    }
}
