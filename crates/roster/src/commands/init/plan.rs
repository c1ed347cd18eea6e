//! The decisions of `roster init`, without I/O: the answers' parsers, the
//! pattern recommended for them and why, the agent instances a config
//! holds on ports that are free, and memory thresholds that fit an agent.

use std::fmt::Write as _;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Memory one instance is planned with: more instances than the server's
/// memory holds at this size is a fleet's work.
pub const PLANNED_PER_INSTANCE: u64 = 256 * MIB;
/// The alert threshold of one agent when its share of the server is
/// larger: what fits an agent, not the machine (the starter agent idles
/// at about 20 MiB; a leak is worth hearing of long before gigabytes).
pub const AGENT_ALERT: u64 = 512 * MIB;
/// The restart threshold of one agent when its share is larger.
pub const AGENT_RESTART: u64 = GIB;
/// The lowest alert threshold written (a Python process idles at ~20 MiB).
pub const ALERT_FLOOR: u64 = 64 * MIB;
/// The lowest restart threshold written.
pub const RESTART_FLOOR: u64 = 96 * MIB;
/// An uptime target this high needs more than one server.
pub const FLEET_UPTIME: f64 = 99.95;
/// The first agent's port unless `--port` says otherwise.
pub const DEFAULT_PORT: u16 = 8100;
/// At most this many kinds of agent.
pub const MAX_AGENTS: u32 = 50;
/// At most this many customers.
pub const MAX_CUSTOMERS: u32 = 1000;
/// At most this many servers.
pub const MAX_SERVERS: u32 = 10_000;

/// What the operator told `roster init`.
#[derive(Clone, Debug, PartialEq)]
pub struct Answers {
    /// Kinds of agent (at least 1).
    pub agents: u32,
    /// Customers, each with its own instance of every kind (at least 1).
    pub customers: u32,
    /// Servers available (at least 1).
    pub servers: u32,
    /// Requests (units of work) a day, all agents together.
    pub requests_per_day: u64,
    /// Uptime target in percent, in (0, 100].
    pub uptime: f64,
    /// The server's memory in bytes.
    pub ram: u64,
    /// The kinds' names (as many as `agents`); empty: `worker`, or
    /// `worker1`..`workerN`.
    pub names: Vec<String>,
}

impl Answers {
    /// The defaults for everything but the memory, which is the host's.
    pub fn defaults(ram: u64) -> Self {
        Answers {
            agents: 1,
            customers: 1,
            servers: 1,
            requests_per_day: 1000,
            uptime: 99.9,
            ram,
            names: Vec::new(),
        }
    }

    /// Agent processes the config runs: one per kind per customer.
    pub fn instances(&self) -> u64 {
        u64::from(self.agents) * u64::from(self.customers)
    }
}

/// The ways of laying agents out on one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// One kind of agent, one customer: one process.
    SingleAgent,
    /// Several kinds, one customer: one process of each.
    MultiAgent,
    /// Several customers: one process per customer per kind, each its own user.
    MultiTenant,
}

impl Pattern {
    /// The name printed and written into the config.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::SingleAgent => "single-agent",
            Pattern::MultiAgent => "multi-agent",
            Pattern::MultiTenant => "multi-tenant",
        }
    }
}

/// The pattern for a set of answers, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    /// The pattern the config is written for.
    pub pattern: Pattern,
    /// Why this pattern, one sentence each.
    pub reasons: Vec<String>,
    /// Why fleet mode would fit better; empty when one server does.
    pub fleet: Vec<String>,
}

