//! The web dashboard's tokens: `<home>/web/tokens.json` (the directory
//! 0700, the file 0600, a regular file of roster's uid never reached
//! through a link, replaced atomically under an exclusive `flock` on the
//! directory, like the secret store).
//!
//! Only the SHA-256 of a token is kept ([`roster_core::web::token_hash`]):
//! the token itself is shown once, by `roster web token add`, and is
//! nowhere on disk. A token is 32 bytes from the OS, written `rst_` and
//! hex. Each entry has a name (the rules of agent names), a scope (`admin`
//! or `tenant:NAME`), `read_only`, when it was made and when it was last
//! used.
//!
//! The daemon re-reads the file when its [`Fingerprint`] (device, inode,
//! size, modification and change times) changes, so a revocation takes
//! effect at once and an unchanged file costs one `fstatat`.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, OFlag};
use nix::sys::stat::{fstatat, FileStat};
use serde::{Deserialize, Serialize};

use roster_core::web::{
    constant_time_eq, format_token, token_hash, Grant, Scope, TOKEN_BYTES, TOKEN_PREFIX,
};
use roster_core::AgentName;

use crate::home::{HomeDir, HomeError};

/// The directory in the home.
pub const DIRECTORY: &str = "web";
/// The token file in [`DIRECTORY`].
pub const FILE: &str = "tokens.json";
/// Tokens kept at most (a mistake in a script should not grow the file
/// without end).
pub const MAX_TOKENS: usize = 1000;
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
const FORMAT: u32 = 1;

/// Why the token store could not be used. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The home or a file in it may not be used.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The request itself is wrong (a bad name or tenant).
    #[error("{0}")]
    Invalid(String),
    /// A token of that name exists.
    #[error(
        "a token named {0} exists already\n  hint: `roster web token rm {0}` first to replace it"
    )]
    Exists(String),
    /// No token of that name.
    #[error("there is no token named {0}\n  hint: `roster web token list` shows them")]
    NotFound(String),
    /// The file is unusable, or the OS gave no random bytes.
    #[error("{0}")]
    Store(String),
}

/// One token, as kept: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Its name (the rules of agent names).
    pub name: AgentName,
    /// What it reaches.
    pub scope: Scope,
    /// It may look, never act.
    pub read_only: bool,
    /// When it was made, in Unix milliseconds.
    pub created_ms: i64,
    /// When it last opened a session or answered a request, in Unix
    /// milliseconds.
    pub last_used_ms: Option<i64>,
    hash: String,
}

impl Token {
    /// What it allows.
    pub fn grant(&self) -> Grant {
        Grant {
            token: self.name.to_string(),
            scope: self.scope.clone(),
            read_only: self.read_only,
        }
    }
}

/// Every token of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// By name.
    pub tokens: Vec<Token>,
}

impl Tokens {
    /// The token whose text is `presented`, compared by hash in constant
    /// time; `None` for anything else (no prefix, wrong length, unknown).
    pub fn find(&self, presented: &str) -> Option<&Token> {
        if !presented.starts_with(TOKEN_PREFIX) || presented.len() > 256 {
            return None;
        }
        let hash = token_hash(presented);
        self.tokens
            .iter()
            .find(|token| constant_time_eq(token.hash.as_bytes(), hash.as_bytes()))
    }

    /// The token named `name`.
    pub fn get(&self, name: &str) -> Option<&Token> {
        self.tokens.iter().find(|token| token.name.as_str() == name)
    }
}

