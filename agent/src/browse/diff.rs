//! What changed between two snapshots, entry by entry, from their manifests
//! alone. Both file lists are in walk order (the order `walk_ahead` produces:
//! depth first, each directory's names sorted by bytes), so they are compared by
//! a streaming merge, like `comm` on two sorted files: neither list is ever held
//! in memory, whatever the size of the tree. Each change goes to the caller's
//! sink as it is found; how it is shown is the caller's business.

use super::{Ordered, Snapshots, directory_sources};
use crate::exit::usage;
use crate::format::{Manifest, SourceManifest};
use crate::restore::in_order::walk_order;
use anyhow::{Context, Result};
use coffer_config::SourceType;
use coffer_plugins::entry_log::EntryLog;
use coffer_plugins::{EntryKind, FileEntry};
use serde::Serialize;
use std::cmp::Ordering;

/// One step of the merge: a path only in the older list, only in the newer, or
/// in both.
// One pair exists at a time, moved out and dropped: boxing the larger variant
// would cost an allocation per entry to save stack bytes nobody holds.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Pair {
    Old(FileEntry),
    New(FileEntry),
    Both(FileEntry, FileEntry),
}

/// Two file lists in walk order, merged. Each list must be an `Ordered` (checked)
/// one: on lists out of order the merge would pair the wrong entries.
pub(crate) struct Merge<A, B> {
    a: A,
    b: B,
    next_a: Option<FileEntry>,
    next_b: Option<FileEntry>,
}

impl<A, B> Merge<A, B> {
    pub(crate) fn new(a: A, b: B) -> Merge<A, B> {
        Merge {
            a,
            b,
            next_a: None,
            next_b: None,
        }
    }
}

impl<A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = Result<FileEntry>>,
    B: Iterator<Item = Result<FileEntry>>,
{
    type Item = Result<Pair>;

    fn next(&mut self) -> Option<Result<Pair>> {
        if self.next_a.is_none() {
            match self.a.next() {
                Some(Ok(e)) => self.next_a = Some(e),
                Some(Err(e)) => return Some(Err(e)),
                None => {}
            }
        }
        if self.next_b.is_none() {
            match self.b.next() {
                Some(Ok(e)) => self.next_b = Some(e),
                Some(Err(e)) => return Some(Err(e)),
                None => {}
            }
        }
        Some(Ok(match (self.next_a.take(), self.next_b.take()) {
            (None, None) => return None,
            (Some(a), None) => Pair::Old(a),
            (None, Some(b)) => Pair::New(b),
            (Some(a), Some(b)) => match walk_order(a.path.as_bytes(), b.path.as_bytes()) {
                Ordering::Less => {
                    self.next_b = Some(b);
                    Pair::Old(a)
                }
                Ordering::Greater => {
                    self.next_a = Some(a);
                    Pair::New(b)
                }
                Ordering::Equal => Pair::Both(a, b),
            },
        }))
    }
}

/// One aspect of an entry that differs between the two snapshots; the caller
/// describes it from the two entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aspect {
    Type,
    Content,
    Link,
    Device,
    Mode,
    Owner,
    Xattrs,
}

impl Aspect {
    /// Its name in `--json`'s `what`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Aspect::Type => "type",
            Aspect::Content => "content",
            Aspect::Link => "link",
            Aspect::Device => "device",
            Aspect::Mode => "mode",
            Aspect::Owner => "owner",
            Aspect::Xattrs => "xattrs",
        }
    }
}

/// How an entry present in both snapshots differs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Difference {
    Same,
    /// Only the modification time.
    Touched,
    /// Each aspect that changed, in the order they are shown.
    Changed(Vec<Aspect>),
}

/// What differs between the two entries of one path; the mtime counts only when
/// nothing else does.
pub(crate) fn compare(a: &FileEntry, b: &FileEntry) -> Difference {
    let mut what = Vec::new();
    if a.kind != b.kind {
        what.push(Aspect::Type);
    } else {
        if a.kind == EntryKind::File && (a.size != b.size || a.blake3 != b.blake3) {
            what.push(Aspect::Content);
        }
        if a.link != b.link {
            what.push(Aspect::Link);
        }
        if a.rdev != b.rdev {
            what.push(Aspect::Device);
        }
    }
    if a.mode != b.mode {
        what.push(Aspect::Mode);
    }
    if (a.uid, a.gid, &a.user, &a.group) != (b.uid, b.gid, &b.user, &b.group) {
        what.push(Aspect::Owner);
    }
    if a.xattrs != b.xattrs || a.acl_names != b.acl_names {
        what.push(Aspect::Xattrs);
    }
    if !what.is_empty() {
        Difference::Changed(what)
    } else if (a.mtime, a.mtime_nsec) != (b.mtime, b.mtime_nsec) {
        Difference::Touched
    } else {
        Difference::Same
    }
}

