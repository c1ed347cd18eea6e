use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

fn name(text: &str) -> AgentName {
    AgentName::new(text).expect("name")
}

fn paths(written: &[&str]) -> WatchPaths {
    WatchPaths::new(
        &written
            .iter()
            .map(|entry| entry.to_string())
            .collect::<Vec<_>>(),
    )
}

const CWD: &str = "/project/agent";
const HOME: &str = "/project/agent/.roster";

fn relevant(watch: &WatchPaths, path: &str) -> Option<String> {
    watch.relevant(Path::new(CWD), Path::new(HOME), Path::new(path))
}

#[test]
fn a_directory_counts_with_everything_under_it() {
    let watch = paths(&["src"]);
    assert_eq!(
        relevant(&watch, "/project/agent/src/main.py").as_deref(),
        Some("src/main.py")
    );
    assert_eq!(
        relevant(&watch, "/project/agent/src/deep/er/mod.py").as_deref(),
        Some("src/deep/er/mod.py")
    );
    assert_eq!(relevant(&watch, "/project/agent/srcx/main.py"), None);
    assert_eq!(relevant(&watch, "/project/agent/README.md"), None);
}

#[test]
fn a_file_entry_counts_only_for_that_file() {
    let watch = paths(&["./config.yaml"]);
    assert_eq!(
        relevant(&watch, "/project/agent/config.yaml").as_deref(),
        Some("config.yaml")
    );
    assert_eq!(relevant(&watch, "/project/agent/other.yaml"), None);
    assert_eq!(
        watch.roots(Path::new(CWD)),
        [Root {
            path: "/project/agent/config.yaml".into(),
            written: "./config.yaml".into()
        }]
    );
}

#[test]
fn a_glob_matches_file_names_anywhere_under_the_cwd() {
    let watch = paths(&["*.py"]);
    assert_eq!(
        relevant(&watch, "/project/agent/main.py").as_deref(),
        Some("main.py")
    );
    assert_eq!(
        relevant(&watch, "/project/agent/lib/util.py").as_deref(),
        Some("lib/util.py")
    );
    assert_eq!(relevant(&watch, "/project/agent/main.pyx"), None);
    assert_eq!(relevant(&watch, "/elsewhere/main.py"), None);
    assert_eq!(
        watch.roots(Path::new(CWD)),
        [Root {
            path: CWD.into(),
            written: "*.py".into()
        }]
    );
}

#[test]
fn a_glob_with_a_slash_matches_the_relative_path() {
    let watch = paths(&["lib/*.py", "conf/app-?.toml"]);
    assert!(relevant(&watch, "/project/agent/lib/util.py").is_some());
    assert!(relevant(&watch, "/project/agent/lib/deep/util.py").is_none());
    assert!(relevant(&watch, "/project/agent/conf/app-1.toml").is_some());
    assert!(relevant(&watch, "/project/agent/conf/app-12.toml").is_none());
}

#[test]
fn wildcards() {
    for (pattern, text, expected) in [
        ("*.py", "a.py", true),
        ("*.py", ".py", true),
        ("*.py", "a.py.bak", false),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
        ("*", "", true),
        ("?", "", false),
        ("src/*", "src/a/b", false),
        ("**", "abc", true),
    ] {
        assert_eq!(
            wildcard(pattern.as_bytes(), text.as_bytes()),
            expected,
            "{pattern} {text}"
        );
    }
}

#[test]
fn noise_never_counts() {
    let watch = paths(&["src", "*.py"]);
    for ignored in [
        "/project/agent/src/.git/index",
        "/project/agent/.git/objects/ab/cd",
        "/project/agent/src/__pycache__/main.cpython-311.pyc",
        "/project/agent/src/main.pyc",
        "/project/agent/src/.main.py.swp",
        "/project/agent/src/.main.py.swx",
        "/project/agent/src/main.py~",
        "/project/agent/src/.#main.py",
        "/project/agent/src/4913",
        // roster's own home: the agent's log and the journal
        "/project/agent/.roster/logs/web.log",
        "/project/agent/.roster/journal.db-wal",
    ] {
        assert_eq!(relevant(&watch, ignored), None, "{ignored}");
    }
}

