//! The machine's modes (`file_limit`, `high_load`, `clock_unsynced`) at
//! their thresholds' edges, and the kernel log's OOM kills, from
//! hand-built facts.

use super::*;

fn kill(pid: u32, command: &str, memcg: &str) -> KernelOom {
    KernelOom {
        usec: 5_000_000,
        time: Some("2026-12-06T01:00:00.000Z".into()),
        pid,
        command: Some(command.into()),
        task_memcg: Some(memcg.into()),
        oom_memcg: Some(memcg.into()),
        lines: vec![
            format!("Memory cgroup out of memory: Killed process {pid} ({command}) total-vm:321000kB, anon-rss:102000kB"),
            format!("oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg={memcg},task_memcg={memcg},task={command},pid={pid},uid=0"),
        ],
    }
}

#[test]
fn clock_unsynced_is_info_and_only_when_known() {
    let mut facts = facts(Vec::new());
    facts.host.clock_synchronised = Some(false);
    let found = only(classify(&facts), Mode::ClockUnsynced);
    assert_eq!(found.severity, Severity::Info);
    assert!(!found.is_problem(), "it must not make diagnose exit 1");
    assert!(
        found.action.contains("timedatectl set-ntp true"),
        "{found:#?}"
    );
    assert!(found.action.contains("TLS"), "{found:#?}");
    for known in [None, Some(true)] {
        facts.host.clock_synchronised = known;
        assert!(classify(&facts).is_empty(), "{known:?}");
    }
}

#[test]
fn high_load_above_twice_the_cpus_and_critical_above_four_times() {
    let mut web = agent("web", AgentState::Running);
    web.cpu_percent = Some(150.0);
    let mut db = agent("db", AgentState::Running);
    db.cpu_percent = Some(180.0);
    let mut idle = agent("idle", AgentState::Running);
    idle.cpu_percent = Some(0.0);
    let mut facts = facts(vec![web, db, idle]);
    let judged = |facts: &mut Facts, five: f64| {
        facts.host.load = Some([9.0, five, 1.0]);
        classify(facts)
    };
    assert!(
        judged(&mut facts, 4.0).is_empty(),
        "2 x 2 CPUs is not above"
    );
    let found = only(judged(&mut facts, 4.01), Mode::HighLoad);
    assert_eq!(found.severity, Severity::Warning);
    assert_eq!(
        found.evidence,
        [
            "load averages 9.00 4.01 1.00 (1, 5, 15 minutes) on 2 CPUs: 2.0 per CPU over 5 minutes",
            "busiest agents (CPU, 100% = one core): db 180%, web 150%",
        ]
    );
    assert!(
        found.action.starts_with("look at db, web first"),
        "{found:#?}"
    );
    assert_eq!(
        only(judged(&mut facts, 8.0), Mode::HighLoad).severity,
        Severity::Warning
    );
    assert_eq!(
        only(judged(&mut facts, 8.01), Mode::HighLoad).severity,
        Severity::Critical
    );

    let mut facts = self::facts(vec![agent("web", AgentState::Running)]);
    facts.host.load = Some([5.0, 5.0, 5.0]);
    let found = only(classify(&facts), Mode::HighLoad);
    assert!(
        found.action.starts_with("no agent reports CPU use"),
        "{found:#?}"
    );
    facts.host.cpus = None;
    assert!(classify(&facts).is_empty(), "no CPU count, no judgement");
}

