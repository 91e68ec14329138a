//! Unit tests of `walk_ahead`, apart because with them the file would pass 400 lines.

use super::*;
use crate::fs::open_at::open_dir;
use rustix::fs::{Mode, OFlags};
use std::io::Read;

fn walk(root: &Path, excludes: &Excludes, mut between: impl FnMut(usize)) -> Vec<Walked> {
    std::thread::scope(|scope| {
        let rx = spawn(
            scope,
            WalkOptions {
                root,
                one_file_system: false,
                excludes,
                open_files: true,
            },
        );
        let mut out = Vec::new();
        for item in rx {
            out.push(item);
            between(out.len());
        }
        out
    })
}

fn rels(walked: &[Walked]) -> Vec<String> {
    walked
        .iter()
        .map(|w| match w {
            Ok(e) => e.rel.to_string(),
            Err(e) => format!("error {}: {}", e.path.display(), e.err),
        })
        .collect()
}

/// Manifests list entries in the order walkdir gave; `in_order` merges on it.
#[test]
fn the_order_is_walkdirs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    for d in [
        "a",
        "a/b",
        "B",
        "a b",
        "z/y/x",
        "é",
        "excluded.tmp",
        "keep/cache",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    for f in [
        "a/1",
        "a/b/2",
        "B/3",
        "a b/4",
        "z/y/x/5",
        "é/6",
        "a.txt",
        "A",
        "_",
        "keep/x.tmp",
    ] {
        std::fs::write(root.join(f), f).expect("write");
    }
    std::os::unix::fs::symlink("a", root.join("link")).expect("symlink");
    let ex = Excludes::new(&["*.tmp".into(), "cache/".into()]).expect("excludes");
    let ours = rels(&walk(root, &ex, |_| {}));
    let theirs: Vec<String> = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| ex.admits(root, e))
        .map(|e| {
            let e = e.expect("walkdir");
            match e.path().strip_prefix(root).expect("under root") {
                r if r.as_os_str().is_empty() => ".".to_string(),
                r => r.display().to_string(),
            }
        })
        .collect();
    assert_eq!(ours, theirs);
    assert!(
        !ours
            .iter()
            .any(|r| r.contains("tmp") || r.contains("cache"))
    );
}

/// Makes `depth` nested directories of a 200-byte name under `root`, relative
/// to each other (the full path is too long for mkdir), and a file at the bottom.
fn deep_tree(root: &Path, depth: usize) -> PathBuf {
    let name = "d".repeat(200);
    let mut dir = open_dir(rustix::fs::CWD, root.as_os_str()).expect("open root");
    let mut abs = root.to_path_buf();
    for _ in 0..depth {
        rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).expect("mkdirat");
        dir = open_dir(&dir, OsStr::new(&name)).expect("open");
        abs.push(&name);
    }
    let fd = rustix::fs::openat(
        &dir,
        "deep.txt",
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .expect("create");
    rustix::io::write(&fd, b"deep").expect("write");
    rustix::fs::symlinkat("deep.txt", &dir, "deep.link").expect("symlink");
    abs.push("deep.txt");
    abs
}

#[test]
fn paths_longer_than_path_max_are_walked_read_and_attributed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let deep = deep_tree(tmp.path(), 25);
    assert!(deep.as_os_str().len() > PATH_MAX);
    assert!(
        std::fs::metadata(&deep).is_err(),
        "the full path is too long"
    );
    let walked = walk(tmp.path(), &Excludes::default(), |_| {});
    let mut entries: Vec<Entry> = walked
        .into_iter()
        .map(|w| w.map_err(|e| e.err).expect("no walk error"))
        .collect();
    assert_eq!(entries.len(), 1 + 25 + 2);
    let mut file = entries.pop().expect("file");
    let link = entries.pop().expect("link");
    assert_eq!(link.read_link().expect("readlink"), Path::new("deep.txt"));
    assert_eq!(file.abs, deep);
    let mut text = String::new();
    file.file
        .take()
        .expect("opened")
        .expect("readable")
        .read_to_string(&mut text)
        .expect("read");
    assert_eq!(text, "deep");
    // Path-taking calls reach it through its parent.
    let sys = file.sys_path();
    assert!(sys.as_os_str().len() < 100, "{}", sys.display());
    assert_eq!(std::fs::symlink_metadata(&sys).expect("lstat").len(), 4);
}

/// Names before `b`, more than the walk may queue: it cannot reach `b` until
/// the test has taken the first entries.
fn crowded(root: &Path, dir: &str) {
    std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    for i in 0..AHEAD + 50 {
        std::fs::write(root.join(format!("{dir}/f{i:04}")), b"x").expect("write");
    }
}

#[test]
fn a_directory_replaced_by_a_file_before_the_walk_reaches_it_is_that_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    crowded(&root, "a");
    std::fs::create_dir_all(root.join("b/sub")).expect("mkdir");
    let walked = walk(&root, &Excludes::default(), |n| {
        // Taken: `.`, `a`. `a` is sent only once the root is listed, so the
        // listing holds `b` as a folder. (At `.` the walker could list the root
        // between the removal and the write, and `b` was in no listing at all:
        // the test failed now and then.)
        if n == 2 {
            std::fs::remove_dir_all(root.join("b")).expect("rm");
            std::fs::write(root.join("b"), b"now a file").expect("write");
        }
    });
    let b: Vec<&Walked> = walked
        .iter()
        .filter(|w| w.as_ref().is_ok_and(|e| e.rel.as_bytes().starts_with(b"b")))
        .collect();
    assert_eq!(b.len(), 1, "{:?}", rels(&walked));
    let Ok(b) = b[0] else { unreachable!() };
    assert!(b.md.is_file());
    assert!(matches!(b.file, Some(Ok(_))));
    assert!(walked.iter().all(Result::is_ok), "{:?}", rels(&walked));
}

#[test]
fn a_directory_replaced_while_the_walk_is_inside_it_is_walked_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    crowded(&root, "b");
    std::os::unix::fs::symlink("f0000", root.join("b/zz-link")).expect("symlink");
    std::fs::create_dir(root.join("b/zz-sub")).expect("mkdir");
    let walked = walk(&root, &Excludes::default(), |n| {
        // Taken: `.`, `b`, `b/f0000`; the walk is inside `b`.
        if n == 3 {
            std::fs::rename(root.join("b"), tmp.path().join("b.old")).expect("mv");
            std::fs::write(root.join("b"), b"now a file").expect("write");
        }
    });
    assert!(walked.iter().all(Result::is_ok), "{:?}", rels(&walked));
    let last: Vec<&Entry> = walked.iter().rev().take(2).flatten().collect();
    assert_eq!(last[0].rel.to_string(), "b/zz-sub");
    assert!(last[0].md.is_dir());
    assert_eq!(last[1].rel.to_string(), "b/zz-link");
    // Its path now runs through a file; relative to its directory it is there.
    assert!(std::fs::read_link(&last[1].abs).is_err());
    assert_eq!(last[1].read_link().expect("readlink"), Path::new("f0000"));
}
