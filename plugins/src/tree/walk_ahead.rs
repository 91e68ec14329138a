//! The directory walk, run on its own thread some files ahead of the reader.
//!
//! Reading many small files one after the other waits on one disk request at a time:
//! for 100,000 files of 4 KiB that wait, not hashing or compression, was most of the
//! backup. This thread lists, stats and opens the next files and asks the kernel to
//! read them in (`POSIX_FADV_WILLNEED`), so several requests are in flight while the
//! stream thread hashes and archives the current one. The reader still takes its own
//! `fstat` before and after reading, so a change after the early open is still seen.
//!
//! Every entry is reached relative to its open parent directory (`openat`), never
//! through its full path: a path may be longer than PATH_MAX (4,096 bytes), which
//! no path-taking call accepts, and a directory on the way may be replaced (by a
//! file, a symlink) while the walk is inside it, which must cost that entry and not
//! the run. Entries come in the order `walkdir` gave them before this walker (depth
//! first, each directory's entries sorted by name bytes, a directory before its
//! contents), which the manifests already written and `in_order` rely on.

use crate::fs::open_at;
use crate::fs::stat::Stat;
use crate::tree::entry::RawPath;
use crate::tree::exclude::Excludes;
use rustix::fs::{Dir, FileType};
use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};

/// How many entries the walk may run ahead, at most: the batches waiting in the
/// channel, the one being filled and the one being read. It bounds the open files
/// the walk holds, and the number of read requests kept in flight. On 100,000 files of 4 KiB
/// (cold cache, 2 cores, virtio disk) a backup took 6.6 s one entry ahead, 5.3 s at
/// 64 and 5.2 s at 256; `main` raises the open-file limit so this fits under it.
pub const AHEAD: usize = 256;

/// The directory an entry is in, open, and its name there.
#[derive(Debug, Clone)]
pub struct At {
    pub dir: Arc<OwnedFd>,
    pub name: OsString,
}

/// One walked entry.
#[derive(Debug)]
pub struct Entry {
    /// The full path, for messages (and for calls, while it is short enough:
    /// `sys_path`).
    pub abs: PathBuf,
    /// Relative to the root, `/`-separated; `.` for the root itself.
    pub rel: RawPath,
    pub md: Stat,
    /// With `open_files`: a regular file's handle opened ahead (or why it could not
    /// be), and a directory's own handle (for its extended attributes).
    pub file: Option<io::Result<File>>,
    /// Where it is, for calls relative to its directory; `None` for the root.
    pub at: Option<At>,
}

impl Entry {
    /// A path for calls that only take a path (the `l*xattr` calls, `statx`): the
    /// full path while it fits PATH_MAX, beyond that `exact_path`. A lookup through
    /// /proc costs more, and `check` makes one per entry.
    pub fn sys_path(&self) -> Cow<'_, Path> {
        if self.abs.as_os_str().len() < PATH_MAX {
            return Cow::Borrowed(&self.abs);
        }
        self.exact_path()
    }

    /// The entry through its open parent, `/proc/self/fd/<parent>/<name>`: it fits
    /// PATH_MAX at any depth and is the entry the walk found even after a directory
    /// on the full path was replaced. The full path for the root and without /proc.
    pub fn exact_path(&self) -> Cow<'_, Path> {
        match &self.at {
            Some(at) if proc_fds() => {
                let mut p = OsString::from(format!("/proc/self/fd/{}/", at.dir.as_raw_fd()));
                p.push(&at.name);
                Cow::Owned(PathBuf::from(p))
            }
            _ => Cow::Borrowed(&self.abs),
        }
    }

    /// A symlink's target, read relative to its directory.
    pub fn read_link(&self) -> io::Result<PathBuf> {
        match &self.at {
            Some(at) => {
                let target = rustix::fs::readlinkat(&*at.dir, at.name.as_os_str(), Vec::new())?;
                Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
            }
            None => std::fs::read_link(&self.abs),
        }
    }
}

/// Longest path the path-taking calls accept, with its terminating NUL.
const PATH_MAX: usize = 4096;

