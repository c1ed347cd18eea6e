//! Compression of `NAME.log.2` into `NAME.log.2.gz` (with the source's
//! inode in the gzip comment, for followers), and tidying what a crash
//! during a compression left.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::logs::files::{rotated_path, SOURCE_INODE_COMMENT};

/// Compresses `plain` into `plain.gz` via a temp file, then removes `plain`.
/// The gzip header's comment records `plain`'s inode, so a follower that
/// holds `plain` open can tell which `.gz` holds the same bytes.
pub(super) fn compress(plain: &Path) -> io::Result<()> {
    let mut gz_name = plain.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz = PathBuf::from(gz_name);
    let mut tmp_name = gz.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(plain)?;
        let inode = input.metadata()?.ino();
        let output = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut encoder = flate2::GzBuilder::new()
            .comment(format!("{SOURCE_INODE_COMMENT}{inode}"))
            .write(output, flate2::Compression::fast());
        io::copy(&mut input, &mut encoder)?;
        let output = encoder.finish()?;
        output.sync_all()?;
        fs::rename(&tmp, &gz)?;
        fs::remove_file(plain)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The one rotated file ever compressed: `NAME.log.2` (a rotation waits
/// for the last compression before it renames anything).
pub(super) const COMPRESSED: u32 = 2;

/// Removes a half-written `.2.gz.tmp` and the plain twin of a complete
/// `.2.gz`, which a crash during compression can leave. Only `.2` is ever
/// compressed, so only it is looked at: three lookups an agent, not thirty
/// (5,000 agents start in one apply).
pub(super) fn tidy_after_crash(current: &Path) {
    let gz = rotated_path(current, COMPRESSED, true);
    let mut tmp = gz.as_os_str().to_owned();
    tmp.push(".tmp");
    let _ = fs::remove_file(PathBuf::from(tmp));
    if gz.exists() {
        let _ = fs::remove_file(rotated_path(current, COMPRESSED, false));
    }
}
