//! Issue #17, items 3 and 4: `roster backup` taken while agents write,
//! `roster restore` into a fresh home brought back with `up`, damaged and
//! truncated archives refused with nothing written, `--no-secrets`, and
//! the `backup verify` drill.

use std::io::Read;
use std::path::Path;
use std::process::Output;

use roster_core::api::{AgentState, ReleasesReply};

use crate::util::*;

/// Writes its release and its secret to `$ROSTER_HOME/proof`, and a log
/// line every 50 ms.
const APP: &str = r#"while true; do
  printf '%s %s\n' "$ROSTER_RELEASE" "$TOKEN" > "$ROSTER_HOME/proof.tmp"
  mv "$ROSTER_HOME/proof.tmp" "$ROSTER_HOME/proof"
  echo "tick $ROSTER_RELEASE"
  sleep 0.05
done
"#;

const CONFIG: &str = r#"
[agents.app]
command = ["sh", "run.sh"]
ready_after = "100ms"
stop_timeout = "2s"

[agents.app.deploy]
strategy = "restart"
verify_for = "0s"

[agents.chatty]
command = ["sh", "-c", "while true; do echo chatter; sleep 0.01; done"]
ready_after = "100ms"
stop_timeout = "2s"
"#;

fn unique_secret() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("sk-backup-{:x}{:x}", std::process::id(), nanos)
}

