//! The open directories along the path being restored, so that every entry is
//! created and given its attributes relative to its parent's handle (the `*at`
//! calls), never through its full path: a path longer than PATH_MAX (4,096 bytes)
//! cannot be used whole, and opening one component at a time with `O_NOFOLLOW` is
//! also what keeps a hostile archive from writing through a symlink.
//!
//! Entries come in walk order, so consecutive ones mostly share their parent: the
//! handles of the common part stay open and only what differs is opened, which
//! costs about one `openat` per directory restored, at any depth.

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// The root of a restore and the directories open below it.
#[derive(Debug)]
pub struct DirCursor {
    root: OwnedFd,
    root_path: PathBuf,
    /// Open directories below the root, outermost first, with their names.
    stack: Vec<(OsString, OwnedFd)>,
}

impl DirCursor {
    /// Opens `root` (a directory coffer made or was given), never through a
    /// symlink put in its place (a destination's owner can replace coffer's
    /// staging folder in it; the destination itself is reached as
    /// `/proc/self/fd/N/.`, see `dest_root`).
    pub fn open(root: &Path) -> std::io::Result<DirCursor> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        Ok(DirCursor {
            root: nix::fcntl::open(root, flags, Mode::empty())?,
            root_path: root.to_path_buf(),
            stack: Vec::new(),
        })
    }

    /// The handle of `parent` (relative to the root, plain names only), opening
    /// what is not open yet and, with `create`, making what is missing (mode
    /// 0700). Refuses a component that is a symlink or not a directory.
    pub fn enter(&mut self, parent: &Path, create: bool) -> Result<(), String> {
        let mut names = Vec::new();
        for c in parent.components() {
            match c {
                Component::Normal(n) => names.push(n),
                Component::CurDir => {}
                _ => return Err(format!("{}: not a plain relative path", parent.display())),
            }
        }
        let same = self
            .stack
            .iter()
            .zip(&names)
            .take_while(|((open, _), want)| open.as_os_str() == **want)
            .count();
        self.stack.truncate(same);
        for name in &names[same..] {
            let fd = self.open_sub(name, create)?;
            self.stack.push((name.to_os_string(), fd));
        }
        Ok(())
    }

    /// The directory last entered (the root when none is open below it).
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.stack
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// The full path of the innermost open directory joined with `name`, for
    /// messages.
    pub fn shown(&self, name: &OsStr) -> PathBuf {
        let mut p = self.root_path.clone();
        p.extend(self.stack.iter().map(|(n, _)| n));
        p.push(name);
        p
    }

    fn open_sub(&self, name: &OsStr, create: bool) -> Result<OwnedFd, String> {
        let top = self.dir();
        match openat(top, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT) if create => {
                mkdirat(top, name, Mode::from_bits_truncate(0o700))
                    .map_err(|e| format!("cannot create {}: {e}", self.shown(name).display()))?;
                openat(top, name, DIR_FLAGS, Mode::empty())
                    .map_err(|e| format!("{}: {e}", self.shown(name).display()))
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let what = match fstatat(top, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st)
                        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
                            == SFlag::S_IFLNK =>
                    {
                        "is a symlink: refusing to write through it"
                    }
                    _ => "is not a directory",
                };
                Err(format!("parent {} {what}", self.shown(name).display()))
            }
            Err(e) => Err(format!("{}: {e}", self.shown(name).display())),
        }
    }
}

/// A path for calls that only take one (the `l*xattr` calls): `name` in the open
/// directory `dir` through `/proc/self/fd`, which fits at any depth and cannot be
/// redirected by a folder above it renamed or replaced by a symlink meanwhile (the
/// destination's owner can rename coffer's staging folder); the full path `shown`
/// only on a system without /proc.
pub fn at_path(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> PathBuf {
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        return shown.to_path_buf();
    }
    let mut p = OsString::from(format!("/proc/self/fd/{}/", dir.as_raw_fd()));
    p.push(name);
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_opened_made_and_refused_relative_to_each_other() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", root.join("a/link")).expect("symlink");
        std::fs::write(root.join("a/file"), b"x").expect("write");
        let mut c = DirCursor::open(root).expect("open");
        c.enter(Path::new("a/b/new/newer"), true).expect("made");
        assert!(root.join("a/b/new/newer").is_dir());
        assert_eq!(c.shown(OsStr::new("x")), root.join("a/b/new/newer/x"));
        // Back up to a shared prefix, then down another way.
        c.enter(Path::new("a"), false).expect("a");
        assert_eq!(c.shown(OsStr::new("x")), root.join("a/x"));
        let err = c.enter(Path::new("a/link/x"), true).expect_err("symlink");
        assert!(err.contains("a/link is a symlink: refusing"), "{err}");
        assert!(!Path::new("/etc/x").exists());
        let err = c.enter(Path::new("a/file"), true).expect_err("file");
        assert!(err.contains("a/file is not a directory"), "{err}");
        let err = c.enter(Path::new("a/gone"), false).expect_err("missing");
        assert!(err.contains("a/gone"), "{err}");
        assert!(c.enter(Path::new("a/../x"), true).is_err());
    }

    #[test]
    fn paths_beyond_path_max_are_made_one_directory_at_a_time() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let deep: PathBuf = std::iter::repeat_n("d".repeat(200), 25).collect();
        let mut c = DirCursor::open(tmp.path()).expect("open");
        c.enter(&deep, true).expect("made");
        nix::unistd::mkfifoat(c.dir(), "fifo", Mode::from_bits_truncate(0o600)).expect("fifo");
        let shown = c.shown(OsStr::new("fifo"));
        assert!(shown.as_os_str().len() > 4096);
        assert!(std::fs::symlink_metadata(&shown).is_err(), "too long whole");
        c.enter(Path::new(""), false).expect("back at the root");
        c.enter(&deep, false).expect("open again");
        let via = at_path(c.dir(), OsStr::new("fifo"), &shown);
        let md = std::fs::symlink_metadata(&via).expect("through /proc");
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&md.file_type()));
    }
}