/// What identifies one version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    device: u64,
    inode: u64,
    size: i64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Fingerprint {
    fn of(stat: &FileStat) -> Self {
        Self {
            device: stat.st_dev,
            inode: stat.st_ino,
            size: stat.st_size,
            modified: (stat.st_mtime, stat.st_mtime_nsec),
            changed: (stat.st_ctime, stat.st_ctime_nsec),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredFile {
    format: u32,
    tokens: Vec<StoredToken>,
}

#[derive(Serialize, Deserialize)]
struct StoredToken {
    name: String,
    scope: String,
    read_only: bool,
    created_ms: i64,
    last_used_ms: Option<i64>,
    sha256: String,
}

/// Checks a token's name: the rules of agent names.
pub fn check_name(name: &str) -> Result<AgentName, String> {
    AgentName::new(name).map_err(|problem| format!("bad token name {name:?}: {problem}"))
}

/// The token directory of a home, held open.
#[derive(Debug)]
pub struct TokenStore {
    dir: HomeDir,
}

impl TokenStore {
    /// Opens `<home>/web`, creating it (0700) when missing.
    pub fn create(home: &HomeDir) -> Result<Self, TokenError> {
        Ok(Self {
            dir: home.subdirectory(DIRECTORY, true)?,
        })
    }

    /// Opens `<home>/web`; `None` when it does not exist.
    pub fn open(home: &HomeDir) -> Result<Option<Self>, TokenError> {
        Ok(home
            .open_subdirectory(DIRECTORY, true)?
            .map(|dir| Self { dir }))
    }

    fn path(&self) -> String {
        self.dir.home().root().join(FILE).display().to_string()
    }

    fn lock(&self) -> Result<Flock<OwnedFd>, TokenError> {
        Ok(self.dir.lock_exclusive()?)
    }

    /// The file's fingerprint, `None` when there is none: one `fstatat`,
    /// for the daemon to compare before it reads again.
    pub fn fingerprint(&self) -> Result<Option<Fingerprint>, TokenError> {
        match fstatat(self.dir.as_fd(), FILE, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Fingerprint::of(&stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(TokenError::Store(format!(
                "inspecting {}: {errno}",
                self.path()
            ))),
        }
    }

    /// Every token, with the fingerprint of the file they were read from
    /// (`None`: no file, no token).
    pub fn load(&self) -> Result<(Tokens, Option<Fingerprint>), TokenError> {
        if !self.dir.check_file(FILE)? {
            return Ok((Tokens::default(), None));
        }
        let file = self.dir.open_file(FILE, OFlag::O_RDONLY, 0)?;
        let path = self.path();
        let metadata = file
            .metadata()
            .map_err(|error| TokenError::Store(format!("inspecting {path}: {error}")))?;
        let mode = metadata.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Store(format!(
                "{path} is accessible to group or others (mode {mode:04o}); roster keeps token hashes in a file of mode 0600\n  hint: chmod 0600 {path}"
            )));
        }
        let fingerprint = fstatat(self.dir.as_fd(), FILE, AtFlags::AT_SYMLINK_NOFOLLOW)
            .ok()
            .map(|stat| Fingerprint::of(&stat));
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| TokenError::Store(format!("reading {path}: {error}")))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(TokenError::Store(format!(
                "{path} is larger than {MAX_FILE_BYTES} bytes"
            )));
        }
        Ok((parse(&path, &bytes)?, fingerprint))
    }

    fn save(&self, tokens: &Tokens) -> Result<(), TokenError> {
        // A link planted as the file is refused, not replaced silently.
        self.dir.check_file(FILE)?;
        let text = render(tokens)
            .map_err(|error| TokenError::Store(format!("writing {}: {error}", self.path())))?;
        self.dir.write_atomically_with_mode(FILE, &text, 0o600)?;
        Ok(())
    }

    /// The token file as a backup keeps it (hashes, never a token), read
    /// and checked as the daemon reads it; `None` when there is no token.
    pub fn export(&self) -> Result<Option<(Vec<u8>, usize)>, TokenError> {
        let (tokens, _) = self.load()?;
        if tokens.tokens.is_empty() {
            return Ok(None);
        }
        let text = render(&tokens)
            .map_err(|error| TokenError::Store(format!("reading {}: {error}", self.path())))?;
        Ok(Some((text, tokens.tokens.len())))
    }

    /// Stores the tokens of a backup's token file (checked as a read
    /// checks it) in a home that has none; returns how many.
    pub fn import(&self, bytes: &[u8]) -> Result<usize, TokenError> {
        let tokens = parse("the backup's web/tokens.json", bytes)?;
        let _lock = self.lock()?;
        let (existing, _) = self.load()?;
        if !existing.tokens.is_empty() {
            return Err(TokenError::Store(format!(
                "{} has tokens already; a restore never mixes tokens",
                self.path()
            )));
        }
        self.save(&tokens)?;
        Ok(tokens.tokens.len())
    }

    /// Makes a token named `name` for `scope` at `now_ms`; returns its
    /// text, which is kept nowhere (show it once). A name in use is
    /// refused.
    pub fn add(
        &self,
        name: &str,
        scope: Scope,
        read_only: bool,
        now_ms: i64,
    ) -> Result<String, TokenError> {
        let name = check_name(name).map_err(TokenError::Invalid)?;
        if let Scope::Tenant(tenant) = &scope {
            roster_core::web::check_tenant(tenant).map_err(TokenError::Invalid)?;
        }
        let _lock = self.lock()?;
        let (mut tokens, _) = self.load()?;
        if tokens.get(name.as_str()).is_some() {
            return Err(TokenError::Exists(name.to_string()));
        }
        if tokens.tokens.len() >= MAX_TOKENS {
            return Err(TokenError::Invalid(format!(
                "there are {MAX_TOKENS} tokens already; remove some first"
            )));
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|error| TokenError::Store(format!("the OS gave no random bytes: {error}")))?;
        let text = format_token(&bytes);
        tokens.tokens.push(Token {
            name,
            scope,
            read_only,
            created_ms: now_ms,
            last_used_ms: None,
            hash: token_hash(&text),
        });
        tokens.tokens.sort_by(|a, b| a.name.cmp(&b.name));
        self.save(&tokens)?;
        Ok(text)
    }

    /// Revokes the token named `name`; returns what it was.
    pub fn remove(&self, name: &str) -> Result<Token, TokenError> {
        let _lock = self.lock()?;
        let (mut tokens, _) = self.load()?;
        let Some(index) = tokens.tokens.iter().position(|t| t.name.as_str() == name) else {
            return Err(TokenError::NotFound(name.to_owned()));
        };
        let removed = tokens.tokens.remove(index);
        self.save(&tokens)?;
        Ok(removed)
    }

    /// Records that the token named `name` was used at `now_ms` (the
    /// daemon, at most once a minute per token). A token removed in the
    /// meantime stays removed.
    pub fn touch(&self, name: &str, now_ms: i64) -> Result<(), TokenError> {
        let _lock = self.lock()?;
        let (mut tokens, _) = self.load()?;
        let Some(token) = tokens.tokens.iter_mut().find(|t| t.name.as_str() == name) else {
            return Ok(());
        };
        token.last_used_ms = Some(now_ms);
        self.save(&tokens)
    }
}

