//! `/metrics` end to end: a real daemon with real agents, scraped over
//! loopback by the test, checked by `promtool check metrics`, and scraped
//! by a real Prometheus (Debian's `prometheus` package; `.ci/run` installs
//! it, and these two tests are recorded as skipped where it is missing).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::util::*;

mod floods;

/// `GET path` on 127.0.0.1:port: (status, content type, body), or None
/// when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String, String)> {
    http_get_with(port, path, "")
}

/// GET with extra header lines (each ending in CRLF): (status, the
/// content type, or with `WWW-Authenticate` set that header, body).
fn http_get_with(port: u16, path: &str, headers: &str) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(SECS(10))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |wanted: &str| {
        head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_owned())
        })
    };
    let content_type = header("www-authenticate")
        .or_else(|| header("content-type"))
        .unwrap_or_default();
    Some((status, content_type, body.to_owned()))
}

/// The body of a successful scrape of roster's `/metrics`.
fn scrape(port: u16) -> Option<String> {
    match http_get(port, "/metrics")? {
        (200, _, body) => Some(body),
        _ => None,
    }
}

/// The value of the series `name{agent="AGENT"}` in a scrape.
fn value(text: &str, name: &str, agent: &str) -> Option<f64> {
    let prefix = format!("{name}{{agent=\"{agent}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits for a scrape in which `condition` holds; returns it.
fn wait_scrape(port: u16, what: &str, condition: impl Fn(&str) -> bool) -> String {
    wait_for(what, SECS(15), || {
        scrape(port).filter(|text| condition(text))
    })
}

/// A Python agent listening on `port` (a TCP socket of its group) and
/// printing a line every 100 ms.
fn listening_agent(port: u16) -> String {
    format!(
        r#"
import socket, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", {port}))
server.listen()
while True:
    print("tick", flush=True)
    time.sleep(0.1)
"#
    )
}

/// Two agents: `web` (Python, listening, health-checked over TCP) and
/// `worker` (a shell loop), with `/metrics` on `metrics_port`.
fn two_agents(roster: &Roster, metrics_port: u16) {
    let web_port = free_port();
    roster.write("web.py", &listening_agent(web_port));
    roster.config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
         [agents.web]\ncommand = [\"python3\", \"web.py\"]\n\
         [agents.web.health]\ntcp = \"127.0.0.1:{web_port}\"\ninterval = \"200ms\"\nstart_period = \"0s\"\n\n{}",
        sh_agent("worker", "while true; do echo working; sleep 0.2; done", "")
    ));
}

#[test]
fn metrics_list_every_agent_and_follow_restarts() {
    let roster = Roster::new();
    let port = free_port();
    two_agents(&roster, port);
    roster.up();

    let text = wait_scrape(port, "both agents up, web healthy, lines logged", |text| {
        value(text, "roster_agent_up", "web") == Some(1.0)
            && value(text, "roster_agent_up", "worker") == Some(1.0)
            && value(text, "roster_agent_healthy", "web") == Some(1.0)
            && value(text, "roster_log_lines_total", "worker").is_some_and(|lines| lines >= 1.0)
    });
    for agent in ["web", "worker"] {
        let memory = value(&text, "roster_agent_memory_bytes", agent);
        assert!(memory.is_some_and(|bytes| bytes > 0.0), "{agent}:\n{text}");
        assert!(
            value(&text, "roster_agent_threads", agent).is_some_and(|threads| threads >= 1.0),
            "{agent}:\n{text}"
        );
        assert!(
            value(&text, "roster_agent_open_files", agent).is_some_and(|files| files >= 3.0),
            "{agent}:\n{text}"
        );
        assert!(
            value(&text, "roster_agent_cpu_seconds_total", agent).is_some(),
            "{agent}:\n{text}"
        );
        assert_eq!(
            value(&text, "roster_agent_restarts_total", agent),
            Some(0.0),
            "{text}"
        );
    }
    // The listening socket, and the health checker's connections.
    assert!(
        value(&text, "roster_agent_connections", "web").is_some_and(|sockets| sockets >= 1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "roster_agent_connections", "worker"),
        Some(0.0)
    );
    // The worker has no health check: no verdict, no series.
    assert_eq!(
        value(&text, "roster_agent_healthy", "worker"),
        None,
        "{text}"
    );
    assert!(text.contains("\nroster_alerts_firing 0\n"), "{text}");

    // A kill is a restart, counted.
    let pid = roster.agent("worker").pid.expect("worker runs");
    kill(pid, Signal::SIGKILL);
    wait_scrape(port, "the worker's restart to be counted", |text| {
        value(text, "roster_agent_restarts_total", "worker") == Some(1.0)
            && value(text, "roster_agent_up", "worker") == Some(1.0)
    });

    // A stopped agent is down, and its resource series are gone.
    roster.ok(&["stop", "worker"]);
    let text = wait_scrape(port, "the worker down", |text| {
        value(text, "roster_agent_up", "worker") == Some(0.0)
    });
    assert_eq!(value(&text, "roster_agent_memory_bytes", "worker"), None);
    assert!(
        value(&text, "roster_log_lines_total", "worker").is_some_and(|lines| lines >= 1.0),
        "counters stay: {text}"
    );
}

#[test]
fn metrics_move_with_apply_and_a_taken_port_refuses_it() {
    let roster = Roster::new();
    let first = free_port();
    roster.config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{first}\"\n\n{}",
        sh_agent("a", "sleep 1000", "")
    ));
    roster.up();
    let (status, content_type, _) = wait_for("/metrics on the first port", SECS(10), || {
        http_get(first, "/metrics")
    });
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let (status, _, _) = http_get(first, "/nothing").expect("an answer");
    assert_eq!(status, 404);

    // Another address: served there, and no longer on the first.
    let second = free_port();
    roster.config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{second}\"\n\n{}",
        sh_agent("a", "sleep 1000", "")
    ));
    roster.ok(&["apply"]);
    assert!(scrape(second).is_some_and(|text| text.contains("roster_agent_up{agent=\"a\"} 1")));
    wait_for("the first port to close", SECS(10), || {
        TcpStream::connect(("127.0.0.1", first))
            .is_err()
            .then_some(())
    });

    // A port someone else holds: the apply is refused, located and
    // journaled, and the old address keeps serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("address").port();
    roster.config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{taken_port}\"\n\n{}\n{}",
        sh_agent("a", "sleep 1000", ""),
        sh_agent("b", "sleep 1000", "")
    ));
    let output = roster.run(&["apply"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on 127.0.0.1:{taken_port}")),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    let rejected = roster.events(&[]);
    assert!(
        rejected
            .iter()
            .any(|event| event.kind == "config_rejected" && event.detail.contains("metrics")),
        "{rejected:#?}"
    );
    assert_eq!(roster.status().agents.len(), 1, "nothing applied");
    assert!(scrape(second).is_some(), "the old address still serves");
    drop(taken);

    // Without [metrics], nothing listens.
    roster.config(&sh_agent("a", "sleep 1000", ""));
    roster.ok(&["apply"]);
    wait_for("the metrics port to close", SECS(10), || {
        TcpStream::connect(("127.0.0.1", second))
            .is_err()
            .then_some(())
    });

    // Served again, with an agent added meanwhile: the scrape shows today's
    // agents, not the snapshot of when metrics were last served.
    let third = free_port();
    roster.config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{third}\"\n\n{}\n{}",
        sh_agent("a", "sleep 1000", ""),
        sh_agent("c", "sleep 1000", "")
    ));
    roster.ok(&["apply"]);
    let text = wait_scrape(third, "a and c", |text| {
        value(text, "roster_agent_up", "a") == Some(1.0)
            && value(text, "roster_agent_up", "c") == Some(1.0)
    });
    assert_eq!(value(&text, "roster_agent_restarts_total", "c"), Some(0.0));
}

