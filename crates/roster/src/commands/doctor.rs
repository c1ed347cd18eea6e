//! `roster doctor`: this host and this home against the operating
//! principles, each finding with its severity and the exact fix. Exit 0
//! only when nothing is found.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use roster_core::api::{AgentState, StatusReply};
use roster_core::config::Config;
use roster_core::watch::Metric;
use roster_store::Home;

use crate::client::Reach;

/// One thing that breaks a principle.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// `critical`, `warning` or `info`.
    pub severity: &'static str,
    /// The check, e.g. `root`, `health`, `secrets`.
    pub check: &'static str,
    /// The agent concerned, if any.
    pub agent: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Exactly what to do.
    pub fix: String,
}

fn finding(
    severity: &'static str,
    check: &'static str,
    agent: Option<&str>,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        severity,
        check,
        agent: agent.map(str::to_owned),
        message,
        fix,
    }
}

/// A value that looks like an API key or token: a known prefix, or a long
/// value under a name that says key, token, secret or password.
pub fn looks_secret(key: &str, value: &str) -> bool {
    use roster_core::diagnose::redact::SECRET_PREFIXES as PREFIXES;
    if PREFIXES.iter().any(|prefix| value.starts_with(prefix)) && value.len() >= 12 {
        return true;
    }
    let upper = key.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD"]
        .iter()
        .any(|word| upper.contains(word))
        && value.len() >= 8
        && !value.contains(' ')
}

/// The checks that read only the config.
pub fn config_findings(config: &Config, daemon_is_root: bool) -> Vec<Finding> {
    let mut found = Vec::new();
    for (name, spec) in &config.agents {
        let agent = Some(name.as_str());
        let root = match spec.identity.user.as_deref() {
            Some(user) => user == "root" || user == "0",
            None => daemon_is_root,
        };
        if root && !spec.identity.root_intended() {
            found.push(finding(
                "critical",
                "root",
                agent,
                format!("{name} runs as root, and the config does not say so"),
                format!("set user = \"agent-runner\" (or its own: user = \"tenant-{{name}}\", create_user = true) in [agents.{name}] or [defaults]; allow_root = true if root is really needed"),
            ));
        }
        if spec.health.is_none() {
            found.push(finding(
                "warning",
                "health",
                agent,
                format!("{name} has no health check: a hung agent looks alive"),
                format!("add [agents.{name}.health] with http = \"http://127.0.0.1:PORT/health\" (or tcp, or exec)"),
            ));
        }
        let memory_rule = spec
            .rules()
            .iter()
            .any(|rule| matches!(rule.metric, Metric::MemoryBytes | Metric::MemoryPercent));
        if spec.limits.memory_max.is_none() && !memory_rule {
            found.push(finding(
                "warning",
                "memory",
                agent,
                format!("{name} has no memory limit and no memory rule: a leak takes the machine down"),
                format!("set memory_max = \"512MiB\" in [agents.{name}] (or [defaults]), or keep the default watch rules"),
            ));
        }
        for (key, value) in &spec.env {
            if looks_secret(key, value) {
                found.push(finding(
                    "critical",
                    "secrets",
                    agent,
                    format!("{name}'s env has {key}, which looks like a secret, in plain config"),
                    format!("roster secret set {name} {key} (paste the value), then remove {key} from the config's env"),
                ));
            }
        }
    }
    if let Some(metrics) = config
        .metrics
        .as_ref()
        .filter(|m| !m.listen.ip().is_loopback() && m.bearer_token_file.is_none())
    {
        found.push(finding(
            "warning",
            "metrics",
            None,
            format!(
                "/metrics is served without authentication on {}: whoever reaches that port reads every agent's name, state and resource use",
                metrics.listen
            ),
            format!(
                "set [metrics] bearer_token_file = \"/etc/roster/metrics.token\" (a 0600 file; Prometheus sends it with authorization: credentials_file), or listen = \"127.0.0.1:{}\" behind a tunnel, or firewall the port to the Prometheus server",
                metrics.listen.port()
            ),
        ));
    }
    if let Some(web) = config
        .web
        .as_ref()
        .filter(|web| web.insecure_http && web.plain_beyond_loopback())
    {
        found.push(finding(
            "warning",
            "web",
            None,
            format!(
                "the dashboard is served over plain HTTP on {} (insecure_http = true): tokens and session cookies cross the network in clear up to the proxy that terminates TLS",
                web.listen
            ),
            format!(
                "set [web] tls_cert and tls_key (PEM files); or keep insecure_http and firewall port {} to the TLS proxy alone",
                web.listen.port()
            ),
        ));
    }
    if config.log.max_size > 1 << 30 {
        found.push(finding(
            "warning",
            "logs",
            None,
            format!(
                "[log] max_size is {} bytes: a log may grow past 1GiB before it rotates",
                config.log.max_size
            ),
            "set [log] max_size = \"10MiB\" (and keep = 14)".into(),
        ));
    }
    found
}

