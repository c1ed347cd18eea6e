//! A flood of log lines matching a `log_matches` rule (issue #14, item 1):
//! counting them must cost O(1) per batch and never delay restarts,
//! reaping, the API or a shutdown, and the daemon's memory stays bounded.

use std::time::{Duration, Instant};

use crate::util::*;

/// Prints `ERROR ...` lines at `rate` a second, one write(2) per line
/// (paced, so each is a read of its own) or in batches of a tenth of a
/// second.
const FLOOD: &str = r#"
import os, sys, time
rate, mode = int(sys.argv[1]), sys.argv[2]
line = b"ERROR request failed: upstream timed out\n"
start, sent = time.monotonic(), 0
while True:
    if mode == "batch":
        os.write(1, line * (rate // 10)); sent += rate // 10
    else:
        os.write(1, line); sent += 1
    ahead = start + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
"#;

fn rule() -> &'static str {
    // The README's own example.
    "[[agents.NAME.watch]]\nmetric = \"log_matches\"\npattern = \"(?i)\\\\berror\\\\b\"\nwithin = \"5m\"\nabove = 100\naction = \"alert\"\n"
}

/// The daemon's CPU time (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after comm.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("daemon status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
        .unwrap_or(100)
        .max(1)
}

#[test]
fn a_matching_log_flood_delays_no_restart_status_or_shutdown() {
    let roster = Roster::new();
    roster.write("flood.py", FLOOD);
    let pids = roster.path("pids");
    let config = format!(
        "[agents.lines]\ncommand = [\"python3\", \"-u\", \"flood.py\", \"3000\", \"line\"]\n{}\n\
         [agents.batches]\ncommand = [\"python3\", \"-u\", \"flood.py\", \"20000\", \"batch\"]\n{}\n{}",
        rule().replace("NAME", "lines"),
        rule().replace("NAME", "batches"),
        sh_agent(
            "victim",
            &format!("echo $$ >> {}; exec sleep 1000", pids.display()),
            "restart_delay = \"0s\"\nstable_after = \"1s\"\ncrash_loop = 0",
        ),
    );
    roster.config(&config);
    roster.up();
    let daemon = roster.daemon_pid().expect("daemon pid");
    let read_pids = || pids_in(&pids);

    let flood_for = Duration::from_secs(60);
    let started = Instant::now();
    let mut worst_restart = Duration::ZERO;
    let mut worst_status = Duration::ZERO;
    let mut worst_rss = 0;
    let mut last_third: Option<(Instant, u64)> = None;
    while started.elapsed() < flood_for {
        // A crash beside the flood: the replacement must come at once.
        let before = read_pids();
        let victim = *before.last().expect("the victim's pid");
        kill(victim, Signal::SIGKILL);
        let killed_at = Instant::now();
        wait_for("the victim's replacement", SECS(30), || {
            (read_pids().len() > before.len()).then_some(())
        });
        worst_restart = worst_restart.max(killed_at.elapsed());

        let asked = Instant::now();
        let status = roster.status();
        worst_status = worst_status.max(asked.elapsed());
        assert!(status
            .agents
            .iter()
            .all(|agent| agent.name == "victim"
                || agent.state == roster_core::api::AgentState::Running));
        worst_rss = worst_rss.max(rss_kib(daemon));
        if last_third.is_none() && started.elapsed() >= flood_for * 2 / 3 {
            last_third = Some((Instant::now(), cpu_ticks(daemon)));
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    let (third_at, third_ticks) = last_third.expect("a last third");
    let cpu = (cpu_ticks(daemon) - third_ticks) as f64
        / ticks_per_second() as f64
        / third_at.elapsed().as_secs_f64()
        * 100.0;
    eprintln!(
        "flood: worst restart {worst_restart:?}, worst status {worst_status:?}, \
         worst RSS {worst_rss} KiB, daemon CPU {cpu:.1}% of a core over the last third"
    );

    // The rules work under the flood: both fire.
    let alerts = roster.ok(&["alerts"]);
    for agent in ["lines", "batches"] {
        assert!(
            alerts.contains(&format!("{agent}: log lines matching")),
            "{agent} should fire:\n{alerts}"
        );
    }
    // Usual figures: ~10 ms, ~15 MiB, ~6% of a core. The quadratic count
    // grew with the window: ~45% over the last third here, a full core
    // and seconds per status on the machine the fault was found on.
    assert!(
        worst_restart < Duration::from_secs(1),
        "restart took {worst_restart:?}"
    );
    assert!(
        worst_status < Duration::from_secs(2),
        "status took {worst_status:?}"
    );
    assert!(worst_rss < 100 * 1024, "daemon RSS reached {worst_rss} KiB");
    assert!(cpu < 30.0, "the daemon used {cpu:.1}% of a core");
    assert!(zombies_of(daemon).is_empty(), "zombies under the daemon");

    let asked = Instant::now();
    roster.ok(&["down"]);
    assert!(
        asked.elapsed() < SECS(20),
        "down took {:?}",
        asked.elapsed()
    );
    assert!(roster.processes().is_empty(), "agents outlived down");
}
