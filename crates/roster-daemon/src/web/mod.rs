//! The web dashboard (issue #18), served by the daemon where `[web]
//! listen` says: plain HTTP, or HTTPS with `tls_cert`/`tls_key`. A
//! re-apply that changes `[web]` binds again, and one that finds renewed
//! TLS files swaps them in on the same socket; a bind that fails leaves
//! the daemon running and says why (the journal, status's warnings), and
//! TLS files that cannot be used leave the dashboard served as before.
//!
//! By job: `gate` (tokens, sessions, the login limiter), `hub` (the
//! snapshot every open page shares), `routes` (the handlers and the
//! security headers), `streams` (server-sent events), `pages` (the HTML
//! and the embedded assets), `tls`. Without `[web]` nothing here runs: no
//! task, no timer.

mod gate;
mod hub;
mod pages;
mod routes;
mod streams;
mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use roster_core::web::WebSpec;
use roster_store::config_file::WebTlsPem;
use roster_store::home::HomeDir;

use crate::inbox::Inbox;
use crate::listener::{BoundedListener, Limits};
use crate::server::Published;

/// Connections served at once (every open page holds one for its stream,
/// and one while its log pane follows an agent).
pub const MAX_CONNECTIONS: usize = 256;
/// Connections one client address may hold.
pub const MAX_PER_CLIENT: usize = 48;
/// How long a client has to send its request, and to take an answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The dashboard's server: nothing until a config with `[web]` is applied.
pub struct WebServer {
    home: Arc<HomeDir>,
    inbox: Inbox,
    published: Published,
    /// Made at the first `[web]`, kept across binds (sessions survive a
    /// change of address).
    shared: Option<(gate::Gate, hub::Hub)>,
    serving: Option<Serving>,
}

