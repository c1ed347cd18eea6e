//! Who an agent runs as: the configured `user` and `group` resolved to
//! numbers (through the system's user database), the supplementary groups
//! `initgroups` would give, and the policy on root.
//!
//! The switch itself happens in the exec shim (`spawn::exec_shim`), after
//! posix_spawn, because posix_spawn cannot change users.

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

use roster_core::hardening::Identity;

/// A resolved account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The user's name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// The gid the agent runs with (the configured group, or the user's).
    pub gid: u32,
    /// Supplementary groups (the user's, as initgroups gives them).
    pub groups: Vec<u32>,
    /// The user's home directory, for `HOME`.
    pub home: PathBuf,
}

/// Whether the installed daemon runs (`roster install` sets it in the
/// unit): then agents never run as root unless the config says so.
pub const INSTALLED: &str = "ROSTER_INSTALLED";

/// True when this daemon was started by the unit `roster install` wrote.
pub fn installed() -> bool {
    std::env::var(INSTALLED).is_ok_and(|value| value == "1")
}

/// The account an agent runs as: the configured one, or the daemon's own.
pub fn resolve(identity: &Identity) -> Result<Account, String> {
    let user = match identity.user.as_deref() {
        None => User::from_uid(Uid::effective()),
        Some(raw) => match raw.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(raw),
        },
    }
    .map_err(|errno| format!("looking up the user: {errno}"))?;
    let Some(user) = user else {
        let name = identity.user.as_deref().unwrap_or("(the daemon's uid)");
        return Err(format!(
            "no user {name} on this machine\n  hint: create it (useradd -r -M -U -s /usr/sbin/nologin {name}), or set create_user = true"
        ));
    };
    let gid = match identity.group.as_deref() {
        None => user.gid,
        Some(raw) => {
            let group = match raw.parse::<u32>() {
                Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
                Err(_) => Group::from_name(raw),
            }
            .map_err(|errno| format!("looking up the group: {errno}"))?;
            match group {
                Some(group) => group.gid,
                None => {
                    return Err(format!(
                        "no group {raw} on this machine\n  hint: create it (groupadd -r {raw}) or change `group`"
                    ))
                }
            }
        }
    };
    let groups = CString::new(user.name.as_str())
        .ok()
        .and_then(|name| getgrouplist(&name, gid).ok())
        .unwrap_or_else(|| vec![gid]);
    let mut groups: Vec<u32> = groups.into_iter().map(Gid::as_raw).collect();
    if !groups.contains(&gid.as_raw()) {
        groups.push(gid.as_raw());
    }
    groups.sort_unstable();
    groups.dedup();
    Ok(Account {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
        groups,
        home: user.dir,
    })
}

/// Whether starting the agent as `account` needs the shim to switch
/// (another uid or gid than the daemon's, or other groups).
pub fn needs_switch(account: &Account) -> bool {
    account.uid != Uid::effective().as_raw() || account.gid != Gid::effective().as_raw()
}

/// Runs a command to its end: `Ok(true)` when it exits 0.
pub type RunCommand<'a> = &'a dyn Fn(&[String]) -> Result<bool, String>;

/// Before a config is applied (off the loop): creates the users agents
/// ask for with `create_user = true` (`useradd --system`, no login, no
/// home), and gives each such agent its own directory, owned by its user
/// and closed to everyone else (mode 0700): its `cwd`, or `shared/` for an
/// agent shipped as releases. Returns lines for the journal (what was done,
/// or why not).
pub fn prepare_accounts(
    home: &std::path::Path,
    config: &roster_core::Config,
    run: RunCommand<'_>,
) -> Vec<(roster_core::AgentName, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut notes = Vec::new();
    for (agent, spec) in &config.agents {
        let identity = &spec.identity;
        let Some(name) = identity.user.as_deref().filter(|_| identity.create_user) else {
            continue;
        };
        if name.parse::<u32>().is_ok() || name == "root" {
            continue;
        }
        if matches!(User::from_name(name), Ok(None)) {
            let argv: Vec<String> = [
                "useradd",
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                "--home-dir",
                "/nonexistent",
                name,
            ]
            .iter()
            .map(|word| (*word).to_owned())
            .collect();
            match run(&argv) {
                Ok(true) => notes.push((agent.clone(), format!("created the system user {name}"))),
                Ok(false) => {
                    notes.push((
                        agent.clone(),
                        format!("useradd {name} failed; the agent cannot start"),
                    ));
                    continue;
                }
                Err(error) => {
                    notes.push((
                        agent.clone(),
                        format!("could not run useradd for {name}: {error}"),
                    ));
                    continue;
                }
            }
        }
        let account = match resolve(identity) {
            Ok(account) => account,
            Err(error) => {
                notes.push((agent.clone(), error));
                continue;
            }
        };
        let directory = if spec.deploy.is_some() {
            crate::releases::Releases::new(home, agent).shared_dir()
        } else {
            spec.cwd.clone()
        };
        let owned = std::fs::create_dir_all(&directory)
            .and_then(|()| {
                std::os::unix::fs::chown(&directory, Some(account.uid), Some(account.gid))
            })
            .and_then(|()| {
                std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700))
            });
        if let Err(error) = owned {
            notes.push((
                agent.clone(),
                format!("giving {} to {name}: {error}", directory.display()),
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_daemons_own_user_and_root_by_name_and_number() {
        let me = resolve(&Identity::default()).expect("own user");
        assert_eq!(me.uid, Uid::effective().as_raw());
        assert!(!needs_switch(&me) || me.gid != Gid::effective().as_raw());
        let root = resolve(&Identity {
            user: Some("root".into()),
            ..Identity::default()
        })
        .expect("root");
        assert_eq!((root.uid, root.gid), (0, 0));
        let by_number = resolve(&Identity {
            user: Some("0".into()),
            ..Identity::default()
        })
        .expect("uid 0");
        assert_eq!(by_number.name, "root");
        let missing = resolve(&Identity {
            user: Some("no-such-user-roster".into()),
            ..Identity::default()
        })
        .expect_err("missing");
        assert!(missing.contains("create_user"), "{missing}");
    }
}
