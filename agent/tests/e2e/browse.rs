//! `coffer ls`, `find` and `diff` against real snapshots on a local target, in both
//! formats: a tree is backed up, changed (a file added, one deleted, one
//! rewritten, one chmodded, one renamed, one touched), backed up again, and the
//! three commands must say exactly that, as text and as JSON. A file name with a
//! newline must come out escaped, never as a line of its own; a damaged manifest
//! must be reported (exit 1) without hiding the other snapshots.

use crate::common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The mtime every file starts with, and what the touched and rewritten ones get.
const T0: i64 = 1_577_934_245; // 2020-01-02T03:04:05Z
const T1: i64 = 1_609_556_645; // 2021-01-02T03:04:05Z

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, data).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn set_mtime(root: &Path, rel: &str, secs: i64) {
    sh(&format!(
        "touch -h -d @{secs} '{}'",
        root.join(rel).display()
    ));
}

/// Snapshot ids are to the second: the next backup must start in a later one, or
/// the two ids could sort either way.
fn next_second() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    std::thread::sleep(
        Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()))
            + Duration::from_millis(50),
    );
}

/// An `ls` line as the command lays it out.
fn ls_line(mode: &str, size: u64, mtime: &str, path: &str) -> String {
    format!("{mode} {:<17} {size:>12} {mtime} {path}", "root:root")
}

