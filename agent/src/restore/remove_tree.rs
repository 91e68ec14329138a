//! Removing one of coffer's own folders under a restore destination (the old tree
//! after a committed swap, a staging folder, a leftover): from several threads,
//! relative to open directories, following nothing. Apart from `swap` because
//! removal is the slow part of a forced restore and has its own concerns (a tree
//! that may be writable by the application's user, disks that want several
//! requests in flight).

use super::swap::DestLock;
use crate::report::Work;
use anyhow::{Context, Result};
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// Threads removing a tree. Removal of a tree that is not in the page cache waits on
/// one inode read per file; several in flight keep the disk busy instead.
const REMOVERS: usize = 8;

/// A directory still to be emptied: its parent (open) and its name there, plus its
/// path for messages.
type Pending = (Arc<OwnedFd>, OsString, PathBuf);

/// Unlinks every entry but subdirectories of `name` in `parent`; the subdirectories
/// go to `found`. Everything is relative to open directories and nothing is
/// followed: the old tree may be writable by the application's user, who must not be
/// able to steer a root-run removal elsewhere with a symlink.
fn empty_dir((parent, name, shown): &Pending, found: &mut Vec<Pending>, work: &Work) -> Result<()> {
    let fd = match openat(
        parent,
        name.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Arc::new(fd),
        Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::ENOTDIR | Errno::ELOOP) => {
            // Not (or no longer) a directory: it is removed as the name it is.
            return unlinkat(parent, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .with_context(|| format!("cannot remove {}", shown.display()));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", shown.display())),
    };
    let mut entries = Vec::new();
    let dup = fd
        .try_clone()
        .with_context(|| format!("cannot read {}", shown.display()))?;
    let mut dir = Dir::from_fd(dup).with_context(|| format!("cannot read {}", shown.display()))?;
    for e in dir.iter() {
        let e = e.with_context(|| format!("cannot read {}", shown.display()))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            entries.push((OsStr::from_bytes(n).to_os_string(), e.file_type()));
        }
    }
    drop(dir);
    let mut removed = 0;
    for (n, kind) in entries {
        let is_dir = match kind {
            Some(t) => t == Type::Directory,
            None => fstatat(&*fd, n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
                .unwrap_or(false),
        };
        if is_dir {
            let p = shown.join(&n);
            found.push((fd.clone(), n, p));
        } else {
            unlinkat(&*fd, n.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .with_context(|| format!("cannot remove {}", shown.join(&n).display()))?;
            removed += 1;
        }
    }
    work.phase_done(removed);
    Ok(())
}

/// Removes `dest/name` (coffer's own old, staging or leftover folder), counting
/// entries on the progress line: removing a large old tree is the slow part of a
/// forced restore, and the user should see it move. Files go first, from several
/// threads; the bare directories left are then removed in one pass.
pub(super) fn remove_tree(lock: &DestLock, name: &str) -> Result<()> {
    let path = lock.path.join(name);
    let root = OwnedFd::from(
        lock.dir
            .try_clone()
            .with_context(|| format!("cannot reopen {}", lock.path.display()))?,
    );
    // (directories waiting, workers busy, the first error)
    type Queue = (Vec<Pending>, usize, Option<anyhow::Error>);
    let queue: Mutex<Queue> = Mutex::new((
        vec![(Arc::new(root), OsString::from(name), path.clone())],
        0,
        None,
    ));
    let wake = Condvar::new();
    std::thread::scope(|scope| {
        for _ in 0..REMOVERS {
            scope.spawn(|| {
                let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                while q.2.is_none() {
                    let Some(item) = q.0.pop() else {
                        if q.1 == 0 {
                            break;
                        }
                        q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
                        continue;
                    };
                    q.1 += 1;
                    drop(q);
                    let mut found = Vec::new();
                    let res = empty_dir(&item, &mut found, &lock.work);
                    drop(item);
                    q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.1 -= 1;
                    q.0.extend(found);
                    if let Err(e) = res {
                        q.2.get_or_insert(e);
                    }
                    wake.notify_all();
                }
                wake.notify_all();
            });
        }
    });
    let (_, _, err) = queue.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = err {
        return Err(e);
    }
    // Only directories are left; the standard removal never follows a symlink either.
    match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
