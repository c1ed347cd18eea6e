//! Who is asking: the tokens of `<home>/web/tokens.json` (read again when
//! the file's fingerprint changes, checked on every request, so a token
//! removed with `roster web token rm` stops working at once and its
//! sessions end), the login sessions and the failed-login limiter. The
//! rules are `roster_core::web`'s; this is their state and the OS's random
//! bytes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};

use roster_core::web::{Grant, LoginLimiter, Refused, Scope, Sessions};
use roster_store::home::HomeDir;
use roster_store::tokens::{Fingerprint, TokenStore, Tokens};

/// The session cookie's name.
pub const COOKIE: &str = "roster_session";

/// A token's last use is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How a request proved who it is.
#[derive(Clone, Debug)]
pub enum Via {
    /// The session cookie; actions need its CSRF token in `X-CSRF-Token`.
    Session {
        /// The session's CSRF token.
        csrf: String,
        /// The session's id (to end it at logout).
        id: String,
    },
    /// `Authorization: Bearer TOKEN`: no cookie, no CSRF.
    Bearer,
}

/// A request's grant, and how it was proved.
#[derive(Clone, Debug)]
pub struct Caller {
    /// What it may see and do.
    pub grant: Grant,
    /// Cookie or bearer.
    pub via: Via,
}

/// What a login attempt came to.
pub enum Login {
    /// A session: its id and CSRF token.
    Opened {
        /// The cookie's value.
        id: String,
    },
    /// A wrong token: answer after `delay`.
    Wrong {
        /// The limiter's slowing down.
        delay: Duration,
    },
    /// Too many wrong tokens from this client.
    Refused(Refused),
}

/// The tokens, sessions and limiter, shared by every request.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    home: Arc<HomeDir>,
    store: Option<TokenStore>,
    tokens: Tokens,
    fingerprint: Option<Fingerprint>,
    sessions: Sessions,
    limiter: LoginLimiter,
    touched: HashMap<String, Instant>,
}

impl Gate {
    /// A gate on `home`'s tokens; nothing is read before the first request.
    pub fn new(home: Arc<HomeDir>, session_ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                home,
                store: None,
                tokens: Tokens::default(),
                fingerprint: None,
                sessions: Sessions::new(session_ttl),
                limiter: LoginLimiter::new(),
                touched: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new `session_ttl` (an apply changed `[web]`).
    pub fn set_ttl(&self, ttl: Duration) {
        self.lock().sessions.set_ttl(ttl);
    }

    /// The caller of a request with `headers`, if it proves one: a bearer
    /// token, else the session cookie.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.refresh();
        if let Some(presented) = bearer(headers) {
            let grant = inner.tokens.find(presented)?.grant();
            inner.touch(&grant.token, now);
            return Some(Caller {
                grant,
                via: Via::Bearer,
            });
        }
        let id = cookie(headers)?;
        let session = inner.sessions.lookup(id, now)?;
        Some(Caller {
            grant: session.grant.clone(),
            via: Via::Session {
                csrf: session.csrf.clone(),
                id: id.to_owned(),
            },
        })
    }

    /// A login with `presented` from `client`.
    pub fn login(&self, presented: &str, client: Option<IpAddr>) -> Login {
        let now = Instant::now();
        let mut inner = self.lock();
        let (grant, client) = match inner.admit(presented.trim(), client, now) {
            Ok(admitted) => admitted,
            Err(answer) => return answer,
        };
        let (Some(id), Some(csrf)) = (random_hex(), random_hex()) else {
            tracing::error!("web login: the OS gave no random bytes");
            let delay = inner.limiter.failure(client, now);
            return Login::Wrong { delay };
        };
        inner.limiter.success(client);
        inner.touch(&grant.token, now);
        inner.sessions.create(&id, &csrf, grant, now);
        Login::Opened { id }
    }

    /// Whether a bearer token is right, counted against its client like a
    /// login (`Opened` carries no session: the caller goes on with the
    /// request). A right token from a refused client is refused too.
    pub fn check_bearer(&self, presented: &str, client: Option<IpAddr>) -> Login {
        match self.lock().admit(presented, client, Instant::now()) {
            Ok(_) => Login::Opened { id: String::new() },
            Err(answer) => answer,
        }
    }

