//! The view drawn into a test terminal: what a user sees at several
//! sizes, narrow ones included, and how the rows scroll.

use std::time::Instant;

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::super::model::{Key, Model};
use super::draw;

fn model() -> Model {
    let agents = (0..40)
        .map(|n| {
            serde_json::from_value(serde_json::json!({
                "name": format!("customer-{n:02}-support-agent\u{1b}[31m"),
                "state": if n % 7 == 0 { "failed" } else { "running" },
                "pid": 100 + n,
                "restarts": n,
                "uptime_secs": 86_400 * n,
                "memory_bytes": 1_u64 << (n % 40),
                "cpu_percent": n as f64 * 2.5,
                "health": "unhealthy",
                "last_error": if n == 0 { Some("pyhton3: not found in PATH") } else { None },
            }))
            .expect("an agent")
        })
        .collect();
    let mut model = Model::showing(agents);
    model.on_log(
        "customer-00-support-agent",
        vec!["\u{7}bell".into(); 50],
        true,
    );
    model.on_alerts(vec![serde_json::from_value(serde_json::json!({
        "fingerprint": "f1",
        "name": "memory_high",
        "agent": "customer-03-support-agent",
        "severity": "critical",
        "state": "firing",
        "summary": "memory above 400MiB for 1m",
        "details": "",
        "starts_at": "2026-11-29T12:00:00Z",
    }))
    .expect("an alert")]);
    model
}