fn both(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A roster with `app` deployed twice (v1 then v2: live and previous), a
/// secret TOKEN for it in an encrypted store, and `chatty` logging.
fn site() -> (Roster, String) {
    let roster = Roster::new();
    roster.config(CONFIG);
    roster.ok(&["secret", "init-key"]);
    let secret = unique_secret();
    let output = roster.run_with_stdin(
        &["secret", "set", "app", "TOKEN"],
        format!("{secret}\n").as_bytes(),
    );
    assert!(output.status.success(), "secret set: {}", both(&output));
    let source = roster.path("src");
    std::fs::create_dir_all(&source).expect("source");
    std::fs::write(source.join("run.sh"), APP).expect("run.sh");
    for version in ["v1", "v2"] {
        // `up` first so the daemon runs; deploys after.
        if version == "v1" {
            roster.up();
        }
        let output = roster.run(&[
            "deploy",
            "app",
            source.to_str().expect("utf-8"),
            "--version",
            version,
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "deploy {version}: {}",
            both(&output)
        );
    }
    roster.wait_state("app", AgentState::Running, SECS(20));
    (roster, secret)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("archive"))
        .read_to_end(&mut bytes)
        .expect("gunzip");
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Every file under `dir`, recursively, with its bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(tree(&path));
            } else {
                out.push((
                    path.display().to_string(),
                    std::fs::read(&path).unwrap_or_default(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn backup_under_load_restores_into_a_fresh_home_with_releases_and_secrets() {
    let (roster, secret) = site();
    let archive = roster.path("backup.tar.gz");
    // Dashboard tokens handed to people come back too (their hashes).
    let ops = roster.ok(&["web", "token", "add", "ops", "--admin"]);
    roster.ok(&[
        "web",
        "token",
        "add",
        "acme",
        "--tenant",
        "acme",
        "--read-only",
    ]);
    // The journal grows while the backup runs: chatty restarts.
    let churn = {
        let home = roster.home_path().to_path_buf();
        std::thread::spawn(move || {
            for _ in 0..3 {
                let _ = std::process::Command::new(BIN)
                    .env_remove("ROSTER_HOME")
                    .arg("--home")
                    .arg(&home)
                    .args(["restart", "chatty"])
                    .output();
            }
        })
    };
    let output = roster.run(&["backup", archive.to_str().expect("utf-8")]);
    churn.join().expect("churn");
    assert!(output.status.success(), "backup: {}", both(&output));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&archive).expect("archive").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the archive is private");
    assert!(
        !contains(&gunzip(&archive), secret.as_bytes()),
        "a secret in plain in the archive"
    );

    let fresh = Roster::new();
    let restored_config = fresh.path("restored.toml");
    let key = roster.home_path().join("secrets/key");
    let output = fresh.run(&[
        "restore",
        archive.to_str().expect("utf-8"),
        "--config",
        restored_config.to_str().expect("utf-8"),
        "--key-file",
        key.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "restore: {}", both(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&restored_config.display().to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("up -f"), "the next command: {stdout}");
    assert!(stdout.contains("2 web tokens"), "{stdout}");
    let tokens = |home: &Path| {
        let file = home.join("web/tokens.json");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&file).expect("tokens.json").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        std::fs::read(file).expect("tokens.json")
    };
    assert_eq!(tokens(fresh.home_path()), tokens(roster.home_path()));
    let listed = fresh.ok(&["web", "token", "list"]);
    assert!(
        listed.contains("ops") && listed.contains("tenant acme"),
        "{listed}"
    );
    let token = ops.lines().last().expect("the token").trim();
    assert!(
        !contains(&gunzip(&archive), token.as_bytes()),
        "a token in plain in the archive"
    );

    fresh.ok(&["up", "-f", restored_config.to_str().expect("utf-8")]);
    fresh.wait_state("app", AgentState::Running, SECS(20));
    fresh.wait_state("chatty", AgentState::Running, SECS(20));
    let proof = fresh.home_path().join("proof");
    let seen = wait_for("the restored app's proof", SECS(20), || {
        std::fs::read_to_string(&proof)
            .ok()
            .filter(|text| !text.trim().is_empty())
    });
    assert_eq!(
        seen.trim(),
        format!("v2 {secret}"),
        "same release, same secret"
    );
    let releases: ReleasesReply =
        serde_json::from_str(&fresh.ok(&["releases", "app", "--json"])).expect("releases json");
    let live: Vec<_> = releases
        .releases
        .iter()
        .filter(|release| release.live)
        .map(|release| release.version.as_str())
        .collect();
    assert_eq!(live, ["v2"]);
    assert!(
        releases
            .releases
            .iter()
            .any(|release| release.version == "v1"),
        "the previous release came back"
    );
    assert!(
        !fresh.events(&["app"]).is_empty(),
        "the journal came back with its history"
    );
    let _ = fresh.run(&["down"]);
    let _ = roster.run(&["down"]);
}

#[test]
fn damaged_or_truncated_archives_are_refused_and_nothing_is_written() {
    let (roster, _secret) = site();
    let archive = roster.path("good.tar.gz");
    roster.ok(&["backup", archive.to_str().expect("utf-8")]);
    let _ = roster.run(&["down"]);
    let bytes = std::fs::read(&archive).expect("archive");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let corrupt = roster.write("corrupt.tar.gz", "");
    std::fs::write(&corrupt, &flipped).expect("corrupt copy");
    let truncated = roster.write("truncated.tar.gz", "");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("truncated copy");
    let key = roster.home_path().join("secrets/key");
    for bad in [&corrupt, &truncated] {
        let fresh = Roster::new();
        let target = fresh.path("restored.toml");
        let before = tree(fresh.home_path());
        let output = fresh.run(&[
            "restore",
            bad.to_str().expect("utf-8"),
            "--config",
            target.to_str().expect("utf-8"),
            "--key-file",
            key.to_str().expect("utf-8"),
        ]);
        assert!(
            !output.status.success(),
            "{} was restored: {}",
            bad.display(),
            both(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("damaged or truncated"), "{stderr}");
        assert_eq!(tree(fresh.home_path()), before, "the home changed");
        assert!(!target.exists(), "the config was written");
        let output = fresh.run(&[
            "backup",
            "verify",
            bad.to_str().expect("utf-8"),
            "--key-file",
            key.to_str().expect("utf-8"),
        ]);
        assert!(
            !output.status.success(),
            "verify passed a damaged backup: {}",
            both(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("FAILED"),
            "{}",
            both(&output)
        );
    }
    // A good one whose key is not at hand is refused, naming the key.
    let keyless = Roster::new();
    let output = keyless.run(&[
        "restore",
        archive.to_str().expect("utf-8"),
        "--config",
        keyless.path("r.toml").to_str().expect("utf-8"),
    ]);
    assert!(!output.status.success(), "restored without the key");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sealed with key") && stderr.contains("--key-file"),
        "{stderr}"
    );
    assert!(tree(keyless.home_path()).is_empty(), "the home changed");
    // And the good one passes the drill, with its age and the restore's time.
    let output = roster.run(&[
        "backup",
        "verify",
        archive.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(output.status.success(), "verify: {}", both(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("verify json");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["recovery_point_seconds"].as_u64().is_some(),
        "{report}"
    );
    assert!(report["restore_seconds"].as_f64().is_some(), "{report}");
    let text = roster.ok(&["backup", "verify", archive.to_str().expect("utf-8")]);
    assert!(
        text.contains("recovery point:") && text.contains("restore took"),
        "{text}"
    );
}

#[test]
fn no_secrets_leaves_every_value_out() {
    let (roster, secret) = site();
    let archive = roster.path("plain.tar.gz");
    // Taken with the daemon down: the config is the one the journal says
    // it last applied.
    let _ = roster.run(&["down"]);
    let output = roster.run(&["backup", "--no-secrets", archive.to_str().expect("utf-8")]);
    assert!(output.status.success(), "backup: {}", both(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the daemon is down"),
        "{}",
        both(&output)
    );
    let bytes = gunzip(&archive);
    assert!(
        !contains(&bytes, secret.as_bytes()),
        "the secret is in the archive"
    );
    assert!(
        !contains(&bytes, b"secrets.sealed"),
        "sealed secrets in a --no-secrets backup"
    );
    // It restores without any key.
    let fresh = Roster::new();
    let target = fresh.path("restored.toml");
    let output = fresh.run(&[
        "restore",
        archive.to_str().expect("utf-8"),
        "--config",
        target.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "restore: {}", both(&output));
    let again = fresh.run(&[
        "restore",
        archive.to_str().expect("utf-8"),
        "--config",
        fresh.path("other.toml").to_str().expect("utf-8"),
    ]);
    assert!(!again.status.success(), "restored into a home in use");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty: it has a journal"),
        "{}",
        both(&again)
    );
    // A backup whose manifest says a newer format is refused with the reason.
    let newer = roster.path("newer.tar.gz");
    rewrite_manifest(&archive, &newer, |manifest| {
        manifest["format"] = serde_json::json!(99);
        manifest["roster_version"] = serde_json::json!("9.9.9");
    });
    let other = Roster::new();
    let output = other.run(&[
        "restore",
        newer.to_str().expect("utf-8"),
        "--config",
        other.path("r.toml").to_str().expect("utf-8"),
    ]);
    assert!(!output.status.success(), "a newer format was restored");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("format 99, written by roster 9.9.9") && stderr.contains("or newer"),
        "{stderr}"
    );
    assert!(tree(other.home_path()).is_empty(), "the home changed");
}

/// Copies a backup with its manifest edited.
fn rewrite_manifest(from: &Path, to: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(from).expect("archive"),
    ));
    let out = std::fs::File::create(to).expect("copy");
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut header = entry.header().clone();
        let path = entry.path().expect("path").into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("bytes");
        if path == Path::new("manifest.json") {
            let mut manifest: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest");
            edit(&mut manifest);
            bytes = serde_json::to_vec(&manifest).expect("json");
            header.set_size(bytes.len() as u64);
            header.set_cksum();
        }
        builder
            .append_data(&mut header, &path, bytes.as_slice())
            .expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip");
}
