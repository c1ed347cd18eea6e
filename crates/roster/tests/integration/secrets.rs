//! Secrets (issue #9, point 5): `roster secret set|list|rm|init-key`, the
//! store's file rules, injection at spawn (env < env_file < secrets), and
//! no value on any output surface.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Output, Stdio};

use roster_core::api::{AgentState, SecretsReply};

use crate::util::*;

/// A value unique to this run, easy to grep for.
fn unique_secret() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("sk-live-{:x}{:x}", std::process::id(), nanos)
}

/// Every output a test saw, to grep for the secret at the end.
#[derive(Default)]
struct Seen {
    outputs: Vec<(String, Vec<u8>)>,
}

impl Seen {
    fn add(&mut self, what: impl Into<String>, bytes: &[u8]) {
        self.outputs.push((what.into(), bytes.to_vec()));
    }

    /// Records a command's stdout and stderr.
    fn command(&mut self, args: &[&str], output: &Output) {
        self.add(format!("stdout of roster {args:?}"), &output.stdout);
        self.add(format!("stderr of roster {args:?}"), &output.stderr);
    }

    fn assert_clean(&self, secret: &str) {
        assert!(!self.outputs.is_empty(), "no surface was looked at");
        for (what, bytes) in &self.outputs {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "the secret value leaked into {what}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Runs roster with `stdin` piped in.
fn set(roster: &Roster, seen: &mut Seen, agent: &str, key: &str, value: &str) {
    let args = ["secret", "set", agent, key];
    let output = roster.run_with_stdin(&args, format!("{value}\n").as_bytes());
    seen.command(&args, &output);
    assert!(
        output.status.success(),
        "secret set failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run(roster: &Roster, seen: &mut Seen, args: &[&str]) -> Output {
    let output = roster.run(args);
    seen.command(args, &output);
    output
}

fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("read environ")
        .split(|byte| *byte == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

fn env_value(pid: u32, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    let entries = environ(pid);
    let found: Vec<&String> = entries
        .iter()
        .filter(|entry| entry.starts_with(&prefix))
        .collect();
    assert!(found.len() <= 1, "{key} is set twice: {found:?}");
    found.first().map(|entry| entry[prefix.len()..].to_owned())
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("stat {}: {error}", path.display()))
        .mode()
        & 0o7777
}

fn sha256_hex(value: &str) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(value.as_bytes()).expect("write");
    }
    let output = child.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Every file under `dir`, recursively: (path, bytes).
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            files.extend(files_under(&path));
        } else if file_type.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                // Rotated logs may be gzipped: read them plain too.
                if path.extension().is_some_and(|ext| ext == "gz") {
                    let mut plain = Vec::new();
                    let mut decoder = flate2::read::GzDecoder::new(bytes.as_slice());
                    let _ = std::io::Read::read_to_end(&mut decoder, &mut plain);
                    files.push((path.display().to_string(), plain));
                }
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    files
}

#[test]
fn secrets_reach_their_agents_and_no_output_surface() {
    let roster = Roster::new();
    let secret = unique_secret();
    let mut seen = Seen::default();

    // Refused before anything is stored, each with exit 1.
    for (args, stdin) in [
        (
            vec!["secret", "set", "quiet", "9KEY"],
            format!("{secret}\n"),
        ),
        (vec!["secret", "set", "quiet", "A-B"], format!("{secret}\n")),
        (
            vec!["secret", "set", "bad/name", "KEY"],
            format!("{secret}\n"),
        ),
        (vec!["secret", "set", "all", "KEY"], format!("{secret}\n")),
        (vec!["secret", "set", "quiet", "KEY"], String::new()),
        (vec!["secret", "set", "quiet", "KEY"], "\n".to_owned()),
        (
            vec!["secret", "set", "quiet", "KEY"],
            format!("{secret}\nsecond line\n"),
        ),
        (
            vec!["secret", "set", "quiet", "KEY"],
            format!("{secret}\0x"),
        ),
    ] {
        let output = roster.run_with_stdin(&args, stdin.as_bytes());
        seen.command(&args, &output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "roster {args:?} should fail: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).starts_with("error: "),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // No daemon yet: the CLI writes the store itself.
    set(&roster, &mut seen, "quiet", "API_TOKEN", &secret);
    set(&roster, &mut seen, "crasher", "API_TOKEN", &secret);
    let secrets_dir = roster.home_path().join("secrets");
    assert_eq!(mode(&secrets_dir), 0o700);
    assert_eq!(mode(&secrets_dir.join("quiet.env")), 0o600);
    let output = run(&roster, &mut seen, &["secret", "list", "quiet"]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "API_TOKEN\n");

    roster.write(
        "quiet.env",
        "# from a file\nexport FROM_FILE=\"file\"\nOTHER='from-file'\nAPI_TOKEN=from-file\n",
    );
    let proof = roster.path("proof.txt");
    let config = format!(
        "{quiet}{prover}{crasher}",
        quiet = sh_agent(
            "quiet",
            "echo started; exec sleep 1000",
            "env = { API_TOKEN = \"from-config\", OTHER = \"config\", ONLY_CONFIG = \"c\" }\nenv_file = \"quiet.env\"",
        ),
        prover = sh_agent(
            "prover",
            &format!(
                "printf %s \"$API_TOKEN\" | sha256sum > {}; echo proved; exec sleep 1000",
                proof.display()
            ),
            "",
        ),
        crasher = sh_agent(
            "crasher",
            "echo failing >&2; sleep 1; exit 3",
            "restart_delay = \"100ms\"",
        ),
    );
    roster.config(&config);
    let output = run(&roster, &mut seen, &["up"]);
    assert!(
        output.status.success() || output.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let quiet = roster.wait_state("quiet", AgentState::Running, SECS(10));
    let pid = quiet.pid.expect("a pid");
    // daemon env < config env < env_file < secrets.
    assert_eq!(
        env_value(pid, "API_TOKEN").as_deref(),
        Some(secret.as_str())
    );
    assert_eq!(env_value(pid, "OTHER").as_deref(), Some("from-file"));
    assert_eq!(env_value(pid, "FROM_FILE").as_deref(), Some("file"));
    assert_eq!(env_value(pid, "ONLY_CONFIG").as_deref(), Some("c"));

    // Through the daemon: the prover gets it at its next start, and proves it.
    set(&roster, &mut seen, "prover", "API_TOKEN", &secret);
    roster.wait_event("prover", "secret_set", SECS(5));
    let output = run(&roster, &mut seen, &["restart", "prover"]);
    assert!(output.status.success());
    let expected = sha256_hex(&secret);
    wait_for("the prover's proof", SECS(10), || {
        std::fs::read_to_string(&proof)
            .ok()
            .filter(|text| text.starts_with(&expected))
    });
    let output = run(&roster, &mut seen, &["restart", "quiet"]);
    assert!(output.status.success());
    let quiet = roster.wait_state("quiet", AgentState::Running, SECS(10));
    let pid = quiet.pid.expect("a pid");
    assert_eq!(
        env_value(pid, "API_TOKEN").as_deref(),
        Some(secret.as_str())
    );

    // Errors: a malformed env_file line holding the value, a missing
    // env_file, malformed and invalid API requests carrying the value.
    roster.write("broken.env", &format!("GOOD=1\n{secret}\n"));
    roster.write(
        "broken.toml",
        &config.replace("env_file = \"quiet.env\"", "env_file = \"broken.env\""),
    );
    let output = run(&roster, &mut seen, &["apply", "-f", "broken.toml"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.env:2: not KEY=VALUE"), "{stderr}");
    roster.write(
        "missing.toml",
        &config.replace("env_file = \"quiet.env\"", "env_file = \"absent.env\""),
    );
    let output = run(&roster, &mut seen, &["apply", "-f", "missing.toml"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("env_file of quiet: cannot read") && stderr.contains("absent.env"),
        "{stderr}"
    );
    for body in [
        format!("{{\"agent\":\"quiet\",\"key\":\"1BAD\",\"value\":\"{secret}\"}}"),
        format!("{{\"agent\":\"bad/x\",\"key\":\"K\",\"value\":\"{secret}\"}}"),
        format!("{{\"agent\":\"quiet\",\"key\":\"K\",\"value\":\"{secret}\\n\"}}"),
        format!("{{\"agent\":\"quiet\",\"key\":{secret:?}}}"),
        format!("{{\"agent\":\"quiet\",\"key\":\"K\",\"value\":\"{secret}"),
        format!("{{\"agent\":\"quiet\",\"key\":\"K\",\"value\":[\"{secret}\"]}}"),
    ] {
        let (status, answer) = api(&roster, "POST", "/v1/secrets/set", &body);
        assert!((400..500).contains(&status), "{status} {answer}");
        seen.add(
            format!("the answer to POST /v1/secrets/set {body}"),
            answer.as_bytes(),
        );
    }
    // A crash loop has run meanwhile.
    roster.wait_status("crasher to have exited", SECS(10), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "crasher" && agent.last_exit.is_some())
    });

    // The names, never the values.
    let output = run(&roster, &mut seen, &["secret", "list", "quiet", "--json"]);
    let reply: SecretsReply = serde_json::from_slice(&output.stdout).expect("list --json");
    assert_eq!(reply.keys, vec!["API_TOKEN"]);
    assert!(!reply.encrypted);

    // rm: the next start no longer has it (the env_file's value shows).
    let output = run(&roster, &mut seen, &["secret", "rm", "quiet", "API_TOKEN"]);
    assert!(output.status.success());
    roster.wait_event("quiet", "secret_removed", SECS(5));
    let output = run(&roster, &mut seen, &["secret", "rm", "quiet", "API_TOKEN"]);
    assert_eq!(output.status.code(), Some(1));
    let output = run(&roster, &mut seen, &["secret", "list", "quiet"]);
    assert!(output.stdout.is_empty());
    let output = run(&roster, &mut seen, &["restart", "quiet"]);
    assert!(output.status.success());
    let quiet = wait_for("quiet's new process", SECS(10), || {
        let agent = roster.agent("quiet");
        (agent.state == AgentState::Running && agent.pid != Some(pid)).then_some(agent)
    });
    let new_pid = quiet.pid.expect("a pid");
    assert_eq!(
        env_value(new_pid, "API_TOKEN").as_deref(),
        Some("from-file")
    );

    // Every surface.
    for args in [
        vec!["status", "--json"],
        vec!["status"],
        vec!["events", "--json"],
        vec!["events"],
        vec!["alerts", "--json"],
        vec!["logs", "-n", "1000"],
        vec!["releases", "quiet", "--json"],
        vec!["secret", "list", "prover", "--json"],
    ] {
        run(&roster, &mut seen, &args);
    }
    for path in [
        "/v1/status",
        "/v1/alerts",
        "/v1/history",
        "/v1/history?agent=quiet",
        "/v1/releases?agent=quiet",
        "/v1/deploy?agent=quiet",
        "/v1/secrets?agent=prover",
        "/v1/secrets?agent=crasher",
    ] {
        let (_, answer) = api(&roster, "GET", path, "");
        seen.add(format!("GET {path}"), answer.as_bytes());
    }
    let events = roster.events(&[]);
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    assert!(kinds.contains(&"secret_set") && kinds.contains(&"secret_removed"));
    assert!(kinds.contains(&"config_rejected"));
    let output = run(&roster, &mut seen, &["down"]);
    assert!(output.status.success());
    let home = roster.home_path();
    for name in ["daemon.log", "journal.db", "journal.db-wal"] {
        if let Ok(bytes) = std::fs::read(home.join(name)) {
            seen.add(name, &bytes);
        }
    }
    assert!(
        std::fs::metadata(home.join("daemon.log")).is_ok_and(|meta| meta.len() > 0),
        "the daemon's log was looked at"
    );
    for (path, bytes) in files_under(&home.join("logs")) {
        seen.add(path, &bytes);
    }
    let logs = files_under(&home.join("logs"));
    assert!(
        logs.iter()
            .any(|(_, bytes)| contains(bytes, b"proved") || contains(bytes, b"started")),
        "the logs were looked at"
    );
    assert!(seen.outputs.len() > 60, "{} surfaces", seen.outputs.len());
    seen.assert_clean(&secret);
    // The store itself holds it (plain, 0600): the one place it may be.
    let stored = std::fs::read(home.join("secrets/prover.env")).expect("prover.env");
    assert!(contains(&stored, secret.as_bytes()));
}

#[test]
fn a_link_planted_as_an_agents_file_is_refused_not_followed() {
    let roster = Roster::new();
    let secrets_dir = roster.home_path().join("secrets");
    std::fs::create_dir(&secrets_dir).expect("mkdir");
    std::fs::set_permissions(
        &secrets_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let victim = roster.path("victim");
    std::fs::write(&victim, "keep\n").expect("victim");
    std::os::unix::fs::symlink(&victim, secrets_dir.join("web.env")).expect("ln");

    // Without a daemon.
    let output = roster.run_with_stdin(&["secret", "set", "web", "KEY"], b"value\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    let output = roster.run(&["secret", "list", "web"]);
    assert_eq!(output.status.code(), Some(1));

    // With one: it starts, says why web has no secrets, and refuses too.
    roster.config(&sh_agent("web", "exec sleep 1000", ""));
    roster.up();
    let status = roster.status();
    assert!(
        status
            .warnings
            .iter()
            .any(|warning| warning.contains("web") && warning.contains("symbolic link")),
        "{:?}",
        status.warnings
    );
    let output = roster.run_with_stdin(&["secret", "set", "web", "KEY"], b"value\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep\n");
    assert!(std::fs::symlink_metadata(secrets_dir.join("web.env"))
        .expect("the link stays")
        .file_type()
        .is_symlink());

    // A secrets directory others may read is refused, never chmod-ed.
    let other = Roster::new();
    let open_dir = other.home_path().join("secrets");
    std::fs::create_dir(&open_dir).expect("mkdir");
    std::fs::set_permissions(
        &open_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let output = other.run_with_stdin(&["secret", "set", "web", "KEY"], b"value\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chmod 0700"), "{stderr}");
    assert_eq!(mode(&open_dir), 0o755);
}

#[test]
fn with_the_key_file_values_are_stored_encrypted() {
    let roster = Roster::new();
    let secret = unique_secret();
    let mut seen = Seen::default();
    set(
        &roster,
        &mut seen,
        "web",
        "EARLY",
        &format!("{secret}-early"),
    );
    let output = run(&roster, &mut seen, &["secret", "init-key"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = roster.home_path().join("secrets/key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(std::fs::read(&key).expect("key").len(), 32);
    let output = run(&roster, &mut seen, &["secret", "init-key"]);
    assert_eq!(output.status.code(), Some(1), "a key is never replaced");

    roster.config(&sh_agent("web", "exec sleep 1000", ""));
    roster.up();
    set(&roster, &mut seen, "web", "API_TOKEN", &secret);
    let output = run(&roster, &mut seen, &["restart", "web"]);
    assert!(output.status.success());
    let web = wait_for("web's process with the secret", SECS(10), || {
        let agent = roster.agent("web");
        let pid = agent.pid?;
        (agent.state == AgentState::Running
            && env_value(pid, "API_TOKEN").as_deref() == Some(secret.as_str()))
        .then_some(pid)
    });
    assert_eq!(
        env_value(web, "EARLY").as_deref(),
        Some(format!("{secret}-early").as_str())
    );
    let stored = std::fs::read(roster.home_path().join("secrets/web.env")).expect("web.env");
    assert_eq!(mode(&roster.home_path().join("secrets/web.env")), 0o600);
    assert!(
        !contains(&stored, secret.as_bytes()),
        "the value is in clear:\n{}",
        String::from_utf8_lossy(&stored)
    );
    let output = run(&roster, &mut seen, &["secret", "list", "web", "--json"]);
    let reply: SecretsReply = serde_json::from_slice(&output.stdout).expect("list --json");
    assert_eq!(reply.keys, vec!["API_TOKEN", "EARLY"]);
    assert!(reply.encrypted);
    seen.assert_clean(&secret);
}
