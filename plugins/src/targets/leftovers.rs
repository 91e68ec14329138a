//! What a killed upload leaves on a local target. object_store's local store
//! writes every object to a staging file `<object>#<n>` and renames it into place
//! once complete; it hides those files from its listings, so a run killed with -9
//! leaves one behind that nothing else would ever see or remove.
//!
//! The folder is reached through handles from the target's root, never through
//! a symlink, and each name is checked and removed relative to that handle: the
//! names on a target are hostile, and a folder swapped for a symlink must not
//! make prune remove something elsewhere. Only regular files are reported; the
//! caller decides which object names are its own.

use object_store::path::Path as ObjPath;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One staging file of an upload that never completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The file's name, `<object>#<n>`.
    pub name: String,
    /// The object it would have become.
    pub object: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// What a target whose writes go through staging names offers beyond
/// object_store's calls, for prune and garbage collection: the staging objects
/// a kill left, and, where folders are real (a disk, an SFTP server), their
/// links and their removal. A local directory (`LocalFolders`), SFTP and WebDAV
/// have one; object stores, where an unfinished upload is no object, do not.
pub trait Staging: std::fmt::Debug + Send + Sync {
    /// The staging objects of writes cut short in the folder `dir` (none when
    /// the folder is missing).
    fn leftovers(&self, dir: &ObjPath) -> io::Result<Vec<Leftover>>;
    /// Removes one staging object `leftovers` listed in `dir`.
    fn remove_leftover(&self, dir: &ObjPath, name: &str) -> io::Result<()>;
    /// Fails when a folder of `dir` is a symlink (or anything but a folder).
    fn refuse_links(&self, _dir: &ObjPath) -> io::Result<()> {
        Ok(())
    }
    /// Removes the folder `dir` once it holds nothing. Best effort.
    fn remove_empty_folder(&self, _dir: &ObjPath) {}
    /// Whether the folder `dir` is gone.
    fn folder_gone(&self, _dir: &ObjPath) -> bool {
        true
    }
}

/// A local target's folders, on this host's disk below `root`.
#[derive(Debug)]
pub struct LocalFolders {
    pub root: PathBuf,
}

impl Staging for LocalFolders {
    fn leftovers(&self, dir: &ObjPath) -> io::Result<Vec<Leftover>> {
        list(&self.root, dir.as_ref())
    }
    fn remove_leftover(&self, dir: &ObjPath, name: &str) -> io::Result<()> {
        remove(&self.root, dir.as_ref(), name)
    }
    fn refuse_links(&self, dir: &ObjPath) -> io::Result<()> {
        refuse_links(&self.root, dir.as_ref())
    }
    fn remove_empty_folder(&self, dir: &ObjPath) {
        let _ = std::fs::remove_dir(self.root.join(dir.as_ref()));
    }
    fn folder_gone(&self, dir: &ObjPath) -> bool {
        !self.root.join(dir.as_ref()).exists()
    }
}

/// The object a staging name `<object>#<n>` belongs to: `n` as object_store
/// counts its attempts (decimal, from 1, no leading zero), the object's name
/// non-empty and holding no other `#`.
pub fn staging_object(name: &str) -> Option<&str> {
    let (object, n) = name.rsplit_once('#')?;
    let counted = !n.is_empty()
        && n.len() <= 10
        && !n.starts_with('0')
        && n.bytes().all(|b| b.is_ascii_digit());
    (counted && !object.is_empty() && !object.contains('#')).then_some(object)
}

/// Opens `dir` (an object prefix, `/`-separated) below `root`, one folder at a
/// time, never through a symlink. `None` when a folder on the way is missing.
fn open_folder(root: &Path, dir: &str) -> io::Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(root, flags, Mode::empty())?;
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{dir} is no folder of a target"),
            ));
        }
        fd = match crate::fs::open_at::open_dir(&fd, OsStr::new(part)) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
    }
    Ok(Some(fd))
}

