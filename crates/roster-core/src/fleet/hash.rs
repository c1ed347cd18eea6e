//! The stable hashes placement is built on: SHA-256 of a label and the
//! names involved, so that the same names give the same numbers on every
//! machine and Rust version (std's `DefaultHasher` promises neither), and
//! the digest of a rendered section.

use sha2::{Digest, Sha256};

fn hash64(label: &str, parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    for part in parts {
        // A separator no name contains keeps ("ab", "c") from ("a", "bc").
        hasher.update([0u8]);
        hasher.update(part.as_bytes());
    }
    let bytes = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(first)
}

/// The rendezvous weight of `instance` on `host`: an instance goes to the
/// host with the highest weight that has room.
pub(super) fn weight(host: &str, instance: &str) -> u64 {
    hash64("roster-fleet-host", &[host, instance])
}

/// The port `instance` tries first, as an offset into the range.
pub(super) fn port_offset(instance: &str, ports: u32) -> u32 {
    (hash64("roster-fleet-port", &[instance]) % u64::from(ports.max(1))) as u32
}

/// The SHA-256 of `text`, in lower-case hex.
pub fn digest(text: &str) -> String {
    digest_bytes(text.as_bytes())
}

/// The SHA-256 of `bytes` in lowercase hex, as `sha256sum` prints it (a
/// binary's checksum, compared with a host's).
pub fn digest_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned values: a change here moves every instance of every fleet.
    #[test]
    fn hashes_are_stable() {
        assert_eq!(
            digest(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(weight("h01", "c01.support"), weight("h02", "c01.support"));
        assert_ne!(hash64("x", &["ab", "c"]), hash64("x", &["a", "bc"]));
        assert_eq!(port_offset("c01.support", 1), 0);
    }
}
