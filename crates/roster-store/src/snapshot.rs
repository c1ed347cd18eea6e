//! A consistent copy of a live journal through SQLite's online backup API:
//! the daemon may write meanwhile; the copy is the database as of one
//! moment (the backup restarts on its own when a write lands mid-copy).

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};

/// Copies the journal at `from` into a new database at `to` (which must
/// not exist), 256 pages at a time.
pub fn copy_journal(from: &Path, to: &Path) -> Result<(), String> {
    let failed = |error: rusqlite::Error| {
        format!(
            "copying the journal {} to {}: {error}",
            from.display(),
            to.display()
        )
    };
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    source
        .busy_timeout(Duration::from_secs(5))
        .map_err(failed)?;
    let mut target = Connection::open(to).map_err(failed)?;
    {
        let backup = Backup::new(&source, &mut target).map_err(failed)?;
        backup
            .run_to_completion(256, Duration::from_millis(5), None)
            .map_err(failed)?;
    }
    // One file, no WAL beside it: the copy travels alone.
    target
        .query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))
        .map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a.db");
        let to = dir.path().join("b.db");
        let connection = Connection::open(&from).unwrap();
        connection
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
            )
            .unwrap();
        copy_journal(&from, &to).unwrap();
        let copy = Connection::open(&to).unwrap();
        let count: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 2);
    }
}
