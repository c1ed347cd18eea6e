//! A listener that serves a bounded number of connections at once, for the
//! control socket (Unix) and `/metrics` (TCP), and closes the connections
//! of clients that keep it waiting.
//!
//! A client that opens thousands of connections must cost neither the
//! descriptors agents' restarts need nor memory: past the bound, new
//! connections wait in the kernel's backlog. One that sends its request a
//! byte at a time must not hold a slot for long: a request must be in
//! within a fixed time ([`roster_core::connection::Patience`]), which no
//! byte extends. One peer (an IP address) may hold only so many slots; its
//! connections past them are closed at once, so the backlog behind them
//! drains. And a request the daemon is working on (an apply waiting for
//! users to be created) is never cut: that time is not the client's.

use std::future::Future;
use std::hash::Hash;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::Router;
use roster_core::api::EventKind;
use roster_core::connection::{Patience, PeerCounts};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long the control socket waits for a client: for a request to be in
/// (from the accept, or from the previous answer), or for the client to
/// take more of an answer. Time in which a request is handled never counts.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body read (axum's own limit for JSON bodies).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// How many connections a listener serves, and how long it waits for a
/// client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub slots: usize,
    /// Connections one peer may hold (TCP: per IP address); past it, its
    /// new ones are closed at once. `None`: no cap (the Unix socket).
    pub per_peer: Option<usize>,
    /// How long the server waits for a client ([`Patience`]).
    pub patience: Duration,
}

/// A socket that accepts connections: Unix or TCP.
pub trait Accept: Send + 'static {
    /// A connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A peer's address.
    type Addr: Send + std::fmt::Debug;
    /// What [`Limits::per_peer`] counts by.
    type Peer: Eq + Hash + Clone + Send + Sync + 'static;
    /// Accepts one connection.
    fn accept_one(&mut self)
        -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send;
    /// The bound address.
    fn bound_address(&self) -> io::Result<Self::Addr>;
    /// The peer a connection from `address` is counted for, if any.
    fn peer(address: &Self::Addr) -> Option<Self::Peer>;
    /// The client's IP address, for handlers (TCP only).
    fn client_ip(_address: &Self::Addr) -> Option<std::net::IpAddr> {
        None
    }
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    type Peer = ();

    fn accept_one(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send {
        self.accept()
    }

    fn bound_address(&self) -> io::Result<Self::Addr> {
        self.local_addr()
    }

    fn peer(_address: &Self::Addr) -> Option<()> {
        None
    }
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;
    type Peer = std::net::IpAddr;

    fn accept_one(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send {
        self.accept()
    }

    fn bound_address(&self) -> io::Result<Self::Addr> {
        self.local_addr()
    }

    fn peer(address: &Self::Addr) -> Option<std::net::IpAddr> {
        // An IPv4 client of a dual-stack socket is the same peer as over
        // IPv4.
        Some(address.ip().to_canonical())
    }

    fn client_ip(address: &Self::Addr) -> Option<std::net::IpAddr> {
        Some(address.ip().to_canonical())
    }
}

/// A listener serving at most [`Limits::slots`] connections at once, at
/// most [`Limits::per_peer`] of one peer.
pub struct BoundedListener<L: Accept> {
    inner: L,
    limits: Limits,
    /// One permit per connection served.
    permits: Arc<Semaphore>,
    peers: Arc<Mutex<PeerCounts<L::Peer>>>,
}

impl<L: Accept> BoundedListener<L> {
    /// Serves connections of `inner` within `limits`.
    pub fn new(inner: L, limits: Limits) -> Self {
        Self {
            inner,
            limits,
            permits: Arc::new(Semaphore::new(limits.slots)),
            peers: Arc::new(Mutex::new(PeerCounts::new(
                limits.per_peer.unwrap_or(usize::MAX),
            ))),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<L: Accept> axum::serve::Listener for BoundedListener<L> {
    type Io = BoundedStream<L::Stream>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Wait for a free slot before accepting: the kernel holds the
            // rest in the backlog.
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                // The semaphore is never closed; wait rather than spin.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            loop {
                let (stream, address) = match self.inner.accept_one().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and the like: back off and let files close.
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break;
                    }
                };
                let peer = match L::peer(&address) {
                    Some(peer) if self.limits.per_peer.is_some() => {
                        if !lock(&self.peers).admit(peer.clone()) {
                            // Closed at once: the peer holds its share, and
                            // the backlog behind this one drains.
                            tracing::debug!("{address:?} holds its share of connections: closed");
                            drop(stream);
                            continue;
                        }
                        let slot: Box<dyn Send + Sync> = Box::new(PeerSlot {
                            peer,
                            peers: self.peers.clone(),
                        });
                        Some(slot)
                    }
                    _ => None,
                };
                let attention = Attention(
                    Arc::new(Mutex::new(Patience::new(
                        std::time::Instant::now(),
                        self.limits.patience,
                    ))),
                    ClientIp(L::client_ip(&address)),
                );
                return (
                    BoundedStream {
                        stream,
                        _permit: permit,
                        _peer: peer,
                        attention,
                        timer: Box::pin(tokio::time::sleep(self.limits.patience)),
                    },
                    address,
                );
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.bound_address()
    }
}

/// Serves `router` on `listener`; every request is handled within its
/// connection's [`Patience`] (see [`patient`]).
pub async fn serve<L: Accept>(listener: BoundedListener<L>, router: Router) -> io::Result<()>
where
    L::Addr: Sync,
{
    let router = router.layer(axum::middleware::from_fn(patient));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<Attention>(),
    )
    .await
}