/// Whether this process sees its open files in `/proc/self/fd` (not in a chroot or
/// container without `/proc`).
fn proc_fds() -> bool {
    static SEEN: OnceLock<bool> = OnceLock::new();
    *SEEN.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// What stopped the walk at one path (the walk goes on after it).
#[derive(Debug)]
pub struct WalkError {
    pub path: PathBuf,
    pub err: io::Error,
}

/// One walked entry, or the error met on the way to it.
pub type Walked = Result<Entry, WalkError>;

pub struct WalkOptions<'a> {
    pub root: &'a Path,
    pub one_file_system: bool,
    pub excludes: &'a Excludes,
    /// Open regular files ahead (for a walk that reads them); otherwise only stat.
    pub open_files: bool,
}

/// Opens a file for reading without following a symlink that replaced it.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    let nofollow = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    let noatime = nix::fcntl::OFlag::O_NOATIME.bits();
    // O_NOATIME keeps the backup from dirtying every inode; it is refused for files
    // we do not own without CAP_FOWNER, so fall back to a plain open.
    match OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | noatime)
        .open(path)
    {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(nofollow)
            .open(path),
        other => other,
    }
}

/// Entries cross to the reader in batches of this many: one message, and at most
/// one wake-up of a waiting thread, per batch. One by one, an unchanged run over
/// 1,000,000 small files made 1.36 million futex calls.
const BATCH: usize = 32;

/// Starts the walk inside `scope`; entries come out of the iterator in walk order.
/// The walk stops early when the iterator is dropped.
pub fn spawn<'scope, 'env: 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    opts: WalkOptions<'env>,
) -> Walk {
    // Two batches are outside the channel: the one filled and the one read.
    let (tx, rx) = sync_channel(AHEAD / BATCH - 2);
    scope.spawn(move || {
        let _ = Walker {
            opts: &opts,
            tx,
            pending: RefCell::new(Vec::with_capacity(BATCH)),
            root_dev: 0,
        }
        .run();
    });
    Walk {
        rx,
        batch: Vec::new().into_iter(),
    }
}

/// The walk's entries, as the walk thread sends them.
pub struct Walk {
    rx: Receiver<Vec<Walked>>,
    batch: std::vec::IntoIter<Walked>,
}

impl Iterator for Walk {
    type Item = Walked;
    fn next(&mut self) -> Option<Walked> {
        loop {
            if let Some(w) = self.batch.next() {
                return Some(w);
            }
            self.batch = self.rx.recv().ok()?.into_iter();
        }
    }
}

/// A directory being walked: its handle, where it is, and its entries still to
/// visit, sorted.
struct Frame {
    dir: Arc<OwnedFd>,
    abs: PathBuf,
    /// Relative to the root, `/`-separated; empty for the root.
    rel: Vec<u8>,
    names: std::vec::IntoIter<(OsString, FileType)>,
}

/// The receiver is gone: the stream stopped (an error or a cancelled run).
struct Stopped;

struct Walker<'a> {
    opts: &'a WalkOptions<'a>,
    tx: SyncSender<Vec<Walked>>,
    /// The batch being filled.
    pending: RefCell<Vec<Walked>>,
    root_dev: u64,
}

