//! Placement, property-style: loops over generated fleets check that it
//! is deterministic, within capacity, honours pins and labels, gives
//! unique ports in range, and moves few instances when hosts or tenants
//! come and go (measured against the ideal share).

use std::collections::{BTreeMap, BTreeSet};

use super::{place, place_with, Fleet, Host, Placement, PlacementError, PortRange, SshSpec};
use super::{Template, TemplateValue, Tenant};

/// A small deterministic generator (SplitMix64): no new crate, the same
/// fleets on every run.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn template() -> Template {
    Template {
        table: vec![
            (
                "command".into(),
                TemplateValue::String("agent --port {port}".into()),
            ),
            ("user".into(), TemplateValue::String("{tenant}".into())),
        ],
    }
}

fn host(capacity: u32, labels: &[(&str, &str)]) -> Host {
    Host {
        address: "10.0.0.1".into(),
        capacity,
        memory: None,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        user: None,
        port: None,
    }
}

fn tenant(agents: &[&str]) -> Tenant {
    Tenant {
        agents: agents.iter().map(|agent| agent.to_string()).collect(),
        env: BTreeMap::new(),
        host: None,
        labels: BTreeMap::new(),
    }
}

/// `hosts` hosts of `capacity`, `tenants` tenants running agent `a`.
fn fleet(hosts: usize, capacity: u32, tenants: usize) -> Fleet {
    Fleet {
        name: "test".into(),
        ports: PortRange {
            first: 8100,
            last: 8199,
        },
        binary: super::model::DEFAULT_BINARY.into(),
        ssh: SshSpec::default(),
        metrics_listen: None,
        hosts: (0..hosts)
            .map(|i| (format!("h{i:02}"), host(capacity, &[])))
            .collect(),
        templates: [("a".to_string(), template()), ("b".to_string(), template())].into(),
        tenants: (0..tenants)
            .map(|i| (format!("c{i:03}"), tenant(&["a"])))
            .collect(),
    }
}

/// A random fleet: 1-20 hosts of capacity 1-8, some labelled, tenants
/// running one or two agents, some pinned, some asking for labels; never
/// more instances than capacity (it may still not place: labels).
fn random_fleet(draw: &mut Draw) -> Fleet {
    let mut fleet = fleet(0, 0, 0);
    let hosts = 1 + draw.below(20) as usize;
    for index in 0..hosts {
        let labels: &[(&str, &str)] = match draw.below(3) {
            0 => &[("region", "eu")],
            1 => &[("region", "us")],
            _ => &[],
        };
        fleet.hosts.insert(
            format!("h{index:02}"),
            host(1 + draw.below(8) as u32, labels),
        );
    }
    let capacity: u64 = fleet
        .hosts
        .values()
        .map(|host| u64::from(host.capacity))
        .sum();
    let mut instances = 0;
    let mut pinned: BTreeMap<String, u64> = BTreeMap::new();
    for index in 0..draw.below(capacity + 1) {
        let agents: &[&str] = if draw.below(4) == 0 {
            &["a", "b"]
        } else {
            &["a"]
        };
        if instances + agents.len() as u64 > capacity {
            break;
        }
        let mut spec = tenant(agents);
        match draw.below(10) {
            0 => {
                let name = format!("h{:02}", draw.below(hosts as u64));
                let room = u64::from(fleet.hosts[&name].capacity);
                let used = pinned.entry(name.clone()).or_default();
                if *used + agents.len() as u64 <= room {
                    *used += agents.len() as u64;
                    spec.host = Some(name);
                }
            }
            1 => {
                spec.labels.insert("region".into(), "eu".into());
            }
            _ => {}
        }
        instances += agents.len() as u64;
        fleet.tenants.insert(format!("c{index:03}"), spec);
    }
    fleet
}

fn hosts_of(placement: &Placement) -> BTreeMap<&str, &str> {
    placement
        .instances
        .iter()
        .map(|instance| (instance.name.as_str(), instance.host.as_str()))
        .collect()
}

/// Instances of `before` on another host (or gone) in `after`.
fn moved(before: &Placement, after: &Placement) -> usize {
    let after = hosts_of(after);
    hosts_of(before)
        .iter()
        .filter(|(name, host)| after.get(*name).is_some_and(|now| now != *host))
        .count()
}

#[test]
fn placement_is_deterministic_within_capacity_and_honours_pins_labels_and_ports() {
    let mut draw = Draw(16);
    let mut placed = 0;
    for _ in 0..300 {
        let fleet = random_fleet(&mut draw);
        let placement = match place(&fleet) {
            Ok(placement) => placement,
            // Greedy placement may miss an assignment labels allow; it
            // says which instance found no room, never half a placement.
            Err(PlacementError::Full { .. }) => continue,
            // The generator may ask for a label no host carries.
            Err(PlacementError::NoHost { .. }) => continue,
            Err(error) => panic!("{error}"),
        };
        placed += 1;
        assert_eq!(
            place(&fleet),
            Ok(placement.clone()),
            "same fleet, same placement"
        );
        let instances: usize = fleet.tenants.values().map(|t| t.agents.len()).sum();
        assert_eq!(placement.instances.len(), instances);
        let mut load: BTreeMap<&str, u32> = BTreeMap::new();
        let mut ports: BTreeSet<(&str, u16)> = BTreeSet::new();
        for instance in &placement.instances {
            *load.entry(&instance.host).or_default() += 1;
            assert!(fleet.ports.contains(instance.port));
            assert!(
                ports.insert((&instance.host, instance.port)),
                "port twice on a host"
            );
            let tenant = &fleet.tenants[&instance.tenant];
            let host = &fleet.hosts[&instance.host];
            if let Some(pin) = &tenant.host {
                assert_eq!(&instance.host, pin);
            }
            assert!(
                host.carries(&tenant.labels),
                "{} lacks labels",
                instance.host
            );
        }
        for (host, count) in load {
            assert!(count <= fleet.hosts[host].capacity, "{host} over capacity");
        }
    }
    assert!(placed >= 250, "only {placed} of 300 fleets placed");
}

