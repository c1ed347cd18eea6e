//! HTTPS for the dashboard: the certificate and key of `[web]` (read with
//! the config, off the loop) made an acceptor (rustls, ring), and a
//! listener whose handshakes run beside each other, so a client that
//! stalls its handshake holds up no other. The listener takes its acceptor
//! from a watch channel at each handshake: renewed files, re-read by an
//! apply, are swapped in without closing the socket.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use roster_core::web::TlsFiles;
use roster_store::config_file::WebTlsPem;

use crate::listener::Accept;

/// How long a client has for its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; more wait in the backlog.
const HANDSHAKES: usize = 64;

/// The acceptor for the PEM `files` read from `paths` (named in errors),
/// or why they cannot be used. Pure work on bytes: the files were read
/// off the loop with the config.
pub fn acceptor(paths: &TlsFiles, files: &WebTlsPem) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("reading {}: {error}", paths.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", paths.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|error| format!("reading {}: {error}", paths.key.display()))?;
    // ring builds with a C compiler alone (aws-lc needs more); rustls
    // marks its provider deprecated for lacking post-quantum key exchange,
    // which a dashboard's classical TLS 1.3 does without.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| {
            format!(
                "{} and {} do not make a TLS identity: {error}",
                paths.cert.display(),
                paths.key.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections and hands on those whose handshake succeeded.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS on `listener` (on the current runtime), each handshake
    /// with the acceptor `acceptor` holds at that moment.
    pub fn new(listener: TcpListener, acceptor: watch::Receiver<TlsAcceptor>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(HANDSHAKES);
        let task = tokio::spawn(handshakes(listener, acceptor, sender));
        Ok(Self { ready, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handshakes(
    listener: TcpListener,
    acceptor: watch::Receiver<TlsAcceptor>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, address) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("web: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.borrow().clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, address)).await;
                }
                Ok(Err(error)) => tracing::debug!("web: TLS handshake with {address}: {error}"),
                Err(_) => tracing::debug!("web: TLS handshake with {address} took too long"),
            }
        });
    }
}

impl Accept for TlsListener {
    type Stream = TlsStream<TcpStream>;
    type Addr = SocketAddr;
    type Peer = std::net::IpAddr;

    async fn accept_one(&mut self) -> io::Result<(Self::Stream, Self::Addr)> {
        self.ready
            .recv()
            .await
            .ok_or_else(|| io::Error::other("the TLS listener stopped"))
    }

    fn bound_address(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }

    fn peer(address: &Self::Addr) -> Option<std::net::IpAddr> {
        Some(address.ip().to_canonical())
    }

    fn client_ip(address: &Self::Addr) -> Option<std::net::IpAddr> {
        Some(address.ip().to_canonical())
    }
}
