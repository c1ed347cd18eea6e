//! When the daemon gives up on a client of its sockets (the control socket
//! and `/metrics`): how long it waits for a request, and how many
//! connections one peer may hold.
//!
//! Pure: the daemon's listener (`roster_daemon::listener`) reports what
//! happens on a connection, with the time, and closes it at
//! [`Patience::poll_timeout`] or refuses it when [`PeerCounts::admit`] says
//! no.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long the server waits for one client, counted only while it waits
/// for that client.
///
/// - A request (its head and body) must be in within `limit` of the accept
///   or of the previous answer. Bytes that trickle in do not extend it: a
///   client that sends one byte a second is closed like a silent one.
/// - While a request is handled nothing counts: an apply may wait on the
///   daemon for minutes, and its client waits with it.
/// - While an answer is sent, each write the client takes starts the count
///   again: a large answer to a slow reader is not cut, one the client
///   stopped reading is.
#[derive(Clone, Debug)]
pub struct Patience {
    limit: Duration,
    deadline: Instant,
    handling: usize,
}

impl Patience {
    /// A connection accepted at `now`: waiting for its first request.
    pub fn new(now: Instant, limit: Duration) -> Self {
        Self {
            limit,
            deadline: now + limit,
            handling: 0,
        }
    }

    /// A request was read and its handler runs: no deadline until it is
    /// answered.
    pub fn handle_request(&mut self) {
        self.handling += 1;
    }

    /// A request was answered (its handler returned or was dropped): the
    /// wait for the client starts again at `now`.
    pub fn handle_answered(&mut self, now: Instant) {
        debug_assert!(self.handling > 0, "an answer without a request");
        self.handling = self.handling.saturating_sub(1);
        if self.handling == 0 {
            self.deadline = now + self.limit;
        }
    }

    /// The client took bytes of an answer at `now`.
    pub fn handle_sent(&mut self, now: Instant) {
        if self.handling == 0 {
            self.deadline = self.deadline.max(now + self.limit);
        }
    }

    /// When the connection is closed unless something above happens
    /// first; `None` while a request is handled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.handling == 0).then_some(self.deadline)
    }
}

/// How many connections each peer holds, and at most how many it may.
#[derive(Clone, Debug)]
pub struct PeerCounts<P> {
    cap: usize,
    held: HashMap<P, usize>,
}

impl<P: Eq + Hash> PeerCounts<P> {
    /// Each peer may hold up to `cap` connections.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            held: HashMap::new(),
        }
    }

    /// Whether a new connection of `peer` may be served; counted if so.
    /// When not, it is to be closed at once, so the backlog behind it
    /// drains instead of waiting for this peer's connections to end.
    pub fn admit(&mut self, peer: P) -> bool {
        let held = self.held.entry(peer).or_insert(0);
        if *held >= self.cap {
            return false;
        }
        *held += 1;
        true
    }

    /// A connection of `peer` that was admitted is closed.
    pub fn release(&mut self, peer: &P) {
        if let Some(held) = self.held.get_mut(peer) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.held.remove(peer);
            }
        }
    }

    /// How many connections `peer` holds.
    pub fn held(&self, peer: &P) -> usize {
        self.held.get(peer).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn a_request_must_be_in_within_the_limit_of_the_accept() {
        let t0 = Instant::now();
        let patience = Patience::new(t0, LIMIT);
        // Nothing the client sends moves it: there is no input for bytes
        // read, so one byte a second is closed like silence.
        assert_eq!(patience.poll_timeout(), Some(t0 + LIMIT));
    }

    #[test]
    fn nothing_counts_while_a_request_is_handled() {
        let t0 = Instant::now();
        let mut patience = Patience::new(t0, LIMIT);
        patience.handle_request();
        assert_eq!(patience.poll_timeout(), None, "an apply may take minutes");
        // Answered after ten minutes: the client gets the limit again.
        patience.handle_answered(t0 + secs(600));
        assert_eq!(patience.poll_timeout(), Some(t0 + secs(600) + LIMIT));
    }

    #[test]
    fn an_answer_taken_by_the_client_starts_the_count_again() {
        let t0 = Instant::now();
        let mut patience = Patience::new(t0, LIMIT);
        patience.handle_request();
        patience.handle_sent(t0 + secs(1));
        assert_eq!(patience.poll_timeout(), None, "still handled");
        patience.handle_answered(t0 + secs(2));
        patience.handle_sent(t0 + secs(4));
        assert_eq!(patience.poll_timeout(), Some(t0 + secs(4) + LIMIT));
        // A late report of an earlier write never brings it forward.
        patience.handle_sent(t0 + secs(3));
        assert_eq!(patience.poll_timeout(), Some(t0 + secs(4) + LIMIT));
    }

    #[test]
    fn requests_handled_together_all_count() {
        let t0 = Instant::now();
        let mut patience = Patience::new(t0, LIMIT);
        patience.handle_request();
        patience.handle_request();
        patience.handle_answered(t0 + secs(1));
        assert_eq!(patience.poll_timeout(), None, "one is still handled");
        patience.handle_answered(t0 + secs(2));
        assert_eq!(patience.poll_timeout(), Some(t0 + secs(2) + LIMIT));
    }

    #[test]
    fn a_peer_at_its_cap_is_refused_and_others_are_not() {
        let mut peers = PeerCounts::new(2);
        assert!(peers.admit("a"));
        assert!(peers.admit("a"));
        assert!(!peers.admit("a"), "a holds its cap");
        assert_eq!(peers.held(&"a"), 2, "a refusal is not counted");
        assert!(peers.admit("b"));
        peers.release(&"a");
        assert!(peers.admit("a"), "a freed one");
        peers.release(&"a");
        peers.release(&"a");
        peers.release(&"a");
        assert_eq!(peers.held(&"a"), 0);
        assert_eq!(peers.held(&"b"), 1);
    }
}