/// Recommends a pattern for `answers`, with concrete reasons.
pub fn recommend(answers: &Answers) -> Recommendation {
    let instances = answers.instances();
    let mut reasons = Vec::new();
    let pattern = if answers.customers > 1 {
        reasons.push(format!(
            "{} customers each need their own instance: {} isolated by user ({} × {} customers)",
            answers.customers,
            plural(instances, "agent"),
            plural(u64::from(answers.agents), "kind"),
            answers.customers,
        ));
        reasons.push(
            "each instance runs as its own system user in its own 0700 folder, so one customer's agent cannot read another's files".into(),
        );
        Pattern::MultiTenant
    } else if answers.agents > 1 {
        reasons.push(format!(
            "{} kinds of agent for one customer: one instance of each, side by side, each with its own port, health check and log",
            answers.agents
        ));
        reasons.push(
            "one roster supervises them together: `roster status` shows all of them, and one can restart without the others".into(),
        );
        Pattern::MultiAgent
    } else {
        reasons.push(
            "one kind of agent for one customer: one process, one health check, one log".into(),
        );
        reasons.push(
            "the simplest to run and debug; grow into multi-agent or multi-tenant by running `roster init --force` with new answers".into(),
        );
        Pattern::SingleAgent
    };
    let thresholds = memory_thresholds(answers);
    let (alert, restart) = (
        format_size(thresholds.alert),
        format_size(thresholds.restart),
    );
    reasons.push(match (instances, thresholds.from_share) {
        (1, false) => format!(
            "memory: it alerts above {alert} and restarts above {restart}, a default that fits one agent, not the server's {}; adjust them once `roster status` shows what it uses",
            format_size(answers.ram),
        ),
        (_, false) => format!(
            "memory: each of the {} alerts above {alert} and restarts above {restart}, a default that fits one agent (their share of the server's {} is more); adjust them once `roster status` shows what they use",
            plural(instances, "instance"),
            format_size(answers.ram),
        ),
        (_, true) => format!(
            "{} of memory for {}: about {} each, so each alerts above {alert} and restarts above {restart} (60% and 80% of its share)",
            format_size(answers.ram),
            plural(instances, "instance"),
            format_size(answers.ram / instances.max(1)),
        ),
    });
    let per_second = answers.requests_per_day as f64 / 86_400.0;
    reasons.push(format!(
        "{} requests a day is about {} a second on average, {} per instance",
        answers.requests_per_day,
        format_rate(per_second),
        format_rate(per_second / instances.max(1) as f64),
    ));
    let mut fleet = Vec::new();
    if answers.uptime >= FLEET_UPTIME {
        fleet.push(format!(
            "{}% uptime allows {} of downtime a month, less than a reboot or a disk failure takes: it needs more than one server",
            format_percent(answers.uptime),
            format_downtime(answers.uptime),
        ));
    } else {
        reasons.push(format!(
            "{}% uptime allows {} of downtime a month: one server, with restarts and health checks, can meet it",
            format_percent(answers.uptime),
            format_downtime(answers.uptime),
        ));
    }
    if answers.servers > 1 {
        fleet.push(format!(
            "you have {} servers: spreading agents over them and moving them when one fails is fleet work (until then, run one roster per server)",
            answers.servers
        ));
    }
    let fits = answers.ram / PLANNED_PER_INSTANCE;
    if instances > fits {
        fleet.push(format!(
            "{} at about {} each need {}, more than this server's {} (room for {})",
            plural(instances, "instance"),
            format_size(PLANNED_PER_INSTANCE),
            format_size(instances.saturating_mul(PLANNED_PER_INSTANCE)),
            format_size(answers.ram),
            fits,
        ));
    }
    Recommendation {
        pattern,
        reasons,
        fleet,
    }
}

/// The memory thresholds of each instance, and where they come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Alert above this many bytes.
    pub alert: u64,
    /// Restart (drained) above this many bytes.
    pub restart: u64,
    /// True when they are 60% and 80% of the instance's share of the
    /// server (a crowded server); false for the per-agent defaults.
    pub from_share: bool,
}

/// The memory thresholds of each instance: [`AGENT_ALERT`] and
/// [`AGENT_RESTART`], what fits one agent; or, when its share of the
/// server is smaller, 60% and 80% of that share (rounded down to MiB,
/// never below the floors). Never the whole machine: on a 24 GiB host an
/// 18 MiB agent alerting at 14 GiB would never alert at all.
pub fn memory_thresholds(answers: &Answers) -> Thresholds {
    let share = answers.ram / answers.instances().max(1);
    let round = |bytes: u64| bytes / MIB * MIB;
    let share_alert = round(share / 10 * 6).max(ALERT_FLOOR);
    let share_restart = round(share / 10 * 8)
        .max(RESTART_FLOOR)
        .max(share_alert + 32 * MIB);
    if share_alert >= AGENT_ALERT && share_restart >= AGENT_RESTART {
        return Thresholds {
            alert: AGENT_ALERT,
            restart: AGENT_RESTART,
            from_share: false,
        };
    }
    Thresholds {
        alert: share_alert.min(AGENT_ALERT),
        restart: share_restart.min(AGENT_RESTART),
        from_share: true,
    }
}

