//! `[metrics]`: where the daemon serves Prometheus metrics, as a model.
//!
//! This module only says what the config means; binding the address and
//! serving `/metrics` is the daemon's business (`roster_daemon::metrics`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// The address `[metrics]` listens on when it names none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The `[metrics]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSpec {
    /// The TCP address `/metrics` is served on.
    pub listen: SocketAddr,
    /// A file holding the token scrapers must send as
    /// `Authorization: Bearer TOKEN` (Prometheus' `authorization:
    /// credentials_file`); without it `/metrics` is open to whoever
    /// reaches the address.
    pub bearer_token_file: Option<PathBuf>,
}

/// Parses a `listen` value: an IP address and a port other than 0
/// (`127.0.0.1:9464`, `[::1]:9464`). Host names are refused: resolving one
/// is I/O, and a scrape target should not move when DNS does.
pub fn parse_listen(raw: &str) -> Result<SocketAddr, String> {
    let address: SocketAddr = raw
        .parse()
        .map_err(|_| "expected an IP address and a port".to_owned())?;
    if address.port() == 0 {
        return Err("port 0 would pick a new port at every start".into());
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:9464").map(|address| address.port()),
            Ok(9464)
        );
        assert!(parse_listen("[::1]:9464").is_ok_and(|address| address.is_ipv6()));
        assert!(parse_listen("localhost:9464").is_err());
        assert!(parse_listen("127.0.0.1").is_err());
        assert!(parse_listen("127.0.0.1:0").is_err());
        assert!(parse_listen(DEFAULT_LISTEN).is_ok());
    }
}
