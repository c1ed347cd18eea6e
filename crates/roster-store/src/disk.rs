//! How full a filesystem is, as `df` counts it.

use std::path::Path;

/// Used space of the filesystem holding `path`, in percent, as `df` counts
/// it (blocks reserved for root are not available to others). `None` when
/// the filesystem cannot be asked or has no usable blocks.
pub fn used_percent(path: &Path) -> Option<f64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let total = stat.blocks() as f64;
    let free = stat.blocks_free() as f64;
    let available = stat.blocks_available() as f64;
    let used = total - free;
    let usable = used + available;
    (usable > 0.0).then(|| used / usable * 100.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_root_filesystem_has_a_use() {
        let used = super::used_percent(std::path::Path::new("/")).expect("statvfs /");
        assert!((0.0..=100.0).contains(&used), "{used}");
        assert!(super::used_percent(std::path::Path::new("/no/such/path")).is_none());
    }
}
