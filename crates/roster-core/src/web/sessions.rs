//! Login sessions: opened by a right token, found by the id in the
//! session cookie, ended by logout, by the token's revocation, after
//! `session_ttl` whatever happens, and after [`IDLE_TIMEOUT`] without use.
//! Their number is bounded: past [`MAX_SESSIONS`] the oldest is dropped,
//! so a flood of logins with one stolen token cannot fill the memory.
//!
//! The caller draws the id and the CSRF token from the OS and passes them
//! in; sessions are kept by the SHA-256 of their id, so a lookup compares
//! no secret byte by byte and a dump of this table opens no session.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::access::Grant;
use super::secret_text::{csrf_matches, token_hash};

/// A session unused this long ends (unless `session_ttl` is shorter).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most sessions kept; the oldest is dropped past it.
pub const MAX_SESSIONS: usize = 10_000;

/// One login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The token every state-changing request must carry in `X-CSRF-Token`.
    pub csrf: String,
    /// What the token that opened it allows.
    pub grant: Grant,
    /// When it was opened.
    pub created: Instant,
    /// When it was last found by a request.
    pub last_used: Instant,
    order: u64,
}

impl Session {
    /// The CSRF check: `header` (the `X-CSRF-Token` sent) is this
    /// session's token, compared in constant time.
    pub fn csrf_ok(&self, header: Option<&str>) -> bool {
        csrf_matches(header, &self.csrf)
    }
}

/// Every open session.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    idle: Duration,
    max: usize,
    by_hash: HashMap<String, Session>,
    /// Creation order: order number to the id's hash.
    order: BTreeMap<u64, String>,
    next_order: u64,
}

impl Sessions {
    /// Sessions that last `ttl` (`session_ttl`), end after [`IDLE_TIMEOUT`]
    /// unused, and number at most [`MAX_SESSIONS`].
    pub fn new(ttl: Duration) -> Self {
        Self::with_limits(ttl, IDLE_TIMEOUT, MAX_SESSIONS)
    }

    /// Sessions with limits of the caller's (tests; at least one session).
    pub fn with_limits(ttl: Duration, idle: Duration, max: usize) -> Self {
        Self {
            ttl,
            idle,
            max: max.max(1),
            by_hash: HashMap::new(),
            order: BTreeMap::new(),
            next_order: 0,
        }
    }

