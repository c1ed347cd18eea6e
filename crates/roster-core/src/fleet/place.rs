//! Placement: which host each instance runs on, and its `{port}` there.
//!
//! Rendezvous (highest-random-weight) hashing, bounded by capacity:
//! every (instance, host) pair the instance may use (its pin, or every
//! host carrying its tenant's labels) has a weight, a stable hash of both
//! names. Pins are placed first; then, tenants with labels before the
//! rest, the pairs are taken from the heaviest down, an instance taking
//! the host of its first pair whose host still has room. No clock, no
//! randomness, no map order: the same file gives the same placement. A
//! new host takes the instances whose heaviest pair it is (plus, when
//! hosts are full, a few that come back to their first choice); a
//! removed host's instances move elsewhere and, while hosts have room,
//! no other does. Load is bounded by capacity only: below it, instances
//! spread as the hash spreads them (a tighter share bound was tried, and
//! moved instances at every new tenant).
//!
//! Ports: an instance keeps the port a previous placement gave it on the
//! same host while it is free and in range; otherwise it takes the first
//! free port from a hash-chosen offset in the range, in name order.

use std::collections::{BTreeMap, BTreeSet};

use super::hash::{digest, port_offset, weight};
use super::model::{Fleet, Placed, Placement};
use super::render::section;

/// Why a fleet cannot be placed. `parse` rejects most such files with a
/// located error; these are what is left (labels that leave too few
/// hosts for the instances that need them).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No host may run the instance: none is defined, or none carries its
    /// tenant's labels.
    #[error("no host may run instance `{instance}`: none carries its tenant's labels")]
    NoHost {
        /// The instance.
        instance: String,
    },
    /// Every host the instance may run on is full.
    #[error("the {hosts} host(s) instance `{instance}` may run on are full")]
    Full {
        /// The instance.
        instance: String,
        /// How many hosts it may run on.
        hosts: usize,
    },
    /// Its tenant's pinned host is full.
    #[error("instance `{instance}` is pinned to host `{host}`, which is full")]
    PinnedFull {
        /// The instance.
        instance: String,
        /// The host it is pinned to.
        host: String,
    },
    /// A host has more instances than ports in the fleet's range.
    #[error("host `{host}` has no free port left in the fleet's range")]
    NoPort {
        /// The host.
        host: String,
    },
}

/// One instance before it is placed.
struct Wanted<'a> {
    name: String,
    tenant: &'a str,
    agent: &'a str,
    pin: Option<&'a str>,
    group: Group,
    /// Hosts it may run on (its pin only, if pinned).
    ranked: Vec<&'a str>,
}

/// Who is placed first: those with the least choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Pinned,
    Labelled,
    Free,
}

/// Places every instance of `fleet`. Same fleet, same placement.
pub fn place(fleet: &Fleet) -> Result<Placement, PlacementError> {
    place_with(fleet, None)
}

/// Places every instance of `fleet`, keeping the ports `previous` gave
/// instances that stay on their host (while still free and in range).
/// The hosts do not depend on `previous`.
pub fn place_with(
    fleet: &Fleet,
    previous: Option<&Placement>,
) -> Result<Placement, PlacementError> {
    let mut wanted = Vec::new();
    for (tenant_name, tenant) in &fleet.tenants {
        for agent in &tenant.agents {
            let name = format!("{tenant_name}.{agent}");
            let ranked: Vec<&str> = match &tenant.host {
                Some(pin) => vec![pin.as_str()],
                None => fleet
                    .hosts
                    .iter()
                    .filter(|(_, host)| host.carries(&tenant.labels))
                    .map(|(host, _)| host.as_str())
                    .collect(),
            };
            wanted.push(Wanted {
                name,
                tenant: tenant_name,
                agent,
                pin: tenant.host.as_deref(),
                group: match (&tenant.host, tenant.labels.is_empty()) {
                    (Some(_), _) => Group::Pinned,
                    (None, false) => Group::Labelled,
                    (None, true) => Group::Free,
                },
                ranked,
            });
        }
    }
    let hosts = choose_hosts(fleet, &wanted)?;
    let ports = choose_ports(fleet, &wanted, &hosts, previous)?;
    let mut instances: Vec<Placed> = wanted
        .iter()
        .zip(hosts)
        .zip(ports)
        .map(|((instance, host), port)| Placed {
            name: instance.name.clone(),
            tenant: instance.tenant.to_owned(),
            agent: instance.agent.to_owned(),
            host: host.to_owned(),
            port,
            digest: String::new(),
        })
        .collect();
    for instance in &mut instances {
        instance.digest = digest(&section(fleet, instance));
    }
    instances.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Placement { instances })
}

