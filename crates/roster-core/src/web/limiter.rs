//! Failed logins per client address: each wrong token is answered late
//! (more so at each failure), and past [`LOGIN_FAILURES`] failures within
//! [`LOGIN_WINDOW`] the address is refused until its window passes, with
//! the wait to say in `Retry-After`. An IPv6 client counts by its /64 (one
//! host usually holds a whole /64), an IPv4-mapped one as IPv4.
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] addresses are remembered and
//! the one whose window began first is forgotten to make room, so a flood
//! from many addresses costs a fixed amount (and at worst frees an early
//! attacker, who is still slowed down).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;
use std::time::Instant;

/// Failures allowed per address within a window.
pub const LOGIN_FAILURES: u32 = 5;
/// The window failures are counted in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most.
pub const MAX_CLIENTS: usize = 10_000;
/// The answer to a wrong token waits this long per failure so far...
const SLOWDOWN_STEP: Duration = Duration::from_millis(250);
/// ...up to this.
const SLOWDOWN_MAX: Duration = Duration::from_secs(2);

/// An address refused until its window passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// How long until it may try again.
    pub retry_after: Duration,
}

impl Refused {
    /// `retry_after` in whole seconds, rounded up and at least 1: the
    /// `Retry-After` header's value.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

#[derive(Debug)]
struct Client {
    window_start: Instant,
    failures: u32,
    order: u64,
}

/// The failed logins of every recent client.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    max_clients: usize,
    clients: HashMap<IpAddr, Client>,
    /// Addresses by when their window began; entries whose order number no
    /// longer matches the client's are stale and skipped.
    order: VecDeque<(IpAddr, u64)>,
    next_order: u64,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginLimiter {
    /// [`LOGIN_FAILURES`] per [`LOGIN_WINDOW`], [`MAX_CLIENTS`] addresses.
    pub fn new() -> Self {
        Self::with_limits(LOGIN_FAILURES, LOGIN_WINDOW, MAX_CLIENTS)
    }

    /// Limits of the caller's (tests; at least one failure and one client).
    pub fn with_limits(max_failures: u32, window: Duration, max_clients: usize) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            max_clients: max_clients.max(1),
            clients: HashMap::new(),
            order: VecDeque::new(),
            next_order: 0,
        }
    }

    /// How many addresses are remembered.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Asked before a login is judged: whether `address` may try at `now`.
    pub fn check(&self, address: IpAddr, now: Instant) -> Result<(), Refused> {
        let Some(client) = self.clients.get(&client_key(address)) else {
            return Ok(());
        };
        let ends = client.window_start + self.window;
        if client.failures >= self.max_failures && now < ends {
            return Err(Refused {
                retry_after: ends - now,
            });
        }
        Ok(())
    }

    /// A wrong token from `address` at `now`: counted; returns how long to
    /// hold the answer back.
    pub fn failure(&mut self, address: IpAddr, now: Instant) -> Duration {
        let key = client_key(address);
        let window = self.window;
        let failures = match self.clients.get_mut(&key) {
            Some(client) if now < client.window_start + window => {
                client.failures = client.failures.saturating_add(1);
                client.failures
            }
            Some(client) => {
                // Its window passed: a new one begins, last in the order.
                let order = self.next_order;
                self.next_order += 1;
                *client = Client {
                    window_start: now,
                    failures: 1,
                    order,
                };
                self.order.push_back((key, order));
                1
            }
            None => {
                while self.clients.len() >= self.max_clients {
                    if !self.evict_oldest() {
                        break;
                    }
                }
                let order = self.next_order;
                self.next_order += 1;
                self.clients.insert(
                    key,
                    Client {
                        window_start: now,
                        failures: 1,
                        order,
                    },
                );
                self.order.push_back((key, order));
                1
            }
        };
        self.compact();
        (SLOWDOWN_STEP * failures).min(SLOWDOWN_MAX)
    }

    /// A right token from `address`: its failures are forgotten.
    pub fn success(&mut self, address: IpAddr) {
        self.clients.remove(&client_key(address));
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((key, order)) = self.order.pop_front() {
            if self.clients.get(&key).is_some_and(|c| c.order == order) {
                self.clients.remove(&key);
                return true;
            }
        }
        false
    }

    /// Drops stale order entries once they outnumber the clients, so the
    /// queue stays within a small multiple of [`MAX_CLIENTS`].
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.max_clients + 16 {
            return;
        }
        let clients = &self.clients;
        self.order
            .retain(|(key, order)| clients.get(key).is_some_and(|c| c.order == *order));
    }
}

