//! `/metrics` under floods: connections that send their request a byte a
//! second, half requests left open or abandoned by the thousand. Every
//! 127.0.0.0/8 address is this machine's, so a client socket bound to
//! 127.0.0.2 is another peer to the daemon than one bound to 127.0.0.3.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
};

use super::value;
use crate::util::*;

/// The scraper that must be answered.
const SCRAPER: [u8; 4] = [127, 0, 0, 1];
/// A peer sending its requests a byte a second.
const TRICKLER: [u8; 4] = [127, 0, 0, 2];
/// A peer leaving half requests open.
const HALF: [u8; 4] = [127, 0, 0, 3];
/// A peer opening thousands.
const FLOOD: [u8; 4] = [127, 0, 0, 4];

/// The daemon's limits (roster-daemon's `metrics/serve.rs`): connections one
/// peer may hold, and how long a request may take to arrive.
const PER_PEER: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request head that never ends.
const HALF_REQUEST: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: roster\r\n";

fn address(ip: [u8; 4], port: u16) -> SockaddrIn {
    SockaddrIn::new(ip[0], ip[1], ip[2], ip[3], port)
}

/// A connection from the loopback address `from` to 127.0.0.1:port,
/// non-blocking: the handshake may still be under way.
fn open_from(from: [u8; 4], port: u16) -> Option<TcpStream> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    bind(fd.as_raw_fd(), &address(from, 0)).ok()?;
    match connect(fd.as_raw_fd(), &address(SCRAPER, port)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Some(TcpStream::from(fd)),
        Err(_) => None,
    }
}

/// `GET /metrics` from `from` with extra header lines: (status, body), or
/// None when the connection is refused or closed, or nothing answers
/// within 10 s.
fn scrape_from(from: [u8; 4], port: u16, headers: &str) -> Option<(u16, String)> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    // Bounds connect(2) too, when the backlog is full.
    setsockopt(
        &fd,
        sockopt::SendTimeout,
        &nix::sys::time::TimeVal::new(10, 0),
    )
    .ok()?;
    bind(fd.as_raw_fd(), &address(from, 0)).ok()?;
    connect(fd.as_raw_fd(), &address(SCRAPER, port)).ok()?;
    let mut stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(SECS(10))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: roster\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Whether the daemon closed a non-blocking connection (or it never came
/// to be); one whose handshake is under way is not closed.
fn is_closed(mut stream: &TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected
                )
            }
        }
    }
}

fn open_count(streams: &[TcpStream]) -> usize {
    streams.iter().filter(|stream| !is_closed(stream)).count()
}

/// Writes a half request on each connection once its handshake is done,
/// for at most `within`; returns how many got it.
fn send_half_requests(streams: &[TcpStream], within: Duration) -> usize {
    let mut sent = vec![false; streams.len()];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && sent.contains(&false) {
        for (stream, sent) in streams.iter().zip(sent.iter_mut()) {
            if *sent {
                continue;
            }
            match (&*stream).write(HALF_REQUEST) {
                Ok(_) => *sent = true,
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected
                    ) => {}
                // Closed by the daemon already: nothing to send.
                Err(_) => *sent = true,
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sent.iter().filter(|sent| **sent).count()
}

/// Sends a long request on every connection, one byte a second, until
/// `stop` (or two minutes).
fn trickle(streams: Arc<Vec<TcpStream>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: roster\r\nX-Padding: {}\r\n\r\n",
            "x".repeat(200)
        );
        for byte in request.as_bytes().iter().take(120) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            for mut stream in streams.iter() {
                let _ = stream.write(std::slice::from_ref(byte));
            }
            // The trickler's pace, not a wait for the daemon.
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

/// A daemon serving `/metrics` (with `token`, if any) for one agent, `a`;
/// returns the port once it answers `scraper`.
fn metrics_daemon(roster: &Roster, token: Option<&str>) -> u16 {
    use std::os::unix::fs::PermissionsExt;
    let port = free_port();
    let token_line = match token {
        Some(token) => {
            let file = roster.write("metrics.token", &format!("{token}\n"));
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            "bearer_token_file = \"metrics.token\"\n"
        }
        None => "",
    };
    roster.config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n{token_line}\n{}",
        sh_agent("a", "sleep 3600", "")
    ));
    roster.up();
    port
}

fn authorization(token: Option<&str>) -> String {
    token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default()
}

/// Waits for a scrape from `from` that answers 200 with agent `a` up.
fn wait_answered(from: [u8; 4], port: u16, token: Option<&str>, what: &str, within: Duration) {
    wait_for(what, within, || {
        scrape_from(from, port, &authorization(token)).filter(|(status, body)| {
            *status == 200 && value(body, "roster_agent_up", "a") == Some(1.0)
        })
    });
}