/// The path column of `ls` lines (the last field: these names have no spaces).
fn paths(out: &str) -> Vec<&str> {
    out.lines()
        .map(|l| {
            l.split(' ')
                .filter(|f| !f.is_empty())
                .nth(4)
                .expect("a path column")
        })
        .collect()
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

const A_OLD: &[u8] = b"alpha\n";
const A_NEW: &[u8] = b"alpha, second version\n";
const RENAMED: &[u8] = b"rename me\n";
const GONE: &[u8] = b"delete me\n";
const ADDED: &[u8] = b"%PDF added later\n";

/// Backs up the first tree, changes it, backs up again; returns the world, the
/// tree and the two ids, oldest first.
fn two_snapshots(format: u32) -> (World, tempfile::TempDir, String, String) {
    require_root("reads owners as root:root and runs backups");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("tree");
    write(&root, "docs/a.txt", A_OLD, 0o644);
    write(&root, "docs/b.txt", b"bravo\n", 0o644);
    write(&root, "docs/old-name.txt", RENAMED, 0o640);
    write(&root, "docs.txt", b"beside docs, not in it\n", 0o644);
    write(&root, "gone.txt", GONE, 0o644);
    write(&root, "report.pdf", b"%PDF one\n", 0o644);
    write(&root, "sub/deep/report.pdf", b"%PDF two\n", 0o644);
    write(&root, "touched.txt", b"same\n", 0o644);
    std::os::unix::fs::symlink("docs/a.txt", root.join("link")).expect("symlink");
    for f in [
        "docs/a.txt",
        "docs/b.txt",
        "docs/old-name.txt",
        "docs.txt",
        "gone.txt",
        "report.pdf",
        "sub/deep/report.pdf",
        "touched.txt",
        "link",
    ] {
        set_mtime(&root, f, T0);
    }
    let format_line = if format == 1 { "format = 1\n" } else { "" };
    let world = World::new(&format!("{format_line}{}", dir_source("files", &root, "")));
    let first = world.backup();

    write(&root, "added.pdf", ADDED, 0o644);
    std::fs::remove_file(root.join("gone.txt")).expect("delete");
    write(&root, "docs/a.txt", A_NEW, 0o644);
    set_mtime(&root, "docs/a.txt", T1);
    std::fs::set_permissions(
        root.join("docs/b.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::rename(
        root.join("docs/old-name.txt"),
        root.join("docs/new-name.txt"),
    )
    .expect("rename");
    set_mtime(&root, "touched.txt", T1);
    set_mtime(&root, "added.pdf", T1);
    next_second();
    let second = world.backup();
    assert_eq!(world.snapshots(), [first.clone(), second.clone()]);
    (world, tmp, first, second)
}

fn ls_find_and_diff(format: u32) {
    let (world, _tmp, first, second) = two_snapshots(format);
    let t0 = "2020-01-02T03:04:05Z";
    let t1 = "2021-01-02T03:04:05Z";

    // ls: the whole latest snapshot, in walk order (`docs/...` before `docs.txt`).
    let all = world.ok(&["ls", "--job", "app"]);
    assert_eq!(
        paths(&all),
        [
            "files/",
            "files/added.pdf",
            "files/docs",
            "files/docs/a.txt",
            "files/docs/b.txt",
            "files/docs/new-name.txt",
            "files/docs.txt",
            "files/link",
            "files/report.pdf",
            "files/sub",
            "files/sub/deep",
            "files/sub/deep/report.pdf",
            "files/touched.txt",
        ],
        "{all}"
    );
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines.contains(&ls_line("-rw-------", 6, t0, "files/docs/b.txt").as_str()),
        "{all}"
    );
    assert!(
        lines.contains(&ls_line("-rw-r--r--", A_NEW.len() as u64, t1, "files/docs/a.txt").as_str()),
        "{all}"
    );
    assert!(
        lines.contains(&ls_line("lrwxrwxrwx", 0, t0, "files/link -> docs/a.txt").as_str()),
        "{all}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("drwx") && l.ends_with(" files/docs")),
        "{all}"
    );
    // The first snapshot, by id.
    let old = world.ok(&["ls", "--job", "app", "--snapshot", &first]);
    let old_paths = paths(&old);
    assert!(old_paths.contains(&"files/gone.txt"), "{old}");
    assert!(old_paths.contains(&"files/docs/old-name.txt"), "{old}");
    assert!(!old_paths.contains(&"files/added.pdf"), "{old}");
    assert!(
        old.lines()
            .any(|l| l == ls_line("-rw-r--r--", 6, t0, "files/docs/b.txt")),
        "{old}"
    );

    // ls PATH: the entry and what is under it, not its neighbour `docs.txt`; the
    // same with the source named in front, or given with --source.
    let docs = [
        "files/docs",
        "files/docs/a.txt",
        "files/docs/b.txt",
        "files/docs/new-name.txt",
    ];
    for args in [
        &["ls", "--job", "app", "docs"][..],
        &["ls", "--job", "app", "files/docs/"],
        &["ls", "--job", "app", "--source", "files", "/docs"],
    ] {
        let out = world.ok(args);
        assert_eq!(paths(&out), docs, "{args:?}:\n{out}");
    }
    let one = world.ok(&["ls", "--job", "app", "sub/deep/report.pdf"]);
    assert_eq!(
        one,
        format!(
            "{}\n",
            ls_line("-rw-r--r--", 9, t0, "files/sub/deep/report.pdf")
        )
    );
    let whole_source = world.ok(&["ls", "--job", "app", "files"]);
    assert_eq!(whole_source, all);
    world.expect(&["ls", "--job", "app", "docs/nothing-here"], 2);
    world.expect(&["ls", "--job", "app", "--source", "nope"], 2);
    world.expect(&["ls", "--job", "nope"], 2);
    world.expect(
        &["ls", "--job", "app", "--snapshot", "20200101T000000Z-0000"],
        2,
    );

    // ls --json: one object per entry, the same entries.
    let json = json_lines(&world.ok(&["ls", "--job", "app", "--json"]));
    assert_eq!(json.len(), lines.len());
    let b = json
        .iter()
        .find(|v| v["path"] == "docs/b.txt")
        .expect("docs/b.txt in ls --json");
    assert_eq!(b["source"], "files");
    assert_eq!(b["type"], "file");
    assert_eq!(b["mode"], "0600");
    assert_eq!(b["user"], "root");
    assert_eq!(b["group"], "root");
    assert_eq!(b["size"], 6);
    assert_eq!(b["mtime"], t0);
    assert_eq!(b["blake3"], blake3::hash(b"bravo\n").to_hex().as_str());
    let link = json.iter().find(|v| v["path"] == "link").expect("link");
    assert_eq!(link["type"], "symlink");
    assert_eq!(link["link"], "docs/a.txt");
    assert_eq!(json[0]["path"], ".");
    assert_eq!(json[0]["type"], "dir");

    // find: a name pattern matches at any depth, in every snapshot, oldest first.
    let pdfs = world.ok(&["find", "--job", "app", "*.pdf"]);
    let found: Vec<(&str, &str)> = pdfs
        .lines()
        .filter(|l| l.starts_with("20"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').filter(|f| !f.is_empty()).collect();
            (f[0], f[f.len() - 1])
        })
        .collect();
    assert_eq!(
        found,
        [
            (first.as_str(), "files/report.pdf"),
            (first.as_str(), "files/sub/deep/report.pdf"),
            (second.as_str(), "files/added.pdf"),
            (second.as_str(), "files/report.pdf"),
            (second.as_str(), "files/sub/deep/report.pdf"),
        ],
        "{pdfs}"
    );
    assert_eq!(
        pdfs.lines().last(),
        Some("5 matches in 2 of 2 snapshots"),
        "{pdfs}"
    );
    assert!(
        pdfs.lines().any(|l| l
            == format!(
                "{second} -rw-r--r-- {:>12} {t1} files/added.pdf",
                ADDED.len()
            )),
        "{pdfs}"
    );
    // Only in the second snapshot.
    let added = world.ok(&["find", "--job", "app", "added.pdf"]);
    assert_eq!(
        added,
        format!(
            "{second} -rw-r--r-- {:>12} {t1} files/added.pdf\n1 match in 1 of 2 snapshots\n",
            ADDED.len()
        )
    );
    // A pattern with a `/` is a path inside the source; `*` does not cross `/`.
    let renamed = world.ok(&["find", "--job", "app", "docs/*-name.txt"]);
    assert!(
        renamed.contains(&format!("{first} -rw-r----- ")),
        "{renamed}"
    );
    assert!(renamed.contains("files/docs/old-name.txt"), "{renamed}");
    assert!(renamed.contains("files/docs/new-name.txt"), "{renamed}");
    assert!(
        renamed.ends_with("2 matches in 2 of 2 snapshots\n"),
        "{renamed}"
    );
    let none = world.ok(&["find", "--job", "app", "*/report.pdf"]);
    assert_eq!(none, "0 matches in 0 of 2 snapshots\n");
    let json = json_lines(&world.ok(&["find", "--job", "app", "--json", "*.pdf"]));
    assert_eq!(json.len(), 6);
    assert!(json[..5].iter().all(|v| v["record"] == "match"));
    assert_eq!(json[2]["snapshot"], second.as_str());
    assert_eq!(json[2]["path"], "added.pdf");
    assert_eq!(json[2]["size"], ADDED.len());
    assert_eq!(
        json[5],
        serde_json::json!({"record": "summary", "matches": 5, "snapshots_matched": 2,
                           "snapshots": 2, "unreadable": 0})
    );
    world.expect(&["find", "--job", "app", "[unclosed"], 2);
    world.expect(&["find", "--job", "app", "--source", "nope", "*"], 2);

    // diff: exactly the changes made, in walk order, then the totals.
    let diff = world.ok(&["diff", "--job", "app", &first, &second]);
    let bytes_added = ADDED.len() + RENAMED.len() + A_NEW.len();
    let bytes_removed = RENAMED.len() + GONE.len() + A_OLD.len();
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        [
            "T  files/".to_string(),
            "+  files/added.pdf".into(),
            "T  files/docs".into(),
            format!(
                "M  files/docs/a.txt  (content {} B -> {} B)",
                A_OLD.len(),
                A_NEW.len()
            ),
            "M  files/docs/b.txt  (mode -rw-r--r-- -> -rw-------)".into(),
            "+  files/docs/new-name.txt".into(),
            "-  files/docs/old-name.txt".into(),
            "-  files/gone.txt".into(),
            "T  files/touched.txt".into(),
            format!(
                "2 added, 2 removed, 2 changed, 3 touched (mtime only); {bytes_added} B added, {bytes_removed} B removed"
            ),
        ],
        "{diff}"
    );
    // `latest` and the other direction.
    let back = world.ok(&["diff", "--job", "app", "latest", &first]);
    assert!(back.contains("-  files/added.pdf\n"), "{back}");
    assert!(back.contains("+  files/gone.txt\n"), "{back}");
    assert!(
        back.ends_with(&format!(
            "2 added, 2 removed, 2 changed, 3 touched (mtime only); {bytes_removed} B added, {bytes_added} B removed\n"
        )),
        "{back}"
    );
    let same = world.ok(&["diff", "--job", "app", &second, "latest"]);
    assert_eq!(
        same,
        "0 added, 0 removed, 0 changed, 0 touched (mtime only); 0 B added, 0 B removed\n"
    );
    world.expect(
        &["diff", "--job", "app", &first, "20200101T000000Z-0000"],
        2,
    );
    let json = json_lines(&world.ok(&["diff", "--job", "app", "--json", &first, &second]));
    let changes: Vec<(String, String, Vec<String>)> = json
        .iter()
        .filter(|v| v["record"] == "change")
        .map(|v| {
            (
                v["change"].as_str().expect("change").to_string(),
                v["path"].as_str().expect("path").to_string(),
                v["what"]
                    .as_array()
                    .expect("what")
                    .iter()
                    .map(|w| w.as_str().expect("aspect").to_string())
                    .collect(),
            )
        })
        .collect();
    let want = |c: &str, p: &str, w: &[&str]| {
        (
            c.to_string(),
            p.to_string(),
            w.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        changes,
        [
            want("T", ".", &[]),
            want("+", "added.pdf", &[]),
            want("T", "docs", &[]),
            want("M", "docs/a.txt", &["content"]),
            want("M", "docs/b.txt", &["mode"]),
            want("+", "docs/new-name.txt", &[]),
            want("-", "docs/old-name.txt", &[]),
            want("-", "gone.txt", &[]),
            want("T", "touched.txt", &[]),
        ]
    );
    let b = json
        .iter()
        .find(|v| v["path"] == "docs/b.txt")
        .expect("docs/b.txt");
    assert_eq!(
        (b["before"]["mode"].as_str(), b["after"]["mode"].as_str()),
        (Some("0644"), Some("0600"))
    );
    let summary = json.last().expect("a summary");
    assert_eq!(summary["record"], "summary");
    assert_eq!(summary["from"], first.as_str());
    assert_eq!(summary["to"], second.as_str());
    assert_eq!(
        (
            &summary["added"],
            &summary["removed"],
            &summary["changed"],
            &summary["touched"]
        ),
        (
            &Value::from(2),
            &Value::from(2),
            &Value::from(2),
            &Value::from(3)
        )
    );
    assert_eq!(summary["bytes_added"], bytes_added);
    assert_eq!(summary["bytes_removed"], bytes_removed);

    // A damaged manifest: find reports that snapshot, still searches the other,
    // and exits 1; ls and diff of it fail with exit 1. (Format 2 keeps manifests
    // as chunks shared between snapshots: damage there hits both; what a reader
    // does with a manifest it cannot read is the same.)
    if format != 1 {
        return;
    }
    let manifest = world.snapshot_dir(&first).join("manifest.json.zst.age");
    let mut bytes = std::fs::read(&manifest).expect("read manifest");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&manifest, bytes).expect("damage manifest");
    let out = world.run(&["find", "--job", "app", "*.pdf"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("snapshot {first}")), "{stderr}");
    assert!(!stdout.contains(&first), "{stdout}");
    assert!(
        stdout.ends_with("3 matches in 1 of 2 snapshots (1 could not be read)\n"),
        "{stdout}"
    );
    world.expect(&["ls", "--job", "app", "--snapshot", &first], 1);
    world.expect(&["diff", "--job", "app", &first, &second], 1);
    let json = json_lines(&world.expect(&["find", "--job", "app", "--json", "*.pdf"], 1));
    assert_eq!(json[0]["record"], "unreadable");
    assert_eq!(json[0]["snapshot"], first.as_str());
    assert_eq!(json.last().expect("summary")["unreadable"], 1);
}