/// The address failures are counted under: IPv4 as is (also when mapped
/// into IPv6), IPv6 by its /64.
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn five_failures_a_minute_then_refused_until_the_window_passes() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::new();
        let client = ip("203.0.113.7");
        for n in 0..5u32 {
            assert_eq!(limiter.check(client, t0 + n * SECOND), Ok(()));
            limiter.failure(client, t0 + n * SECOND);
        }
        let refused = limiter
            .check(client, t0 + 10 * SECOND)
            .expect_err("refused");
        assert_eq!(refused.retry_after, 50 * SECOND);
        assert_eq!(refused.retry_after_secs(), 50);
        let almost = t0 + 60 * SECOND - Duration::from_millis(1);
        let refused = limiter.check(client, almost).expect_err("still refused");
        assert_eq!(refused.retry_after_secs(), 1, "rounded up, never 0");
        assert_eq!(limiter.check(client, t0 + 60 * SECOND), Ok(()));
        // A new window starts from one failure.
        limiter.failure(client, t0 + 61 * SECOND);
        assert_eq!(limiter.check(client, t0 + 62 * SECOND), Ok(()));
    }

    #[test]
    fn wrong_tokens_are_answered_later_and_later_up_to_a_cap() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::with_limits(100, LOGIN_WINDOW, 10);
        let client = ip("198.51.100.1");
        let delays: Vec<Duration> = (0..10).map(|_| limiter.failure(client, t0)).collect();
        assert_eq!(delays[0], Duration::from_millis(250));
        assert_eq!(delays[1], Duration::from_millis(500));
        assert!(delays.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(delays[9], SLOWDOWN_MAX);
    }

    #[test]
    fn addresses_are_counted_apart_and_success_forgets() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::with_limits(2, LOGIN_WINDOW, 10);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        limiter.failure(a, t0);
        limiter.failure(a, t0);
        assert!(limiter.check(a, t0).is_err());
        assert_eq!(limiter.check(b, t0), Ok(()));
        limiter.failure(b, t0);
        limiter.success(b);
        limiter.failure(b, t0);
        assert_eq!(limiter.check(b, t0), Ok(()), "the success reset b's count");
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::with_limits(2, LOGIN_WINDOW, 10);
        limiter.failure(ip("2001:db8:1:2::1"), t0);
        limiter.failure(ip("2001:db8:1:2::ffff"), t0);
        assert!(limiter.check(ip("2001:db8:1:2:dead::beef"), t0).is_err());
        assert_eq!(limiter.check(ip("2001:db8:1:3::1"), t0), Ok(()));
        limiter.failure(ip("::ffff:192.0.2.9"), t0);
        limiter.failure(ip("192.0.2.9"), t0);
        assert!(limiter.check(ip("192.0.2.9"), t0).is_err());
    }

    #[test]
    fn a_flood_of_addresses_keeps_memory_bounded_evicting_the_oldest() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::with_limits(1, LOGIN_WINDOW, 100);
        let first = ip("10.0.0.1");
        limiter.failure(first, t0);
        assert!(limiter.check(first, t0).is_err());
        for n in 0..50_000u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + n));
            limiter.failure(address, t0 + Duration::from_millis(u64::from(n)));
            assert!(limiter.len() <= 100);
            assert!(limiter.order.len() <= 2 * 100 + 16);
        }
        assert_eq!(limiter.len(), 100);
        assert_eq!(limiter.check(first, t0), Ok(()), "the oldest was forgotten");
        let newest = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + 49_999));
        assert!(limiter.check(newest, t0 + 50 * SECOND).is_err());
    }

    #[test]
    fn repeated_windows_of_one_client_keep_the_queue_bounded() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::with_limits(5, SECOND, 4);
        let client = ip("192.0.2.50");
        for n in 0..1000u32 {
            limiter.failure(client, t0 + n * 2 * SECOND);
        }
        assert_eq!(limiter.len(), 1);
        assert!(limiter.order.len() <= 2 * 4 + 16);
    }
}
