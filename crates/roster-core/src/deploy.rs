//! `[agents.NAME.deploy]` and `[agents.NAME.listen]` as a model, and the
//! judgements a deploy makes on what the supervisor reports: whether the new
//! process is ready to take over, and whether it stayed well through the
//! verification window. `deployment.rs` sequences a deploy with them; the
//! runtime (`roster-daemon`'s `deploy` module) performs it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::api::{AgentState, Health};

/// How a new release replaces the live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Start the new release beside the old one, wait until it is ready,
    /// then drain and stop the old one.
    BlueGreen,
    /// Stop the old one, then start the new one.
    Restart,
}

impl Strategy {
    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::BlueGreen => "blue-green",
            Strategy::Restart => "restart",
        }
    }
}

/// `[agents.NAME.deploy]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploySpec {
    /// The cutover.
    pub strategy: Strategy,
    /// Run in the new release after staging (e.g. create a virtualenv).
    pub build: Option<Vec<String>>,
    /// How long `build` may take.
    pub build_timeout: Duration,
    /// Run in the new release before the cutover; exit 0 passes.
    pub smoke_test: Option<Vec<String>>,
    /// How long the smoke test may take.
    pub smoke_timeout: Duration,
    /// How long the new process must become ready in (blue-green).
    pub ready_timeout: Duration,
    /// After the cutover, the new process must stay up and healthy this
    /// long, or the previous release goes live again.
    pub verify_for: Duration,
    /// Releases kept (never the live or the previous one).
    pub keep: u32,
    /// At most this many bytes of file contents in one release
    /// (`max_size`); a tarball also unpacks to at most
    /// [`MAX_EXPANSION`] times its own size (see [`unpacked_limit`]).
    pub max_size: u64,
}

/// `max_size` unless the config says otherwise: a release is code; data
/// belongs in the agent's `shared/` directory.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// The smallest `max_size` the config accepts.
pub const MIN_MAX_SIZE: u64 = 1 << 20;

/// A tarball may unpack to at most this many times its own size ...
pub const MAX_EXPANSION: u64 = 100;

/// ... once it unpacks to more than this: small releases of very
/// compressible text are no threat.
pub const EXPANSION_FLOOR: u64 = 64 << 20;

/// The most bytes of file contents a release staged from a source of
/// `source_bytes` may hold: `max_size`, and for a tarball also
/// max([`MAX_EXPANSION`] × its size, [`EXPANSION_FLOOR`]). The second
/// says which bound is the tighter one (true: the expansion ratio).
pub fn unpacked_limit(max_size: u64, tarball_bytes: Option<u64>) -> (u64, bool) {
    let Some(compressed) = tarball_bytes else {
        return (max_size, false);
    };
    let by_ratio = compressed
        .saturating_mul(MAX_EXPANSION)
        .max(EXPANSION_FLOOR);
    if by_ratio < max_size {
        (by_ratio, true)
    } else {
        (max_size, false)
    }
}

impl Default for DeploySpec {
    fn default() -> Self {
        Self {
            strategy: Strategy::BlueGreen,
            build: None,
            build_timeout: Duration::from_secs(600),
            smoke_test: None,
            smoke_timeout: Duration::from_secs(60),
            ready_timeout: Duration::from_secs(60),
            verify_for: Duration::from_secs(30),
            keep: 5,
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

/// `[agents.NAME.listen]`: sockets roster binds once and hands to every
/// process of the agent (systemd's `LISTEN_FDS` protocol), by name, in
/// name order (fd 3 is the first name).
pub type ListenSpec = BTreeMap<String, SocketAddr>;

/// The most sockets one agent may be handed.
pub const MAX_LISTEN: usize = 16;

/// Whether a listen name is usable in `LISTEN_FDNAMES` (colon-separated,
/// so no colon; systemd allows at most 255 characters of ASCII graphics).
pub fn valid_listen_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b':')
}

/// What the supervisor says of the process a cutover waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The process the cutover started (`None` before it is spawned).
    pub pid: Option<u32>,
    /// The agent's primary process now.
    pub primary_pid: Option<u32>,
    /// The agent's state.
    pub state: AgentState,
    /// Its health verdict.
    pub health: Health,
    /// Whether the agent has a health check.
    pub has_check: bool,
}

/// The new process's readiness during a blue-green cutover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Keep waiting.
    Waiting,
    /// It may take over.
    Ready,
    /// It will not: give up the cutover.
    Failed(String),
}

/// Ready means: the new process is the agent's primary, counts as
/// `running` (it stayed up for `ready_after`), and, when the agent has a
/// health check, the check passed since the process started.
pub fn readiness(observed: Observed) -> Readiness {
    let Some(pid) = observed.pid else {
        return Readiness::Waiting;
    };
    if observed.primary_pid != Some(pid) {
        return Readiness::Failed(format!(
            "the new process (pid {pid}) died before it was ready"
        ));
    }
    match observed.state {
        AgentState::Starting => Readiness::Waiting,
        AgentState::Running => match (observed.has_check, observed.health) {
            (false, _) | (true, Health::Healthy) => Readiness::Ready,
            (true, Health::Unhealthy) => {
                Readiness::Failed("the new process failed its health check".into())
            }
            (true, Health::Unknown) => Readiness::Waiting,
        },
        other => Readiness::Failed(format!(
            "the new process (pid {pid}) is {} instead of running",
            other.as_str()
        )),
    }
}

/// During `verify_for`: `None` while all is well, else why to roll back.
pub fn verification_failure(observed: Observed) -> Option<String> {
    let pid = observed.pid?;
    if observed.primary_pid != Some(pid) {
        return Some(format!(
            "the new process (pid {pid}) died within the verification window"
        ));
    }
    if observed.has_check && observed.health == Health::Unhealthy {
        return Some("the new process became unhealthy within the verification window".into());
    }
    match observed.state {
        AgentState::Running | AgentState::Starting => None,
        other => Some(format!(
            "the new process (pid {pid}) is {} within the verification window",
            other.as_str()
        )),
    }
}

