//! Secrets: environment variables of an agent kept out of its config.
//! (`env_file`s are read with the config, in `config_file`.)
//!
//! Secrets live in `<home>/secrets/` (mode 0700, a real directory owned by
//! roster's uid, never reached through a link), one file per agent,
//! `AGENT.env`, of `KEY=VALUE` lines, mode 0600, replaced atomically. When
//! `<home>/secrets/key` exists (32 random bytes, 0600), every value is
//! stored encrypted with ChaCha20-Poly1305 under a random nonce of its own,
//! bound to its agent and name; the file then starts with
//! [`ENCRYPTED_HEADER`]. Writers take an exclusive `flock` on the
//! directory, so the CLI and the daemon never interleave.
//!
//! The daemon keeps every agent's secrets in memory ([`Secrets`]), loaded
//! at start and updated by the API, so spawning reads no file. No value is
//! ever put in an error, a log line or the journal: messages name the file,
//! the line and the key only.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::RwLock;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use nix::fcntl::{Flock, OFlag};

use roster_core::AgentName;

use crate::home::{Home, HomeDir, HomeError};

/// The directory in the home.
pub const DIRECTORY: &str = "secrets";
/// The key file in [`DIRECTORY`].
pub const KEY_FILE: &str = "key";
/// The first line of an agent's file whose values are encrypted.
pub const ENCRYPTED_HEADER: &str =
    "# roster secrets, values encrypted with ./key (ChaCha20-Poly1305; hex nonce+ciphertext)";
const PLAIN_HEADER: &str = "# roster secrets: KEY=VALUE, one per line (not encrypted: no ./key)";
/// The largest value `roster secret set` accepts.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// An agent's secrets: name to value.
pub type AgentSecrets = BTreeMap<String, String>;

/// Why a secret could not be stored, removed or read. Never carries a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The home or a file in it may not be used.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The request itself is wrong (a bad agent name, key or value).
    #[error("{0}")]
    Invalid(String),
    /// No such secret.
    #[error("{agent} has no secret named {key}")]
    NotFound {
        /// The agent.
        agent: String,
        /// The key.
        key: String,
    },
    /// A stored file or the key is unusable.
    #[error("{0}")]
    Store(String),
}

/// Checks a variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_key(key: &str) -> Result<(), String> {
    roster_core::name::check_variable_name(key)
}

/// Checks a value: not empty, one line, no NUL, at most [`MAX_VALUE_BYTES`].
/// The message never quotes the value.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the value is empty".into());
    }
    if value.contains('\0') {
        return Err("the value contains a NUL byte".into());
    }
    if value.contains(['\n', '\r']) {
        return Err("the value contains a line break; a secret is one line".into());
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "the value is {} bytes; at most {MAX_VALUE_BYTES} are kept",
            value.len()
        ));
    }
    Ok(())
}

/// Checks an agent name.
pub fn check_agent(agent: &str) -> Result<AgentName, String> {
    AgentName::new(agent).map_err(|problem| format!("bad agent name {agent:?}: {problem}"))
}

fn file_name(agent: &AgentName) -> String {
    format!("{agent}.env")
}

/// The secrets directory of a home, held open.
#[derive(Debug)]
pub struct Store {
    dir: HomeDir,
}

/// Held while the store is changed.
struct StoreLock {
    _lock: Flock<OwnedFd>,
}

impl Store {
    /// Opens `<home>/secrets`, creating it (0700) when missing.
    pub fn create(home: &HomeDir) -> Result<Self, SecretError> {
        Ok(Self {
            dir: home.subdirectory(DIRECTORY, true)?,
        })
    }

    /// Opens `<home>/secrets`; `None` when it does not exist.
    pub fn open(home: &HomeDir) -> Result<Option<Self>, SecretError> {
        Ok(home
            .open_subdirectory(DIRECTORY, true)?
            .map(|dir| Self { dir }))
    }

    fn path(&self, name: &str) -> String {
        self.dir.home().root().join(name).display().to_string()
    }

    fn lock(&self) -> Result<StoreLock, SecretError> {
        Ok(StoreLock {
            _lock: self.dir.lock_exclusive()?,
        })
    }

