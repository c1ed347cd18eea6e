//! The listener on real loopback sockets, with a patience short enough
//! for unit tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{serve, BoundedListener, Limits};

const PATIENCE: Duration = Duration::from_millis(400);

/// Serves `/slow` (answers after three times the patience) and `/quick`
/// on 127.0.0.1 within `limits`.
async fn server(limits: Limits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(PATIENCE * 3).await;
                "done"
            }),
        )
        .route("/quick", get(|| async { "quick" }));
    tokio::spawn(serve(BoundedListener::new(listener, limits), router));
    address
}

fn limits(per_peer: Option<usize>) -> Limits {
    Limits {
        slots: 16,
        per_peer,
        patience: PATIENCE,
    }
}

async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind the source address");
    socket.connect(to).await.expect("connect")
}

/// The whole answer, or what came before the daemon closed the connection.
async fn answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn get_from(from: [u8; 4], to: SocketAddr, path: &str) -> String {
    let mut stream = connect_from(from, to).await;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("send");
    answer(&mut stream).await
}

#[tokio::test]
async fn a_request_handled_for_longer_than_the_patience_is_answered() {
    let address = server(limits(None)).await;
    let answer = get_from([127, 0, 0, 1], address, "/slow").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.ends_with("done"), "{answer:?}");
}

#[tokio::test]
async fn a_request_sent_a_byte_at_a_time_is_cut_at_the_patience() {
    let address = server(limits(None)).await;
    let mut stream = connect_from([127, 0, 0, 1], address).await;
    let started = Instant::now();
    let request = format!(
        "GET /quick HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(100)
    );
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for byte in request.as_bytes() {
            if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut buffer = Vec::new();
    tokio::select! {
        _ = trickle => panic!("the whole request trickled in and the connection stayed open"),
        _ = reader.read_to_end(&mut buffer) => {}
    }
    let closed_after = started.elapsed();
    assert!(buffer.is_empty(), "{:?}", String::from_utf8_lossy(&buffer));
    assert!(
        closed_after >= PATIENCE - Duration::from_millis(50) && closed_after < PATIENCE * 4,
        "closed after {closed_after:?}"
    );
}

#[tokio::test]
async fn a_peer_past_its_cap_is_closed_at_once_and_others_are_served() {
    let address = server(Limits {
        patience: Duration::from_secs(30),
        ..limits(Some(2))
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from([127, 0, 0, 2], address).await);
    }
    let started = Instant::now();
    let mut closed = 0;
    for stream in &mut held {
        let mut byte = [0u8; 1];
        if let Ok(read) = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await
        {
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
            closed += 1;
        }
    }
    assert_eq!(closed, 3, "the connections past the cap, at once");
    assert!(started.elapsed() < Duration::from_secs(5));
    let answer = get_from([127, 0, 0, 3], address, "/quick").await;
    assert!(answer.ends_with("quick"), "{answer:?}");
    // Once its connections end, the peer is served again.
    drop(held);
    let answer = get_from([127, 0, 0, 2], address, "/quick").await;
    assert!(answer.ends_with("quick"), "{answer:?}");
}