/// `[web]`'s TLS files: each must be readable and PEM of its kind, or the
/// dashboard cannot start.
pub fn web_tls_findings(config: &Config) -> Vec<Finding> {
    let Some(tls) = config.web.as_ref().and_then(|web| web.tls.as_ref()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (key, path, kind) in [
        ("tls_cert", &tls.cert, PemKind::Certificate),
        ("tls_key", &tls.key, PemKind::PrivateKey),
    ] {
        let problem = match std::fs::read(path) {
            Ok(bytes) => pem_problem(&bytes, kind),
            Err(error) => Some(format!("cannot be read: {error}")),
        };
        if let Some(problem) = problem {
            found.push(finding(
                "critical",
                "web",
                None,
                format!("[web] {key} {} {problem}", path.display()),
                format!(
                    "point {key} at a readable PEM file ({}), e.g. made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout web.key -out web.crt -days 365 -subj /CN=HOST`",
                    kind.expected()
                ),
            ));
        }
    }
    found
}

/// What a TLS file must hold.
#[derive(Clone, Copy, Debug)]
pub enum PemKind {
    /// `-----BEGIN CERTIFICATE-----`.
    Certificate,
    /// `-----BEGIN (RSA |EC )?PRIVATE KEY-----`.
    PrivateKey,
}

impl PemKind {
    fn expected(self) -> &'static str {
        match self {
            PemKind::Certificate => "-----BEGIN CERTIFICATE-----",
            PemKind::PrivateKey => "-----BEGIN PRIVATE KEY----- or an RSA or EC one",
        }
    }
}

/// Why `bytes` are not a PEM file of `kind`; `None` when they are.
pub fn pem_problem(bytes: &[u8], kind: PemKind) -> Option<String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Some("is not PEM (binary: DER? convert it with openssl)".into());
    };
    let has_block = |label: &str| {
        text.lines()
            .any(|line| line.trim() == format!("-----BEGIN {label}-----"))
            && text
                .lines()
                .any(|line| line.trim() == format!("-----END {label}-----"))
    };
    let ok = match kind {
        PemKind::Certificate => has_block("CERTIFICATE"),
        PemKind::PrivateKey => ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]
            .iter()
            .any(|label| has_block(label)),
    };
    if ok {
        None
    } else if text.trim().is_empty() {
        Some("is empty".into())
    } else if matches!(kind, PemKind::PrivateKey) && has_block("CERTIFICATE") {
        Some("holds a certificate, not a private key (tls_cert and tls_key swapped?)".into())
    } else if matches!(kind, PemKind::Certificate) && text.contains("PRIVATE KEY-----") {
        Some("holds a private key, not a certificate (tls_cert and tls_key swapped?)".into())
    } else {
        Some(format!("is not PEM: no {} block", kind.expected()))
    }
}

