//! The dashboard's snapshot: every agent as `status` shows it (the control
//! API's own status, `server::status_reply`), the firing and recent alerts,
//! the latest journal events, and the last CPU and memory samples of each
//! agent for the sparklines.
//!
//! CPU and memory are the sampler's (every 5 s, for the watch rules), not
//! sampled again here: a scan of /proc each second would cost the daemon
//! more than the page, for figures that move slowly. The sparklines are the
//! same samples' last [`SPARK_POINTS`] (five minutes).
//!
//! It is built once per second for all open pages together: a ticker task
//! publishes the whole snapshot through a `watch` channel, and each page's
//! stream filters it for its grant when it sends. The ticker runs only
//! while some page listens: the last stream gone, it stops, and the daemon
//! does no work for the dashboard.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{watch, Mutex};

use roster_core::api::{AgentStatus, AlertRecord, AlertState, EventKind, EventRecord};
use roster_core::web::{may_see, Grant, Scope};

use crate::inbox::Inbox;
use crate::server::{CpuMemo, Published};

/// How often open pages get a snapshot.
pub const TICK: Duration = Duration::from_secs(1);
/// The sampler's points shown per agent in its sparklines.
pub const SPARK_POINTS: usize = 60;
/// Journal events in a snapshot, the newest.
pub const EVENTS: u32 = 50;

/// The whole snapshot, before it is filtered for a grant.
#[derive(Debug, Default)]
pub struct Full {
    /// When it was built; `None` for the empty one before the first.
    pub built: Option<Instant>,
    /// Every agent: its tenant, and what the page shows.
    pub agents: Vec<(Option<String>, Value)>,
    /// Firing alerts, then recent ones (firings and resolutions).
    pub alerts: Vec<AlertRecord>,
    /// The newest journal events, oldest first.
    pub events: Vec<EventRecord>,
    /// What each scope sees, serialized at its first use.
    by_scope: std::sync::Mutex<std::collections::HashMap<Scope, Arc<str>>>,
}

impl Full {
    /// The tenant of agent `name`: `None` when there is no such agent,
    /// `Some(None)` for an agent without a tenant.
    pub fn tenant_of(&self, name: &str) -> Option<Option<String>> {
        self.agents
            .iter()
            .find(|(_, agent)| agent["name"] == name)
            .map(|(tenant, _)| tenant.clone())
    }

    /// What `grant` may see, as the page's JSON text: its agents, and
    /// alerts and events of those agents only (the host's and the
    /// daemon's for admins). The part that depends on the scope alone is
    /// serialized once per snapshot and scope, however many pages show it.
    ///
    /// `scope_of` names a token's scope: a tenant sees which token acted
    /// on its agents only when that token is of its own scope; the others
    /// (an operator's) read "from the web dashboard".
    pub fn for_grant(&self, grant: &Grant, scope_of: impl Fn(&str) -> Option<Scope>) -> String {
        let shared = {
            let mut cache = self
                .by_scope
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            cache
                .entry(grant.scope.clone())
                .or_insert_with(|| Arc::from(self.visible_to(&grant.scope, &scope_of).to_string()))
                .clone()
        };
        let me = json!({
            "token": grant.token,
            "scope": grant.scope.to_string(),
            "read_only": grant.read_only,
        });
        // `shared` is an object: splice `me` in as its first member.
        let rest = shared.strip_prefix('{').unwrap_or(&shared);
        let comma = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"me\":{me}{comma}{rest}")
    }

    fn visible_to(&self, scope: &Scope, scope_of: &dyn Fn(&str) -> Option<Scope>) -> Value {
        let seen: Vec<&Value> = self
            .agents
            .iter()
            .filter(|(tenant, _)| may_see(scope, tenant.as_deref()))
            .map(|(_, agent)| agent)
            .collect();
        let admin = *scope == Scope::Admin;
        let visible = |agent: &Option<String>| match agent {
            None => admin,
            Some(name) => seen.iter().any(|agent| agent["name"] == name.as_str()),
        };
        let alerts: Vec<&AlertRecord> = self
            .alerts
            .iter()
            .filter(|alert| visible(&alert.agent))
            .collect();
        let events: Vec<EventRecord> = self
            .events
            .iter()
            .filter(|event| visible(&event.agent))
            .map(|event| {
                let mut event = event.clone();
                if !admin && event.kind == EventKind::WebAction.as_str() {
                    event.detail = redact_token(&event.detail, scope, scope_of);
                }
                event
            })
            .collect();
        json!({
            "agents": seen,
            "alerts": alerts,
            "events": events,
        })
    }
}

