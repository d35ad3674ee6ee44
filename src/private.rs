//! Directories and files for the user's eyes only. The state directory holds folder names,
//! message ids and flags, the scratch copies of messages, the Maildir the mail itself: none of
//! it is for other local users, whatever the umask says (the usual 022 lets everyone read).

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories idlewild makes for itself.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files idlewild writes in the state directory.
pub const FILE_MODE: u32 = 0o600;

/// Bits that give the group or others any access.
const OPEN_BITS: u32 = 0o077;

/// Makes `dir` and its missing parents 0700. An existing directory is left as it is: it may
/// be the user's own choice (a Maildir folder shared with a group on purpose).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Makes the state directory 0700 (its missing parents with the usual mode, as other
/// programs' state lives beside it), and takes group and other access away from one that
/// exists already — earlier versions made it 0755. A directory owned by someone else is not
/// changed, but warned about.
pub fn create_state_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten_dir(dir),
        Err(e) => Err(e),
    }
}

fn tighten_dir(dir: &Path) -> io::Result<()> {
    // Follow a symbolic link: a state directory kept elsewhere is still ours to protect.
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    if meta.mode() & OPEN_BITS == 0 {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        tracing::warn!(
            path = %dir.display(),
            mode = format_args!("{:o}", meta.mode() & 0o7777),
            "the state directory belongs to another user and others may read it; idlewild leaves it as it is"
        );
        return Ok(());
    }
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
    tracing::info!(path = %dir.display(), "the state directory was readable by others; it is now 0700");
    Ok(())
}

/// Opens `path` for writing, created 0600 when missing (`truncate` empties an existing one).
/// An existing file is set to 0600 too: earlier versions wrote them 0644.
pub fn open_file(path: &Path, truncate: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(FILE_MODE)
        .open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// Takes group and other access away from an open file.
pub fn restrict(file: &File) -> io::Result<()> {
    let mode = file.metadata()?.mode();
    if mode & OPEN_BITS != 0 {
        file.set_permissions(Permissions::from_mode(mode & 0o7777 & !OPEN_BITS))?;
    }
    Ok(())
}

/// Takes group and other access away from `path` if it exists; a missing file is fine.
pub fn restrict_path(path: &Path) -> io::Result<()> {
    let mode = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => meta.mode(),
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if mode & OPEN_BITS != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode & 0o7777 & !OPEN_BITS))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn an_open_state_directory_is_tightened_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/state");
        create_state_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        std::fs::set_permissions(&state, Permissions::from_mode(0o755)).unwrap();
        create_state_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);

        let file = state.join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        open_file(&file, false).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        restrict_path(&state.join("missing")).unwrap();
    }
}