/// The token file's text for `tokens`.
fn render(tokens: &Tokens) -> serde_json::Result<Vec<u8>> {
    let stored = StoredFile {
        format: FORMAT,
        tokens: tokens
            .tokens
            .iter()
            .map(|token| StoredToken {
                name: token.name.to_string(),
                scope: token.scope.to_string(),
                read_only: token.read_only,
                created_ms: token.created_ms,
                last_used_ms: token.last_used_ms,
                sha256: token.hash.clone(),
            })
            .collect(),
    };
    let mut text = serde_json::to_vec_pretty(&stored)?;
    text.push(b'\n');
    Ok(text)
}

/// Checks a backup's token file as a read checks it: how many tokens.
pub fn check_backup(bytes: &[u8]) -> Result<usize, TokenError> {
    Ok(parse("the backup's web/tokens.json", bytes)?.tokens.len())
}

fn parse(path: &str, bytes: &[u8]) -> Result<Tokens, TokenError> {
    let bad = |why: String| TokenError::Store(format!("{path}: {why}"));
    let stored: StoredFile =
        serde_json::from_slice(bytes).map_err(|error| bad(format!("not a token file: {error}")))?;
    if stored.format != FORMAT {
        return Err(bad(format!(
            "format {} is not {FORMAT}, the one this roster reads (written by a newer roster?)",
            stored.format
        )));
    }
    let mut tokens = Vec::with_capacity(stored.tokens.len());
    for entry in stored.tokens {
        let name = check_name(&entry.name).map_err(&bad)?;
        let scope =
            Scope::parse(&entry.scope).map_err(|why| bad(format!("token {name}: {why}")))?;
        let hash_ok = entry.sha256.len() == 64
            && entry
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hash_ok {
            return Err(bad(format!("token {name}: `sha256` is not 64 hex digits")));
        }
        tokens.push(Token {
            name,
            scope,
            read_only: entry.read_only,
            created_ms: entry.created_ms,
            last_used_ms: entry.last_used_ms,
            hash: entry.sha256,
        });
    }
    Ok(Tokens { tokens })
}

#[cfg(test)]
mod tests;
