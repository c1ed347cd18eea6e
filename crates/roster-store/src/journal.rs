//! The journal: every event of every agent and of the daemon, in a SQLite
//! file in the home. One thread owns the write connection and batches rows
//! into transactions; readers (`roster events`) open their own read-only
//! connection, which WAL mode lets run beside the writer.
//!
//! A journal that SQLite finds corrupt is moved aside (kept for forensics)
//! and a fresh one is started: losing history must not stop the agents.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use roster_core::api::{EventKind, EventRecord};

use crate::clock::{rfc3339_millis, unix_millis};
use crate::home::{HomeDir, HomeError};

/// A journal problem.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite refused.
    #[error("journal {path}: {source}")]
    Sqlite {
        /// The journal file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// A journal file is a link, not ours, or not a regular file.
    #[error("journal: {0}")]
    Unsafe(#[from] HomeError),
    /// The journal is damaged (a fresh one at the same place was too).
    #[error("journal {path} is corrupt: {reason}\n  hint: move it aside; roster starts a new one")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// SQLite's verdict.
        reason: String,
    },
    /// A file that is no journal cannot be read as one.
    #[error("journal {path} is not a regular file (a link?); roster does not follow links in a home\n  hint: remove it")]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
}

/// One event to record. Rows are written only: what is read back is an
/// [`EventRecord`], whose kind stays a string so that rows written by
/// another build (a kind this one does not know) still read.
#[derive(Clone, Debug)]
pub struct Row {
    /// Milliseconds since the epoch.
    pub unix_ms: i64,
    /// The agent, or `None` for the daemon.
    pub agent: Option<String>,
    /// The kind, stored as its wire name (`started`, `config_applied`, ...).
    pub kind: EventKind,
    /// The pid concerned.
    pub pid: Option<u32>,
    /// A description for people. Never a secret.
    pub detail: String,
}

impl Row {
    /// A row stamped now.
    pub fn now(
        agent: Option<&str>,
        kind: EventKind,
        pid: Option<u32>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            unix_ms: unix_millis(),
            agent: agent.map(str::to_owned),
            kind,
            pid,
            detail: detail.into(),
        }
    }
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms  INTEGER NOT NULL,
    agent  TEXT,
    kind   TEXT NOT NULL,
    pid    INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts_ms);
CREATE INDEX IF NOT EXISTS events_by_agent ON events (agent, ts_ms);
";

/// The write side of the journal.
pub struct Journal {
    sender: Option<mpsc::Sender<Row>>,
    writer: Option<JoinHandle<()>>,
}

/// The journal's file name in a home; SQLite adds `-wal` and `-shm` beside it.
pub const JOURNAL_FILE: &str = "journal.db";
const SIDE_FILES: [&str; 2] = ["-wal", "-shm"];

/// Why opening a journal failed.
enum OpenFailure {
    /// The file is damaged: moving it aside and starting afresh helps.
    Corrupt(String),
    /// Anything else (permissions, a full disk, a lock): it would fail again.
    Other(rusqlite::Error),
}

impl From<rusqlite::Error> for OpenFailure {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match error.sqlite_error_code() {
            Some(DatabaseCorrupt | NotADatabase) => OpenFailure::Corrupt(error.to_string()),
            _ => OpenFailure::Other(error),
        }
    }
}

/// Opens a journal, checks its integrity (`PRAGMA quick_check`: one pass
/// over the file, cheap at the journal's bounded size) and sets it up.
fn open_connection(path: &Path) -> Result<Connection, OpenFailure> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    let verdict: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(OpenFailure::Corrupt(format!("integrity check: {verdict}")));
    }
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

