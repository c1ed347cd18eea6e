//! The web dashboard served by the daemon (issue #18, part 2), over plain
//! HTTP on loopback with a small client of the test's own (and once over
//! TLS with curl and a self-signed certificate): login and the cookie's
//! flags, 401 without a session or a bearer token, 403 without the CSRF
//! token or with a read-only token, tenant isolation on every endpoint,
//! a removed token refused at once, wrong tokens rate limited, the
//! security headers, actions journaled with the token's name, a bind
//! failure that leaves the daemon running. The browser tests are in
//! `web_browser.rs`.

mod client;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use roster_core::api::AgentState;

use crate::util::*;
use client::*;

fn assert_secure_headers(reply: &Reply, what: &str) {
    let csp = reply.header("content-security-policy").unwrap_or_default();
    assert_eq!(
        csp,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        "{what}"
    );
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
}

#[test]
fn login_gives_a_strict_cookie_and_the_api_answers_nothing_without_it() {
    let site = Site::three();
    let ops = token(&site.roster, &["ops", "--admin"]);

    let page = site.get("/", &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"token\"") && page.body.contains("action=\"/login\""));
    assert!(
        !page.body.contains("csrf-token"),
        "no session, no dashboard"
    );
    assert_secure_headers(&page, "the login page");

    for (method, path) in [
        ("GET", "/web/api/snapshot"),
        ("GET", "/web/api/stream"),
        ("GET", "/web/api/logs/a"),
        ("POST", "/web/api/agents/a/restart"),
    ] {
        let reply = http(site.port, method, path, &[], "");
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.body);
        assert!(!reply.body.contains("alive") && !reply.body.contains("\"a\""));
        assert_secure_headers(&reply, path);
        let forged = http(
            site.port,
            method,
            path,
            &[("Cookie", "roster_session=0123")],
            "",
        );
        assert_eq!(forged.status, 401, "{method} {path} with a forged cookie");
    }
    let guessed = http(
        site.port,
        "GET",
        "/web/api/snapshot",
        &[("Authorization", "Bearer rst_00")],
        "",
    );
    assert_eq!(
        guessed.status, 401,
        "a wrong bearer token: {}",
        guessed.body
    );
    assert!(!guessed.body.contains("\"a\""), "{}", guessed.body);

    let wrong = site.post(
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=rst_0000",
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not valid") && wrong.body.contains("name=\"token\""));
    assert!(wrong.header("set-cookie").is_none());

    let right = site.post(
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={ops}"),
    );
    assert_eq!(right.status, 303);
    assert_eq!(right.header("location"), Some("/"));
    let cookie = right.header("set-cookie").expect("a cookie");
    for flag in [
        "roster_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(!cookie.contains(&ops), "the token is not the session");

    let (session, csrf) = site.login(&ops);
    let page = site.get("/", &[("Cookie", &session)]);
    assert!(page.body.contains("/assets/app.js") && page.body.contains("/assets/app.css"));
    assert!(!page.body.contains("<script>"), "no inline script");
    assert_secure_headers(&page, "the dashboard");
    let script = site.get("/assets/app.js", &[]);
    assert_eq!(script.status, 200);
    assert!(script
        .header("content-type")
        .unwrap_or_default()
        .contains("javascript"));
    assert!(script.body.contains("EventSource"));
    let style = site.get("/assets/app.css", &[]);
    assert!(style
        .header("content-type")
        .unwrap_or_default()
        .contains("text/css"));

    let reply = site.get("/web/api/snapshot", &[("Cookie", &session)]);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_secure_headers(&reply, "the snapshot");
    let snapshot: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    assert_eq!(names(&snapshot), ["a", "b", "c"]);
    assert_eq!(snapshot["me"]["token"], "ops");
    assert_eq!(snapshot["me"]["scope"], "admin");
    assert_eq!(snapshot["me"]["read_only"], false);
    let a = &snapshot["agents"][0];
    for key in [
        "state",
        "health",
        "uptime_secs",
        "restarts",
        "cpu",
        "memory",
        "release",
        "last_error",
        "alerts",
        "tenant",
    ] {
        assert!(a.get(key).is_some(), "{key} in {a}");
    }
    assert_eq!(a["tenant"], "acme");
    assert_eq!(a["state"], "running");
    // Memory and its sparkline come from the sampler's samples.
    let sampled = wait_for("a's memory in the snapshot", SECS(20), || {
        let reply = site.get("/web/api/snapshot", &[("Cookie", &session)]);
        let snapshot: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
        let a = snapshot["agents"][0].clone();
        let points = a["memory"].as_array()?.len();
        (a["memory_bytes"].as_u64()? > 0 && points >= 2).then_some(a)
    });
    assert!(sampled["cpu_percent"].is_number(), "{sampled}");

    // Actions: the session's CSRF token in the header, or 403.
    let before = site.roster.agent("a").pid;
    for bad in [vec![], vec![("X-CSRF-Token", "0000")]] {
        let mut headers = vec![("Cookie", session.as_str())];
        headers.extend(bad);
        let refused = site.post("/web/api/agents/a/restart", &headers, "");
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    assert_eq!(site.roster.agent("a").pid, before, "nothing restarted");
    let done = site.post(
        "/web/api/agents/a/restart",
        &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(done.status, 204, "{}", done.body);
    let events = site.roster.wait_event("a", "web_action", SECS(10));
    let action = events
        .iter()
        .find(|event| event.kind == "web_action")
        .expect("event");
    assert_eq!(action.detail, "restart by web token ops");
    wait_for("a restarted", SECS(20), || {
        let now = site.roster.agent("a");
        (now.pid.is_some() && now.pid != before).then_some(())
    });
    let text = site.roster.ok(&["events", "a"]);
    assert!(text.contains("restart by web token ops"), "{text}");
    let unknown = site.post(
        "/web/api/agents/a/explode",
        &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(unknown.status, 404);

    // Logout needs the CSRF token too, then the session is gone.
    let refused = site.post("/logout", &[("Cookie", &session)], "");
    assert_eq!(refused.status, 403);
    let out = site.post(
        "/logout",
        &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(out.status, 303);
    assert!(out
        .header("set-cookie")
        .unwrap_or_default()
        .contains("Max-Age=0"));
    assert_eq!(
        site.get("/web/api/snapshot", &[("Cookie", &session)])
            .status,
        401
    );
}

#[test]
fn a_tenant_sees_and_acts_on_its_own_agents_only_on_every_endpoint() {
    let site = Site::three();
    let acme = token(&site.roster, &["acme", "--tenant", "acme"]);
    let reader = token(
        &site.roster,
        &["acme-ro", "--tenant", "acme", "--read-only"],
    );
    let (session, csrf) = site.login(&acme);
    let cookie = [("Cookie", session.as_str())];

    let snapshot = site.snapshot(&cookie);
    assert_eq!(names(&snapshot), ["a"]);
    assert_eq!(snapshot["me"]["scope"], "tenant:acme");
    for event in snapshot["events"].as_array().expect("events") {
        assert_eq!(event["agent"], "a", "only a's events: {event}");
    }
    let text = snapshot.to_string();
    assert!(!text.contains("\"b\"") && !text.contains("\"c\"") && !text.contains("other"));

    let stream = read_stream(
        site.port,
        "/web/api/stream",
        &cookie,
        "a snapshot",
        |text| text.contains("event: snapshot") && text.matches('\n').count() > 12,
    );
    assert!(stream.contains("\"name\":\"a\""), "{stream}");
    assert!(!stream.contains("\"name\":\"b\"") && !stream.contains("\"name\":\"c\""));

    let log = read_stream(site.port, "/web/api/logs/a", &cookie, "a's lines", |text| {
        text.contains("a is alive")
    });
    assert!(log.contains("event: line"), "{log}");
    for hidden in ["b", "c", "nobody", "all"] {
        let reply = site.get(&format!("/web/api/logs/{hidden}"), &cookie);
        assert_eq!(reply.status, 404, "logs of {hidden}");
        assert!(!reply.body.contains("alive"));
    }
    let missing = site.get("/web/api/logs/nobody", &cookie);
    let foreign = site.get("/web/api/logs/b", &cookie);
    assert_eq!(missing.body, foreign.body, "no existence leak");

    let pid_b = site.roster.agent("b").pid;
    for hidden in ["b", "c", "all"] {
        for verb in ["restart", "stop", "start"] {
            let reply = site.post(
                &format!("/web/api/agents/{hidden}/{verb}"),
                &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
                "",
            );
            assert_eq!(reply.status, 404, "{verb} {hidden}");
        }
    }
    // A bearer token needs no CSRF token, and reaches no further.
    let bearer = format!("Bearer {acme}");
    let reply = site.post("/web/api/agents/b/stop", &[("Authorization", &bearer)], "");
    assert_eq!(reply.status, 404);
    assert_eq!(names(&site.snapshot(&[("Authorization", &bearer)])), ["a"]);
    assert_eq!(site.roster.agent("b").pid, pid_b, "b untouched");
    assert_eq!(site.roster.agent("b").state, AgentState::Running);

    // Read-only: sees, never acts.
    let (ro_session, ro_csrf) = site.login(&reader);
    assert_eq!(names(&site.snapshot(&[("Cookie", &ro_session)])), ["a"]);
    let page = site.get("/", &[("Cookie", &ro_session)]);
    assert!(page.body.contains("roster-read-only\" content=\"true\""));
    let reply = site.post(
        "/web/api/agents/a/stop",
        &[("Cookie", &ro_session), ("X-CSRF-Token", &ro_csrf)],
        "",
    );
    assert_eq!(reply.status, 403);
    let reply = site.post(
        "/web/api/agents/a/stop",
        &[("Authorization", &format!("Bearer {reader}"))],
        "",
    );
    assert_eq!(reply.status, 403);
    assert_eq!(site.roster.agent("a").state, AgentState::Running);

    let reply = site.post("/web/api/agents/a/stop", &[("Authorization", &bearer)], "");
    assert_eq!(reply.status, 204);
    site.roster.wait_state("a", AgentState::Stopped, SECS(20));
    let events = site.roster.wait_event("a", "web_action", SECS(10));
    assert!(events
        .iter()
        .any(|event| event.detail == "stop by web token acme"));

    // An operator's action on the tenant's agent: the tenant sees it done,
    // not the operator's token name; its own actions keep its name.
    let ops = token(&site.roster, &["ops-alice", "--admin"]);
    let reply = site.post(
        "/web/api/agents/a/start",
        &[("Authorization", &format!("Bearer {ops}"))],
        "",
    );
    assert_eq!(reply.status, 204);
    let details = wait_for(
        "the operator's start in the tenant's events",
        SECS(10),
        || {
            let snapshot = site.snapshot(&cookie);
            let details: Vec<String> = snapshot["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter(|event| event["kind"] == "web_action")
                .map(|event| event["detail"].as_str().unwrap_or_default().to_owned())
                .collect();
            details
                .iter()
                .any(|detail| detail == "start from the web dashboard")
                .then_some(details)
        },
    );
    assert!(
        details.contains(&"stop by web token acme".to_owned()),
        "{details:?}"
    );
    assert!(
        details.iter().all(|detail| !detail.contains("alice")),
        "{details:?}"
    );
    let journal = site.roster.ok(&["events", "a"]);
    assert!(
        journal.contains("start by web token ops-alice"),
        "{journal}"
    );
}

#[test]
fn a_removed_token_stops_working_at_once_and_its_sessions_end() {
    let site = Site::three();
    let ops = token(&site.roster, &["ops", "--admin"]);
    let (session, _) = site.login(&ops);
    assert_eq!(
        names(&site.snapshot(&[("Cookie", &session)])),
        ["a", "b", "c"]
    );
    let mut stream = open_stream(site.port, "/web/api/stream", &[("Cookie", &session)]);
    read_until(&mut stream, "a snapshot", |text| {
        text.contains("event: snapshot")
    });
    site.roster.ok(&["web", "token", "rm", "ops"]);
    // The open page's stream ends with the token (at its next tick).
    read_until(&mut stream, "the stream's end", |_| false);
    assert_eq!(
        site.get("/web/api/snapshot", &[("Cookie", &session)])
            .status,
        401
    );
    let bearer = format!("Bearer {ops}");
    assert_eq!(
        site.get("/web/api/snapshot", &[("Authorization", &bearer)])
            .status,
        401
    );
    let page = site.get("/", &[("Cookie", &session)]);
    assert!(page.body.contains("name=\"token\"") && !page.body.contains("csrf-token"));
    // A token of the same name made again is another token.
    let again = token(&site.roster, &["ops", "--admin"]);
    assert_eq!(
        site.get("/web/api/snapshot", &[("Cookie", &session)])
            .status,
        401
    );
    assert_eq!(
        site.get(
            "/web/api/snapshot",
            &[("Authorization", &format!("Bearer {again}"))]
        )
        .status,
        200
    );
    wait_for("the new token's use to be recorded", SECS(10), || {
        let listed = site.roster.ok(&["web", "token", "list"]);
        listed
            .lines()
            .any(|line| line.starts_with("ops") && !line.ends_with("never"))
            .then_some(())
    });
}

#[test]
fn wrong_tokens_are_slowed_then_refused_with_retry_after() {
    let site = Site::new(&sh_agent("a", "sleep 300", ""));
    let ops = token(&site.roster, &["ops", "--admin"]);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let started = Instant::now();
    for attempt in 1..=5 {
        let reply = site.post("/login", &form, &format!("token=rst_{attempt}"));
        assert_eq!(reply.status, 401, "attempt {attempt}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "wrong tokens are slowed down"
    );
    let refused = site.post("/login", &form, &format!("token={ops}"));
    assert_eq!(refused.status, 429, "even the right token, for a while");
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    // The API is no way around the limit: this address's bearer token
    // waits too.
    let reply = site.get(
        "/web/api/snapshot",
        &[("Authorization", &format!("Bearer {ops}"))],
    );
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
}

#[test]
fn wrong_bearer_tokens_count_against_their_client_like_logins() {
    let site = Site::new(&sh_agent("a", "sleep 300", ""));
    let ops = token(&site.roster, &["ops", "--admin"]);
    let right = site.get(
        "/web/api/snapshot",
        &[("Authorization", &format!("Bearer {ops}"))],
    );
    assert_eq!(right.status, 200, "{}", right.body);
    let started = Instant::now();
    for attempt in 1..=5 {
        let reply = site.get(
            "/web/api/snapshot",
            &[("Authorization", &format!("Bearer rst_{attempt}"))],
        );
        assert_eq!(reply.status, 401, "attempt {attempt}: {}", reply.body);
        assert!(!reply.body.contains("\"a\""), "{}", reply.body);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "wrong bearer tokens are slowed down"
    );
    let refused = site.post(
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={ops}"),
    );
    assert_eq!(refused.status, 429, "the login form is refused too");
    let again = site.get(
        "/web/api/snapshot",
        &[("Authorization", &format!("Bearer {ops}"))],
    );
    assert_eq!(again.status, 429, "{}", again.body);
}

#[test]
fn a_taken_port_is_a_warning_not_a_dead_daemon_and_an_apply_moves_it() {
    let roster = Roster::new();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("address").port();
    let agent = sh_agent("a", "sleep 300", "");
    roster.config(&format!("[web]\nlisten = \"127.0.0.1:{taken}\"\n\n{agent}"));
    roster.up();
    roster.wait_state("a", AgentState::Running, SECS(20));
    let status = roster.status();
    assert!(
        status
            .warnings
            .iter()
            .any(|warning| warning.contains("cannot serve the web dashboard")),
        "{:?}",
        status.warnings
    );
    let failed = roster.events(&[]);
    assert!(
        failed.iter().any(|event| event.kind == "web_failed"),
        "{failed:?}"
    );
    let port = free_port();
    roster.config(&format!("[web]\nlisten = \"127.0.0.1:{port}\"\n\n{agent}"));
    roster.ok(&["apply"]);
    let page = http(port, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(roster
        .status()
        .warnings
        .iter()
        .all(|warning| !warning.contains("web dashboard")));
    // An open page's stream, then [web] removed: nothing listens any
    // more, and the stream ends.
    let ops = token(&roster, &["ops", "--admin"]);
    let bearer = format!("Bearer {ops}");
    let mut stream = open_stream(port, "/web/api/stream", &[("Authorization", &bearer)]);
    let first = read_until(&mut stream, "a snapshot", |text| {
        text.contains("event: snapshot")
    });
    assert!(first.contains("\"name\":\"a\""), "{first}");
    roster.config(&agent);
    roster.ok(&["apply"]);
    wait_for("the dashboard to close", SECS(10), || {
        TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    read_until(&mut stream, "the stream's end", |_| false);
    drop(holder);
}

#[test]
fn tls_serves_the_dashboard_with_a_secure_cookie() {
    let test = "tls_serves_the_dashboard_with_a_secure_cookie";
    let (Ok(openssl), Ok(_curl)) = (which("openssl"), which("curl")) else {
        skip(test, "openssl or curl is missing");
        return;
    };
    let roster = Roster::new();
    let cert = roster.path("cert.pem");
    let key = roster.path("key.pem");
    let made = std::process::Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = free_port();
    roster.config(&format!(
        "[web]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n{}",
        cert.display(),
        key.display(),
        sh_agent("a", "sleep 300", "")
    ));
    roster.up();
    let ops = token(&roster, &["ops", "--admin"]);
    let curl = |args: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["-sS", "-k", "-i", "--max-time", "20"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let base = format!("https://127.0.0.1:{port}");
    let page = wait_for("the dashboard over TLS", SECS(20), || {
        let page = curl(&[&format!("{base}/")]);
        page.contains("name=\"token\"").then_some(page)
    });
    assert!(page
        .to_ascii_lowercase()
        .contains("content-security-policy"));
    let login = curl(&["-d", &format!("token={ops}"), &format!("{base}/login")]);
    let cookie_line = login
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie"))
        .unwrap_or_else(|| panic!("a cookie: {login}"));
    assert!(cookie_line.contains("; Secure"), "{cookie_line}");
    let session = cookie_line
        .split_once(':')
        .and_then(|(_, value)| value.trim().split(';').next())
        .expect("session");
    let snapshot = curl(&[
        "-H",
        &format!("Cookie: {session}"),
        &format!("{base}/web/api/snapshot"),
    ]);
    assert!(snapshot.contains("\"name\":\"a\""), "{snapshot}");
    // Plain HTTP on the TLS port gets nothing.
    let plain = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/web/api/snapshot"),
        ])
        .output()
        .expect("curl");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("\"name\""));

    // Renewed files (same paths, a new certificate) are served after an
    // apply, on the same socket: the session from before still works.
    let subject = || {
        let output = std::process::Command::new("curl")
            .args(["-sS", "-k", "-v", "--max-time", "20", "-o", "/dev/null"])
            .arg(format!("{base}/"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .find(|line| line.contains("subject:"))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(subject().contains("CN=127.0.0.1"), "{}", subject());
    let renewed = roster.path("renewed");
    std::fs::create_dir(&renewed).expect("mkdir");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=renewed"])
        .arg("-keyout")
        .arg(renewed.join("key.pem"))
        .arg("-out")
        .arg(renewed.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(made.status.success());
    std::fs::copy(renewed.join("key.pem"), &key).expect("renew the key");
    std::fs::copy(renewed.join("cert.pem"), &cert).expect("renew the certificate");
    roster.ok(&["apply"]);
    assert!(subject().contains("CN=renewed"), "{}", subject());
    let again = curl(&[
        "-H",
        &format!("Cookie: {session}"),
        &format!("{base}/web/api/snapshot"),
    ]);
    assert!(
        again.contains("\"name\":\"a\""),
        "the session outlived the renewal: {again}"
    );

    // A key that is not the certificate's: not used, said in status, the
    // renewed certificate still served; the daemon and its agent run on.
    let other = roster.path("other.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pid = roster.agent("a").pid;
    roster.config(&format!(
        "[web]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n{}",
        cert.display(),
        other.display(),
        sh_agent("a", "sleep 300", "")
    ));
    roster.ok(&["apply"]);
    let status = roster.status();
    assert!(
        status
            .warnings
            .iter()
            .any(|warning| warning.contains("do not make a TLS identity")
                && warning.contains("still serving as before")),
        "{:?}",
        status.warnings
    );
    assert!(subject().contains("CN=renewed"), "{}", subject());
    assert_eq!(roster.agent("a").pid, pid);
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}

/// Whether python3 can import selenium.
fn selenium_present() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let test = "the_dashboard_in_a_real_browser";
    for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !std::path::Path::new(program).exists() {
            skip(
                test,
                &format!("{program} is missing (apt: chromium chromium-driver)"),
            );
            return;
        }
    }
    if !selenium_present() {
        skip(test, "python3 has no selenium (pip install selenium)");
        return;
    }
    let mut agents = sh_agent(
        "a",
        "n=0; while true; do n=$((n+1)); echo \"a says $n\"; sleep 0.3; done",
        "tenant = \"acme\"",
    );
    agents.push_str(&sh_agent("b", "sleep 300", "tenant = \"other\""));
    agents.push_str(&sh_agent(
        "c",
        "while true; do echo '<script>alert(1)</script>'; printf '\\033[31mred\\033[0m\\n'; sleep 1; done",
        "",
    ));
    let site = Site::new(&agents);
    for name in ["a", "b", "c"] {
        site.roster.wait_state(name, AgentState::Running, SECS(20));
    }
    let admin = token(&site.roster, &["ops", "--admin"]);
    let tenant = token(&site.roster, &["acme", "--tenant", "acme"]);
    let reader = token(
        &site.roster,
        &["acme-ro", "--tenant", "acme", "--read-only"],
    );
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/web-screenshots");
    let args = serde_json::json!({
        "port": site.port,
        "admin": admin,
        "tenant": tenant,
        "reader": reader,
        "roster": BIN,
        "home": site.roster.home_path(),
        "config": site.roster.path("roster.toml"),
        "shots": shots,
    });
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/web_browser.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(args.to_string())
        .env("SE_OFFLINE", "true")
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().last() == Some("ok"),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    eprintln!(
        "web screenshots (admin.png, tenant.png) are in {}",
        shots.display()
    );
}
