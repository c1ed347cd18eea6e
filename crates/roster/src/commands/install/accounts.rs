//! Users and groups: the system's, or with `--root DIR` those of
//! DIR/etc/passwd and DIR/etc/group (read without following links), and
//! the ids an account made under DIR gets.
//!
//! Under DIR, `useradd --prefix` alone would pick ids from DIR's files
//! only, often empty: the first system id (999), which on this host is
//! usually another group (systemd-journal), so the files install gives to
//! DIR's `agent-runner` would be that group's here. So install picks the
//! ids itself: the host's own ids for that name when it has the account and
//! DIR does not use them, else the highest id in DIR's system range
//! (DIR/etc/login.defs) that neither DIR nor this host uses.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;

use anyhow::{Context, Result};
use nix::unistd::{Gid, Group, Uid, User};

use super::tree::Tree;

/// `user:group` by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub user: String,
    pub group: String,
}

impl Owner {
    pub fn new(user: &str, group: &str) -> Self {
        Self {
            user: user.to_owned(),
            group: group.to_owned(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.user, self.group)
    }
}

/// Which of the two databases.
#[derive(Clone, Copy, Debug)]
enum Database {
    Users,
    Groups,
}

/// Users and groups of the system, or of the root the tree is under.
pub struct Accounts<'a> {
    tree: &'a Tree,
}

impl<'a> Accounts<'a> {
    pub fn new(tree: &'a Tree) -> Self {
        Self { tree }
    }

    /// `(uid, primary gid)` of a user, None when missing.
    pub fn user(&self, name: &str) -> Result<Option<(u32, u32)>> {
        if name == "root" {
            return Ok(Some((0, 0)));
        }
        if self.tree.root().is_none() {
            return Ok(User::from_name(name)
                .with_context(|| format!("looking up the user {name}"))?
                .map(|user| (user.uid.as_raw(), user.gid.as_raw())));
        }
        Ok(self
            .entries(Database::Users)?
            .into_iter()
            .find_map(|fields| {
                (fields.first()? == name)
                    .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
            }))
    }

    /// The gid of a group, None when missing.
    pub fn group(&self, name: &str) -> Result<Option<u32>> {
        if name == "root" {
            return Ok(Some(0));
        }
        if self.tree.root().is_none() {
            return Ok(Group::from_name(name)
                .with_context(|| format!("looking up the group {name}"))?
                .map(|group| group.gid.as_raw()));
        }
        Ok(self
            .entries(Database::Groups)?
            .into_iter()
            .find_map(|fields| (fields.first()? == name).then(|| fields.get(2)?.parse().ok())?))
    }

    /// The name of a user's primary group.
    pub fn primary_group(&self, user: &str) -> Result<String> {
        if user == "root" {
            return Ok("root".into());
        }
        let Some((_, gid)) = self.user(user)? else {
            // Created by this install with a group of its own name.
            return Ok(user.to_owned());
        };
        if self.tree.root().is_none() {
            return Ok(Group::from_gid(Gid::from_raw(gid))
                .with_context(|| format!("looking up group {gid}"))?
                .map(|group| group.name)
                .unwrap_or_else(|| gid.to_string()));
        }
        Ok(self
            .entries(Database::Groups)?
            .into_iter()
            .find(|fields| fields.get(2) == Some(&gid.to_string()))
            .and_then(|fields| fields.into_iter().next())
            .unwrap_or_else(|| gid.to_string()))
    }

    /// Numeric ids of an owner; both must exist by now.
    pub fn ids(&self, owner: &Owner) -> Result<(u32, u32)> {
        let (uid, _) = self
            .user(&owner.user)?
            .with_context(|| format!("no user {}", owner.user))?;
        let gid = self
            .group(&owner.group)?
            .with_context(|| format!("no group {}", owner.group))?;
        Ok((uid, gid))
    }

    /// The `--prefix DIR` arguments of useradd and friends.
    pub fn prefix_args(&self) -> Vec<String> {
        match self.tree.root() {
            Some(root) => vec!["--prefix".into(), root.display().to_string()],
            None => Vec::new(),
        }
    }

    /// The gid a group `name` made under DIR gets; `None` without a root
    /// (groupadd picks it, from the system's own files).
    pub fn new_gid(&self, name: &str) -> Result<Option<u32>> {
        self.new_id(Database::Groups, name)
    }

    /// The uid a user `name` made under DIR gets; `None` without a root.
    pub fn new_uid(&self, name: &str) -> Result<Option<u32>> {
        self.new_id(Database::Users, name)
    }