/// How a blue-green cutover hands the `[listen]` sockets from the old
/// process to the new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketHandover {
    /// Each process gets its own socket on the address (one `SO_REUSEPORT`
    /// group). At cutover the old socket stops listening: the kernel moves
    /// the connections queued on it to the new one, and the old process is
    /// drained once it holds no connection any more, so an app that dies
    /// at once on its drain signal drops nothing.
    Migrate,
    /// Old and new process accept on one socket; the old process is
    /// drained at once, dropping what it was answering if it dies at once.
    /// Why the kernel cannot do better.
    Shared(String),
}

/// The setting the kernel moves a closed listener's queued connections by
/// (Linux 5.14 and later, per network namespace).
pub const MIGRATE_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// How cutovers hand sockets over, given the text of [`MIGRATE_SYSCTL`]
/// (`None`: the file does not exist, the kernel is older than 5.14).
/// roster does not change the setting itself: it is the machine's.
pub fn socket_handover(tcp_migrate_req: Option<&str>) -> SocketHandover {
    const EFFECT: &str =
        "old and new process share the [listen] socket, and an old process that dies \
                          at once on its drain signal drops the requests it was answering";
    match tcp_migrate_req.map(str::trim) {
        Some("1") => SocketHandover::Migrate,
        Some(value) => SocketHandover::Shared(format!(
            "net.ipv4.tcp_migrate_req is {value}: {EFFECT}\n  \
             hint: `sysctl -w net.ipv4.tcp_migrate_req=1` (and a line in /etc/sysctl.d to keep it) \
             lets roster move the old process's queued connections to the new one and drain it once it holds none"
        )),
        None => SocketHandover::Shared(format!(
            "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 and later have it): {EFFECT}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(pid: Option<u32>, primary: Option<u32>, state: AgentState, health: Health) -> Observed {
        Observed {
            pid,
            primary_pid: primary,
            state,
            health,
            has_check: true,
        }
    }

    #[test]
    fn ready_only_when_running_and_healthy() {
        use AgentState::*;
        assert_eq!(
            readiness(seen(None, Some(1), Running, Health::Healthy)),
            Readiness::Waiting
        );
        assert_eq!(
            readiness(seen(Some(2), Some(2), Starting, Health::Healthy)),
            Readiness::Waiting
        );
        assert_eq!(
            readiness(seen(Some(2), Some(2), Running, Health::Unknown)),
            Readiness::Waiting
        );
        assert_eq!(
            readiness(seen(Some(2), Some(2), Running, Health::Healthy)),
            Readiness::Ready
        );
        assert!(matches!(
            readiness(seen(Some(2), Some(2), Running, Health::Unhealthy)),
            Readiness::Failed(_)
        ));
        assert!(matches!(
            readiness(seen(Some(2), Some(1), Running, Health::Healthy)),
            Readiness::Failed(_)
        ));
        assert!(matches!(
            readiness(seen(Some(2), None, Backoff, Health::Unknown)),
            Readiness::Failed(_)
        ));
        let mut no_check = seen(Some(2), Some(2), Running, Health::Unknown);
        no_check.has_check = false;
        assert_eq!(readiness(no_check), Readiness::Ready);
    }

    #[test]
    fn verification_fails_on_death_or_unhealthy() {
        use AgentState::*;
        assert_eq!(
            verification_failure(seen(Some(2), Some(2), Running, Health::Healthy)),
            None
        );
        assert_eq!(
            verification_failure(seen(Some(2), Some(2), Running, Health::Unknown)),
            None
        );
        assert!(verification_failure(seen(Some(2), Some(3), Running, Health::Healthy)).is_some());
        assert!(verification_failure(seen(Some(2), None, Backoff, Health::Unknown)).is_some());
        assert!(verification_failure(seen(Some(2), Some(2), Running, Health::Unhealthy)).is_some());
    }

    #[test]
    fn a_tarball_may_expand_a_hundredfold_above_a_floor() {
        let gib = 1 << 30;
        // Issue #14: a 1 MB tarball unpacked to 1.1 GB.
        assert_eq!(
            unpacked_limit(gib, Some(1_000_000)),
            (EXPANSION_FLOOR.max(100_000_000), true)
        );
        assert_eq!(unpacked_limit(gib, Some(10_000)), (EXPANSION_FLOOR, true));
        assert_eq!(unpacked_limit(gib, Some(50 << 20)), (gib, false));
        assert_eq!(unpacked_limit(gib, None), (gib, false), "a directory");
        assert_eq!(unpacked_limit(gib, Some(u64::MAX)), (gib, false));
    }

    #[test]
    fn listen_names() {
        assert!(valid_listen_name("http"));
        assert!(!valid_listen_name("a:b"));
        assert!(!valid_listen_name(""));
        assert!(!valid_listen_name("a b"));
    }

    #[test]
    fn sockets_move_only_where_the_kernel_moves_queued_connections() {
        assert_eq!(socket_handover(Some("1\n")), SocketHandover::Migrate);
        let SocketHandover::Shared(why) = socket_handover(Some("0\n")) else {
            panic!("0 shares");
        };
        assert!(why.starts_with("net.ipv4.tcp_migrate_req is 0: "), "{why}");
        assert!(
            why.contains("sysctl -w net.ipv4.tcp_migrate_req=1"),
            "{why}"
        );
        let SocketHandover::Shared(why) = socket_handover(None) else {
            panic!("an older kernel shares");
        };
        assert!(why.contains("5.14"), "{why}");
    }
}