fn text(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn any_size_draws_without_panicking_and_80x24_shows_rows_and_keys() {
    let mut model = model();
    for (width, height) in [(80, 24), (1, 1), (20, 5), (200, 60), (80, 3)] {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
        terminal
            .draw(|frame| draw(frame, &mut model, Instant::now(), "/var/lib/roster"))
            .expect("drawn");
    }
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    terminal
        .draw(|frame| draw(frame, &mut model, Instant::now(), "/var/lib/roster"))
        .expect("drawn");
    let screen = text(&terminal);
    assert!(screen.contains("? help"), "{screen}");
    assert!(screen.contains("40 agents"), "{screen}");
    assert!(screen.contains("customer-01"), "{screen}");
    assert!(screen.contains("q quit"), "{screen}");
    assert!(screen.contains("alerts: 1 firing"), "{screen}");
    assert!(
        screen.contains("cannot start: pyhton3: not found in PATH"),
        "{screen}"
    );
    assert!(
        screen.contains("memory_high: memory above 400MiB"),
        "{screen}"
    );
    model.on_key(Key::Char('?'));
    for (width, height) in [(80, 24), (20, 5), (1, 1)] {
        let mut small = Terminal::new(TestBackend::new(width, height)).expect("terminal");
        small
            .draw(|frame| draw(frame, &mut model, Instant::now(), "/var/lib/roster"))
            .expect("drawn");
    }
    terminal
        .draw(|frame| draw(frame, &mut model, Instant::now(), "/var/lib/roster"))
        .expect("drawn");
    let help = text(&terminal);
    assert!(help.contains("roster top: keys"), "{help}");
    assert!(
        help.contains("sort: name, trouble, CPU"),
        "the help names the sorts as the footer does: {help}"
    );
    assert!(help.contains("PgUp PgDn"), "{help}");
    // An agent's control characters are shown escaped, never sent.
    assert!(
        !screen.contains('\u{1b}') && !screen.contains('\u{7}'),
        "{screen}"
    );
}

// Issue #14, item 20: at 40 columns (and narrower) every state is
// whole; the footer names the sort as the README does.
fn lines(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn states_are_never_cut_and_the_footer_says_trouble() {
    let states = [
        "running",
        "failed",
        "stopping",
        "backoff",
        "starting",
        "exited",
        "undeployed",
    ];
    let agents = states
        .iter()
        .enumerate()
        .map(|(n, state)| {
            serde_json::from_value(serde_json::json!({
                "name": format!("customer-{n:02}-support-agent"), "state": state,
                "pid": 1, "restarts": 3, "uptime_secs": 100, "memory_bytes": 18 << 20,
                "cpu_percent": 0.0, "health": "healthy",
            }))
            .expect("an agent")
        })
        .collect();
    let mut model = Model::showing(agents);
    model.show_log = false;
    for width in [40u16, 30, 20, 17] {
        let mut terminal = Terminal::new(TestBackend::new(width, 12)).expect("terminal");
        terminal
            .draw(|frame| draw(frame, &mut model, Instant::now(), "/h"))
            .expect("drawn");
        let rows: Vec<String> = lines(&terminal)
            .into_iter()
            .filter(|line| line.contains("cust"))
            .collect();
        assert_eq!(rows.len(), states.len(), "{width}: {rows:#?}");
        for (row, state) in rows.iter().zip(states) {
            let words: Vec<&str> = row.split_whitespace().collect();
            assert!(
                words.contains(&state),
                "{width} columns cut {state}: {row:?}"
            );
        }
    }
    let mut terminal = Terminal::new(TestBackend::new(80, 12)).expect("terminal");
    model.on_key(Key::Char('s'));
    terminal
        .draw(|frame| draw(frame, &mut model, Instant::now(), "/h"))
        .expect("drawn");
    let footer = lines(&terminal).pop().unwrap_or_default();
    assert!(footer.contains("s sort:trouble"), "{footer}");
}

/// Which agent names the screen shows, top to bottom.
fn shown(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .filter_map(|y| {
            let line: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect();
            line.trim_start_matches(['>', ' '])
                .split_whitespace()
                .next()
                .filter(|word| word.starts_with("agent-"))
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn moving_up_inside_the_visible_rows_does_not_scroll() {
    let agents = (0..50)
        .map(|n| {
            serde_json::from_value(serde_json::json!({
                "name": format!("agent-{n:02}"), "state": "running", "pid": 1,
                "restarts": 0, "uptime_secs": 1, "memory_bytes": 1,
                "cpu_percent": 0.0, "health": "unknown",
            }))
            .expect("an agent")
        })
        .collect();
    let mut model = Model::showing(agents);
    model.show_log = false;
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let mut frame = |model: &mut Model| {
        terminal
            .draw(|frame| draw(frame, model, Instant::now(), "/h"))
            .expect("drawn");
        shown(&terminal)
    };
    for _ in 0..30 {
        model.on_key(Key::Down);
    }
    let before = frame(&mut model);
    assert!(before.contains(&"agent-30".to_owned()), "{before:?}");
    model.on_key(Key::Up);
    let after = frame(&mut model);
    assert_eq!(before, after, "the rows stayed put");
    assert_eq!(model.selected.as_deref(), Some("agent-29"));
}

/// The first word of each row, the marker left out: the names shown.
fn first_words(rows: &[String]) -> Vec<&str> {
    rows.iter()
        .filter_map(|line| {
            line.trim_start_matches(['>', ' '])
                .split_whitespace()
                .next()
        })
        .collect()
}

/// An agent's copies sit together under one line that sums them up, in
/// number order whatever the sort; the selection walks the copies and
/// never lands on the group's line.
#[test]
fn copies_are_shown_grouped_under_their_agent() {
    let agent = |name: &str, copy: Option<u32>, state: &str, cpu: f64| {
        let mut value = serde_json::json!({
            "name": name, "state": state, "pid": 1, "restarts": 1,
            "uptime_secs": 1, "memory_bytes": 1_048_576, "cpu_percent": cpu,
            "health": "unknown",
        });
        if let Some(number) = copy {
            value["instance_of"] = "w".into();
            value["instance"] = number.into();
        }
        serde_json::from_value::<roster_core::api::AgentStatus>(value).expect("an agent")
    };
    let mut model = Model::showing(vec![
        agent("alpha", None, "running", 1.0),
        agent("w.1", Some(1), "running", 2.0),
        agent("w.10", Some(10), "backoff", 50.0),
        agent("w.2", Some(2), "running", 3.0),
        agent("zeta", None, "running", 9.0),
    ]);
    let mut terminal = Terminal::new(TestBackend::new(100, 16)).expect("terminal");
    // Draws the model and returns the table's rows.
    let mut drawn = |model: &mut Model| -> Vec<String> {
        terminal
            .draw(|frame| draw(frame, model, Instant::now(), "/h"))
            .expect("drawn");
        lines(&terminal)
            .into_iter()
            .filter(|line| {
                let name = line.trim_start_matches(['>', ' ']);
                ["alpha", "w ", "w.", "zeta"]
                    .iter()
                    .any(|start| name.starts_with(start))
            })
            .collect()
    };
    let shown = drawn(&mut model);
    assert_eq!(
        first_words(&shown),
        ["alpha", "w", "w.1", "w.2", "w.10", "zeta"],
        "{shown:#?}"
    );
    assert!(shown[1].contains("2/3 up"), "{shown:#?}");
    assert!(
        shown[1].contains("55.0%") && shown[1].contains("3.0M"),
        "{shown:#?}"
    );
    assert!(
        shown[2].contains("  w.1"),
        "copies are indented: {shown:#?}"
    );
    // Sorted by CPU, the group stands where its busiest copy does, its
    // copies still in number order.
    model.on_key(Key::Char('s'));
    model.on_key(Key::Char('s'));
    let shown = drawn(&mut model);
    assert_eq!(
        first_words(&shown),
        ["w", "w.1", "w.2", "w.10", "zeta", "alpha"],
        "{shown:#?}"
    );
    // The selection (still on alpha, at the bottom) walks up the copies
    // and stops at w.1, never on the group's line.
    for expected in ["zeta", "w.10", "w.2", "w.1", "w.1"] {
        model.on_key(Key::Up);
        let marked = drawn(&mut model)
            .into_iter()
            .find(|line| line.starts_with('>'))
            .and_then(|line| line[1..].split_whitespace().next().map(str::to_owned));
        assert_eq!(marked.as_deref(), Some(expected));
    }
}