/// An agent's last CPU (%) and memory (bytes) samples, oldest first.
type Samples = Vec<(Option<f64>, Option<u64>)>;

/// Where snapshots come from and go: shared by every page.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    inbox: Inbox,
    published: Published,
    journal: PathBuf,
    cpu: CpuMemo,
    latest: watch::Sender<Arc<Full>>,
    /// One build at a time.
    building: Mutex<()>,
    /// The journal as it was at the last read of its events.
    journal_seen: Mutex<Option<JournalStamp>>,
    ticking: AtomicBool,
}

impl Hub {
    /// A hub on the loop's `inbox` and what it publishes; nothing runs yet.
    pub fn new(inbox: Inbox, published: Published) -> Self {
        let journal = roster_store::Home::new(published.home.clone()).journal();
        Self {
            inner: Arc::new(Inner {
                inbox,
                published,
                journal,
                cpu: CpuMemo::default(),
                latest: watch::Sender::new(Arc::new(Full::default())),
                building: Mutex::new(()),
                journal_seen: Mutex::new(None),
                ticking: AtomicBool::new(false),
            }),
        }
    }

    /// A page's subscription: the ticker runs while one is held.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Full>> {
        let receiver = self.inner.latest.subscribe();
        self.start_ticking();
        receiver
    }

    fn start_ticking(&self) {
        if self
            .inner
            .ticking
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let hub = self.clone();
            tokio::spawn(async move { hub.tick().await });
        }
    }

    async fn tick(self) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if self.inner.latest.receiver_count() == 0 {
                self.inner.ticking.store(false, Ordering::Release);
                // A page that came between the count and the store found
                // the ticker running: take the turn back for it.
                let came = self.inner.latest.receiver_count() > 0
                    && self
                        .inner
                        .ticking
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                if !came {
                    return;
                }
            }
            self.build().await;
        }
    }

    /// The latest snapshot, built now when the last is older than a tick.
    pub async fn current(&self) -> Arc<Full> {
        let fresh = |full: &Full| full.built.is_some_and(|at| at.elapsed() < TICK);
        let latest = self.inner.latest.borrow().clone();
        if fresh(&latest) {
            return latest;
        }
        self.build().await
    }

    /// Builds a snapshot and publishes it to every page.
    async fn build(&self) -> Arc<Full> {
        let _one = self.inner.building.lock().await;
        // Another caller may have built while this one waited.
        let latest = self.inner.latest.borrow().clone();
        if latest
            .built
            .is_some_and(|at| at.elapsed() < Duration::from_millis(500))
        {
            return latest;
        }
        let status = crate::server::status_reply(
            &self.inner.inbox,
            &self.inner.cpu,
            &self.inner.published,
            &[],
            crate::server::Figures::Published,
        )
        .await;
        let Ok(status) = status else {
            return latest;
        };
        let book = self
            .inner
            .published
            .alerts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .reply();
        let events = self.events(&latest).await;
        let sparks = self.sparks();
        let none = Samples::new();
        let agents = status
            .agents
            .iter()
            .map(|agent| {
                // A stopped agent's old samples are not its figures now.
                let points = match agent.pid {
                    Some(_) => sparks.get(agent.name.as_str()).unwrap_or(&none),
                    None => &none,
                };
                let firing: Vec<&str> = book
                    .firing
                    .iter()
                    .filter(|alert| alert.agent.as_deref() == Some(agent.name.as_str()))
                    .map(|alert| alert.name.as_str())
                    .collect();
                (agent.tenant.clone(), agent_json(agent, points, &firing))
            })
            .collect();
        let mut alerts = book.firing;
        alerts.extend(
            book.recent
                .into_iter()
                .rev()
                .filter(|alert| alert.state == AlertState::Resolved)
                .take(20),
        );
        let full = Arc::new(Full {
            built: Some(Instant::now()),
            agents,
            alerts,
            events,
            by_scope: Default::default(),
        });
        self.inner.latest.send_replace(full.clone());
        full
    }
}

