//! Issue #14 points 2 and 20: `install` and `uninstall --root DIR` follow
//! no link planted below DIR (refused, naming it; nothing outside DIR is
//! written or removed), `--purge` removes only what install made, and an
//! account made under DIR gets ids that are no other account's on this host.

use std::path::{Path, PathBuf};

use super::{mode_and_owner, ok, roster as run_roster, scratch_root, scratch_user, snapshot, text};

/// Every path under `dir` with its bytes (a file), its target (a link) or
/// nothing (a directory), sorted.
fn contents(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>, Option<PathBuf>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("stat");
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                pending.push(entry.expect("entry").path());
            }
            found.push((path, None, None));
        } else if metadata.file_type().is_symlink() {
            let target = std::fs::read_link(&path).expect("read link");
            found.push((path, None, Some(target)));
        } else {
            let bytes = std::fs::read(&path).expect("read");
            found.push((path, Some(bytes), None));
        }
    }
    found.sort();
    found
}

/// What a directory outside the scratch root holds: a unit of the host's
/// and another program's state, whose loss would hurt.
fn outside() -> tempfile::TempDir {
    let other = tempfile::Builder::new()
        .prefix("roster-outside-")
        .tempdir()
        .expect("outside dir");
    let system = other.path().join("system");
    std::fs::create_dir(&system).expect("system");
    std::fs::write(system.join("roster.service"), "# the host's own unit\n").expect("unit");
    std::fs::write(system.join("other.service"), "# another unit\n").expect("unit");
    let state = other.path().join("roster");
    std::fs::create_dir(&state).expect("state");
    std::fs::write(state.join("journal.db"), "not roster's\n").expect("journal");
    std::fs::write(state.join("precious"), "keep me\n").expect("precious");
    other
}

/// Runs roster, expecting exit 1 with an error naming `link` as a link to
/// `target`.
fn refused(args: &[&str], link: &Path, target: &Path) {
    let output = run_roster(args);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "roster {args:?}:\n{stdout}{stderr}"
    );
    let named = format!(
        "{} is a symbolic link (to {})",
        link.display(),
        target.display()
    );
    assert!(stderr.contains(&named), "{named:?} missing from:\n{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
}

#[test]
fn install_follows_no_link_below_the_root() {
    let test = "install::links::install_follows_no_link_below_the_root";
    for planted in ["etc/systemd", "var/lib"] {
        let Some(scratch) = scratch_root(test) else {
            return;
        };
        let root = scratch.path();
        let root_arg = root.to_str().expect("utf-8");
        let other = outside();
        let link = root.join(planted);
        std::fs::create_dir_all(link.parent().expect("parent")).expect("parent");
        std::os::unix::fs::symlink(other.path(), &link).expect("plant the link");
        let before = (snapshot(other.path()), contents(other.path()));
        let inside = snapshot(root);
        refused(
            &["install", "--root", root_arg, "--dry-run"],
            &link,
            other.path(),
        );
        refused(&["install", "--root", root_arg], &link, other.path());
        assert_eq!(
            before,
            (snapshot(other.path()), contents(other.path())),
            "install wrote outside {root_arg} through {planted}"
        );
        // Refused while planning: nothing made under the root either.
        assert_eq!(
            inside,
            snapshot(root),
            "a refused install changed {root_arg}"
        );
    }
}

