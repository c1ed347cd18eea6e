//! Placement: which host each instance runs on, and its `{port}` there.
//!
//! Rendezvous (highest-random-weight) hashing with bounded loads: each
//! instance ranks the hosts it may run on (a pin, or every host carrying
//! its tenant's labels) by a stable hash of host and instance, and takes
//! the first with room. Room is first a balanced share (5/4 of the
//! host's part of the instances, by capacity), then the capacity itself,
//! so hosts fill evenly while the fleet has room to spare and fully when
//! it has not. Instances are placed in a fixed order (pins, then tenants
//! with labels, then the rest, each by a hash of its name), so the same
//! file gives the same placement; a new host takes only the instances
//! that rank it first, a removed host's instances move and no other.
//!
//! Ports: an instance keeps the port a previous placement gave it on the
//! same host while it is free and in range; otherwise it takes the first
//! free port from a hash-chosen offset in the range, in name order.

use std::collections::{BTreeMap, BTreeSet};

use super::hash::{digest, port_offset, turn, weight};
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
    /// Hosts it may run on, best first.
    ranked: Vec<&'a str>,
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
            let mut ranked: Vec<&str> = match &tenant.host {
                Some(pin) => vec![pin.as_str()],
                None => fleet
                    .hosts
                    .iter()
                    .filter(|(_, host)| host.carries(&tenant.labels))
                    .map(|(host, _)| host.as_str())
                    .collect(),
            };
            ranked.sort_by_key(|host| std::cmp::Reverse((weight(host, &name), *host)));
            wanted.push(Wanted {
                name,
                tenant: tenant_name,
                agent,
                pin: tenant.host.as_deref(),
                ranked,
            });
        }
    }
    // Pins first (they have no choice), then instances whose labels
    // narrow their choice, then the rest; each group in a hashed order.
    wanted.sort_by_key(|instance| {
        let group = match (instance.pin, fleet.tenants.get(instance.tenant)) {
            (Some(_), _) => 0,
            (None, Some(tenant)) if !tenant.labels.is_empty() => 1,
            _ => 2,
        };
        (group, turn(&instance.name), instance.name.clone())
    });
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

/// The host of each of `wanted`, in its order.
fn choose_hosts<'a>(
    fleet: &'a Fleet,
    wanted: &[Wanted<'a>],
) -> Result<Vec<&'a str>, PlacementError> {
    let instances = wanted.len() as u64;
    let total_capacity: u64 = fleet
        .hosts
        .values()
        .map(|host| u64::from(host.capacity))
        .sum();
    let capacity = |host: &str| {
        fleet
            .hosts
            .get(host)
            .map_or(0, |host| u64::from(host.capacity))
    };
    // The balanced share: ceil(5/4 × instances × capacity / total).
    let share = |host: &str| {
        let capacity = capacity(host);
        let bound = (5 * instances * capacity).div_ceil(4 * total_capacity.max(1));
        bound.clamp(1, capacity.max(1)).min(capacity)
    };
    let mut load: BTreeMap<&str, u64> = BTreeMap::new();
    let mut chosen = Vec::with_capacity(wanted.len());
    for instance in wanted {
        if instance.ranked.is_empty()
            || instance
                .ranked
                .iter()
                .all(|host| !fleet.hosts.contains_key(*host))
        {
            return Err(PlacementError::NoHost {
                instance: instance.name.clone(),
            });
        }
        let room = |limit: &dyn Fn(&str) -> u64, load: &BTreeMap<&str, u64>| {
            instance
                .ranked
                .iter()
                .copied()
                .find(|host| load.get(host).copied().unwrap_or(0) < limit(host))
        };
        let host = match instance.pin {
            Some(pin) => room(&capacity, &load).ok_or_else(|| PlacementError::PinnedFull {
                instance: instance.name.clone(),
                host: pin.to_owned(),
            })?,
            None => room(&share, &load)
                .or_else(|| room(&capacity, &load))
                .ok_or_else(|| PlacementError::Full {
                    instance: instance.name.clone(),
                    hosts: instance.ranked.len(),
                })?,
        };
        *load.entry(host).or_default() += 1;
        chosen.push(host);
    }
    Ok(chosen)
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