impl Hub {
    /// The newest journal events; `latest`'s again when the journal's files
    /// did not change since (most ticks: opening it each second would cost
    /// more than the rest of the snapshot).
    async fn events(&self, latest: &Full) -> Vec<EventRecord> {
        let journal = self.inner.journal.clone();
        let mut seen = self.inner.journal_seen.lock().await;
        let before = seen.clone();
        let read = tokio::task::spawn_blocking(move || {
            let stamp = journal_stamp(&journal);
            if before.as_ref() == Some(&stamp) {
                return (stamp, None);
            }
            let filter = roster_store::journal::EventFilter {
                limit: Some(EVENTS),
                ..Default::default()
            };
            (
                stamp,
                Some(roster_store::journal::read_events(&journal, &filter)),
            )
        })
        .await;
        match read {
            Ok((stamp, Some(Ok(events)))) => {
                *seen = Some(stamp);
                events
            }
            Ok((_, Some(Err(error)))) => {
                tracing::debug!("web: reading the journal: {error}");
                latest.events.clone()
            }
            Ok((_, None)) | Err(_) => latest.events.clone(),
        }
    }

    /// The last [`SPARK_POINTS`] samples of every sampled agent.
    fn sparks(&self) -> BTreeMap<String, Samples> {
        let history = self
            .inner
            .published
            .history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        history
            .iter()
            .map(|(agent, points)| {
                let skip = points.len().saturating_sub(SPARK_POINTS);
                let samples = points
                    .iter()
                    .skip(skip)
                    .map(|(_, sample)| {
                        (
                            sample
                                .cpu_percent
                                .map(|percent| (percent * 10.0).round() / 10.0),
                            sample.memory_bytes.map(|bytes| bytes as u64),
                        )
                    })
                    .collect();
                (agent.to_string(), samples)
            })
            .collect()
    }
}

/// The journal's files' sizes and change times: what changes when an
/// event is written (to the write-ahead log, or the database itself when
/// it is checkpointed).
type JournalStamp = Vec<Option<(u64, std::time::SystemTime)>>;

