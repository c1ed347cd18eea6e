//! Sealing a blob with a 32-byte key (ChaCha20-Poly1305, a random nonce
//! of its own, bound to a label), for backups: the secrets travel sealed
//! with the secret store's key or one the operator keeps, never in plain.

use std::io::Read;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// A key's length.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// A key read from a file.
pub struct SealKey([u8; KEY_BYTES]);

impl SealKey {
    /// Reads a key file: exactly 32 bytes (the secret store's `key`).
    pub fn read(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path)
            .map_err(|error| format!("reading the key {}: {error}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(KEY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| format!("reading the key {}: {error}", path.display()))?;
        let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "{} is not a key: a key file holds exactly {KEY_BYTES} bytes\n  hint: make one with `head -c 32 /dev/urandom > FILE`",
                path.display()
            )
        })?;
        Ok(Self(key))
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// The first 16 hex digits of the key's SHA-256: names a key without
    /// giving it away.
    pub fn fingerprint(&self) -> String {
        Sha256::digest(self.0)
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// Nonce followed by the ciphertext of `plain`, bound to `label`.
    pub fn seal(&self, plain: &[u8], label: &str) -> Result<Vec<u8>, String> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: label.as_bytes(),
                },
            )
            .map_err(|_| "sealing failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plain bytes of what [`SealKey::seal`] made with this key and
    /// `label`; `None` for another key, another label or altered bytes.
    pub fn open(&self, sealed: &[u8], label: &str) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: label.as_bytes(),
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_opens_with_the_same_key_and_label_only() {
        let key = SealKey([7; KEY_BYTES]);
        let other = SealKey([8; KEY_BYTES]);
        let sealed = key.seal(b"sk-value", "secrets").unwrap();
        assert!(!sealed.windows(8).any(|window| window == b"sk-value"));
        assert_eq!(key.open(&sealed, "secrets").unwrap(), b"sk-value");
        assert!(key.open(&sealed, "other").is_none());
        assert!(other.open(&sealed, "secrets").is_none());
        assert_ne!(key.fingerprint(), other.fingerprint());
        assert_eq!(key.fingerprint().len(), 16);
    }
}
