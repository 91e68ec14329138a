//! `exclude_if_present` and `exclude_caches`: a tagged directory is kept with its
//! tag file and nothing else of it, in both snapshot formats; a CACHEDIR.TAG with a
//! wrong signature, or one reached through a symlink, tags nothing; and `coffer
//! check` walks the live tree with the same rules (no "extra" files).

use crate::common::*;
use std::collections::BTreeSet;
use std::path::Path;

const SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

fn write(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

/// Every path under `root`, relative, directories included.
fn tree(root: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk");
            e.path()
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string()
        })
        .collect()
}

fn tagged_tree(data: &Path) {
    write(data, "keep.txt", b"kept");
    write(
        data,
        "cache/CACHEDIR.TAG",
        format!("{SIGNATURE}\n# a cache\n").as_bytes(),
    );
    write(data, "cache/big.bin", &noise(100_000, 1));
    write(data, "cache/sub/x", b"x");
    write(
        data,
        "fakecache/CACHEDIR.TAG",
        b"Signature: 00000000000000000000000000000000\n",
    );
    write(data, "fakecache/y", b"y");
    write(data, "linkcache/z", b"z");
    std::os::unix::fs::symlink("../cache/CACHEDIR.TAG", data.join("linkcache/CACHEDIR.TAG"))
        .expect("symlink");
    write(data, "private/.nobackup", b"");
    write(data, "private/secret.txt", b"s");
    write(data, "private/deep/w", b"w");
    // A directory named like the tag marks nothing.
    write(data, "notmarked/.nobackup/a", b"a");
}

fn expected() -> BTreeSet<String> {
    [
        "keep.txt",
        "cache",
        "cache/CACHEDIR.TAG",
        "fakecache",
        "fakecache/CACHEDIR.TAG",
        "fakecache/y",
        "linkcache",
        "linkcache/CACHEDIR.TAG",
        "linkcache/z",
        "private",
        "private/.nobackup",
        "notmarked",
        "notmarked/.nobackup",
        "notmarked/.nobackup/a",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

fn tagged_dirs_keep_only_their_tags(format: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    tagged_tree(&data);
    let world = World::new("");
    world.write_config(&format!(
        "{format}{}",
        dir_source(
            "data",
            &data,
            "exclude_if_present = [\".nobackup\"]\nexclude_caches = true"
        )
    ));
    let id = world.backup();
    let to = tmp.path().join("restored");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &id,
        "--to",
        to.to_str().expect("utf8"),
    ]);
    assert_eq!(tree(&to.join("data")), expected());
    // The live tree against the snapshot: the same rules, so nothing is extra.
    let out = world.ok(&["check", "--job", "app", "--snapshot", &id]);
    assert!(!out.contains("extra"), "{out}");

    // Without the keys everything is backed up: the tags are what excluded it.
    world.write_config(&format!("{format}{}", dir_source("data", &data, "")));
    // The new snapshot, not the newest by id: two in one second sort by chance.
    let first = world.snapshots();
    world.ok(&["backup", "app"]);
    let id = world
        .snapshots()
        .into_iter()
        .find(|s| !first.contains(s))
        .expect("a new snapshot");
    let all = tmp.path().join("all");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &id,
        "--to",
        all.to_str().expect("utf8"),
    ]);
    assert_eq!(tree(&all.join("data")), tree(&data));
}

#[test]
fn format2_tagged_dirs_keep_only_their_tags() {
    tagged_dirs_keep_only_their_tags("");
}

#[test]
fn format1_tagged_dirs_keep_only_their_tags() {
    tagged_dirs_keep_only_their_tags(FORMAT_1);
}

#[test]
fn a_tag_name_that_is_a_path_is_a_config_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let world = World::new("");
    world.write_config(&dir_source(
        "data",
        tmp.path(),
        "exclude_if_present = [\"sub/.nobackup\"]",
    ));
    let out = world.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exclude_if_present[0]"), "{err}");
}
