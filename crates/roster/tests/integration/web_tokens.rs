//! The web dashboard's foundation (issue #18, part 1): `roster web token
//! add|list|rm` with only a hash on disk, and `[web]` checked by `check`,
//! `up`, `apply` and `doctor`.

use std::path::Path;
use std::time::Duration;

use roster_core::api::AgentState;
use roster_core::web::token_hash;

use crate::util::*;

/// Every file under `dir`, with its bytes (links are not followed).
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            found.extend(files_under(&path));
        } else if kind.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                found.push((path.display().to_string(), bytes));
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn add_prints_the_token_alone_last_and_nothing_else_ever_shows_it() {
    let roster = Roster::new();
    let output = roster.run(&["web", "token", "add", "ops", "--admin"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "a description, then the token: {stdout}");
    let token = *lines.last().expect("a last line");
    assert!(token.starts_with("rst_") && token.len() == 68, "{token:?}");
    assert_eq!(token.trim(), token, "the token alone on its line");
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|line| !line.contains("rst_")));
    assert!(
        lines[0].contains("ops") && lines[0].contains("admin"),
        "{stdout}"
    );
    let tenant = roster.ok(&[
        "web",
        "token",
        "add",
        "acme-ro",
        "--tenant",
        "acme",
        "--read-only",
    ]);
    let tenant_token = tenant.lines().last().expect("a token").to_owned();
    assert_ne!(tenant_token, token);

    let listed = roster.run(&["web", "token", "list"]);
    let json = roster.run(&["web", "token", "list", "--json"]);
    for output in [&listed, &json] {
        assert!(output.status.success());
        for secret in [token.to_owned(), tenant_token.clone(), token_hash(token)] {
            assert!(
                !contains(&output.stdout, &secret),
                "{}",
                text(&output.stdout)
            );
            assert!(!contains(&output.stderr, &secret));
        }
    }
    let listed = text(&listed.stdout);
    assert!(listed.starts_with("NAME"), "{listed}");
    let acme = listed
        .lines()
        .find(|l| l.starts_with("acme-ro"))
        .expect("acme-ro");
    assert!(
        acme.contains("tenant acme") && acme.contains("read-only") && acme.ends_with("never"),
        "{acme}"
    );
    let ops = listed.lines().find(|l| l.starts_with("ops")).expect("ops");
    assert!(ops.contains("admin") && ops.ends_with("never"), "{ops}");
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(rows[0]["name"], "acme-ro");
    assert_eq!(rows[0]["scope"], "tenant");
    assert_eq!(rows[0]["tenant"], "acme");
    assert_eq!(rows[0]["read_only"], true);
    assert_eq!(rows[1]["name"], "ops");
    assert_eq!(rows[1]["scope"], "admin");
    assert_eq!(rows[1]["last_used"], serde_json::Value::Null);

    // On disk: a hash, never a token, anywhere in the home.
    let files = files_under(roster.home_path());
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        for secret in [
            token,
            tenant_token.as_str(),
            &token[4..],
            &tenant_token[4..],
        ] {
            assert!(!contains(bytes, secret), "a token in clear in {path}");
        }
    }
    let store = roster.home_path().join("web/tokens.json");
    let stored = std::fs::read(&store).expect("tokens.json");
    assert!(contains(&stored, &token_hash(token)));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&store).expect("stat").mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(roster.home_path().join("web"))
            .expect("stat")
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn rm_revokes_and_unknown_names_duplicates_and_bad_flags_are_refused() {
    let roster = Roster::new();
    let first = roster.ok(&["web", "token", "add", "ops", "--admin"]);
    let first_token = first.lines().last().expect("token").to_owned();

    let again = roster.run(&["web", "token", "add", "ops", "--tenant", "acme"]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = text(&again.stderr);
    assert!(
        stderr.contains("a token named ops exists already"),
        "{stderr}"
    );
    assert!(stderr.contains("roster web token rm ops"), "{stderr}");
    assert!(again.stdout.is_empty(), "no token printed");

    for (args, code, says) in [
        (vec!["web", "token", "add", "x"], 2, "required"),
        (
            vec!["web", "token", "add", "x", "--admin", "--tenant", "a"],
            2,
            "cannot be used with",
        ),
        (
            vec!["web", "token", "add", "x", "--tenant"],
            2,
            "a value is required",
        ),
        (
            vec!["web", "token", "add", "bad/name", "--admin"],
            1,
            "bad token name",
        ),
        (vec!["web", "token", "add", "all", "--admin"], 1, "reserved"),
        (
            vec!["web", "token", "add", "x", "--tenant", "a b"],
            1,
            "bad tenant",
        ),
    ] {
        let output = roster.run(&args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains(says),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(!contains(&output.stdout, "rst_"), "{args:?}");
    }
    let listed = roster.ok(&["web", "token", "list"]);
    assert_eq!(listed.lines().count(), 2, "only ops: {listed}");

    let removed = roster.ok(&["web", "token", "rm", "ops"]);
    assert!(
        removed.contains("ops") && removed.contains("revoked"),
        "{removed}"
    );
    let listed = roster.run(&["web", "token", "list"]);
    assert!(listed.stdout.is_empty(), "{}", text(&listed.stdout));
    assert!(text(&listed.stderr).contains("no web tokens"));
    let stored = std::fs::read(roster.home_path().join("web/tokens.json")).expect("file");
    assert!(
        !contains(&stored, &token_hash(&first_token)),
        "its hash is gone too"
    );

    let missing = roster.run(&["web", "token", "rm", "ops"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("there is no token named ops"),
        "{}",
        text(&missing.stderr)
    );

    // The name is free again, with a new token.
    let second = roster.ok(&["web", "token", "add", "ops", "--admin"]);
    assert_ne!(second.lines().last(), Some(first_token.as_str()));

    // A home that does not exist: nothing listed, nothing to remove, none made.
    let fresh = Roster::new();
    let home = fresh.home_path().join("never");
    let list = std::process::Command::new(BIN)
        .env_remove("ROSTER_HOME")
        .arg("--home")
        .arg(&home)
        .args(["web", "token", "list"])
        .output()
        .expect("run");
    assert!(list.status.success(), "{}", text(&list.stderr));
    assert!(!home.exists(), "list creates no home");
}

const PUBLIC_PLAIN: &str =
    "[web]\nlisten = \"0.0.0.0:9400\"\n\n[agents.a]\ncommand = \"sleep 300\"\n";

#[test]
fn a_public_dashboard_without_tls_is_refused_by_check_and_up_at_its_address() {
    let roster = Roster::new();
    roster.config(PUBLIC_PLAIN);
    for args in [&["check"][..], &["up"][..]] {
        let output = roster.run(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("roster.toml:2:10: the dashboard would listen on 0.0.0.0:9400, beyond loopback, over plain HTTP"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("hint: set tls_cert and tls_key (PEM files) to serve HTTPS, or insecure_http = true"),
            "{stderr}"
        );
    }
    assert_eq!(roster.daemon_pid(), None, "up started nothing");

    // Either way out is accepted; doctor warns about plain HTTP.
    roster.config(&PUBLIC_PLAIN.replace("9400\"\n", "9400\"\ninsecure_http = true\n"));
    roster.ok(&["check"]);
    let doctor = roster.run(&["doctor", "-f", "roster.toml"]);
    let report = text(&doctor.stdout);
    assert!(
        report.contains(
            "the dashboard is served over plain HTTP on 0.0.0.0:9400 (insecure_http = true)"
        ),
        "{report}"
    );
    let cert = roster.write("web.crt", "not a certificate\n");
    roster.write(
        "web.key",
        "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
    );
    roster.config(&PUBLIC_PLAIN.replace(
        "9400\"\n",
        "9400\"\ntls_cert = \"web.crt\"\ntls_key = \"web.key\"\n",
    ));
    roster.ok(&["check"]);
    let doctor = roster.run(&["doctor", "-f", "roster.toml"]);
    let report = text(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1));
    assert!(
        report.contains(&format!(
            "[web] tls_cert {} is not PEM: no -----BEGIN CERTIFICATE----- block",
            cert.display()
        )),
        "{report}"
    );
    assert!(!report.contains("tls_key"), "the key is fine: {report}");
}

#[test]
fn tokens_work_beside_a_running_daemon_and_a_change_of_web_restarts_no_agent() {
    let roster = Roster::new();
    roster.config("[agents.a]\ncommand = \"sleep 300\"\n");
    roster.up();
    let pid = roster
        .wait_state("a", AgentState::Running, Duration::from_secs(10))
        .pid;
    let token = roster.ok(&["web", "token", "add", "ops", "--admin"]);
    assert!(token.lines().last().is_some_and(|t| t.starts_with("rst_")));
    assert!(roster.ok(&["web", "token", "list"]).contains("ops"));
    roster.config(
        "[web]\nlisten = \"127.0.0.1:9400\"\nsession_ttl = \"1h\"\n\n[agents.a]\ncommand = \"sleep 300\"\n",
    );
    roster.ok(&["apply"]);
    roster.config(
        "[web]\nlisten = \"[::1]:9401\"\nsession_ttl = \"2h\"\n\n[agents.a]\ncommand = \"sleep 300\"\n",
    );
    roster.ok(&["apply"]);
    let after = roster.agent("a");
    assert_eq!(after.pid, pid, "the agent was not restarted");
    assert_eq!(after.restarts, 0);
    roster.ok(&["web", "token", "rm", "ops"]);
    roster.ok(&["down"]);
}
