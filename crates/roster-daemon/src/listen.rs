//! `[agents.NAME.listen]`: sockets the daemon binds once and hands to every
//! process of the agent by systemd's socket-activation protocol (fds from 3,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` set by the exec shim).
//! The daemon keeps every socket open between processes, so a connection
//! that arrives while none accepts waits in the backlog instead of being
//! refused.
//!
//! A blue-green cutover gives the new process a socket of its own on the
//! same address, in one `SO_REUSEPORT` group whose kernel program gives
//! every connection to the oldest listening socket: the old process gets
//! them all while the new one starts, both once it runs, and at cutover
//! the old socket stops listening and the kernel moves what queued on it
//! to the new one (`net.ipv4.tcp_migrate_req`); the old process is drained
//! once it holds no connection (`listen/cutover.rs`).
//! Where the kernel cannot, old and new process share one socket, as
//! before (`roster_core::deploy::socket_handover` says why).
//!
//! An address the agent being configured holds itself (it bound the port
//! in its own code before it had `[listen]`) cannot be bound while it runs:
//! the apply goes ahead, the agent restarts as any changed agent does, and
//! the address is bound when its next process is spawned, once the old one
//! is gone (issue #14: the apply refused, blaming "another process"). An
//! address held by anything else refuses the apply, naming the holder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

use roster_core::{AgentName, Config};

mod cutover;
pub use cutover::{wait_until_idle, Handover};

/// The lowest fd number a bound socket is kept at, so that handing fds
/// 3, 4, ... to a child never overwrites a socket not yet handed over.
pub(crate) const KEEP_ABOVE: RawFd = 3 + roster_core::deploy::MAX_LISTEN as RawFd + 16;

/// Pending connections per socket while no process accepts (a cutover's
/// gap, a restart).
const BACKLOG: i32 = 1024;

/// How long looking for the holder of a taken address may take (it reads
/// every process's descriptors; this happens only when a bind failed).
const FIND_HOLDER_WITHIN: Duration = Duration::from_millis(500);

/// One socket of an agent: bound, or waiting for the agent's own process
/// to let go of the address.
#[derive(Debug)]
struct Slot {
    name: String,
    address: SocketAddr,
    fd: Option<OwnedFd>,
    /// The socket of a blue-green cutover's new process, until cutover.
    incoming: Option<OwnedFd>,
    /// Whether connections are spread over `fd` and `incoming`.
    spread: bool,
    /// Why the kernel would not steer `fd`'s group (then a cutover shares
    /// `fd`).
    unsteered: Option<String>,
}

/// Every agent's sockets.
#[derive(Debug, Default)]
pub struct Listeners {
    bound: BTreeMap<AgentName, Vec<Slot>>,
    /// Agents whose cutover under way shares its sockets, and why.
    shared: BTreeMap<AgentName, String>,
    /// Agents whose next spawn is a cutover's new process, which gets the
    /// `incoming` sockets.
    fresh: std::collections::BTreeSet<AgentName>,
}

/// Who holds an address a bind found taken.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// One of this daemon's agents (its main process's group).
    Agent { agent: AgentName, pid: u32 },
    /// This daemon (its `[metrics]` address, say).
    Daemon,
    /// Another process.
    Process { pid: u32, command: String },
    /// Not found (another user's process, another network namespace, or
    /// a socket no process holds any more).
    Unknown,
}