/// One agent process in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Its agent name (also its folder under `work/`).
    pub name: String,
    /// The kind: its code is `agents/KIND/agent.py`.
    pub kind: String,
    /// The customer it serves (multi-tenant only), e.g. `customer2`.
    pub customer: Option<String>,
    /// Its /health port.
    pub port: u16,
}

/// The kinds of agent: `worker`, or `worker1` ... `workerN`.
pub fn kinds(answers: &Answers) -> Vec<String> {
    if !answers.names.is_empty() {
        return answers.names.clone();
    }
    if answers.agents <= 1 {
        return vec!["worker".into()];
    }
    (1..=answers.agents)
        .map(|number| format!("worker{number}"))
        .collect()
}

/// The default names of `count` kinds: `worker`, or `worker1`..`workerN`.
pub fn default_names(count: u32) -> Vec<String> {
    kinds(&Answers {
        agents: count,
        ..Answers::defaults(0)
    })
}

/// Kind names, comma-separated (`support, billing`): each a valid agent
/// name even with `-customerN` after it, none twice.
pub fn parse_names(raw: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = raw
        .split(',')
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        return Err("expected names separated by commas, e.g. support,billing".into());
    }
    if names.len() > MAX_AGENTS as usize {
        return Err(format!("at most {MAX_AGENTS} kinds"));
    }
    for (index, name) in names.iter().enumerate() {
        let longest = format!("{name}-customer{MAX_CUSTOMERS}");
        if name == "all"
            || roster_core::AgentName::new(name).is_err()
            || roster_core::AgentName::new(&longest).is_err()
        {
            return Err(format!(
                "{name:?} cannot name a kind of agent: use up to 40 letters, digits, '-', '_' or '.', starting with a letter or digit"
            ));
        }
        if names[..index].contains(name) {
            return Err(format!("{name:?} is named twice"));
        }
    }
    Ok(names)
}

/// Every instance, kind by kind, customer by customer, ports counting up
/// from `first_port` and skipping those `is_free` says are taken (another
/// project's agent listens there); `None` when they do not fit below port
/// 65536.
pub fn instances(
    answers: &Answers,
    first_port: u16,
    is_free: &dyn Fn(u16) -> bool,
) -> Option<Vec<Instance>> {
    let mut all = Vec::new();
    let mut port = u32::from(first_port);
    for kind in kinds(answers) {
        for customer in 1..=answers.customers.max(1) {
            let (name, customer) = if answers.customers > 1 {
                (
                    format!("{kind}-customer{customer}"),
                    Some(format!("customer{customer}")),
                )
            } else {
                (kind.clone(), None)
            };
            while !is_free(u16::try_from(port).ok()?) {
                port += 1;
            }
            all.push(Instance {
                name,
                kind: kind.clone(),
                customer,
                port: u16::try_from(port).ok()?,
            });
            port += 1;
        }
    }
    Some(all)
}

/// The ports from `first_port` to the last instance's that were skipped
/// because they were taken.
pub fn skipped_ports(first_port: u16, instances: &[Instance]) -> Vec<u16> {
    let Some(last) = instances.iter().map(|instance| instance.port).max() else {
        return Vec::new();
    };
    (first_port..=last)
        .filter(|port| !instances.iter().any(|instance| instance.port == *port))
        .collect()
}

/// A count between `min` and `max`; `_` and `,` between digits are allowed.
pub fn parse_count(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    let digits: String = raw
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{:?} is not a whole number", raw.trim()));
    }
    match digits.parse::<u64>() {
        Ok(number) if number < min => Err(format!("it must be at least {min}")),
        Ok(number) if number > max => Err(format!("it must be at most {max}")),
        Ok(number) => Ok(number),
        Err(_) => Err(format!("it must be at most {max}")),
    }
}

/// An uptime target in percent, above 0 and at most 100: `99.9` or `99.9%`.
pub fn parse_uptime(raw: &str) -> Result<f64, String> {
    let text = raw.trim();
    let number = text.strip_suffix('%').unwrap_or(text).trim();
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value <= 100.0 => Ok(value),
        Ok(_) => Err(format!(
            "{text:?} is not a percentage above 0 and at most 100 (e.g. 99.9)"
        )),
        Err(_) => Err(format!("{text:?} is not a percentage such as 99.9")),
    }
}

