//! `roster top`: a terminal dashboard over the control API.
//!
//! Three parts, so that a daemon that stops answering never freezes the
//! screen: a poller thread asks the daemon for status and alerts every
//! second (less often when status is slow: see [`refresh_after`]) and for
//! the sample history every five, and carries out restarts and stops; the
//! main thread reads keys, follows the selected agent's log file, feeds
//! both into the pure [`model::Model`], and redraws through [`view::draw`]
//! when something changed (at least once a second, so that uptimes move).

pub mod model;
pub mod view;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use roster_core::api::{AgentsRequest, AlertsReply, HistoryPoint, StatusReply};
use roster_store::logs::follow::Follower;
use roster_store::Home;

use crate::client::Client;
use model::{Effect, Key, Model};

/// How often status and alerts are fetched, at most.
const REFRESH: Duration = Duration::from_secs(1);
/// How long, at most, between two fetches, however slow status is.
const REFRESH_AT_LEAST: Duration = Duration::from_secs(10);
/// The share of the time the daemon may spend answering this dashboard:
/// each status costs it about as long as it takes to answer.
const DAEMON_SHARE: u32 = 50;

/// When to fetch again after a status took `took`: once a second, or less
/// often when status is slow (thousands of agents), so that the dashboard
/// keeps costing the daemon about 2% of a core at most.
pub fn refresh_after(took: Duration) -> Duration {
    (took * DAEMON_SHARE).clamp(REFRESH, REFRESH_AT_LEAST)
}
/// How often the sample history is fetched (the daemon samples every 5 s).
const HISTORY_EVERY: Duration = Duration::from_secs(5);
/// How long one request to the daemon may take before it counts as away.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// How long the main thread waits for a key before it looks at updates.
const TICK: Duration = Duration::from_millis(200);
/// The log lines read when the pane starts following an agent.
const LOG_TAIL: usize = 200;

/// What the poller sends the screen.
enum Update {
    Status(Result<StatusReply, String>),
    Alerts(AlertsReply),
    History(BTreeMap<String, Vec<HistoryPoint>>),
    /// The outcome of a restart or a stop.
    Done(String),
}

/// Runs the dashboard until `q`.
pub fn run(home: &Home) -> Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "roster top needs a terminal\n  hint: scripts read `roster status --json` and `roster alerts --json`"
        );
    }
    // SIGTERM, SIGHUP and SIGINT from outside (a `kill` from another pane)
    // end the dashboard like `q`, so the terminal is restored: blocked here
    // before any thread starts (threads inherit the mask), then waited for
    // by a thread of their own.
    let signals = {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
            set.add(signal);
        }
        set
    };
    signals.thread_block().context("blocking signals")?;
    let signalled = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let flag = signalled.clone();
    std::thread::Builder::new()
        .name("top-signals".into())
        .spawn(move || {
            if let Ok(signal) = signals.wait() {
                flag.store(signal as i32, Ordering::Relaxed);
                // The screen loop sees the flag within a tick and restores
                // the terminal. A terminal that hung up (SIGHUP: the SSH
                // session or the tmux server is gone) can leave the main
                // thread inside crossterm's read, which then spins on
                // end-of-file and never comes back: end the process anyway.
                std::thread::sleep(Duration::from_secs(1));
                let _ = ratatui::try_restore();
                std::process::exit(128 + signal as i32);
            }
        })
        .context("starting the signal thread")?;
    let client = super::client(home).with_timeout(ANSWER_WITHIN);
    let (updates, from_poller) = mpsc::channel();
    let (to_poller, effects) = mpsc::channel();
    let points = Arc::new(AtomicUsize::new(0));
    let wanted = points.clone();
    std::thread::Builder::new()
        .name("top-poller".into())
        .spawn(move || poll(&client, &updates, &effects, &wanted))
        .context("starting the poller thread")?;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let outcome = screen(
        &mut terminal,
        home,
        &from_poller,
        &to_poller,
        &points,
        &signalled,
    );
    let restored = ratatui::try_restore().context("restoring the terminal");
    outcome.and(restored)?;
    // Ended by a signal: say so in the exit code, as a shell would.
    let signal = signalled.load(Ordering::Relaxed);
    Ok(if signal > 0 {
        ExitCode::from(128 + signal as u8)
    } else {
        ExitCode::SUCCESS
    })
}

