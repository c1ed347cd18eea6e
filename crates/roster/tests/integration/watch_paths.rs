//! `watch_paths` (issue #19): an edit under an agent's watched paths
//! restarts it once, drained and journaled with the file; editors' swap
//! files, `__pycache__`, `.git` and files outside the paths restart
//! nothing; agents without `watch_paths` have no watcher, and an apply that
//! takes it away closes the one there was; a bad value is a located error.

use std::path::Path;

use roster_core::api::AgentState;

use crate::util::*;

/// A Python agent in `src/` that imports a module (so Python writes
/// `src/__pycache__/` at every start), and a sentinel agent watching
/// `*.txt` files. The sentinel is how the test knows the daemon has seen
/// every earlier change: its restart comes through the same watcher
/// thread, inbox and debouncer, after them.
fn project(roster: &Roster, app_watch: &str) {
    std::fs::create_dir_all(roster.path("src")).expect("mkdir src");
    roster.write("src/util.py", "GREETING = 'one'\n");
    roster.write(
        "src/main.py",
        "import time\nimport util\nprint(util.GREETING, flush=True)\nwhile True:\n    time.sleep(1)\n",
    );
    roster.config(&format!(
        "[agents.app]\ncommand = [\"python3\", \"src/main.py\"]\nready_after = \"200ms\"\n\
         drain_timeout = \"5s\"\n{app_watch}\n\
         [agents.sentinel]\ncommand = [\"sleep\", \"1000\"]\nready_after = \"200ms\"\n\
         watch_paths = [\"*.txt\"]\n"
    ));
}

fn pid(roster: &Roster, agent: &str) -> u32 {
    roster.agent(agent).pid.expect("a running pid")
}

/// Waits until `agent` runs with a pid other than `old`; returns it.
fn wait_new_pid(roster: &Roster, agent: &str, old: u32) -> u32 {
    let status = roster.wait_status(&format!("{agent} to restart"), SECS(20), |status| {
        status.agents.iter().any(|line| {
            line.name == agent
                && line.state == AgentState::Running
                && line.pid.is_some_and(|pid| pid != old)
        })
    });
    status
        .agents
        .iter()
        .find(|line| line.name == agent)
        .and_then(|line| line.pid)
        .expect("pid")
}

/// Edits the sentinel's file and waits for its restart: every change made
/// before it has reached the daemon and been decided on by then.
fn barrier(roster: &Roster, round: u32) {
    let before = pid(roster, "sentinel");
    roster.write("barrier.txt", &format!("round {round}\n"));
    wait_new_pid(roster, "sentinel", before);
}

fn files_changed(roster: &Roster, agent: &str) -> Vec<String> {
    roster
        .events(&[agent])
        .into_iter()
        .filter(|event| event.kind == "files_changed")
        .map(|event| event.detail)
        .collect()
}

/// inotify descriptors the daemon holds.
fn inotify_fds(roster: &Roster) -> usize {
    let daemon = roster.daemon_pid().expect("daemon pid");
    std::fs::read_dir(format!("/proc/{daemon}/fd"))
        .expect("daemon fds")
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|target| target == Path::new("anon_inode:inotify"))
        })
        .count()
}

#[test]
fn an_edit_under_watch_paths_restarts_the_agent_once_and_noise_does_not() {
    let roster = Roster::new();
    project(&roster, "watch_paths = [\"src\"]");
    roster.up();
    let first = pid(&roster, "app");
    // Python's own __pycache__ at start is no change: the sentinel sees
    // everything before it, and app is still the first process.
    barrier(&roster, 1);
    assert_eq!(pid(&roster, "app"), first, "{:?}", roster.events(&["app"]));

    // An editor's save: several writes in a burst.
    let util = roster.path("src/util.py");
    std::fs::write(&util, "GREETING = 'two'\n").expect("edit");
    std::fs::write(&util, "GREETING = 'two'\n# saved twice\n").expect("edit again");
    let second = wait_new_pid(&roster, "app", first);

    // Noise: swap and backup files, compiled Python, .git, and a file
    // outside `src` that no path names.
    std::fs::create_dir_all(roster.path("src/.git")).expect("mkdir .git");
    std::fs::create_dir_all(roster.path("src/__pycache__")).expect("mkdir pycache");
    for (name, text) in [
        ("src/.util.py.swp", "swap"),
        ("src/util.py~", "backup"),
        ("src/.#util.py", "lock"),
        ("src/util.pyc", "bytecode"),
        ("src/__pycache__/util.cpython-3.pyc", "bytecode"),
        ("src/.git/HEAD", "ref: refs/heads/main"),
        ("README.md", "not watched"),
    ] {
        roster.write(name, text);
    }
    barrier(&roster, 2);

    let app = roster.agent("app");
    assert_eq!(app.pid, Some(second), "{:?}", roster.events(&["app"]));
    assert_eq!(app.restarts, 1);
    assert_eq!(
        files_changed(&roster, "app"),
        ["restarting: watch_paths: src/util.py changed"]
    );
    // Drained: the stop that followed used the drain timeout's path, and
    // the new process runs the new code.
    wait_for("the new code's output", SECS(10), || {
        log_lines(&roster.log_path("app"))
            .iter()
            .any(|line| line == "two")
            .then_some(())
    });
    assert_eq!(files_changed(&roster, "sentinel").len(), 2);
    assert!(files_changed(&roster, "sentinel")[0].contains("barrier.txt"));
}

#[test]
fn only_agents_with_watch_paths_have_a_watcher_and_apply_rearms_or_closes_it() {
    let roster = Roster::new();
    project(&roster, "");
    roster.up();
    // The sentinel's watcher only.
    wait_for("the sentinel's watcher", SECS(10), || {
        (inotify_fds(&roster) == 1).then_some(())
    });
    let first = pid(&roster, "app");

    // Given watch_paths by an apply: watched, and not restarted for it.
    project(&roster, "watch_paths = [\"src/util.py\"]");
    roster.ok(&["apply"]);
    wait_for("app's watcher", SECS(10), || {
        (inotify_fds(&roster) == 2).then_some(())
    });
    assert_eq!(pid(&roster, "app"), first);
    // A single file is watched through its directory: a save by rename
    // (as many editors do) counts too.
    roster.write("src/util.py.new", "GREETING = 'renamed'\n");
    std::fs::rename(roster.path("src/util.py.new"), roster.path("src/util.py")).expect("rename");
    wait_new_pid(&roster, "app", first);

    // Taken away: the watcher and its descriptor go; edits do nothing.
    project(&roster, "");
    roster.ok(&["apply"]);
    wait_for("app's watcher to close", SECS(10), || {
        (inotify_fds(&roster) == 1).then_some(())
    });
    let second = pid(&roster, "app");
    roster.write("src/util.py", "GREETING = 'three'\n");
    barrier(&roster, 1);
    assert_eq!(pid(&roster, "app"), second);
    assert_eq!(files_changed(&roster, "app").len(), 1);
}

#[test]
fn check_locates_a_bad_watch_paths() {
    let roster = Roster::new();
    roster.config(
        "[agents.web]\ncommand = \"sleep 1\"\nwatch_paths = \"src\"\n\
         [agents.api]\ncommand = \"sleep 1\"\nwatch_paths = [\"src\", \"\"]\n",
    );
    let output = roster.run(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "roster.toml:3:15: `watch_paths` must be a list of paths",
        "roster.toml:6:23: an empty path in `watch_paths`",
        "hint: e.g. watch_paths = [\"src\", \"*.py\"]",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
