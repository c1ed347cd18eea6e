//! Where an installed roster keeps things (`roster install`, `roster
//! export`), and where a home keeps agents' secrets.

use std::path::{Path, PathBuf};

/// The config directory of an installed roster.
pub const CONFIG_DIR: &str = "/etc/roster";
/// The config file the installed daemon applies at start.
pub const CONFIG_FILE: &str = "/etc/roster/roster.toml";
/// The installed daemon's home: state, journal, logs, secrets.
pub const STATE_HOME: &str = "/var/lib/roster";
/// The installed daemon's unit.
pub const UNIT_FILE: &str = "/etc/systemd/system/roster.service";
/// The unit's name for `systemctl`.
pub const UNIT_NAME: &str = "roster";
/// Where units made by `roster export systemd` append agents' output.
pub const EXPORT_LOG_DIR: &str = "/var/log/roster";

/// The directory, inside a home, that holds agents' secrets: one
/// `NAME.env` file of `KEY=VALUE` lines per agent (`roster secret`).
pub const SECRETS_DIR: &str = "secrets";

/// An agent's secrets file in `home`.
pub fn secrets_file(home: &Path, agent: &str) -> PathBuf {
    home.join(SECRETS_DIR).join(format!("{agent}.env"))
}

/// `path` (absolute) inside `root`, or `path` itself without a root.
pub fn under(root: Option<&Path>, path: &str) -> PathBuf {
    match root {
        Some(root) => root.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_root() {
        assert_eq!(under(None, CONFIG_DIR), Path::new("/etc/roster"));
        assert_eq!(
            under(Some(Path::new("/tmp/s")), CONFIG_FILE),
            Path::new("/tmp/s/etc/roster/roster.toml")
        );
        assert_eq!(
            secrets_file(Path::new("/var/lib/roster"), "web"),
            Path::new("/var/lib/roster/secrets/web.env")
        );
    }
}
