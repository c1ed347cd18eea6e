//! The fleet file as a model (`Fleet`: hosts, agent templates, tenants,
//! SSH settings) and a placement as a model (`Placement`: which instance
//! runs on which host, on which port). Only what a valid file and a
//! placement mean: reading is `parse`'s, deciding is `place`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where `fleet apply` installs roster on the hosts unless `[fleet]
/// binary` says otherwise.
pub const DEFAULT_BINARY: &str = "/usr/local/bin/roster";

/// A whole, validated fleet file.
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    /// `[fleet] name`.
    pub name: String,
    /// `[fleet] ports`: the range `{port}` is taken from on each host.
    pub ports: PortRange,
    /// `[fleet] binary`: where roster is installed on every host (an
    /// absolute path of plain characters; default [`DEFAULT_BINARY`]).
    pub binary: String,
    /// `[ssh]`: how hosts are reached.
    pub ssh: SshSpec,
    /// `[metrics] listen`, a template with `{address}` and `{host}`,
    /// copied into each host's roster.toml; `None`: no `[metrics]`.
    pub metrics_listen: Option<String>,
    /// `[hosts.NAME]`, by name.
    pub hosts: BTreeMap<String, Host>,
    /// `[agents.NAME]`: templates of roster.toml's agents, by name.
    pub templates: BTreeMap<String, Template>,
    /// `[tenants.NAME]`, by name.
    pub tenants: BTreeMap<String, Tenant>,
}

/// A range of ports, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port (at least `first`).
    pub last: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never: a range holds at least its first port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// `[ssh]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshSpec {
    /// The login user on every host unless the host names its own.
    pub user: String,
    /// The private key, resolved against the fleet file's directory;
    /// `None`: ssh's own choice (`~/.ssh/config`, the agent).
    pub identity: Option<PathBuf>,
    /// The known-hosts file; `None`: `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// How long connecting to one host may take.
    pub connect_timeout: Duration,
    /// Hosts worked on at once.
    pub max_parallel: u32,
    /// Commands run through `sudo` (a deploy user rather than root).
    pub sudo: bool,
    /// The SSH port unless the host names its own.
    pub port: u16,
}

impl Default for SshSpec {
    fn default() -> Self {
        Self {
            user: "root".into(),
            identity: None,
            known_hosts: None,
            connect_timeout: Duration::from_secs(5),
            max_parallel: 10,
            sudo: false,
            port: 22,
        }
    }
}

/// `[hosts.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// How SSH reaches it (an IP address or a name), and `{address}`.
    pub address: String,
    /// How many instances it takes: its `capacity`, lowered to what its
    /// `memory` holds (see `capacity.rs`).
    pub capacity: u32,
    /// Its `memory`, as written, when given.
    pub memory: Option<u64>,
    /// Its labels, which tenants' `labels` must find.
    pub labels: BTreeMap<String, String>,
    /// The login user, over `[ssh] user`.
    pub user: Option<String>,
    /// The SSH port, over `[ssh] port`.
    pub port: Option<u16>,
}

impl Host {
    /// Whether the host carries every one of `labels`.
    pub fn carries(&self, labels: &BTreeMap<String, String>) -> bool {
        labels
            .iter()
            .all(|(key, value)| self.labels.get(key) == Some(value))
    }
}

/// `[agents.NAME]`: an agent of roster.toml with placeholders, kept as
/// written (key order included) and checked when the file is read.
#[derive(Clone, PartialEq)]
pub struct Template {
    /// The template's keys and values, in file order.
    pub table: Vec<(String, TemplateValue)>,
}

/// A value of a template, as TOML has them.
#[derive(Clone, Debug, PartialEq)]
pub enum TemplateValue {
    /// A string, where placeholders are replaced.
    String(String),
    /// A whole number.
    Integer(i64),
    /// A float.
    Float(f64),
    /// `true` or `false`.
    Boolean(bool),
    /// An array.
    Array(Vec<TemplateValue>),
    /// A table (inline or not), keys in file order.
    Table(Vec<(String, TemplateValue)>),
}

/// `[tenants.NAME]`: a customer, running one instance of each of its
/// agents.
#[derive(Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The templates it runs, in file order.
    pub agents: Vec<String>,
    /// Environment over each template's `env`.
    pub env: BTreeMap<String, String>,
    /// A pin: the host all its instances run on.
    pub host: Option<String>,
    /// Labels the host must carry (each `key = value`).
    pub labels: BTreeMap<String, String>,
}

// Hand-written Debug for templates and tenants: `env` often carries API
// keys, and Debug output ends up in logs and panic messages (as for
// `AgentSpec`).
impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.table {
            match (key.as_str(), value) {
                ("env", TemplateValue::Table(entries)) => {
                    let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
                    map.entry(key, &names)
                }
                _ => map.entry(key, value),
            };
        }
        map.finish()
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("agents", &self.agents)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("host", &self.host)
            .field("labels", &self.labels)
            .finish()
    }
}

/// Where every instance of a fleet runs: the outcome of `fleet::place`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// Every instance, sorted by name.
    pub instances: Vec<Placed>,
}

impl Placement {
    /// The instances placed on `host`, sorted by name.
    pub fn on_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Placed> + 'a {
        self.instances
            .iter()
            .filter(move |instance| instance.host == host)
    }

    /// The instance named `name`.
    pub fn get(&self, name: &str) -> Option<&Placed> {
        self.instances
            .binary_search_by(|instance| instance.name.as_str().cmp(name))
            .ok()
            .map(|index| &self.instances[index])
    }
}

/// One instance, placed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Placed {
    /// `TENANT.AGENT`, its agent name in the host's roster.toml.
    pub name: String,
    /// Its tenant (the `tenant` label).
    pub tenant: String,
    /// Its template (the `agent` label).
    pub agent: String,
    /// The host it runs on.
    pub host: String,
    /// Its `{port}`, unique on its host.
    pub port: u16,
    /// The SHA-256 (hex) of its rendered `[agents."NAME"]` section: what
    /// `plan` compares with what the host runs.
    pub digest: String,
}