#[test]
fn silent_scrapers_delay_neither_restarts_nor_status() {
    let roster = Roster::new();
    let port = free_port();
    roster.config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{}",
        sh_agent("a", "sleep 1000", "")
    ));
    roster.up();
    wait_scrape(port, "a up", |text| {
        value(text, "roster_agent_up", "a") == Some(1.0)
    });
    // More connections than one scraper may hold, each saying nothing: the
    // daemon holds its share until the request deadline and closes the
    // rest at once (metrics::floods tests those limits).
    let silent: Vec<TcpStream> = (0..64)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(silent.len() >= 32, "only {} connections", silent.len());
    let pid = roster.agent("a").pid.expect("a runs");
    kill(pid, Signal::SIGKILL);
    roster.wait_status("a restarted", SECS(5), |status| {
        status
            .agents
            .iter()
            .any(|agent| agent.name == "a" && agent.pid.is_some_and(|new| new != pid))
    });
    drop(silent);
    wait_scrape(
        port,
        "the restart counted once the silent scrapers left",
        |text| value(text, "roster_agent_restarts_total", "a") == Some(1.0),
    );
}

/// The path of a program, if installed.
fn which(program: &str) -> Option<std::path::PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    let Some(promtool) = which("promtool") else {
        skip(
            "metrics_pass_promtool_check_metrics",
            "promtool is not installed (Debian package prometheus)",
        );
        return;
    };
    let roster = Roster::new();
    let port = free_port();
    two_agents(&roster, port);
    roster.up();
    let text = wait_scrape(port, "both agents with samples", |text| {
        value(text, "roster_agent_memory_bytes", "web").is_some()
            && value(text, "roster_agent_memory_bytes", "worker").is_some()
            && value(text, "roster_agent_healthy", "web").is_some()
    });
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = check.wait_with_output().expect("promtool ends");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics ({}):\nstdout: {}\nstderr: {}\ninput:\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Prometheus server, killed (and reaped) whatever happens to the test.
struct Prometheus {
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_roster() {
    let Some(prometheus) = which("prometheus") else {
        skip(
            "a_real_prometheus_scrapes_roster",
            "prometheus is not installed (Debian package prometheus)",
        );
        return;
    };
    let roster = Roster::new();
    let metrics_port = free_port();
    two_agents(&roster, metrics_port);
    // With a bearer token, as a scrape from another host would need: the
    // target is only up if Prometheus sends it.
    let token = roster.write("metrics.token", "prometheus-token-0123456789\n");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let with_token = std::fs::read_to_string(roster.path("roster.toml"))
        .expect("the config")
        .replacen(
            "[metrics]\n",
            "[metrics]\nbearer_token_file = \"metrics.token\"\n",
            1,
        );
    roster.config(&with_token);
    roster.up();
    assert_eq!(
        http_get(metrics_port, "/metrics").map(|(status, _, _)| status),
        Some(401),
        "no token, no metrics"
    );

    let data = tempfile::Builder::new()
        .prefix("roster-prometheus-")
        .tempdir()
        .expect("temp dir");
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: roster\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: [\"127.0.0.1:{metrics_port}\"]\n",
            token.display()
        ),
    )
    .expect("write prometheus.yml");
    let web_port = free_port();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prometheus = Prometheus { child, _data: data };

