//! Binding the TCP addresses the daemon serves (`[metrics] listen`,
//! `[web] listen`), so both bind alike.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Handle;

/// A listener on `address` with room for `backlog` pending connections,
/// registered with `runtime`'s reactor.
pub(crate) fn bind(runtime: &Handle, address: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    // Registering the socket needs the runtime's reactor.
    let _context = runtime.enter();
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted daemon rebinds at once despite connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// [`bind`], retrying for at most `grace` while the address is in use: a
/// socket just closed on the runtime is being let go.
pub(crate) fn bind_within(
    runtime: &Handle,
    address: SocketAddr,
    backlog: u32,
    grace: Duration,
) -> io::Result<TcpListener> {
    let deadline = Instant::now() + grace;
    loop {
        match bind(runtime, address, backlog) {
            Err(error) if error.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            result => return result,
        }
    }
}
