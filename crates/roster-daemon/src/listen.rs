//! `[agents.NAME.listen]`: sockets the daemon binds once and hands to every
//! process of the agent by systemd's socket-activation protocol (fds from 3,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` set by the exec shim).
//! Old and new processes of a blue-green cutover accept on the same socket,
//! and the daemon keeps it open between them, so a connection that arrives
//! while neither accepts waits in the backlog instead of being refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

use roster_core::{AgentName, Config};

/// The lowest fd number a bound socket is kept at, so that handing fds
/// 3, 4, ... to a child never overwrites a socket not yet handed over.
pub(crate) const KEEP_ABOVE: RawFd = 3 + roster_core::deploy::MAX_LISTEN as RawFd + 16;

/// Pending connections per socket while no process accepts (a cutover's
/// gap, a restart).
const BACKLOG: i32 = 1024;

/// One bound socket.
#[derive(Debug)]
struct Bound {
    name: String,
    address: SocketAddr,
    fd: OwnedFd,
}

/// Every agent's bound sockets.
#[derive(Debug, Default)]
pub struct Listeners {
    bound: BTreeMap<AgentName, Vec<Bound>>,
}

impl Listeners {
    /// Binds what `config` names and is not bound yet, then closes what it
    /// no longer names. All or nothing: when one address cannot be bound,
    /// nothing changes and the error says which.
    pub fn apply(&mut self, config: &Config) -> Result<(), String> {
        let mut next: BTreeMap<AgentName, Vec<Bound>> = BTreeMap::new();
        let mut old = std::mem::take(&mut self.bound);
        for (agent, spec) in &config.agents {
            let mut sockets = Vec::new();
            for (name, address) in &spec.listen {
                let reuse = old.get_mut(agent).and_then(|bound| {
                    let index = bound.iter().position(|b| b.address == *address)?;
                    Some(bound.remove(index))
                });
                let fd = match reuse {
                    Some(bound) => bound.fd,
                    None => match bind_listener(*address) {
                        Ok(fd) => fd,
                        Err(error) => {
                            // Put back what was taken: nothing changes.
                            for (agent, sockets) in next {
                                old.entry(agent).or_default().extend(sockets);
                            }
                            old.entry(agent.clone()).or_default().extend(sockets);
                            self.bound = old;
                            return Err(format!(
                                "agent {agent}: cannot listen on {address} ({name}): {error}\n  \
                                 hint: another process holds the address, or it is not this machine's; \
                                 free it or change [agents.{agent}.listen]"
                            ));
                        }
                    },
                };
                sockets.push(Bound {
                    name: name.clone(),
                    address: *address,
                    fd,
                });
            }
            if !sockets.is_empty() {
                next.insert(agent.clone(), sockets);
            }
        }
        // Sockets no agent names any more are closed here (dropped).
        self.bound = next;
        Ok(())
    }

    /// An agent's sockets, in the order they are handed over (fd 3 first).
    pub fn of(&self, agent: &AgentName) -> Vec<(String, RawFd)> {
        self.bound
            .get(agent)
            .map(|bound| {
                bound
                    .iter()
                    .map(|b| (b.name.clone(), b.fd.as_raw_fd()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A listening TCP socket: close-on-exec (children get it only through
/// the spawn's dup2), SO_REUSEADDR, at an fd above the handover range.
fn bind_listener(address: SocketAddr) -> std::io::Result<OwnedFd> {
    let family = match address {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(address))?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    crate::sys::dup_above(&fd, KEEP_ABOVE)
}