/// A connection's [`Patience`], shared by its stream (which closes the
/// connection when it runs out) and the requests handled on it.
#[derive(Clone)]
pub struct Attention(Arc<Mutex<Patience>>, ClientIp);

/// The client's IP address (TCP), in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl Attention {
    fn deadline(&self) -> Option<tokio::time::Instant> {
        lock(&self.0)
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
    }

    fn sent(&self) {
        lock(&self.0).handle_sent(std::time::Instant::now());
    }
}

/// While held, a request is being handled: the connection waits on the
/// daemon, not on its client.
struct Handling(Attention);

impl Handling {
    fn begin(attention: Attention) -> Self {
        lock(&attention.0).handle_request();
        Self(attention)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        lock(&self.0 .0).handle_answered(std::time::Instant::now());
    }
}

impl<L: Accept> Connected<IncomingStream<'_, BoundedListener<L>>> for Attention {
    fn connect_info(stream: IncomingStream<'_, BoundedListener<L>>) -> Self {
        stream.io().attention.clone()
    }
}

/// Reads a request's body while the client's time still runs (a body sent
/// a byte at a time is cut like such a head), then handles the request
/// with the time stopped.
async fn patient(
    ConnectInfo(attention): ConnectInfo<Attention>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(attention.1);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            format!("the request body is larger than {MAX_BODY_BYTES} bytes\n"),
        )
            .into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONNECTION, "close")],
            format!(
                "the request body could not be read: cut short, or larger than {MAX_BODY_BYTES} bytes\n"
            ),
        )
            .into_response();
    };
    let _handling = Handling::begin(attention);
    next.run(Request::from_parts(parts, axum::body::Body::from(body)))
        .await
}

/// A peer's share of connections, given back when the connection closes.
struct PeerSlot<P: Eq + Hash> {
    peer: P,
    peers: Arc<Mutex<PeerCounts<P>>>,
}

impl<P: Eq + Hash> Drop for PeerSlot<P> {
    fn drop(&mut self) {
        lock(&self.peers).release(&self.peer);
    }
}

