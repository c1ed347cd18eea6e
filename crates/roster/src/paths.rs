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
/// What `roster install` made (one entry a line), so that `roster
/// uninstall --purge` removes that and nothing else. Root's, 0600, in the
/// root-owned config directory: a daemon user cannot add to it.
pub const INSTALL_RECORD: &str = "/etc/roster/.installed";

/// Whether `path` is one of the system's own directories on the way to
/// roster's paths (`/etc`, `/etc/systemd`, `/etc/systemd/system`, `/var`,
/// `/var/lib`): there before roster, and never roster's to remove.
pub fn system_directory(path: &Path) -> bool {
    [CONFIG_DIR, STATE_HOME, UNIT_FILE].iter().any(|own| {
        Path::new(own)
            .ancestors()
            .skip(1)
            .any(|ancestor| ancestor == path && ancestor != Path::new("/"))
    })
}

/// The directory, inside a home, that holds agents' secrets: one
/// `NAME.env` file of `KEY=VALUE` lines per agent (`roster secret`).
pub const SECRETS_DIR: &str = "secrets";

/// An agent's secrets file in `home`.
pub fn secrets_file(home: &Path, agent: &str) -> PathBuf {
    home.join(SECRETS_DIR).join(format!("{agent}.env"))
}

/// An agent's log file in `home`: where roster writes it, and where units
/// from `roster export systemd` append the agent's output.
pub fn log_file(home: &Path, agent: &str) -> PathBuf {
    home.join("logs").join(format!("{agent}.log"))
}

/// An agent's stderr log in `home` (`stderr = "separate"`).
pub fn err_log_file(home: &Path, agent: &str) -> PathBuf {
    let suffix = roster_core::name::STDERR_SUFFIX;
    home.join("logs").join(format!("{agent}{suffix}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_a_home() {
        assert_eq!(
            secrets_file(Path::new("/var/lib/roster"), "web"),
            Path::new("/var/lib/roster/secrets/web.env")
        );
        assert_eq!(
            log_file(Path::new("/srv/h"), "web"),
            Path::new("/srv/h/logs/web.log")
        );
        assert_eq!(
            err_log_file(Path::new("/srv/h"), "web"),
            Path::new("/srv/h/logs/web.err.log")
        );
    }

    #[test]
    fn the_system_directories_on_the_way() {
        for system in [
            "/etc",
            "/etc/systemd",
            "/etc/systemd/system",
            "/var",
            "/var/lib",
        ] {
            assert!(system_directory(Path::new(system)), "{system}");
        }
        for not in [
            "/",
            "/etc/roster",
            "/var/lib/roster",
            UNIT_FILE,
            "/usr",
            "/var/log",
        ] {
            assert!(!system_directory(Path::new(not)), "{not}");
        }
    }
}
