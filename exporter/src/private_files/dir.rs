//! A private directory held open: [`PrivateDir`]. Checked once by path ([`super::ensure_dir`]'s rules), then
//! opened with `O_DIRECTORY|O_NOFOLLOW`, and every file in it reached relative to that descriptor (`openat`,
//! `renameat`, `unlinkat`, `fstatat`), each by a bare name and never through a link: whatever happens to the
//! path afterwards, the exporter keeps writing into the directory it checked. Windows has no such calls in
//! std and its files inherit the directory's ACL: there the names are joined to the path.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A directory of the exporter's own, opened once; see the module documentation.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
}

#[cfg(unix)]
use rustix::fs::{AtFlags, Mode, OFlags};

#[cfg(unix)]
fn flags(extra: OFlags) -> OFlags {
    extra | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl PrivateDir {
    /// Check `path` ([`super::ensure_dir`]: created 0700 when missing, refused when another user could change
    /// or redirect it; `tighten` takes group and other access away), then hold it open.
    pub fn open(path: &Path, tighten: bool) -> io::Result<PrivateDir> {
        #[cfg(unix)]
        {
            let opened = super::ensure_dir_opened(path, tighten)?;
            Ok(PrivateDir { path: path.to_owned(), fd: opened.into() })
        }
        #[cfg(not(unix))]
        {
            super::ensure_dir(path, tighten)?;
            Ok(PrivateDir { path: path.to_owned() })
        }
    }

    /// The directory's path, for messages (and Windows' joins).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name`'s path in it, for messages.
    pub fn display(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The subdirectory `name`, created 0700 when missing, checked as its parent was, held open.
    pub fn subdir(&self, name: &str, tighten: bool) -> io::Result<PrivateDir> {
        #[cfg(unix)]
        {
            match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(err) => return Err(err.into()),
            }
            let fd = rustix::fs::openat(&self.fd, name, flags(OFlags::RDONLY | OFlags::DIRECTORY), Mode::empty())?;
            let opened = File::from(fd);
            let path = self.path.join(name);
            super::check_opened(&path, &opened, tighten)?;
            Ok(PrivateDir { path, fd: opened.into() })
        }
        #[cfg(not(unix))]
        PrivateDir::open(&self.path.join(name), tighten)
    }

    #[cfg(unix)]
    fn open_at(&self, name: &str, extra: OFlags) -> io::Result<File> {
        let fd = rustix::fs::openat(&self.fd, name, flags(extra), Mode::from_raw_mode(0o600))?;
        Ok(File::from(fd))
    }

    /// A new file `name`, written from empty: whatever was there (a stale temporary file, or a link someone put
    /// there) removed first (the link itself, never its target), then created exclusively, 0600.
    pub fn create_fresh(&self, name: &str) -> io::Result<File> {
        match self.remove(name) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        #[cfg(unix)]
        return self.open_at(name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL);
        #[cfg(not(unix))]
        super::create_fresh(&self.path.join(name))
    }

    /// `name` opened for reading and writing, created (0600) when missing.
    pub fn open_rw(&self, name: &str) -> io::Result<File> {
        #[cfg(unix)]
        return self.open_at(name, OFlags::RDWR | OFlags::CREATE);
        #[cfg(not(unix))]
        super::open_rw(&self.path.join(name))
    }

    /// `name` opened for writing (it must exist).
    pub fn open_existing(&self, name: &str) -> io::Result<File> {
        #[cfg(unix)]
        return self.open_at(name, OFlags::WRONLY);
        #[cfg(not(unix))]
        super::open_existing(&self.path.join(name))
    }

    /// `name` opened for reading.
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        #[cfg(unix)]
        return self.open_at(name, OFlags::RDONLY);
        #[cfg(not(unix))]
        File::open(self.path.join(name))
    }

    /// `name`'s bytes.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_read(name)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Remove `name` (a link itself, never its target).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        #[cfg(unix)]
        return Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?);
        #[cfg(not(unix))]
        std::fs::remove_file(self.path.join(name))
    }

    /// Rename `from` to `to` within the directory.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.rename_into(from, self, to)
    }

    /// Move `from` to `to` in `other`.
    pub fn rename_into(&self, from: &str, other: &PrivateDir, to: &str) -> io::Result<()> {
        #[cfg(unix)]
        return Ok(rustix::fs::renameat(&self.fd, from, &other.fd, to)?);
        #[cfg(not(unix))]
        std::fs::rename(self.path.join(from), other.path.join(to))
    }

    /// The names in the directory (those that are UTF-8; the exporter writes no others).
    pub fn names(&self) -> io::Result<Vec<String>> {
        #[cfg(unix)]
        {
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&self.fd)? {
                let entry = entry?;
                if let Ok(name) = entry.file_name().to_str() {
                    if name != "." && name != ".." {
                        names.push(name.to_owned());
                    }
                }
            }
            Ok(names)
        }
        #[cfg(not(unix))]
        std::fs::read_dir(&self.path)?.map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned())).collect()
    }

    /// When `name` was last modified (a link's own time, never its target's).
    pub fn modified(&self, name: &str) -> io::Result<SystemTime> {
        #[cfg(unix)]
        {
            let stat = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
            let seconds = u64::try_from(stat.st_mtime).unwrap_or(0);
            Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
        }
        #[cfg(not(unix))]
        std::fs::symlink_metadata(self.path.join(name))?.modified()
    }

    /// Whether `name` is a symbolic link.
    pub fn is_symlink(&self, name: &str) -> bool {
        #[cfg(unix)]
        return rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_symlink());
        #[cfg(not(unix))]
        std::fs::symlink_metadata(self.path.join(name)).is_ok_and(|meta| meta.file_type().is_symlink())
    }

    /// Make the directory's entries (a new file, a rename) durable. Windows has no directory fsync (NTFS
    /// journals its metadata); some file systems (network and FUSE mounts) answer EINVAL or ENOTSUP, which
    /// PostgreSQL also tolerates: the data files themselves were fsynced.
    pub fn sync(&self) -> io::Result<()> {
        #[cfg(unix)]
        match rustix::fs::fsync(&self.fd) {
            Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOTSUP) => {}
            Err(err) => return Err(err.into()),
        }
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn files_are_reached_through_the_directory_opened_even_when_its_path_is_swapped() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("queue");
        let dir = PrivateDir::open(&path, true).unwrap();
        dir.create_fresh("a").unwrap().write_all(b"first").unwrap();
        // The path now names another directory: the held one is still where the files go.
        std::fs::rename(&path, root.path().join("moved")).unwrap();
        std::fs::create_dir(&path).unwrap();
        dir.create_fresh("b").unwrap().write_all(b"second").unwrap();
        dir.rename("b", "c").unwrap();
        let mut names = dir.names().unwrap();
        names.sort();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(std::fs::read(root.path().join("moved/c")).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0, "nothing went where the path points now");
        dir.remove("a").unwrap();
        assert_eq!(dir.read("c").unwrap(), b"second");
        dir.sync().unwrap();
    }

    #[test]
    fn a_link_in_the_directory_is_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = PrivateDir::open(&root.path().join("queue"), true).unwrap();
        let target = root.path().join("precious");
        std::fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("queue/acked.tmp")).unwrap();
        assert!(dir.is_symlink("acked.tmp"));
        assert!(dir.open_rw("acked.tmp").is_err(), "opened through a link");
        assert!(dir.read("acked.tmp").is_err(), "read through a link");
        dir.create_fresh("acked.tmp").unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        let sub = dir.subdir("quarantine", true).unwrap();
        sub.create_fresh("x").unwrap();
        dir.rename_into("acked.tmp", &sub, "moved").unwrap();
        assert_eq!(sub.read("moved").unwrap(), b"new");
    }
}