/// The server's memory: `2GiB`, `512MiB`, `4G` ...; at least 64MiB.
pub fn parse_ram(raw: &str) -> Result<u64, String> {
    let bytes = roster_core::units::parse_size(raw).map_err(|error| {
        format!(
            "{:?} is not a size such as 2GiB or 512MiB: {error}",
            raw.trim()
        )
    })?;
    if bytes < 64 * MIB {
        return Err(format!(
            "{:?} is less than 64MiB: too little to run agents",
            raw.trim()
        ));
    }
    Ok(bytes)
}

/// MemTotal from the text of `/proc/meminfo`.
pub fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let number: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => number.checked_mul(1024),
        Some(_) => None,
    }
}

/// `2GiB`, `1.5GiB`, `512MiB`: what `parse_size` reads back.
pub fn format_size(bytes: u64) -> String {
    if bytes >= GIB {
        let tenths = bytes * 10 / GIB;
        if tenths.is_multiple_of(10) {
            format!("{}GiB", tenths / 10)
        } else {
            format!("{}.{}GiB", tenths / 10, tenths % 10)
        }
    } else {
        format!("{}MiB", bytes / MIB)
    }
}

fn format_rate(per_second: f64) -> String {
    if per_second >= 10.0 {
        format!("{per_second:.0}")
    } else if per_second >= 0.1 {
        format!("{per_second:.1}")
    } else {
        let mut text = format!("{per_second:.3}");
        if text == "0.000" {
            text = "under 0.001".into();
        }
        text
    }
}

/// `99.9`, `99.95`, `100`: no trailing zeros.
pub fn format_percent(value: f64) -> String {
    let mut text = format!("{value:.4}");
    while text.ends_with('0') {
        text.pop();
    }
    if text.ends_with('.') {
        text.pop();
    }
    text
}

/// The downtime a month (30 days) an uptime target allows.
fn format_downtime(uptime: f64) -> String {
    let seconds = ((100.0 - uptime) / 100.0 * 30.0 * 86_400.0)
        .max(0.0)
        .round() as u64;
    let mut text = String::new();
    if seconds == 0 {
        return "no time".into();
    }
    let (days, hours, minutes) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    if days > 0 {
        let _ = write!(text, "{days}d");
        if hours > 0 {
            let _ = write!(text, "{hours}h");
        }
    } else if hours > 0 {
        let _ = write!(text, "{hours}h");
        if minutes > 0 {
            let _ = write!(text, "{minutes}m");
        }
    } else if minutes > 0 {
        let _ = write!(text, "{minutes}m");
    } else {
        let _ = write!(text, "{seconds}s");
    }
    text
}