/// Fails unless every folder of `dir` below `root` is a real folder (or missing):
/// a folder of a target swapped for a symlink must not be listed and deleted
/// through (object_store's local listing follows links).
pub(crate) fn refuse_links(root: &Path, dir: &str) -> io::Result<()> {
    open_folder(root, dir).map(|_| ()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{} is not a folder coffer wrote ({e}; a symbolic link?): nothing in it is \
                 deleted; look at it and remove it by hand",
                root.join(dir).display()
            ),
        )
    })
}

fn context(e: impl Into<io::Error>, what: &str, root: &Path, dir: &str) -> io::Error {
    let e = e.into();
    io::Error::new(
        e.kind(),
        format!("cannot {what} {}: {e}", root.join(dir).display()),
    )
}

/// The staging files in the folder `dir` below `root` (none when it is missing).
pub(crate) fn list(root: &Path, dir: &str) -> io::Result<Vec<Leftover>> {
    let Some(fd) = open_folder(root, dir).map_err(|e| context(e, "open", root, dir))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut listing = Dir::read_from(&fd).map_err(|e| context(e, "list", root, dir))?;
    while let Some(entry) = listing.read() {
        let entry = entry.map_err(|e| context(e, "list", root, dir))?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        let Some(object) = staging_object(name) else {
            continue;
        };
        let st = match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone since the listing: the upload completed, or was aborted.
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(context(e, "stat a file in", root, dir)),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            continue;
        }
        let modified = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(st.st_mtime).unwrap_or(0),
                u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            );
        out.push(Leftover {
            name: name.to_string(),
            object: object.to_string(),
            size: u64::try_from(st.st_size).unwrap_or(0),
            modified,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the staging file `name` in the folder `dir` below `root`, if it is
/// still a regular file with a staging name. A file already gone is no error.
pub(crate) fn remove(root: &Path, dir: &str, name: &str) -> io::Result<()> {
    if staging_object(name).is_none() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is no staging file"),
        ));
    }
    let Some(fd) = open_folder(root, dir).map_err(|e| context(e, "open", root, dir))? else {
        return Ok(());
    };
    match rustix::fs::statat(
        &fd,
        OsStr::from_bytes(name.as_bytes()),
        AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
        Ok(_) | Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(context(e, "stat a file in", root, dir)),
    }
    match rustix::fs::unlinkat(&fd, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(context(e, &format!("remove {name} in"), root, dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_staging_names_of_regular_files_are_listed_and_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let packs = tmp.path().join("app/packs");
        std::fs::create_dir_all(&packs).expect("mkdir");
        for name in ["p.tar.zst.age#1", "p.tar.zst.age", "p#01", "q#2#3"] {
            std::fs::write(packs.join(name), b"x").expect("write");
        }
        std::fs::create_dir(packs.join("d#4")).expect("mkdir");
        let outside = tmp.path().join("outside#5");
        std::fs::write(&outside, b"x").expect("write");
        std::os::unix::fs::symlink(&outside, packs.join("link#6")).expect("symlink");
        let found = list(tmp.path(), "app/packs").expect("list");
        let names: Vec<&str> = found.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["p.tar.zst.age#1"]);
        assert_eq!(found[0].object, "p.tar.zst.age");
        assert_eq!(found[0].size, 1);
        remove(tmp.path(), "app/packs", "p.tar.zst.age#1").expect("remove");
        assert!(!packs.join("p.tar.zst.age#1").exists());
        // A symlink is never followed, nor removed as if it were a file.
        remove(tmp.path(), "app/packs", "link#6").expect("remove");
        assert!(outside.exists() && packs.join("link#6").exists());
        assert!(remove(tmp.path(), "app/packs", "p.tar.zst.age").is_err());
        // A folder swapped for a symlink is not entered.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::fs::write(elsewhere.join("p.tar.zst.age#1"), b"x").expect("write");
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join("app/other")).expect("symlink");
        assert!(list(tmp.path(), "app/other").is_err());
        assert!(remove(tmp.path(), "app/other", "p.tar.zst.age#1").is_err());
        assert!(elsewhere.join("p.tar.zst.age#1").exists());
        assert_eq!(list(tmp.path(), "app/missing").expect("list"), Vec::new());
    }
}
