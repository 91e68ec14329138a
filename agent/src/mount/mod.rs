//! `coffer mount`: a job's snapshots on one target as a read-only FUSE file
//! system, to look at and copy single files without a restore.
//!
//! The root holds a folder per snapshot signed by a trusted key; a snapshot's
//! manifest is read the first time its folder is looked into (`tree`). A file's
//! content is fetched when it is opened: the byte ranges of its pack that hold it
//! (ranged reads, as `restore --path` does), into an unnamed scratch file in the
//! state directory, checked against the manifest's BLAKE3 before the first byte
//! is given out; a file that does not match cannot be opened (EIO, and a log
//! line names it). Memory holds the tree of the snapshots looked into, not file
//! contents. Format 1 sources (one archive per source) and database dumps are
//! not shown: `coffer restore` gets those.

mod tree;

use crate::format::{Manifest, Marker};
use crate::keys::Identities;
use crate::pack::read::PackReader;
use anyhow::{Context, Result};
use coffer_plugins::{FileEntry, Target};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::runtime::Handle;
use tree::{Kind, ROOT, Tree, What};

/// The snapshots never change under the mount: the kernel may cache for long.
const TTL: Duration = Duration::from_secs(3600);

/// What the mount serves from.
pub(crate) struct Source {
    pub rt: Handle,
    pub target: Target,
    pub ids: Identities,
    /// Trusted snapshots, oldest first.
    pub markers: Vec<Marker>,
    /// Where manifests' file lists and opened files' contents are kept.
    pub tmp_dir: PathBuf,
}