#[test]
fn uninstall_follows_no_link_below_the_root() {
    let test = "install::links::uninstall_follows_no_link_below_the_root";
    let Some(scratch) = scratch_root(test) else {
        return;
    };
    let root = scratch.path();
    let root_arg = root.to_str().expect("utf-8");
    ok(&["install", "--root", root_arg]);
    let aside = tempfile::Builder::new()
        .prefix("roster-aside-")
        .tempdir()
        .expect("aside");

    // DIR/etc/systemd swapped for a link to the host's units: uninstall
    // does not remove the host's unit through it.
    let other = outside();
    let systemd = root.join("etc/systemd");
    std::fs::rename(&systemd, aside.path().join("systemd")).expect("move aside");
    std::os::unix::fs::symlink(other.path(), &systemd).expect("plant the link");
    let before = (snapshot(other.path()), contents(other.path()));
    refused(
        &["uninstall", "--root", root_arg, "--dry-run"],
        &systemd,
        other.path(),
    );
    refused(&["uninstall", "--root", root_arg], &systemd, other.path());
    refused(
        &["uninstall", "--root", root_arg, "--purge"],
        &systemd,
        other.path(),
    );
    assert_eq!(before, (snapshot(other.path()), contents(other.path())));
    std::fs::remove_file(&systemd).expect("remove the link");
    std::fs::rename(aside.path().join("systemd"), &systemd).expect("move back");

    // DIR/var/lib swapped for a link to another program's state: purge
    // removes nothing through it, and its dry run does not pretend to.
    let lib = root.join("var/lib");
    std::fs::rename(&lib, aside.path().join("lib")).expect("move aside");
    std::os::unix::fs::symlink(other.path(), &lib).expect("plant the link");
    let inside = snapshot(root);
    refused(
        &["uninstall", "--root", root_arg, "--purge", "--dry-run"],
        &lib,
        other.path(),
    );
    refused(
        &["uninstall", "--root", root_arg, "--purge"],
        &lib,
        other.path(),
    );
    assert_eq!(before, (snapshot(other.path()), contents(other.path())));
    assert_eq!(inside, snapshot(root), "a refused purge changed {root_arg}");
    std::fs::remove_file(&lib).expect("remove the link");
    std::fs::rename(aside.path().join("lib"), &lib).expect("move back");

    // With the links gone, the purge goes through.
    ok(&["uninstall", "--root", root_arg, "--purge"]);
    assert!(!root.join("var/lib/roster").exists());
    assert!(!root.join("etc/systemd/system/roster.service").exists());
    assert_eq!(before, (snapshot(other.path()), contents(other.path())));
}

#[test]
fn purge_removes_only_what_install_made() {
    let test = "install::links::purge_removes_only_what_install_made";
    let Some(scratch) = scratch_root(test) else {
        return;
    };
    let root = scratch.path();
    let root_arg = root.to_str().expect("utf-8");
    // A home that was there before install, with a file roster never made.
    let home = root.join("var/lib/roster");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o750))
        .expect("chmod");
    let precious = home.join("precious.txt");
    std::fs::write(&precious, "not roster's\n").expect("precious");
    ok(&["install", "--root", root_arg]);
    let record = root.join("etc/roster/.installed");
    assert_eq!(mode_and_owner(&record), (0o600, 0, 0), "root's alone");
    let recorded = std::fs::read_to_string(&record).expect("record");
    assert!(
        recorded.contains("\ntree /var/lib/roster/logs\n"),
        "{recorded}"
    );
    assert!(!recorded.contains("\ntree /var/lib/roster\n"), "{recorded}");
    // What the daemon and the operator add later.
    std::fs::write(home.join("logs/web.log"), "a line\n").expect("a log");
    let env_file = root.join("etc/roster/web.env");
    std::fs::write(&env_file, "KEY=mine\n").expect("an env_file");

    let shown = |path: &str| format!("{root_arg}/{path}");
    let dry = ok(&["uninstall", "--root", root_arg, "--purge", "--dry-run"]);
    let before = snapshot(root);
    for line in [
        format!("  remove {}", shown("etc/systemd/system/roster.service")),
        format!("  remove {} and all in it", shown("var/lib/roster/logs")),
        format!("  remove {} and all in it", shown("var/lib/roster/secrets")),
        format!("  remove {}", shown("etc/roster/roster.toml")),
        "  delete user agent-runner and its group".to_owned(),
        format!("  remove {}", shown("etc/roster/.installed")),
        format!(
            "would keep {}: roster install did not make it (it was there before)",
            shown("var/lib/roster")
        ),
        format!("would keep {}: not empty (web.env)", shown("etc/roster")),
    ] {
        assert!(
            dry.lines().any(|got| got == line),
            "{line:?} missing:\n{dry}"
        );
    }
    let whole_home = format!("  remove {} and all in it", shown("var/lib/roster"));
    assert!(!dry.lines().any(|line| line == whole_home), "{dry}");
    assert_eq!(before, snapshot(root), "a dry run changed files");

    let out = ok(&["uninstall", "--root", root_arg, "--purge"]);
    for line in [
        format!("remove {} and all in it", shown("var/lib/roster/logs")),
        format!(
            "kept {}: roster install did not make it (it was there before)",
            shown("var/lib/roster")
        ),
        format!("kept {}: not empty (web.env)", shown("etc/roster")),
    ] {
        assert!(
            out.lines().any(|got| got == line),
            "{line:?} missing:\n{out}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&precious).expect("precious survives"),
        "not roster's\n"
    );
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("the env_file survives"),
        "KEY=mine\n"
    );
    for gone in [
        "var/lib/roster/logs",
        "var/lib/roster/secrets",
        "etc/roster/roster.toml",
        "etc/roster/.installed",
        "etc/systemd",
    ] {
        assert!(!root.join(gone).exists(), "{gone} is left");
    }
    assert!(
        scratch_user(root, "agent-runner").is_none(),
        "the user is gone"
    );
}