fn plural(count: u64, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(agents: u32, customers: u32) -> Answers {
        Answers {
            agents,
            customers,
            ..Answers::defaults(8 * GIB)
        }
    }

    #[test]
    fn kinds_can_be_named() {
        assert_eq!(
            parse_names("support, billing"),
            Ok(vec!["support".into(), "billing".into()])
        );
        assert_eq!(parse_names(" triage ,"), Ok(vec!["triage".into()]));
        for bad in [
            "",
            ",",
            "all",
            "../x",
            "-x",
            "a b",
            "support,support",
            &"x".repeat(60),
        ] {
            assert!(parse_names(bad).is_err(), "{bad:?}");
        }
        assert_eq!(default_names(1), ["worker"]);
        assert_eq!(default_names(2), ["worker1", "worker2"]);
        let named = Answers {
            agents: 2,
            customers: 2,
            names: vec!["support".into(), "billing".into()],
            ..Answers::defaults(8 * GIB)
        };
        let names: Vec<String> = instances(&named, 8100, &|_| true)
            .expect("fits")
            .into_iter()
            .map(|instance| instance.name)
            .collect();
        assert_eq!(
            names,
            [
                "support-customer1",
                "support-customer2",
                "billing-customer1",
                "billing-customer2"
            ]
        );
    }

    #[test]
    fn one_kind_for_one_customer_is_single_agent() {
        let found = recommend(&answers(1, 1));
        assert_eq!(found.pattern, Pattern::SingleAgent);
        assert!(found.fleet.is_empty(), "{:?}", found.fleet);
        assert!(found.reasons[0].contains("one kind of agent"), "{found:?}");
    }

    #[test]
    fn several_kinds_for_one_customer_is_multi_agent() {
        let found = recommend(&answers(3, 1));
        assert_eq!(found.pattern, Pattern::MultiAgent);
        assert!(
            found.reasons[0].starts_with("3 kinds of agent"),
            "{found:?}"
        );
        assert!(found.fleet.is_empty());
    }

    #[test]
    fn several_customers_is_multi_tenant_even_with_one_kind() {
        let found = recommend(&answers(2, 3));
        assert_eq!(found.pattern, Pattern::MultiTenant);
        assert!(
            found.reasons[0]
                .starts_with("3 customers each need their own instance: 6 agents isolated by user"),
            "{found:?}"
        );
        assert_eq!(recommend(&answers(1, 2)).pattern, Pattern::MultiTenant);
    }

    #[test]
    fn fleet_fits_several_servers_too_little_memory_or_high_uptime() {
        let servers = recommend(&Answers {
            servers: 3,
            ..answers(1, 1)
        });
        assert_eq!(servers.pattern, Pattern::SingleAgent);
        assert_eq!(servers.fleet.len(), 1);
        assert!(servers.fleet[0].contains("3 servers"), "{servers:?}");

        // 1GiB holds 4 instances at 256MiB; 2 kinds for 3 customers are 6.
        let crowded = recommend(&Answers {
            ram: GIB,
            ..answers(2, 3)
        });
        assert_eq!(crowded.pattern, Pattern::MultiTenant);
        assert_eq!(crowded.fleet.len(), 1, "{crowded:?}");
        assert!(crowded.fleet[0].contains("6 instances"), "{crowded:?}");
        assert!(crowded.fleet[0].contains("room for 4"), "{crowded:?}");
        let exactly = recommend(&Answers {
            ram: GIB,
            ..answers(2, 2)
        });
        assert!(exactly.fleet.is_empty(), "4 fit: {exactly:?}");

        let uptime = recommend(&Answers {
            uptime: 99.95,
            ..answers(1, 1)
        });
        assert_eq!(uptime.fleet.len(), 1);
        assert!(uptime.fleet[0].contains("99.95%"), "{uptime:?}");
        assert!(uptime.fleet[0].contains("21m"), "{uptime:?}");
        let lower = recommend(&Answers {
            uptime: 99.9,
            ..answers(1, 1)
        });
        assert!(lower.fleet.is_empty());
        assert!(lower.reasons.iter().any(|reason| reason.contains("43m")));
    }

    #[test]
    fn memory_thresholds_fit_an_agent_or_its_share_and_have_floors() {
        let of = |ram: u64, agents: u32, customers: u32| {
            let thresholds = memory_thresholds(&Answers {
                ram,
                ..answers(agents, customers)
            });
            (thresholds.alert, thresholds.restart, thresholds.from_share)
        };
        // Issue #14, item 17: a big host does not make an agent's
        // thresholds gigabytes (it was 14.4GiB and 19.2GiB on 24GiB).
        assert_eq!(of(24 * GIB, 1, 1), (512 * MIB, GIB, false));
        assert_eq!(of(8 * GIB, 1, 1), (512 * MIB, GIB, false));
        assert_eq!(of(8 * GIB, 3, 2), (512 * MIB, GIB, false));
        // A crowded server: 60% and 80% of the share.
        assert_eq!(of(GIB, 2, 3), (102 * MIB, 136 * MIB, true));
        // The share allows the alert but not the restart default.
        assert_eq!(of(GIB, 1, 1), (512 * MIB, 819 * MIB, true));
        assert_eq!(of(64 * MIB, 50, 1000), (ALERT_FLOOR, RESTART_FLOOR, true));
        for (ram, agents, customers) in [(GIB, 1, 1), (3 * GIB, 2, 2), (64 * MIB, 1, 1)] {
            let (alert, restart, _) = of(ram, agents, customers);
            assert!(restart >= alert + 32 * MIB, "{ram} {agents} {customers}");
        }
        let reasons = recommend(&Answers {
            ram: 24 * GIB,
            ..answers(1, 1)
        })
        .reasons;
        assert!(
            reasons.iter().any(|reason| reason.contains(
                "it alerts above 512MiB and restarts above 1GiB, a default that fits one agent, not the server's 24GiB"
            )),
            "{reasons:?}"
        );
    }

    #[test]
    fn ports_in_use_are_skipped_and_named() {
        // Issue #14, item 17: another project's agent holds 8100.
        let taken = [8100u16, 8102];
        let is_free = |port: u16| !taken.contains(&port);
        let placed = instances(&answers(3, 1), 8100, &is_free).expect("fits");
        let ports: Vec<u16> = placed.iter().map(|instance| instance.port).collect();
        assert_eq!(ports, [8101, 8103, 8104]);
        assert_eq!(skipped_ports(8100, &placed), [8100, 8102]);
        let free = instances(&answers(2, 1), 8100, &|_| true).expect("fits");
        assert!(skipped_ports(8100, &free).is_empty());
        assert!(
            instances(&answers(1, 1), 65535, &|port| port != 65535).is_none(),
            "nothing free below 65536"
        );
    }

    #[test]
    fn instances_are_named_per_kind_and_customer_with_their_own_ports() {
        let single = instances(&answers(1, 1), 8100, &|_| true).expect("fits");
        assert_eq!(single.len(), 1);
        assert_eq!((single[0].name.as_str(), single[0].port), ("worker", 8100));
        let tenants = instances(&answers(2, 3), 8100, &|_| true).expect("fits");
        let names: Vec<&str> = tenants.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "worker1-customer1",
                "worker1-customer2",
                "worker1-customer3",
                "worker2-customer1",
                "worker2-customer2",
                "worker2-customer3"
            ]
        );
        assert_eq!(tenants[5].port, 8105);
        assert_eq!(tenants[4].customer.as_deref(), Some("customer2"));
        assert!(instances(&answers(3, 1), 65534, &|_| true).is_none());
        // Names stay valid agent names, and `tenant-NAME` valid user names.
        let biggest = instances(&answers(MAX_AGENTS, MAX_CUSTOMERS), 1, &|_| true).expect("fits");
        for instance in [&biggest[0], &biggest[biggest.len() - 1]] {
            assert!(roster_core::AgentName::new(&instance.name).is_ok());
            assert!(roster_core::hardening::valid_account(&format!(
                "tenant-{}",
                instance.name
            )));
        }
    }

    #[test]
    fn answers_parse_or_say_why_not() {
        assert_eq!(parse_count("3", 1, 50), Ok(3));
        assert_eq!(parse_count(" 10_000 ", 0, u64::MAX), Ok(10_000));
        assert_eq!(parse_count("1,000", 0, u64::MAX), Ok(1000));
        assert!(parse_count("0", 1, 50).is_err());
        assert!(parse_count("51", 1, 50).is_err());
        assert!(parse_count("three", 1, 50).is_err());
        assert!(parse_count("-1", 1, 50).is_err());
        assert!(parse_count("", 1, 50).is_err());
        assert_eq!(parse_uptime("99.9"), Ok(99.9));
        assert_eq!(parse_uptime("99.95%"), Ok(99.95));
        assert_eq!(parse_uptime("100"), Ok(100.0));
        assert!(parse_uptime("150").is_err());
        assert!(parse_uptime("0").is_err());
        assert!(parse_uptime("NaN").is_err());
        assert!(parse_uptime("high").is_err());
        assert_eq!(parse_ram("2GiB"), Ok(2 * GIB));
        assert_eq!(parse_ram("512MiB"), Ok(512 * MIB));
        assert!(parse_ram("lots").is_err());
        assert!(parse_ram("1MiB").is_err());
    }

    #[test]
    fn sizes_and_meminfo() {
        assert_eq!(format_size(2 * GIB), "2GiB");
        assert_eq!(format_size(GIB + GIB / 2), "1.5GiB");
        assert_eq!(format_size(512 * MIB), "512MiB");
        for bytes in [2 * GIB, 512 * MIB, GIB + GIB / 2] {
            assert_eq!(parse_ram(&format_size(bytes)), Ok(bytes));
        }
        assert_eq!(
            meminfo_total("MemTotal:        8029876 kB\nMemFree: 1 kB\n"),
            Some(8_029_876 * 1024)
        );
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(format_percent(99.9), "99.9");
        assert_eq!(format_percent(100.0), "100");
        assert_eq!(format_downtime(99.9), "43m");
        assert_eq!(format_downtime(99.0), "7h12m");
        assert_eq!(format_downtime(100.0), "no time");
    }
}
