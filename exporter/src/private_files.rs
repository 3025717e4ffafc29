//! Files and directories the exporter writes for itself (the remote-write queue, the state file): created
//! private (directories 0700, files 0600 on Unix), never written through a symbolic link, and refused when the
//! directory is someone else's or writable by others (another local user could swap a file in or read the
//! queued metrics that `/metrics` guards with basic auth).
//!
//! Windows: a new file inherits its directory's ACL, which under `%LOCALAPPDATA%` is the user's alone; the
//! checks below are Unix-only and Windows opens files plainly.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Why a directory is not private enough to write into.
fn refused(dir: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("{}: {why}", dir.display()))
}

/// Create `dir` (and its parents) 0700 when missing; then check it: a directory, owned by this user (or, for
/// root, by root), not writable by group or others. `tighten` also takes away group and other access from a
/// directory that is ours (the queue's own directory; never a shared parent such as a home directory).
pub fn ensure_dir(dir: &Path, tighten: bool) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    check_dir(dir, tighten)
}

#[cfg(unix)]
fn check_dir(dir: &Path, tighten: bool) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(refused(dir, "not a directory"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        let owner = probes::ssh_session::describe_uid(meta.uid());
        return Err(refused(dir, &format!("owned by {owner}, not by this user; choose a directory of your own")));
    }
    let mode = meta.mode() & 0o777;
    if tighten && mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        return Ok(());
    }
    if mode & 0o022 != 0 {
        return Err(refused(dir, &format!("writable by others (mode {mode:o}); make it 0700")));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_dir(dir: &Path, _tighten: bool) -> io::Result<()> {
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(refused(dir, "not a directory"));
    }
    Ok(())
}

/// Options that never follow a symbolic link at the last component and create files 0600.
pub fn options() -> OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = OpenOptions::new();
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        options
    }
    #[cfg(not(unix))]
    OpenOptions::new()
}

/// A new file at `path`, written from empty: whatever was there (a stale temporary file, or a symbolic link
/// someone put there) is removed first (the link itself, never its target), then the file is created
/// exclusively, so nothing is ever written through a link.
pub fn create_fresh(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    options().write(true).create_new(true).open(path)
}

/// `path` opened for reading and writing, created when missing, never through a link.
pub fn open_rw(path: &Path) -> io::Result<File> {
    options().read(true).write(true).create(true).truncate(false).open(path)
}

/// `path` opened for writing (it must exist), never through a link.
pub fn open_existing(path: &Path) -> io::Result<File> {
    options().write(true).open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn directories_are_created_private_and_files_0600() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_dir(&dir, true).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let mut file = create_fresh(&dir.join("f")).unwrap();
        file.write_all(b"x").unwrap();
        assert_eq!(std::fs::metadata(dir.join("f")).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_directory_writable_by_others_is_refused_unless_ours_to_tighten() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shared");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_dir(&dir, false).unwrap_err();
        assert!(
            err.to_string().contains(&dir.display().to_string()) && err.to_string().contains("writable by others"),
            "{err}"
        );
        ensure_dir(&dir, true).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn nothing_is_written_through_a_link() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::write(&target, "precious").unwrap();
        let link = root.path().join("acked.tmp");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(open_rw(&link).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        create_fresh(&link).unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }
}
