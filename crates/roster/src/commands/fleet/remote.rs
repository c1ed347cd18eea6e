//! What each host runs now, fetched in one ssh command per host (in
//! parallel): the sha256 of its roster binary, whether its daemon
//! answers, whether systemd is its init, and the roster.toml `roster
//! fleet` wrote there, read back with `fleet::read_rendered`. Shared by
//! the fleet commands that must know a host's state before acting.

use std::time::Duration;

use roster_core::fleet::{read_rendered, HostedConfig};

use super::ssh::{Ssh, Target};
use super::{REMOTE_CONFIG, REMOTE_HOME};

/// What a host's state command may take on top of connecting.
pub const FETCH_BUDGET: Duration = Duration::from_secs(10);

/// The first line of every roster.toml `roster fleet` writes.
const RENDERED_MARK: &str = "# roster.toml of host ";

/// One host's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// The sha256 (hex) of its roster binary; `None`: there is none.
    pub roster_sha256: Option<String>,
    /// Whether its daemon answers `roster status`.
    pub daemon: bool,
    /// Whether systemd is its init (`/run/systemd/system` exists).
    pub systemd: bool,
    /// The text of its roster.toml when `roster fleet` wrote it.
    pub config: Option<String>,
    /// That file read back (empty when there is none).
    pub hosted: HostedConfig,
}

/// The shell script that prints a host's state, one fact a line, then
/// the config after a line `config` (or a line `none`).
fn script(roster: &str) -> String {
    format!(
        "if [ -f {roster} ]; then sha256sum {roster} | cut -d' ' -f1; else echo -; fi; \
         if [ -x {roster} ] && {roster} --home {home} status --json >/dev/null 2>&1; \
         then echo up; else echo down; fi; \
         if [ -d /run/systemd/system ]; then echo systemd; else echo plain; fi; \
         if [ -f {config} ]; then echo config; cat {config}; else echo none; fi",
        roster = roster,
        home = REMOTE_HOME,
        config = REMOTE_CONFIG,
    )
}

/// Every target's state (or why it could not be read), in their order.
pub fn fetch(
    transport: &Ssh,
    targets: &[Target],
    timeout: Duration,
) -> Vec<Result<HostState, String>> {
    let remote = ["sh".to_owned(), "-c".to_owned(), script(transport.roster())];
    transport
        .run_all(targets, &remote, timeout)
        .into_iter()
        .map(|outcome| outcome.result.and_then(|stdout| parse(&stdout)))
        .collect()
}

/// Reads the script's output.
fn parse(stdout: &[u8]) -> Result<HostState, String> {
    let text = String::from_utf8_lossy(stdout);
    let mut lines = text.splitn(5, '\n');
    let mut next = || lines.next().map(str::trim_end);
    let (Some(sha), Some(daemon), Some(init), Some(config)) = (next(), next(), next(), next())
    else {
        return Err("the host's state is cut short".into());
    };
    let rest = lines.next().unwrap_or("");
    let roster_sha256 = match sha {
        "-" => None,
        sha if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) => {
            Some(sha.to_owned())
        }
        other => return Err(format!("unexpected checksum from the host: {other:?}")),
    };
    // A roster.toml written by hand (or `roster install`'s starter) is
    // not the fleet's: it is replaced as if there were none.
    let config = (config == "config" && rest.starts_with(RENDERED_MARK)).then(|| rest.to_owned());
    let hosted = config.as_deref().map(read_rendered).unwrap_or_default();
    Ok(HostState {
        roster_sha256,
        daemon: daemon == "up",
        systemd: init == "systemd",
        config,
        hosted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_the_script_prints_them() {
        let sha = "a".repeat(64);
        let rendered = "# roster.toml of host h1 in fleet f, written by `roster fleet`:\n\
            # port of a.x 8100\n\n[agents.\"a.x\"]\ncommand = \"true\"\n";
        let state =
            parse(format!("{sha}\nup\nplain\nconfig\n{rendered}").as_bytes()).expect("reads");
        assert_eq!(state.roster_sha256.as_deref(), Some(sha.as_str()));
        assert!(state.daemon && !state.systemd);
        assert_eq!(state.config.as_deref(), Some(rendered));
        assert_eq!(state.hosted.ports.get("a.x"), Some(&8100));
        assert_eq!(state.hosted.instances[0].name, "a.x");

        let bare = parse(b"-\ndown\nsystemd\nnone\n").expect("reads");
        assert_eq!(bare.roster_sha256, None);
        assert!(!bare.daemon && bare.systemd);
        assert_eq!(bare.config, None);

        let hand =
            parse(b"-\ndown\nplain\nconfig\n[agents.web]\ncommand = \"x\"\n").expect("reads");
        assert_eq!(hand.config, None);
        assert!(hand.hosted.instances.is_empty());

        assert!(parse(b"-\nup\n").is_err());
        assert!(parse(b"sha256sum: oops\nup\nplain\nnone\n").is_err());
    }
}