impl Listeners {
    /// Binds what `config` names and is not bound yet, then closes what it
    /// no longer names; a socket that moves from one agent to another is
    /// kept. All or nothing: when one address cannot be bound, nothing
    /// changes and the error says which and who holds it. An address the
    /// agent itself holds (a process of `agents`, the agents' main pids) is
    /// bound at its next spawn instead ([`Listeners::of`]); the notes say
    /// so, per agent, for the journal.
    pub fn apply(
        &mut self,
        config: &Config,
        agents: &[(AgentName, u32)],
    ) -> Result<Vec<(AgentName, String)>, String> {
        let mut next: BTreeMap<AgentName, Vec<Slot>> = BTreeMap::new();
        let mut notes = Vec::new();
        let mut old = std::mem::take(&mut self.bound);
        let put_back = |old: &mut BTreeMap<AgentName, Vec<Slot>>,
                        next: BTreeMap<AgentName, Vec<Slot>>| {
            for (agent, slots) in next {
                old.entry(agent).or_default().extend(slots);
            }
        };
        for (agent, spec) in &config.agents {
            let mut slots = Vec::new();
            for (name, address) in &spec.listen {
                // The agent's own socket first, then one another agent
                // gives up in this config.
                let reused = take_slot(&mut old, agent, *address).or_else(|| {
                    let owner = old
                        .iter()
                        .find(|(_, slots)| slots.iter().any(|slot| slot.address == *address))
                        .map(|(owner, _)| owner.clone())?;
                    take_slot(&mut old, &owner, *address)
                });
                let (fd, incoming, spread, unsteered) = match reused {
                    Some(slot) => (slot.fd, slot.incoming, slot.spread, slot.unsteered),
                    None => match bind_listener(*address, Join::No) {
                        Ok((fd, unsteered)) => (Some(fd), None, false, unsteered),
                        Err(error) => {
                            let holder = holder_of(*address, error, agents);
                            match holder {
                                Holder::Agent { agent: holder, pid } if holder == *agent => {
                                    notes.push((
                                        agent.clone(),
                                        format!(
                                            "{address} ({name}) is held by {agent} itself (pid {pid}): \
                                             roster binds it once that process has stopped and hands it to the next one"
                                        ),
                                    ));
                                    (None, None, false, None)
                                }
                                holder => {
                                    // Put back what was taken: nothing changes.
                                    old.entry(agent.clone()).or_default().extend(slots);
                                    put_back(&mut old, next);
                                    self.bound = old;
                                    return Err(refusal(agent, name, *address, error, &holder));
                                }
                            }
                        }
                    },
                };
                slots.push(Slot {
                    name: name.clone(),
                    address: *address,
                    fd,
                    incoming,
                    spread,
                    unsteered,
                });
            }
            if !slots.is_empty() {
                next.insert(agent.clone(), slots);
            }
        }
        // Sockets no agent names any more are closed here (dropped).
        self.bound = next;
        self.shared
            .retain(|agent, _| self.bound.contains_key(agent));
        self.fresh.retain(|agent| self.bound.contains_key(agent));
        Ok(notes)
    }

    /// Whether the daemon holds `agent`'s socket `name` bound now (one the
    /// agent itself held at the apply is bound at its next spawn).
    pub fn is_bound(&self, agent: &AgentName, name: &str) -> bool {
        self.bound.get(agent).is_some_and(|slots| {
            slots
                .iter()
                .any(|slot| slot.name == name && slot.fd.is_some())
        })
    }

    /// An agent's sockets, in the order they are handed over (fd 3 first),
    /// for a spawn (a cutover's new process gets its own, when it has
    /// them): an address the agent held itself at apply is bound now (its
    /// old process is gone); `Err` says who still holds it.
    /// `agents` (the agents' main pids, for naming a holder) is asked only
    /// when a bind fails.
    pub fn of(
        &mut self,
        agent: &AgentName,
        agents: impl FnOnce() -> Vec<(AgentName, u32)>,
    ) -> Result<Vec<(String, RawFd)>, String> {
        let fresh = self.fresh.remove(agent);
        let Some(slots) = self.bound.get_mut(agent) else {
            return Ok(Vec::new());
        };
        let mut agents = Some(agents);
        for slot in slots.iter_mut().filter(|slot| slot.fd.is_none()) {
            match bind_listener(slot.address, Join::No) {
                Ok((fd, unsteered)) => {
                    slot.fd = Some(fd);
                    slot.unsteered = unsteered;
                }
                Err(error) => {
                    let pids = agents.take().map(|agents| agents()).unwrap_or_default();
                    let holder = holder_of(slot.address, error, &pids);
                    return Err(format!(
                        "cannot listen on {} ({}): {}",
                        slot.address,
                        slot.name,
                        held_by(&holder, error)
                    ));
                }
            }
        }
        Ok(slots
            .iter()
            .filter_map(|slot| {
                let incoming = slot.incoming.as_ref().filter(|_| fresh);
                let fd = incoming.or(slot.fd.as_ref())?;
                Some((slot.name.clone(), fd.as_raw_fd()))
            })
            .collect())
    }
}

fn take_slot(
    slots: &mut BTreeMap<AgentName, Vec<Slot>>,
    agent: &AgentName,
    address: SocketAddr,
) -> Option<Slot> {
    let own = slots.get_mut(agent)?;
    let index = own.iter().position(|slot| slot.address == address)?;
    Some(own.remove(index))
}