#[test]
fn file_limit_of_the_daemon_by_its_agents_and_its_descriptors() {
    let mut facts = facts(vec![agent("web", AgentState::Running)]);
    // One agent: 128 + 4 = 132 descriptors needed.
    facts.host.daemon_open_files_limit = Some((132, 132));
    facts.host.daemon_open_files = Some(40);
    assert!(classify(&facts).is_empty(), "132 is enough for one agent");
    facts.host.daemon_open_files_limit = Some((131, 1024));
    let found = only(classify(&facts), Mode::FileLimit);
    assert_eq!(
        (found.severity, found.agent.as_deref()),
        (Severity::Warning, None)
    );
    assert!(
        found.evidence[0].starts_with(
            "the daemon's open-file limit is 131 (hard 1024); its 1 agents need about 132"
        ),
        "{found:#?}"
    );
    assert!(
        found.evidence[1].contains("holds 40 descriptors open (31%"),
        "{found:#?}"
    );
    assert!(found.action.contains("LimitNOFILE=65536"), "{found:#?}");
    assert!(found.action.contains("ulimit -n 65536"), "{found:#?}");
    assert!(
        found.action.contains("the hard limit here is 1024"),
        "{found:#?}"
    );

    // Enough for its agents but nearly all in use.
    facts.host.daemon_open_files_limit = Some((1000, u64::MAX));
    facts.host.daemon_open_files = Some(799);
    assert!(classify(&facts).is_empty(), "79.9%");
    facts.host.daemon_open_files = Some(800);
    let found = only(classify(&facts), Mode::FileLimit);
    assert_eq!(found.severity, Severity::Warning, "80%");
    assert!(found.evidence[0].contains("(hard unlimited)"), "{found:#?}");
    facts.host.daemon_open_files = Some(950);
    assert_eq!(
        only(classify(&facts), Mode::FileLimit).severity,
        Severity::Critical
    );

    // A daemon that does not answer is its own finding, not this one.
    facts.daemon = Daemon::NotRunning {
        socket: "/h/roster.sock".into(),
    };
    assert_eq!(
        modes(&classify(&facts)),
        [(Mode::DaemonUnreachable, Severity::Critical, None)]
    );
}

#[test]
fn file_limit_of_an_agent_near_its_nofile() {
    let mut web = agent("web", AgentState::Running);
    web.open_files = Some(79);
    let mut facts = facts(vec![web, agent("db", AgentState::Running)]);
    facts.config = ConfigCheck::Valid {
        path: "/srv/p/roster.toml".into(),
        memory_max: BTreeMap::new(),
        nofile: [("web".to_owned(), 100), ("db".to_owned(), 100)]
            .into_iter()
            .collect(),
    };
    assert!(classify(&facts).is_empty(), "79%; db reports no count");
    if let Daemon::Answered(status) = &mut facts.daemon {
        status.agents[0].open_files = Some(80);
    }
    let found = only(classify(&facts), Mode::FileLimit);
    assert_eq!(
        (found.severity, found.agent.as_deref()),
        (Severity::Warning, Some("web"))
    );
    assert_eq!(
        found.evidence,
        ["web's processes hold 80 open files; its nofile is 100 (80%)"]
    );
    assert!(found.action.contains("/proc/100/fd"), "{found:#?}");
}

#[test]
fn a_kernel_oom_kill_is_quoted_for_its_agent_by_cgroup_or_pid() {
    let mut facts = facts(vec![
        agent("web", AgentState::Running),
        agent("db", AgentState::Running),
    ]);
    facts.kernel_oom = (0..5)
        .map(|n| kill(4240 + n, "python3", "/roster-ab12cd34/web"))
        .collect();
    let found = only(classify(&facts), Mode::OomKilled);
    assert_eq!(
        (found.severity, found.agent.as_deref()),
        (Severity::Warning, Some("web"))
    );
    assert_eq!(
        found.evidence[0],
        "the kernel log has 5 OOM kills of its processes in the last 1h"
    );
    let quoted: Vec<&String> = found.evidence[1..].iter().collect();
    assert_eq!(quoted.len(), QUOTED, "{found:#?}");
    assert_eq!(
        quoted[QUOTED - 1],
        "kernel 2026-12-06T01:00:00.000Z: Memory cgroup out of memory: Killed process 4244 (python3) total-vm:321000kB, anon-rss:102000kB"
    );

    // Not in a cgroup (limits by rlimit): by the pid a started event names.
    let mut facts = self::facts(vec![agent("db", AgentState::Backoff)]);
    facts.kernel_oom = vec![kill(77, "postgres", "/user.slice")];
    facts.events.push(EventRecord {
        pid: Some(77),
        ..event(Some("db"), "started", "started")
    });
    let found = classify(&facts);
    let oom = found
        .iter()
        .find(|found| found.mode == Mode::OomKilled)
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(
        (oom.severity, oom.agent.as_deref()),
        (Severity::Critical, Some("db"))
    );
    assert!(oom
        .evidence
        .iter()
        .any(|line| line.contains("Killed process 77 (postgres)")));

    // The daemon down: the cgroup still names the agent.
    let mut facts = self::facts(Vec::new());
    facts.daemon = Daemon::NotRunning {
        socket: "/h/roster.sock".into(),
    };
    facts.kernel_oom = vec![kill(9, "python3", "/roster-ab12cd34/web")];
    assert_eq!(
        modes(&classify(&facts)),
        [
            (Mode::DaemonUnreachable, Severity::Critical, None),
            (Mode::OomKilled, Severity::Warning, Some("web"))
        ]
    );
}

