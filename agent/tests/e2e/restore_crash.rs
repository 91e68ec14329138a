//! `restore --force` killed (SIGKILL) at different moments of its swap must leave a
//! destination that the next `coffer restore` turns into exactly the old or exactly
//! the new contents, compared file by file by content hash. The trees have many
//! top-level entries and a large old subtree, so the swap and the removal of the old
//! contents last long enough to be hit. `tests/kill-trials` runs many more trials
//! and counts the outcomes.

use crate::common::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Path under the root -> "dir", "file <blake3>" or "link <target>".
type Tree = BTreeMap<String, String>;

fn tree_of(root: &Path) -> Tree {
    let mut t = Tree::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let e = e.expect("walk");
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let ft = e.file_type();
        let v = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path()).expect("readlink");
            format!("link {}", target.display())
        } else {
            let bytes = std::fs::read(e.path()).expect("read");
            format!("file {}", blake3::hash(&bytes).to_hex())
        };
        t.insert(rel, v);
    }
    t
}

/// Writes a tree that shares top-level names with the other one but not contents.
fn write_tree(root: &Path, tag: &str, seed: u64) {
    std::fs::create_dir_all(root.join("sub")).expect("mkdir");
    for i in 0..200 {
        std::fs::write(root.join(format!("shared-{i:03}")), noise(64, seed + i)).expect("write");
        std::fs::write(
            root.join(format!("{tag}-{i:03}")),
            noise(100, seed + 1000 + i),
        )
        .expect("write");
    }
    for i in 0..800 {
        std::fs::write(
            root.join(format!("sub/s{i:04}")),
            noise(200, seed + 2000 + i),
        )
        .expect("write");
    }
    std::os::unix::fs::symlink(format!("{tag}-000"), root.join("link")).expect("symlink");
}

/// The old contents get a large extra subtree, so that removing them takes a while.
fn write_old(root: &Path) {
    write_tree(root, "old", 1);
    for d in 0..10 {
        let dir = root.join(format!("bulk/{d}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for i in 0..300 {
            std::fs::write(
                dir.join(format!("b{i:03}")),
                noise(32, 50_000 + d * 1000 + i),
            )
            .expect("write");
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Clone, Copy, Debug)]
enum Moment {
    /// While unpacking, before the swap.
    Unpacking,
    /// As soon as any old entry has left the top level, then `ms` later.
    SwapStart(u64),
    /// As soon as the first entry that only the new tree has appears.
    FirstNew,
    /// As soon as every new top-level entry is in place (the old tree still goes).
    AllNew,
}

fn wait_then_kill(child: &mut Child, dest: &Path, moment: Moment) {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the moment {moment:?} never came"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the restore finished before the moment {moment:?} came"
        );
        let here: HashSet<String> = names(dest).into_iter().collect();
        let count = |tag: &str| {
            (0..200)
                .filter(|i| here.contains(&format!("{tag}-{i:03}")))
                .count()
        };
        let reached = match moment {
            Moment::Unpacking => here.iter().any(|n| n.starts_with(".coffer-restore-")),
            // Any old-only name gone: moved aside (or, before the journal, deleted).
            Moment::SwapStart(_) => count("old") < 200,
            Moment::FirstNew => count("new") > 0,
            Moment::AllNew => count("new") == 200,
        };
        if reached {
            break;
        }
    }
    if let Moment::SwapStart(ms) = moment {
        std::thread::sleep(Duration::from_millis(ms));
    }
    assert!(
        child.try_wait().expect("poll").is_none(),
        "the restore finished before it could be killed at {moment:?}"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

#[test]
fn a_forced_restore_killed_during_the_swap_recovers_to_old_or_new() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    write_tree(&src, "new", 7);
    let world = World::new(&dir_source("files", &src, ""));
    world.backup();
    let new = tree_of(&src);

    let moments = [
        Moment::Unpacking,
        Moment::SwapStart(0),
        Moment::FirstNew,
        Moment::AllNew,
        Moment::SwapStart(3),
        Moment::SwapStart(20),
    ];
    let (mut olds, mut news) = (0, 0);
    for (k, moment) in moments.iter().enumerate() {
        let parent = tmp.path().join(format!("trial-{k}"));
        let dest = parent.join("files");
        write_old(&dest);
        let old = tree_of(&dest);
        let parent_arg = parent.to_str().expect("utf8");
        let mut child = world
            .command(&["restore", "--job", "app", "--force", "--to", parent_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn restore");
        wait_then_kill(&mut child, &dest, *moment);

        // Recovery is the next restore of that place; without --force it then
        // refuses the (non-empty) destination, so it cannot mask a broken one by
        // restoring the snapshot all over again.
        let out = world.run(&["restore", "--job", "app", "--to", parent_arg]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "trial {k} ({moment:?}): {stderr}"
        );
        let leftovers: Vec<_> = names(&dest)
            .into_iter()
            .filter(|n| n.starts_with(".coffer-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "trial {k} ({moment:?}): recovery left {leftovers:?}\n{stderr}"
        );
        let got = tree_of(&dest);
        if got == old {
            olds += 1;
        } else if got == new {
            news += 1;
        } else {
            let missing_old = old.keys().filter(|p| !got.contains_key(*p)).count();
            let missing_new = new.keys().filter(|p| !got.contains_key(*p)).count();
            panic!(
                "trial {k} ({moment:?}): the destination is neither the old nor the new tree \
                 ({} entries; {missing_old} of the old ones and {missing_new} of the new ones missing)\n{stderr}",
                got.len()
            );
        }
        // Every kill leaves a staging folder or a journal behind, so there is
        // always something to recover and say.
        assert!(
            stderr.contains("recovered:"),
            "trial {k} ({moment:?}): no word of recovery:\n{stderr}"
        );
    }
    eprintln!("{} trials: {olds} old, {news} new, 0 broken", moments.len());

    // After recovery, a forced restore into the same place still works.
    let parent = tmp.path().join("trial-0");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--force",
        "--to",
        parent.to_str().expect("utf8"),
    ]);
    assert_eq!(tree_of(&parent.join("files")), new);
}
