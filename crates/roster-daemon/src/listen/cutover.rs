//! The sockets of a blue-green cutover (issue #15): the new process gets
//! a socket of its own on each `[listen]` address, beside the old one in
//! the address's `SO_REUSEPORT` group. While the new process starts, the
//! group gives every connection to the oldest socket, the old process's
//! ([`crate::sys::Steer::First`]); once the new process counts as running
//! ([`Listeners::spread`]) the kernel spreads them over both, so that the
//! cutover's readiness probe can reach the new process. At cutover the
//! old socket stops listening (`shutdown(SHUT_RD)` on the daemon's copy
//! acts on the socket itself, which the old process holds too): the kernel
//! moves the connections queued on it to the new socket
//! (`net.ipv4.tcp_migrate_req = 1`), which gets every new one. The deploy
//! then waits until the old process group holds no connection through the
//! address ([`wait_until_idle`], at most `drain_timeout`) before it sends
//! the drain signal: an app that dies at once on SIGTERM has nothing left
//! to drop. The old process's `accept` fails (EINVAL) from the cutover on.
//!
//! Where the kernel cannot move queued connections (the setting is 0, the
//! kernel is older than 5.14, or it would not steer the group), old and new
//! process share one socket, as before, and the deploy says why.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{shutdown, Shutdown};

use roster_core::deploy::{socket_handover, SocketHandover, MIGRATE_SYSCTL};
use roster_core::AgentName;

use super::{bind_listener, Join, Listeners};
use crate::sys::Steer;

/// How often [`wait_until_idle`] looks at the old process group.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// What became of the old process's sockets at cutover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// The agent has no `[listen]` sockets (or none bound).
    Nothing,
    /// The old sockets on these addresses stopped listening; the kernel
    /// moved what queued on them to the new process's.
    Moved(Vec<SocketAddr>),
    /// Old and new process share the sockets: why.
    Shared(String),
}

impl Listeners {
    /// A blue-green cutover of `agent` begins (its new process is about to
    /// be spawned): binds its own socket beside each of the agent's, for
    /// that spawn, or notes why old and new will share them.
    pub fn begin_cutover(&mut self, agent: &AgentName) {
        self.end_cutover(agent);
        let Some(slots) = self.bound.get_mut(agent) else {
            return;
        };
        if slots.iter().all(|slot| slot.fd.is_none()) {
            return;
        }
        let setting = std::fs::read_to_string(MIGRATE_SYSCTL).ok();
        let why = match socket_handover(setting.as_deref()) {
            SocketHandover::Shared(why) => Some(why),
            SocketHandover::Migrate => slots.iter().find_map(|slot| slot.unsteered.clone()),
        };
        if let Some(why) = why {
            self.shared.insert(agent.clone(), why);
            return;
        }
        for index in 0..slots.len() {
            if slots[index].fd.is_none() {
                continue;
            }
            let address = slots[index].address;
            match bind_listener(address, Join::Yes) {
                Ok((fd, _)) => slots[index].incoming = Some(fd),
                Err(error) => {
                    // Nothing queued on them: the old sockets got it all.
                    for slot in slots.iter_mut() {
                        slot.incoming = None;
                    }
                    self.shared.insert(
                        agent.clone(),
                        format!(
                            "a second socket on {address} could not be bound ({}): \
                             old and new process share the [listen] socket",
                            error.desc().to_lowercase()
                        ),
                    );
                    return;
                }
            }
        }
        self.fresh.insert(agent.clone());
    }

    /// The new process of `agent` counts as running: connections go to
    /// its sockets too, as the kernel's hash spreads them.
    pub fn spread(&mut self, agent: &AgentName) {
        for slot in self.bound.get_mut(agent).into_iter().flatten() {
            if let (Some(_), Some(fd), false) = (&slot.incoming, &slot.fd, slot.spread) {
                slot.spread = true;
                steer(fd, Steer::Spread, slot.address);
            }
        }
    }

    /// The new process of `agent` takes over: the old sockets stop
    /// listening, what queued on them moves to the new ones, which the
    /// daemon keeps from now on (and which get every connection until the
    /// next cutover's new socket runs).
    pub fn cut_over(&mut self, agent: &AgentName) -> Handover {
        self.fresh.remove(agent);
        if let Some(why) = self.shared.remove(agent) {
            return Handover::Shared(why);
        }
        let Some(slots) = self.bound.get_mut(agent) else {
            return Handover::Nothing;
        };
        let mut moved = Vec::new();
        for slot in slots.iter_mut() {
            let Some(incoming) = slot.incoming.take() else {
                continue;
            };
            if let Some(old) = slot.fd.replace(incoming) {
                stop_listening(&old, slot.address);
            }
            if let Some(fd) = &slot.fd {
                steer(fd, Steer::First, slot.address);
            }
            slot.spread = false;
            moved.push(slot.address);
        }
        if moved.is_empty() {
            Handover::Nothing
        } else {
            Handover::Moved(moved)
        }
    }

    /// A cutover of `agent` is given up (or a new one begins): the new
    /// process's sockets stop listening (what queued on them moves to the
    /// old ones) and are closed.
    pub fn end_cutover(&mut self, agent: &AgentName) {
        self.fresh.remove(agent);
        self.shared.remove(agent);
        for slot in self.bound.get_mut(agent).into_iter().flatten() {
            if let Some(incoming) = slot.incoming.take() {
                if let (Some(fd), true) = (&slot.fd, slot.spread) {
                    steer(fd, Steer::First, slot.address);
                }
                stop_listening(&incoming, slot.address);
            }
            slot.spread = false;
        }
    }
}

fn steer(fd: &OwnedFd, how: Steer, address: SocketAddr) {
    if let Err(error) = crate::sys::reuseport_steer(fd, how) {
        tracing::warn!("steering the connections of {address} ({how:?}): {error}");
    }
}

fn stop_listening(fd: &OwnedFd, address: SocketAddr) {
    if let Err(error) = shutdown(fd.as_raw_fd(), Shutdown::Read) {
        tracing::warn!("stopping the listening socket on {address}: {error}");
    }
}

/// Waits until the processes of group `pgid` hold no connection made
/// through `addresses`, at most `within`: how many they still hold, and
/// how long it waited. The group's members are those at the start (a
/// process it forks later is not looked at). Blocks: call it off the loop.
pub fn wait_until_idle(pgid: u32, addresses: &[SocketAddr], within: Duration) -> (usize, Duration) {
    let began = Instant::now();
    let members: Vec<u32> = crate::procfs::sample_all()
        .into_iter()
        .filter(|(_, sample)| sample.pgid == pgid)
        .map(|(pid, _)| pid)
        .collect();
    // `/proc/net/tcp` is read in pieces while connections come and go,
    // and a line can be missed: idle means seen idle twice in a row.
    let mut idle_before = false;
    loop {
        let held = held_by(&members, addresses);
        if (held == 0 && idle_before) || began.elapsed() >= within {
            return (held, began.elapsed());
        }
        idle_before = held == 0;
        std::thread::sleep(LOOK_EVERY);
    }
}

/// The connections through `addresses` that `members` hold.
fn held_by(members: &[u32], addresses: &[SocketAddr]) -> usize {
    let mut connections = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            connections.extend(crate::procfs::parse_connections_on(&text, addresses));
        }
    }
    if connections.is_empty() {
        return 0;
    }
    members
        .iter()
        .filter_map(|pid| crate::procfs::count_descriptors(*pid, &connections))
        .map(|(_, sockets)| sockets as usize)
        .sum()
}
