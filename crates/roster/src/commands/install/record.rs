//! The install record (`/etc/roster/.installed`): what `roster install`
//! made, one entry a line, so that `roster uninstall --purge` removes that
//! and nothing else. Pure: reading and writing the file is the caller's.
//!
//! ```text
//! user agent-runner
//! group agent-runner
//! dir /etc/roster
//! file /etc/roster/roster.toml
//! tree /var/lib/roster
//! ```
//!
//! `dir`: removed when empty; `tree`: roster's state (the home, its logs
//! and secrets), removed with all in it; `file`: removed. Only the paths
//! install can make are accepted, whatever the file says: a record that
//! names anything else is not obeyed.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::paths;

/// One thing install made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    User(String),
    Group(String),
    /// A directory, removed only when empty.
    Dir(PathBuf),
    /// roster's state, removed with all in it.
    Tree(PathBuf),
    File(PathBuf),
}

impl Entry {
    /// The entry for a directory install makes at `path`.
    pub fn directory(path: &Path) -> Self {
        if path.starts_with(paths::STATE_HOME) {
            Entry::Tree(path.to_path_buf())
        } else {
            Entry::Dir(path.to_path_buf())
        }
    }

    /// Whether install may have made this: the only entries obeyed.
    pub fn is_roster_s(&self) -> bool {
        match self {
            Entry::User(name) | Entry::Group(name) => {
                roster_core::hardening::valid_account(name)
                    && name != "root"
                    && !name.bytes().all(|byte| byte.is_ascii_digit())
            }
            Entry::Dir(path) => {
                path == Path::new(paths::CONFIG_DIR) || paths::system_directory(path)
            }
            Entry::Tree(path) => trees().any(|tree| tree == *path),
            Entry::File(path) => {
                path == Path::new(paths::CONFIG_FILE) || path == Path::new(paths::UNIT_FILE)
            }
        }
    }
}

/// The directories of roster's state.
fn trees() -> impl Iterator<Item = PathBuf> {
    let home = Path::new(paths::STATE_HOME);
    [
        home.to_path_buf(),
        home.join("logs"),
        home.join(paths::SECRETS_DIR),
    ]
    .into_iter()
}

/// What install made, as read from the record (or about to be written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub entries: BTreeSet<Entry>,
}

impl Record {
    /// Reads a record; lines that are not entries install makes are
    /// returned as problems (`line N: ...`) and not obeyed.
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut record = Record::default();
        let mut problems = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = line.split_once(' ').and_then(|(kind, value)| {
                let path = || {
                    let path = PathBuf::from(value);
                    path.is_absolute().then_some(path)
                };
                match kind {
                    "user" => Some(Entry::User(value.to_owned())),
                    "group" => Some(Entry::Group(value.to_owned())),
                    "dir" => path().map(Entry::Dir),
                    "tree" => path().map(Entry::Tree),
                    "file" => path().map(Entry::File),
                    _ => None,
                }
            });
            match entry {
                Some(entry) if entry.is_roster_s() => {
                    record.entries.insert(entry);
                }
                _ => problems.push(format!(
                    "line {}: {line:?} is not something roster install makes: not obeyed",
                    index + 1
                )),
            }
        }
        (record, problems)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# What `roster install` made, for `roster uninstall --purge`, which removes\n\
             # these and nothing else (a dir only when empty; a tree with all in it).\n",
        );
        for entry in &self.entries {
            let _ = match entry {
                Entry::User(name) => writeln!(text, "user {name}"),
                Entry::Group(name) => writeln!(text, "group {name}"),
                Entry::Dir(path) => writeln!(text, "dir {}", path.display()),
                Entry::Tree(path) => writeln!(text, "tree {}", path.display()),
                Entry::File(path) => writeln!(text, "file {}", path.display()),
            };
        }
        text
    }

    /// Whether install made `entry`.
    pub fn has(&self, entry: &Entry) -> bool {
        self.entries.contains(entry)
    }

    /// Whether install made the directory at `path` (a dir or a tree).
    pub fn made_directory(&self, path: &Path) -> bool {
        self.has(&Entry::directory(path))
    }

    /// The trees to remove: the outermost ones (a tree inside another goes
    /// with it).
    pub fn outermost_trees(&self) -> Vec<&Path> {
        let trees: Vec<&Path> = self
            .entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Tree(path) => Some(path.as_path()),
                _ => None,
            })
            .collect();
        trees
            .iter()
            .filter(|tree| {
                !trees
                    .iter()
                    .any(|other| other != *tree && tree.starts_with(other))
            })
            .copied()
            .collect()
    }

    /// The directories to remove when empty, deepest first.
    pub fn directories(&self) -> Vec<&Path> {
        let mut directories: Vec<&Path> = self
            .entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Dir(path) => Some(path.as_path()),
                _ => None,
            })
            .collect();
        directories.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
        directories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_what_it_wrote() {
        let mut record = Record::default();
        for entry in [
            Entry::User("agent-runner".into()),
            Entry::Group("agent-runner".into()),
            Entry::directory(Path::new("/etc/roster")),
            Entry::File("/etc/roster/roster.toml".into()),
            Entry::directory(Path::new("/var/lib/roster")),
            Entry::directory(Path::new("/var/lib/roster/logs")),
            Entry::directory(Path::new("/var/lib")),
            Entry::File(paths::UNIT_FILE.into()),
        ] {
            record.entries.insert(entry);
        }
        let text = record.render();
        assert!(text.contains("\ntree /var/lib/roster\n"), "{text}");
        assert!(text.contains("\ndir /var/lib\n"), "{text}");
        assert!(text.contains("\ndir /etc/roster\n"), "{text}");
        let (back, problems) = Record::parse(&text);
        assert_eq!(back, record);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back.outermost_trees(), vec![Path::new("/var/lib/roster")]);
        assert_eq!(
            back.directories(),
            vec![Path::new("/etc/roster"), Path::new("/var/lib")]
        );
    }

    #[test]
    fn a_record_naming_anything_else_is_not_obeyed() {
        let (record, problems) = Record::parse(
            "tree /home\nfile /etc/shadow\ndir /usr\ntree /var/lib/roster/../..\nuser root\nuser 0\nuser bad name\nfile relative\nremove /\ndir /etc/roster\n",
        );
        assert_eq!(
            record.entries.into_iter().collect::<Vec<_>>(),
            vec![Entry::Dir("/etc/roster".into())]
        );
        assert_eq!(problems.len(), 9, "{problems:?}");
        assert!(
            problems[0].starts_with("line 1: \"tree /home\""),
            "{problems:?}"
        );
    }
}