/// The bytes of content an entry holds: a regular file's size (a hard link's
/// content is counted at its first name).
fn content_size(e: &FileEntry) -> u64 {
    if e.kind == EntryKind::File { e.size } else { 0 }
}

/// What happened to one path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Removed,
    /// Only the mtime changed.
    Touched,
    /// The aspects that changed.
    Changed(Vec<Aspect>),
}

/// One change, as the sink receives it: the entry before (none when added) and
/// after (none when removed).
pub(crate) struct Step<'p> {
    pub change: Change,
    pub before: Option<&'p FileEntry>,
    pub after: Option<&'p FileEntry>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Totals {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// Only the mtime changed.
    pub touched: u64,
    /// Content of added files, and the new content of changed ones.
    pub bytes_added: u64,
    /// Content of removed files, and the old content of changed ones.
    pub bytes_removed: u64,
}

impl Totals {
    /// Counts one step of the merge; the change it is, none when the path is the
    /// same in both.
    pub(crate) fn count<'p>(&mut self, pair: &'p Pair) -> Option<Step<'p>> {
        let (change, before, after) = match pair {
            Pair::Old(a) => {
                self.removed += 1;
                self.bytes_removed += content_size(a);
                (Change::Removed, Some(a), None)
            }
            Pair::New(b) => {
                self.added += 1;
                self.bytes_added += content_size(b);
                (Change::Added, None, Some(b))
            }
            Pair::Both(a, b) => match compare(a, b) {
                Difference::Same => return None,
                Difference::Touched => {
                    self.touched += 1;
                    (Change::Touched, Some(a), Some(b))
                }
                Difference::Changed(what) => {
                    self.changed += 1;
                    if what
                        .iter()
                        .any(|k| matches!(k, Aspect::Content | Aspect::Type))
                    {
                        self.bytes_removed += content_size(a);
                        self.bytes_added += content_size(b);
                    }
                    (Change::Changed(what), Some(a), Some(b))
                }
            },
        };
        Some(Step {
            change,
            before,
            after,
        })
    }
}

/// Which two snapshots to compare ("latest" or an id), and optionally one source.
pub(crate) struct Request<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub source: Option<&'a str>,
}

/// What a whole diff counted, and the two snapshots it compared.
pub(crate) struct Summary {
    pub from: String,
    pub to: String,
    pub totals: Totals,
}

/// Compares two snapshots of a job, source by source, handing each change (with
/// its source's name) to `sink` in walk order.
pub(crate) fn diff(
    snaps: &Snapshots<'_>,
    req: &Request<'_>,
    mut sink: impl FnMut(&str, Step<'_>) -> Result<()>,
) -> Result<Summary> {
    let markers = snaps.markers()?;
    let pick = |which: &str| {
        crate::repo::pick_trusted(
            markers.clone(),
            which,
            snaps.job,
            &snaps.target.name,
            snaps.trust,
        )
    };
    let (marker_a, marker_b) = (pick(req.from)?, pick(req.to)?);
    let old = snaps.read(&marker_a)?;
    let new = snaps.read(&marker_b)?;
    let pairs = source_pairs(&old, &new, req.source)?;
    let mut totals = Totals::default();
    // A source only one snapshot has is compared with an empty list.
    let empty = EntryLog::default();
    for (name, a, b) in pairs {
        let list =
            |src, id: &str| file_list(src, &empty, format!("source {name} of snapshot {id}"));
        let merge = Merge::new(list(a, &marker_a.id)?, list(b, &marker_b.id)?);
        for pair in merge {
            if let Some(step) = totals.count(&pair?) {
                sink(name, step)?;
            }
        }
    }
    Ok(Summary {
        from: marker_a.id,
        to: marker_b.id,
        totals,
    })
}

/// One side's file list, checked to be in walk order; `empty` where the snapshot
/// has no such source.
fn file_list<'a>(
    src: Option<&'a SourceManifest>,
    empty: &'a EntryLog,
    what: String,
) -> Result<Ordered<coffer_plugins::entry_log::Entries<'a>>> {
    let entries = src
        .map_or(empty, |s| &s.entries)
        .iter()
        .with_context(|| format!("cannot read the file list of {what}"))?;
    Ok(Ordered::new(entries, what))
}

