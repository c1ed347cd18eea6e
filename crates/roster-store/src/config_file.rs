//! Reading a config file safely: never blocking on a FIFO or a device, never
//! reading more than a config could be, and validating the result whole.
//!
//! The daemon calls this off its loop (on the blocking pool or a thread of
//! its own), so even a slow filesystem cannot stall supervision. The agents'
//! `env_file`s are read here too, with the config they belong to.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Error, ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use roster_core::config::{self, Config};
use roster_core::{AgentName, ConfigError};

/// The largest config file roster reads; a bigger one is a mistake (or
/// `/dev/zero`), not a config.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: Error,
    },
    /// The file is invalid; every problem is located.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Opens `path` for reading without blocking: a FIFO or a device would
/// block `open` itself. Callers check the file type before reading.
fn open_without_blocking(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Opens `path` without blocking (a FIFO or a device would block `open`
/// or `read`), checks it is a regular file, and reads at most
/// [`MAX_CONFIG_BYTES`] of valid UTF-8.
pub fn read_config_file(path: &Path) -> std::io::Result<String> {
    let file = open_without_blocking(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a config must be a plain file, not a FIFO, device or directory)",
        ));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "larger than 4 MiB; is this really a config file?",
        ));
    }
    Ok(text)
}

/// Reads and validates a config file. `shown` is how problems name the file
/// (`FILE:LINE:COL`); relative paths inside it are relative to its directory.
pub fn load(path: &Path, shown: &str) -> Result<Config, LoadError> {
    let text = read_config_file(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("/"));
    Ok(config::parse(shown, &text, base)?)
}

/// Reads and validates a config file; the error is ready to print.
pub fn load_config(path: &Path) -> Result<Config, String> {
    load(path, &path.display().to_string()).map_err(|error| error.to_string())
}

/// The files a config names that an apply reads with it, off the loop.
#[derive(Debug, Default)]
pub struct ReadAlong {
    /// The agents' `env_file`s.
    pub env_files: EnvFiles,
    /// The token of `[metrics] bearer_token_file`.
    pub metrics_token: Option<String>,
    /// The live release of each agent shipped as releases, read when the
    /// release stores were prepared (`deploy::prepare_config`).
    pub live_releases: std::collections::BTreeMap<roster_core::AgentName, String>,
    /// `[web]`'s `tls_cert` and `tls_key` (PEM bytes), or why they could
    /// not be read: the dashboard is then not served, the apply goes on.
    pub web_tls: Option<Result<WebTlsPem, String>>,
}

/// The web dashboard's certificate chain and key, as read.
#[derive(Clone, PartialEq, Eq)]
pub struct WebTlsPem {
    /// The certificate chain, PEM.
    pub cert: Vec<u8>,
    /// The private key, PEM. Never shown.
    pub key: Vec<u8>,
}

// By hand: Debug output ends up in logs, and the key must not.
impl std::fmt::Debug for WebTlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebTlsPem")
            .field("cert_bytes", &self.cert.len())
            .field("key_bytes", &self.key.len())
            .finish()
    }
}

/// The largest TLS file roster reads.
const MAX_TLS_BYTES: u64 = 1024 * 1024;

/// Reads `[web]`'s TLS files (regular files, at most 1 MiB each).
pub fn read_web_tls(files: &roster_core::web::TlsFiles) -> Result<WebTlsPem, String> {
    let read = |path: &Path| -> Result<Vec<u8>, String> {
        let shown = path.display();
        let file =
            open_without_blocking(path).map_err(|error| format!("cannot read {shown}: {error}"))?;
        let metadata = file
            .metadata()
            .map_err(|error| format!("cannot read {shown}: {error}"))?;
        if !metadata.is_file() {
            return Err(format!("{shown} is not a regular file"));
        }
        let mut bytes = Vec::new();
        file.take(MAX_TLS_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| format!("cannot read {shown}: {error}"))?;
        if bytes.len() as u64 > MAX_TLS_BYTES {
            return Err(format!("{shown} is larger than {MAX_TLS_BYTES} bytes"));
        }
        Ok(bytes)
    };
    Ok(WebTlsPem {
        cert: read(&files.cert)?,
        key: read(&files.key)?,
    })
}

