//! The web dashboard's decisions (issue #18), pure: what `[web]` means
//! (`WebSpec`), what a token may see and do (`Scope`, `Grant`, `may_see`,
//! `may_act`), the sessions a login opens (`Sessions`), how wrong tokens
//! are slowed and rate limited per client (`LoginLimiter`), and the
//! comparisons that must not leak through timing (token hashes, the CSRF
//! header).
//!
//! Nothing here reads a clock, a file or a random source: `now` and the
//! random session ids come from the caller, so every rule is tested on a
//! fake clock. Serving the page is the daemon's business. By job:
//! - `spec`: the `[web]` table as a model;
//! - `access`: scopes, grants and who may see or act on which agent;
//! - `secret_text`: token format, hashing and constant-time comparison;
//! - `sessions`: login sessions with absolute and idle expiry, bounded;
//! - `limiter`: failed logins per client address, bounded.

mod access;
mod limiter;
mod secret_text;
mod sessions;
mod spec;

pub use access::{check_tenant, may_act, may_see, Grant, Scope};
pub use limiter::{LoginLimiter, Refused, LOGIN_FAILURES, LOGIN_WINDOW, MAX_CLIENTS};
pub use secret_text::{
    constant_time_eq, csrf_matches, format_token, token_hash, TOKEN_BYTES, TOKEN_PREFIX,
};
pub use sessions::{Session, Sessions, IDLE_TIMEOUT, MAX_SESSIONS};
pub use spec::{
    TlsFiles, WebSpec, DEFAULT_LISTEN, DEFAULT_SESSION_TTL, MAX_SESSION_TTL, MIN_SESSION_TTL,
};