#[test]
fn a_full_fleet_is_filled_and_an_impossible_one_is_refused() {
    let fleet = fleet(17, 3, 51);
    let placement = place(&fleet).expect("51 instances fit 17 × 3");
    for host in fleet.hosts.keys() {
        assert_eq!(placement.on_host(host).count(), 3);
    }
    let mut labelled = fleet.clone();
    for tenant in labelled.tenants.values_mut() {
        tenant.labels.insert("gpu".into(), "yes".into());
    }
    assert!(
        matches!(place(&labelled), Err(PlacementError::NoHost { .. })),
        "no host carries gpu = yes"
    );
}

#[test]
fn ports_stay_when_other_instances_come_and_go() {
    let before = place(&fleet(2, 50, 60)).expect("placed");
    let mut fewer = fleet(2, 50, 60);
    fewer.tenants.retain(|name, _| name.as_str() >= "c010");
    fewer.tenants.insert("new".into(), tenant(&["a", "b"]));
    let after = place_with(&fewer, Some(&before)).expect("placed");
    for instance in &after.instances {
        if let Some(old) = before.get(&instance.name) {
            if old.host == instance.host {
                assert_eq!(old.port, instance.port, "{} changed port", instance.name);
            }
        }
    }
    // Without the previous placement ports are still hash-preferred:
    // most stay anyway.
    let fresh = place(&fewer).expect("placed");
    let same = fresh
        .instances
        .iter()
        .filter(|i| {
            before
                .get(&i.name)
                .is_some_and(|old| old.host == i.host && old.port == i.port)
        })
        .count();
    assert!(
        same * 10 >= fresh.instances.len() * 8,
        "{same} of {}",
        fresh.instances.len()
    );
}

/// The measured movement, printed with `--nocapture`, bounded by asserts.
#[test]
fn adding_or_removing_hosts_and_tenants_moves_few_instances() {
    let mut report = Vec::new();
    for (capacity, instances) in [(3, 36), (3, 45), (8, 64), (20, 100)] {
        let mut add_host = 0;
        let mut remove_host = 0;
        let mut remove_host_others = 0;
        let mut add_tenant = 0;
        let mut ideal = 0.0;
        for round in 0..20 {
            let mut base = fleet(16, capacity, instances);
            // Different names each round: different hashes.
            base.tenants = (0..instances)
                .map(|i| (format!("r{round}t{i:03}"), tenant(&["a"])))
                .collect();
            let before = place(&base).expect("placed");
            let mut more = base.clone();
            more.hosts.insert("h99".into(), host(capacity, &[]));
            let after = place(&more).expect("placed");
            add_host += moved(&before, &after);
            ideal += instances as f64 / 17.0;
            let mut fewer = base.clone();
            fewer.hosts.remove("h05");
            if let Ok(after) = place(&fewer) {
                let lost = before.on_host("h05").count();
                remove_host += moved(&before, &after);
                remove_host_others += moved(&before, &after) - lost;
            }
            let mut tenant_more = base.clone();
            tenant_more
                .tenants
                .insert(format!("r{round}new"), tenant(&["a"]));
            add_tenant += moved(&before, &place(&tenant_more).expect("placed"));
        }
        let rounds = 20.0;
        report.push(format!(
            "16 hosts × {capacity}, {instances} instances: add a host moves {:.1} (ideal {:.1}), \
             remove one moves {:.1} ({:.1} not its own), add a tenant moves {:.1}",
            add_host as f64 / rounds,
            ideal / rounds,
            remove_host as f64 / rounds,
            remove_host_others as f64 / rounds,
            add_tenant as f64 / rounds,
        ));
        // Adding 1 host to 16: at most twice its ideal share moves.
        assert!(
            add_host as f64 <= 2.0 * ideal,
            "adding a host moved {add_host}, ideal {ideal}"
        );
        // Removing one: its own instances, and fewer others than those
        // (others move only when a host fills up; none while the fleet
        // is lightly loaded).
        let own = remove_host - remove_host_others;
        assert!(
            remove_host_others <= own,
            "{remove_host_others} others, {own} own"
        );
        if capacity as usize * 16 >= instances * 3 {
            assert_eq!(remove_host_others, 0, "{capacity} × 16, {instances}");
        }
        // Adding a tenant: few or none.
        assert!(
            add_tenant as f64 / rounds <= 1.5,
            "adding a tenant moved {add_tenant}"
        );
    }
    // `cargo test -p roster-core fleet::place_tests::adding -- --nocapture`
    println!("{}", report.join("\n"));
}