/// [`load_config`], then the files it names (`env_file`s, the metrics
/// token, the web dashboard's TLS files): what an apply needs, read off
/// the daemon's loop.
pub fn load_for_apply(path: &Path) -> Result<(Config, ReadAlong), String> {
    let config = load_config(path)?;
    let env_files = read_env_files(&config)?;
    let metrics_token = match config
        .metrics
        .as_ref()
        .and_then(|metrics| metrics.bearer_token_file.as_ref())
    {
        Some(file) => Some(read_token_file(file)?),
        None => None,
    };
    let web_tls = config
        .web
        .as_ref()
        .and_then(|web| web.tls.as_ref())
        .map(read_web_tls);
    Ok((
        config,
        ReadAlong {
            env_files,
            metrics_token,
            live_releases: Default::default(),
            web_tls,
        },
    ))
}

/// The largest token file roster reads.
const MAX_TOKEN_BYTES: u64 = 4096;

/// The shortest bearer token roster accepts: a short one is guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Reads a bearer token: a regular file (never blocking on a FIFO), not
/// readable by every user, holding one line of printable characters, at
/// least [`MIN_TOKEN_CHARS`] of them.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let file = open_without_blocking(path)
        .map_err(|error| format!("cannot read the metrics token {shown}: {error}"))?;
    let metadata = file
        .metadata()
        .map_err(|error| format!("cannot read the metrics token {shown}: {error}"))?;
    if !metadata.is_file() {
        return Err(format!("the metrics token {shown} is not a regular file"));
    }
    if metadata.permissions().mode() & 0o004 != 0 {
        return Err(format!(
            "the metrics token {shown} is readable by every user\n  hint: chmod 600 {shown}"
        ));
    }
    let mut text = String::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| format!("cannot read the metrics token {shown}: {error}"))?;
    let token = text.trim();
    if text.len() as u64 > MAX_TOKEN_BYTES
        || token.is_empty()
        || !token.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(format!(
            "the metrics token {shown} must hold one token of printable characters, at most 4 KiB\n  hint: openssl rand -hex 32 > {shown}"
        ));
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(format!(
            "the metrics token {shown} is too short: {} characters, at least {MIN_TOKEN_CHARS} are needed (a short token is guessed)\n  hint: openssl rand -hex 32 > {shown}",
            token.len()
        ));
    }
    Ok(token.to_owned())
}

/// Every agent's `env_file` contents, in file order.
pub type EnvFiles = BTreeMap<AgentName, Vec<(String, String)>>;

/// Reads every agent's `env_file` (blocking: call it off the loop). A
/// missing or unreadable file, or a malformed line, fails the whole apply.
pub fn read_env_files(config: &Config) -> Result<EnvFiles, String> {
    let mut files = EnvFiles::new();
    for (agent, spec) in &config.agents {
        let Some(path) = &spec.env_file else {
            continue;
        };
        let text = read_config_file(path).map_err(|error| {
            format!(
                "env_file of {agent}: cannot read {}: {error}\n  hint: create it, or remove `env_file` from [agents.{agent}]",
                path.display()
            )
        })?;
        files.insert(agent.clone(), parse_env_file(path, &text)?);
    }
    Ok(files)
}