#[test]
fn parent_directories_are_resolved_without_reading_files() {
    let watch = paths(&["../shared"]);
    assert_eq!(
        watch.roots(Path::new(CWD))[0].path,
        Path::new("/project/shared")
    );
    assert_eq!(
        relevant(&watch, "/project/shared/lib.py").as_deref(),
        Some("/project/shared/lib.py")
    );
}

#[test]
fn a_burst_of_changes_is_one_restart_once_quiet() {
    let t0 = Instant::now();
    let web = name("web");
    let mut debouncer = Debouncer::default();
    assert_eq!(debouncer.poll_timeout(), None);
    debouncer.handle_change(t0, &web, "src/main.py".into());
    debouncer.handle_change(t0 + Duration::from_millis(100), &web, "src/main.py".into());
    debouncer.handle_change(t0 + Duration::from_millis(200), &web, "src/util.py".into());
    let quiet = t0 + Duration::from_millis(200) + QUIET;
    assert_eq!(debouncer.poll_timeout(), Some(quiet));
    debouncer.handle_timeout(quiet - Duration::from_millis(1));
    assert_eq!(debouncer.poll_restart(), None);
    debouncer.handle_timeout(quiet);
    assert_eq!(
        debouncer.poll_restart(),
        Some(Restart {
            agent: web.clone(),
            reason: "watch_paths: src/main.py and 1 other file changed".into()
        })
    );
    assert_eq!(debouncer.poll_restart(), None);
    assert_eq!(debouncer.poll_timeout(), None);
}

#[test]
fn restarts_are_at_least_min_interval_apart() {
    let t0 = Instant::now();
    let web = name("web");
    let mut debouncer = Debouncer::default();
    debouncer.handle_change(t0, &web, "a.py".into());
    debouncer.handle_timeout(t0 + QUIET);
    assert_eq!(
        debouncer.poll_restart().map(|restart| restart.reason),
        Some("watch_paths: a.py changed".into())
    );
    // A change just after: quiet comes soon, but the restart waits for
    // the interval.
    let again = t0 + QUIET + Duration::from_millis(10);
    debouncer.handle_change(again, &web, "b.py".into());
    assert_eq!(debouncer.poll_timeout(), Some(t0 + QUIET + MIN_INTERVAL));
    debouncer.handle_timeout(again + QUIET);
    assert_eq!(debouncer.poll_restart(), None);
    debouncer.handle_timeout(t0 + QUIET + MIN_INTERVAL);
    assert_eq!(
        debouncer.poll_restart().map(|restart| restart.reason),
        Some("watch_paths: b.py changed".into())
    );
}

#[test]
fn changes_that_never_stop_restart_nothing_until_they_do() {
    let t0 = Instant::now();
    let web = name("web");
    let mut debouncer = Debouncer::default();
    for step in 0..100u64 {
        let now = t0 + Duration::from_millis(100 * step);
        debouncer.handle_change(now, &web, format!("gen/{step}.py"));
        debouncer.handle_timeout(now);
        assert_eq!(debouncer.poll_restart(), None);
    }
    let last = t0 + Duration::from_millis(9900);
    debouncer.handle_timeout(last + QUIET);
    assert_eq!(
        debouncer.poll_restart().map(|restart| restart.reason),
        Some("watch_paths: gen/0.py and more than 64 other files changed".into())
    );
}

#[test]
fn agents_are_debounced_apart_and_forgetting_drops_a_burst() {
    let t0 = Instant::now();
    let (web, worker) = (name("web"), name("worker"));
    let mut debouncer = Debouncer::default();
    debouncer.handle_change(t0, &web, "a.py".into());
    debouncer.handle_change(t0 + Duration::from_millis(250), &worker, "b.py".into());
    debouncer.handle_timeout(t0 + QUIET);
    assert_eq!(
        debouncer.poll_restart().map(|restart| restart.agent),
        Some(web.clone())
    );
    assert_eq!(debouncer.poll_restart(), None);
    debouncer.handle_forget(&worker);
    assert_eq!(debouncer.poll_timeout(), None);
    debouncer.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(debouncer.poll_restart(), None);
}