/// The poller: fetches, sends, and carries out effects as they come
/// (each followed by an immediate refresh). History is asked for only as
/// many samples as the sparklines show (`points`, set by the screen; none
/// on a terminal too narrow for them). Ends when the screen is gone.
fn poll(
    client: &Client,
    updates: &Sender<Update>,
    effects: &Receiver<Effect>,
    points: &AtomicUsize,
) {
    let mut history_at: Option<Instant> = None;
    loop {
        let asked = Instant::now();
        let status = client
            .get::<StatusReply>("/v1/status")
            .map_err(|error| format!("{error:#}"));
        // (A daemon that did not answer is asked again soon: the screen
        // should say it is back as soon as it is.)
        let wait = if status.is_ok() {
            refresh_after(asked.elapsed())
        } else {
            REFRESH
        };
        let up = status.is_ok();
        if updates.send(Update::Status(status)).is_err() {
            return;
        }
        if up {
            if let Ok(alerts) = client.get::<AlertsReply>("/v1/alerts") {
                let _ = updates.send(Update::Alerts(alerts));
            }
            let wanted = points.load(Ordering::Relaxed);
            if wanted > 0 && history_at.is_none_or(|at| at.elapsed() >= HISTORY_EVERY) {
                let path = format!("/v1/history?points={wanted}");
                if let Ok(history) = client.get::<BTreeMap<String, Vec<HistoryPoint>>>(&path) {
                    history_at = Some(Instant::now());
                    let _ = updates.send(Update::History(history));
                }
            }
        } else {
            history_at = None;
        }
        match effects.recv_timeout(wait) {
            Ok(effect) => {
                let (path, verb, name) = match &effect {
                    Effect::Restart(name) => ("/v1/restart", "restart", name),
                    Effect::Stop(name) => ("/v1/stop", "stop", name),
                    Effect::Quit => return,
                };
                let request = AgentsRequest {
                    names: vec![name.clone()],
                    drain: false,
                };
                let text = match client.post::<_, ()>(path, &request) {
                    Ok(()) => format!("{verb} of {name} requested"),
                    Err(error) => format!("{verb} of {name} failed: {error:#}"),
                };
                if updates.send(Update::Done(text)).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The key as the model knows it.
fn key(event: KeyEvent) -> Option<Key> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    if event.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(event.code, KeyCode::Char('c' | 'd')).then_some(Key::Interrupt);
    }
    Some(match event.code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

/// Follows one agent's log file for the pane.
struct LogTail {
    agent: String,
    follower: Option<Follower>,
}

impl LogTail {
    /// Starts following `agent`: its last lines, then what comes.
    fn open(home: &Home, agent: &str, model: &mut Model) -> Self {
        let path = home.agent_log(agent);
        match Follower::with_tail(path.clone(), LOG_TAIL) {
            Ok((follower, lines)) => {
                model.on_log(
                    agent,
                    lines.into_iter().map(|line| line.text).collect(),
                    true,
                );
                Self {
                    agent: agent.to_owned(),
                    follower: Some(follower),
                }
            }
            Err(error) => {
                model.on_log(
                    agent,
                    vec![format!("(cannot read {}: {error})", path.display())],
                    true,
                );
                Self {
                    agent: agent.to_owned(),
                    follower: None,
                }
            }
        }
    }

    /// New lines, if any; `true` when some came.
    fn poll(&mut self, model: &mut Model) -> bool {
        let Some(follower) = self.follower.as_mut() else {
            return false;
        };
        let lines = follower.poll();
        if lines.is_empty() {
            return false;
        }
        model.on_log(
            &self.agent,
            lines.into_iter().map(|line| line.text).collect(),
            false,
        );
        true
    }
}

/// The screen loop: keys, updates, log lines, redraws.
fn screen(
    terminal: &mut ratatui::DefaultTerminal,
    home: &Home,
    updates: &Receiver<Update>,
    effects: &Sender<Effect>,
    points: &AtomicUsize,
    signalled: &std::sync::atomic::AtomicI32,
) -> Result<()> {
    let home_text = home.root().display().to_string();
    let mut model = Model::default();
    let mut tail: Option<LogTail> = None;
    let mut dirty = true;
    let mut drawn_at = Instant::now();
    loop {
        if dirty || drawn_at.elapsed() >= REFRESH {
            terminal
                .draw(|frame| view::draw(frame, &mut model, Instant::now(), &home_text))
                .context("drawing")?;
            dirty = false;
            drawn_at = Instant::now();
            // A wider sparkline than last asked for: fetch at once.
            points.store(model.spark_width, Ordering::Relaxed);
        }
        if signalled.load(Ordering::Relaxed) != 0 {
            return Ok(());
        }
        if event::poll(TICK).context("reading the terminal")? {
            match event::read().context("reading the terminal")? {
                Event::Key(event) => {
                    if let Some(key) = key(event) {
                        dirty = true;
                        match model.on_key(key) {
                            Some(Effect::Quit) => return Ok(()),
                            Some(effect) => {
                                let (verb, name) = match &effect {
                                    Effect::Restart(name) => ("restarting", name.clone()),
                                    Effect::Stop(name) => ("stopping", name.clone()),
                                    Effect::Quit => ("", String::new()),
                                };
                                model.notify(format!("{verb} {name}..."), Instant::now());
                                if effects.send(effect).is_err() {
                                    bail!("the poller thread ended");
                                }
                            }
                            None => {}
                        }
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        let now = Instant::now();
        loop {
            match updates.try_recv() {
                Ok(Update::Status(answer)) => model.on_status(answer, now),
                Ok(Update::Alerts(alerts)) => model.on_alerts(alerts.firing),
                Ok(Update::History(history)) => model.on_history(history),
                Ok(Update::Done(text)) => model.notify(text, now),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => bail!("the poller thread ended"),
            }
            dirty = true;
        }
        let wanted = model.wanted_log().map(str::to_owned);
        match (&mut tail, wanted) {
            (Some(current), Some(wanted)) if current.agent == wanted => {
                dirty |= current.poll(&mut model);
            }
            (_, Some(wanted)) => {
                tail = Some(LogTail::open(home, &wanted, &mut model));
                dirty = true;
            }
            (_, None) => tail = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_status_is_asked_for_less_often() {
        assert_eq!(refresh_after(Duration::from_millis(3)), REFRESH);
        assert_eq!(refresh_after(Duration::from_millis(20)), REFRESH);
        assert_eq!(
            refresh_after(Duration::from_millis(60)),
            Duration::from_secs(3)
        );
        assert_eq!(refresh_after(Duration::from_secs(3)), REFRESH_AT_LEAST);
    }
}
