//! The plan: what must change on the hosts to get from what they run to
//! a placement. Pure: what each host runs is given (the CLI fetches it),
//! and the changes come back sorted by instance, then host.

use std::collections::BTreeMap;

use super::model::Placement;

/// A fleet instance a host runs now, as the plan needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningInstance {
    /// `TENANT.AGENT`.
    pub name: String,
    /// The digest of its `[agents."NAME"]` section in the host's
    /// roster.toml, as `fleet::digest` computes it.
    pub digest: String,
}

/// What a change does to an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Start it on a host that does not run it anywhere yet.
    Add,
    /// Its section differs from what its host runs: apply the new one.
    Change,
    /// Stop it: it is no longer in the fleet, or runs on a host it should
    /// not (besides the one it should).
    Remove,
    /// Start it on `host`, then stop it on `from`.
    Move,
}

/// One change of a plan: the `changes` of `roster fleet plan --json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// What is done.
    pub kind: ChangeKind,
    /// The instance (`TENANT.AGENT`).
    pub instance: String,
    /// The host it is done on (for a move, the new host).
    pub host: String,
    /// For a move, the host it leaves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The changes that take the hosts from `current` (each host's fleet
/// instances) to `desired`. An instance running where it should with the
/// same digest needs none.
pub fn plan(desired: &Placement, current: &[(String, Vec<RunningInstance>)]) -> Vec<Change> {
    // Where each instance runs now, hosts sorted by name.
    let mut running: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for (host, instances) in current {
        for instance in instances {
            running
                .entry(instance.name.as_str())
                .or_default()
                .insert(host.as_str(), instance.digest.as_str());
        }
    }
    let mut changes = Vec::new();
    for instance in &desired.instances {
        let mut hosts = running.remove(instance.name.as_str()).unwrap_or_default();
        let change = |kind, host: &str, from: Option<&str>| Change {
            kind,
            instance: instance.name.clone(),
            host: host.to_owned(),
            from: from.map(str::to_owned),
        };
        match hosts.remove(instance.host.as_str()) {
            Some(digest) if digest == instance.digest => {}
            Some(_) => changes.push(change(ChangeKind::Change, &instance.host, None)),
            None => match hosts.keys().next().copied() {
                Some(from) => {
                    hosts.remove(from);
                    changes.push(change(ChangeKind::Move, &instance.host, Some(from)));
                }
                None => changes.push(change(ChangeKind::Add, &instance.host, None)),
            },
        }
        // Copies left elsewhere (a move cut short) go.
        for host in hosts.keys() {
            changes.push(change(ChangeKind::Remove, host, None));
        }
    }
    for (name, hosts) in running {
        for host in hosts.keys() {
            changes.push(Change {
                kind: ChangeKind::Remove,
                instance: name.to_owned(),
                host: (*host).to_owned(),
                from: None,
            });
        }
    }
    changes.sort_by(|a, b| {
        (&a.instance, &a.host, a.kind, &a.from).cmp(&(&b.instance, &b.host, b.kind, &b.from))
    });
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Placed;

    fn placed(name: &str, host: &str, digest: &str) -> Placed {
        let (tenant, agent) = name.split_once('.').unwrap_or((name, ""));
        Placed {
            name: name.into(),
            tenant: tenant.into(),
            agent: agent.into(),
            host: host.into(),
            port: 8100,
            digest: digest.into(),
        }
    }

    fn running(host: &str, instances: &[(&str, &str)]) -> (String, Vec<RunningInstance>) {
        let instances = instances
            .iter()
            .map(|(name, digest)| RunningInstance {
                name: (*name).into(),
                digest: (*digest).into(),
            })
            .collect();
        (host.into(), instances)
    }

    fn shown(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|change| match &change.from {
                Some(from) => format!(
                    "{:?} {} {} from {from}",
                    change.kind, change.instance, change.host
                ),
                None => format!("{:?} {} {}", change.kind, change.instance, change.host),
            })
            .collect()
    }

    #[test]
    fn every_kind_of_change_sorted_by_instance_then_host() {
        let desired = Placement {
            instances: vec![
                placed("a.x", "h1", "d1"),
                placed("b.x", "h2", "d2"),
                placed("c.x", "h1", "d3"),
                placed("d.x", "h2", "d4"),
                placed("e.x", "h1", "d5"),
                placed("f.x", "h3", "d6"),
            ],
        };
        let current = [
            running(
                "h1",
                &[
                    ("a.x", "d1"),
                    ("c.x", "old"),
                    ("d.x", "d4"),
                    ("gone.x", "d9"),
                ],
            ),
            running("h2", &[("b.x", "d2"), ("e.x", "d5")]),
            running("h3", &[("e.x", "d5"), ("f.x", "d6")]),
            running("h4", &[("f.x", "d6")]),
        ];
        assert_eq!(
            shown(&plan(&desired, &current)),
            [
                "Change c.x h1",
                "Move d.x h2 from h1",
                "Move e.x h1 from h2",
                "Remove e.x h3",
                "Remove f.x h4",
                "Remove gone.x h1",
            ]
        );
        assert_eq!(shown(&plan(&desired, &[])).len(), 6);
        assert!(shown(&plan(&desired, &[]))
            .iter()
            .all(|change| change.starts_with("Add")));
        let converged: Vec<(String, Vec<RunningInstance>)> = ["h1", "h2", "h3"]
            .iter()
            .map(|host| {
                let on_host: Vec<(&str, &str)> = desired
                    .on_host(host)
                    .map(|i| (i.name.as_str(), i.digest.as_str()))
                    .collect();
                running(host, &on_host)
            })
            .collect();
        assert_eq!(plan(&desired, &converged), []);
    }

    /// The `changes` of `roster fleet plan --json`: exactly these fields,
    /// `from` only on a move.
    #[test]
    fn changes_serialize_as_the_json_contract_says() {
        let desired = Placement {
            instances: vec![placed("a.x", "h2", "d1"), placed("b.x", "h1", "d2")],
        };
        let current = [running("h1", &[("a.x", "d1")])];
        let json = serde_json::to_string(&plan(&desired, &current)).expect("serializes");
        assert_eq!(
            json,
            r#"[{"kind":"move","instance":"a.x","host":"h2","from":"h1"},{"kind":"add","instance":"b.x","host":"h1"}]"#
        );
        let json = serde_json::to_value(&desired).expect("serializes");
        assert_eq!(
            json["instances"][0],
            serde_json::json!({"name": "a.x", "tenant": "a", "agent": "x", "host": "h2", "port": 8100, "digest": "d1"})
        );
    }
}