    /// Reads a file of the store: a regular file of ours, not a link, that
    /// group and others cannot read.
    fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, SecretError> {
        if !self.dir.check_file(name)? {
            return Ok(None);
        }
        let file = self.dir.open_file(name, OFlag::O_RDONLY, 0)?;
        let path = self.path(name);
        let metadata = file
            .metadata()
            .map_err(|error| SecretError::Store(format!("inspecting {path}: {error}")))?;
        let mode = metadata.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Store(format!(
                "{path} is readable by group or others (mode {mode:04o}); roster keeps secrets in files of mode 0600\n  hint: chmod 0600 {path}"
            )));
        }
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| SecretError::Store(format!("reading {path}: {error}")))?;
        if bytes.len() as u64 > limit {
            return Err(SecretError::Store(format!(
                "{path} is larger than {limit} bytes"
            )));
        }
        Ok(Some(bytes))
    }

    /// Whether values are stored encrypted: the key file exists.
    pub fn is_encrypted(&self) -> Result<bool, SecretError> {
        Ok(self.dir.check_file(KEY_FILE)?)
    }

    fn cipher(&self) -> Result<Option<ChaCha20Poly1305>, SecretError> {
        let Some(key) = self.read(KEY_FILE, KEY_BYTES as u64)? else {
            return Ok(None);
        };
        if key.len() != KEY_BYTES {
            return Err(SecretError::Store(format!(
                "{} is {} bytes, not the {KEY_BYTES} of a key",
                self.path(KEY_FILE),
                key.len()
            )));
        }
        Ok(Some(ChaCha20Poly1305::new(Key::from_slice(&key))))
    }

    /// An agent's secrets, decrypted.
    pub fn load(&self, agent: &AgentName) -> Result<AgentSecrets, SecretError> {
        let cipher = self.cipher()?;
        self.load_with(agent, cipher.as_ref())
    }

    fn load_with(
        &self,
        agent: &AgentName,
        cipher: Option<&ChaCha20Poly1305>,
    ) -> Result<AgentSecrets, SecretError> {
        let name = file_name(agent);
        let Some(bytes) = self.read(&name, MAX_FILE_BYTES)? else {
            return Ok(AgentSecrets::new());
        };
        let path = self.path(&name);
        let text = String::from_utf8(bytes)
            .map_err(|_| SecretError::Store(format!("{path} is not UTF-8")))?;
        let encrypted = text.lines().next() == Some(ENCRYPTED_HEADER);
        if encrypted && cipher.is_none() {
            return Err(SecretError::Store(format!(
                "{path} is encrypted, but {} is missing\n  hint: restore the key file from where you keep it",
                self.path(KEY_FILE)
            )));
        }
        let mut secrets = AgentSecrets::new();
        for (index, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = |why: &str| SecretError::Store(format!("{path}:{}: {why}", index + 1));
            let Some((key, value)) = line.split_once('=') else {
                return Err(malformed("not KEY=VALUE"));
            };
            check_key(key).map_err(|why| malformed(&why))?;
            let value = match (encrypted, cipher) {
                (true, Some(cipher)) => decrypt(cipher, agent, key, value)
                    .ok_or_else(|| malformed(&format!("the value of {key} does not decrypt with the key (a wrong key, or the file was altered)")))?,
                _ => value.to_owned(),
            };
            secrets.insert(key.to_owned(), value);
        }
        Ok(secrets)
    }

    fn save(
        &self,
        agent: &AgentName,
        secrets: &AgentSecrets,
        cipher: Option<&ChaCha20Poly1305>,
    ) -> Result<(), SecretError> {
        let name = file_name(agent);
        // A link planted as the file is refused, not replaced silently.
        self.dir.check_file(&name)?;
        if secrets.is_empty() {
            self.dir.remove_file(&name)?;
            return Ok(());
        }
        let mut text = String::new();
        text.push_str(if cipher.is_some() {
            ENCRYPTED_HEADER
        } else {
            PLAIN_HEADER
        });
        text.push('\n');
        for (key, value) in secrets {
            text.push_str(key);
            text.push('=');
            match cipher {
                Some(cipher) => text.push_str(&encrypt(cipher, agent, key, value)?),
                None => text.push_str(value),
            }
            text.push('\n');
        }
        self.dir
            .write_atomically_with_mode(&name, text.as_bytes(), 0o600)?;
        Ok(())
    }

    /// Sets `key` of `agent`; returns the agent's secrets after it.
    pub fn set(
        &self,
        agent: &AgentName,
        key: &str,
        value: &str,
    ) -> Result<AgentSecrets, SecretError> {
        check_key(key).map_err(SecretError::Invalid)?;
        check_value(value).map_err(SecretError::Invalid)?;
        let _lock = self.lock()?;
        let cipher = self.cipher()?;
        let mut secrets = self.load_with(agent, cipher.as_ref())?;
        secrets.insert(key.to_owned(), value.to_owned());
        self.save(agent, &secrets, cipher.as_ref())?;
        Ok(secrets)
    }

    /// Removes `key` of `agent`; returns the agent's secrets after it.
    pub fn remove(&self, agent: &AgentName, key: &str) -> Result<AgentSecrets, SecretError> {
        let _lock = self.lock()?;
        let cipher = self.cipher()?;
        let mut secrets = self.load_with(agent, cipher.as_ref())?;
        if secrets.remove(key).is_none() {
            return Err(SecretError::NotFound {
                agent: agent.to_string(),
                key: key.to_owned(),
            });
        }
        self.save(agent, &secrets, cipher.as_ref())?;
        Ok(secrets)
    }

    /// The agents with a file in the store.
    fn agents(&self) -> Result<Vec<AgentName>, SecretError> {
        // The directory the descriptor holds, whatever its path is now.
        let listing = format!("/proc/self/fd/{}", self.dir.as_fd().as_raw_fd());
        let entries = std::fs::read_dir(&listing).map_err(|error| {
            SecretError::Store(format!(
                "listing {}: {error}",
                self.dir.home().root().display()
            ))
        })?;
        let mut agents = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(agent) = file_name
                .to_str()
                .and_then(|name| name.strip_suffix(".env"))
                .and_then(|name| AgentName::new(name).ok())
            else {
                continue;
            };
            agents.push(agent);
        }
        agents.sort();
        Ok(agents)
    }

    /// Every agent's secrets; an agent whose file cannot be used is left
    /// out, with the reason (never a value) in the second list.
    pub fn load_all(&self) -> (BTreeMap<AgentName, AgentSecrets>, Vec<String>) {
        let mut all = BTreeMap::new();
        let mut problems = Vec::new();
        let cipher = match self.cipher() {
            Ok(cipher) => cipher,
            Err(error) => return (all, vec![error.to_string()]),
        };
        let agents = match self.agents() {
            Ok(agents) => agents,
            Err(error) => return (all, vec![error.to_string()]),
        };
        for agent in agents {
            match self.load_with(&agent, cipher.as_ref()) {
                Ok(secrets) => {
                    all.insert(agent, secrets);
                }
                Err(error) => problems.push(format!("secrets of {agent} not loaded: {error}")),
            }
        }
        (all, problems)
    }

    /// Makes `key` (32 bytes) the store's key, for a restore into a store
    /// that has none and no secrets yet. Refuses when a key exists.
    pub fn install_key(&self, key: &[u8]) -> Result<(), SecretError> {
        let _lock = self.lock()?;
        if key.len() != KEY_BYTES {
            return Err(SecretError::Invalid(format!(
                "a key is {KEY_BYTES} bytes, not {}",
                key.len()
            )));
        }
        if self.dir.check_file(KEY_FILE)? {
            return Err(SecretError::Invalid(format!(
                "{} exists already; roster never replaces a key",
                self.path(KEY_FILE)
            )));
        }
        self.dir.write_atomically_with_mode(KEY_FILE, key, 0o600)?;
        Ok(())
    }

    /// Creates the key file (32 random bytes, 0600) and encrypts every
    /// agent's file with it. Refuses when a key exists. Returns how many
    /// agents' files were encrypted.
    pub fn init_key(&self) -> Result<usize, SecretError> {
        let _lock = self.lock()?;
        if self.dir.check_file(KEY_FILE)? {
            return Err(SecretError::Invalid(format!(
                "{} exists already; roster never replaces a key (the values stored with it would be lost)",
                self.path(KEY_FILE)
            )));
        }
        let mut plain = BTreeMap::new();
        for agent in self.agents()? {
            let secrets = self.load_with(&agent, None)?;
            plain.insert(agent, secrets);
        }
        let key = ChaCha20Poly1305::generate_key(&mut OsRng);
        self.dir
            .write_atomically_with_mode(KEY_FILE, key.as_slice(), 0o600)?;
        let cipher = ChaCha20Poly1305::new(&key);
        for (agent, secrets) in &plain {
            self.save(agent, secrets, Some(&cipher))?;
        }
        Ok(plain.len())
    }
}

