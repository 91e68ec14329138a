//! `coffer diff`: what changed between two snapshots, entry by entry, from their
//! manifests alone. Both file lists are in walk order (the order
//! `walk_ahead` produces: depth first, each directory's names sorted by bytes),
//! so they are compared by a streaming merge, like `comm` on two sorted files:
//! neither list is ever held in memory, whatever the size of the tree.

use crate::cli::entries::{
    EntryJson, Ordered, Out, directory_sources, mode_string, owner, shown_path,
};
use crate::cli::{DiffArgs, Reader, job as find_job, open_reader, read_manifest, trust_of};
use crate::exit::{self, usage};
use crate::format::{Manifest, SourceManifest};
use crate::restore::in_order::walk_order;
use crate::units::bytes;
use anyhow::{Context, Result};
use coffer_config::{Config, SourceType};
use coffer_plugins::entry_log::EntryLog;
use coffer_plugins::{EntryKind, FileEntry, RawPath};
use serde::Serialize;
use std::cmp::Ordering;
use tokio::runtime::Handle;

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

/// How an entry present in both snapshots differs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Difference {
    Same,
    /// Only the modification time.
    Touched,
    /// Each aspect that changed (`content`, `mode`, ...), with a human
    /// description of it (`mode -rw-r--r-- -> -rw-------`).
    Changed(Vec<(&'static str, String)>),
}

/// What differs between the two entries of one path; the mtime counts only when
/// nothing else does.
pub(crate) fn compare(a: &FileEntry, b: &FileEntry) -> Difference {
    let mut what = Vec::new();
    if a.kind != b.kind {
        what.push((
            "type",
            format!("type {} -> {}", kind_name(a.kind), kind_name(b.kind)),
        ));
    } else {
        if a.kind == EntryKind::File && (a.size != b.size || a.blake3 != b.blake3) {
            what.push((
                "content",
                if a.size == b.size {
                    "content".to_string()
                } else {
                    format!("content {} -> {}", bytes(a.size), bytes(b.size))
                },
            ));
        }
        if a.link != b.link {
            let shown =
                |l: &Option<RawPath>| l.as_ref().map_or_else(String::new, |l| l.to_string());
            what.push((
                "link",
                format!("link {} -> {}", shown(&a.link), shown(&b.link)),
            ));
        }
        if a.rdev != b.rdev {
            what.push(("device", "device numbers".to_string()));
        }
    }
    if a.mode != b.mode {
        what.push((
            "mode",
            format!(
                "mode {} -> {}",
                mode_string(a.kind, a.mode),
                mode_string(b.kind, b.mode)
            ),
        ));
    }
    if (a.uid, a.gid, &a.user, &a.group) != (b.uid, b.gid, &b.user, &b.group) {
        what.push(("owner", format!("owner {} -> {}", owner(a), owner(b))));
    }
    if a.xattrs != b.xattrs || a.acl_names != b.acl_names {
        what.push(("xattrs", "extended attributes".to_string()));
    }
    if !what.is_empty() {
        Difference::Changed(what)
    } else if (a.mtime, a.mtime_nsec) != (b.mtime, b.mtime_nsec) {
        Difference::Touched
    } else {
        Difference::Same
    }
}

fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::Dir => "dir",
        EntryKind::File => "file",
        EntryKind::Symlink => "symlink",
        EntryKind::Hardlink => "hardlink",
        EntryKind::Fifo => "fifo",
        EntryKind::Char => "char",
        EntryKind::Block => "block",
    }
}

/// The bytes of content an entry holds: a regular file's size (a hard link's
/// content is counted at its first name).
fn content_size(e: &FileEntry) -> u64 {
    if e.kind == EntryKind::File { e.size } else { 0 }
}

#[derive(Default, Serialize)]
struct Totals {
    added: u64,
    removed: u64,
    changed: u64,
    /// Only the mtime changed.
    touched: u64,
    /// Content of added files, and the new content of changed ones.
    bytes_added: u64,
    /// Content of removed files, and the old content of changed ones.
    bytes_removed: u64,
}

