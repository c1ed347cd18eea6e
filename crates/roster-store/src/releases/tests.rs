use super::*;
use std::io::Read;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};

fn store() -> (tempfile::TempDir, Releases) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&home)
        .unwrap();
    let releases = Releases::new(&home, &AgentName::new("scout").unwrap());
    (dir, releases)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn write(path: &Path, contents: &str, mode: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// No release directory was left behind.
fn assert_nothing_staged(releases: &Releases) {
    let root = releases.dir().join("releases");
    if let Ok(listing) = std::fs::read_dir(&root) {
        let names: Vec<_> = listing.map(|item| item.unwrap().file_name()).collect();
        assert!(names.is_empty(), "left behind: {names:?}");
    }
}

/// A header whose name and link name are set byte for byte, so the tar
/// crate's own path checks do not stop a test from writing `..`, absolute
/// paths and the like.
fn raw_header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_mtime(0);
    header.set_cksum();
    header
}

/// A header and the entry's contents.
type TarEntry = (tar::Header, Vec<u8>);

fn file_header(name: &str, mode: u32, contents: &[u8]) -> TarEntry {
    let mut header = raw_header(
        name.as_bytes(),
        tar::EntryType::Regular,
        contents.len() as u64,
        b"",
    );
    header.set_mode(mode);
    header.set_cksum();
    (header, contents.to_vec())
}

