//! Unit tests of `entry_log`, apart because with them the file would pass 400 lines.

use super::*;
use crate::tree::entry::RawPath;

fn entry(i: u32, kind: EntryKind) -> FileEntry {
    FileEntry {
        path: RawPath::from_bytes(format!("dir/f{i}").as_bytes()),
        kind,
        size: u64::from(i),
        mode: 0o640,
        uid: i,
        gid: 0,
        user: Some("kadi".into()),
        group: None,
        mtime: 1_700_000_000 + i64::from(i),
        mtime_nsec: i,
        blake3: Some(format!("{i:064x}")),
        link: None,
        rdev: None,
        changed: i.is_multiple_of(7),
        padding: u64::from(i % 5),
        xattrs: Default::default(),
        acl_names: Default::default(),
        flags: Vec::new(),
        content: None,
        sparse: None,
        chunks: None,
    }
}

#[test]
fn entries_come_back_in_order_and_serialize_as_an_array() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EntryLog::create_in(dir.path()).expect("create");
    let want: Vec<FileEntry> = (0..5000)
        .map(|i| {
            entry(
                i,
                if i % 10 == 0 {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                },
            )
        })
        .collect();
    for e in &want {
        log.push(e).expect("push");
    }
    log.finish().expect("finish");
    assert_eq!((log.len(), log.files()), (5000, 4500));
    let got: Vec<FileEntry> = log
        .iter()
        .expect("iter")
        .map(|e| e.expect("entry"))
        .collect();
    assert_eq!(got, want);
    // Read twice, and as the JSON array the manifest holds.
    let json = serde_json::to_string(&log).expect("serialize");
    let back: Vec<FileEntry> = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, want);
    let again: EntryLog = serde_json::from_str(&json).expect("parse into a log");
    assert_eq!((again.len(), again.files()), (5000, 4500));
    let got: Vec<FileEntry> = again
        .iter()
        .expect("iter")
        .map(|e| e.expect("entry"))
        .collect();
    assert_eq!(got, want);
    // Nothing named was left in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).expect("read_dir").count(), 0);
}

#[test]
fn a_bounded_read_stops_at_the_first_entry_over_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let three = format!(
        "[[{}],[{}]]",
        serde_json::to_string(&entry(1, EntryKind::File)).expect("json"),
        [2, 3]
            .map(|i| serde_json::to_string(&entry(i, EntryKind::Dir)).expect("json"))
            .join(",")
    );
    // Two logs share the bound.
    let read = |max| {
        spill_into_at_most(dir.path(), max, "too many".into(), || {
            serde_json::from_str::<Vec<EntryLog>>(&three)
        })
    };
    let logs = read(3).expect("three entries fit a bound of three");
    assert_eq!(
        (
            logs[0].len(),
            logs[1].len(),
            logs[1].dirs(),
            logs[0].files()
        ),
        (1, 2, 2, 1)
    );
    let err = read(2).expect_err("three entries over a bound of two");
    assert!(err.to_string().contains("too many"), "{err}");
    // The bound ends with the read.
    let again: Vec<EntryLog> =
        spill_into(dir.path(), || serde_json::from_str(&three)).expect("no bound outside");
    assert_eq!(again.len(), 2);
}

#[test]
fn sparse_files_count_their_holes() {
    let mut e = entry(9, EntryKind::File);
    e.size = 1 << 40;
    e.sparse = Some(vec![(0, 4096), (1 << 30, 8192)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EntryLog::create_in(dir.path()).expect("create");
    log.push(&e).expect("push");
    log.push(&entry(3, EntryKind::File)).expect("push");
    assert_eq!((log.sparse(), log.holes()), (1, (1 << 40) - 12288));
}

#[test]
fn an_empty_log_is_an_empty_array() {
    let log = EntryLog::default();
    assert_eq!(serde_json::to_string(&log).expect("serialize"), "[]");
    assert!(log.is_empty());
}
