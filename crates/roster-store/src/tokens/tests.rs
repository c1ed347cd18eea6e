use std::os::unix::fs::MetadataExt;

use super::*;
use crate::home::Home;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

fn store() -> (tempfile::TempDir, Home, TokenStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = Home::new(dir.path().join("home"));
    let home_dir = home.create_verified().expect("home");
    let store = TokenStore::create(&home_dir).expect("store");
    (dir, home, store)
}

#[test]
fn a_token_is_shown_once_and_only_its_hash_is_kept_0600() {
    let (_dir, home, store) = store();
    let token = store.add("ops", Scope::Admin, false, 1_000).expect("add");
    assert!(token.starts_with("rst_") && token.len() == 68, "{token}");
    let file = home.root().join("web/tokens.json");
    assert_eq!(mode(&home.root().join("web")), 0o700);
    assert_eq!(mode(&file), 0o600);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(!text.contains(&token), "the token is not on disk");
    assert!(!text.contains(&token[4..]), "nor its random part");
    assert!(text.contains(&token_hash(&token)), "its hash is");
    let (tokens, fingerprint) = store.load().expect("load");
    assert!(fingerprint.is_some());
    let found = tokens.find(&token).expect("found by its text");
    assert_eq!(found.name.as_str(), "ops");
    assert_eq!(found.scope, Scope::Admin);
    assert_eq!(found.created_ms, 1_000);
    assert_eq!(found.last_used_ms, None);
    assert!(tokens.find("rst_nope").is_none());
    assert!(tokens.find(&token[4..]).is_none(), "without its prefix");
    assert!(tokens.find("").is_none());
}

#[test]
fn two_tokens_differ_and_names_are_unique() {
    let (_dir, _home, store) = store();
    let a = store
        .add("acme-ro", Scope::Tenant("acme".into()), true, 1)
        .expect("add");
    let b = store.add("ops", Scope::Admin, false, 2).expect("add");
    assert_ne!(a, b);
    let again = store
        .add("ops", Scope::Admin, false, 3)
        .expect_err("a name in use");
    assert!(matches!(again, TokenError::Exists(_)), "{again}");
    assert!(
        again.to_string().contains("roster web token rm ops"),
        "{again}"
    );
    let (tokens, _) = store.load().expect("load");
    let names: Vec<&str> = tokens.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["acme-ro", "ops"]);
    let grant = tokens.find(&a).expect("a").grant();
    assert_eq!(grant.scope, Scope::Tenant("acme".into()));
    assert!(grant.read_only);
    assert_eq!(grant.token, "acme-ro");
    assert_eq!(tokens.find(&b).expect("b").name.as_str(), "ops");
}

#[test]
fn bad_names_and_tenants_are_refused() {
    let (_dir, _home, store) = store();
    for bad in ["", "-x", "a/b", "a..b", "all"] {
        let refused = store.add(bad, Scope::Admin, false, 0).expect_err(bad);
        assert!(
            matches!(refused, TokenError::Invalid(_)),
            "{bad}: {refused}"
        );
    }
    let refused = store
        .add("t", Scope::Tenant("a b".into()), false, 0)
        .expect_err("bad tenant");
    assert!(refused.to_string().contains("bad tenant"), "{refused}");
}

#[test]
fn remove_revokes_and_unknown_names_are_said() {
    let (_dir, _home, store) = store();
    let token = store.add("ops", Scope::Admin, false, 1).expect("add");
    let (_, before) = store.load().expect("load");
    let removed = store.remove("ops").expect("rm");
    assert_eq!(removed.name.as_str(), "ops");
    let (tokens, after) = store.load().expect("load");
    assert!(tokens.find(&token).is_none());
    assert_ne!(before, after, "the daemon sees the change");
    assert_eq!(store.fingerprint().expect("stat"), after);
    let missing = store.remove("ops").expect_err("gone");
    assert!(matches!(missing, TokenError::NotFound(_)));
    assert!(missing.to_string().contains("there is no token named ops"));
}

#[test]
fn the_fingerprint_is_stable_until_a_write() {
    let (_dir, _home, store) = store();
    assert_eq!(store.fingerprint().expect("stat"), None);
    store.add("a", Scope::Admin, false, 1).expect("add");
    let first = store.fingerprint().expect("stat");
    assert!(first.is_some());
    assert_eq!(store.fingerprint().expect("stat"), first);
    store.touch("a", 5).expect("touch");
    assert_ne!(store.fingerprint().expect("stat"), first, "a new inode");
    let (tokens, _) = store.load().expect("load");
    assert_eq!(tokens.get("a").expect("a").last_used_ms, Some(5));
    store
        .touch("gone", 6)
        .expect("a removed token stays removed");
    assert!(store.load().expect("load").0.get("gone").is_none());
}

#[test]
fn a_link_as_the_file_is_refused_and_not_followed() {
    let (dir, home, store) = store();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").expect("victim");
    std::os::unix::fs::symlink(&victim, home.root().join("web/tokens.json")).expect("ln");
    let refused = store.add("a", Scope::Admin, false, 0).expect_err("a link");
    assert!(
        matches!(refused, TokenError::Home(HomeError::Symlink { .. })),
        "{refused}"
    );
    assert!(store.load().is_err());
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
}

#[test]
fn a_readable_file_or_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, home, store) = store();
    store.add("a", Scope::Admin, false, 0).expect("add");
    let file = home.root().join("web/tokens.json");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let refused = store.load().expect_err("0644");
    assert!(refused.to_string().contains("chmod 0600"), "{refused}");
    std::fs::set_permissions(
        home.root().join("web"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let home_dir = home.open_verified().expect("home");
    let refused = TokenStore::open(&home_dir).expect_err("0755 directory");
    assert!(
        matches!(refused, TokenError::Home(HomeError::NotPrivate { .. })),
        "{refused}"
    );
}

#[test]
fn a_file_of_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        return; // Only root can give a file away.
    }
    let (_dir, home, store) = store();
    store.add("a", Scope::Admin, false, 0).expect("add");
    let file = home.root().join("web/tokens.json");
    std::os::unix::fs::chown(&file, Some(12345), Some(12345)).expect("chown");
    let refused = store.load().expect_err("foreign");
    assert!(
        matches!(refused, TokenError::Home(HomeError::WrongOwner { .. })),
        "{refused}"
    );
    let refused = store.add("b", Scope::Admin, false, 0).expect_err("foreign");
    assert!(matches!(
        refused,
        TokenError::Home(HomeError::WrongOwner { .. })
    ));
}

#[test]
fn a_damaged_file_is_said_with_its_path() {
    let (_dir, home, store) = store();
    let file = home.root().join("web/tokens.json");
    for (text, says) in [
        ("{", "not a token file"),
        (r#"{"format": 2, "tokens": []}"#, "format 2 is not 1"),
        (
            r#"{"format": 1, "tokens": [{"name": "a", "scope": "boss", "read_only": false, "created_ms": 0, "last_used_ms": null, "sha256": "00"}]}"#,
            "bad scope",
        ),
        (
            r#"{"format": 1, "tokens": [{"name": "a", "scope": "admin", "read_only": false, "created_ms": 0, "last_used_ms": null, "sha256": "00"}]}"#,
            "not 64 hex digits",
        ),
    ] {
        std::fs::write(&file, text).expect("write");
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let error = store.load().expect_err(text).to_string();
        assert!(
            error.contains("tokens.json") && error.contains(says),
            "{error}"
        );
    }
}
