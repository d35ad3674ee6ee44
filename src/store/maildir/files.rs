//! The two per-message file operations of a delivery done with one system call each: a first
//! sync makes tens of thousands of them, and the open/stat/close around std's ways of doing
//! the same made up a third of its system calls.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a file name"))
}

/// Sets the modification time of `path` (by name: no open, no close).
pub fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let c = c_path(path)?;
    let times = [
        // Access time: left as it is.
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: 0,
        },
    ];
    // SAFETY: `c` is a valid NUL-terminated path and `times` two initialised timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Renames `from` to `to` unless `to` exists, atomically where the filesystem can
/// (`RENAME_NOREPLACE`): a message already there is never replaced, and no separate look
/// before the rename is needed. Fails with `AlreadyExists` when `to` is there.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (c_from, c_to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are valid NUL-terminated paths, relative to the working directory only
    // when relative (AT_FDCWD), as std's rename would take them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // A filesystem (or kernel) without the flag: look, then rename. Not atomic, but only
        // another program creating this very unique name in between could be overwritten.
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_rename_never_replaces_a_file_and_moves_one_that_is_not_there() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs::write(&a, "first").unwrap();
        fs::write(&b, "second").unwrap();
        let e = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&b).unwrap(), "second");
        assert_eq!(fs::read_to_string(&a).unwrap(), "first");
        rename_no_replace(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read_to_string(&c).unwrap(), "first");
        let e = rename_no_replace(&a, &dir.path().join("d")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_modification_time_is_set_and_the_access_time_left() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m");
        fs::write(&f, "x").unwrap();
        let atime = fs::metadata(&f).unwrap().atime();
        set_mtime(&f, 1_000_000_000).unwrap();
        let meta = fs::metadata(&f).unwrap();
        assert_eq!(meta.mtime(), 1_000_000_000);
        assert_eq!(meta.atime(), atime);
        let e = set_mtime(&dir.path().join("gone"), 5).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