/// The checks of the running home: agents' states and users.
pub fn status_findings(status: &StatusReply) -> Vec<Finding> {
    let mut found = Vec::new();
    for agent in &status.agents {
        let name = agent.name.as_str();
        match agent.state {
            AgentState::Failed => found.push(finding(
                "critical",
                "failing",
                Some(name),
                match agent.last_error.as_deref() {
                    Some(error) => format!(
                        "{name} failed: it cannot start: {}",
                        error.lines().next().unwrap_or_default()
                    ),
                    None => format!("{name} failed: it died too often too quickly"),
                },
                format!("see `roster logs {name}` and `roster events {name}`, fix it, then `roster start {name}`"),
            )),
            AgentState::Backoff => found.push(finding(
                "warning",
                "failing",
                Some(name),
                format!("{name} is crash-looping ({} restarts)", agent.restarts),
                format!("see `roster logs {name}` and `roster events {name}`"),
            )),
            _ => {}
        }
    }
    for warning in &status.warnings {
        found.push(finding(
            "warning",
            "daemon",
            None,
            warning.clone(),
            "see `roster status`".into(),
        ));
    }
    found
}

/// Percent used of the filesystem holding `path`.
fn disk_percent(path: &Path) -> Option<f64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let total = stat.blocks() as f64;
    let free = stat.blocks_available() as f64;
    (total > 0.0).then(|| (total - free) / total * 100.0)
}

fn host_findings(home: &Home, root: &Path) -> Vec<Finding> {
    let mut found = Vec::new();
    let unit = root.join("etc/systemd/system/roster.service");
    if !unit.exists() {
        found.push(finding(
            "warning",
            "boot",
            None,
            format!(
                "no roster unit at {}: nothing starts roster at boot",
                unit.display()
            ),
            "sudo roster install   (--dry-run first to see every change)".into(),
        ));
    }
    let logs = home.logs();
    if let Some(percent) = disk_percent(if logs.exists() { &logs } else { home.root() }) {
        if percent > 80.0 {
            found.push(finding(
                "warning",
                "disk",
                None,
                format!("the filesystem of {} is {percent:.0}% full", logs.display()),
                "free space, lower [log] keep or max_size, or add a [[host.watch]] disk_percent rule with action = \"clean_logs\"".into(),
            ));
        }
    }
    if let Ok(metadata) = std::fs::metadata(home.root()) {
        let mode = metadata.mode() & 0o777;
        if mode & 0o022 != 0 {
            found.push(finding(
                "critical",
                "permissions",
                None,
                format!(
                    "{} is writable by group or others (mode {mode:04o})",
                    home.root().display()
                ),
                format!("chmod go-w {}", home.root().display()),
            ));
        }
        let journal = home.journal();
        let readable = std::fs::metadata(&journal)
            .map(|journal| journal.mode() & 0o004 != 0)
            .unwrap_or(false);
        if mode & 0o001 != 0 && readable {
            found.push(finding(
                "warning",
                "permissions",
                None,
                format!(
                    "{} is readable by every user (the home lets them through)",
                    journal.display()
                ),
                format!("chmod o-r {0} {0}-wal {0}-shm", journal.display()),
            ));
        }
    }
    if let Some(false) = clock_synchronised() {
        found.push(finding(
            "warning",
            "clock",
            None,
            "the clock is not synchronised: journal times and alert times drift".into(),
            "enable NTP: sudo timedatectl set-ntp true (or install chrony)".into(),
        ));
    }
    found
}

