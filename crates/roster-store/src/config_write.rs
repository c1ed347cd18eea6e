//! Writing a config file back (`roster add`, `roster remove`): the new text
//! replaces the old in one rename, so a reader (the daemon's SIGHUP, an
//! editor, a crash) sees the old file or the new one, never a half.
//!
//! The file keeps its mode and owner, and a symbolic link stays a link:
//! the file it points to is the one replaced. Nothing here validates: the
//! caller checks the new text whole before it asks for the write.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a config file was not replaced; in every case it is as it was.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Someone else changed (or created) the file since it was read.
    #[error("{} changed while roster was editing it; nothing was written\n  hint: run the command again", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// A step of the write failed.
    #[error("cannot {operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// On which file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io {
        operation,
        path,
        source,
    }
}

/// The file a config path names: the target of a symbolic link (so the
/// link survives the rename), else the path itself.
pub fn resolve_link(path: &Path) -> Result<PathBuf, WriteError> {
    match std::fs::canonicalize(path) {
        Ok(target) => Ok(target),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(source) => Err(io("resolve", path)(source)),
    }
}

/// Replaces the config at `path` with `text`, if it still holds `expected`
/// (`None`: if there is no file yet, which is then created with the
/// default mode). A temporary file beside it gets the text, the old file's
/// mode and owner, an fsync, and is renamed over it; then the directory is
/// synced. On any failure the temporary file is removed.
pub fn replace_config_file(
    path: &Path,
    expected: Option<&str>,
    text: &str,
) -> Result<(), WriteError> {
    let path = resolve_link(path)?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = directory.join(format!(".{name}.roster-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let written = stage(&path, &temporary, expected, text).and_then(|()| {
        // The last look: an edit made meanwhile is not overwritten.
        still_holds(&path, expected)?;
        std::fs::rename(&temporary, &path).map_err(io("rename a temporary file over", &path))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    // The rename is durable once the directory is.
    if let Ok(directory) = File::open(&directory) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// Writes the temporary file: the text, the old file's mode and owner.
fn stage(
    path: &Path,
    temporary: &Path,
    expected: Option<&str>,
    text: &str,
) -> Result<(), WriteError> {
    let old = match expected {
        Some(_) => Some(std::fs::metadata(path).map_err(io("read", path))?),
        None => None,
    };
    let mut options = OpenOptions::new();
    // A new file gets the usual mode (umask applied); an existing one's
    // mode is set below, after its owner.
    options
        .write(true)
        .create_new(true)
        .mode(if old.is_some() { 0o600 } else { 0o666 });
    let mut file = options.open(temporary).map_err(io("create", temporary))?;
    file.write_all(text.as_bytes())
        .map_err(io("write", temporary))?;
    if let Some(old) = old {
        keep_owner_and_mode(&file, temporary, &old)?;
    }
    file.sync_all().map_err(io("sync", temporary))
}

fn keep_owner_and_mode(
    file: &File,
    temporary: &Path,
    old: &std::fs::Metadata,
) -> Result<(), WriteError> {
    let new = file.metadata().map_err(io("read", temporary))?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).map_err(|source| {
            WriteError::Io {
                operation: "give the file's owner (run as that user, or root) to",
                path: temporary.to_path_buf(),
                source,
            }
        })?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))
        .map_err(io("set the mode of", temporary))
}

/// Fails unless `path` holds `expected` (`None`: does not exist).
fn still_holds(path: &Path, expected: Option<&str>) -> Result<(), WriteError> {
    let changed = || WriteError::Changed {
        path: path.to_path_buf(),
    };
    match (expected, std::fs::symlink_metadata(path)) {
        (None, Err(error)) if error.kind() == ErrorKind::NotFound => Ok(()),
        (None, Ok(_)) => Err(changed()),
        (None, Err(source)) => Err(io("read", path)(source)),
        (Some(expected), _) => match crate::config_file::read_config_file(path) {
            Ok(now) if now == expected => Ok(()),
            Ok(_) => Err(changed()),
            Err(error) if error.kind() == ErrorKind::NotFound => Err(changed()),
            Err(source) => Err(io("read", path)(source)),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::{replace_config_file, WriteError};

    #[test]
    fn the_text_is_replaced_with_the_mode_kept_and_links_followed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "old\n").expect("write");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let link = dir.path().join("roster.toml");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        replace_config_file(&link, Some("old\n"), "new\n").expect("replaced");
        assert_eq!(std::fs::read_to_string(&real).expect("read"), "new\n");
        assert!(link
            .symlink_metadata()
            .expect("link")
            .file_type()
            .is_symlink());
        let mode = std::fs::metadata(&real).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "a temporary file was left: {names:?}");
    }

    #[test]
    fn a_file_changed_meanwhile_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("roster.toml");
        std::fs::write(&path, "theirs\n").expect("write");
        let refused = replace_config_file(&path, Some("mine\n"), "new\n");
        assert!(
            matches!(refused, Err(WriteError::Changed { .. })),
            "{refused:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "theirs\n");
        let refused = replace_config_file(&path, None, "new\n");
        assert!(
            matches!(refused, Err(WriteError::Changed { .. })),
            "{refused:?}"
        );
        let created = dir.path().join("new.toml");
        replace_config_file(&created, None, "made\n").expect("created");
        assert_eq!(std::fs::read_to_string(&created).expect("read"), "made\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 2);
    }
}