fn associated_data(agent: &AgentName, key: &str) -> Vec<u8> {
    format!("roster-secret-v1\0{agent}\0{key}").into_bytes()
}

fn encrypt(
    cipher: &ChaCha20Poly1305,
    agent: &AgentName,
    key: &str,
    value: &str,
) -> Result<String, SecretError> {
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = associated_data(agent, key);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: value.as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| SecretError::Store(format!("encrypting {key} of {agent} failed")))?;
    let mut text = hex(nonce.as_slice());
    text.push_str(&hex(&sealed));
    Ok(text)
}

fn decrypt(cipher: &ChaCha20Poly1305, agent: &AgentName, key: &str, text: &str) -> Option<String> {
    let bytes = unhex(text)?;
    if bytes.len() < NONCE_BYTES {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
    let aad = associated_data(agent, key);
    let plain = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .ok()?;
    String::from_utf8(plain).ok()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let pairs = text.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// The daemon's copy of every agent's secrets: loaded at start, changed
/// only through [`Secrets::set`] and [`Secrets::remove`] (which write the
/// store first), read by the loop at each spawn.
#[derive(Debug)]
pub struct Secrets {
    home: Home,
    memory: RwLock<BTreeMap<AgentName, AgentSecrets>>,
}

impl Secrets {
    /// Loads the store of `home` (creating `<home>/secrets`); problems with
    /// one agent's file come back as warnings, and that agent starts
    /// without its secrets.
    pub fn load(home: &HomeDir) -> (Self, Vec<String>) {
        let (memory, problems) = match Store::create(home) {
            Ok(store) => store.load_all(),
            Err(error) => (BTreeMap::new(), vec![error.to_string()]),
        };
        let secrets = Self {
            home: home.home().clone(),
            memory: RwLock::new(memory),
        };
        (secrets, problems)
    }

    /// An empty copy (tests, and daemons without a store).
    pub fn empty(home: Home) -> Self {
        Self {
            home,
            memory: RwLock::new(BTreeMap::new()),
        }
    }

    /// The agent's secrets as environment entries, sorted by name.
    pub fn environment(&self, agent: &AgentName) -> Vec<(String, String)> {
        self.memory
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(agent)
            .map(|secrets| {
                secrets
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The names of the agent's secrets.
    pub fn keys(&self, agent: &AgentName) -> Vec<String> {
        self.memory
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(agent)
            .map(|secrets| secrets.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn store(&self) -> Result<Store, SecretError> {
        Store::create(&self.home.open_verified()?)
    }

    /// Whether values are stored encrypted. Blocking.
    pub fn is_encrypted(&self) -> bool {
        self.store()
            .and_then(|store| store.is_encrypted())
            .unwrap_or(false)
    }

    /// Stores a secret, then updates the copy. Blocking (file I/O).
    pub fn set(&self, agent: &AgentName, key: &str, value: &str) -> Result<(), SecretError> {
        let secrets = self.store()?.set(agent, key, value)?;
        self.replace(agent, secrets);
        Ok(())
    }

    /// Removes a secret, then updates the copy. Blocking (file I/O).
    pub fn remove(&self, agent: &AgentName, key: &str) -> Result<(), SecretError> {
        let secrets = self.store()?.remove(agent, key)?;
        self.replace(agent, secrets);
        Ok(())
    }

    fn replace(&self, agent: &AgentName, secrets: AgentSecrets) {
        let mut memory = self
            .memory
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if secrets.is_empty() {
            memory.remove(agent);
        } else {
            memory.insert(agent.clone(), secrets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str) -> AgentName {
        AgentName::new(name).expect("name")
    }

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    }

    #[test]
    fn keys_and_values_are_checked() {
        assert!(check_key("API_KEY").is_ok());
        assert!(check_key("_x9").is_ok());
        for bad in ["", "9A", "A-B", "A B", "A=B", "É"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_value("sk-live x=y").is_ok());
        for bad in ["", "a\nb", "a\0b", "a\rb"] {
            let error = check_value(bad).expect_err("refused");
            assert!(!error.contains(bad) || bad.is_empty(), "{error}");
        }
    }

    #[test]
    fn a_plain_store_round_trips_in_0600_files_in_a_0700_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("home"));
        let home_dir = home.create_verified().expect("home");
        let store = Store::create(&home_dir).expect("store");
        let web = agent("web");
        store.set(&web, "API_KEY", "sk-1=2 3").expect("set");
        store.set(&web, "OTHER", "x").expect("set");
        assert_eq!(mode(&home.root().join("secrets")), 0o700);
        assert_eq!(mode(&home.root().join("secrets/web.env")), 0o600);
        let loaded = store.load(&web).expect("load");
        assert_eq!(loaded.get("API_KEY").map(String::as_str), Some("sk-1=2 3"));
        store.remove(&web, "OTHER").expect("rm");
        assert!(matches!(
            store.remove(&web, "OTHER"),
            Err(SecretError::NotFound { .. })
        ));
        store.remove(&web, "API_KEY").expect("rm");
        assert!(!home.root().join("secrets/web.env").exists());
        assert!(matches!(
            store.set(&web, "BAD KEY", "v"),
            Err(SecretError::Invalid(_))
        ));
    }

    #[test]
    fn a_link_as_the_file_is_refused_and_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("home"));
        let home_dir = home.create_verified().expect("home");
        let store = Store::create(&home_dir).expect("store");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim, home.root().join("secrets/web.env")).expect("ln");
        let refused = store.set(&agent("web"), "K", "v").expect_err("a link");
        assert!(
            matches!(refused, SecretError::Home(HomeError::Symlink { .. })),
            "{refused}"
        );
        assert!(store.load(&agent("web")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
    }

    #[test]
    fn with_a_key_values_are_encrypted_and_bound_to_their_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("home"));
        let home_dir = home.create_verified().expect("home");
        let store = Store::create(&home_dir).expect("store");
        let web = agent("web");
        store.set(&web, "EARLY", "plain-before-key").expect("set");
        assert_eq!(store.init_key().expect("init"), 1);
        assert!(store.init_key().is_err(), "a key is never replaced");
        assert_eq!(mode(&home.root().join("secrets/key")), 0o600);
        assert_eq!(
            std::fs::read(home.root().join("secrets/key"))
                .expect("key")
                .len(),
            32
        );
        store.set(&web, "API_KEY", "sk-live-secret").expect("set");
        let file = home.root().join("secrets/web.env");
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.starts_with(ENCRYPTED_HEADER), "{text}");
        assert!(!text.contains("sk-live-secret") && !text.contains("plain-before-key"));
        let loaded = store.load(&web).expect("load");
        assert_eq!(
            loaded.get("API_KEY").map(String::as_str),
            Some("sk-live-secret")
        );
        assert_eq!(
            loaded.get("EARLY").map(String::as_str),
            Some("plain-before-key")
        );
        // A value moved to another name does not decrypt.
        let swapped = text.replace("API_KEY=", "OTHER_K=");
        std::fs::write(&file, swapped).expect("write");
        let error = store.load(&web).expect_err("bound to its name");
        assert!(!error.to_string().contains("sk-live"), "{error}");
        // Without the key, an encrypted file is an error, not garbage.
        std::fs::remove_file(home.root().join("secrets/key")).expect("rm key");
        assert!(store.load(&web).is_err());
    }

    #[test]
    fn the_daemon_copy_follows_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("home"));
        let home_dir = home.create_verified().expect("home");
        Store::create(&home_dir)
            .expect("store")
            .set(&agent("web"), "A", "1")
            .expect("set");
        std::fs::write(home.root().join("secrets/bad.env"), "no equals\n").expect("bad");
        std::fs::set_permissions(
            home.root().join("secrets/bad.env"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
        let (secrets, problems) = Secrets::load(&home_dir);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("bad.env:1"), "{problems:?}");
        assert_eq!(
            secrets.environment(&agent("web")),
            vec![("A".to_owned(), "1".to_owned())]
        );
        secrets.set(&agent("web"), "B", "2").expect("set");
        assert_eq!(secrets.keys(&agent("web")), vec!["A", "B"]);
        secrets.remove(&agent("web"), "A").expect("rm");
        secrets.remove(&agent("web"), "B").expect("rm");
        assert!(secrets.environment(&agent("web")).is_empty());
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex("0001abff"), Some(bytes.to_vec()));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }
}