    let query = |expression: &str| -> Option<serde_json::Value> {
        let (status, _, body) = http_get(web_port, &format!("/api/v1/query?query={expression}"))?;
        (status == 200).then_some(())?;
        let body: serde_json::Value = serde_json::from_str(&body).ok()?;
        (body["status"] == "success").then(|| body["data"]["result"].clone())
    };
    // The target is up (Prometheus' own `up` series for the job)...
    wait_for("Prometheus to report roster's target up", SECS(20), || {
        let result = query("up")?;
        result
            .as_array()?
            .iter()
            .any(|series| series["metric"]["job"] == "roster" && series["value"][1] == "1")
            .then_some(())
    });
    // ...and has every agent's series.
    let result = wait_for(
        "roster_agent_up of both agents in Prometheus",
        SECS(20),
        || {
            let result = query("roster_agent_up")?;
            let series = result.as_array()?.clone();
            let agents: Vec<String> = series
                .iter()
                .filter(|series| series["value"][1] == "1")
                .filter_map(|series| series["metric"]["agent"].as_str().map(str::to_owned))
                .collect();
            (agents.contains(&"web".to_owned()) && agents.contains(&"worker".to_owned()))
                .then_some(series)
        },
    );
    assert!(
        result
            .iter()
            .all(|series| series["metric"]["job"] == "roster"
                && series["metric"]["instance"] == format!("127.0.0.1:{metrics_port}")),
        "{result:#?}"
    );
    let memory = query("roster_agent_memory_bytes").expect("a query answer");
    assert!(
        memory.as_array().is_some_and(|series| series.len() == 2),
        "{memory:#?}"
    );
}

