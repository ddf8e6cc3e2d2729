//! Free-space guard of the embedded store (issue #11 items 2, 3): writes are refused with
//! [`StorageError::Unavailable`] (503 + Retry-After at the edge) while the file system of the
//! data directory has less than a reserve free, so sled never meets a full disk. sled 0.34
//! cannot recover from one in-process: a failed blob or log write leaves a sticky error, and
//! even reads can write (a lookup may split an oversized leaf into a new blob file). With the
//! reserve kept, reads go on working and writes resume by themselves once space returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::StorageError;

/// Free bytes available to this process on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains NUL"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Refuses writes while free space is under the reserve.
#[derive(Debug)]
pub struct SpaceGuard {
    dir: PathBuf,
    reserve: u64,
    /// The last check found too little space (for logs).
    low: AtomicBool,
    /// Size of the largest write refused since the last one let through: readiness asks
    /// whether that write would pass now.
    wanted: AtomicU64,
}

impl SpaceGuard {
    /// `reserve` 0 disables the guard.
    pub fn new(dir: &Path, reserve: u64) -> SpaceGuard {
        SpaceGuard {
            dir: dir.to_path_buf(),
            reserve,
            low: AtomicBool::new(false),
            wanted: AtomicU64::new(0),
        }
    }

    /// Whether a write of about `bytes` may go ahead. The write costs more than its size on
    /// disk (journal record, sled log, later sled pages), hence the factor.
    pub fn check(&self, bytes: u64) -> Result<(), StorageError> {
        if self.reserve == 0 {
            return Ok(());
        }
        let free = free_bytes(&self.dir).map_err(|e| {
            StorageError::Backend(format!(
                "cannot read free space of {}: {e}",
                self.dir.display()
            ))
        })?;
        // Once under the reserve, writes resume only with a quarter of it to spare again, so
        // sled's own background writes and frees do not make the server flap.
        let hysteresis = if self.low.load(Ordering::Acquire) {
            self.reserve / 4
        } else {
            0
        };
        let needed = self
            .reserve
            .saturating_add(hysteresis)
            .saturating_add(bytes.saturating_mul(4));
        let low = free < needed;
        let was_low = self.low.swap(low, Ordering::AcqRel);
        if low && !was_low {
            tracing::error!(target: "xcapd::storage", free, reserve = self.reserve, dir = %self.dir.display(),
                "free disk space is below the reserve: writes are refused (503) until space is freed");
        } else if !low && was_low {
            tracing::warn!(target: "xcapd::storage", free, "free disk space is back above the reserve: writes resume");
        }
        if low {
            self.wanted.fetch_max(bytes, Ordering::AcqRel);
            Err(StorageError::Unavailable(
                "free disk space is below the reserve".into(),
            ))
        } else {
            if bytes >= self.wanted.load(Ordering::Acquire) {
                self.wanted.store(0, Ordering::Release);
            }
            Ok(())
        }
    }

    /// For readiness: would the write refused last pass now?
    pub fn ready(&self) -> Result<(), StorageError> {
        self.check(self.wanted.load(Ordering::Acquire))
    }

    /// The reserve in bytes (0: no guard).
    pub fn reserve(&self) -> u64 {
        self.reserve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_of_a_real_directory() {
        let free = free_bytes(&std::env::temp_dir()).unwrap();
        assert!(free > 0);
        assert!(free_bytes(Path::new("/nonexistent/xcapd")).is_err());
    }

    #[test]
    fn guard_refuses_under_the_reserve_and_resumes() {
        let dir = std::env::temp_dir();
        let free = free_bytes(&dir).unwrap();
        assert_eq!(
            SpaceGuard::new(&dir, 0).check(u64::MAX / 8),
            Ok(()),
            "disabled"
        );
        let g = SpaceGuard::new(&dir, 1);
        assert_eq!(g.check(0), Ok(()));
        assert!(
            matches!(g.check(free), Err(StorageError::Unavailable(_))),
            "4 x free needed"
        );
        assert!(g.low.load(Ordering::Acquire));
        assert!(
            g.ready().is_err(),
            "not ready while the refused write would fail"
        );
        assert_eq!(g.check(0), Ok(()), "small writes pass");
        assert!(g.ready().is_err());
        let g = SpaceGuard::new(&dir, 1);
        assert_eq!(g.ready(), Ok(()), "resumes by itself");
        let huge = SpaceGuard::new(&dir, free.saturating_mul(2));
        assert!(matches!(huge.check(0), Err(StorageError::Unavailable(_))));
    }
}
