//! `GET /metrics` over TCP, with axum on the daemon's runtime.
//!
//! The handler reads the latest published snapshot, samples /proc on the
//! blocking pool within [`SAMPLE_BUDGET`] (one scrape samples at a time),
//! and encodes. It never talks to the loop. Connections are bounded like
//! the control socket's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{encode, sample, MetricsSnapshot, CONTENT_TYPE};
use crate::listener::{BoundedListener, Limits};

/// Scrapers served at once; more wait in the backlog.
pub const MAX_SCRAPERS: usize = 128;

/// Connections one scraper (an IP address) may hold; past them its new
/// ones are closed at once, so one host cannot take every slot.
pub const MAX_PER_SCRAPER: usize = 8;

/// How long a scraper has to send its request (from the connection, or
/// from the previous answer on a kept-alive one), however it trickles in.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a scrape may spend counting descriptors in /proc; past it the
/// figures not yet taken are left out of the answer.
pub const SAMPLE_BUDGET: Duration = Duration::from_secs(2);

/// The `/metrics` server: bound to the configured address, re-bound when
/// an apply changes it.
pub struct MetricsServer {
    snapshots: watch::Receiver<Arc<MetricsSnapshot>>,
    serving: Option<Serving>,
    /// The token scrapers must send, if the config sets one; shared with
    /// the serving task, so a new token takes effect without a new socket.
    token: Arc<std::sync::RwLock<Option<String>>>,
}

struct Serving {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetricsServer {
    /// A server that will serve what `snapshots` holds; nothing is bound yet.
    pub fn new(snapshots: watch::Receiver<Arc<MetricsSnapshot>>) -> Self {
        Self {
            snapshots,
            serving: None,
            token: Arc::new(std::sync::RwLock::new(None)),
        }
    }

    /// The address served, if any.
    pub fn address(&self) -> Option<SocketAddr> {
        self.serving.as_ref().map(|serving| serving.address)
    }

    /// Serves on `listen`, or stops serving with `None`. The same address
    /// keeps its socket; a new one is bound before the old one is closed,
    /// so a failed bind (the port is taken, the address is not this
    /// machine's) leaves the old server as it was and says why.
    /// `token`, when set, is what scrapers must send as `Authorization:
    /// Bearer TOKEN`; it takes effect only once the address is served.
    pub fn apply(
        &mut self,
        runtime: &Handle,
        listen: Option<SocketAddr>,
        token: Option<String>,
    ) -> Result<(), String> {
        self.bind_to(runtime, listen)?;
        *self
            .token
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = token;
        Ok(())
    }

    fn bind_to(&mut self, runtime: &Handle, listen: Option<SocketAddr>) -> Result<(), String> {
        if self.address() == listen {
            return Ok(());
        }
        let Some(address) = listen else {
            self.serving = None;
            return Ok(());
        };
        let listener = match bind(runtime, address) {
            Ok(listener) => listener,
            Err(error)
                if error.kind() == io::ErrorKind::AddrInUse
                    && self
                        .address()
                        .is_some_and(|old| old.port() == address.port()) =>
            {
                // The old socket holds the port (0.0.0.0:9464 becoming
                // 127.0.0.1:9464): close it, then bind again.
                let old = self.address();
                self.serving = None;
                match bind_soon(runtime, address) {
                    Ok(listener) => listener,
                    Err(error) => {
                        if let Some(old) = old {
                            if let Ok(listener) = bind_soon(runtime, old) {
                                self.start(runtime, old, listener);
                            }
                        }
                        return Err(bind_error(address, &error));
                    }
                }
            }
            Err(error) => return Err(bind_error(address, &error)),
        };
        self.start(runtime, address, listener);
        Ok(())
    }