/// `timedatectl`'s verdict where systemd runs; `None` where it cannot be read.
pub fn clock_synchronised() -> Option<bool> {
    if !Path::new("/run/systemd/system").exists() {
        return None;
    }
    let output = std::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output()
        .ok()?;
    match String::from_utf8_lossy(&output.stdout).trim() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// Which config `doctor` judges: `-f FILE` when given; else
/// `./roster.toml` when it exists; else the file this home's daemon last
/// applied (`status` names it), so `doctor` run outside the project still
/// judges what runs. None when there is none of these.
pub fn config_to_judge(
    given: Option<&Path>,
    local_exists: bool,
    status: Option<&StatusReply>,
) -> Option<PathBuf> {
    if let Some(given) = given {
        return Some(given.to_path_buf());
    }
    if local_exists {
        return Some(PathBuf::from("roster.toml"));
    }
    status
        .and_then(|status| status.config.as_deref())
        .map(PathBuf::from)
}

/// Doctor's findings, without printing: the config it judges (see
/// [`config_to_judge`]) and every finding. `status` is the daemon's answer,
/// if it gave one (`diagnose --bundle` passes the one it collected).
pub fn findings(
    home: &Home,
    file: Option<&Path>,
    root: &Path,
    status: Option<&StatusReply>,
) -> Result<(Option<PathBuf>, Vec<Finding>)> {
    let mut findings = Vec::new();
    let judged = config_to_judge(file, Path::new("roster.toml").exists(), status);
    let mut judged_path = None;
    if let Some(judged) = &judged {
        let path = if file.is_some() {
            // A file named on the command line must exist, as for every command.
            super::config_path(judged)?
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(judged))
                .unwrap_or_else(|_| judged.clone())
        };
        if path.is_file() {
            match roster_store::config_file::load_config(&path) {
                Ok(config) => {
                    findings.extend(config_findings(&config, nix::unistd::geteuid().is_root()));
                    findings.extend(web_tls_findings(&config));
                }
                Err(error) => findings.push(finding(
                    "critical",
                    "config",
                    None,
                    format!(
                        "the config is invalid: {}",
                        error.lines().next().unwrap_or_default()
                    ),
                    format!("roster check -f {}", path.display()),
                )),
            }
        } else {
            findings.push(finding(
                "warning",
                "config",
                None,
                format!(
                    "the daemon runs {}, which is no longer there: its agents were not judged",
                    path.display()
                ),
                "name the config with -f FILE (and `roster apply -f FILE` it), or run doctor in the project's directory".into(),
            ));
        }
        judged_path = Some(path);
    }
    if let Some(status) = status {
        findings.extend(status_findings(status));
    }
    findings.extend(host_findings(home, root));
    Ok((judged_path, findings))
}

