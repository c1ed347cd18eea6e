//! Network health probes (HTTP and TCP), run as tokio tasks off the loop.
//! They only report: the verdict, the timeout that counts and what follows
//! are the supervisor's. (Exec probes are processes, so the loop spawns and
//! reaps them like agents; see `daemon/probes.rs`.)

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use roster_core::health::{Check, HttpTarget};

/// The most of an answer read: the status line is all a probe needs.
const MAX_ANSWER: usize = 4096;

/// Runs an HTTP or TCP check; `Err` says why it failed. Gives up at
/// `timeout` (the supervisor also declares the probe failed then).
pub async fn probe_network(check: &Check, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        match check {
            Check::Tcp { address } => TcpStream::connect(address.as_str())
                .await
                .map(drop)
                .map_err(|error| format!("connect {address}: {error}")),
            Check::Http(target) => http(target).await,
            Check::Exec(_) => Err("an exec check is not a network probe".to_owned()),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn http(target: &HttpTarget) -> Result<(), String> {
    let stream = TcpStream::connect(target.address.as_str())
        .await
        .map_err(|error| format!("connect {}: {error}", target.address))?;
    exchange(stream, target).await
}

/// One GET on a connected stream: a 2xx status passes.
async fn exchange(mut stream: TcpStream, target: &HttpTarget) -> Result<(), String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: roster-health\r\nConnection: close\r\n\r\n",
        target.path, target.host_header
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("GET {}: {error}", target.url))?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|window| window == b"\r\n") && answer.len() < MAX_ANSWER {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| format!("GET {}: {error}", target.url))?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..read]);
    }
    let status =
        status_code(&answer).ok_or_else(|| format!("GET {}: not an HTTP answer", target.url))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {}: status {status}", target.url))
    }
}

/// A probe during a blue-green cutover, when old and new processes accept
/// on one socket: which of `groups` (process-group leaders) accepted the
/// connection, and the check's verdict. The request is sent only once the
/// acceptor is known, so the connection is still open while `/proc` is
/// read. `Ok((None, _))`: someone else (or nobody in time) accepted it.
pub async fn probe_attributed(
    check: &Check,
    timeout: Duration,
    groups: Vec<u32>,
) -> Result<(Option<u32>, Result<(), String>), String> {
    let address = match check {
        Check::Tcp { address } => address.clone(),
        Check::Http(target) => target.address.clone(),
        Check::Exec(_) => return Err("an exec check is not a network probe".to_owned()),
    };
    let attempt = async {
        let stream = match TcpStream::connect(address.as_str()).await {
            Ok(stream) => stream,
            Err(error) => return Ok((None, Err(format!("connect {address}: {error}")))),
        };
        let (ours, theirs) = match (stream.local_addr(), stream.peer_addr()) {
            (Ok(ours), Ok(theirs)) => (ours, theirs),
            _ => return Ok((None, Err("the connection closed at once".to_owned()))),
        };
        let acceptor = tokio::task::spawn_blocking(move || {
            crate::procfs::acceptor_group(theirs, ours, &groups, Duration::from_millis(500))
        })
        .await
        .map_err(|error| format!("looking up the acceptor: {error}"))?;
        let verdict = match check {
            Check::Http(target) => exchange(stream, target).await,
            _ => Ok(()),
        };
        Ok((acceptor, verdict))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Ok((None, Err(format!("no answer within {timeout:?}")))),
    }
}

/// The status code of `HTTP/1.x NNN ...`.
pub(crate) fn status_code(answer: &[u8]) -> Option<u16> {
    let line_end = answer.windows(2).position(|window| window == b"\r\n")?;
    let line = std::str::from_utf8(&answer[..line_end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Busy\r\nx"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 200"), None, "no line end yet");
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20000 OK\r\n"), None);
    }

    #[tokio::test]
    async fn http_and_tcp_against_real_listeners() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = socket.write_all(answer.as_bytes()).await;
            }
            // Then a listener that never answers: the probe must time out.
            let (_socket, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let target = HttpTarget::parse(&format!("http://{address}/health")).expect("valid url");
        let check = Check::Http(target);
        let second = Duration::from_secs(1);
        assert_eq!(probe_network(&check, second).await, Ok(()));
        let failed = probe_network(&check, second).await.expect_err("500");
        assert!(failed.contains("status 500"), "{failed}");
        let hung = probe_network(&check, Duration::from_millis(200))
            .await
            .expect_err("hangs");
        assert!(hung.contains("no answer within"), "{hung}");
        server.abort();
        let closed = Check::Tcp {
            address: "127.0.0.1:1".into(),
        };
        assert!(probe_network(&closed, second).await.is_err());
    }
}