fn journal_stamp(journal: &std::path::Path) -> JournalStamp {
    let wal = {
        let mut name = journal.as_os_str().to_owned();
        name.push("-wal");
        PathBuf::from(name)
    };
    [journal.to_path_buf(), wal]
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

/// A `web_action` detail (`restart by web token NAME`) as `scope` may
/// read it: the token's name only when the token is of that scope.
fn redact_token(detail: &str, scope: &Scope, scope_of: &dyn Fn(&str) -> Option<Scope>) -> String {
    match detail.split_once(" by web token ") {
        Some((_, token)) if scope_of(token).as_ref() == Some(scope) => detail.to_owned(),
        Some((verb, _)) => format!("{verb} from the web dashboard"),
        None => detail.to_owned(),
    }
}

/// One agent as the page shows it.
fn agent_json(agent: &AgentStatus, points: &Samples, firing: &[&str]) -> Value {
    json!({
        "name": agent.name,
        "tenant": agent.tenant,
        "instance_of": agent.instance_of,
        "instance": agent.instance,
        "state": agent.state,
        "health": agent.health,
        "pid": agent.pid,
        "uptime_secs": agent.uptime_secs,
        "restarts": agent.restarts,
        "cpu_percent": agent.cpu_percent,
        "memory_bytes": agent.memory_bytes,
        "release": agent.release,
        "last_error": agent.last_error,
        "alerts": firing,
        "cpu": points.iter().map(|(cpu, _)| *cpu).collect::<Vec<_>>(),
        "memory": points.iter().map(|(_, memory)| *memory).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(agent: Option<&str>) -> EventRecord {
        EventRecord {
            id: 1,
            time: "2026-01-01T00:00:00.000Z".into(),
            agent: agent.map(str::to_owned),
            kind: "started".into(),
            pid: None,
            detail: "started".into(),
        }
    }

    fn grant(scope: Scope) -> Grant {
        Grant {
            token: "t".into(),
            scope,
            read_only: false,
        }
    }

    #[test]
    fn each_grant_gets_its_agents_and_their_events_only() {
        let full = Full {
            built: Some(Instant::now()),
            agents: vec![
                (Some("acme".into()), json!({"name": "a"})),
                (Some("other".into()), json!({"name": "b"})),
                (None, json!({"name": "c"})),
            ],
            alerts: Vec::new(),
            events: vec![
                event(Some("a")),
                event(Some("b")),
                event(None),
                EventRecord {
                    kind: "web_action".into(),
                    detail: "restart by web token ops".into(),
                    ..event(Some("a"))
                },
                EventRecord {
                    kind: "web_action".into(),
                    detail: "stop by web token acme-2".into(),
                    ..event(Some("a"))
                },
            ],
            by_scope: Default::default(),
        };
        let scope_of = |token: &str| match token {
            "ops" => Some(Scope::Admin),
            "acme-2" => Some(Scope::Tenant("acme".into())),
            _ => None,
        };
        let details = |text: &str| -> Vec<String> {
            let value: Value = serde_json::from_str(text).expect("json");
            value["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|event| event["detail"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        let names = |text: &str| {
            let value: Value = serde_json::from_str(text).expect("json");
            let agents: Vec<String> = value["agents"]
                .as_array()
                .expect("agents")
                .iter()
                .map(|agent| agent["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            let events = value["events"].as_array().map(Vec::len).unwrap_or(0);
            (agents, events, value["me"]["scope"].clone())
        };
        assert_eq!(
            names(&full.for_grant(&grant(Scope::Admin), scope_of)),
            (vec!["a".into(), "b".into(), "c".into()], 5, json!("admin"))
        );
        assert!(details(&full.for_grant(&grant(Scope::Admin), scope_of))
            .contains(&"restart by web token ops".to_owned()));
        let acme = grant(Scope::Tenant("acme".into()));
        assert_eq!(
            names(&full.for_grant(&acme, scope_of)),
            (vec!["a".into()], 3, json!("tenant:acme"))
        );
        let seen = details(&full.for_grant(&acme, scope_of));
        assert!(
            seen.contains(&"restart from the web dashboard".to_owned()),
            "{seen:?}"
        );
        assert!(
            seen.contains(&"stop by web token acme-2".to_owned()),
            "{seen:?}"
        );
        assert!(
            seen.iter().all(|detail| !detail.contains("ops")),
            "{seen:?}"
        );
        // Served again from the cache, the same.
        assert_eq!(
            names(&full.for_grant(&acme, scope_of)).0,
            vec!["a".to_owned()]
        );
        let nobody = grant(Scope::Tenant("nobody".into()));
        assert_eq!(
            names(&full.for_grant(&nobody, scope_of)),
            (vec![], 0, json!("tenant:nobody"))
        );
        assert_eq!(full.tenant_of("b"), Some(Some("other".into())));
        assert_eq!(full.tenant_of("c"), Some(None));
        assert_eq!(full.tenant_of("zz"), None);
    }
}
