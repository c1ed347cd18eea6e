//! The findings about the machine the daemon runs on beyond disk and
//! memory: its open-file limits (the daemon's and an agent's own), its
//! load, its clock.

use super::evidence::finding;
use super::{
    ConfigCheck, Daemon, Facts, Finding, Mode, Severity, DAEMON_FILES_BASE, DAEMON_FILES_PER_AGENT,
    FILES_CRITICAL_PERCENT, FILES_SHARE_PERCENT, LOAD_CRITICAL_PER_CPU, LOAD_WARNING_PER_CPU,
};

/// A limit as `/proc/PID/limits` says it.
fn limit_words(limit: u64) -> String {
    if limit == u64::MAX {
        "unlimited".to_owned()
    } else {
        limit.to_string()
    }
}

fn share(used: u64, limit: u64) -> f64 {
    used as f64 * 100.0 / limit.max(1) as f64
}

/// `file_limit`: the daemon's soft limit below what its agents need, or
/// its descriptors near that limit; an agent's descriptors near its own
/// `nofile`. Judged only while the daemon answers (a daemon that does not
/// is its own finding).
pub(super) fn file_limit(facts: &Facts, found: &mut Vec<Finding>) {
    let Daemon::Answered(status) = &facts.daemon else {
        return;
    };
    if let Some((soft, hard)) = facts.host.daemon_open_files_limit {
        let agents = status.agents.len() as u64;
        let needed = DAEMON_FILES_BASE + DAEMON_FILES_PER_AGENT * agents;
        let used = facts
            .host
            .daemon_open_files
            .map(|used| (used, share(used, soft)));
        let crowded = used.is_some_and(|(_, share)| share >= FILES_SHARE_PERCENT);
        if soft < needed || crowded {
            let mut evidence = vec![format!(
                "the daemon's open-file limit is {} (hard {}); its {agents} agents need about {needed} ({DAEMON_FILES_BASE} + {DAEMON_FILES_PER_AGENT} per agent: each one's output pipe and log file, twice during a cutover)",
                limit_words(soft),
                limit_words(hard)
            )];
            if let Some((used, share)) = used {
                evidence.push(format!(
                    "the daemon holds {used} descriptors open ({share:.0}% of its limit)"
                ));
            }
            let severity = if used.is_some_and(|(_, share)| share >= FILES_CRITICAL_PERCENT) {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let wanted = needed.max(65_536);
            found.push(finding(
                Mode::FileLimit,
                severity,
                None,
                evidence,
                format!("raise the daemon's limit: LimitNOFILE={wanted} in the unit `roster install` writes (then `systemctl daemon-reload` and restart roster), or `ulimit -n {wanted}` in the shell before `roster up` / `roster daemon` (the daemon lifts its soft limit to the hard one at start; the hard limit here is {}); until then new agents, probes and API requests fail with \"Too many open files\"", limit_words(hard)),
            ));
        }
    }
    let ConfigCheck::Valid { nofile, .. } = &facts.config else {
        return;
    };
    for agent in &status.agents {
        let (Some(used), Some(limit)) = (agent.open_files, nofile.get(&agent.name).copied()) else {
            continue;
        };
        let share = share(used, limit);
        if share < FILES_SHARE_PERCENT {
            continue;
        }
        let name = agent.name.as_str();
        found.push(finding(
            Mode::FileLimit,
            Severity::Warning,
            Some(name),
            vec![format!(
                "{name}'s processes hold {used} open files; its nofile is {limit} ({share:.0}%)"
            )],
            format!("raise nofile for {name} in the config and `roster apply` it, or find the descriptors it never closes (`ls -l /proc/{}/fd`)", agent.pid.map_or_else(|| "PID".to_owned(), |pid| pid.to_string())),
        ));
    }
}

/// `high_load`: the 5-minute load above `LOAD_WARNING_PER_CPU` × the CPUs
/// (critical above `LOAD_CRITICAL_PER_CPU` ×), with the busiest agents.
pub(super) fn high_load(facts: &Facts, found: &mut Vec<Finding>) {
    let (Some(load), Some(cpus)) = (facts.host.load, facts.host.cpus.filter(|cpus| *cpus > 0))
    else {
        return;
    };
    let per_cpu = load[1] / cpus as f64;
    if per_cpu <= LOAD_WARNING_PER_CPU {
        return;
    }
    let mut evidence = vec![format!(
        "load averages {:.2} {:.2} {:.2} (1, 5, 15 minutes) on {cpus} CPUs: {per_cpu:.1} per CPU over 5 minutes",
        load[0], load[1], load[2]
    )];
    let mut busiest: Vec<(&str, f64)> = match &facts.daemon {
        Daemon::Answered(status) => status
            .agents
            .iter()
            .filter_map(|agent| Some((agent.name.as_str(), agent.cpu_percent?)))
            .filter(|(_, cpu)| *cpu > 0.0)
            .collect(),
        _ => Vec::new(),
    };
    busiest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    busiest.truncate(3);
    let action = if busiest.is_empty() {
        "no agent reports CPU use: find what else loads the host (`top`; tasks waiting on disk count in the load too: `vmstat 1`), and spread or stop work until the load falls".to_owned()
    } else {
        let named: Vec<String> = busiest
            .iter()
            .map(|(name, cpu)| format!("{name} {cpu:.0}%"))
            .collect();
        evidence.push(format!(
            "busiest agents (CPU, 100% = one core): {}",
            named.join(", ")
        ));
        let names: Vec<&str> = busiest.iter().map(|(name, _)| *name).collect();
        format!("look at {} first (`roster top`, `roster logs NAME`): a loop or a flood of work; set cpu_quota on an agent that must not take the host, or move work to another host", names.join(", "))
    };
    found.push(finding(
        Mode::HighLoad,
        if per_cpu > LOAD_CRITICAL_PER_CPU {
            Severity::Critical
        } else {
            Severity::Warning
        },
        None,
        evidence,
        action,
    ));
}

/// `clock_unsynced`: the clock is known not to be synchronised. Info
/// only: containers and test machines often have no time sync.
pub(super) fn clock_unsynced(facts: &Facts, found: &mut Vec<Finding>) {
    if facts.host.clock_synchronised != Some(false) {
        return;
    }
    found.push(finding(
        Mode::ClockUnsynced,
        Severity::Info,
        None,
        vec!["the system clock is not synchronised (timedatectl: NTPSynchronized=no)".to_owned()],
        "enable time sync (`timedatectl set-ntp true`, or run chrony or systemd-timesyncd): the journal's and alerts' times are compared across hosts and with people's, and TLS certificates are judged by this clock".to_owned(),
    ));
}
