//! A listener that serves a bounded number of connections at once and
//! closes idle ones, for the control socket (Unix) and `/metrics` (TCP).
//!
//! A client that opens thousands of connections must cost neither the
//! descriptors agents' restarts need nor memory: past the bound, new
//! connections wait in the kernel's backlog.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A connection that neither sends nor receives for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket that accepts connections: Unix or TCP.
pub trait Accept: Send + 'static {
    /// A connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A peer's address.
    type Addr: Send;
    /// Accepts one connection.
    fn accept_one(&mut self)
        -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send;
    /// The bound address.
    fn bound_address(&self) -> io::Result<Self::Addr>;
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    fn accept_one(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send {
        self.accept()
    }

    fn bound_address(&self) -> io::Result<Self::Addr> {
        self.local_addr()
    }
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    fn accept_one(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send {
        self.accept()
    }

    fn bound_address(&self) -> io::Result<Self::Addr> {
        self.local_addr()
    }
}

/// A listener serving at most as many connections at once as `permits`
/// holds.
pub struct BoundedListener<L> {
    /// The socket.
    pub inner: L,
    /// One permit per connection served.
    pub permits: Arc<Semaphore>,
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
            match self.inner.accept_one().await {
                Ok((stream, address)) => {
                    return (
                        BoundedStream {
                            stream,
                            _permit: permit,
                            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
                        },
                        address,
                    )
                }
                Err(error) => {
                    // EMFILE and the like: back off and let files close.
                    tracing::warn!("accept failed: {error}");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.bound_address()
    }
}

/// A served connection: it holds its slot until closed, and is closed when
/// idle for [`IDLE_TIMEOUT`].
pub struct BoundedStream<S> {
    stream: S,
    _permit: OwnedSemaphorePermit,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl<S> BoundedStream<S> {
    fn active(&mut self) {
        self.idle
            .as_mut()
            .reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BoundedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_read(context, buffer) {
            Poll::Ready(result) => {
                self.active();
                Poll::Ready(result)
            }
            Poll::Pending => match self.idle.as_mut().poll(context) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle connection closed",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BoundedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(context, bytes);
        if result.is_ready() {
            self.active();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
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
                    kind: "api_refused",
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
}