    /// The scope of the token named `name`, if there is one.
    pub fn scope_of(&self, name: &str) -> Option<Scope> {
        self.lock()
            .tokens
            .get(name)
            .map(|token| token.scope.clone())
    }

    /// Ends a session.
    pub fn logout(&self, id: &str) {
        self.lock().sessions.end(id);
    }
}

impl Inner {
    /// The grant of `presented` from `client` (unknown clients, none on
    /// TCP, share one slot), or the answer when the client is refused or
    /// the token is wrong (then counted as a failure).
    fn admit(
        &mut self,
        presented: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<(Grant, IpAddr), Login> {
        let client = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Err(refused) = self.limiter.check(client, now) {
            return Err(Login::Refused(refused));
        }
        self.refresh();
        match self.tokens.find(presented).map(|token| token.grant()) {
            Some(grant) => Ok((grant, client)),
            None => Err(Login::Wrong {
                delay: self.limiter.failure(client, now),
            }),
        }
    }

    /// Reads the token file again when it changed (one `fstatat` when it
    /// did not), and ends the sessions of tokens that are gone or changed.
    fn refresh(&mut self) {
        if self.store.is_none() {
            match TokenStore::open(&self.home) {
                Ok(store) => self.store = store,
                Err(error) => tracing::warn!("web tokens: {error}"),
            }
        }
        let Some(store) = &self.store else {
            self.tokens = Tokens::default();
            self.fingerprint = None;
            self.sessions.retain_grants(|_| false);
            return;
        };
        let now = match store.fingerprint() {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!("web tokens: {error}");
                None
            }
        };
        if now.is_some() && now == self.fingerprint {
            return;
        }
        let (tokens, fingerprint) = match store.load() {
            Ok(loaded) => loaded,
            Err(error) => {
                // Unreadable: no token works until it is fixed.
                tracing::warn!("web tokens: {error}");
                (Tokens::default(), None)
            }
        };
        self.tokens = tokens;
        self.fingerprint = fingerprint;
        let tokens = &self.tokens;
        self.touched.retain(|name, _| tokens.get(name).is_some());
        let ended = self.sessions.retain_grants(|grant| {
            tokens.get(&grant.token).map(|token| token.grant()).as_ref() == Some(grant)
        });
        if ended > 0 {
            tracing::info!("web: {ended} sessions ended with their tokens");
        }
    }

    /// Writes the token's last use, at most once a minute per token (off
    /// the runtime's workers).
    fn touch(&mut self, token: &str, now: Instant) {
        let due = self
            .touched
            .get(token)
            .is_none_or(|last| now.duration_since(*last) >= TOUCH_EVERY);
        if !due {
            return;
        }
        self.touched.insert(token.to_owned(), now);
        if self.touched.len() > 10_000 {
            self.touched
                .retain(|_, last| now.duration_since(*last) < TOUCH_EVERY);
        }
        let home = self.home.clone();
        let token = token.to_owned();
        tokio::task::spawn_blocking(move || {
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|since| since.as_millis() as i64)
                .unwrap_or(0);
            let touched = TokenStore::open(&home)
                .and_then(|store| store.map(|store| store.touch(&token, unix_ms)).transpose());
            if let Err(error) = touched {
                tracing::warn!("web tokens: recording the use of {token}: {error}");
            }
        });
    }
}

/// 32 bytes from the OS, in hex.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The token of `Authorization: Bearer TOKEN` (the scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, token)| token.trim())
}

/// The `roster_session` cookie's value.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_session_cookie_and_bearer_are_read_from_their_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; roster_session=abc; c=d"),
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer rst_x"),
        );
        assert_eq!(cookie(&headers), Some("abc"));
        assert_eq!(bearer(&headers), Some("rst_x"));
        let mut other = HeaderMap::new();
        other.insert(header::COOKIE, HeaderValue::from_static("roster_session="));
        other.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        assert_eq!(cookie(&other), None);
        assert_eq!(bearer(&other), None);
    }
}
