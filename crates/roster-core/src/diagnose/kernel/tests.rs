//! Kernel log records as `/dev/kmsg` gives them, real and broken.

use super::*;

const CGROUP_KILL: [&str; 3] = [
    "4,1230,5000000,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    "6,1240,5000100,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/roster-ab12cd34/leak,task_memcg=/roster-ab12cd34/leak,task=python3,pid=4242,uid=0",
    "3,1241,5000200,-;Memory cgroup out of memory: Killed process 4242 (python3) total-vm:321000kB, anon-rss:102000kB, file-rss:4000kB, shmem-rss:0kB, UID:0 pgtables:300kB oom_score_adj:0\n SUBSYSTEM=memory\n",
];

const GLOBAL_KILL: [&str; 2] = [
    "6,2000,9000000,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice/user-1000.slice/session-2.scope,task=chrome,pid=777,uid=1000",
    "3,2001,9000050,-;Out of memory: Killed process 777 (chrome) total-vm:5000000kB, anon-rss:3000000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:9000kB oom_score_adj:300",
];

fn started(agent: &str, pid: u32) -> EventRecord {
    EventRecord {
        id: 1,
        time: "2026-12-06T01:00:00.000Z".into(),
        agent: Some(agent.into()),
        kind: "started".into(),
        pid: Some(pid),
        detail: format!("started pid {pid}"),
    }
}

#[test]
fn a_record_is_its_time_and_first_line() {
    assert_eq!(
        kmsg_record("6,23891,79676442855,-;p1: entered allmulticast mode"),
        Some((79_676_442_855, "p1: entered allmulticast mode"))
    );
    assert_eq!(
        kmsg_record("6,1,2,-,caller=T12;text\n SUBSYSTEM=x\n"),
        Some((2, "text"))
    );
    for garbage in [
        "",
        "no semicolon",
        ";text",
        "x,1,2,-;text",
        "6,1;text",
        "6,1,usec,-;t",
    ] {
        assert_eq!(kmsg_record(garbage), None, "{garbage:?}");
    }
}

#[test]
fn a_cgroup_kill_joins_its_two_lines_and_names_its_memcg() {
    let kills = oom_kills(CGROUP_KILL, 0);
    assert_eq!(kills.len(), 1, "{kills:#?}");
    let kill = &kills[0];
    assert_eq!(kill.pid, 4242);
    assert_eq!(kill.usec, 5_000_100);
    assert_eq!(kill.command.as_deref(), Some("python3"));
    assert_eq!(kill.task_memcg.as_deref(), Some("/roster-ab12cd34/leak"));
    assert_eq!(kill.oom_memcg.as_deref(), Some("/roster-ab12cd34/leak"));
    assert_eq!(kill.lines.len(), 2);
    assert!(kill.lines[0].starts_with("Memory cgroup out of memory: Killed process 4242 (python3)"));
    assert!(
        !kill.lines[0].contains("SUBSYSTEM"),
        "dictionary lines are not text"
    );
    assert_eq!(
        owner(kill, Some("roster-ab12cd34"), &[]).as_deref(),
        Some("leak")
    );
    assert_eq!(
        owner(kill, Some("roster-00000000"), &[]),
        None,
        "another home's"
    );
}

#[test]
fn a_global_kill_has_no_oom_memcg_and_belongs_to_no_agent() {
    let kills = oom_kills(GLOBAL_KILL, 0);
    assert_eq!(kills.len(), 1, "{kills:#?}");
    assert_eq!(kills[0].pid, 777);
    assert_eq!(kills[0].oom_memcg, None);
    assert_eq!(
        kills[0].task_memcg.as_deref(),
        Some("/user.slice/user-1000.slice/session-2.scope")
    );
    assert!(kills[0].lines[0].starts_with("Out of memory: Killed process 777 (chrome)"));
    assert_eq!(owner(&kills[0], Some("roster-ab12cd34"), &[]), None);
    // The pid a started event of the window names, failing the cgroup.
    assert_eq!(
        owner(&kills[0], Some("roster-ab12cd34"), &[started("web", 777)]).as_deref(),
        Some("web")
    );
    assert_eq!(owner(&kills[0], None, &[started("web", 778)]), None);
}

