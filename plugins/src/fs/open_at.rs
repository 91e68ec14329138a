//! One name in an open directory: what it is, and a handle on it, reached relative
//! to that directory (`openat`), never through a full path, so that neither
//! PATH_MAX nor a directory replaced higher up can get in the way. Apart from the
//! walk (`walk_ahead`) because what the listing says an entry is, is only a guess
//! by the time it is opened: a file may have become a directory, a FIFO or a
//! symlink, and each needs its own way of being opened (or not opened at all).

use crate::fs::stat::Stat;
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use rustix::fs::{FileType, Mode, OFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

/// How much of each file to request ahead, which bounds the page cache the hints
/// fill to `walk_ahead::AHEAD` x this. The kernel's own readahead takes over for
/// the rest of a large file once it is read sequentially.
const ADVISE_BYTES: u64 = 256 << 10;

/// What one name turned out to be.
pub struct Found {
    pub md: Stat,
    /// A regular file opened for reading, or a directory's own handle.
    pub file: Option<io::Result<File>>,
    /// A directory's handle, to list it.
    pub dir: Option<io::Result<OwnedFd>>,
}

/// Stats `name` in `dir`: through a handle for a directory (kept to list it) and
/// for a regular file opened for reading when `open_files`; otherwise by name
/// (`statx`, never followed), which opens nothing, so it is safe on FIFOs and
/// devices and costs one call instead of three. What the listing said it was is
/// only a guess: it is whatever the handle or the stat shows.
pub fn reach(dir: &OwnedFd, name: &OsStr, hint: FileType, open_files: bool) -> io::Result<Found> {
    let reopen = |md: Stat| -> io::Result<Found> {
        if md.is_dir() {
            return match open_dir(dir, name) {
                Ok(fd) => found_dir(fd, open_files),
                Err(e) => Ok(Found {
                    md,
                    file: None,
                    dir: Some(Err(e)),
                }),
            };
        }
        if md.is_file() && open_files {
            let opened = open_file(dir, name);
            let md = match &opened {
                Ok(f) => Stat::of(f)?,
                Err(_) => md,
            };
            if md.is_file() {
                if let Ok(f) = &opened {
                    advise(f, &md);
                }
                return Ok(Found {
                    md,
                    file: Some(opened),
                    dir: None,
                });
            }
            return Ok(Found {
                md,
                file: None,
                dir: None,
            });
        }
        Ok(Found {
            md,
            file: None,
            dir: None,
        })
    };
    match hint {
        FileType::Directory => match open_dir(dir, name) {
            Ok(fd) => found_dir(fd, open_files),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
            // Replaced by something else, or not listable: what is it now?
            Err(_) => reopen(Stat::at(dir, name)?),
        },
        FileType::RegularFile if open_files => match open_file(dir, name) {
            Ok(f) => {
                let md = Stat::of(&f)?;
                if md.is_file() {
                    advise(&f, &md);
                    Ok(Found {
                        md,
                        file: Some(Ok(f)),
                        dir: None,
                    })
                } else {
                    drop(f);
                    reopen(md)
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
            Err(e) => {
                let md = Stat::at(dir, name)?;
                if md.is_file() {
                    // Seen, not readable: the reader reports it.
                    Ok(Found {
                        md,
                        file: Some(Err(e)),
                        dir: None,
                    })
                } else {
                    reopen(md)
                }
            }
        },
        _ => reopen(Stat::at(dir, name)?),
    }
}

/// The walk's root, followed if it is a symlink (a configured path may be one);
/// a root that is not a directory is the entry it is, with nothing under it.
pub fn reach_root(root: &std::path::Path, open_files: bool) -> io::Result<Found> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::open(root, flags, Mode::empty()) {
        Ok(fd) => found_dir(fd, open_files),
        Err(rustix::io::Errno::NOTDIR) => Ok(Found {
            md: Stat::from(&std::fs::metadata(root)?),
            file: None,
            dir: None,
        }),
        Err(e) => Err(e.into()),
    }
}

/// An opened directory, stat'ed through its handle: that is what gets listed.
fn found_dir(fd: OwnedFd, open_files: bool) -> io::Result<Found> {
    let (fd, md) = meta_of(fd);
    Ok(Found {
        md: md?,
        file: open_files.then(|| dup_file(&fd)),
        dir: Some(Ok(fd)),
    })
}

/// The stat of an open handle, and the handle back.
fn meta_of(fd: OwnedFd) -> (OwnedFd, io::Result<Stat>) {
    let md = Stat::of(&fd);
    (fd, md)
}

/// Opens a directory below `dir` to list it, never through a symlink.
pub fn open_dir<Fd: std::os::fd::AsFd>(dir: Fd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a regular file below `dir` for reading: never through a symlink, without
/// blocking on a FIFO that replaced it, without updating its access time when the
/// kernel lets us.
fn open_file(dir: &OwnedFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let flags = flags | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        other => other,
    }?;
    Ok(File::from(fd))
}

fn dup_file(fd: &OwnedFd) -> io::Result<File> {
    Ok(File::from(fd.try_clone()?))
}

/// A hint only: a filesystem that ignores it is read as before.
fn advise(file: &File, md: &Stat) {
    let len = md.size().min(ADVISE_BYTES) as i64;
    if len > 0 {
        let _ = posix_fadvise(file, 0, len, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
    }
}