/// The group `name` of DIR/etc/group: its gid.
fn scratch_group(root: &Path, name: &str) -> Option<u32> {
    let group = std::fs::read_to_string(root.join("etc/group")).ok()?;
    group.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name)).then(|| fields.get(2)?.parse().ok())?
    })
}

#[test]
fn accounts_made_under_a_root_get_ids_no_one_has_on_this_host() {
    let test = "install::links::accounts_made_under_a_root_get_ids_no_one_has_on_this_host";
    let Some(scratch) = scratch_root(test) else {
        return;
    };
    let root = scratch.path();
    let root_arg = root.to_str().expect("utf-8");
    // The highest gid a group of this host has: the one useradd --prefix
    // alone would give DIR's new group, when DIR's range ends there.
    let taken = std::fs::read_to_string("/etc/group")
        .expect("/etc/group")
        .lines()
        .filter_map(|line| line.split(':').nth(2)?.parse::<u32>().ok())
        .filter(|gid| (50..60000).contains(gid))
        .max()
        .expect("a group of this host with a gid in 50..60000");
    let low = taken - 40;
    std::fs::create_dir(root.join("etc")).expect("etc");
    std::fs::write(
        root.join("etc/login.defs"),
        format!("SYS_UID_MIN {low}\nSYS_UID_MAX {taken}\nSYS_GID_MIN {low}\nSYS_GID_MAX {taken}\n"),
    )
    .expect("login.defs");

    let dry = ok(&["install", "--root", root_arg, "--dry-run"]);
    ok(&["install", "--root", root_arg]);
    let gid = scratch_group(root, "agent-runner").expect("agent-runner in DIR/etc/group");
    let (uid, primary) =
        scratch_user(root, "agent-runner").expect("agent-runner in DIR/etc/passwd");
    assert_eq!(primary, gid);
    assert!(
        (low..=taken).contains(&gid),
        "gid {gid} is outside DIR's range"
    );
    // The intended group owns DIR/etc/roster, here too: its gid is no
    // other group's on this host.
    assert_eq!(mode_and_owner(&root.join("etc/roster")), (0o750, 0, gid));
    let host_group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .expect("group lookup")
        .map(|group| group.name);
    assert!(
        host_group.is_none() || host_group.as_deref() == Some("agent-runner"),
        "DIR/etc/roster's gid {gid} is the group {host_group:?} on this host"
    );
    let host_user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .expect("user lookup")
        .map(|user| user.name);
    assert!(
        host_user.is_none() || host_user.as_deref() == Some("agent-runner"),
        "agent-runner's uid {uid} is the user {host_user:?} on this host"
    );
    assert!(
        dry.contains(&format!("create system group agent-runner (gid {gid})")),
        "{dry}"
    );
    // Nothing to change the second time: the ids are DIR's now.
    assert_eq!(
        ok(&["install", "--root", root_arg]).trim(),
        "nothing to change"
    );
}
