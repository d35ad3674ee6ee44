//! Local disk trouble in words a user can act on: which filesystem is full, and how much room
//! there is now (so the daemon notices freed space by itself).

use std::io;
use std::path::{Path, PathBuf};

/// Whether `e` says the filesystem (or the user's quota on it) has no room left.
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The directory to name for a failed `path`: a file of ours in a Maildir's `tmp/` is gone once
/// the write failed, so the folder it was for is named instead.
pub fn place_of(path: &Path) -> PathBuf {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("tmp" | "new" | "cur") => dir.parent().unwrap_or(dir).to_owned(),
        _ => dir.to_owned(),
    }
}

/// The mount point of the filesystem holding `path` (its nearest existing ancestor).
pub fn mount_point(path: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let Some((mut here, meta)) = path
        .ancestors()
        .find_map(|a| std::fs::metadata(a).ok().map(|m| (a, m)))
    else {
        return PathBuf::from("/");
    };
    let device = meta.dev();
    while let Some(parent) = here.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == device => here = parent,
            _ => break,
        }
    }
    here.to_owned()
}

/// Bytes an unprivileged user may still write on the filesystem of `path`.
pub fn available(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path.ancestors().find(|a| a.exists())?;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` is written by the call
    // before it is read (only when it returns 0).
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Whether `path` is on a local filesystem that stamps files with nanosecond times from the
/// kernel's clock: ext4, XFS, Btrfs, tmpfs, F2FS, ZFS, bcachefs. Network and FUSE filesystems,
/// overlays and anything unknown answer `false`.
pub fn keeps_fine_times(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const FINE: [u32; 7] = [
        0xEF53,      // ext2/3/4 (ext4's 256-byte inodes keep nanoseconds; callers check)
        0x5846_5342, // XFS
        0x9123_683E, // Btrfs
        0x0102_1994, // tmpfs
        0xF2F5_2010, // F2FS
        0x2FC1_2FC1, // ZFS
        0xCA45_1A4E, // bcachefs
    ];
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` is written by the call
    // before it is read (only when it returns 0).
    if unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    // The magic numbers are 32 bits; `f_type`'s width and sign vary by architecture.
    FINE.contains(&(stat.f_type as u32))
}

/// What went wrong with local file `path`, and what to do about a full disk.
pub fn describe(path: &Path, e: &io::Error) -> String {
    if is_full(e) {
        let place = place_of(path);
        format!(
            "no space left on the filesystem of {} (mounted on {}): free space there, then run `idlewild sync` (the daemon retries by itself once there is room); nothing was lost, and what was not copied is copied then",
            place.display(),
            mount_point(&place).display()
        )
    } else {
        format!("{}: {e}", path.display())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fine_times_are_known_only_on_local_filesystems_that_keep_them() {
        // procfs is no place for mail; a path that does not exist tells nothing.
        assert!(!super::keeps_fine_times(std::path::Path::new("/proc")));
        assert!(!super::keeps_fine_times(std::path::Path::new(
            "/nonexistent/idlewild"
        )));
    }

    use super::*;

    #[test]
    fn a_full_disk_names_the_folder_not_the_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("Archive/tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let staged = tmp.join(".idlewild-stage-123");
        let text = describe(&staged, &io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(
            text.starts_with(&format!(
                "no space left on the filesystem of {}",
                dir.path().join("Archive").display()
            )),
            "{text}"
        );
        assert!(text.contains("idlewild sync"), "{text}");
        assert!(!text.contains(".idlewild-stage"), "{text}");
        let other = describe(&staged, &io::Error::from_raw_os_error(libc::EACCES));
        assert!(other.contains(".idlewild-stage-123"), "{other}");
        assert!(available(&staged).is_some());
        assert!(mount_point(&staged).is_dir());
    }
}
