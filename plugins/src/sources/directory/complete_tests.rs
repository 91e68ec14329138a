//! Unit tests of `complete`, apart because with them the file would pass 400 lines.

use super::*;
use crate::tree::walk_ahead::{self, WalkOptions};

fn referenced(paths: &[(&str, u64)]) -> Vec<Referenced> {
    paths
        .iter()
        .map(|(p, s)| Referenced {
            path: p.to_string(),
            size: Some(*s),
        })
        .collect()
}

/// The walk of `walked` with the completer, as (path, where from) in order.
fn merged(
    walked: &Path,
    earlier: &Path,
    refs: &[Referenced],
    excludes: &Excludes,
) -> (Vec<String>, Vec<Completed>) {
    let mut c = Completer::new(
        refs,
        walked.to_path_buf(),
        vec![(earlier.to_path_buf(), CompletedFrom::EarlierSnapshot)],
        excludes,
    );
    let mut out = Vec::new();
    std::thread::scope(|scope| {
        let walk = walk_ahead::spawn(
            scope,
            WalkOptions {
                root: walked,
                one_file_system: false,
                excludes,
                open_files: false,
            },
        );
        for e in walk {
            let e = e.expect("walk");
            for t in c.take(e) {
                out.push(t);
            }
        }
    });
    out.extend(c.rest());
    let shown = out
        .iter()
        .map(|t| {
            let root = if t.entry.abs.starts_with(earlier) {
                "earlier"
            } else {
                "walked"
            };
            format!(
                "{}:{}",
                root,
                String::from_utf8_lossy(t.entry.rel.as_bytes())
            )
        })
        .collect();
    (shown, c.completed)
}

fn write(root: &Path, rel: &str, len: usize) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, vec![7u8; len]).expect("write");
}

#[test]
fn missing_files_and_their_folders_come_from_the_earlier_tree_in_walk_order() {
    let t = tempfile::tempdir().expect("tempdir");
    let (walked, earlier) = (t.path().join("walked"), t.path().join("earlier"));
    write(&walked, "a/1", 1);
    write(&walked, "c/3", 3);
    write(&walked, "c/short", 2);
    // Removed (row deleted, then file) between the two snapshots:
    write(&earlier, "a/2", 2);
    write(&earlier, "b/x/9", 9);
    write(&earlier, "c/short", 5);
    write(&earlier, "d", 4);
    // Not referenced: stays out.
    write(&earlier, "a/orphan", 1);
    let refs = referenced(&[
        ("d", 4),
        ("./a/2", 2),
        ("b/x/9", 9),
        ("c/short", 5),
        ("a/1", 1),
        ("gone", 1),
    ]);
    let (shown, completed) = merged(&walked, &earlier, &refs, &Excludes::default());
    assert_eq!(
        shown,
        [
            "walked:.",
            "walked:a",
            "walked:a/1",
            "earlier:a/2",
            "earlier:b",
            "earlier:b/x",
            "earlier:b/x/9",
            "walked:c",
            "walked:c/3",
            "earlier:c/short",
            "earlier:d",
        ]
    );
    let paths: Vec<&str> = completed.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["./a/2", "b/x/9", "c/short", "d"]);
}

#[test]
fn what_the_walk_left_out_on_purpose_or_is_not_whole_elsewhere_stays_out() {
    let t = tempfile::tempdir().expect("tempdir");
    let (walked, earlier) = (t.path().join("walked"), t.path().join("earlier"));
    write(&walked, "keep/1", 1);
    write(&walked, "cache/x", 1);
    write(&earlier, "cache/y", 1);
    write(&earlier, "tmp.part", 1);
    write(&earlier, "wrong", 3);
    std::fs::create_dir_all(earlier.join("real")).expect("mkdir");
    write(&t.path().join("outside"), "secret", 6);
    std::os::unix::fs::symlink(t.path().join("outside"), earlier.join("link")).expect("symlink");
    std::os::unix::fs::symlink(t.path().join("outside/secret"), earlier.join("real/s"))
        .expect("symlink");
    let excludes = Excludes::new(&["cache/".to_string(), "*.part".to_string()]).expect("ok");
    let refs = referenced(&[
        ("cache/y", 1),
        ("tmp.part", 1),
        ("wrong", 2),
        ("link/secret", 6),
        ("real/s", 6),
        ("../outside/secret", 6),
    ]);
    let (shown, completed) = merged(&walked, &earlier, &refs, &excludes);
    assert_eq!(shown, ["walked:.", "walked:keep", "walked:keep/1"]);
    assert!(completed.is_empty(), "{completed:?}");
}