/// Runs `roster doctor`.
pub fn run(
    home: &Home,
    file: Option<&Path>,
    root: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode> {
    let root = root.unwrap_or_else(|| PathBuf::from("/"));
    let client = super::client(home);
    let status = if matches!(client.reach(), Reach::Up) {
        client.get::<StatusReply>("/v1/status").ok()
    } else {
        None
    };
    let (judged_path, findings) = findings(home, file, &root, status.as_ref())?;
    if json {
        let report = serde_json::json!({ "config": judged_path, "findings": &findings });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if findings.is_empty() {
        if let Some(path) = &judged_path {
            println!("config: {}", path.display());
        }
        println!("nothing found: this host and this home follow the principles");
    } else {
        if let Some(path) = &judged_path {
            println!("config: {}", path.display());
        }
        for found in &findings {
            println!(
                "{:<8}  {:<11}  {}",
                found.severity, found.check, found.message
            );
            println!("{:<8}  {:<11}  fix: {}", "", "", found.fix);
        }
        println!("{} finding(s)", findings.len());
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctor_judges_the_named_file_then_the_local_one_then_the_daemons() {
        let status: StatusReply =
            serde_json::from_str(r#"{"agents": [], "config": "/srv/project/roster.toml"}"#)
                .expect("status");
        let named = Path::new("other.toml");
        assert_eq!(
            config_to_judge(Some(named), true, Some(&status)),
            Some(PathBuf::from("other.toml"))
        );
        assert_eq!(
            config_to_judge(None, true, Some(&status)),
            Some(PathBuf::from("roster.toml"))
        );
        assert_eq!(
            config_to_judge(None, false, Some(&status)),
            Some(PathBuf::from("/srv/project/roster.toml")),
            "no roster.toml here: the one the daemon runs"
        );
        assert_eq!(config_to_judge(None, false, None), None, "no daemon");
        let unapplied: StatusReply = serde_json::from_str(r#"{"agents": []}"#).expect("status");
        assert_eq!(config_to_judge(None, false, Some(&unapplied)), None);
    }

    fn web_config(web: &str) -> Config {
        roster_core::config::parse("roster.toml", web, Path::new("/srv/app")).expect("valid")
    }

    #[test]
    fn plain_http_beyond_loopback_is_a_warning_only_when_asked_for() {
        let web = |found: Vec<Finding>| -> Vec<Finding> {
            found.into_iter().filter(|f| f.check == "web").collect()
        };
        let found = web(config_findings(
            &web_config("[web]\nlisten = \"0.0.0.0:9400\"\ninsecure_http = true\n"),
            false,
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, "warning");
        assert_eq!(
            found[0].message,
            "the dashboard is served over plain HTTP on 0.0.0.0:9400 (insecure_http = true): tokens and session cookies cross the network in clear up to the proxy that terminates TLS"
        );
        assert_eq!(
            found[0].fix,
            "set [web] tls_cert and tls_key (PEM files); or keep insecure_http and firewall port 9400 to the TLS proxy alone"
        );
        for quiet in [
            "[web]\nlisten = \"127.0.0.1:9400\"\n",
            "[web]\nlisten = \"127.0.0.1:9400\"\ninsecure_http = true\n",
            "[web]\nlisten = \"0.0.0.0:9400\"\ntls_cert = \"c\"\ntls_key = \"k\"\n",
            "",
        ] {
            assert!(
                web(config_findings(&web_config(quiet), false)).is_empty(),
                "{quiet}"
            );
        }
    }

    #[test]
    fn tls_files_must_be_readable_pem_of_their_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.path().join("web.crt"), cert).expect("write");
        std::fs::write(dir.path().join("web.key"), key).expect("write");
        let text = |cert: &str, key: &str| {
            format!(
                "[web]\nlisten = \"127.0.0.1:9400\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                dir.path().join(cert).display(),
                dir.path().join(key).display()
            )
        };
        assert!(web_tls_findings(&web_config(&text("web.crt", "web.key"))).is_empty());
        let found = web_tls_findings(&web_config(&text("web.key", "missing.key")));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found
            .iter()
            .all(|f| f.severity == "critical" && f.check == "web"));
        assert!(
            found[0].message.ends_with(
                "holds a private key, not a certificate (tls_cert and tls_key swapped?)"
            ),
            "{}",
            found[0].message
        );
        assert!(
            found[1]
                .message
                .contains("missing.key cannot be read: No such file"),
            "{}",
            found[1].message
        );
        assert!(
            found[1]
                .fix
                .starts_with("point tls_key at a readable PEM file"),
            "{}",
            found[1].fix
        );
    }

    #[test]
    fn pem_is_recognised_by_its_blocks() {
        let cert = b"junk\n-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_problem(cert, PemKind::Certificate), None);
        let rsa = b"-----BEGIN RSA PRIVATE KEY-----\nAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(pem_problem(rsa, PemKind::PrivateKey), None);
        let ec = b"-----BEGIN EC PRIVATE KEY-----\nAA\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(pem_problem(ec, PemKind::PrivateKey), None);
        assert_eq!(
            pem_problem(b"", PemKind::Certificate).as_deref(),
            Some("is empty")
        );
        assert_eq!(
            pem_problem(&[0x30, 0x82, 0xff, 0xfe], PemKind::Certificate).as_deref(),
            Some("is not PEM (binary: DER? convert it with openssl)")
        );
        assert_eq!(
            pem_problem(cert, PemKind::PrivateKey).as_deref(),
            Some("holds a certificate, not a private key (tls_cert and tls_key swapped?)")
        );
        assert_eq!(
            pem_problem(b"hello", PemKind::Certificate).as_deref(),
            Some("is not PEM: no -----BEGIN CERTIFICATE----- block")
        );
        let unterminated = b"-----BEGIN CERTIFICATE-----\nAA\n";
        assert!(pem_problem(unterminated, PemKind::Certificate).is_some());
    }

    #[test]
    fn secrets_are_recognised_and_ordinary_values_are_not() {
        assert!(looks_secret("OPENAI_API_KEY", "sk-proj-abcdefghijkl"));
        assert!(looks_secret("ANYTHING", "ghp_0123456789abcdef"));
        assert!(looks_secret("DB_PASSWORD", "hunter2hunter2"));
        assert!(!looks_secret("MODEL", "small"));
        assert!(!looks_secret("PORT", "8080"));
        assert!(!looks_secret("KEY_PREFIX", "a b"));
    }
}
