//! Random sequences of inputs on a fake clock, driven the way the runtime
//! drives the supervisor, checking after every step that:
//!
//! - every `Spawn` is answered (no agent is left waiting for its process);
//! - an agent tracks at most one live main process (and, during a
//!   cutover, one outgoing process), and every live process is either one
//!   of exactly one agent's or has been sent SIGKILL;
//! - the pid index agrees with the agents' phases.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::parse;

const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    /// Apply a config with the agents whose bit is set; `variant` changes
    /// their command so that kept agents count as changed.
    Apply {
        mask: u8,
        variant: u8,
        start_stopped: bool,
    },
    Start(usize),
    Stop(usize),
    Restart(usize),
    StopAll,
    /// The `index`-th live process (modulo their number) exits (code 3:
    /// it never became the agent, and the exec shim said why).
    Exit {
        index: usize,
        code: i32,
    },
    /// Time passes; deadlines fire.
    Advance(u64),
    /// From now on, spawns fail (or succeed again).
    SpawnsFail(bool),
    /// A buggy runtime answers a Spawn that was never asked for.
    SpuriousSpawn(usize),
    /// The `index`-th probe out (modulo their number) answers.
    ProbeAnswer {
        index: usize,
        healthy: bool,
    },
    /// A deploy's cutover to a new release.
    Switch {
        index: usize,
        blue_green: bool,
    },
    /// The new process is ready: drain the old one.
    Retire(usize),
    /// The cutover is given up.
    Handback(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        (0u8..8, 0u8..3, any::<bool>()).prop_map(|(mask, variant, start_stopped)| Op::Apply {
            mask,
            variant,
            start_stopped
        }),
        (0usize..3).prop_map(Op::Start),
        (0usize..3).prop_map(Op::Stop),
        (0usize..3).prop_map(Op::Restart),
        Just(Op::StopAll),
        (0usize..8, 0i32..4).prop_map(|(index, code)| Op::Exit { index, code }),
        (0u64..3000).prop_map(Op::Advance),
        any::<bool>().prop_map(Op::SpawnsFail),
        (0usize..3).prop_map(Op::SpuriousSpawn),
        (0usize..4, any::<bool>()).prop_map(|(index, healthy)| Op::ProbeAnswer { index, healthy }),
        (0usize..3, any::<bool>()).prop_map(|(index, blue_green)| Op::Switch { index, blue_green }),
        (0usize..3).prop_map(Op::Retire),
        (0usize..3).prop_map(Op::Handback),
    ]
}

fn config(mask: u8, variant: u8) -> Config {
    let mut text = String::new();
    for (bit, name) in NAMES.iter().enumerate() {
        if mask & (1 << bit) != 0 {
            let restart = ["always", "on-failure", "never"][usize::from(variant) % 3];
            text.push_str(&format!(
                "[agents.{name}]\ncommand = \"sleep {variant}\"\nrestart = \"{restart}\"\n\
                 ready_after = \"500ms\"\nstop_timeout = \"1s\"\nstable_after = \"2s\"\n\
                 crash_loop = 3\ncrash_window = \"10s\"\nfailed_retry = \"5s\"\n\
                 drain_timeout = \"2s\"\n"
            ));
            if variant != 1 {
                text.push_str(&format!(
                    "[agents.{name}.health]\ntcp = \"127.0.0.1:9\"\ninterval = \"1s\"\n\
                     timeout = \"700ms\"\nretries = 2\nstart_period = \"1s\"\n"
                ));
            }
        }
    }
    parse("prop.toml", &text, Path::new("/tmp")).expect("generated configs are valid")
}

/// The runtime, modelled: live processes and whether they were sent SIGKILL.
struct World {
    sup: Supervisor,
    now: Instant,
    next_pid: u32,
    spawns_fail: bool,
    /// pid -> (agent it was spawned for, sent SIGKILL)
    alive: BTreeMap<u32, (AgentName, bool)>,
    /// Probes out: (agent, id).
    probes: Vec<(AgentName, u64)>,
    release: u32,
}

impl World {
    fn perform(&mut self) {
        while let Some(action) = self.sup.poll_action() {
            match action {
                Action::Spawn { agent } => {
                    let result = if self.spawns_fail {
                        Err("not found".to_owned())
                    } else {
                        self.next_pid += 1;
                        self.alive.insert(self.next_pid, (agent.clone(), false));
                        Ok(self.next_pid)
                    };
                    self.sup.handle_spawned(self.now, &agent, result);
                }
                Action::Signal { pid, signal, .. } => {
                    if signal == Signal::Kill {
                        if let Some(entry) = self.alive.get_mut(&pid) {
                            entry.1 = true;
                        }
                    }
                }
                Action::Probe { agent, id, .. } => self.probes.push((agent, id)),
                Action::CancelProbe { id, .. } => self.probes.retain(|(_, out)| *out != id),
                Action::Cleanup { .. } | Action::Forget { .. } => {}
            }
        }
        while self.sup.poll_event().is_some() {}
    }