/// Who holds `address`, when a bind failed for want of it.
fn holder_of(address: SocketAddr, error: Errno, agents: &[(AgentName, u32)]) -> Holder {
    if error == Errno::EADDRINUSE {
        find_holder(address, agents)
    } else {
        Holder::Unknown
    }
}

/// Who holds `address`: this daemon's agents' processes are looked at
/// first.
fn find_holder(address: SocketAddr, agents: &[(AgentName, u32)]) -> Holder {
    let first: Vec<u32> = agents.iter().map(|(_, pid)| *pid).collect();
    let deadline = Instant::now() + FIND_HOLDER_WITHIN;
    let Some(pid) = crate::procfs::listener_holder(address, &first, deadline) else {
        return Holder::Unknown;
    };
    if pid == std::process::id() {
        return Holder::Daemon;
    }
    // A process of an agent's group (a worker it forked) is the agent's.
    let group = crate::procfs::sample(pid).map(|sample| sample.pgid);
    let owner = agents
        .iter()
        .find(|(_, leader)| *leader == pid || Some(*leader) == group);
    match owner {
        Some((agent, leader)) => Holder::Agent {
            agent: agent.clone(),
            pid: *leader,
        },
        None => Holder::Process {
            pid,
            command: crate::procfs::command_name(pid).unwrap_or_else(|| "?".into()),
        },
    }
}

fn held_by(holder: &Holder, error: Errno) -> String {
    match holder {
        Holder::Agent { agent, pid } => format!("agent {agent} (pid {pid}) holds it"),
        Holder::Daemon => "this roster daemon holds it (its [metrics] listen?)".into(),
        Holder::Process { pid, command } => {
            format!("pid {pid} ({command}), which is not one of this roster's agents, holds it")
        }
        Holder::Unknown => error.desc().to_lowercase(),
    }
}

/// Why the apply is refused, and what to do.
fn refusal(
    agent: &AgentName,
    name: &str,
    address: SocketAddr,
    error: Errno,
    holder: &Holder,
) -> String {
    let hint = match holder {
        Holder::Agent { agent: other, .. } => format!(
            "{other} binds the address in its own code and keeps running under this config; \
             stop it first (`roster stop {other}`) or move it off the address, then apply again"
        ),
        Holder::Daemon => format!("give [agents.{agent}.listen] and [metrics] different addresses"),
        Holder::Process { pid, .. } => {
            format!("stop pid {pid} or change [agents.{agent}.listen]; nothing was applied")
        }
        Holder::Unknown => format!(
            "another process holds the address, or it is not this machine's; \
             free it or change [agents.{agent}.listen]"
        ),
    };
    format!(
        "agent {agent}: cannot listen on {address} ({name}): {}\n  hint: {hint}",
        held_by(holder, error)
    )
}

/// Whether a bind joins the address's existing `SO_REUSEPORT` group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Join {
    /// The first socket on the address: a listener there already (the
    /// agent's own, say) makes it fail with `EADDRINUSE`, as it did before
    /// sockets had `SO_REUSEPORT`.
    No,
    /// A cutover's second socket, beside the daemon's first.
    Yes,
}

/// A listening TCP socket: close-on-exec (children get it only through
/// the spawn's dup2), SO_REUSEADDR and SO_REUSEPORT, at an fd above the
/// handover range. The first socket on an address also gets the group's
/// "oldest listener wins" program; the second half of the answer says why
/// the kernel refused it, if it did.
fn bind_listener(address: SocketAddr, join: Join) -> Result<(OwnedFd, Option<String>), Errno> {
    if join == Join::No && address_taken(address) {
        return Err(Errno::EADDRINUSE);
    }
    let family = match address {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(address))?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    let unsteered = match join {
        Join::No => crate::sys::reuseport_steer(&fd, crate::sys::Steer::First).err().map(|error| {
            format!("the kernel would not steer the connections of {address} (SO_ATTACH_REUSEPORT_CBPF: {error})")
        }),
        Join::Yes => None,
    };
    let fd = crate::sys::dup_above(&fd, KEEP_ABOVE).map_err(|error| {
        error
            .raw_os_error()
            .map(Errno::from_raw)
            .unwrap_or(Errno::EIO)
    })?;
    Ok((fd, unsteered))
}

/// Whether something in this network namespace listens on `address` or
/// on one of its family a bind of it collides with.
fn address_taken(address: SocketAddr) -> bool {
    let table = match address {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    std::fs::read_to_string(table)
        .is_ok_and(|text| !crate::procfs::parse_listeners_of(&text, address).is_empty())
}