struct Mounted {
    /// `from.ids`, kept for the rest of the process (see `serve`).
    ids: &'static Identities,
    from: Source,
    /// One reader for every open: it keeps packs open with their decoders and
    /// their seek tables, so files opened in order (a `cp -r`, a `find | xargs
    /// cat`) continue where the last one stopped instead of fetching the pack's
    /// header and tail and decoding its frame again for each file.
    packs: Mutex<PackReader<'static>>,
    tree: Mutex<Tree>,
    open: Mutex<HashMap<u64, File>>,
    next_fh: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking request leaves the tree as it was between two whole changes.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Mounts `from` at `at` and serves until it is unmounted (`umount`, or
/// `fusermount3 -u`); the mount goes away with the process too.
pub(crate) fn serve(mut from: Source, at: &Path, job: &str) -> Result<()> {
    let times: Vec<_> = from
        .markers
        .iter()
        .map(|m| (m.id.clone(), m.finished_at.into()))
        .collect();
    // The reader borrows the identities for as long as the mount lives, which is
    // the rest of the process: leaked once, on purpose.
    let ids: &'static Identities = Box::leak(Box::new(std::mem::take(&mut from.ids)));
    let packs = PackReader::of_target(&from.rt, &from.target, job, ids, Arc::default());
    let fs = Mounted {
        ids,
        packs: Mutex::new(packs),
        tree: Mutex::new(Tree::new(&times)),
        from,
        open: Mutex::new(HashMap::new()),
        next_fh: AtomicU64::new(1),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(format!("coffer:{job}")),
        MountOption::Subtype("coffer".into()),
        // The kernel checks owners and modes as stored, so other users see what
        // the files' modes let them see, as on the backed-up host.
        MountOption::DefaultPermissions,
        MountOption::AutoUnmount,
    ];
    config.acl = fuser::SessionACL::All;
    fuser::mount(fs, at, &config).with_context(|| {
        format!(
            "cannot mount at {} (a folder that exists and is empty; /dev/fuse and fusermount3 from the fuse3 package are needed)",
            at.display()
        )
    })
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Char => FileType::CharDevice,
        Kind::Block => FileType::BlockDevice,
    }
}

fn attr_of(tree: &Tree, ino: u64) -> Option<FileAttr> {
    let n = tree.get(ino)?;
    let a = &n.attr;
    Some(FileAttr {
        ino: INodeNo(ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    })
}

impl Mounted {
    /// The tree, with snapshot folder `ino` filled in first when it is one not yet read.
    fn loaded(&self, ino: u64) -> Result<MutexGuard<'_, Tree>, Errno> {
        let index = lock(&self.tree).unloaded(ino);
        if let Some(index) = index {
            // Read without holding the tree: a manifest can take seconds.
            let manifest = self.manifest(index).map_err(|e| {
                tracing::warn!("snapshot {}: {e:#}", self.from.markers[index].id);
                Errno::EIO
            })?;
            let mut tree = lock(&self.tree);
            if tree.unloaded(ino).is_some() {
                for s in manifest.sources.iter().filter(|s| s.packed) {
                    let entries = s.entries.iter().map_err(|_| Errno::EIO)?;
                    let skipped = tree
                        .add_source(ino, index, &s.name, entries)
                        .map_err(|_| Errno::EIO)?;
                    if skipped > 0 {
                        tracing::warn!(
                            "snapshot {} source {}: {skipped} entries with names no walk makes were left out",
                            manifest.snapshot,
                            s.name
                        );
                    }
                }
                tree.mark_loaded(ino);
            }
            return Ok(tree);
        }
        Ok(lock(&self.tree))
    }

    fn manifest(&self, index: usize) -> Result<Manifest> {
        let f = &self.from;
        crate::repo::read_manifest(&f.rt, &f.target, &f.markers[index], self.ids, &f.tmp_dir)
    }

    /// The content of `entry` of snapshot `index` in a scratch file, checked.
    fn fetch(&self, index: usize, entry: &FileEntry) -> Result<File> {
        let f = &self.from;
        let marker = &f.markers[index];
        let shown = String::from_utf8_lossy(entry.path.as_bytes()).into_owned();
        let mut out = tempfile::tempfile_in(&f.tmp_dir)
            .with_context(|| format!("cannot make a scratch file in {}", f.tmp_dir.display()))?;
        let got = if let (true, Some(chunks)) = (entry.size > 0, &entry.chunks) {
            anyhow::ensure!(
                coffer_plugins::is_valid_chunk_list(chunks, entry.size),
                "{shown}: the manifest's chunks do not add up to the file's size"
            );
            let mut whole = blake3::Hasher::new();
            let mut packs = lock(&self.packs);
            for c in chunks {
                use crate::pack::chunk_stream::{ChunkError, read_chunk};
                let mut both = crate::pack::read::Hashed {
                    out: &mut out,
                    hasher: &mut whole,
                };
                match read_chunk(&mut packs, marker, c, true, &mut both) {
                    Ok(()) => {}
                    Err(ChunkError::Unlisted) => anyhow::bail!(
                        "{shown}: pack {} is not listed by snapshot {}",
                        c.pack,
                        marker.id
                    ),
                    Err(ChunkError::Read(e)) => return Err(e.into()),
                    Err(ChunkError::Mismatch) => anyhow::bail!(
                        "{shown}: a chunk in pack {} does not match the manifest (the pack is damaged)",
                        c.pack
                    ),
                }
            }
            out.flush()?;
            whole.finalize()
        } else if entry.size > 0 {
            let content = entry
                .content
                .as_ref()
                .with_context(|| format!("{shown}: the manifest says not where its content is"))?;
            let stored = marker
                .pack(&content.pack)
                .with_context(|| {
                    format!(
                        "{shown}: pack {} is not listed by snapshot {}",
                        content.pack, marker.id
                    )
                })?
                .stored_size;
            let mut packs = lock(&self.packs);
            let got = match &entry.sparse {
                None => packs.read(&content.pack, stored, content.offset, entry.size, &mut out)?,
                Some(map) => {
                    anyhow::ensure!(
                        coffer_plugins::is_valid_sparse_map(map, entry.size),
                        "{shown}: the manifest's map of a sparse file does not fit it"
                    );
                    let got = packs.read_sparse(
                        &content.pack,
                        stored,
                        content.offset,
                        map,
                        entry.size,
                        &mut out,
                        |f, off| f.seek(SeekFrom::Start(off)).map(drop),
                    )?;
                    out.set_len(entry.size)?;
                    got
                }
            };
            out.flush()?;
            got
        } else {
            blake3::hash(b"")
        };
        anyhow::ensure!(
            entry.blake3.as_deref() == Some(got.to_hex().as_str()),
            "{shown} in snapshot {}: its content does not match the manifest's BLAKE3",
            marker.id
        );
        Ok(out)
    }
}

impl Filesystem for Mounted {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let tree = match self.loaded(parent.0) {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        match tree
            .child(parent.0, name)
            .and_then(|ino| attr_of(&tree, ino))
        {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match attr_of(&lock(&self.tree), ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match lock(&self.tree).get(ino.0).map(|n| &n.what) {
            Some(What::Symlink(to)) => reply.data(to),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let what = lock(&self.tree).get(ino.0).map(|n| n.what.clone());
        let (index, entry) = match what {
            Some(What::File { snapshot, entry }) => (snapshot, entry),
            Some(_) => return reply.error(Errno::EACCES),
            None => return reply.error(Errno::ENOENT),
        };
        match self.fetch(index, &entry) {
            Ok(file) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                lock(&self.open).insert(fh, file);
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => {
                tracing::warn!("{e:#}");
                reply.error(Errno::EIO);
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let open = lock(&self.open);
        let Some(file) = open.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => return reply.error(Errno::EIO),
            }
        }
        reply.data(&buf[..got]);
    }

    /// Nothing is ever written: a close has nothing to flush.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.open).remove(&fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let tree = match self.loaded(ino.0) {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        let Some(node) = tree.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let up = if ino.0 == ROOT { ROOT } else { node.parent };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (up, FileType::Directory, OsStr::new("..")),
        ];
        let children = node.children.iter().filter_map(|(name, &child)| {
            let kind = file_type(tree.get(child)?.attr.kind);
            Some((child, kind, name.as_os_str()))
        });
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in dots.into_iter().chain(children).enumerate().skip(skip) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