    fn step(&mut self, op: &Op) {
        let name = |index: usize| AgentName::new(NAMES[index]).expect("valid");
        match op {
            Op::Apply {
                mask,
                variant,
                start_stopped,
            } => {
                self.sup
                    .handle_apply(self.now, &config(*mask, *variant), *start_stopped);
            }
            Op::Start(index) => self.sup.handle_start(self.now, &name(*index)),
            Op::Stop(index) => self.sup.handle_stop(self.now, &name(*index)),
            Op::Restart(index) => self.sup.handle_restart(self.now, &name(*index)),
            Op::StopAll => self.sup.handle_stop_all(self.now),
            Op::Exit { index, code } => {
                if !self.alive.is_empty() {
                    let pid = *self
                        .alive
                        .keys()
                        .nth(index % self.alive.len())
                        .expect("in range");
                    self.alive.remove(&pid);
                    let status = if *code == 2 {
                        ExitStatus::Signal(9)
                    } else {
                        ExitStatus::Code(*code)
                    };
                    if *code == 3 {
                        self.sup
                            .handle_not_started(self.now, pid, status, "cannot".into());
                    } else {
                        self.sup.handle_exit(self.now, pid, status);
                    }
                }
            }
            Op::Advance(millis) => {
                self.now += Duration::from_millis(*millis);
                self.sup.handle_timeout(self.now);
            }
            Op::SpawnsFail(fail) => self.spawns_fail = *fail,
            Op::ProbeAnswer { index, healthy } => {
                if !self.probes.is_empty() {
                    let (agent, id) = self.probes.remove(index % self.probes.len());
                    let result = if *healthy {
                        Ok(())
                    } else {
                        Err("refused".to_owned())
                    };
                    self.sup.handle_probe(self.now, &agent, id, result);
                }
            }
            Op::Switch { index, blue_green } => {
                self.release += 1;
                let strategy = if *blue_green {
                    crate::deploy::Strategy::BlueGreen
                } else {
                    crate::deploy::Strategy::Restart
                };
                let _ = self.sup.handle_switch(
                    self.now,
                    &name(*index),
                    &format!("r{}", self.release),
                    strategy,
                );
            }
            Op::Retire(index) => {
                self.sup.handle_retire(self.now, &name(*index));
            }
            Op::Handback(index) => {
                self.sup.handle_handback(self.now, &name(*index), "test");
            }
            Op::SpuriousSpawn(index) => {
                self.next_pid += 1;
                self.alive.insert(self.next_pid, (name(*index), false));
                self.sup
                    .handle_spawned(self.now, &name(*index), Ok(self.next_pid));
            }
        }
        self.perform();
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for (name, agent) in &self.sup.agents {
            prop_assert!(
                agent.phase != Phase::Spawning,
                "{name}: a Spawn was left unanswered"
            );
            let outgoing: Vec<u32> = agent.outgoing.iter().map(|out| out.pid).collect();
            prop_assert!(
                agent
                    .outgoing
                    .iter()
                    .filter(|out| out.draining.is_none())
                    .count()
                    <= 1,
                "{name}: two outgoing processes serve"
            );
            for pid in agent.pid().into_iter().chain(outgoing.iter().copied()) {
                prop_assert!(
                    self.alive.contains_key(&pid),
                    "{name} tracks pid {pid}, which is dead"
                );
                prop_assert_eq!(self.sup.pids.get(&pid), Some(name));
            }
            prop_assert!(
                agent.pid().is_none_or(|pid| !outgoing.contains(&pid)),
                "{name}: one pid both main and outgoing"
            );
        }
        let tracked = self
            .sup
            .agents
            .values()
            .map(|agent| usize::from(agent.pid().is_some()) + agent.outgoing.len())
            .sum::<usize>();
        prop_assert_eq!(tracked, self.sup.pids.len(), "the pid index is stale");
        for (name, id) in &self.probes {
            let agent = self.sup.agents.get(name);
            prop_assert!(
                agent.is_some_and(|agent| agent.pid().is_some()
                    && agent.probe.in_flight.map(|(out, _)| out) == Some(*id)),
                "probe {id} of {name} is out, but not the agent's current probe"
            );
        }
        for (pid, (spawned_for, killed)) in &self.alive {
            let owner = self.sup.pids.get(pid);
            prop_assert!(
                *killed || owner == Some(spawned_for),
                "pid {pid} of {spawned_for} is alive, untracked and was never killed"
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn one_live_process_per_agent_and_every_spawn_answered(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let mut world = World {
            sup: Supervisor::new(),
            now: Instant::now(),
            next_pid: 1000,
            spawns_fail: false,
            alive: BTreeMap::new(),
            probes: Vec::new(),
            release: 0,
        };
        for op in &ops {
            world.step(op);
            world.check()?;
        }
    }
}