/// A source's name and its part of each manifest (None where that snapshot has
/// no such directory source).
type Sides<'m> = (
    &'m str,
    Option<&'m SourceManifest>,
    Option<&'m SourceManifest>,
);

/// The directory sources to compare: the first snapshot's, in its order, then
/// those only the second one has.
fn source_pairs<'m>(
    old: &'m Manifest,
    new: &'m Manifest,
    only: Option<&'m str>,
) -> Result<Vec<Sides<'m>>> {
    let dir =
        |m: &'m Manifest, name: &str| m.source(name).filter(|s| s.kind == SourceType::Directory);
    if let Some(name) = only {
        return match (dir(old, name), dir(new, name)) {
            (None, None) => {
                // Says why: no such source, or not a directory.
                directory_sources(old, Some(name))?;
                Err(usage(format!(
                    "neither snapshot {} nor {} has a directory source \"{name}\"",
                    old.snapshot, new.snapshot
                )))
            }
            (a, b) => Ok(vec![(name, a, b)]),
        };
    }
    let mut pairs: Vec<_> = directory_sources(old, None)?
        .into_iter()
        .map(|a| (a.name.as_str(), Some(a), dir(new, &a.name)))
        .collect();
    for b in directory_sources(new, None)? {
        if dir(old, &b.name).is_none() {
            pairs.push((b.name.as_str(), None, Some(b)));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::super::tests::entry;
    use super::*;
    use coffer_plugins::RawPath;

    fn ordered(paths: &[&str]) -> Ordered<impl Iterator<Item = std::io::Result<FileEntry>>> {
        let list: Vec<_> = paths
            .iter()
            .map(|p| Ok(entry(p, EntryKind::File)))
            .collect();
        Ordered::new(list.into_iter(), "test".into())
    }

    fn merged(a: &[&str], b: &[&str]) -> Vec<String> {
        Merge::new(ordered(a), ordered(b))
            .map(|p| match p.expect("merge") {
                Pair::Old(a) => format!("-{}", a.path),
                Pair::New(b) => format!("+{}", b.path),
                Pair::Both(a, b) => {
                    assert_eq!(a.path, b.path);
                    format!("={}", a.path)
                }
            })
            .collect()
    }

    /// `a/b` comes right after `a` in a walk (a directory's contents follow it),
    /// before `a-b` and `a.b`, although `/` sorts after `-` and `.` as a byte: a
    /// merge on plain byte order would call `a/b` removed and added again.
    #[test]
    fn the_merge_follows_walk_order_not_byte_order() {
        let old = [".", "a", "a/b", "a-b", "a.b", "b"];
        let new = [".", "a", "a/b", "a/c", "a.b", "c"];
        assert_eq!(
            merged(&old, &new),
            ["=.", "=a", "=a/b", "+a/c", "-a-b", "=a.b", "-b", "+c"]
        );
        assert_eq!(merged(&[], &["."]), ["+."]);
        assert_eq!(merged(&[".", "x"], &[]), ["-.", "-x"]);
        assert!(merged(&[], &[]).is_empty());
    }

    /// The order the merge assumes is the order the backup's walker produces.
    #[test]
    fn walk_ahead_produces_the_order_the_merge_assumes() {
        use coffer_plugins::exclude::Excludes;
        use coffer_plugins::walk_ahead::{WalkOptions, spawn};
        let tmp = tempfile::tempdir().expect("tempdir");
        for d in ["a", "a/b", "a b", "a-b", "a.b", "A", "a0"] {
            std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
        }
        for f in ["a/b/c", "a/z", "a-b/1", "a.b/2", "a.c", "a~"] {
            std::fs::write(tmp.path().join(f), f).expect("write");
        }
        let excludes = Excludes::default();
        let walked: Vec<FileEntry> = std::thread::scope(|scope| {
            spawn(
                scope,
                WalkOptions {
                    root: tmp.path(),
                    one_file_system: false,
                    excludes: &excludes,
                    open_files: false,
                },
            )
            .map(|w| {
                let w = w.expect("walk");
                entry(&w.rel.to_string(), EntryKind::File)
            })
            .collect()
        });
        let paths: Vec<String> = walked.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(
            paths,
            [
                ".", "A", "a", "a/b", "a/b/c", "a/z", "a b", "a-b", "a-b/1", "a.b", "a.b/2", "a.c",
                "a0", "a~"
            ]
        );
        // The checked order accepts it, and a merge with itself pairs every entry.
        let again: Vec<_> = walked.iter().cloned().map(Ok).collect();
        let ordered = Ordered::new(again.into_iter(), "walk".into());
        let same: Vec<_> = walked.iter().cloned().map(Ok).collect();
        let pairs = Merge::new(ordered, Ordered::new(same.into_iter(), "walk".into()))
            .map(|p| p.expect("merge"))
            .collect::<Vec<_>>();
        assert_eq!(pairs.len(), walked.len());
        assert!(pairs.iter().all(|p| matches!(p, Pair::Both(..))));
    }

    #[test]
    fn a_list_out_of_order_stops_the_merge() {
        let got: Result<Vec<_>> =
            Merge::new(ordered(&[".", "a-b", "a/b"]), ordered(&["."])).collect();
        assert!(got.is_err());
    }

    #[test]
    fn changes_name_what_changed_and_mtime_alone_is_a_touch() {
        let a = FileEntry {
            size: 5,
            blake3: Some("aa".into()),
            mtime: 100,
            ..entry("f", EntryKind::File)
        };
        assert_eq!(compare(&a, &a.clone()), Difference::Same);
        let touched = FileEntry {
            mtime_nsec: 1,
            ..a.clone()
        };
        assert_eq!(compare(&a, &touched), Difference::Touched);
        let changed = |b: &FileEntry| compare(&a, b);
        let rehashed = FileEntry {
            blake3: Some("bb".into()),
            mtime: 200,
            ..a.clone()
        };
        assert_eq!(
            changed(&rehashed),
            Difference::Changed(vec![Aspect::Content])
        );
        let chmodded = FileEntry {
            mode: 0o600,
            user: Some("kadi".into()),
            ..a.clone()
        };
        assert_eq!(
            changed(&chmodded),
            Difference::Changed(vec![Aspect::Mode, Aspect::Owner])
        );
        let dir = entry("f", EntryKind::Dir);
        assert_eq!(changed(&dir), Difference::Changed(vec![Aspect::Type]));
        let link = |to: &str| FileEntry {
            link: Some(RawPath::from_bytes(to.as_bytes())),
            ..entry("l", EntryKind::Symlink)
        };
        assert_eq!(
            compare(&link("x"), &link("y")),
            Difference::Changed(vec![Aspect::Link])
        );
    }

    #[test]
    fn changes_are_counted_with_the_bytes_they_move() {
        let mut t = Totals::default();
        let file = |p: &str, size: u64, hash: &str| FileEntry {
            size,
            blake3: Some(hash.into()),
            ..entry(p, EntryKind::File)
        };
        let mut chmod = file("m", 100, "m");
        chmod.mode = 0o600;
        let mut touch = file("t", 1, "t");
        touch.mtime = 5;
        let changes: Vec<Option<Change>> = [
            Pair::New(file("n", 10, "n")),
            Pair::Old(file("o", 3, "o")),
            Pair::Both(file("c", 4, "x"), file("c", 7, "y")),
            Pair::Both(file("m", 100, "m"), chmod),
            Pair::Both(file("t", 1, "t"), touch),
            Pair::Both(file("s", 1, "s"), file("s", 1, "s")),
        ]
        .iter()
        .map(|p| t.count(p).map(|s| s.change))
        .collect();
        assert_eq!(
            changes,
            [
                Some(Change::Added),
                Some(Change::Removed),
                Some(Change::Changed(vec![Aspect::Content])),
                Some(Change::Changed(vec![Aspect::Mode])),
                Some(Change::Touched),
                None
            ]
        );
        assert_eq!((t.added, t.removed, t.changed, t.touched), (1, 1, 2, 1));
        // The new file's 10 and the changed file's 7 in; the removed 3 and the
        // changed file's old 4 out; a chmod moves no content.
        assert_eq!((t.bytes_added, t.bytes_removed), (17, 7));
    }
}