impl Journal {
    /// Opens (creating if needed) the journal and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        match open_connection(path) {
            Ok(connection) => Self::start(connection, path),
            Err(OpenFailure::Other(source)) => Err(JournalError::Sqlite {
                path: path.to_path_buf(),
                source,
            }),
            Err(OpenFailure::Corrupt(reason)) => Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                reason,
            }),
        }
    }

    /// Opens the journal of a verified home. Its files must be regular files
    /// owned by us, not links (SQLite would follow a link to `journal.db`).
    /// A corrupt journal is moved aside to `journal.db.corrupt-<UTC time>`
    /// (with its `-wal` and `-shm`), a fresh one is started and
    /// `journal_reset` recorded; the returned warnings say so, for `status`.
    pub fn open_in_home(home_dir: &HomeDir) -> Result<(Self, Vec<String>), JournalError> {
        let path = home_dir.home().journal();
        let check_files = || -> Result<(), HomeError> {
            home_dir.check_file(JOURNAL_FILE)?;
            for suffix in SIDE_FILES {
                home_dir.check_file(&format!("{JOURNAL_FILE}{suffix}"))?;
            }
            Ok(())
        };
        check_files()?;
        // SQLite creates a database 0644, and its -wal and -shm files with
        // the database's mode: create it 0600 first, so the journal is the
        // daemon's alone even in a home others may traverse.
        let create = || -> Result<(), HomeError> {
            home_dir.open_file(
                JOURNAL_FILE,
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT,
                0o600,
            )?;
            Ok(())
        };
        create()?;
        let reason = match open_connection(&path) {
            Ok(connection) => return Ok((Self::start(connection, &path)?, Vec::new())),
            Err(OpenFailure::Other(source)) => return Err(JournalError::Sqlite { path, source }),
            Err(OpenFailure::Corrupt(reason)) => reason,
        };
        // The failed connection is closed by now: move the files aside.
        let stamp = rfc3339_millis(unix_millis()).replace(['-', ':'], "");
        let aside = format!("{JOURNAL_FILE}.corrupt-{stamp}");
        home_dir.rename(JOURNAL_FILE, &aside)?;
        for suffix in SIDE_FILES {
            if home_dir.check_file(&format!("{JOURNAL_FILE}{suffix}"))? {
                home_dir.rename(
                    &format!("{JOURNAL_FILE}{suffix}"),
                    &format!("{aside}{suffix}"),
                )?;
            }
        }
        let aside_path = home_dir.home().root().join(&aside);
        tracing::error!(
            "journal {} is corrupt ({reason}); moved aside to {}, starting a new one",
            path.display(),
            aside_path.display()
        );
        check_files()?;
        create()?;
        let connection = match open_connection(&path) {
            Ok(connection) => connection,
            Err(OpenFailure::Other(source)) => return Err(JournalError::Sqlite { path, source }),
            Err(OpenFailure::Corrupt(reason)) => {
                return Err(JournalError::Corrupt { path, reason })
            }
        };
        let journal = Self::start(connection, &path)?;
        journal.record(Row::now(
            None,
            EventKind::JournalReset,
            None,
            format!(
                "the journal was corrupt ({reason}): moved aside to {}, new journal started",
                aside_path.display()
            ),
        ));
        let warning = format!(
            "the journal was corrupt ({reason}) and was moved aside to {}; earlier events are there",
            aside_path.display()
        );
        Ok((journal, vec![warning]))
    }

    fn start(mut connection: Connection, path: &Path) -> Result<Self, JournalError> {
        let (sender, receiver) = mpsc::channel::<Row>();
        let writer = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let mut written_since_prune = 0usize;
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 4096 {
                        match receiver.try_recv() {
                            Ok(row) => batch.push(row),
                            Err(_) => break,
                        }
                    }
                    if let Err(error) = write_batch(&mut connection, &batch) {
                        tracing::error!(
                            "journal: could not record {} events: {error}",
                            batch.len()
                        );
                    }
                    written_since_prune += batch.len();
                    if written_since_prune >= PRUNE_EVERY {
                        written_since_prune = 0;
                        if let Err(error) = prune(&connection, KEEP_EVENTS) {
                            tracing::error!("journal: could not prune old events: {error}");
                        }
                    }
                }
            })
            .map_err(|source| JournalError::Sqlite {
                path: path.to_path_buf(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(source)),
            })?;
        Ok(Self {
            sender: Some(sender),
            writer: Some(writer),
        })
    }

    /// Records an event (asynchronously; [`Journal::close`] waits for it).
    pub fn record(&self, row: Row) {
        if let Some(sender) = &self.sender {
            if sender.send(row).is_err() {
                tracing::error!("journal writer is gone; an event was not recorded");
            }
        }
    }

    /// Writes everything recorded so far and stops the writer.
    pub fn close(&mut self) {
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// The journal keeps this many newest events; older ones are deleted, so a
/// restart storm cannot fill the disk (about 150 bytes an event).
pub const KEEP_EVENTS: i64 = 1_000_000;
const PRUNE_EVERY: usize = 10_000;

/// Deletes all but the newest `keep` events.
pub fn prune(connection: &Connection, keep: i64) -> rusqlite::Result<usize> {
    connection.execute(
        "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
        params![keep],
    )
}

fn write_batch(connection: &mut Connection, batch: &[Row]) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO events (ts_ms, agent, kind, pid, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for row in batch {
            insert.execute(params![
                row.unix_ms,
                row.agent,
                row.kind.as_str(),
                row.pid,
                row.detail
            ])?;
        }
    }
    transaction.commit()
}