/// The last batch leaves when the walk ends, however it ends.
impl Drop for Walker<'_> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl Walker<'_> {
    fn send(&self, w: Walked) -> Result<(), Stopped> {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(w);
            pending.len() >= BATCH
        };
        if full { self.flush() } else { Ok(()) }
    }

    fn flush(&self) -> Result<(), Stopped> {
        let batch = std::mem::replace(&mut *self.pending.borrow_mut(), Vec::with_capacity(BATCH));
        if batch.is_empty() {
            return Ok(());
        }
        self.tx.send(batch).map_err(|_| Stopped)
    }

    fn run(mut self) -> Result<(), Stopped> {
        let root = self.opts.root;
        let found = match open_at::reach_root(root, self.opts.open_files) {
            Ok(found) => found,
            Err(err) => return self.fail(root, err),
        };
        self.root_dev = found.md.dev();
        let mut stack = Vec::new();
        let listed = found.dir;
        self.send(Ok(Entry {
            abs: root.to_path_buf(),
            rel: RawPath::Text(".".into()),
            md: found.md,
            file: found.file,
            at: None,
        }))?;
        if let Some(Ok(fd)) = listed {
            stack.push(self.list(fd, root.to_path_buf(), Vec::new())?);
        }
        while let Some(frame) = stack.last_mut() {
            let Some((name, hint)) = frame.names.next() else {
                stack.pop();
                continue;
            };
            let parent = (frame.dir.clone(), frame.abs.clone(), frame.rel.clone());
            if let Some(sub) = self.visit(parent, name, hint)? {
                stack.push(sub);
            }
        }
        Ok(())
    }

    fn fail(&self, path: &Path, err: io::Error) -> Result<(), Stopped> {
        self.send(Err(WalkError {
            path: path.to_path_buf(),
            err,
        }))
    }

    /// Lists the directory `fd` for walking; a listing that fails part way is
    /// reported (right after the directory, as `walkdir` did) and what was listed
    /// is walked.
    fn list(&self, fd: OwnedFd, abs: PathBuf, rel: Vec<u8>) -> Result<Frame, Stopped> {
        let mut names = Vec::new();
        let mut failed = None;
        match Dir::read_from(&fd) {
            Ok(mut d) => {
                while let Some(item) = d.read() {
                    match item {
                        Ok(e) => {
                            let n = e.file_name().to_bytes();
                            if n != b"." && n != b".." {
                                names.push((OsStr::from_bytes(n).to_os_string(), e.file_type()));
                            }
                        }
                        Err(e) => {
                            failed = Some(io::Error::from(e));
                            break;
                        }
                    }
                }
            }
            Err(e) => failed = Some(e.into()),
        }
        if let Some(err) = failed {
            self.fail(&abs, err)?;
        }
        // A tagged directory keeps only its tag files (exclude_if_present,
        // exclude_caches): the rest of it is never visited.
        let tags = self
            .opts
            .excludes
            .tags_in(&fd, names.iter().map(|(n, t)| (n.as_os_str(), *t)));
        if !tags.is_empty() {
            names.retain(|(n, _)| tags.contains(n));
        }
        // Names in one directory are unique, so an unstable sort gives the same
        // order, without the stable sort's scratch copy of the list (7 MiB for a
        // folder of 220,000 entries).
        names.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(Frame {
            dir: Arc::new(fd),
            abs,
            rel,
            names: names.into_iter(),
        })
    }

    /// Visits `name` in the directory `(dir, abs, rel)`: sends its entry (or why it
    /// could not be reached) and returns its frame when it is a directory to walk.
    fn visit(
        &self,
        (dir, parent_abs, parent_rel): (Arc<OwnedFd>, PathBuf, Vec<u8>),
        name: OsString,
        hint: FileType,
    ) -> Result<Option<Frame>, Stopped> {
        let abs = parent_abs.join(&name);
        let mut rel = parent_rel;
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let excluded = |is_dir: bool| {
            self.opts
                .excludes
                .excluded(Path::new(OsStr::from_bytes(&rel)), is_dir)
        };
        // The listing's type spares opening what is excluded; the entry's own stat
        // decides when the listing did not say or the entry changed since.
        let hinted_dir = (hint != FileType::Unknown).then_some(hint == FileType::Directory);
        if hinted_dir.is_some_and(excluded) {
            return Ok(None);
        }
        let found = match open_at::reach(&dir, &name, hint, self.opts.open_files) {
            Ok(f) => f,
            Err(err) => {
                self.fail(&abs, err)?;
                return Ok(None);
            }
        };
        let is_dir = found.md.is_dir();
        if hinted_dir != Some(is_dir) && excluded(is_dir) {
            return Ok(None);
        }
        let descend = is_dir && (!self.opts.one_file_system || found.md.dev() == self.root_dev);
        let listed = if descend { found.dir } else { None };
        self.send(Ok(Entry {
            abs: abs.clone(),
            rel: RawPath::from_bytes(&rel),
            md: found.md,
            file: found.file,
            at: Some(At { dir, name }),
        }))?;
        match listed {
            Some(Ok(fd)) => self.list(fd, abs, rel).map(Some),
            // Seen but not listable (no permission): said after it, as walkdir did.
            Some(Err(err)) => {
                self.fail(&abs, err)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
#[path = "walk_ahead_tests.rs"]
mod tests;
