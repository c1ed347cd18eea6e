//! Who an agent runs as: the configured `user` and `group` resolved to
//! numbers (through the system's user database), the supplementary groups
//! `initgroups` would give, and the policy on root.
//!
//! The switch itself happens in the exec shim (`spawn::exec_shim`), after
//! posix_spawn, because posix_spawn cannot change users.

use std::ffi::CString;
use std::path::{Path, PathBuf};

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

/// Whether `account` may search (directories) or run (files) something
/// of this `mode`, `owner` and `group`, by the mode bits as the kernel
/// judges them without ACLs: the owner's bits for its owner, else the
/// group's for a member, else the others'; root may search anything and
/// run what has any execute bit.
pub fn may_execute(account: &Account, mode: u32, owner: u32, group: u32, is_dir: bool) -> bool {
    if account.uid == 0 {
        return is_dir || mode & 0o111 != 0;
    }
    let bits = if owner == account.uid {
        mode >> 6
    } else if group == account.gid || account.groups.contains(&group) {
        mode >> 3
    } else {
        mode
    };
    bits & 0o1 != 0
}

/// Why `account` could not reach `path` (absolute): the first directory
/// on the way it may not search, or the path itself when it may not enter
/// it (`directory`) or run it. Judged from the mode bits, as root (an ACL
/// could still allow it): for warnings, before anything starts. The exec
/// shim checks again as the user, for real. None when nothing is in the
/// way, or the path does not exist (another check says so).
pub fn unreachable(account: &Account, path: &Path, directory: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let name = &account.name;
    let described = |metadata: &std::fs::Metadata| {
        format!(
            "mode {:04o}, owner uid {}, group gid {}",
            metadata.mode() & 0o7777,
            metadata.uid(),
            metadata.gid()
        )
    };
    // The directories on the way as written, and as links resolve them.
    let mut on_the_way: Vec<PathBuf> = path.ancestors().skip(1).map(Path::to_path_buf).collect();
    if let Ok(real) = std::fs::canonicalize(path) {
        on_the_way.extend(real.ancestors().skip(1).map(Path::to_path_buf));
    }
    on_the_way.sort_by(|a, b| (a.as_os_str().len(), a).cmp(&(b.as_os_str().len(), b)));
    on_the_way.dedup();
    for directory in on_the_way {
        let Ok(metadata) = std::fs::metadata(&directory) else {
            continue;
        };
        if !may_execute(
            account,
            metadata.mode(),
            metadata.uid(),
            metadata.gid(),
            true,
        ) {
            return Some(format!(
                "{} is not searchable by {name} ({})",
                directory.display(),
                described(&metadata)
            ));
        }
    }
    let metadata = std::fs::metadata(path).ok()?;
    let allowed = metadata.is_dir() == directory
        && may_execute(
            account,
            metadata.mode(),
            metadata.uid(),
            metadata.gid(),
            directory,
        );
    (!allowed).then(|| {
        let what = if directory { "enter" } else { "run" };
        format!(
            "{name} may not {what} {} ({})",
            path.display(),
            described(&metadata)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(uid: u32, gid: u32, groups: &[u32]) -> Account {
        Account {
            name: "agent".into(),
            uid,
            gid,
            groups: groups.to_vec(),
            home: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn mode_bits_are_judged_owner_then_group_then_others() {
        let agent = account(1000, 1000, &[1000, 27]);
        // Owner class: its bits only, even when others may.
        assert!(may_execute(&agent, 0o700, 1000, 0, true));
        assert!(!may_execute(&agent, 0o077, 1000, 1000, true));
        // Group class: the primary group or a supplementary one.
        assert!(may_execute(&agent, 0o710, 0, 27, true));
        assert!(may_execute(&agent, 0o710, 0, 1000, false));
        assert!(!may_execute(&agent, 0o701, 0, 27, true));
        // Others.
        assert!(!may_execute(&agent, 0o700, 0, 0, true), "a 0700 /root");
        assert!(may_execute(&agent, 0o711, 0, 0, true));
        assert!(may_execute(&agent, 0o755, 0, 0, false));
        // Root searches anything, runs what has an execute bit.
        let root = account(0, 0, &[0]);
        assert!(may_execute(&root, 0o000, 5, 5, true));
        assert!(may_execute(&root, 0o100, 5, 5, false));
        assert!(!may_execute(&root, 0o644, 5, 5, false));
    }

    #[test]
    fn a_directory_in_the_way_is_named_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let closed = dir.path().join("closed");
        let inner = closed.join("project");
        std::fs::create_dir_all(&inner).expect("mkdir");
        let program = inner.join("tool");
        std::fs::write(&program, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let owner = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&closed).expect("stat").uid()
        };
        let stranger = account(owner.wrapping_add(4242), 4242, &[4242]);
        let why = unreachable(&stranger, &program, false).expect("blocked");
        assert!(
            why.starts_with(&format!("{} is not searchable by agent", closed.display())),
            "{why}"
        );
        assert!(why.contains("mode 0700"), "{why}");
        assert!(unreachable(&stranger, &inner, true).is_some());
        // Through a link, the real path counts too.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&inner, &link).expect("symlink");
        assert!(unreachable(&stranger, &link.join("tool"), false).is_some());
        // Opened up, nothing is in the way; a file is no directory to enter.
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        assert_eq!(unreachable(&stranger, &program, false), None);
        assert_eq!(unreachable(&stranger, &inner, true), None);
        assert!(unreachable(&stranger, &program, true).is_some());
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o744)).expect("chmod");
        let why = unreachable(&stranger, &program, false).expect("not executable");
        assert!(why.starts_with("agent may not run"), "{why}");
        // Missing: not this check's business.
        assert_eq!(unreachable(&stranger, &inner.join("missing"), false), None);
    }

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