/// Parses an env file: `KEY=VALUE` lines, blank lines and `#` comments
/// ignored, an optional `export ` prefix, and optional matching single or
/// double quotes around the value (taken literally inside: no escapes, no
/// expansion). A malformed line is an error naming `FILE:LINE`, never its
/// contents.
pub fn parse_env_file(path: &Path, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let malformed = |why: &str| format!("{}:{}: {why}", path.display(), index + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(malformed("not KEY=VALUE"));
        };
        let key = key.trim_end();
        roster_core::name::check_variable_name(key).map_err(|_| {
            malformed("the name before = is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)")
        })?;
        let value = value.trim_start();
        let value = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                if value.len() >= 2 && value.ends_with(quote) {
                    &value[1..value.len() - 1]
                } else {
                    return Err(malformed(&format!(
                        "the value of {key} opens a {quote} quote that does not close at the end of the line"
                    )));
                }
            }
            _ => value,
        };
        if value.contains('\0') {
            return Err(malformed(&format!(
                "the value of {key} contains a NUL byte"
            )));
        }
        entries.retain(|(existing, _)| existing != key);
        entries.push((key.to_owned(), value.to_owned()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_key_never_reaches_debug_output() {
        let pem = WebTlsPem {
            cert: b"-----BEGIN CERTIFICATE-----".to_vec(),
            key: b"-----BEGIN PRIVATE KEY-----secret".to_vec(),
        };
        let shown = format!("{pem:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("PRIVATE"),
            "{shown}"
        );
        assert!(shown.contains("key_bytes: 33"), "{shown}");
    }

    #[test]
    fn token_files_are_one_private_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |text: &str, mode: u32| {
            let path = dir.path().join("token");
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        };
        let token = "0123456789abcdef";
        assert_eq!(
            read_token_file(&write(&format!("{token}\n"), 0o600)),
            Ok(token.to_owned())
        );
        for short in ["x", "0123456789abcde"] {
            let error = read_token_file(&write(short, 0o600)).expect_err(short);
            assert!(
                error.contains("too short") && error.contains("openssl rand -hex 32"),
                "{short:?}: {error}"
            );
        }
        let open = read_token_file(&write(token, 0o644)).expect_err("world-readable");
        assert!(open.contains("chmod 600"), "{open}");
        for bad in ["", "\n", "two words\n", "tab\there\n"] {
            let error = read_token_file(&write(bad, 0o600)).expect_err(bad);
            assert!(error.contains("one token"), "{bad:?}: {error}");
        }
        let big = "x".repeat(5000);
        assert!(read_token_file(&write(&big, 0o600)).is_err());
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let error = read_token_file(&fifo).expect_err("a FIFO is not a token file");
        assert!(error.contains("not a regular file"), "{error}");
        let missing = read_token_file(&dir.path().join("missing")).expect_err("missing");
        assert!(
            missing.contains("cannot read the metrics token"),
            "{missing}"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("roster.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // With no writer, a blocking open would hang here forever.
        let error = read_config_file(&fifo).expect_err("a FIFO is not a config");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn a_directory_and_dev_zero_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(read_config_file(dir.path()).is_err());
        assert!(read_config_file(Path::new("/dev/zero")).is_err());
    }

    #[test]
    fn env_files_parse_like_dotenv() {
        let path = Path::new("/etc/app.env");
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='single'\nE=\nA=again\nexported=x\n";
        let entries = parse_env_file(path, text).expect("parses");
        let get = |key: &str| {
            entries
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(get("A"), Some("again"));
        assert_eq!(get("B"), Some("two words"));
        assert_eq!(get("C"), Some("quoted # not a comment"));
        assert_eq!(get("D"), Some("single"));
        assert_eq!(get("E"), Some(""));
        assert_eq!(get("exported"), Some("x"));
        let error = parse_env_file(path, "A=1\nsk-live-hidden\n").expect_err("malformed");
        assert_eq!(error, "/etc/app.env:2: not KEY=VALUE");
        let error = parse_env_file(path, "A=\"sk-live-open\n").expect_err("quote");
        assert!(error.starts_with("/etc/app.env:1: "), "{error}");
        assert!(!error.contains("sk-live"), "{error}");
        assert!(parse_env_file(path, "1A=x\n").is_err());
    }
}
