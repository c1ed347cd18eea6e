//! Tokens as text: their format (`rst_` and 64 hex digits for 32 random
//! bytes the caller draws), the SHA-256 kept in place of a token, and
//! comparisons in constant time. A token has 256 bits of entropy, so one
//! unsalted SHA-256 is enough: there is nothing to guess from the hash.

use sha2::{Digest, Sha256};

/// What every token starts with (so a leaked one is recognisable).
pub const TOKEN_PREFIX: &str = "rst_";
/// The random bytes of a token.
pub const TOKEN_BYTES: usize = 32;

/// A token's text from its random bytes: `rst_` and lower-case hex.
pub fn format_token(bytes: &[u8; TOKEN_BYTES]) -> String {
    let mut text = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
    text.push_str(TOKEN_PREFIX);
    text.push_str(&hex(bytes));
    text
}

/// What is stored in place of a token (or looked up in place of a session
/// id): the SHA-256 of its text, lower-case hex.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Whether `a` and `b` are equal, in a time that depends on their length
/// only (lengths are not secret: hashes and CSRF tokens have a fixed one).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the compiler from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

/// The CSRF check: the `X-CSRF-Token` header was sent and equals the
/// session's token. An empty expected token never matches.
pub fn csrf_matches(header: Option<&str>, expected: &str) -> bool {
    match header {
        Some(sent) if !expected.is_empty() => {
            constant_time_eq(sent.as_bytes(), expected.as_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_prefix_and_64_hex_digits() {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[0] = 0xab;
        bytes[31] = 0x0f;
        let token = format_token(&bytes);
        assert_eq!(token.len(), 4 + 64);
        assert!(token.starts_with("rst_ab00"));
        assert!(token.ends_with("0f"));
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(token_hash("rst_a"), token_hash("rst_b"));
    }

    #[test]
    fn equality_needs_equal_length_and_bytes() {
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"sane"));
        assert!(!constant_time_eq(b"same", b"same!"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn csrf_needs_the_header_and_a_real_token() {
        assert!(csrf_matches(Some("t0k"), "t0k"));
        assert!(!csrf_matches(Some("t0K"), "t0k"));
        assert!(!csrf_matches(None, "t0k"));
        assert!(!csrf_matches(Some(""), ""), "no session token: never");
        assert!(!csrf_matches(Some("t0k "), "t0k"));
    }
}
