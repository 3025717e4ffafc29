//! Files and directories the exporter writes for itself (the remote-write queue, the state file): created
//! private (directories 0700, files 0600 on Unix), never written through a symbolic link, and refused when the
//! directory is someone else's or writable by others (another local user could swap a file in or read the
//! queued metrics that `/metrics` guards with basic auth), or when someone else could redirect its path: a
//! symbolic link on the way owned by another user than this one or root, or a directory on the way that
//! others can write without the sticky bit (issue 38: a link of `nobody`'s in /tmp pointing at a directory of
//! the user's was accepted, its target chmodded 0700 and the queue written into it; the link's owner could
//! repoint it at any time). The directory itself is then opened once with `O_DIRECTORY|O_NOFOLLOW`, checked and
//! tightened through that descriptor (`fstat`, `fchmod`: nothing is ever chmodded through a link), and held
//! ([`PrivateDir`]): every file in it is reached relative to the descriptor, by a bare name, with `O_NOFOLLOW`.
//!
//! Windows: a new file inherits its directory's ACL, which under `%LOCALAPPDATA%` is the user's alone; the
//! checks below are Unix-only and Windows opens files plainly.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

mod dir;

pub use dir::PrivateDir;

/// Why a directory is not private enough to write into.
fn refused(dir: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("{}: {why}", dir.display()))
}

/// Create `dir` (and its parents) 0700 when missing; then check it: a directory, owned by this user (or, for
/// root, by root), not writable by group or others. `tighten` also takes away group and other access from a
/// directory that is ours (the queue's own directory; never a shared parent such as a home directory).
#[cfg(any(test, not(unix)))]
pub fn ensure_dir(dir: &Path, tighten: bool) -> io::Result<()> {
    #[cfg(unix)]
    return ensure_dir_opened(dir, tighten).map(drop);
    #[cfg(not(unix))]
    {
        // Windows: the directory inherits its parent's ACL (the user's alone under %LOCALAPPDATA%); nothing to
        // tighten.
        let _ = tighten;
        std::fs::DirBuilder::new().recursive(true).create(dir)?;
        if !std::fs::metadata(dir)?.is_dir() {
            return Err(refused(dir, "not a directory"));
        }
        Ok(())
    }
}

/// [`ensure_dir`], keeping the descriptor the directory was checked through ([`PrivateDir`]).
#[cfg(unix)]
fn ensure_dir_opened(dir: &Path, tighten: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let resolved = check_path(dir)?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&resolved)?;
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&resolved)
        .map_err(|err| refused(dir, &format!("cannot open it as a directory of its own ({err})")))?;
    check_opened(dir, &opened, tighten)?;
    Ok(opened)
}

/// Whether `dir` may be read from as the exporter's own: the path checks of [`ensure_dir`] (no link or
/// directory on the way that another user can change), without creating anything. A file read from a
/// directory someone else controls would be their input, not the exporter's (the state file's buckets).
pub fn check_readable_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    check_path(dir)?;
    let _ = dir;
    Ok(())
}

/// The user's own uid (and root's) may own what a private path goes through.
#[cfg(unix)]
fn trusted(uid: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    uid == unsafe { libc::geteuid() } || uid == 0
}

/// The most symbolic links followed on one path (Linux's own limit).
#[cfg(unix)]
const MAX_LINKS: usize = 40;

