//! `[web]`: the dashboard's address, TLS files and session lifetime,
//! checked as a whole. A `listen` address beyond loopback over plain HTTP
//! is refused unless `insecure_http = true` says a proxy in front
//! terminates TLS: tokens and session cookies would cross the network in
//! clear.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::Item;

use super::diagnostics::{span_of, Checker};
use super::keys::{Entry, Key, Read};
use crate::metrics::parse_listen;
use crate::units::format_duration;
use crate::web::{
    TlsFiles, WebSpec, DEFAULT_LISTEN, DEFAULT_SESSION_TTL, MAX_SESSION_TTL, MIN_SESSION_TTL,
};

/// `[web]` while its keys are read: each value with where it is written.
struct WebDraft {
    base_dir: PathBuf,
    listen: Option<(SocketAddr, Range<usize>)>,
    tls_cert: Option<(PathBuf, Range<usize>)>,
    tls_key: Option<(PathBuf, Range<usize>)>,
    insecure_http: bool,
    session_ttl: Duration,
}

#[rustfmt::skip]
const WEB_KEYS: &[Key<WebDraft>] = &[
    Key::new("listen", Read::Custom(listen)),
    Key::new("tls_cert", Read::Custom(|c, e, web| web.tls_cert = tls_path(c, e, &web.base_dir))),
    Key::new("tls_key", Read::Custom(|c, e, web| web.tls_key = tls_path(c, e, &web.base_dir))),
    Key::new("insecure_http", Read::Boolean(|web, v| web.insecure_http = v)),
    Key::new("session_ttl", Read::Custom(session_ttl)),
];

impl Checker {
    /// The `[web]` table: `None` without a `listen` key (no dashboard) or
    /// with a problem.
    pub(crate) fn web(&mut self, item: &Item, base_dir: &Path) -> Option<WebSpec> {
        let Some(table) = item.as_table_like() else {
            self.problem(
                span_of(item),
                "`web` must be a table",
                Some(format!(
                    "write it as [web] with listen = \"{DEFAULT_LISTEN}\""
                )),
            );
            return None;
        };
        let problems_before = self.problems.len();
        let mut web = WebDraft {
            base_dir: base_dir.to_path_buf(),
            listen: None,
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            session_ttl: DEFAULT_SESSION_TTL,
        };
        self.read_keys(table, WEB_KEYS, "[web]", &mut web);
        let tls = match (web.tls_cert, web.tls_key) {
            (Some((cert, _)), Some((key, _))) => Some(TlsFiles { cert, key }),
            (Some((_, span)), None) => {
                self.half_tls(span, "tls_cert", "tls_key");
                None
            }
            (None, Some((_, span))) => {
                self.half_tls(span, "tls_key", "tls_cert");
                None
            }
            (None, None) => None,
        };
        let (listen, listen_span) = web.listen?;
        let spec = WebSpec {
            listen,
            tls,
            insecure_http: web.insecure_http,
            session_ttl: web.session_ttl,
        };
        // A file that names a TLS file means HTTPS: its problems are said
        // where they are written, not as plain HTTP.
        let tls_written = table.contains_key("tls_cert") || table.contains_key("tls_key");
        if spec.plain_beyond_loopback() && !spec.insecure_http && !tls_written {
            self.problem(
                listen_span,
                format!(
                    "the dashboard would listen on {listen}, beyond loopback, over plain HTTP: tokens and session cookies would cross the network in clear"
                ),
                Some(format!(
                    "set tls_cert and tls_key (PEM files) to serve HTTPS, or insecure_http = true if a proxy in front of it terminates TLS; or listen on 127.0.0.1:{}",
                    listen.port()
                )),
            );
        }
        (self.problems.len() == problems_before).then_some(spec)
    }

    fn half_tls(&mut self, span: Range<usize>, given: &str, missing: &str) {
        self.problem(
            span,
            format!("`{given}` is set but `{missing}` is not"),
            Some(
                "HTTPS needs both, e.g. tls_cert = \"/etc/roster/web.crt\" and tls_key = \"/etc/roster/web.key\" (PEM files); or neither"
                    .into(),
            ),
        );
    }
}

fn listen(checker: &mut Checker, entry: &Entry<'_>, web: &mut WebDraft) {
    let Some(raw) = checker.string(entry.item, entry.key) else {
        return;
    };
    match parse_listen(raw) {
        Ok(address) => web.listen = Some((address, span_of(entry.item))),
        Err(error) => checker.problem(
            span_of(entry.item),
            format!("bad web address {raw:?}: {error}"),
            Some(format!(
                "write e.g. \"{DEFAULT_LISTEN}\", \"0.0.0.0:9400\" (with TLS) or \"[::1]:9400\""
            )),
        ),
    }
}

fn tls_path(
    checker: &mut Checker,
    entry: &Entry<'_>,
    base_dir: &Path,
) -> Option<(PathBuf, Range<usize>)> {
    let path = checker.string(entry.item, entry.key)?;
    if path.is_empty() {
        checker.problem(
            span_of(entry.item),
            format!("`{}` is empty", entry.key),
            Some(format!(
                "name a PEM file, e.g. {} = \"/etc/roster/web.{}\"",
                entry.key,
                if entry.key == "tls_cert" {
                    "crt"
                } else {
                    "key"
                }
            )),
        );
        return None;
    }
    Some((base_dir.join(path), entry.key_span.clone()))
}

fn session_ttl(checker: &mut Checker, entry: &Entry<'_>, web: &mut WebDraft) {
    let Some(ttl) = checker.duration(entry.item, entry.key) else {
        return;
    };
    if (MIN_SESSION_TTL..=MAX_SESSION_TTL).contains(&ttl) {
        web.session_ttl = ttl;
    } else {
        checker.problem(
            span_of(entry.item),
            format!(
                "`session_ttl` is {}; it must be between {} and {}",
                format_duration(ttl),
                format_duration(MIN_SESSION_TTL),
                format_duration(MAX_SESSION_TTL)
            ),
            Some("a login lasts this long whatever happens; e.g. session_ttl = \"12h\"".into()),
        );
    }
}