struct Serving {
    spec: WebSpec,
    /// With TLS: the files it serves, and where a renewed acceptor goes.
    tls: Option<(
        WebTlsPem,
        tokio::sync::watch::Sender<tokio_rustls::TlsAcceptor>,
    )>,
    task: JoinHandle<()>,
    /// Dropped with this: the open streams see it and end.
    _streams: tokio::sync::watch::Sender<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebServer {
    /// A server for the home's tokens and the loop's state; nothing runs.
    pub fn new(home: Arc<HomeDir>, inbox: Inbox, published: Published) -> Self {
        Self {
            home,
            inbox,
            published,
            shared: None,
            serving: None,
        }
    }

    /// Serves as `spec` says, or stops with `None`; `tls` is what was read
    /// of its TLS files with the config. TLS files that cannot be used
    /// leave the old server, if any, serving as it did; a bind that fails
    /// leaves none. The message says why, and which.
    pub fn apply(
        &mut self,
        runtime: &Handle,
        spec: Option<&WebSpec>,
        tls: Option<&Result<WebTlsPem, String>>,
    ) -> Result<(), String> {
        let result = self.bind(runtime, spec, tls);
        *self
            .published
            .web_warning
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = result.as_ref().err().cloned();
        result
    }

    fn bind(
        &mut self,
        runtime: &Handle,
        spec: Option<&WebSpec>,
        tls: Option<&Result<WebTlsPem, String>>,
    ) -> Result<(), String> {
        let Some(spec) = spec else {
            self.serving = None;
            return Ok(());
        };
        let (gate, hub) = self
            .shared
            .get_or_insert_with(|| {
                (
                    gate::Gate::new(self.home.clone(), spec.session_ttl),
                    hub::Hub::new(self.inbox.clone(), self.published.clone()),
                )
            })
            .clone();
        gate.set_ttl(spec.session_ttl);
        let same_socket = self.serving.as_ref().is_some_and(|serving| {
            serving.spec.listen == spec.listen
                && serving.spec.tls == spec.tls
                && serving.spec.session_ttl == spec.session_ttl
        });
        if same_socket {
            return self.renew(spec, tls);
        }
        // TLS files that cannot be used leave what serves now serving.
        let still = |error: String| match &self.serving {
            Some(serving) => problem(
                spec,
                &format!(
                    "{error}; still serving as before, on {}",
                    serving.spec.listen
                ),
            ),
            None => problem(spec, &error),
        };
        let acceptor = match (&spec.tls, tls) {
            (Some(paths), Some(Ok(files))) => Some(tls::acceptor(paths, files).map_err(still)?),
            (Some(_), Some(Err(error))) => return Err(still(error.clone())),
            (Some(paths), None) => {
                return Err(still(format!(
                    "{} was not read with the config",
                    paths.cert.display()
                )))
            }
            (None, _) => None,
        };
        // The old socket may hold the port: close it first.
        let had = self.serving.take().is_some();
        let listener = bind_soon(runtime, spec.listen, had)
            .map_err(|error| problem(spec, &format!("{error}{}", hint(error.kind()))))?;
        let (streams, serving) = tokio::sync::watch::channel(());
        let state = routes::WebState {
            gate,
            hub,
            inbox: self.inbox.clone(),
            home: self.published.home.clone(),
            tls: acceptor.is_some(),
            session_ttl: spec.session_ttl,
            serving,
        };
        let router = routes::router(state);
        let limits = Limits {
            slots: MAX_CONNECTIONS,
            per_peer: Some(MAX_PER_CLIENT),
            patience: REQUEST_TIMEOUT,
        };
        let mut served_tls = None;
        let task = match acceptor {
            Some(acceptor) => {
                let _context = runtime.enter();
                let (renewed, acceptor) = tokio::sync::watch::channel(acceptor);
                if let Some(Ok(files)) = tls {
                    served_tls = Some((files.clone(), renewed));
                }
                let listener = tls::TlsListener::new(listener, acceptor)
                    .map_err(|error| problem(spec, &error.to_string()))?;
                runtime.spawn(async move {
                    let listener = BoundedListener::new(listener, limits);
                    if let Err(error) = crate::listener::serve(listener, router).await {
                        tracing::error!("web dashboard stopped: {error}");
                    }
                })
            }
            None => runtime.spawn(async move {
                let listener = BoundedListener::new(listener, limits);
                if let Err(error) = crate::listener::serve(listener, router).await {
                    tracing::error!("web dashboard stopped: {error}");
                }
            }),
        };
        let scheme = if spec.tls.is_some() { "https" } else { "http" };
        tracing::info!("serving the web dashboard on {scheme}://{}/", spec.listen);
        self.serving = Some(Serving {
            spec: spec.clone(),
            tls: served_tls,
            task,
            _streams: streams,
        });
        Ok(())
    }
}

impl WebServer {
    /// On the same socket: certificate files that changed since they were
    /// served (renewed) are swapped in for the next handshakes; the socket,
    /// open pages and sessions stay. Files that cannot be used leave the
    /// old ones served, and say so.
    fn renew(
        &mut self,
        spec: &WebSpec,
        tls: Option<&Result<WebTlsPem, String>>,
    ) -> Result<(), String> {
        let (Some(paths), Some((served, renewed))) = (
            &spec.tls,
            self.serving
                .as_mut()
                .and_then(|serving| serving.tls.as_mut()),
        ) else {
            return Ok(());
        };
        let keep = "; still serving as before, with the certificate read then";
        let files = match tls {
            Some(Ok(files)) => files,
            Some(Err(error)) => return Err(problem(spec, &format!("{error}{keep}"))),
            None => return Ok(()),
        };
        if files == served {
            return Ok(());
        }
        let acceptor = tls::acceptor(paths, files)
            .map_err(|error| problem(spec, &format!("{error}{keep}")))?;
        renewed.send_replace(acceptor);
        *served = files.clone();
        tracing::info!(
            "web dashboard: serving the renewed certificate {}",
            paths.cert.display()
        );
        Ok(())
    }
}

fn problem(spec: &WebSpec, error: &str) -> String {
    format!("cannot serve the web dashboard on {}: {error}", spec.listen)
}

fn hint(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::AddrInUse => {
            "\n  hint: another program listens there; pick another port in [web] listen"
        }
        io::ErrorKind::AddrNotAvailable => {
            "\n  hint: that address is not one of this machine's; use 127.0.0.1 or 0.0.0.0"
        }
        io::ErrorKind::PermissionDenied => {
            "\n  hint: ports below 1024 need root; pick a port above 1024"
        }
        _ => "",
    }
}

/// Pending connections the dashboard's socket holds.
const BACKLOG: u32 = 256;

/// Binds; when an old socket was just closed, retries briefly while the
/// runtime lets it go (at most 50 ms).
fn bind_soon(runtime: &Handle, address: SocketAddr, closing: bool) -> io::Result<TcpListener> {
    let grace = Duration::from_millis(if closing { 50 } else { 0 });
    crate::listener::tcp::bind_within(runtime, address, BACKLOG, grace)
}
