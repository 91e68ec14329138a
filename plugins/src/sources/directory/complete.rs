//! Completing a filesystem snapshot with the files the database's snapshot names.
//!
//! With `snapshot = "btrfs"` the databases freeze between two snapshots of the
//! tree: an earlier one, taken before any database froze, and the one walked,
//! taken once all had. A row in the database's snapshot was committed before its
//! instant. For an application that writes a file and then commits its row, the
//! file is in the later snapshot. For one that deletes a row and then removes the
//! file, a row still in the database's snapshot means its file was still there at
//! that instant, so it is in the earlier snapshot. The walk of the later snapshot
//! takes each referenced file it lacks (or holds at another size) from the earlier
//! snapshot, else from the live tree, when it is found there as a regular file of
//! the referenced size, and records where it came from. What is found nowhere is
//! left to the check, which reports it.
//!
//! A manifest's entries must come in walk order (`in_order` relies on it), so the
//! referenced paths are sorted that way and merged into the walk as it goes, with
//! the folders on their way that the walked snapshot lacks. A path the walk left
//! out on purpose (excluded, tagged, on another filesystem) stays out. Everything
//! is reached one name at a time without following symlinks: the paths come from
//! the application's database, and a link planted in the tree must not make a
//! backup that runs as root read outside it.

use crate::fs::open_at;
use crate::sources::dbquery::Referenced;
use crate::sources::source::{Completed, CompletedFrom};
use crate::tree::entry::{RawPath, is_safe_relative};
use crate::tree::exclude::Excludes;
use crate::tree::walk_ahead::{At, Entry};
use rustix::fs::FileType;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One referenced file, by its path relative to the source.
struct Want {
    rel: Vec<u8>,
    size: Option<u64>,
    /// As the query returned it, for the report.
    shown: String,
}

/// An entry to put in the stream, and whether it comes from the live tree (read
/// as a live file is: it may change while read).
pub(super) struct Taken {
    pub entry: Entry,
    pub live: bool,
}

pub(super) struct Completer<'a> {
    wanted: VecDeque<Want>,
    /// The root of the walked (later) snapshot.
    walked_root: PathBuf,
    /// Where a missing file is looked for, in this order.
    elsewhere: Vec<(PathBuf, CompletedFrom)>,
    excludes: &'a Excludes,
    /// The last entry put in the stream, and whether it is a folder: the folders
    /// in the stream above the next path are those above (or equal to) it.
    last: Option<(Vec<u8>, bool)>,
    pub completed: Vec<Completed>,
}

/// Walk order: depth first, each folder's entries by name bytes (`in_order`).
fn walk_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    Path::new(OsStr::from_bytes(a)).cmp(Path::new(OsStr::from_bytes(b)))
}

impl<'a> Completer<'a> {
    pub(super) fn new(
        referenced: &[Referenced],
        walked_root: PathBuf,
        elsewhere: Vec<(PathBuf, CompletedFrom)>,
        excludes: &'a Excludes,
    ) -> Self {
        let mut wanted: Vec<Want> = referenced
            .iter()
            .filter_map(|r| {
                let rel = r.path.trim_start_matches("./").trim_start_matches('/');
                // Only paths a walk could produce: nothing above the source.
                (is_safe_relative(rel.as_bytes()) && rel != ".").then(|| Want {
                    rel: rel.as_bytes().to_vec(),
                    size: r.size,
                    shown: r.path.clone(),
                })
            })
            .collect();
        wanted.sort_by(|a, b| walk_order(&a.rel, &b.rel));
        wanted.dedup_by(|a, b| a.rel == b.rel);
        Completer {
            wanted: wanted.into(),
            walked_root,
            elsewhere,
            excludes,
            last: None,
            completed: Vec::new(),
        }
    }

    /// What goes into the stream for the walked `entry`: the referenced files due
    /// before it that the walk skipped over, then the entry itself, or the whole
    /// file that replaces it when it is a referenced file at another size.
    pub(super) fn take(&mut self, entry: Entry) -> Vec<Taken> {
        let mut out = self.due(Some(entry.rel.as_bytes()));
        let mut entry = Taken { entry, live: false };
        if self
            .wanted
            .front()
            .is_some_and(|w| w.rel == entry.entry.rel.as_bytes())
            && let Some(w) = self.wanted.pop_front()
        {
            let md = &entry.entry.md;
            if md.is_file()
                && w.size.is_some_and(|s| s != md.len())
                && let Some(mut found) = self.find(&w, usize::MAX)
                && let Some(file) = found.pop()
            {
                entry = file;
            }
        }
        self.note(&entry.entry);
        out.push(entry);
        out
    }

    /// The referenced files after the walk's last entry that it lacked.
    pub(super) fn rest(&mut self) -> Vec<Taken> {
        self.due(None)
    }