#[test]
fn ls_find_and_diff_read_format_2_snapshots() {
    ls_find_and_diff(2);
}

#[test]
fn ls_find_and_diff_read_format_1_snapshots() {
    ls_find_and_diff(1);
}

#[test]
fn a_newline_in_a_name_is_shown_escaped() {
    require_root("runs backups as root");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("tree");
    write(&root, "a\nerror: x", b"forged?\n", 0o644);
    write(&root, "plain", b"plain\n", 0o644);
    let world = World::new(&dir_source("files", &root, ""));
    let first = world.backup();

    let ls = world.ok(&["ls", "--job", "app"]);
    assert_eq!(ls.lines().count(), 3, "{ls}");
    assert!(!ls.lines().any(|l| l.starts_with("error")), "{ls}");
    assert!(ls.contains(" files/a\\nerror: x\n"), "{ls}");
    let json = json_lines(&world.ok(&["ls", "--job", "app", "--json"]));
    assert!(json.iter().any(|v| v["path"] == "a\nerror: x"), "{json:?}");

    let found = world.ok(&["find", "--job", "app", "a*"]);
    assert_eq!(found.lines().count(), 2, "{found}");
    assert!(found.contains(" files/a\\nerror: x\n"), "{found}");

    write(&root, "b\nerror: y", b"another\n", 0o644);
    std::fs::remove_file(root.join("a\nerror: x")).expect("delete");
    next_second();
    let second = world.backup();
    let diff = world.ok(&["diff", "--job", "app", &first, &second]);
    assert_eq!(
        diff.lines()
            .filter(|l| !l.starts_with('T'))
            .collect::<Vec<_>>(),
        [
            "-  files/a\\nerror: x",
            "+  files/b\\nerror: y",
            "1 added, 1 removed, 0 changed, 1 touched (mtime only); 8 B added, 8 B removed",
        ],
        "{diff}"
    );
}