/// `[metrics] bearer_token_file`: scrapes without the token, or with
/// another, get 401 and nothing else; with it, the metrics. A new token
/// takes effect at apply on the same socket; a token file every user can
/// read is refused, and the running token stays.
#[test]
fn a_bearer_token_keeps_metrics_from_scrapers_without_it() {
    use std::os::unix::fs::PermissionsExt;
    let roster = Roster::new();
    let port = free_port();
    let token_file = roster.write("metrics.token", "first-token-0123456789\n");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = |extra: &str| {
        roster.config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\nbearer_token_file = \"metrics.token\"\n\n{}{extra}",
            sh_agent("worker", "sleep 3600", "")
        ));
    };
    config("");
    roster.up();
    let bearer = |token: &str| format!("Authorization: Bearer {token}\r\n");
    let (status, challenge, body) = wait_for("the metrics server", SECS(10), || {
        http_get(port, "/metrics")
    });
    assert_eq!(status, 401, "{body}");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!body.contains("roster_agent_up"), "{body}");
    let (status, _, body) =
        http_get_with(port, "/metrics", &bearer("wrong-token-0123456789")).expect("an answer");
    assert_eq!(status, 401, "{body}");
    let (status, _, body) =
        http_get_with(port, "/metrics", &bearer("first-token-0123456789")).expect("an answer");
    assert_eq!(status, 200);
    assert_eq!(
        value(&body, "roster_agent_up", "worker"),
        Some(1.0),
        "{body}"
    );

    // A new token, applied: the old one is refused, the new one served.
    std::fs::write(&token_file, "second-token-9876543210\n").expect("rotate the token");
    config("\n");
    roster.ok(&["apply"]);
    let (status, _, _) =
        http_get_with(port, "/metrics", &bearer("first-token-0123456789")).expect("an answer");
    assert_eq!(status, 401);
    let (status, _, body) =
        http_get_with(port, "/metrics", &bearer("second-token-9876543210")).expect("an answer");
    assert_eq!(status, 200, "{body}");
    // The scheme in any case, as HTTP has it.
    for scheme in ["bearer", "BEARER"] {
        let (status, _, body) = http_get_with(
            port,
            "/metrics",
            &format!("Authorization: {scheme} second-token-9876543210\r\n"),
        )
        .expect("an answer");
        assert_eq!(status, 200, "{scheme}: {body}");
    }

    // A token short enough to guess is refused, by check and by apply,
    // saying how to make one; the running one stays.
    std::fs::write(&token_file, "x\n").expect("a short token");
    config("\n\n\n");
    for command in ["check", "apply"] {
        let refused = roster.run(&[command]);
        assert_eq!(refused.status.code(), Some(1), "{command}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("too short")
                && stderr.contains("at least 16")
                && stderr.contains("openssl rand -hex 32"),
            "{command}: {stderr}"
        );
    }
    let (status, _, _) = http_get_with(port, "/metrics", &bearer("x")).expect("an answer");
    assert_eq!(status, 401);
    let (status, _, _) =
        http_get_with(port, "/metrics", &bearer("second-token-9876543210")).expect("an answer");
    assert_eq!(status, 200);
    std::fs::write(&token_file, "second-token-9876543210\n").expect("the token again");

    // A token every user can read is refused; the running one stays.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    config("\n\n");
    let refused = roster.run(&["apply"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("readable by every user") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    let (status, _, _) =
        http_get_with(port, "/metrics", &bearer("second-token-9876543210")).expect("an answer");
    assert_eq!(status, 200);
}