/// Which events to read.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only these agents (and never daemon events) when not empty.
    pub agents: Vec<String>,
    /// Only events at or after this time.
    pub since_ms: Option<i64>,
    /// Only events with an id above this (for following).
    pub after_id: Option<i64>,
    /// At most this many, the newest.
    pub limit: Option<u32>,
}

/// Writes `rows` into an existing journal as a second writer beside the
/// daemon's (SQLite in WAL mode, waiting up to 5 s for its lock): for a
/// CLI whose daemon does not answer. Synchronous: when it returns `Ok`,
/// the rows are in. `Ok(false)` when there is no journal (none is
/// created: the daemon creates its own, with its own owner and mode).
pub fn append_rows(path: &Path, rows: &[Row]) -> Result<bool, JournalError> {
    if !is_journal_file(path)? {
        return Ok(false);
    }
    let error = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(error)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(error)?;
    write_batch(&mut connection, rows).map_err(error)?;
    Ok(true)
}

/// Whether a journal exists at `path`: `false` when there is none, an
/// error when something else than a regular file stands there (SQLite
/// would follow a link; a journal is never one).
fn is_journal_file(path: &Path) -> Result<bool, JournalError> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Ok(metadata) if !metadata.is_file() => Err(JournalError::NotRegular {
            path: path.to_path_buf(),
        }),
        _ => Ok(true),
    }
}

/// A read-only connection for readers; `None` when there is no journal.
fn open_for_reading(path: &Path) -> Result<Option<Connection>, JournalError> {
    if !is_journal_file(path)? {
        return Ok(None);
    }
    let error = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(error)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(error)?;
    Ok(Some(connection))
}

