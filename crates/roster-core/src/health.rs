//! Health checks: what an `[agents.NAME.health]` table asks for, and the
//! pure verdict logic (consecutive failures, the start period) the
//! supervisor applies to each probe result.

use std::fmt;
use std::time::Duration;

/// The shortest `interval` and `timeout` a health check may have (`check`
/// refuses less). A check every millisecond only adds load, and one that
/// answers around a 1 ms `timeout` flaps between healthy and unhealthy
/// several times a second; the supervisor rounds probe times up to this
/// grid anyway ([`crate::supervisor::PROBE_GRID`]).
pub const MIN_PROBE_PERIOD: Duration = Duration::from_millis(100);

/// `[agents.NAME.health]`, validated, with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSpec {
    /// What to probe.
    pub check: Check,
    /// Between the end of one probe and the start of the next.
    pub interval: Duration,
    /// A probe that has not answered by then has failed (and is cut).
    pub timeout: Duration,
    /// Consecutive failures before the agent is `unhealthy`.
    pub retries: u32,
    /// Failures are ignored this long after a start.
    pub start_period: Duration,
    /// What to do when the agent turns unhealthy.
    pub on_failure: OnFailure,
}

impl HealthSpec {
    /// The defaults of every key but the check.
    pub fn with_check(check: Check) -> Self {
        Self {
            check,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            retries: 3,
            start_period: Duration::from_secs(10),
            on_failure: OnFailure::Restart,
        }
    }
}

/// Consecutive failures of a health check against its `retries`: the one
/// count behind the supervisor's `unhealthy` verdict and a deploy's own
/// probes of a new process (`deployment.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failures(u32);

impl Failures {
    /// A probe passed: the count starts over.
    pub fn pass(&mut self) {
        self.0 = 0;
    }

    /// A probe failed: true once `retries` failed in a row.
    pub fn fail(&mut self, retries: u32) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0 >= retries
    }

    /// Failures in a row so far.
    pub fn count(self) -> u32 {
        self.0
    }
}

/// One kind of probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `GET` the URL; any 2xx status within the timeout is healthy.
    Http(HttpTarget),
    /// A TCP connection to `host:port` within the timeout is healthy.
    Tcp {
        /// `host:port` as written.
        address: String,
    },
    /// The command, run as the agent would be (its directory and
    /// environment), exits 0 within the timeout.
    Exec(Vec<String>),
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Http(target) => write!(f, "GET {}", target.url),
            Check::Tcp { address } => write!(f, "connect {address}"),
            Check::Exec(argv) => write!(f, "run {}", argv.join(" ")),
        }
    }
}

/// A parsed `http://host:port/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// The URL as written.
    pub url: String,
    /// `host:port` to connect to (the port defaults to 80).
    pub address: String,
    /// The `Host` header.
    pub host_header: String,
    /// The request target, `/` at least.
    pub path: String,
}

impl HttpTarget {
    /// Parses a plain-HTTP URL. HTTPS is refused: probes talk to agents on
    /// this machine, where TLS would only add a certificate to manage.
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(if url.starts_with("https://") {
                "https is not supported for health checks; probe the agent over plain http on loopback".into()
            } else {
                "the URL must start with http://".into()
            });
        };
        let (authority, path) = match rest.find('/') {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err("the URL has no host".into());
        }
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".into());
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err("the path contains spaces or control characters".into());
        }
        let has_port = match authority.rfind(':') {
            // [::1] alone has colons but no port.
            Some(index) => !authority[index..].contains(']'),
            None => false,
        };
        let address = if has_port {
            let port = &authority[authority.rfind(':').unwrap_or(0) + 1..];
            if port.parse::<u16>().map_or(true, |port| port == 0) {
                return Err(format!("bad port {port:?}"));
            }
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            url: url.to_owned(),
            address,
            host_header: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// What an unhealthy verdict leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Drain and restart (rate-limited).
    Restart,
    /// Journal it (and, later, alert); leave the agent alone.
    Alert,
    /// Only show it in status.
    None,
}

impl OnFailure {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Restart => "restart",
            OnFailure::Alert => "alert",
            OnFailure::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let target = HttpTarget::parse("http://127.0.0.1:8001/health").expect("valid");
        assert_eq!(target.address, "127.0.0.1:8001");
        assert_eq!(target.host_header, "127.0.0.1:8001");
        assert_eq!(target.path, "/health");
        let bare = HttpTarget::parse("http://localhost").expect("valid");
        assert_eq!(bare.address, "localhost:80");
        assert_eq!(bare.path, "/");
        let v6 = HttpTarget::parse("http://[::1]:9000/h?x=1").expect("valid");
        assert_eq!(v6.address, "[::1]:9000");
        assert_eq!(v6.path, "/h?x=1");
        assert_eq!(
            HttpTarget::parse("http://[::1]/").expect("valid").address,
            "[::1]:80"
        );
        for bad in [
            "https://127.0.0.1/",
            "ftp://x/",
            "127.0.0.1:80",
            "http://",
            "http://host:0/",
            "http://host:99999/",
            "http://u:p@host/",
            "http://host/a b",
        ] {
            assert!(HttpTarget::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