    fn start(&mut self, runtime: &Handle, address: SocketAddr, listener: TcpListener) {
        let task = runtime.spawn(serve(listener, self.snapshots.clone(), self.token.clone()));
        self.serving = Some(Serving { address, task });
        tracing::info!("serving metrics on http://{address}/metrics");
    }
}

fn bind_error(address: SocketAddr, error: &io::Error) -> String {
    let hint = match error.kind() {
        io::ErrorKind::AddrInUse => {
            "another program listens there; pick another port in [metrics] listen"
        }
        io::ErrorKind::AddrNotAvailable => {
            "that address is not one of this machine's; use 127.0.0.1 or 0.0.0.0"
        }
        io::ErrorKind::PermissionDenied => "ports below 1024 need root; pick a port above 1024",
        _ => "check [metrics] listen",
    };
    format!("cannot serve metrics on {address}: {error}\n  hint: {hint}")
}

/// Pending connections the metrics socket holds.
const BACKLOG: u32 = 128;

fn bind(runtime: &Handle, address: SocketAddr) -> io::Result<TcpListener> {
    crate::listener::tcp::bind(runtime, address, BACKLOG)
}

/// Binds, retrying briefly while a socket just aborted on the runtime is
/// being closed (at most 50 ms, and only when an address changes on the
/// same port).
fn bind_soon(runtime: &Handle, address: SocketAddr) -> io::Result<TcpListener> {
    crate::listener::tcp::bind_within(runtime, address, BACKLOG, Duration::from_millis(50))
}

#[derive(Clone)]
struct ScrapeState {
    snapshots: watch::Receiver<Arc<MetricsSnapshot>>,
    token: Arc<std::sync::RwLock<Option<String>>>,
    /// One /proc sampling at a time, however many scrapers; the reader
    /// keeps the groups' members and counts from one scrape to the next.
    sampling: Arc<tokio::sync::Mutex<()>>,
    reader: Arc<std::sync::Mutex<crate::procfs::GroupReader>>,
}

async fn serve(
    listener: TcpListener,
    snapshots: watch::Receiver<Arc<MetricsSnapshot>>,
    token: Arc<std::sync::RwLock<Option<String>>>,
) {
    let state = ScrapeState {
        snapshots,
        token,
        sampling: Arc::new(tokio::sync::Mutex::new(())),
        reader: Arc::new(std::sync::Mutex::new(crate::procfs::GroupReader::new())),
    };
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(state);
    let listener = BoundedListener::new(
        listener,
        Limits {
            slots: MAX_SCRAPERS,
            per_peer: Some(MAX_PER_SCRAPER),
            patience: REQUEST_TIMEOUT,
        },
    );
    if let Err(error) = crate::listener::serve(listener, router).await {
        tracing::error!("metrics server stopped: {error}");
    }
}

/// Whether `headers` carry the token (compared in constant time), or no
/// token is set. The scheme is matched in any case (`bearer`, as HTTP
/// says schemes are).
fn authorized(headers: &axum::http::HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, given)| given)
    else {
        return false;
    };
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

async fn scrape(State(state): State<ScrapeState>, headers: axum::http::HeaderMap) -> Response {
    let allowed = {
        let token = state
            .token
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        authorized(&headers, token.as_deref())
    };
    if !allowed {
        // Closed after the answer: a scraper without the token holds a
        // slot no longer than its request took.
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Bearer realm=\"roster\""),
                (header::CONNECTION, "close"),
            ],
            "a bearer token is needed: Authorization: Bearer TOKEN ([metrics] bearer_token_file)\n",
        )
            .into_response();
    }
    let _turn = state.sampling.lock().await;
    let snapshot = state.snapshots.borrow().clone();
    let deadline = Instant::now() + SAMPLE_BUDGET;
    let reader = state.reader.clone();
    let work = tokio::task::spawn_blocking(move || {
        let samples = sample(
            &mut reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            &snapshot,
            deadline,
        );
        encode(&snapshot, &samples)
    });
    // The sampler stops counting at its deadline; this is the backstop
    // for a /proc read that hangs.
    match tokio::time::timeout(SAMPLE_BUDGET * 2, work).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Ok(Err(join_error)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("sampling failed: {join_error}\n"),
        )
            .into_response(),
        Err(_elapsed) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "sampling /proc took too long\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::authorized;
    use axum::http::{header, HeaderMap, HeaderValue};

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(authorized(&HeaderMap::new(), None), "no token set: open");
        for right in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "Bearer  s3cret ",
        ] {
            assert!(authorized(&with(right), Some("s3cret")), "{right}");
        }
        assert!(!authorized(&HeaderMap::new(), Some("s3cret")));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3CRET",
            "Basic s3cret",
            "Bearers3cret",
            "Bearerx s3cret",
            "s3cret",
            "Bearer ",
            "Bearer",
        ] {
            assert!(!authorized(&with(wrong), Some("s3cret")), "{wrong}");
        }
    }
}