#[test]
fn a_kernel_oom_kill_of_no_agent_is_host_wide() {
    let mut facts = facts(vec![agent("web", AgentState::Running)]);
    facts.kernel_oom = vec![
        kill(777, "chrome", "/user.slice/user-1000.slice/session-2.scope"),
        // Another home's agent of the same name is not this one's.
        kill(778, "python3", "/roster-00000000/web"),
    ];
    let found = only(classify(&facts), Mode::OomKilled);
    assert_eq!(
        (found.severity, found.agent.as_deref()),
        (Severity::Warning, None)
    );
    assert!(
        found.evidence[0].contains("killed 2 processes"),
        "{found:#?}"
    );
    assert!(found.evidence[1].contains("Killed process 777 (chrome)"));
    assert!(found.evidence[2].contains("Killed process 778 (python3)"));
    assert_eq!(
        found.evidence[3],
        "the last was in cgroup /roster-00000000/web"
    );
    assert!(
        found
            .action
            .starts_with("roster did not start pid 778 (python3)"),
        "{found:#?}"
    );
}

#[test]
fn the_machines_modes_sort_among_the_rest() {
    let mut web = agent("web", AgentState::Running);
    web.open_files = Some(95);
    let mut facts = facts(vec![web, agent("z", AgentState::Stopped)]);
    facts.config = ConfigCheck::Valid {
        path: "/srv/p/roster.toml".into(),
        memory_max: BTreeMap::new(),
        nofile: [("web".to_owned(), 100)].into_iter().collect(),
    };
    facts.host.load = Some([20.0, 20.0, 20.0]);
    facts.host.clock_synchronised = Some(false);
    facts.host.daemon_open_files_limit = Some((64, 64));
    facts.kernel_oom = vec![kill(1, "x", "/other")];
    assert_eq!(
        modes(&classify(&facts)),
        [
            (Mode::HighLoad, Severity::Critical, None),
            (Mode::OomKilled, Severity::Warning, None),
            (Mode::FileLimit, Severity::Warning, None),
            (Mode::FileLimit, Severity::Warning, Some("web")),
            (Mode::AgentDown, Severity::Info, Some("z")),
            (Mode::ClockUnsynced, Severity::Info, None),
        ]
    );
}

#[test]
fn a_kernel_oom_kill_of_an_agent_removed_since_is_still_its() {
    let mut facts = facts(vec![agent("web", AgentState::Running)]);
    facts.kernel_oom = vec![kill(31, "python3", "/roster-ab12cd34/old")];
    let found = only(classify(&facts), Mode::OomKilled);
    assert_eq!(
        (found.severity, found.agent.as_deref()),
        (Severity::Warning, Some("old"))
    );
    assert!(
        found.evidence[1].contains("Killed process 31 (python3)"),
        "{found:#?}"
    );
}
