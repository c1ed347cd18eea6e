//! The daemon's hold on its home: a home deleted or replaced under a running
//! daemon (`rm -rf` by a script that then reused the path) must not leave
//! it running on, unreachable, and must never make it write into the new
//! directory at the same path, which may be another daemon's.
//!
//! Two parts. Everything the daemon writes after start-up goes through the
//! directory it verified and holds open (its descriptor, or the path
//! `/proc/self/fd/N` that names it): in a deleted directory nothing can be
//! created, so a log writer that heals, a rotation or an atomic write fails
//! instead of landing in the new home. And a watch compares, every second,
//! the held directory with what the path names now; when it is gone or
//! another, the loop says so and stops its agents gracefully, then exits.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::stat::{fstat, lstat};

use crate::home::HomeDir;
use crate::inbox::{Inbox, Input};

/// How often the home is looked at.
const EVERY: Duration = Duration::from_secs(1);

/// A directory's identity: (device, inode).
pub type Identity = (u64, u64);

/// What the held directory is and what the path names now, judged: the
/// reason the home is lost, or `None` while it is ours. `held` is the
/// held directory's identity and link count (0 once it was removed).
pub fn verdict(held: (Identity, u64), at_path: Result<Identity, Errno>) -> Option<String> {
    let (identity, links) = held;
    match at_path {
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Some("was deleted".to_owned()),
        // Unreadable for a moment (a permission change): not proof.
        Err(_) if links > 0 => None,
        Err(_) => Some("was deleted".to_owned()),
        Ok(now) if now != identity => Some(if links == 0 {
            "was deleted, and another directory now has its path".to_owned()
        } else {
            "was moved or replaced by another directory".to_owned()
        }),
        Ok(_) if links == 0 => Some("was deleted".to_owned()),
        Ok(_) => None,
    }
}

/// Looks once: why the home is lost, if it is.
pub fn check(home: &HomeDir) -> Option<String> {
    let held = fstat(home.as_fd()).ok()?;
    let at_path = lstat(home.home().root()).map(|stat| (stat.st_dev, stat.st_ino));
    verdict(((held.st_dev, held.st_ino), held.st_nlink), at_path)
}

/// The held home as a path: `/proc/self/fd/N`. Paths under it resolve in
/// the directory the daemon verified, whatever the home's path names now;
/// within the daemon only (another process's fd N is another file).
pub fn anchored(home: &HomeDir) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", home.as_fd().as_raw_fd()))
}

/// Watches the home from the runtime (a `stat` may block on a sick
/// filesystem; the loop must not) and tells the loop once when it is lost.
pub fn spawn(runtime: &tokio::runtime::Handle, home: Arc<HomeDir>, inbox: Inbox) {
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let home = home.clone();
            let Ok(lost) = tokio::task::spawn_blocking(move || check(&home)).await else {
                continue;
            };
            if let Some(reason) = lost {
                inbox.send(Input::HomeLost(reason));
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Identity = (8, 1234);

    #[test]
    fn a_home_that_is_still_ours_is_not_lost() {
        assert_eq!(verdict((HOME, 2), Ok(HOME)), None);
        // A moment without access is not proof of anything.
        assert_eq!(verdict((HOME, 2), Err(Errno::EACCES)), None);
    }

    #[test]
    fn a_deleted_home_is_lost() {
        assert_eq!(
            verdict((HOME, 0), Err(Errno::ENOENT)).as_deref(),
            Some("was deleted")
        );
        assert_eq!(
            verdict((HOME, 2), Err(Errno::ENOENT)).as_deref(),
            Some("was deleted")
        );
        assert_eq!(
            verdict((HOME, 0), Err(Errno::EACCES)).as_deref(),
            Some("was deleted")
        );
    }

    #[test]
    fn a_path_that_names_another_directory_is_lost() {
        assert_eq!(
            verdict((HOME, 0), Ok((8, 99))).as_deref(),
            Some("was deleted, and another directory now has its path")
        );
        assert_eq!(
            verdict((HOME, 2), Ok((8, 99))).as_deref(),
            Some("was moved or replaced by another directory")
        );
        assert!(verdict((HOME, 2), Ok((9, 1234))).is_some());
    }

    #[test]
    fn the_real_check_sees_a_removed_and_recreated_home() {
        let parent = tempfile::tempdir().expect("temp dir");
        let path = parent.path().join("home");
        let home = crate::home::Home::new(path.clone());
        let held = home.create_verified().expect("home");
        assert_eq!(check(&held), None);
        std::fs::remove_dir(&path).expect("remove the home");
        assert_eq!(check(&held).as_deref(), Some("was deleted"));
        std::fs::create_dir(&path).expect("a new home at the path");
        assert_eq!(
            check(&held).as_deref(),
            Some("was deleted, and another directory now has its path")
        );
        // Through the anchored path nothing can be created any more.
        let anchored = anchored(&held).join("logs");
        assert!(std::fs::create_dir(&anchored).is_err());
        assert!(!path.join("logs").exists());
    }
}
