//! What the host has left: free disk space and file descriptors, read
//! directly (no subprocess: `/readyz` and `/metrics` are polled often).

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer can still use.
    pub available: u64,
    pub total: u64,
}

/// Free and total space of the file system holding `path`.
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes only into `st`, which it fully initialises on
    // success; `c` is a valid NUL-terminated path.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    let frag = st.f_frsize as u64;
    Ok(DiskSpace {
        available: st.f_bavail as u64 * frag,
        total: st.f_blocks as u64 * frag,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdUsage {
    pub open: u64,
    /// The soft `RLIMIT_NOFILE` (what `serve` raised it to).
    pub limit: u64,
}

/// Descriptors this process holds, against its limit.
pub fn fd_usage() -> std::io::Result<FdUsage> {
    let open = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FdUsage {
        open,
        limit: lim.rlim_cur,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_hosts_disk_and_descriptors() {
        let d = disk_space(Path::new("/")).unwrap();
        assert!(d.total > 0 && d.available <= d.total, "{d:?}");
        assert!(disk_space(Path::new("/no/such/dir")).is_err());
        let _f = std::fs::File::open("/proc/self/status").unwrap();
        let u = fd_usage().unwrap();
        // stdin, stdout, stderr, `_f` and the listing's own handle at least.
        assert!(u.open >= 5 && u.limit >= u.open, "{u:?}");
    }
}
