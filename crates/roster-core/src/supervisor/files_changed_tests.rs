//! `watch_paths` restarts on a fake clock: a running agent drains and
//! restarts with the reason journaled, not rate-limited like restarts for
//! ill health; one in backoff starts at once; a stopped one stays stopped;
//! a changed `watch_paths` alone restarts nothing.

use super::driven_tests::{a, Driven};
use super::*;

/// Agent `a`, drained with SIGUSR1 within 5 s, with `extra` keys.
fn watched(extra: &str) -> Driven {
    Driven::new(&config_text(extra))
}

fn config_text(extra: &str) -> String {
    format!(
        "[agents.a]\ncommand = \"sleep 100\"\nready_after = \"0s\"\n\
         drain_signal = \"SIGUSR1\"\ndrain_timeout = \"5s\"\n{extra}\n"
    )
}

/// Files under `watch_paths` changed at `seconds`.
fn files_changed(w: &mut Driven, seconds: f64) {
    let now = w.at(seconds);
    w.sup
        .handle_files_changed(now, &a(), "watch_paths: src/main.py changed");
    w.drive(now);
}

/// The main process ends (on the drain signal) at `seconds`.
fn exit(w: &mut Driven, seconds: f64) {
    let pid = w.pid().expect("a pid");
    let now = w.at(seconds);
    assert!(w.sup.handle_exit(now, pid, ExitStatus::Signal(10)));
    w.drive(now);
}

#[test]
fn a_change_drains_and_restarts_a_running_agent_with_its_reason() {
    let mut w = watched("watch_paths = [\"src\"]");
    assert_eq!(w.pid(), Some(101));
    files_changed(&mut w, 2.0);
    assert_eq!(w.signals, [(101, Signal::Usr1)], "the drain signal");
    assert!(w.events.contains(&(
        "files_changed".into(),
        "restarting: watch_paths: src/main.py changed".into()
    )));
    // SIGKILL after drain_timeout, not stop_timeout.
    assert_eq!(w.sup.poll_timeout(), Some(w.at(7.0)));
    exit(&mut w, 2.5);
    assert_eq!(w.pid(), Some(102));
}

#[test]
fn changes_are_not_limited_like_restarts_for_ill_health() {
    let mut w = watched("watch_paths = [\"src\"]");
    for round in 0..(AUTO_RESTARTS_MAX + 3) {
        let at = 2.0 * (round as f64 + 1.0);
        files_changed(&mut w, at);
        exit(&mut w, at + 0.1);
    }
    assert_eq!(w.pid(), Some(101 + AUTO_RESTARTS_MAX as u32 + 3));
    assert!(!w
        .events
        .iter()
        .any(|(kind, _)| kind == "restart_suppressed"));
}

#[test]
fn a_change_starts_an_agent_waiting_out_a_backoff_at_once() {
    let mut w = watched("watch_paths = [\"src\"]\nrestart_delay = \"30s\"");
    exit(&mut w, 0.5);
    assert_eq!(w.pid(), None, "waiting out restart_delay");
    files_changed(&mut w, 1.0);
    assert_eq!(w.pid(), Some(102));
}

#[test]
fn a_stopped_agent_stays_stopped() {
    let mut w = watched("watch_paths = [\"src\"]");
    let now = w.at(1.0);
    w.sup.handle_stop(now, &a());
    w.drive(now);
    exit(&mut w, 1.1);
    let events = w.events.len();
    files_changed(&mut w, 2.0);
    assert_eq!(w.pid(), None);
    assert_eq!(w.events.len(), events, "{:?}", &w.events[events..]);
}

#[test]
fn a_new_watch_paths_alone_restarts_nothing() {
    let mut w = watched("watch_paths = [\"src\"]");
    let summary = w.sup.handle_apply(
        w.at(1.0),
        &crate::config::parse(
            "test.toml",
            &config_text("watch_paths = [\"lib\", \"*.py\"]"),
            std::path::Path::new("/tmp"),
        )
        .expect("valid config"),
        false,
    );
    assert_eq!(summary.unchanged, ["a"], "{summary:?}");
    w.drive(w.at(1.0));
    assert!(w.signals.is_empty());
    assert_eq!(
        w.sup.spec(&a()).map(|spec| spec.watch_paths.clone()),
        Some(vec!["lib".to_owned(), "*.py".to_owned()])
    );
}