/// A served connection: it holds its slot (and its peer's share) until
/// closed, and is closed when its [`Patience`] runs out.
pub struct BoundedStream<S> {
    stream: S,
    _permit: OwnedSemaphorePermit,
    /// A [`PeerSlot`], when the peer is counted.
    _peer: Option<Box<dyn Send + Sync>>,
    attention: Attention,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S> BoundedStream<S> {
    /// Ready with an error once the client has kept the server waiting
    /// past its deadline; pending (and woken then) before, and while a
    /// request is handled.
    fn poll_patience(&mut self, context: &mut Context<'_>) -> Poll<io::Error> {
        let Some(deadline) = self.attention.deadline() else {
            return Poll::Pending;
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(context) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client kept the connection waiting: closed",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BoundedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Bytes read do not extend the deadline: a request sent a byte at
        // a time must still be in by it.
        match Pin::new(&mut self.stream).poll_read(context, buffer) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => self.poll_patience(context).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BoundedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(context, bytes) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.attention.sent();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.poll_patience(context).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_flush(context) {
            Poll::Pending => self.poll_patience(context).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

/// The control socket, admitting only users who may control roster: root,
/// the daemon's own user, and members of the admin group when one is
/// configured (the socket is then 0660 and that group's). Anyone else who
/// reaches the socket (a loosened mode, an inherited descriptor) gets a 403
/// and is journaled, at most once a minute per uid.
pub struct GuardedUnix {
    /// The socket.
    pub inner: tokio::net::UnixListener,
    /// The admin group's gid, if any.
    pub admin_gid: Option<u32>,
    /// Where refusals are journaled.
    pub inbox: crate::inbox::Inbox,
    /// When each uid was last journaled.
    pub reported: std::collections::HashMap<u32, std::time::Instant>,
}

impl GuardedUnix {
    fn admits(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 || uid == nix::unistd::Uid::effective().as_raw() {
            return true;
        }
        let Some(admin) = self.admin_gid else {
            return false;
        };
        if gid == admin {
            return true;
        }
        // Supplementary groups of the connecting process.
        pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("Groups:").map(str::to_owned))
            })
            .is_some_and(|groups| {
                groups
                    .split_whitespace()
                    .any(|group| group.parse::<u32>() == Ok(admin))
            })
    }
}

impl Accept for GuardedUnix {
    type Stream = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    type Peer = ();

    async fn accept_one(&mut self) -> io::Result<(Self::Stream, Self::Addr)> {
        use tokio::io::AsyncWriteExt;
        loop {
            let (mut stream, address) = self.inner.accept().await?;
            let Ok(peer) = stream.peer_cred() else {
                continue;
            };
            if self.admits(peer.uid(), peer.gid(), peer.pid()) {
                return Ok((stream, address));
            }
            let now = std::time::Instant::now();
            let due = self
                .reported
                .get(&peer.uid())
                .is_none_or(|last| now.duration_since(*last) >= Duration::from_secs(60));
            if due {
                self.reported.insert(peer.uid(), now);
                self.inbox.send(crate::inbox::Input::Note {
                    agent: None,
                    kind: EventKind::ApiRefused,
                    detail: format!(
                        "uid {} (pid {}) may not control roster: refused",
                        peer.uid(),
                        peer.pid()
                            .map(|pid| pid.to_string())
                            .unwrap_or_else(|| "?".into())
                    ),
                });
            }
            let body = r#"{"error":"this user may not control roster\n  hint: ask an admin to add you to roster's admin group, or use sudo"}"#;
            let answer = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            // Read the request first (closing on unread bytes would reset
            // the connection before the answer arrives); never wait on a
            // refused peer for long.
            let _ = tokio::time::timeout(Duration::from_millis(200), async {
                use tokio::io::AsyncReadExt;
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            })
            .await;
        }
    }

    fn bound_address(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }

    fn peer(_address: &Self::Addr) -> Option<()> {
        // Only users who may control roster get this far.
        None
    }
}

pub(crate) mod tcp;

#[cfg(test)]
mod tests;