/// The host of each of `wanted`, in its order. Pins first; then, group
/// by group (tenants with labels, then the rest), every (instance, host)
/// pair of the group from the highest weight down: the instance takes the
/// host if it has none yet and the host has room. So an instance's host
/// depends only on the pairs that outweigh its own, which is what keeps
/// movement small when capacity is tight.
fn choose_hosts<'a>(
    fleet: &'a Fleet,
    wanted: &[Wanted<'a>],
) -> Result<Vec<&'a str>, PlacementError> {
    let capacity = |host: &str| fleet.hosts.get(host).map_or(0, |host| host.capacity);
    let mut load: BTreeMap<&str, u32> = BTreeMap::new();
    let mut chosen: Vec<Option<&str>> = vec![None; wanted.len()];
    for (index, instance) in wanted.iter().enumerate() {
        if instance
            .ranked
            .iter()
            .all(|host| !fleet.hosts.contains_key(*host))
        {
            return Err(PlacementError::NoHost {
                instance: instance.name.clone(),
            });
        }
        if let Some(pin) = instance.pin {
            let used = load.entry(pin).or_default();
            if *used >= capacity(pin) {
                return Err(PlacementError::PinnedFull {
                    instance: instance.name.clone(),
                    host: pin.to_owned(),
                });
            }
            *used += 1;
            chosen[index] = Some(pin);
        }
    }
    for group in [Group::Labelled, Group::Free] {
        let mut pairs: Vec<(u64, &str, usize)> = wanted
            .iter()
            .enumerate()
            .filter(|(_, instance)| instance.group == group)
            .flat_map(|(index, instance)| {
                instance
                    .ranked
                    .iter()
                    .map(move |host| (weight(host, &instance.name), *host, index))
            })
            .collect();
        pairs.sort_unstable_by(|a, b| b.cmp(a));
        for (_, host, index) in pairs {
            if chosen[index].is_some() {
                continue;
            }
            let used = load.entry(host).or_default();
            if *used < capacity(host) {
                *used += 1;
                chosen[index] = Some(host);
            }
        }
    }
    chosen
        .into_iter()
        .zip(wanted)
        .map(|(host, instance)| {
            host.ok_or_else(|| PlacementError::Full {
                instance: instance.name.clone(),
                hosts: instance.ranked.len(),
            })
        })
        .collect()
}

/// The port of each of `wanted` on its host (`hosts`, in the same order).
fn choose_ports(
    fleet: &Fleet,
    wanted: &[Wanted<'_>],
    hosts: &[&str],
    previous: Option<&Placement>,
) -> Result<Vec<u16>, PlacementError> {
    let range = fleet.ports;
    let mut ports = vec![0u16; wanted.len()];
    let mut taken: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by(|a, b| wanted[*a].name.cmp(&wanted[*b].name));
    // Ports kept from the previous placement first, so that no newcomer
    // takes one.
    let mut open = Vec::new();
    for &index in &order {
        let kept = previous
            .and_then(|previous| previous.get(&wanted[index].name))
            .filter(|old| old.host == hosts[index] && range.contains(old.port))
            .map(|old| old.port);
        match kept {
            Some(port) if taken.entry(hosts[index]).or_default().insert(port) => {
                ports[index] = port;
            }
            _ => open.push(index),
        }
    }
    for index in open {
        let used = taken.entry(hosts[index]).or_default();
        let length = range.len();
        let start = port_offset(&wanted[index].name, length);
        let port = (0..length)
            .map(|step| u32::from(range.first) + (start + step) % length)
            .filter_map(|port| u16::try_from(port).ok())
            .find(|port| !used.contains(port))
            .ok_or_else(|| PlacementError::NoPort {
                host: hosts[index].to_owned(),
            })?;
        used.insert(port);
        ports[index] = port;
    }
    Ok(ports)
}
