//! The folders `coffer mount` shows, as inodes: the root holds one folder per
//! snapshot, each snapshot one folder per directory source, each source its
//! files as the manifest lists them (owners, modes, sizes and times as stored).
//! A snapshot's folder is filled the first time it is looked into: its manifest
//! is read then, not at mount time.
//!
//! The manifest is trusted only as far as it is signed and checked; a name that
//! could not come from a walk (empty, `.`, `..`, a `/` inside) is left out, so a
//! crafted one cannot make a folder loop or escape the mount.

use coffer_plugins::{EntryKind, FileEntry};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What an inode shows.
#[derive(Debug, Clone)]
pub(crate) enum What {
    Dir,
    /// A snapshot's folder, by its index among the mounted markers; `loaded` once
    /// its sources are in the tree.
    Snapshot {
        index: usize,
        loaded: bool,
    },
    /// A regular file: its entry (for a hard link, the first name's), which says
    /// where its content is.
    File {
        snapshot: usize,
        entry: Box<FileEntry>,
    },
    Symlink(Vec<u8>),
    /// A fifo or device node: shown, never opened.
    Special,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Char,
    Block,
}

#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: SystemTime,
    pub rdev: u32,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub parent: u64,
    pub attr: Attr,
    pub what: What,
    pub children: BTreeMap<OsString, u64>,
}

/// Every inode, numbered from 1 (the root) in the order they were made.
#[derive(Debug)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
}

pub(crate) const ROOT: u64 = 1;

fn folder(mtime: SystemTime) -> Attr {
    Attr {
        kind: Kind::Dir,
        mode: 0o555,
        uid: 0,
        gid: 0,
        size: 0,
        mtime,
        rdev: 0,
    }
}

fn time_of(secs: i64, nsec: u32) -> SystemTime {
    let at = Duration::new(secs.unsigned_abs(), nsec.min(999_999_999));
    if secs >= 0 {
        UNIX_EPOCH + at
    } else {
        UNIX_EPOCH.checked_sub(at).unwrap_or(UNIX_EPOCH)
    }
}

