//! A small HTTP client for the dashboard's tests, and the project they
//! share: answers parsed by hand, event streams read until a condition
//! holds (with a deadline).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use roster_core::api::AgentState;

use crate::util::*;

/// An answer: status, headers (names lowercased), body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            out.push_str(&after[..size.min(after.len())]);
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn parse(raw: &str) -> Reply {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(key, value)| key == "transfer-encoding" && value.contains("chunked"));
    Reply {
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
        headers,
    }
}

/// A request to the dashboard on `port`; `Connection: close`.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    stream.set_read_timeout(Some(SECS(20))).expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("an answer in time");
    parse(&String::from_utf8_lossy(&raw))
}

/// A stream request sent on a new connection.
pub fn open_stream(port: u16, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream
}

/// Reads `stream` until `done` holds for what came, or the stream ends
/// (its last chunk, or the connection closed), within 20 s.
pub fn read_until(stream: &mut TcpStream, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SECS(20);
    let mut seen = Vec::new();
    let mut buffer = [0u8; 65536];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if !seen.is_empty() && done(&text) {
            return text;
        }
        if text.ends_with("\r\n0\r\n\r\n") {
            // The body's last chunk: the stream ended (the connection
            // itself may stay open for another request).
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {text}"
        );
        match stream.read(&mut buffer) {
            Ok(0) => return text,
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return text,
        }
    }
}

/// An event stream read until `done` holds for what came; it must not end
/// before.
pub fn read_stream(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut stream = open_stream(port, path, headers);
    let text = read_until(&mut stream, what, &done);
    assert!(done(&text), "the stream ended before {what}: {text}");
    text
}

/// A project with three agents: `a` of tenant acme, `b` of tenant other,
/// `c` without a tenant; each prints a line a second.
pub struct Site {
    pub roster: Roster,
    pub port: u16,
}

pub fn token(roster: &Roster, args: &[&str]) -> String {
    let mut all = vec!["web", "token", "add"];
    all.extend_from_slice(args);
    roster
        .ok(&all)
        .lines()
        .last()
        .expect("a token")
        .trim()
        .to_owned()
}

impl Site {
    pub fn new(agents: &str) -> Self {
        let roster = Roster::new();
        let port = free_port();
        roster.config(&format!("[web]\nlisten = \"127.0.0.1:{port}\"\n\n{agents}"));
        // The page's CPU, memory and sparklines are the sampler's: sample
        // often enough that they fill within a test's waits.
        let output = roster
            .command()
            .env("ROSTER_SAMPLE_INTERVAL", "500ms")
            .arg("up")
            .output()
            .expect("roster up");
        assert!(
            output.status.success(),
            "roster up failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        wait_for("the dashboard to listen", SECS(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Site { roster, port }
    }

    pub fn three() -> Self {
        let mut agents = String::new();
        for (name, tenant) in [("a", "acme"), ("b", "other")] {
            agents.push_str(&sh_agent(
                name,
                &format!("while true; do echo {name} is alive; sleep 1; done"),
                &format!("tenant = \"{tenant}\""),
            ));
        }
        agents.push_str(&sh_agent("c", "while true; do sleep 1; done", ""));
        let site = Self::new(&agents);
        for name in ["a", "b", "c"] {
            site.roster.wait_state(name, AgentState::Running, SECS(20));
        }
        site
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        http(self.port, "GET", path, headers, "")
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        http(self.port, "POST", path, headers, body)
    }

    /// Logs in: the cookie (`roster_session=ID`) and the page's CSRF token.
    pub fn login(&self, token: &str) -> (String, String) {
        let reply = self.post(
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &format!("token={token}"),
        );
        assert_eq!(reply.status, 303, "{}", reply.body);
        let cookie = reply
            .header("set-cookie")
            .and_then(|value| value.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let page = self.get("/", &[("Cookie", &cookie)]);
        let csrf = page
            .body
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the csrf meta tag")
            .to_owned();
        (cookie, csrf)
    }

    pub fn snapshot(&self, headers: &[(&str, &str)]) -> serde_json::Value {
        let reply = self.get("/web/api/snapshot", headers);
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str(&reply.body).expect("snapshot JSON")
    }
}

pub fn names(snapshot: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = snapshot["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|agent| agent["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}
