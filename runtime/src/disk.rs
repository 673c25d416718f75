//! Disk space, for the node's disk-space floor, download checks and the
//! dashboards' disk figures.

use std::path::Path;

/// The size of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes in all.
    pub total: u64,
    /// Bytes available to this (unprivileged) process.
    pub available: u64,
}

/// Bytes available to this (unprivileged) process on the filesystem
/// holding `path`, or `None` where the OS does not say.
pub fn free_bytes(path: &Path) -> Option<u64> {
    space(path).map(|s| s.available)
}

/// The size and free space of the filesystem holding `path`, or `None`
/// where the OS does not say (a missing path among them).
pub fn space(path: &Path) -> Option<Space> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is written by the call
    // before it is read (only when it succeeds).
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    #[allow(clippy::unnecessary_cast)]
    let block = stat.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    Some(Space {
        total: stat.f_blocks as u64 * block,
        available: stat.f_bavail as u64 * block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_free_space_of_an_existing_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
        assert_eq!(free_bytes(&dir.path().join("missing")), None);
        let space = space(dir.path()).unwrap();
        assert!(space.total >= space.available && space.total > 0);
    }
}