#[derive(Serialize)]
struct ChangeJson<'a> {
    record: &'static str,
    change: &'static str,
    source: &'a str,
    path: &'a RawPath,
    what: Vec<&'static str>,
    before: Option<EntryJson<'a>>,
    after: Option<EntryJson<'a>>,
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    record: &'static str,
    from: &'a str,
    to: &'a str,
    #[serde(flatten)]
    totals: &'a Totals,
}

pub fn run(rt: &Handle, cfg: &Config, args: &DiffArgs) -> Result<u8> {
    let job = find_job(cfg, &args.from.job)?;
    let Reader { target, ids } = open_reader(
        cfg,
        job,
        "diff",
        args.from.target.as_deref(),
        args.from.identity.as_deref(),
    )?;
    let markers = crate::repo::snapshots(rt, &target, &job.name)?;
    let trust = trust_of(cfg, &args.from.trust);
    crate::repo::vet_signers(&trust, &markers, &job.name, &target.name)?;
    let pick = |which: &str| {
        crate::repo::pick_trusted(markers.clone(), which, &job.name, &target.name, &trust)
    };
    let (marker_a, marker_b) = (pick(&args.a)?, pick(&args.b)?);
    let old = read_manifest(rt, cfg, &target, &ids, &marker_a)?;
    let new = read_manifest(rt, cfg, &target, &ids, &marker_b)?;
    let pairs = source_pairs(&old, &new, args.source.as_deref())?;

    let mut out = Out::new();
    let mut totals = Totals::default();
    // A source only one snapshot has is compared with an empty list.
    let empty = EntryLog::default();
    for (name, a, b) in pairs {
        let list =
            |src, id: &str| file_list(src, &empty, format!("source {name} of snapshot {id}"));
        let merge = Merge::new(list(a, &marker_a.id)?, list(b, &marker_b.id)?);
        for pair in merge {
            report(&pair?, name, args.json, &mut totals, &mut out)?;
        }
    }
    if args.json {
        out.json(&SummaryJson {
            record: "summary",
            from: &marker_a.id,
            to: &marker_b.id,
            totals: &totals,
        })?;
    } else {
        out.line(format_args!(
            "{} added, {} removed, {} changed, {} touched (mtime only); {} added, {} removed",
            totals.added,
            totals.removed,
            totals.changed,
            totals.touched,
            bytes(totals.bytes_added),
            bytes(totals.bytes_removed)
        ))?;
    }
    out.flush()?;
    Ok(exit::OK)
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

/// Prints one step of the merge, if it is a change, and counts it.
fn report<W: std::io::Write>(
    pair: &Pair,
    source: &str,
    json: bool,
    t: &mut Totals,
    out: &mut Out<W>,
) -> Result<()> {
    let (change, before, after, what) = match pair {
        Pair::Old(a) => {
            t.removed += 1;
            t.bytes_removed += content_size(a);
            ("-", Some(a), None, Vec::new())
        }
        Pair::New(b) => {
            t.added += 1;
            t.bytes_added += content_size(b);
            ("+", None, Some(b), Vec::new())
        }
        Pair::Both(a, b) => match compare(a, b) {
            Difference::Same => return Ok(()),
            Difference::Touched => {
                t.touched += 1;
                ("T", Some(a), Some(b), Vec::new())
            }
            Difference::Changed(what) => {
                t.changed += 1;
                if what.iter().any(|(k, _)| matches!(*k, "content" | "type")) {
                    t.bytes_removed += content_size(a);
                    t.bytes_added += content_size(b);
                }
                ("M", Some(a), Some(b), what)
            }
        },
    };
    let Some(e) = after.or(before) else {
        return Ok(());
    };
    if json {
        out.json(&ChangeJson {
            record: "change",
            change,
            source,
            path: &e.path,
            what: what.iter().map(|(k, _)| *k).collect(),
            before: before.map(|a| EntryJson::of(source, a)),
            after: after.map(|b| EntryJson::of(source, b)),
        })
    } else if what.is_empty() {
        out.line(format_args!("{change}  {}", shown_path(source, &e.path)))
    } else {
        let shown: Vec<&str> = what.iter().map(|(_, s)| s.as_str()).collect();
        out.line(format_args!(
            "{change}  {}  ({})",
            shown_path(source, &e.path),
            shown.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::entries::tests::entry;

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
            .into_iter()
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
    fn changes_say_what_changed_and_mtime_alone_is_a_touch() {
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
        let keys = |d: Difference| match d {
            Difference::Changed(w) => w.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            other => panic!("not a change: {other:?}"),
        };
        let rehashed = FileEntry {
            blake3: Some("bb".into()),
            mtime: 200,
            ..a.clone()
        };
        assert_eq!(keys(compare(&a, &rehashed)), ["content"]);
        let grown = FileEntry {
            size: 6,
            ..a.clone()
        };
        assert_eq!(
            compare(&a, &grown),
            Difference::Changed(vec![("content", "content 5 B -> 6 B".into())])
        );
        let chmodded = FileEntry {
            mode: 0o600,
            user: Some("kadi".into()),
            ..a.clone()
        };
        assert_eq!(
            compare(&a, &chmodded),
            Difference::Changed(vec![
                ("mode", "mode -rw-r--r-- -> -rw-------".into()),
                ("owner", "owner 0:0 -> kadi:0".into())
            ])
        );
        let dir = entry("f", EntryKind::Dir);
        assert_eq!(keys(compare(&a, &dir)), ["type"]);
        let link = |to: &str| FileEntry {
            link: Some(RawPath::from_bytes(to.as_bytes())),
            ..entry("l", EntryKind::Symlink)
        };
        assert_eq!(
            compare(&link("x"), &link("y\n")),
            Difference::Changed(vec![("link", "link x -> y\\n".into())])
        );
    }

    #[test]
    fn changes_are_counted_and_shown_one_per_line() {
        let mut t = Totals::default();
        let mut out = Out::memory();
        let file = |p: &str, size: u64, hash: &str| FileEntry {
            size,
            blake3: Some(hash.into()),
            ..entry(p, EntryKind::File)
        };
        let mut chmod = file("m", 100, "m");
        chmod.mode = 0o600;
        let mut touch = file("t", 1, "t");
        touch.mtime = 5;
        for pair in [
            Pair::New(file("n", 10, "n")),
            Pair::Old(file("o\nerror: x", 3, "o")),
            Pair::Both(file("c", 4, "x"), file("c", 7, "y")),
            Pair::Both(file("m", 100, "m"), chmod),
            Pair::Both(file("t", 1, "t"), touch),
            Pair::Both(file("s", 1, "s"), file("s", 1, "s")),
        ] {
            report(&pair, "src", false, &mut t, &mut out).expect("report");
        }
        assert_eq!((t.added, t.removed, t.changed, t.touched), (1, 1, 2, 1));
        // The new file's 10 and the changed file's 7 in; the removed 3 and the
        // changed file's old 4 out; a chmod moves no content.
        assert_eq!((t.bytes_added, t.bytes_removed), (17, 7));
        assert_eq!(
            out.text(),
            "+  src/n\n\
             -  src/o\\nerror: x\n\
             M  src/c  (content 4 B -> 7 B)\n\
             M  src/m  (mode -rw-r--r-- -> -rw-------)\n\
             T  src/t\n"
        );
    }

    #[test]
    fn json_changes_carry_both_sides() {
        let mut t = Totals::default();
        let mut out = Out::memory();
        let mut b = entry("d/f", EntryKind::File);
        b.mode = 0o600;
        report(
            &Pair::Both(entry("d/f", EntryKind::File), b),
            "src",
            true,
            &mut t,
            &mut out,
        )
        .expect("report");
        report(
            &Pair::New(entry("g", EntryKind::Dir)),
            "src",
            true,
            &mut t,
            &mut out,
        )
        .expect("report");
        let lines: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one object per line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["change"], "M");
        assert_eq!(lines[0]["what"], serde_json::json!(["mode"]));
        assert_eq!(lines[0]["before"]["mode"], "0644");
        assert_eq!(lines[0]["after"]["mode"], "0600");
        assert_eq!(lines[1]["change"], "+");
        assert_eq!(lines[1]["path"], "g");
        assert_eq!(lines[1]["before"], serde_json::Value::Null);
        assert_eq!(lines[1]["after"]["type"], "dir");
    }
}
