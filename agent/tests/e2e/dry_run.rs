//! `coffer backup --dry-run`: the counts match the tree with its excludes, format
//! 2 says which files its index would spare, and nothing changes anywhere: the
//! target and the state directory are byte for byte as before (no lock file, no
//! index, no status), and no hook runs.

use crate::common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Every path under `root` with its contents (directories and symlinks by kind).
fn snapshot_of(root: &Path) -> BTreeMap<String, Vec<u8>> {
    if !root.exists() {
        return BTreeMap::new();
    }
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk");
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("under")
                .display()
                .to_string();
            let body = if e.file_type().is_file() {
                std::fs::read(e.path()).expect("read")
            } else if e.file_type().is_symlink() {
                b"symlink".to_vec()
            } else {
                b"dir".to_vec()
            };
            (rel, body)
        })
        .collect()
}

fn tree(data: &Path) {
    let w = |rel: &str, body: &[u8]| {
        let p = data.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    };
    w("a", &[1; 10]);
    w("b", &[2; 20]);
    w("sub/c", &[3; 30]);
    w("x.tmp", &[4; 1000]);
    w(
        "cache/CACHEDIR.TAG",
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    );
    w("cache/big", &[5; 5000]);
    std::os::unix::fs::symlink("a", data.join("link")).expect("symlink");
}

fn dry_json(world: &World) -> serde_json::Value {
    let out = world.ok(&["backup", "--dry-run", "--json", "app"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v[0]["sources"][0].clone()
}

fn dry_run_changes_nothing(format: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    tree(&data);
    let marker = tmp.path().join("hook-ran");
    let world = World::new("");
    world.write_config(&format!(
        "{format}before = [\"touch {}\"]\n{}",
        marker.display(),
        dir_source(
            "data",
            &data,
            "exclude = [\"*.tmp\"]\nexclude_caches = true"
        )
    ));
    let (target, state) = (world.target(), world.path("state"));
    let before = (snapshot_of(&target), snapshot_of(&state));

    let text = world.ok(&["backup", "--dry-run", "app"]);
    assert!(
        text.contains("4 files, 104 B in 3 folders, 1 other entry"),
        "{text}"
    );
    assert!(text.contains("1 hook(s) not run"), "{text}");
    let s = dry_json(&world);
    let n = |k: &str| s[k].as_u64();
    // a, b, sub/c and the tag; x.tmp and cache/big are excluded.
    assert_eq!(
        (n("files"), n("bytes"), n("dirs"), n("other_entries")),
        (Some(4), Some(104), Some(3), Some(1)),
        "{s}"
    );
    assert_eq!(
        before,
        (snapshot_of(&target), snapshot_of(&state)),
        "a dry run changed something"
    );
    assert!(!state.exists(), "a dry run created the state directory");
    assert!(!marker.exists(), "a dry run ran a hook");

    // After a real backup, with one file changed.
    world.backup();
    std::fs::remove_file(&marker).expect("rm");
    std::fs::write(data.join("b"), [9; 25]).expect("write");
    let before = (snapshot_of(&target), snapshot_of(&state));
    let s = dry_json(&world);
    let n = |k: &str| s[k].as_u64();
    assert_eq!((n("files"), n("bytes")), (Some(4), Some(109)), "{s}");
    if format.is_empty() {
        assert_eq!(
            (n("unchanged_files"), n("read_files"), n("read_bytes")),
            (Some(3), Some(1), Some(25)),
            "{s}"
        );
    } else {
        assert_eq!(n("unchanged_files"), None, "{s}");
    }
    assert_eq!(
        before,
        (snapshot_of(&target), snapshot_of(&state)),
        "a dry run changed something"
    );
    assert!(!marker.exists(), "a dry run ran a hook");
}

#[test]
fn format2_dry_run_counts_the_tree_and_changes_nothing() {
    dry_run_changes_nothing("");
}

#[test]
fn format1_dry_run_counts_the_tree_and_changes_nothing() {
    dry_run_changes_nothing(FORMAT_1);
}

/// Database and command sources are described, never dumped: the SQLite file's
/// size is given, the command does not run, and the database is not opened for
/// writing (its bytes are as before).
#[test]
fn a_dry_run_describes_database_and_command_sources_without_running_them() {
    require_tool("sqlite3");
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("app.db");
    let made = sh(&format!(
        "sqlite3 '{}' 'CREATE TABLE t(x); INSERT INTO t VALUES (1);'",
        db.display()
    ));
    assert!(made.status.success());
    let ran = tmp.path().join("command-ran");
    let world = World::new("");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\n\n\
         [[jobs.app.sources]]\nname = \"export\"\ntype = \"command\"\ncommand = [\"touch\", \"{}\"]\n",
        db.display(),
        ran.display()
    ));
    let before = std::fs::read(&db).expect("db");
    let out = world.ok(&["backup", "--dry-run", "--json", "app"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let sources = v[0]["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 2, "{v}");
    assert_eq!(sources[0]["name"], "db", "{v}");
    assert_eq!(
        sources[0]["bytes"].as_u64(),
        Some(before.len() as u64),
        "{v}"
    );
    assert!(
        sources[0]["what"]
            .as_str()
            .is_some_and(|w| w.contains("SQLite backup API")),
        "{v}"
    );
    assert_eq!(sources[1]["name"], "export", "{v}");
    assert!(
        sources[1]["what"]
            .as_str()
            .is_some_and(|w| w.contains("standard output")),
        "{v}"
    );
    assert!(!ran.exists(), "the dry run ran the command source");
    assert_eq!(
        std::fs::read(&db).expect("db"),
        before,
        "the database changed"
    );
    assert!(world.snapshots().is_empty());
}
