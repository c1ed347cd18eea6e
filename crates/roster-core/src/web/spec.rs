//! `[web]` as a model: where the dashboard listens, its TLS files, and how
//! long a login lasts. Reading and checking the table is `config`'s job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The address the examples and hints name.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9400";
/// How long a session lasts after login when `session_ttl` is not set.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The shortest `session_ttl`: less logs people out while they read.
pub const MIN_SESSION_TTL: Duration = Duration::from_secs(60);
/// The longest `session_ttl`: a stolen cookie should not outlive a month.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The `[web]` table, when it names a `listen` address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSpec {
    /// The TCP address the dashboard is served on.
    pub listen: SocketAddr,
    /// The certificate and key (PEM) to serve HTTPS with.
    pub tls: Option<TlsFiles>,
    /// Plain HTTP beyond loopback was asked for (a proxy in front
    /// terminates TLS).
    pub insecure_http: bool,
    /// A session ends this long after login, used or not.
    pub session_ttl: Duration,
}

/// `tls_cert` and `tls_key`, both absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

impl WebSpec {
    /// Whether tokens and cookies would cross a network in clear: plain
    /// HTTP on an address other than loopback. The config refuses it
    /// unless `insecure_http = true`; `doctor` warns about it then.
    pub fn plain_beyond_loopback(&self) -> bool {
        self.tls.is_none() && !self.listen.ip().is_loopback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(listen: &str, tls: bool) -> WebSpec {
        WebSpec {
            listen: listen.parse().expect("address"),
            tls: tls.then(|| TlsFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
            }),
            insecure_http: false,
            session_ttl: DEFAULT_SESSION_TTL,
        }
    }

    #[test]
    fn only_plain_http_off_loopback_is_in_clear() {
        assert!(!spec("127.0.0.1:9400", false).plain_beyond_loopback());
        assert!(!spec("[::1]:9400", false).plain_beyond_loopback());
        assert!(spec("0.0.0.0:9400", false).plain_beyond_loopback());
        assert!(spec("192.168.1.5:9400", false).plain_beyond_loopback());
        assert!(!spec("0.0.0.0:9400", true).plain_beyond_loopback());
    }
}
