//! The daemon's own cost while its agents idle: what sampling for the
//! default rules takes (bench/ measures it precisely; this holds a
//! generous bound on a loaded machine).

use std::time::{Duration, Instant};

use crate::util::*;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon stat");
    let fields: Vec<&str> = text[text.rfind(')').expect("stat") + 1..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// A `FIELD: N kB` line of a /proc file (`smaps_rollup`, `status`), in KiB.
fn kib_field(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The `Pss:` line of `/proc/PID/smaps_rollup`, in KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss")
}

#[test]
fn a_hundred_idle_agents_with_the_default_rules_cost_the_daemon_little() {
    let roster = Roster::new();
    let mut config = String::new();
    for index in 0..100 {
        config.push_str(&format!(
            "[agents.idle{index:03}]\ncommand = [\"sleep\", \"1000.{index}\"]\n\n"
        ));
    }
    roster.config(&config);
    roster.up();
    roster.wait_status("100 agents running", SECS(60), |status| {
        status
            .agents
            .iter()
            .filter(|agent| agent.pid.is_some())
            .count()
            == 100
    });
    let daemon = roster.daemon_pid().expect("daemon pid");
    // Past the start-up and the first samples, then a window with samples
    // of every agent in it (every 5 s).
    std::thread::sleep(Duration::from_secs(3));
    let (start, before) = (Instant::now(), cpu_ticks(daemon));
    std::thread::sleep(Duration::from_secs(11));
    let ticks = cpu_ticks(daemon) - before;
    let seconds = start.elapsed().as_secs_f64();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let percent = ticks as f64 / hz / seconds * 100.0;
    assert!(
        percent < 1.0,
        "the daemon used {percent:.2}% of a core over {seconds:.1} s with 100 idle agents"
    );
    if let Some(pss) = pss_kib(daemon) {
        assert!(
            pss < 16 * 1024,
            "the daemon's PSS is {pss} KiB with 100 idle agents"
        );
    }
}

/// A field of `/proc/PID/status` in KiB (`RssFile`, `RssAnon`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), field)
}

/// Once quiet after start-up, the daemon drops the pages of code start-up
/// touched from its mappings (they are read back when needed): its
/// file-backed resident set shrinks, and it still does everything asked of
/// it afterwards.
#[test]
fn a_quiet_daemon_gives_back_the_pages_start_up_touched_and_still_works() {
    let roster = Roster::new();
    roster.config(&sh_agent("idle", "echo up; exec sleep 3600", ""));
    roster.up();
    let daemon = roster.daemon_pid().expect("daemon pid");
    let at_start = status_kib(daemon, "RssFile").expect("RssFile");
    let trimmed = wait_for("the daemon's mapped code to shrink", SECS(40), || {
        let now = status_kib(daemon, "RssFile")?;
        (now * 2 <= at_start).then_some(now)
    });
    eprintln!("RssFile: {at_start} KiB after up, {trimmed} KiB once quiet");
    // The dropped code comes back when needed: status, a restart, logs.
    let before = roster.agent("idle").pid.expect("pid");
    roster.ok(&["restart", "idle"]);
    let after = roster.wait_state("idle", roster_core::api::AgentState::Running, SECS(20));
    assert_ne!(after.pid, Some(before));
    let logs = roster.ok(&["logs", "idle", "-n", "5"]);
    assert!(logs.contains("up"), "{logs}");
}