/// The detail of the newest `config_applied` event (`PATH: N added, …`),
/// for a daemon that is down; `None` without a journal or such an event.
pub fn last_config_applied(path: &Path) -> Result<Option<String>, JournalError> {
    let Some(connection) = open_for_reading(path)? else {
        return Ok(None);
    };
    connection
        .query_row(
            "SELECT detail FROM events WHERE kind = 'config_applied' ORDER BY id DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(|source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
}

/// Every agent name the journal mentions, sorted. A missing journal
/// mentions none.
pub fn agent_names(path: &Path) -> Result<Vec<String>, JournalError> {
    let Some(connection) = open_for_reading(path)? else {
        return Ok(Vec::new());
    };
    let error = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut statement = connection
        .prepare("SELECT DISTINCT agent FROM events WHERE agent IS NOT NULL ORDER BY agent")
        .map_err(error)?;
    let names = statement
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    Ok(names)
}

/// The id of the newest event, if any (a follower starts after it).
pub fn newest_id(path: &Path) -> Result<Option<i64>, JournalError> {
    let Some(connection) = open_for_reading(path)? else {
        return Ok(None);
    };
    connection
        .query_row("SELECT MAX(id) FROM events", [], |row| row.get(0))
        .map_err(|source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads events, oldest first. A missing journal is an empty one.
pub fn read_events(path: &Path, filter: &EventFilter) -> Result<Vec<EventRecord>, JournalError> {
    let Some(connection) = open_for_reading(path)? else {
        return Ok(Vec::new());
    };
    let error = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut sql = String::from("SELECT id, ts_ms, agent, kind, pid, detail FROM events WHERE 1=1");
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if !filter.agents.is_empty() {
        let marks = vec!["?"; filter.agents.len()].join(",");
        sql.push_str(&format!(" AND agent IN ({marks})"));
        values.extend(filter.agents.iter().map(|agent| agent.clone().into()));
    }
    if let Some(since) = filter.since_ms {
        sql.push_str(" AND ts_ms >= ?");
        values.push(since.into());
    }
    if let Some(after) = filter.after_id {
        sql.push_str(" AND id > ?");
        values.push(after.into());
    }
    sql.push_str(" ORDER BY id DESC");
    if let Some(limit) = filter.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let mut statement = connection.prepare(&sql).map_err(error)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), |row| {
            let unix_ms: i64 = row.get(1)?;
            Ok(EventRecord {
                id: row.get(0)?,
                time: rfc3339_millis(unix_ms),
                agent: row.get(2)?,
                kind: row.get(3)?,
                pid: row.get(4)?,
                detail: row.get(5)?,
            })
        })
        .map_err(error)?;
    let mut events = rows.collect::<Result<Vec<_>, _>>().map_err(error)?;
    events.reverse();
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.db");
        let mut journal = Journal::open(&path).expect("open");
        for index in 0..50 {
            journal.record(Row::now(
                None,
                EventKind::Started,
                Some(index),
                format!("#{index}"),
            ));
        }
        journal.close();
        let connection = Connection::open(&path).expect("open");
        assert_eq!(prune(&connection, 10).expect("prune"), 40);
        let left = read_events(&path, &EventFilter::default()).expect("read");
        assert_eq!(left.len(), 10);
        assert_eq!(left[0].detail, "#40");
    }

    #[test]
    fn a_corrupt_journal_is_moved_aside_and_a_new_one_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = crate::home::Home::new(dir.path().join("home"));
        let home_dir = home.create_verified().expect("home");
        let mut journal = Journal::open(&home.journal()).expect("open");
        journal.record(Row::now(None, EventKind::DaemonStarted, None, "old"));
        journal.close();
        drop(journal);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(home.journal())
            .expect("open file");
        file.set_len(100).expect("truncate");

        let (mut journal, warnings) = Journal::open_in_home(&home_dir).expect("reset");
        journal.close();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let aside: Vec<String> = std::fs::read_dir(home.root())
            .expect("list")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("journal.db.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert!(warnings[0].contains(&aside[0]), "{}", warnings[0]);
        let events = read_events(&home.journal(), &EventFilter::default()).expect("read");
        let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(kinds, ["journal_reset"]);
    }

    #[test]
    fn records_and_reads_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.db");
        let mut journal = Journal::open(&path).expect("open");
        for index in 0..100 {
            journal.record(Row::now(
                Some(if index % 2 == 0 { "a" } else { "b" }),
                EventKind::Started,
                Some(index),
                format!("#{index}"),
            ));
        }
        journal.record(Row::now(None, EventKind::DaemonStarted, None, "hello"));
        journal.close();
        let all = read_events(&path, &EventFilter::default()).expect("read");
        assert_eq!(all.len(), 101);
        assert_eq!(all[0].detail, "#0");
        let only_a = read_events(
            &path,
            &EventFilter {
                agents: vec!["a".into()],
                limit: Some(3),
                ..Default::default()
            },
        )
        .expect("read");
        let details: Vec<&str> = only_a.iter().map(|event| event.detail.as_str()).collect();
        assert_eq!(details, ["#94", "#96", "#98"]);
        assert_eq!(all[0].kind, "started");
        assert_eq!(all[100].kind, "daemon_started");
        assert_eq!(agent_names(&path).expect("names"), ["a", "b"]);
        assert_eq!(newest_id(&path).expect("newest"), Some(all[100].id));
        let missing = dir.path().join("none.db");
        assert_eq!(newest_id(&missing).expect("newest"), None);
        assert!(agent_names(&missing).expect("names").is_empty());
    }

    #[test]
    fn a_second_writer_appends_beside_an_open_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.db");
        let missing = dir.path().join("none.db");
        assert!(!append_rows(&missing, &[]).expect("no journal"));
        assert!(!missing.exists(), "no journal is created");
        let mut journal = Journal::open(&path).expect("open");
        journal.record(Row::now(None, EventKind::DaemonStarted, None, "first"));
        let rows = [
            Row::now(Some("a"), EventKind::Recovery, None, "done: step"),
            Row::now(None, EventKind::Recovery, None, "summary"),
        ];
        assert!(append_rows(&path, &rows).expect("append"));
        journal.record(Row::now(None, EventKind::DaemonStopped, None, "last"));
        journal.close();
        let kinds: Vec<String> = read_events(&path, &EventFilter::default())
            .expect("read")
            .into_iter()
            .map(|event| event.kind)
            .collect();
        assert_eq!(kinds.iter().filter(|kind| *kind == "recovery").count(), 2);
        assert_eq!(kinds.len(), 4);
    }

    #[test]
    fn a_kind_this_build_does_not_know_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.db");
        let mut journal = Journal::open(&path).expect("open");
        journal.record(Row::now(None, EventKind::DaemonStarted, None, "hello"));
        journal.close();
        let connection = Connection::open(&path).expect("open");
        connection
            .execute(
                "INSERT INTO events (ts_ms, agent, kind, pid, detail) VALUES (1, 'a', 'from_a_newer_build', NULL, 'x')",
                [],
            )
            .expect("insert");
        drop(connection);
        let all = read_events(&path, &EventFilter::default()).expect("read");
        let kinds: Vec<&str> = all.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(kinds, ["daemon_started", "from_a_newer_build"]);
    }
}
