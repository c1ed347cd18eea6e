//! Notifiers: what a `[[notify]]` table asks for. Only the model lives here;
//! delivery (HTTP, processes, files) is the daemon's `notify` module.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::health::HttpTarget;

/// The keys of a `[[notify]]` table that name its target.
pub(crate) const NOTIFY_TARGETS: [&str; 4] = ["webhook", "alertmanager", "exec", "file"];
/// Every key of a `[[notify]]` table.
pub(crate) const NOTIFY_KEYS: [&str; 5] = ["webhook", "alertmanager", "exec", "file", "timeout"];

/// How long one delivery attempt may take unless `timeout` says otherwise.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// One `[[notify]]` table, validated, with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySpec {
    /// Where alerts go.
    pub target: NotifyTarget,
    /// Bound of one delivery attempt (a hung receiver or command is cut).
    pub timeout: Duration,
}

/// Where a notifier delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyTarget {
    /// `webhook = "http://..."`: a JSON POST in Prometheus Alertmanager's
    /// webhook payload shape.
    Webhook(HttpTarget),
    /// `alertmanager = "http://HOST:PORT"`: pushes to a real Alertmanager's
    /// `/api/v2/alerts`.
    Alertmanager(HttpTarget),
    /// `exec = ["cmd", ...]`: a command with the alert in its environment.
    Exec {
        /// argv; never run through a shell.
        argv: Vec<String>,
        /// Where it runs: the config file's directory.
        cwd: PathBuf,
    },
    /// `file = "path"`: one JSON line per alert event, appended.
    File(PathBuf),
}

impl fmt::Display for NotifyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyTarget::Webhook(target) => write!(f, "webhook {}", target.url),
            NotifyTarget::Alertmanager(target) => write!(f, "alertmanager {}", target.url),
            NotifyTarget::Exec { argv, .. } => write!(f, "exec {}", argv.join(" ")),
            NotifyTarget::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Parses a receiver's URL: plain `http://` only.
pub fn parse_receiver_url(url: &str) -> Result<HttpTarget, String> {
    if url.starts_with("https://") {
        return Err(
            "https is not supported for notifiers yet: receivers are expected on \
                    loopback (a local Alertmanager or relay that does TLS onwards)"
                .into(),
        );
    }
    HttpTarget::parse(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_urls_are_plain_http() {
        let target = parse_receiver_url("http://127.0.0.1:9093").expect("valid");
        assert_eq!(target.address, "127.0.0.1:9093");
        assert_eq!(target.path, "/");
        let refused = parse_receiver_url("https://hooks.example/x").expect_err("https");
        assert!(refused.contains("https is not supported"), "{refused}");
        assert!(parse_receiver_url("ftp://x/").is_err());
    }
}