/// Walk `dir` component by component as the kernel would, following each symbolic link by hand: refuse (naming
/// the component) a link owned by another user than this one or root, or a directory on the way that is
/// another user's or that others can write without the sticky bit (`probes::ssh_options::safe_config_file`'s
/// rules). Returns the path with every link resolved (its missing tail as given: the exporter creates it).
#[cfg(unix)]
fn check_path(dir: &Path) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;
    let absolute = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir()?.join(dir) };
    let mut pending = parts(&absolute);
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    let mut missing = false;
    while let Some(part) = pending.pop_front() {
        let name = match part {
            Part::Root => {
                resolved = PathBuf::from("/");
                continue;
            }
            Part::Parent => {
                resolved.pop();
                continue;
            }
            Part::Name(name) => name,
        };
        let next = resolved.join(&name);
        if missing {
            resolved = next;
            continue;
        }
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                missing = true;
                resolved = next;
                continue;
            }
            Err(err) => return Err(refused(&next, &err.to_string())),
        };
        if meta.file_type().is_symlink() {
            if !trusted(meta.uid()) {
                let owner = probes::ssh_session::describe_uid(meta.uid());
                let why =
                    format!("a symbolic link owned by {owner}, who can point it elsewhere; use a path of your own");
                return Err(refused(&next, &why));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(refused(dir, "too many symbolic links"));
            }
            let target = std::fs::read_link(&next)?;
            for part in parts(&target).into_iter().rev() {
                pending.push_front(part);
            }
            continue;
        }
        if !pending.is_empty() {
            let mode = meta.mode();
            if !trusted(meta.uid()) {
                let owner = probes::ssh_session::describe_uid(meta.uid());
                return Err(refused(&next, &format!("owned by {owner}, who can replace what is in it")));
            }
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                let why = format!(
                    "writable by others without the sticky bit (mode {:o}): anyone can replace what is in it",
                    mode & 0o7777
                );
                return Err(refused(&next, &why));
            }
        }
        resolved = next;
    }
    Ok(resolved)
}

/// One step of a path, owned (a link's target is queued ahead of what is left).
#[cfg(unix)]
enum Part {
    Root,
    Parent,
    Name(std::ffi::OsString),
}

#[cfg(unix)]
fn parts(path: &Path) -> std::collections::VecDeque<Part> {
    use std::path::Component;
    path.components()
        .filter_map(|component| match component {
            Component::RootDir | Component::Prefix(_) => Some(Part::Root),
            Component::CurDir => None,
            Component::ParentDir => Some(Part::Parent),
            Component::Normal(name) => Some(Part::Name(name.to_owned())),
        })
        .collect()
}

/// Check the directory `opened` (what `dir` names, opened without following a link): a directory, this user's,
/// not writable by others; `tighten` takes group and other access away from it, through the descriptor.
#[cfg(unix)]
fn check_opened(dir: &Path, opened: &File, tighten: bool) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = opened.metadata()?;
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
        // fchmod on the descriptor: the directory just checked, never whatever a path leads to now.
        opened.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        return Ok(());
    }
    if mode & 0o022 != 0 {
        return Err(refused(dir, &format!("writable by others (mode {mode:o}); make it 0700")));
    }
    Ok(())
}

/// Options that never follow a symbolic link at the last component and create files 0600.
#[cfg(any(test, not(unix)))]
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
#[cfg(any(test, not(unix)))]
pub fn create_fresh(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    options().write(true).create_new(true).open(path)
}

/// `path` opened for reading and writing, created when missing, never through a link.
#[cfg(any(test, not(unix)))]
pub fn open_rw(path: &Path) -> io::Result<File> {
    options().read(true).write(true).create(true).truncate(false).open(path)
}

/// `path` opened for writing (it must exist), never through a link.
#[cfg(not(unix))]
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
    fn a_path_through_a_directory_others_can_write_is_refused_unless_sticky() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_dir(&open.join("queue"), true).unwrap_err().to_string();
        assert!(err.contains(&open.display().to_string()) && err.contains("without the sticky bit"), "{err}");
        assert!(!open.join("queue").exists(), "nothing created under it");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ensure_dir(&open.join("queue"), true).unwrap();
    }

    #[test]
    fn a_link_of_this_user_s_is_followed_and_its_target_checked() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o750)).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink("target", &link).unwrap();
        ensure_dir(&link, true).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o700, "tightened: ours");
    }

    /// A link of another user's (root here makes one of nobody's, as `nobody` would in /tmp): refused by name,
    /// and its target untouched.
    #[test]
    fn a_link_of_another_user_s_is_refused_and_its_target_untouched() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: giving a link to another user needs root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = root.path().join("queue");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let err = ensure_dir(&link, true).unwrap_err().to_string();
        assert!(err.contains(&link.display().to_string()) && err.contains("symbolic link owned by"), "{err}");
        let err = ensure_dir(&link.join("deeper"), true).unwrap_err().to_string();
        assert!(err.contains("symbolic link owned by"), "a link anywhere on the way: {err}");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o755, "never chmodded");
        assert!(!target.join("deeper").exists());
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