#[test]
fn only_kills_since_the_window_and_only_oom_lines() {
    let all: Vec<&str> = CGROUP_KILL
        .iter()
        .chain(GLOBAL_KILL.iter())
        .copied()
        .collect();
    let kills = oom_kills(all.iter().copied(), 6_000_000);
    assert_eq!(kills.iter().map(|kill| kill.pid).collect::<Vec<_>>(), [777]);
    let noise = [
        "6,1,1,-;Out of memory and no killable processes...",
        "6,2,2,-;oom_reaper: reaped process 4242 (python3), now anon-rss:0kB",
        "6,3,3,-;Killed process 5 (x) total-vm:1kB",
        "6,4,4,-;Out of memory: Killed process notapid (x)",
        "6,5,5,-;oom-kill:constraint=CONSTRAINT_NONE,task=x,pid=,uid=0",
        "6,6,6,-;oom-kill:constraint=CONSTRAINT_NONE,task=x,pid=12",
    ];
    assert_eq!(oom_kills(noise, 0), Vec::new());
}

#[test]
fn a_truncated_killed_line_still_names_its_pid() {
    let kills = oom_kills(["3,9,9,-;Out of memory: Killed process 31337 (pyth"], 0);
    assert_eq!(kills.len(), 1);
    assert_eq!(kills[0].pid, 31337);
    assert_eq!(kills[0].command, None, "no closing parenthesis");
    let kills = oom_kills(["3,9,9,-;Out of memory: Killed process 31338"], 0);
    assert_eq!((kills[0].pid, kills[0].command.clone()), (31338, None));
}

#[test]
fn a_comm_with_spaces_commas_or_parentheses() {
    assert_eq!(
        killed_process(
            "Out of memory: Killed process 12 (my (odd) app) total-vm:1kB, anon-rss:1kB"
        ),
        Some((12, Some("my (odd) app".to_owned())))
    );
    assert_eq!(
        killed_process("Memory cgroup out of memory: Killed process 13 (a b)"),
        Some((13, Some("a b".to_owned())))
    );
    let summary = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/r/x,task_memcg=/r/x/sub,task=we,ird (1),pid=14,uid=0";
    assert_eq!(
        oom_summary(summary),
        Some(KernelOom {
            pid: 14,
            command: Some("we,ird (1)".to_owned()),
            oom_memcg: Some("/r/x".to_owned()),
            task_memcg: Some("/r/x/sub".to_owned()),
            ..KernelOom::default()
        })
    );
    // A task in a child cgroup of an agent's is the agent's.
    let kill = KernelOom {
        pid: 14,
        task_memcg: Some("/system.slice/roster.service/roster-ab12cd34/web/worker".into()),
        ..KernelOom::default()
    };
    assert_eq!(
        owner(&kill, Some("roster-ab12cd34"), &[]).as_deref(),
        Some("web")
    );
    let daemon = KernelOom {
        pid: 15,
        task_memcg: Some("/roster-ab12cd34/_daemon".into()),
        ..KernelOom::default()
    };
    assert_eq!(owner(&daemon, Some("roster-ab12cd34"), &[]), None);
}

#[test]
fn a_reused_pid_long_after_is_another_kill() {
    let kills = oom_kills(
        [
            "3,1,1000000,-;Out of memory: Killed process 50 (a) total-vm:1kB",
            "3,2,90000000,-;Out of memory: Killed process 50 (b) total-vm:1kB",
        ],
        0,
    );
    assert_eq!(kills.len(), 2);
    let quoted = KernelOom {
        time: Some("2026-12-06T01:00:00Z".into()),
        ..kills[1].clone()
    }
    .quoted();
    assert_eq!(
        quoted,
        "kernel 2026-12-06T01:00:00Z: Out of memory: Killed process 50 (b) total-vm:1kB"
    );
}