    /// A new `session_ttl` (the config changed): open sessions are judged
    /// by it from now on.
    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    /// How many are open (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Opens a session for `grant` under `id` with CSRF token `csrf` (both
    /// random, from the caller). The oldest session is dropped when the
    /// table is full.
    pub fn create(&mut self, id: &str, csrf: &str, grant: Grant, now: Instant) {
        let hash = token_hash(id);
        self.remove(&hash);
        while self.by_hash.len() >= self.max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.by_hash.remove(&oldest);
        }
        let order = self.next_order;
        self.next_order += 1;
        self.order.insert(order, hash.clone());
        self.by_hash.insert(
            hash,
            Session {
                csrf: csrf.to_owned(),
                grant,
                created: now,
                last_used: now,
                order,
            },
        );
    }

    /// The session of `id` at `now`, marked used; `None` when there is
    /// none or it expired (an expired one is removed).
    pub fn lookup(&mut self, id: &str, now: Instant) -> Option<&Session> {
        let hash = token_hash(id);
        let expired = self.by_hash.get(&hash).map(|s| self.is_expired(s, now))?;
        if expired {
            self.remove(&hash);
            return None;
        }
        let session = self.by_hash.get_mut(&hash)?;
        session.last_used = now;
        Some(session)
    }

    /// When the session ends if it is not used again: the earlier of its
    /// absolute and its idle expiry (a cookie's lifetime).
    pub fn expires_at(&self, session: &Session) -> Instant {
        (session.created + self.ttl).min(session.last_used + self.idle)
    }

    fn is_expired(&self, session: &Session, now: Instant) -> bool {
        now >= self.expires_at(session)
    }

    /// Ends the session of `id` (logout); whether there was one.
    pub fn end(&mut self, id: &str) -> bool {
        self.remove(&token_hash(id))
    }

    /// Ends every session opened with the token named `token` (it was
    /// revoked); how many.
    pub fn end_token(&mut self, token: &str) -> usize {
        self.end_where(|session| session.grant.token == token)
    }

    /// Ends every session whose token `keep` refuses (the token file
    /// changed: removed tokens, or tokens whose scope changed); how many.
    pub fn retain_grants(&mut self, keep: impl Fn(&Grant) -> bool) -> usize {
        self.end_where(|session| !keep(&session.grant))
    }

    /// Removes the sessions expired at `now`; how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let (ttl, idle) = (self.ttl, self.idle);
        self.end_where(|session| now >= (session.created + ttl).min(session.last_used + idle))
    }

    fn end_where(&mut self, ends: impl Fn(&Session) -> bool) -> usize {
        let doomed: Vec<String> = self
            .by_hash
            .iter()
            .filter(|(_, session)| ends(session))
            .map(|(hash, _)| hash.clone())
            .collect();
        for hash in &doomed {
            self.remove(hash);
        }
        doomed.len()
    }

    fn remove(&mut self, hash: &str) -> bool {
        match self.by_hash.remove(hash) {
            Some(session) => {
                self.order.remove(&session.order);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::Scope;

    const MINUTE: Duration = Duration::from_secs(60);

    fn grant(token: &str) -> Grant {
        Grant {
            token: token.into(),
            scope: Scope::Admin,
            read_only: false,
        }
    }

    #[test]
    fn a_session_is_found_by_its_id_and_carries_its_grant() {
        let t0 = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(12 * 3600));
        sessions.create("id-1", "csrf-1", grant("ops"), t0);
        let found = sessions.lookup("id-1", t0 + MINUTE).expect("open");
        assert_eq!(found.grant.token, "ops");
        assert!(found.csrf_ok(Some("csrf-1")));
        assert!(!found.csrf_ok(Some("csrf-2")));
        assert!(!found.csrf_ok(None));
        assert!(sessions.lookup("id-2", t0).is_none());
        assert!(sessions.lookup("", t0).is_none());
    }

    #[test]
    fn a_session_ends_at_its_ttl_even_when_used() {
        let t0 = Instant::now();
        let mut sessions = Sessions::with_limits(10 * MINUTE, 5 * MINUTE, 10);
        sessions.create("id", "c", grant("ops"), t0);
        for minute in 1..10 {
            assert!(sessions.lookup("id", t0 + minute * MINUTE).is_some());
        }
        assert!(
            sessions.lookup("id", t0 + 10 * MINUTE).is_none(),
            "expired exactly at the ttl"
        );
        assert!(sessions.is_empty(), "an expired session is removed");
    }

    #[test]
    fn a_session_unused_for_the_idle_time_ends() {
        let t0 = Instant::now();
        let mut sessions = Sessions::with_limits(10 * 60 * MINUTE, 60 * MINUTE, 10);
        sessions.create("id", "c", grant("ops"), t0);
        let used = t0 + 59 * MINUTE;
        assert!(sessions.lookup("id", used).is_some());
        let session = sessions.lookup("id", used).expect("open").clone();
        assert_eq!(sessions.expires_at(&session), used + 60 * MINUTE);
        assert!(sessions
            .lookup("id", used + 60 * MINUTE - Duration::from_millis(1))
            .is_some());
        let later = used + 60 * MINUTE - Duration::from_millis(1);
        assert!(sessions.lookup("id", later + 60 * MINUTE).is_none());
    }

    #[test]
    fn logout_and_revocation_end_sessions() {
        let t0 = Instant::now();
        let mut sessions = Sessions::new(60 * MINUTE);
        sessions.create("a1", "c", grant("alice"), t0);
        sessions.create("a2", "c", grant("alice"), t0);
        sessions.create("b1", "c", grant("bob"), t0);
        assert!(sessions.end("b1"));
        assert!(!sessions.end("b1"), "ended once");
        assert!(sessions.lookup("b1", t0).is_none());
        assert_eq!(sessions.end_token("alice"), 2);
        assert!(sessions.is_empty());
        sessions.create("c1", "c", grant("carol"), t0);
        sessions.create("d1", "c", grant("dave"), t0);
        assert_eq!(sessions.retain_grants(|grant| grant.token == "carol"), 1);
        assert!(sessions.lookup("c1", t0).is_some());
        assert!(sessions.lookup("d1", t0).is_none());
    }

    #[test]
    fn the_oldest_is_dropped_past_the_bound() {
        let t0 = Instant::now();
        let mut sessions = Sessions::with_limits(60 * MINUTE, 60 * MINUTE, 3);
        for (index, id) in ["s0", "s1", "s2", "s3", "s4"].iter().enumerate() {
            sessions.create(id, "c", grant("ops"), t0 + index as u32 * MINUTE);
        }
        assert_eq!(sessions.len(), 3);
        assert!(sessions.lookup("s0", t0 + 5 * MINUTE).is_none());
        assert!(sessions.lookup("s1", t0 + 5 * MINUTE).is_none());
        for id in ["s2", "s3", "s4"] {
            assert!(sessions.lookup(id, t0 + 5 * MINUTE).is_some(), "{id}");
        }
        // Ending sessions keeps the creation order right.
        assert!(sessions.end("s2"));
        sessions.create("s5", "c", grant("ops"), t0 + 6 * MINUTE);
        sessions.create("s6", "c", grant("ops"), t0 + 7 * MINUTE);
        assert!(
            sessions.lookup("s3", t0 + 7 * MINUTE).is_none(),
            "s3 was oldest"
        );
        assert_eq!(sessions.len(), 3);
    }

    #[test]
    fn sweep_removes_the_expired_only_and_ttl_changes_apply() {
        let t0 = Instant::now();
        let mut sessions = Sessions::with_limits(10 * MINUTE, 60 * MINUTE, 10);
        sessions.create("old", "c", grant("ops"), t0);
        sessions.create("new", "c", grant("ops"), t0 + 5 * MINUTE);
        assert_eq!(sessions.sweep(t0 + 10 * MINUTE), 1);
        assert_eq!(sessions.len(), 1);
        sessions.set_ttl(2 * MINUTE);
        assert!(sessions.lookup("new", t0 + 7 * MINUTE).is_none());
    }

    #[test]
    fn the_same_id_twice_replaces_the_session() {
        let t0 = Instant::now();
        let mut sessions = Sessions::new(60 * MINUTE);
        sessions.create("id", "c1", grant("a"), t0);
        sessions.create("id", "c2", grant("b"), t0);
        assert_eq!(sessions.len(), 1);
        let session = sessions.lookup("id", t0).expect("open");
        assert_eq!(session.grant.token, "b");
        assert_eq!(session.csrf, "c2");
    }
}