    fn new_id(&self, database: Database, name: &str) -> Result<Option<u32>> {
        let Some(root) = self.tree.root() else {
            return Ok(None);
        };
        let taken_here: BTreeSet<u32> = self
            .entries(database)?
            .iter()
            .filter_map(|fields| fields.get(2)?.parse().ok())
            .collect();
        let login_defs = self.tree.read(Path::new("/etc/login.defs"))?;
        let login_defs = String::from_utf8_lossy(login_defs.as_deref().unwrap_or_default());
        let (range, preferred) = match database {
            Database::Users => (
                system_range(&login_defs, "SYS_UID_MIN", "SYS_UID_MAX"),
                User::from_name(name)
                    .ok()
                    .flatten()
                    .map(|user| user.uid.as_raw()),
            ),
            Database::Groups => (
                system_range(&login_defs, "SYS_GID_MIN", "SYS_GID_MAX"),
                Group::from_name(name)
                    .ok()
                    .flatten()
                    .map(|group| group.gid.as_raw()),
            ),
        };
        // A failed lookup counts as taken: never hand out an id in doubt.
        let taken_on_host = |id: u32| match database {
            Database::Users => !matches!(User::from_uid(Uid::from_raw(id)), Ok(None)),
            Database::Groups => !matches!(Group::from_gid(Gid::from_raw(id)), Ok(None)),
        };
        let what = match database {
            Database::Users => "uid",
            Database::Groups => "gid",
        };
        pick_id(range.clone(), preferred, &taken_here, taken_on_host)
            .map(Some)
            .with_context(|| {
                format!(
                    "no system {what} in {}..={} is free both in {} and on this host, for {name}\n  hint: widen SYS_{key}_MIN/SYS_{key}_MAX in {}/etc/login.defs, or create {name} in {} yourself",
                    range.start(),
                    range.end(),
                    root.display(),
                    root.display(),
                    root.display(),
                    key = what.to_uppercase(),
                )
            })
    }

    /// The `:`-separated lines of DIR/etc/passwd or DIR/etc/group.
    fn entries(&self, database: Database) -> Result<Vec<Vec<String>>> {
        let file = match database {
            Database::Users => "/etc/passwd",
            Database::Groups => "/etc/group",
        };
        let text = self.tree.read(Path::new(file))?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .map(|line| line.split(':').map(str::to_owned).collect())
            .collect())
    }
}

/// A system id range from login.defs text, with shadow's defaults
/// (101..=999) for what it does not say.
fn system_range(login_defs: &str, min_key: &str, max_key: &str) -> RangeInclusive<u32> {
    let value = |key: &str| {
        login_defs.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(key))
                .then(|| words.next()?.parse::<u32>().ok())
                .flatten()
        })
    };
    value(min_key).unwrap_or(101)..=value(max_key).unwrap_or(999)
}

/// The id a new account gets: `preferred` (the host's id for that name)
/// when DIR does not use it, else the highest in `range` that neither DIR
/// nor the host uses.
pub fn pick_id(
    range: RangeInclusive<u32>,
    preferred: Option<u32>,
    taken_here: &BTreeSet<u32>,
    mut taken_on_host: impl FnMut(u32) -> bool,
) -> Option<u32> {
    if let Some(id) = preferred.filter(|id| *id != 0 && !taken_here.contains(id)) {
        return Some(id);
    }
    range
        .rev()
        .filter(|id| *id != 0)
        .find(|id| !taken_here.contains(id) && !taken_on_host(*id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_read_from_a_root() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "svc:x:998:997::/nonexistent:/usr/sbin/nologin\n",
        )
        .expect("passwd");
        std::fs::write(dir.path().join("etc/group"), "svcgrp:x:997:\n").expect("group");
        let tree = Tree::new(Some(dir.path()), "install");
        let accounts = Accounts::new(&tree);
        assert_eq!(accounts.user("svc").expect("read"), Some((998, 997)));
        assert_eq!(accounts.user("other").expect("read"), None);
        assert_eq!(accounts.group("svcgrp").expect("read"), Some(997));
        assert_eq!(accounts.primary_group("svc").expect("read"), "svcgrp");
        assert_eq!(accounts.user("root").expect("root"), Some((0, 0)));
    }

    #[test]
    fn a_linked_account_file_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).expect("link");
        let tree = Tree::new(Some(dir.path()), "install");
        let error = Accounts::new(&tree)
            .user("svc")
            .expect_err("through a link");
        assert!(
            error
                .to_string()
                .contains("etc is a symbolic link (to /etc)"),
            "{error:#}"
        );
    }

    #[test]
    fn system_ranges_come_from_login_defs() {
        assert_eq!(system_range("", "SYS_GID_MIN", "SYS_GID_MAX"), 101..=999);
        assert_eq!(
            system_range(
                "# x\nSYS_GID_MIN   200\nSYS_GID_MAX\t300\nSYS_UID_MAX 5\n",
                "SYS_GID_MIN",
                "SYS_GID_MAX"
            ),
            200..=300
        );
    }

    #[test]
    fn new_ids_avoid_the_root_s_and_the_host_s() {
        let here: BTreeSet<u32> = [999, 995].into();
        let host = |id: u32| [998, 997].contains(&id);
        assert_eq!(pick_id(101..=999, None, &here, host), Some(996));
        // The host's own id for the name, unless DIR uses it.
        assert_eq!(pick_id(101..=999, Some(1500), &here, host), Some(1500));
        assert_eq!(pick_id(101..=999, Some(995), &here, host), Some(996));
        assert_eq!(pick_id(997..=999, None, &here, host), None);
        assert_eq!(pick_id(0..=0, None, &BTreeSet::new(), |_| false), None);
    }
}
