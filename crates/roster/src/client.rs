//! A small blocking HTTP/1.1 client for the daemon's Unix socket. The CLI
//! makes one request per connection, so `Connection: close` and reading to
//! the end is all the protocol it needs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use roster_core::api::{ErrorReply, StatusReply};

/// A connection factory for one home's daemon.
pub struct Client {
    socket: PathBuf,
    /// How long an answer may take.
    timeout: Duration,
}

/// Whether a daemon answers.
#[derive(Debug)]
pub enum Reach {
    /// It answers.
    Up,
    /// No daemon listens on the socket.
    Down,
}

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            timeout: Duration::from_secs(60),
        }
    }

    /// The same client, giving up on an answer after `timeout` (a
    /// dashboard must notice a daemon that stopped answering).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects, or says there is no daemon.
    fn connect(&self) -> Result<Option<UnixStream>> {
        match UnixStream::connect(&self.socket) {
            Ok(stream) => {
                stream.set_read_timeout(Some(self.timeout))?;
                stream.set_write_timeout(Some(self.timeout.min(Duration::from_secs(10))))?;
                Ok(Some(stream))
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(error) => {
                Err(error).with_context(|| format!("connecting to {}", self.socket.display()))
            }
        }
    }

    /// Whether a daemon answers on the socket.
    pub fn reach(&self) -> Reach {
        match self.get::<StatusReply>("/v1/status") {
            Ok(_) => Reach::Up,
            Err(_) => Reach::Down,
        }
    }

    /// Sends one request; `Ok(None)` when no daemon listens.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Option<(u16, Vec<u8>)>> {
        let Some(mut stream) = self.connect()? else {
            return Ok(None);
        };
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: roster\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // A daemon that closes the connection before it reads the request
        // is going away (its last sweep ended) or refused this user.
        let closed = |error: std::io::Error| -> anyhow::Error {
            if matches!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) {
                anyhow!(
                    "the roster daemon at {} closed the connection before answering {method} {path}: it is shutting down, or refused this user\n  hint: ask again; `roster status` says whether it still runs",
                    self.socket.display()
                )
            } else {
                anyhow::Error::new(error).context(format!("sending {method} {path} to the daemon"))
            }
        };
        stream.write_all(head.as_bytes()).map_err(closed)?;
        stream.write_all(&body).map_err(closed)?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .with_context(|| format!("reading the daemon's answer to {method} {path}"))?;
        parse_response(&response).map(Some)
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let Some((status, body)) = self.raw(method, path, body)? else {
            bail!(NotRunning(self.socket.clone()));
        };
        if (200..300).contains(&status) {
            if body.is_empty() {
                return serde_json::from_slice(b"null").context("empty answer");
            }
            return serde_json::from_slice(&body).with_context(|| {
                format!("the daemon's answer to {path} is not what this roster understands")
            });
        }
        let message = serde_json::from_slice::<ErrorReply>(&body)
            .map(|reply| reply.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        Err(anyhow!(ApiError { status, message }))
    }

    /// GET and decode.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call("GET", path, None)
    }

    /// POST a JSON body and decode the answer (`()` for 204).
    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call("POST", path, Some(serde_json::to_vec(body)?))
    }
}

/// No daemon listens for this home.
#[derive(Debug)]
pub struct NotRunning(pub PathBuf);

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let home = self.0.parent().unwrap_or(&self.0);
        write!(
            f,
            "no roster daemon runs for {}\n  hint: start one with `roster up`, or pass the right --home",
            home.display()
        )
    }
}

impl std::error::Error for NotRunning {}

/// The daemon answered with an error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The daemon's message.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>)> {
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the daemon's answer has no HTTP header"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("the daemon's answer has no status line"))?;
    let chunked = lines.any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut decoded = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunked answer"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| anyhow!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((status, decoded));
        }
        if rest.len() < size {
            bail!("truncated chunked answer");
        }
        decoded.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            parse_response(plain).expect("parses"),
            (200, b"{}".to_vec())
        );
        let chunked = b"HTTP/1.1 422 Unprocessable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).expect("parses"),
            (422, b"abcde".to_vec())
        );
        assert!(parse_response(b"garbage").is_err());
    }
}
