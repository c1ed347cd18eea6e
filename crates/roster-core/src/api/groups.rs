//! Copies made by `instances = N`, listed together: `status` and `top`
//! show an agent's copies as one group, in number order (`w.2` before
//! `w.10`), under a line that sums them up; and when a copy counts as
//! back in a rolling restart (`comeback`).

use super::{AgentState, AgentStatus, Health};

/// One line of a grouped listing.
#[derive(Debug, PartialEq)]
pub enum Listed<'a> {
    /// An agent of its own.
    Agent(&'a AgentStatus),
    /// An agent's copies, in number order.
    Group {
        /// The agent in the file (`worker`).
        of: &'a str,
        /// Its copies shown, `worker.1` first.
        copies: Vec<&'a AgentStatus>,
    },
}

impl AgentStatus {
    /// Whether it is one of the copies `instances` made of agent `of`.
    pub fn is_copy_of(&self, of: &str) -> bool {
        self.instance_of.as_deref() == Some(of)
    }

    /// Whether `name` names it on the command line: its own name, or that
    /// of the agent it is a copy of (which names all of its copies).
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.is_copy_of(name)
    }
}

/// `agents`, in their order, except that each agent's copies are gathered
/// where the first of them stands, in number order.
pub fn grouped<'a>(agents: &[&'a AgentStatus]) -> Vec<Listed<'a>> {
    let mut listed: Vec<Listed<'a>> = Vec::new();
    for agent in agents {
        let Some(of) = agent.instance_of.as_deref() else {
            listed.push(Listed::Agent(agent));
            continue;
        };
        let group = listed.iter_mut().find_map(|line| match line {
            Listed::Group { of: seen, copies } if *seen == of => Some(copies),
            _ => None,
        });
        match group {
            Some(copies) => copies.push(agent),
            None => listed.push(Listed::Group {
                of,
                copies: vec![agent],
            }),
        }
    }
    for line in &mut listed {
        if let Listed::Group { copies, .. } = line {
            copies.sort_by_key(|copy| (copy.instance.unwrap_or(u32::MAX), copy.name.clone()));
        }
    }
    listed
}

/// [`grouped`], flattened back: the agents in the order a grouped listing
/// shows them.
pub fn in_group_order<'a>(agents: &[&'a AgentStatus]) -> Vec<&'a AgentStatus> {
    grouped(agents)
        .into_iter()
        .flat_map(|line| match line {
            Listed::Agent(agent) => vec![agent],
            Listed::Group { copies, .. } => copies,
        })
        .collect()
}

/// A group's line: how many copies run, and their sums.
#[derive(Debug, PartialEq)]
pub struct GroupSummary {
    /// Copies that run.
    pub running: usize,
    /// Copies in all.
    pub copies: usize,
    /// The worst health among the copies (unhealthy, then healthy, then
    /// unknown).
    pub health: Health,
    /// Restarts of all copies.
    pub restarts: u64,
    /// Memory of the copies that report it; `None` when none does.
    pub memory_bytes: Option<u64>,
    /// CPU of the copies that report it, percent of one core.
    pub cpu_percent: Option<f64>,
}

/// Sums a group's copies up.
pub fn summary(copies: &[&AgentStatus]) -> GroupSummary {
    let running = copies
        .iter()
        .filter(|copy| copy.state == AgentState::Running)
        .count();
    let health = if copies.iter().any(|copy| copy.health == Health::Unhealthy) {
        Health::Unhealthy
    } else if copies.iter().any(|copy| copy.health == Health::Healthy) {
        Health::Healthy
    } else {
        Health::Unknown
    };
    GroupSummary {
        running,
        copies: copies.len(),
        health,
        restarts: copies.iter().map(|copy| copy.restarts).sum(),
        memory_bytes: sum(copies.iter().filter_map(|copy| copy.memory_bytes)),
        cpu_percent: sum(copies.iter().filter_map(|copy| copy.cpu_percent)),
    }
}

/// The sum of the values there are; `None` when there is none.
fn sum<T: std::iter::Sum<T>>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut values = values.peekable();
    values.peek()?;
    Some(values.sum())
}

/// Where one copy of a rolling restart stands (`roster restart NAME` of an
/// agent with copies: one copy at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comeback {
    /// Still on its way: the next copy waits.
    Waiting,
    /// A new process runs (and is healthy, when the copy has a check).
    Back,
    /// It did not come back (failed, in backoff, could not start, or its
    /// new process is unhealthy): the roll stops here.
    Lost,
}