fn tarball(path: &Path, entries: &[TarEntry]) {
    let file = File::create(path).unwrap();
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (header, data) in entries {
        builder.append(header, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn a_directory_is_copied_with_its_modes_and_in_release_links() {
    let (dir, releases) = store();
    let source = dir.path().join("src");
    write(&source.join("run.sh"), "#!/bin/sh\n", 0o755);
    write(&source.join("config/app.toml"), "a = 1\n", 0o640);
    write(&source.join("suid"), "x", 0o4755);
    symlink("config/app.toml", source.join("app.toml")).unwrap();
    symlink("../run.sh", source.join("config/run")).unwrap();

    let version = releases.stage(&source, Some("v1"), 0).unwrap();
    assert_eq!(version, "v1");
    let staged = releases.release_dir("v1");
    assert_eq!(staged, releases.dir().join("releases/v1"));
    assert_eq!(
        std::fs::read_to_string(staged.join("run.sh")).unwrap(),
        "#!/bin/sh\n"
    );
    assert_eq!(mode(&staged.join("run.sh")), 0o755);
    assert_eq!(mode(&staged.join("config/app.toml")), 0o640);
    assert_eq!(mode(&staged.join("suid")), 0o755, "setuid is stripped");
    assert_eq!(
        std::fs::read_link(staged.join("app.toml")).unwrap(),
        Path::new("config/app.toml")
    );
    assert_eq!(
        std::fs::read_to_string(staged.join("config/run")).unwrap(),
        "#!/bin/sh\n"
    );
    assert!(releases.shared_dir().is_dir());
    assert_eq!(
        mode(releases.dir()),
        0o711,
        "others may traverse, never list"
    );
    // Staging does not touch the manifest.
    assert!(releases.list().unwrap().is_empty());
}

#[test]
fn a_directory_with_an_escaping_link_or_a_fifo_is_refused() {
    let (dir, releases) = store();
    let source = dir.path().join("src");
    write(&source.join("run.sh"), "x", 0o755);
    symlink("/etc/passwd", source.join("passwd")).unwrap();
    let error = releases.stage(&source, Some("v1"), 0).unwrap_err();
    assert!(
        matches!(&error, ReleaseError::UnsafeEntry { entry, .. } if entry == "passwd"),
        "{error}"
    );
    assert!(error.to_string().contains("hint:"), "{error}");
    assert_nothing_staged(&releases);

    std::fs::remove_file(source.join("passwd")).unwrap();
    std::fs::create_dir(source.join("sub")).unwrap();
    symlink("../../x", source.join("sub/up")).unwrap();
    let error = releases.stage(&source, Some("v1"), 0).unwrap_err();
    assert!(error.to_string().contains("sub/up"), "{error}");
    assert_nothing_staged(&releases);

    std::fs::remove_file(source.join("sub/up")).unwrap();
    nix::unistd::mkfifo(&source.join("sub/pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let error = releases.stage(&source, Some("v1"), 0).unwrap_err();
    assert!(
        error.to_string().contains("sub/pipe") && error.to_string().contains("fifo"),
        "{error}"
    );
    assert_nothing_staged(&releases);
}

#[test]
fn a_tarball_is_unpacked_and_gets_a_default_version() {
    let (dir, releases) = store();
    let archive = dir.path().join("release.tar.gz");
    tarball(
        &archive,
        &[
            (raw_header(b"./", tar::EntryType::Directory, 0, b""), vec![]),
            (
                raw_header(b"./bin/", tar::EntryType::Directory, 0, b""),
                vec![],
            ),
            file_header("./bin/agent", 0o4755, b"#!/bin/sh\necho hi\n"),
            file_header("lib/data.txt", 0o600, b"data"),
            (
                raw_header(b"agent", tar::EntryType::Symlink, 0, b"bin/agent"),
                vec![],
            ),
            (
                raw_header(b"lib/copy.txt", tar::EntryType::Link, 0, b"lib/data.txt"),
                vec![],
            ),
        ],
    );
    let now = 1_795_910_400 + 3_723; // 2026-11-29T01:02:03Z
    let version = releases.stage(&archive, None, now).unwrap();
    let (stamp, hash) = version.split_once('-').unwrap();
    assert_eq!(stamp, "20261129T010203Z");
    assert_eq!(hash.len(), 8);
    assert!(hash
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    Releases::check_version(&version).unwrap();

    let staged = releases.release_dir(&version);
    assert_eq!(mode(&staged.join("bin/agent")), 0o755);
    assert_eq!(mode(&staged.join("lib/data.txt")), 0o600);
    assert_eq!(
        std::fs::read_to_string(staged.join("lib/copy.txt")).unwrap(),
        "data"
    );
    assert_eq!(
        std::fs::read_link(staged.join("agent")).unwrap(),
        Path::new("bin/agent")
    );
    assert!(staged.join("lib").is_dir());

    // The same bytes at the same time: the same version, which exists.
    let error = releases.stage(&archive, None, now).unwrap_err();
    assert!(matches!(error, ReleaseError::Exists { .. }), "{error}");

    // The source itself may be a link (nothing inside it may).
    let latest = dir.path().join("latest.tgz");
    symlink(&archive, &latest).unwrap();
    assert_eq!(releases.stage(&latest, Some("v2"), now).unwrap(), "v2");
    assert!(releases.release_dir("v2").join("bin/agent").is_file());
}

#[test]
fn unsafe_tar_entries_are_refused_before_anything_is_created() {
    use tar::EntryType::{Char, Directory, Link, Symlink};
    let (dir, releases) = store();
    let cases: Vec<(&str, Vec<TarEntry>, &str)> = vec![
        (
            "dotdot",
            vec![
                file_header("ok.txt", 0o644, b"fine"),
                file_header("a/../../evil", 0o644, b"x"),
            ],
            "a/../../evil",
        ),
        (
            "absolute",
            vec![file_header("/etc/evil", 0o644, b"x")],
            "/etc/evil",
        ),
        (
            "device",
            vec![(raw_header(b"dev/null0", Char, 0, b""), vec![])],
            "dev/null0",
        ),
        (
            "absolute-link",
            vec![(raw_header(b"passwd", Symlink, 0, b"/etc/passwd"), vec![])],
            "passwd",
        ),
        (
            "escaping-link",
            vec![(raw_header(b"a/up", Symlink, 0, b"../../x"), vec![])],
            "a/up",
        ),
        (
            "hard-link-out",
            vec![(raw_header(b"h", Link, 0, b"../x"), vec![])],
            "h",
        ),
        (
            "through-links",
            vec![
                (raw_header(b"d", Symlink, 0, b"."), vec![]),
                (raw_header(b"e/", Directory, 0, b""), vec![]),
                (raw_header(b"e/l", Symlink, 0, b"../d/.."), vec![]),
            ],
            "e/l",
        ),
        (
            "under-a-link",
            vec![
                (raw_header(b"s", Symlink, 0, b"e"), vec![]),
                (raw_header(b"e/", Directory, 0, b""), vec![]),
                file_header("s/file", 0o644, b"x"),
            ],
            "s/file",
        ),
    ];
    for (name, entries, offending) in cases {
        let archive = dir.path().join(format!("{name}.tgz"));
        tarball(&archive, &entries);
        let error = releases.stage(&archive, Some("v1"), 0).unwrap_err();
        assert!(
            matches!(&error, ReleaseError::UnsafeEntry { entry, .. } if entry == offending),
            "{name}: {error}"
        );
        assert!(error.to_string().contains(offending), "{name}: {error}");
        assert!(!releases.release_dir("v1").exists(), "{name}");
        assert_nothing_staged(&releases);
    }
}

#[test]
fn sources_and_versions_are_checked() {
    let (dir, releases) = store();
    let missing = dir.path().join("nope.tar.gz");
    let error = releases.stage(&missing, Some("v1"), 0).unwrap_err();
    assert!(matches!(error, ReleaseError::SourceMissing { .. }));
    assert!(error.to_string().contains("nope.tar.gz"), "{error}");

    let plain = dir.path().join("release.zip");
    write(&plain, "PK", 0o644);
    let error = releases.stage(&plain, Some("v1"), 0).unwrap_err();
    assert!(matches!(error, ReleaseError::SourceKind { .. }), "{error}");

    let source = dir.path().join("src");
    write(&source.join("run.sh"), "x", 0o755);
    releases.stage(&source, Some("v1"), 0).unwrap();
    let error = releases.stage(&source, Some("v1"), 0).unwrap_err();
    assert!(matches!(error, ReleaseError::Exists { .. }), "{error}");
    // Known to the manifest only (its directory is gone): still taken.
    releases
        .record("v2", "failed", Some("build"), None)
        .unwrap();
    let error = releases.stage(&source, Some("v2"), 0).unwrap_err();
    assert!(matches!(error, ReleaseError::Exists { .. }), "{error}");

    for bad in [
        "",
        &"a".repeat(65),
        "-x",
        ".x",
        "a/b",
        "a..b",
        "current",
        "a b",
        "é",
    ] {
        let error = Releases::check_version(bad).unwrap_err();
        assert!(matches!(error, ReleaseError::BadVersion { .. }), "{bad}");
        assert!(releases.stage(&source, Some(bad), 0).is_err(), "{bad}");
    }
    for good in [
        "v1.2_3-x",
        "1",
        &"a".repeat(64),
        "20261129T010203Z-abcdef01",
    ] {
        Releases::check_version(good).unwrap();
    }
    // The default version of a directory does not depend on the time of
    // the files, only on their contents.
    let first = releases.stage(&source, None, 0).unwrap();
    assert!(first.starts_with("19700101T000000Z-"), "{first}");
    releases.discard(&first).unwrap();
    assert!(!releases.release_dir(&first).exists());
    releases.discard(&first).unwrap();
    assert_eq!(releases.stage(&source, None, 0).unwrap(), first);
}

fn staged(releases: &Releases, dir: &Path, versions: &[&str]) {
    let source = dir.join("src");
    write(&source.join("run.sh"), "x", 0o755);
    for version in versions {
        releases.stage(&source, Some(version), 0).unwrap();
        releases.record(version, "ready", None, None).unwrap();
    }
}

#[test]
fn records_live_and_previous() {
    let (dir, releases) = store();
    staged(&releases, dir.path(), &["v1", "v2", "v3"]);
    assert_eq!(releases.live().unwrap(), None);
    assert_eq!(releases.previous().unwrap(), None);

    releases.switch_current("v1").unwrap();
    releases.record("v1", "deployed", None, Some(100)).unwrap();
    releases.switch_current("v2").unwrap();
    releases.record("v2", "verifying", None, Some(200)).unwrap();
    assert_eq!(
        std::fs::read_link(releases.current_link()).unwrap(),
        Path::new("releases/v2")
    );
    assert!(!releases.dir().join("current.tmp").exists());
    assert_eq!(releases.live().unwrap().as_deref(), Some("v2"));
    assert_eq!(releases.previous().unwrap().as_deref(), Some("v1"));

    let list = releases.list().unwrap();
    let versions: Vec<_> = list.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["v3", "v2", "v1"]);
    assert!(list[1].live && !list[0].live && !list[2].live);
    assert_eq!(
        list[1].deployed.as_deref(),
        Some("1970-01-01T00:03:20.000Z")
    );
    assert_eq!(list[1].result, "verifying");
    assert_eq!(list[0].deployed, None);
    assert_eq!(list[0].created.len(), 24);

    releases
        .record("v2", "rolled_back", Some("health check failed"), None)
        .unwrap();
    releases.switch_current("v1").unwrap();
    let list = releases.list().unwrap();
    assert_eq!(list[1].detail.as_deref(), Some("health check failed"));
    assert_eq!(
        list[1].deployed.as_deref(),
        Some("1970-01-01T00:03:20.000Z")
    );
    assert_eq!(releases.live().unwrap().as_deref(), Some("v1"));
    assert_eq!(
        releases.previous().unwrap(),
        None,
        "rolled_back is not previous"
    );

    assert!(releases.is_deployable("v3").unwrap());
    releases
        .record("v3", "failed", Some("smoke test"), None)
        .unwrap();
    assert!(!releases.is_deployable("v3").unwrap());
    assert!(!releases.is_deployable("v9").unwrap());
    // A staged directory without an entry is half-staged.
    releases
        .stage(&dir.path().join("src"), Some("v4"), 0)
        .unwrap();
    assert!(!releases.is_deployable("v4").unwrap());
    let error = releases.discard("v1").unwrap_err();
    assert!(matches!(error, ReleaseError::Live { .. }), "{error}");
    assert!(releases.release_dir("v1").is_dir());
    let error = releases.switch_current("v9").unwrap_err();
    assert!(matches!(error, ReleaseError::NotStaged { .. }), "{error}");

    let manifest = std::fs::read_to_string(releases.dir().join("releases.json")).unwrap();
    assert!(manifest.contains("\"v3\""));
    assert!(!releases.dir().join(".releases.json.tmp").exists());
}

#[test]
fn cleanup_keeps_the_newest_the_live_and_the_previous() {
    let (dir, releases) = store();
    staged(&releases, dir.path(), &["v1", "v2", "v3", "v4", "v5"]);
    releases.switch_current("v2").unwrap();
    releases.record("v2", "deployed", None, Some(100)).unwrap();
    releases.switch_current("v1").unwrap();
    releases.record("v1", "deployed", None, Some(200)).unwrap();
    assert_eq!(releases.previous().unwrap().as_deref(), Some("v2"));

    assert_eq!(releases.cleanup(2).unwrap(), ["v3"]);
    for kept in ["v1", "v2", "v4", "v5"] {
        assert!(releases.release_dir(kept).is_dir(), "{kept}");
    }
    assert!(!releases.release_dir("v3").exists());
    let list = releases.list().unwrap();
    let v3 = list.iter().find(|r| r.version == "v3").unwrap();
    assert_eq!(v3.result, "removed");
    assert!(!releases.is_deployable("v3").unwrap());
    assert!(releases.cleanup(2).unwrap().is_empty());
    assert!(releases.cleanup(0).unwrap().len() == 2);
    assert!(releases.release_dir("v1").is_dir() && releases.release_dir("v2").is_dir());
}

#[test]
fn recover_repairs_what_a_crash_left() {
    let (dir, releases) = store();
    assert!(releases.recover().unwrap().is_empty(), "no agent dir yet");
    staged(&releases, dir.path(), &["v1", "v2"]);
    releases.record("v1", "deployed", None, Some(100)).unwrap();
    releases.record("v2", "verifying", None, Some(200)).unwrap();
    // Half-staged: a directory without an entry.
    releases
        .stage(&dir.path().join("src"), Some("v3"), 0)
        .unwrap();
    // Failed, its directory left over.
    releases
        .stage(&dir.path().join("src"), Some("v4"), 0)
        .unwrap();
    releases
        .record("v4", "failed", Some("build"), None)
        .unwrap();
    symlink("releases/gone", releases.current_link()).unwrap();
    symlink("releases/v1", releases.dir().join("current.tmp")).unwrap();
    std::fs::write(releases.dir().join(".releases.json.tmp"), "{").unwrap();

    let done = releases.recover().unwrap();
    assert!(done.len() >= 6, "{done:#?}");
    assert!(!releases.release_dir("v3").exists());
    assert!(!releases.release_dir("v4").exists());
    assert!(releases.release_dir("v1").is_dir() && releases.release_dir("v2").is_dir());
    assert!(!releases.dir().join("current.tmp").exists());
    assert!(!releases.dir().join(".releases.json.tmp").exists());
    let list = releases.list().unwrap();
    let v2 = list.iter().find(|r| r.version == "v2").unwrap();
    assert_eq!(v2.result, "interrupted");
    assert!(v2.live);
    assert_eq!(
        std::fs::read_link(releases.current_link()).unwrap(),
        Path::new("releases/v2")
    );
    assert!(
        releases.recover().unwrap().is_empty(),
        "a second run finds nothing"
    );

    // current at a failed release, nothing deployable: removed.
    releases.record("v1", "failed", None, None).unwrap();
    releases.record("v2", "removed", None, None).unwrap();
    let done = releases.recover().unwrap();
    assert!(
        done.iter().any(|line| line.contains("removed it")),
        "{done:#?}"
    );
    assert!(std::fs::symlink_metadata(releases.current_link()).is_err());
}

#[test]
fn links_and_foreign_kinds_in_the_layout_are_refused() {
    let (dir, releases) = store();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::create_dir(releases.dir().parent().unwrap()).unwrap();
    symlink(&elsewhere, releases.dir()).unwrap();
    let error = releases.ensure_layout().unwrap_err();
    assert!(matches!(error, ReleaseError::Symlink { .. }), "{error}");
    assert!(error.to_string().contains("hint:"));
    std::fs::remove_file(releases.dir()).unwrap();
    releases.ensure_layout().unwrap();
    std::fs::remove_dir(releases.shared_dir()).unwrap();
    std::fs::write(releases.shared_dir(), "").unwrap();
    let error = releases.ensure_layout().unwrap_err();
    assert!(matches!(error, ReleaseError::WrongKind { .. }), "{error}");
}

#[test]
fn recover_finishes_a_rollback_the_daemon_died_in() {
    let (dir, releases) = store();
    staged(&releases, dir.path(), &["v1", "v2"]);
    releases.record("v1", "deployed", None, Some(100)).unwrap();
    releases
        .record("v2", "rolled_back", Some("died"), Some(200))
        .unwrap();
    releases.switch_current("v2").unwrap();
    let done = releases.recover().unwrap();
    assert!(
        done.iter()
            .any(|line| line.contains("failed its verification")),
        "{done:#?}"
    );
    assert_eq!(releases.live().unwrap().as_deref(), Some("v1"));
    // With nothing better, a rolled-back release stays live.
    releases.record("v1", "removed", None, None).unwrap();
    releases.switch_current("v2").unwrap();
    releases.recover().unwrap();
    assert_eq!(releases.live().unwrap().as_deref(), Some("v2"));
}

// Issue #14: no limit on the unpacked size; world-writable files and
// directories.

#[test]
fn a_compressible_tarball_that_unpacks_a_hundredfold_is_refused() {
    let (dir, releases) = store();
    let archive = dir.path().join("bomb.tar.gz");
    // 96 MiB of zeros: well above the 64 MiB floor, some 100 KiB packed.
    let size: u64 = 96 << 20;
    {
        let file = File::create(&archive).unwrap();
        let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        let mut builder = tar::Builder::new(encoder);
        let (header, data) = file_header("web.py", 0o644, b"print('hi')\n");
        builder.append(&header, data.as_slice()).unwrap();
        let mut big = raw_header(b"padding.bin", tar::EntryType::Regular, size, b"");
        big.set_cksum();
        builder.append(&big, std::io::repeat(0).take(size)).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
    }
    let packed = std::fs::metadata(&archive).unwrap().len();
    assert!(packed < 1 << 20, "the bomb is small: {packed} bytes");
    let error = releases
        .stage_within(&archive, Some("v1"), 0, 1 << 30)
        .unwrap_err();
    assert!(matches!(error, ReleaseError::Expands { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("unpacks to more than 64MiB, over 100 times its size")
            && text.contains("nothing was staged"),
        "{text}"
    );
    assert_nothing_staged(&releases);
    assert!(!releases.release_dir("v1").exists());

    // The same bytes under a max_size below them: that bound speaks.
    let error = releases
        .stage_within(&archive, Some("v1"), 0, 1 << 20)
        .unwrap_err();
    assert!(matches!(error, ReleaseError::TooBig { .. }), "{error:?}");
    assert_nothing_staged(&releases);
}

#[test]
fn a_release_larger_than_max_size_is_refused() {
    let (dir, releases) = store();
    let source = dir.path().join("src");
    write(&source.join("web.py"), "print('hi')\n", 0o644);
    std::fs::write(source.join("data.bin"), vec![7u8; 3 << 20]).unwrap();
    let error = releases
        .stage_within(&source, Some("v1"), 0, 2 << 20)
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("the release holds more than 2MiB of files (`max_size` of [agents.scout.deploy]); nothing was staged"),
        "{text}"
    );
    assert!(text.contains("hint: keep data in the agent's shared/ directory"));
    assert_nothing_staged(&releases);
    // Within the bound, it stages.
    releases
        .stage_within(&source, Some("v1"), 0, 4 << 20)
        .unwrap();
}

#[test]
fn group_and_other_write_are_cleared_and_no_directory_becomes_0777() {
    let (dir, releases) = store();
    let source = dir.path().join("src");
    write(&source.join("open.txt"), "x", 0o666);
    write(&source.join("run.sh"), "x", 0o777);
    write(&source.join("tmp/inside"), "x", 0o644);
    std::fs::set_permissions(source.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    releases.stage(&source, Some("d1"), 0).unwrap();
    let staged = releases.release_dir("d1");
    assert_eq!(mode(&staged.join("open.txt")), 0o644);
    assert_eq!(mode(&staged.join("run.sh")), 0o755);
    assert_eq!(mode(&staged.join("tmp")), 0o755, "not 0777 (issue #14)");

    let archive = dir.path().join("modes.tar.gz");
    let mut sticky = raw_header(b"tmp/", tar::EntryType::Directory, 0, b"");
    sticky.set_mode(0o1777);
    sticky.set_cksum();
    tarball(
        &archive,
        &[
            (sticky, vec![]),
            file_header("open.txt", 0o666, b"x"),
            file_header("group.txt", 0o664, b"x"),
        ],
    );
    releases.stage(&archive, Some("t1"), 0).unwrap();
    let staged = releases.release_dir("t1");
    assert_eq!(mode(&staged.join("tmp")), 0o755);
    assert_eq!(mode(&staged.join("open.txt")), 0o644);
    assert_eq!(mode(&staged.join("group.txt")), 0o644);
}