    fn note(&mut self, e: &Entry) {
        self.last = Some((e.rel.as_bytes().to_vec(), e.md.is_dir()));
    }

    /// Referenced files that come before `next` in walk order (all, at the end).
    fn due(&mut self, next: Option<&[u8]>) -> Vec<Taken> {
        let mut out = Vec::new();
        while let Some(w) = self.wanted.front() {
            if next.is_some_and(|n| walk_order(&w.rel, n).is_ge()) {
                break;
            }
            let Some(w) = self.wanted.pop_front() else {
                break;
            };
            // The folders above it that the stream already has.
            let names: Vec<&[u8]> = w.rel.split(|b| *b == b'/').collect();
            let have = (1..names.len())
                .take_while(|&i| self.in_stream(&names[..i].join(&b'/')))
                .count()
                + 1;
            // The first name the stream lacks: if the walked snapshot has it, the
            // walk left it out on purpose (or it is not a folder): so does this.
            let first_missing = names[..have].join(&b'/');
            let walked = self.walked_root.join(OsStr::from_bytes(&first_missing));
            if std::fs::symlink_metadata(&walked).is_ok() {
                continue;
            }
            let excluded = (have..names.len()).any(|i| {
                self.excludes
                    .excluded(bytes_path(&names[..i].join(&b'/')), true)
            }) || self.excludes.excluded(bytes_path(&w.rel), false);
            if excluded {
                continue;
            }
            if let Some(found) = self.find(&w, have) {
                for t in found {
                    self.note(&t.entry);
                    out.push(t);
                }
            }
        }
        out
    }

    /// Whether the folder `dir` is in the stream, given that the walk is past it.
    fn in_stream(&self, dir: &[u8]) -> bool {
        self.last.as_ref().is_some_and(|(last, is_dir)| {
            (last == dir && *is_dir)
                || (last.starts_with(dir) && last.get(dir.len()) == Some(&b'/'))
        })
    }

    /// `w` found whole elsewhere: the folders above it from the `from`-th name on
    /// (the stream lacks them), then the file; recorded as completed.
    fn find(&mut self, w: &Want, from: usize) -> Option<Vec<Taken>> {
        for (root, whence) in &self.elsewhere {
            if let Some(found) = reach(root, w, from) {
                self.completed.push(Completed {
                    path: w.shown.clone(),
                    from: *whence,
                });
                let live = *whence == CompletedFrom::LiveTree;
                return Some(
                    found
                        .into_iter()
                        .map(|entry| Taken { entry, live })
                        .collect(),
                );
            }
        }
        None
    }
}

fn bytes_path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

/// `w` under `root`, name by name through handles, never through a symlink: the
/// folders from the `from`-th name on and the file, or `None` when any of them is
/// not what it must be (a folder, then a regular file of the referenced size).
fn reach(root: &Path, w: &Want, from: usize) -> Option<Vec<Entry>> {
    let names: Vec<&[u8]> = w.rel.split(|b| *b == b'/').collect();
    let (last, folders) = names.split_last()?;
    let top = open_at::reach_root(root, false).ok()?;
    if !top.md.is_dir() {
        return None;
    }
    let mut dir: Arc<OwnedFd> = Arc::new(top.dir?.ok()?);
    let mut out = Vec::new();
    for (i, name) in folders.iter().enumerate() {
        let name = OsStr::from_bytes(name);
        let found = open_at::reach(&dir, name, FileType::Directory, true).ok()?;
        if !found.md.is_dir() {
            return None;
        }
        let fd = Arc::new(found.dir?.ok()?);
        if i + 1 >= from {
            let rel = names[..=i].join(&b'/');
            out.push(Entry {
                abs: root.join(OsStr::from_bytes(&rel)),
                rel: RawPath::from_bytes(&rel),
                md: found.md,
                file: found.file,
                at: Some(At {
                    dir: dir.clone(),
                    name: name.to_os_string(),
                }),
            });
        }
        dir = fd;
    }
    let name = OsStr::from_bytes(last);
    let found = open_at::reach(&dir, name, FileType::RegularFile, true).ok()?;
    let whole = found.md.is_file() && w.size.is_none_or(|s| s == found.md.len());
    if !whole || !found.file.as_ref().is_some_and(Result::is_ok) {
        return None;
    }
    out.push(Entry {
        abs: root.join(OsStr::from_bytes(&w.rel)),
        rel: RawPath::from_bytes(&w.rel),
        md: found.md,
        file: found.file,
        at: Some(At {
            dir,
            name: name.to_os_string(),
        }),
    });
    Some(out)
}

#[cfg(test)]
#[path = "complete_tests.rs"]
mod tests;