/// How the copy `agent` stands after its restart: `old_pid` is the
/// process it had, `has_check` whether a health check must pass first.
pub fn comeback(agent: Option<&AgentStatus>, old_pid: Option<u32>, has_check: bool) -> Comeback {
    let Some(agent) = agent else {
        return Comeback::Lost;
    };
    if agent.last_error.is_some() || matches!(agent.state, AgentState::Failed | AgentState::Backoff)
    {
        return Comeback::Lost;
    }
    let new_process = agent.pid.is_some() && agent.pid != old_pid;
    if !new_process || agent.state != AgentState::Running {
        return Comeback::Waiting;
    }
    match (has_check, agent.health) {
        (false, _) | (true, Health::Healthy) => Comeback::Back,
        (true, Health::Unhealthy) => Comeback::Lost,
        (true, Health::Unknown) => Comeback::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, copy: Option<(&str, u32)>, state: AgentState) -> AgentStatus {
        let mut value = serde_json::json!({
            "name": name, "state": state.as_str(), "pid": null, "restarts": 1,
            "uptime_secs": null, "memory_bytes": 1000, "cpu_percent": 0.5,
            "health": "unknown",
        });
        if let Some((of, number)) = copy {
            value["instance_of"] = of.into();
            value["instance"] = number.into();
        }
        serde_json::from_value(value).expect("an agent")
    }

    #[test]
    fn a_copy_is_back_once_a_new_process_runs_and_passes_its_check() {
        let copy = |state: AgentState, pid: Option<u32>, health: &str| -> AgentStatus {
            let mut agent = agent("w.1", Some(("w", 1)), state);
            agent.pid = pid;
            agent.health = serde_json::from_value(health.into()).expect("health");
            agent
        };
        let old = Some(100);
        let cases = [
            // The old process still runs, or is being stopped.
            (
                copy(AgentState::Running, old, "healthy"),
                true,
                Comeback::Waiting,
            ),
            (
                copy(AgentState::Stopping, old, "healthy"),
                true,
                Comeback::Waiting,
            ),
            (
                copy(AgentState::Starting, Some(101), "unknown"),
                true,
                Comeback::Waiting,
            ),
            // Running, but its check has not spoken yet.
            (
                copy(AgentState::Running, Some(101), "unknown"),
                true,
                Comeback::Waiting,
            ),
            (
                copy(AgentState::Running, Some(101), "healthy"),
                true,
                Comeback::Back,
            ),
            (
                copy(AgentState::Running, Some(101), "unknown"),
                false,
                Comeback::Back,
            ),
            (
                copy(AgentState::Running, Some(101), "unhealthy"),
                true,
                Comeback::Lost,
            ),
            (
                copy(AgentState::Backoff, None, "unknown"),
                true,
                Comeback::Lost,
            ),
            (
                copy(AgentState::Failed, None, "unknown"),
                false,
                Comeback::Lost,
            ),
        ];
        for (agent, has_check, expected) in cases {
            assert_eq!(
                comeback(Some(&agent), old, has_check),
                expected,
                "{:?} {:?} {:?}",
                agent.state,
                agent.pid,
                agent.health
            );
        }
        assert_eq!(comeback(None, old, false), Comeback::Lost, "gone");
    }

    #[test]
    fn copies_gather_where_the_first_stands_in_number_order() {
        let agents = [
            agent("a", None, AgentState::Running),
            agent("w.1", Some(("w", 1)), AgentState::Running),
            agent("w.10", Some(("w", 10)), AgentState::Running),
            agent("v", None, AgentState::Running),
            agent("w.2", Some(("w", 2)), AgentState::Backoff),
        ];
        let refs: Vec<&AgentStatus> = agents.iter().collect();
        let names: Vec<&str> = in_group_order(&refs)
            .iter()
            .map(|agent| agent.name.as_str())
            .collect();
        assert_eq!(names, ["a", "w.1", "w.2", "w.10", "v"]);
        let listed = grouped(&refs);
        assert_eq!(listed.len(), 3);
        let Listed::Group { of, copies } = &listed[1] else {
            panic!("{listed:?}");
        };
        assert_eq!(*of, "w");
        let sums = summary(copies);
        assert_eq!((sums.running, sums.copies), (2, 3));
        assert_eq!(sums.restarts, 3);
        assert_eq!(sums.memory_bytes, Some(3000));
        assert_eq!(sums.cpu_percent, Some(1.5));
    }
}