/// A device number as the kernel's FUSE attributes carry it (`new_encode_dev`).
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// Only names a walk could have produced.
fn safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Tree {
    /// The root, with one (unloaded) folder per snapshot id, finished at `times`.
    pub(crate) fn new(snapshots: &[(String, SystemTime)]) -> Tree {
        let mut tree = Tree {
            nodes: vec![Node {
                parent: ROOT,
                attr: folder(SystemTime::now()),
                what: What::Dir,
                children: BTreeMap::new(),
            }],
        };
        for (index, (id, at)) in snapshots.iter().enumerate() {
            if safe_name(id.as_bytes()) {
                tree.add(
                    ROOT,
                    OsString::from(id),
                    folder(*at),
                    What::Snapshot {
                        index,
                        loaded: false,
                    },
                );
            }
        }
        tree
    }

    pub(crate) fn get(&self, ino: u64) -> Option<&Node> {
        let i = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.nodes.get(i)
    }

    fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        let i = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.nodes.get_mut(i)
    }

    pub(crate) fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.get(parent)?.children.get(name).copied()
    }

    fn add(&mut self, parent: u64, name: OsString, attr: Attr, what: What) -> u64 {
        let ino = self.nodes.len() as u64 + 1;
        self.nodes.push(Node {
            parent,
            attr,
            what,
            children: BTreeMap::new(),
        });
        if let Some(p) = self.get_mut(parent) {
            p.children.insert(name, ino);
        }
        ino
    }

    /// The snapshot folder `ino` needs its manifest read: `Some(index)`.
    pub(crate) fn unloaded(&self, ino: u64) -> Option<usize> {
        match self.get(ino)?.what {
            What::Snapshot {
                index,
                loaded: false,
            } => Some(index),
            _ => None,
        }
    }

    pub(crate) fn mark_loaded(&mut self, ino: u64) {
        if let Some(Node {
            what: What::Snapshot { loaded, .. },
            ..
        }) = self.get_mut(ino)
        {
            *loaded = true;
        }
    }

    /// Adds directory source `name` of snapshot `snapshot` (folder `snap_ino`) with
    /// its entries, in walk order (a folder before what is in it). Entries whose
    /// folder is not in the tree, or whose name could not come from a walk, are
    /// left out; the count of those is returned.
    pub(crate) fn add_source(
        &mut self,
        snap_ino: u64,
        snapshot: usize,
        name: &str,
        entries: impl Iterator<Item = std::io::Result<FileEntry>>,
    ) -> std::io::Result<u64> {
        let mtime = self.get(snap_ino).map_or(UNIX_EPOCH, |n| n.attr.mtime);
        if !safe_name(name.as_bytes()) {
            return Ok(0);
        }
        let top = self.add(snap_ino, OsString::from(name), folder(mtime), What::Dir);
        let mut by_path: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut skipped = 0;
        for e in entries {
            let e = e?;
            let attr = Attr {
                kind: match e.kind {
                    EntryKind::Dir => Kind::Dir,
                    EntryKind::File | EntryKind::Hardlink => Kind::File,
                    EntryKind::Symlink => Kind::Symlink,
                    EntryKind::Fifo => Kind::Fifo,
                    EntryKind::Char => Kind::Char,
                    EntryKind::Block => Kind::Block,
                },
                mode: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
                size: e.size,
                mtime: time_of(e.mtime, e.mtime_nsec),
                rdev: e.rdev.map_or(0, |(ma, mi)| encode_dev(ma, mi)),
            };
            let path = e.path.as_bytes().to_vec();
            if e.path.is_root() {
                if let Some(n) = self.get_mut(top) {
                    n.attr = attr;
                }
                continue;
            }
            let (parent, leaf) = match path.iter().rposition(|b| *b == b'/') {
                Some(i) => (by_path.get(&path[..i]).copied(), &path[i + 1..]),
                None => (Some(top), &path[..]),
            };
            let Some(parent) = parent.filter(|_| safe_name(leaf)) else {
                skipped += 1;
                continue;
            };
            let what = match e.kind {
                EntryKind::Dir => What::Dir,
                EntryKind::File => What::File {
                    snapshot,
                    entry: Box::new(e.clone()),
                },
                EntryKind::Hardlink => {
                    // The first name comes first in walk order: its node says where
                    // the content is.
                    let first = e
                        .link
                        .as_ref()
                        .and_then(|l| by_path.get(l.as_bytes()))
                        .and_then(|i| self.get(*i));
                    match first {
                        Some(Node {
                            what: w @ What::File { .. },
                            attr: first_attr,
                            ..
                        }) => {
                            let (w, a) = (w.clone(), first_attr.clone());
                            self.add(parent, OsStr::from_bytes(leaf).into(), a, w);
                            continue;
                        }
                        _ => {
                            skipped += 1;
                            continue;
                        }
                    }
                }
                EntryKind::Symlink => What::Symlink(
                    e.link
                        .as_ref()
                        .map(|l| l.as_bytes().to_vec())
                        .unwrap_or_default(),
                ),
                EntryKind::Fifo | EntryKind::Char | EntryKind::Block => What::Special,
            };
            // Folders hold what follows; a file may be a hard link's first name.
            let named = matches!(e.kind, EntryKind::Dir | EntryKind::File);
            let ino = self.add(parent, OsStr::from_bytes(leaf).into(), attr, what);
            if named {
                by_path.insert(path, ino);
            }
        }
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> std::io::Result<FileEntry> {
        let mut e = FileEntry::bare(path, kind);
        e.mode = 0o640;
        e.uid = 1001;
        e.size = 5;
        Ok(e)
    }

    #[test]
    fn sources_become_folders_and_names_that_no_walk_makes_are_left_out() {
        let mut tree = Tree::new(&[("s1".into(), UNIX_EPOCH)]);
        let snap = tree.child(ROOT, OsStr::new("s1")).expect("snapshot");
        assert_eq!(tree.unloaded(snap), Some(0));
        let mut link = FileEntry::bare("a/l", EntryKind::Hardlink);
        link.link = Some(coffer_plugins::RawPath::from_bytes(b"a/f"));
        let skipped = tree
            .add_source(
                snap,
                0,
                "files",
                vec![
                    entry(".", EntryKind::Dir),
                    entry("a", EntryKind::Dir),
                    entry("a/f", EntryKind::File),
                    Ok(link),
                    entry("a/..", EntryKind::File),
                    entry("missing/x", EntryKind::File),
                ]
                .into_iter(),
            )
            .expect("added");
        tree.mark_loaded(snap);
        assert_eq!(tree.unloaded(snap), None);
        assert_eq!(skipped, 2);
        let files = tree.child(snap, OsStr::new("files")).expect("source");
        let a = tree.child(files, OsStr::new("a")).expect("a");
        let f = tree
            .get(tree.child(a, OsStr::new("f")).expect("f"))
            .expect("node");
        assert_eq!((f.attr.mode, f.attr.uid, f.attr.size), (0o640, 1001, 5));
        let l = tree
            .get(tree.child(a, OsStr::new("l")).expect("l"))
            .expect("node");
        assert!(matches!(&l.what, What::File { entry, .. } if entry.path.as_bytes() == b"a/f"));
        assert_eq!(tree.get(a).expect("a").children.len(), 2);
    }
}