/// Peers that send their requests a byte a second, and others that leave
/// half requests open, hold at most their share of the slots and only
/// until the request deadline (which the bytes do not extend); everyone
/// else is answered at once, and the flooding peers themselves a few
/// seconds later.
fn slow_clients_cannot_lock_scrapers_out(token: Option<&str>) {
    let roster = Roster::new();
    let port = metrics_daemon(&roster, token);
    wait_answered(SCRAPER, port, token, "the metrics server", SECS(10));

    // Below the listen backlog, so every handshake completes at once.
    let trickling: Arc<Vec<TcpStream>> =
        Arc::new((0..40).filter_map(|_| open_from(TRICKLER, port)).collect());
    let half: Vec<TcpStream> = (0..60).filter_map(|_| open_from(HALF, port)).collect();
    assert!(
        trickling.len() == 40 && half.len() == 60,
        "could not connect"
    );
    let opened = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = trickle(trickling.clone(), stop.clone());
    send_half_requests(&half, SECS(5));

    // Another peer is answered at once: the floods hold only their share.
    let (status, body) =
        scrape_from(SCRAPER, port, &authorization(token)).expect("a scrape beside the floods");
    assert_eq!(status, 200, "{body}");
    assert_eq!(value(&body, "roster_agent_up", "a"), Some(1.0), "{body}");
    if token.is_some() {
        let (status, _) = scrape_from(SCRAPER, port, "").expect("an answer without the token");
        assert_eq!(status, 401);
    }
    // A peer's connections past its share are closed at once, not left to
    // wait in the backlog behind the ones it holds.
    wait_for(
        "the half requests past their share to be closed",
        SECS(4),
        || (open_count(&half) <= PER_PEER).then_some(()),
    );
    assert!(
        opened.elapsed() < REQUEST_TIMEOUT,
        "closed only by the request deadline ({:?}), not at once",
        opened.elapsed()
    );
    // The held ones are closed at the deadline, however many bytes still
    // trickle in.
    wait_for(
        "every trickling connection to be closed while it still sends",
        REQUEST_TIMEOUT + SECS(8),
        || (open_count(&trickling) == 0).then_some(()),
    );
    wait_for("every half request to be closed", SECS(5), || {
        (open_count(&half) == 0).then_some(())
    });
    assert!(
        !trickler.is_finished(),
        "the trickler stopped sending early"
    );
    // The flooding peers are served again.
    wait_answered(
        TRICKLER,
        port,
        token,
        "a scrape from the trickling peer",
        SECS(10),
    );
    wait_answered(
        HALF,
        port,
        token,
        "a scrape from the half-request peer",
        SECS(10),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = trickler.join();
}

#[test]
fn slow_clients_cannot_lock_scrapers_out_without_a_token() {
    slow_clients_cannot_lock_scrapers_out(None);
}

#[test]
fn slow_clients_cannot_lock_scrapers_out_with_a_token() {
    slow_clients_cannot_lock_scrapers_out(Some("flood-test-token-0123456789"));
}

/// Up to 3000 connections, each sent a half request when its handshake
/// completes within two seconds.
fn half_request_flood(from: [u8; 4], port: u16) -> Vec<TcpStream> {
    let flood: Vec<TcpStream> = (0..3000).filter_map(|_| open_from(from, port)).collect();
    assert!(
        flood.len() > 500,
        "could only open {} connections",
        flood.len()
    );
    send_half_requests(&flood, SECS(2));
    flood
}

/// Thousands of half requests, left open by a client that stays or
/// abandoned by one that leaves, keep scrapes failing no longer than a few
/// seconds.
#[test]
fn thousands_of_half_requests_do_not_keep_scrapes_failing() {
    let roster = Roster::new();
    let port = metrics_daemon(&roster, None);
    wait_answered(SCRAPER, port, None, "the metrics server", SECS(10));

    // Left open: another peer is answered while they are.
    let flood = half_request_flood(FLOOD, port);
    let started = Instant::now();
    wait_answered(
        SCRAPER,
        port,
        None,
        "a scrape beside 3000 open half requests",
        SECS(10),
    );
    assert!(
        started.elapsed() < SECS(5),
        "answered only after {:?}",
        started.elapsed()
    );
    // The client leaves: its own scrapes are answered again at once, not
    // after the backlog it left has timed out.
    drop(flood);
    let left = Instant::now();
    wait_answered(
        FLOOD,
        port,
        None,
        "a scrape from the peer that left",
        SECS(10),
    );
    assert!(
        left.elapsed() < SECS(5),
        "answered only after {:?}",
        left.elapsed()
    );

    // Opened and abandoned at once, from the scraper's own address.
    drop(half_request_flood(SCRAPER, port));
    let left = Instant::now();
    wait_answered(
        SCRAPER,
        port,
        None,
        "a scrape after 3000 abandoned half requests",
        SECS(10),
    );
    assert!(
        left.elapsed() < SECS(5),
        "answered only after {:?}",
        left.elapsed()
    );
}
