//! The index's tests (a sibling file: they are longer than the index): round
//! trips of every value, what commit and forget keep and drop, and files that
//! are not usable indexes (garbage, damage, another schema, a crash mid-run).

use super::*;
use coffer_plugins::{Chunk, Stored};
use rusqlite::params;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

const JOB: &str = "job";

fn hash(n: u8) -> String {
    to_hex(&[n; HASH_LEN])
}

#[test]
fn ids_are_lowercase_hex_of_their_exact_length_and_read_back_as_given() {
    let id = "00ff10ab".repeat(4);
    let bytes = parse_hex::<PACK_LEN>(&id, "pack id").expect("lowercase");
    assert_eq!(to_hex(&bytes), id);
    for bad in [
        id.to_uppercase(),
        id[1..].to_string(),
        format!("{}g", &id[1..]),
    ] {
        let err = parse_hex::<PACK_LEN>(&bad, "pack id").expect_err("refused");
        assert!(err.to_string().contains("lowercase hex digits"), "{err}");
    }
}

fn pack_id(n: u8) -> String {
    to_hex(&[n; PACK_LEN])
}

fn at(pack: u8, offset: u64) -> ContentRef {
    ContentRef {
        pack: pack_id(pack),
        offset,
    }
}

fn stat(n: u64) -> Stat {
    Stat {
        size: 100 + n,
        mtime: 1_700_000_000 + i64::try_from(n).expect("test"),
        mtime_nsec: 11,
        ctime: 1_700_000_100,
        ctime_nsec: 22,
        ino: 1000 + n,
        dev: 64769,
    }
}

fn pack_info(n: u8) -> PackInfo {
    PackInfo {
        id: pack_id(n),
        stored_size: 4096 + u64::from(n),
        blake3: hash(200 + n),
        content_size: 8192 + u64::from(n),
    }
}

fn open(dir: &Path) -> Index {
    let (index, note) = Index::open(dir, JOB).expect("test");
    assert_eq!(note, None);
    index
}

fn index_file(dir: &Path) -> PathBuf {
    dir.join("index").join(format!("{JOB}.sqlite"))
}

fn broken_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("index"))
        .expect("test")
        .map(|e| e.expect("test").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("job.sqlite.broken-") && !n.ends_with("-journal"))
        .collect();
    names.sort();
    names
}

/// One committed run: files a and b of source "src", content and pack 1.
fn committed(dir: &Path) -> Index {
    let mut index = open(dir);
    index.begin_run().expect("test");
    index.stage_pack(&pack_info(1)).expect("test");
    for (n, name) in [(1u8, b"a".as_slice()), (2, b"b")] {
        let content = at(1, u64::from(n) * 10);
        index
            .stage_content(&hash(n), 100 + u64::from(n), &content)
            .expect("test");
        index
            .stage_file(
                "src",
                name,
                &stat(u64::from(n)),
                &hash(n),
                &Stored::At(content.clone()),
            )
            .expect("test");
    }
    index.commit_run("snap1", &["src"]).expect("test");
    index
}

fn known(n: u8, pack: u8) -> Known {
    Known {
        blake3: hash(n),
        content: Stored::At(at(pack, u64::from(n) * 10)),
    }
}

#[test]
fn round_trip_survives_reopening() {
    let dir = tempfile::tempdir().expect("test");
    {
        let index = open(dir.path());
        assert!(index.is_empty().expect("test"));
        assert_eq!(index.last_snapshot().expect("test"), None);
    }
    drop(committed(dir.path()));
    let mut index = open(dir.path());
    assert!(!index.is_empty().expect("test"));
    assert_eq!(
        index.last_snapshot().expect("test").as_deref(),
        Some("snap1")
    );
    assert_eq!(
        index.unchanged("src", b"a", &stat(1)).expect("test"),
        Some(known(1, 1))
    );
    assert_eq!(
        index.unchanged("src", b"b", &stat(2)).expect("test"),
        Some(known(2, 1))
    );
    assert_eq!(index.unchanged("src", b"c", &stat(1)).expect("test"), None);
    assert_eq!(
        index.unchanged("other", b"a", &stat(1)).expect("test"),
        None
    );
    assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
    assert_eq!(index.pack(&pack_id(1)).expect("test"), Some(pack_info(1)));
    assert_eq!(index.packs().expect("test"), vec![pack_info(1)]);
    let mode = fs::metadata(dir.path().join("index"))
        .expect("test")
        .permissions();
    assert_eq!(mode.mode() & 0o777, 0o700);
}

type Change = fn(&mut Stat);

#[test]
fn any_changed_stat_field_is_a_change() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = committed(dir.path());
    let base = stat(1);
    let changes: [(&str, Change); 7] = [
        ("size", |s| s.size += 1),
        ("mtime", |s| s.mtime += 1),
        ("mtime_nsec", |s| s.mtime_nsec += 1),
        ("ctime", |s| s.ctime += 1),
        ("ctime_nsec", |s| s.ctime_nsec += 1),
        ("ino", |s| s.ino += 1),
        ("dev", |s| s.dev += 1),
    ];
    for (field, change) in changes {
        let mut changed = base;
        change(&mut changed);
        assert_eq!(
            index.unchanged("src", b"a", &changed).expect("test"),
            None,
            "{field}"
        );
    }
    assert_eq!(
        index.unchanged("src", b"a", &base).expect("test"),
        Some(known(1, 1))
    );
}

#[test]
fn u64_values_beyond_i64_are_kept_exactly() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = open(dir.path());
    let big = Stat {
        size: u64::MAX,
        ino: u64::MAX - 1,
        dev: 1 << 63,
        ..stat(1)
    };
    let content = at(3, u64::MAX);
    index.begin_run().expect("test");
    index
        .stage_file("src", b"big", &big, &hash(3), &Stored::At(content.clone()))
        .expect("test");
    index
        .stage_content(&hash(3), u64::MAX, &content)
        .expect("test");
    index
        .stage_pack(&PackInfo {
            stored_size: u64::MAX,
            ..pack_info(3)
        })
        .expect("test");
    index.commit_run("snap", &["src"]).expect("test");
    let found = index
        .unchanged("src", b"big", &big)
        .expect("test")
        .expect("test");
    assert_eq!(found.content, Stored::At(content.clone()));
    for other in [
        Stat {
            ino: u64::MAX,
            ..big
        },
        Stat { dev: 0, ..big },
        Stat {
            size: u64::MAX - 1,
            ..big
        },
    ] {
        assert_eq!(index.unchanged("src", b"big", &other).expect("test"), None);
    }
    assert_eq!(
        index.content(&hash(3), u64::MAX).expect("test"),
        Some(content)
    );
    assert_eq!(
        index
            .pack(&pack_id(3))
            .expect("test")
            .expect("test")
            .stored_size,
        u64::MAX
    );
}

#[test]
fn non_utf8_paths_are_kept_byte_for_byte() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = open(dir.path());
    let path = b"dir/caf\xe9/\xff\xfe.txt";
    index.begin_run().expect("test");
    index
        .stage_file("src", path, &stat(1), &hash(1), &Stored::At(at(1, 0)))
        .expect("test");
    index.commit_run("snap", &["src"]).expect("test");
    drop(index);
    let mut index = open(dir.path());
    assert!(
        index
            .unchanged("src", path, &stat(1))
            .expect("test")
            .is_some()
    );
    // The same text once both are made UTF-8 by replacement: must not match.
    assert_eq!(
        index
            .unchanged("src", b"dir/caf\xe8/\xfe\xff.txt", &stat(1))
            .expect("test"),
        None
    );
    assert_eq!(
        index
            .unchanged(
                "src",
                "dir/caf\u{fffd}/\u{fffd}\u{fffd}.txt".as_bytes(),
                &stat(1)
            )
            .expect("test"),
        None
    );
}

#[test]
fn content_is_found_committed_and_staged_but_not_abandoned() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = committed(dir.path());
    assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
    // Same hash, other size: another content.
    assert_eq!(index.content(&hash(1), 102).expect("test"), None);

    index.begin_run().expect("test");
    assert_eq!(index.content(&hash(7), 7).expect("test"), None);
    index.stage_content(&hash(7), 7, &at(2, 70)).expect("test");
    index.stage_pack(&pack_info(2)).expect("test");
    assert_eq!(index.content(&hash(7), 7).expect("test"), Some(at(2, 70)));
    assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
    assert_eq!(index.pack(&pack_id(2)).expect("test"), Some(pack_info(2)));
    assert_eq!(
        index.packs().expect("test"),
        vec![pack_info(1), pack_info(2)]
    );
    index.abandon_run().expect("test");

    assert_eq!(index.content(&hash(7), 7).expect("test"), None);
    assert_eq!(index.pack(&pack_id(2)).expect("test"), None);
    assert_eq!(index.packs().expect("test"), vec![pack_info(1)]);
    assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
    assert_eq!(
        index.last_snapshot().expect("test").as_deref(),
        Some("snap1")
    );
    // Abandoned means gone, not merely hidden until the next commit.
    index.begin_run().expect("test");
    index.commit_run("snap2", &[]).expect("test");
    assert_eq!(index.content(&hash(7), 7).expect("test"), None);
}

#[test]
fn kept_files_stay_and_files_neither_kept_nor_staged_go() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = committed(dir.path());
    let look = |index: &mut Index, name: &[u8], n: u64| {
        index
            .unchanged("src", name, &stat(n))
            .expect("test")
            .map(|k| k.blake3)
    };
    // Both kept: nothing is gone, both stay.
    index.begin_run().expect("test");
    index.keep_file("src", b"a").expect("test");
    index.keep_file("src", b"b").expect("test");
    index.commit_run("snap2", &["src"]).expect("test");
    assert_eq!(look(&mut index, b"a", 1), Some(hash(1)));
    assert_eq!(look(&mut index, b"b", 2), Some(hash(2)));
    // a kept, b gone, c new: the counts alone would match (2 rows before, 1 kept
    // + 1 staged), the rows after (3) do not.
    index.begin_run().expect("test");
    index.keep_file("src", b"a").expect("test");
    index
        .stage_file("src", b"c", &stat(3), &hash(3), &Stored::At(at(1, 30)))
        .expect("test");
    index.commit_run("snap3", &["src"]).expect("test");
    assert_eq!(look(&mut index, b"a", 1), Some(hash(1)));
    assert_eq!(look(&mut index, b"b", 2), None);
    assert_eq!(look(&mut index, b"c", 3), Some(hash(3)));
    // Kept, then read again in the same run (staged): the staged row wins and is
    // counted once, so c, neither kept nor staged, is found gone.
    index.begin_run().expect("test");
    index.keep_file("src", b"a").expect("test");
    index
        .stage_file("src", b"a", &stat(4), &hash(4), &Stored::At(at(1, 40)))
        .expect("test");
    index.keep_file("src", b"a").expect("test");
    index.commit_run("snap4", &["src"]).expect("test");
    assert_eq!(look(&mut index, b"a", 1), None);
    assert_eq!(look(&mut index, b"a", 4), Some(hash(4)));
    assert_eq!(look(&mut index, b"c", 3), None);
}

#[test]
fn commit_replaces_the_files_of_the_listed_sources_only() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = open(dir.path());
    index.begin_run().expect("test");
    for source in ["one", "two", "three"] {
        for (n, name) in [(1u8, b"a".as_slice()), (2, b"b")] {
            index
                .stage_file(
                    source,
                    name,
                    &stat(u64::from(n)),
                    &hash(n),
                    &Stored::At(at(1, 0)),
                )
                .expect("test");
        }
    }
    index
        .commit_run("snap1", &["one", "two", "three"])
        .expect("test");

    index.begin_run().expect("test");
    // one: a changed, b deleted, c new. two: staged but not committed. three: listed,
    // nothing staged, so it has no files left.
    index
        .stage_file("one", b"a", &stat(5), &hash(5), &Stored::At(at(2, 0)))
        .expect("test");
    index
        .stage_file("one", b"c", &stat(6), &hash(6), &Stored::At(at(2, 1)))
        .expect("test");
    index
        .stage_file("two", b"a", &stat(7), &hash(7), &Stored::At(at(2, 2)))
        .expect("test");
    index.commit_run("snap2", &["one", "three"]).expect("test");
    drop(index);

    let mut index = open(dir.path());
    let mut look = |source: &str, name: &[u8], n: u64| {
        index
            .unchanged(source, name, &stat(n))
            .expect("test")
            .map(|k| k.blake3)
    };
    assert_eq!(look("one", b"a", 1), None);
    assert_eq!(look("one", b"a", 5), Some(hash(5)));
    assert_eq!(look("one", b"b", 2), None);
    assert_eq!(look("one", b"c", 6), Some(hash(6)));
    assert_eq!(look("two", b"a", 1), Some(hash(1)));
    assert_eq!(look("two", b"a", 7), None);
    assert_eq!(look("two", b"b", 2), Some(hash(2)));
    assert_eq!(look("three", b"a", 1), None);
    assert_eq!(look("three", b"b", 2), None);
    assert_eq!(
        index.last_snapshot().expect("test").as_deref(),
        Some("snap2")
    );
}

#[test]
fn forgotten_packs_take_their_content_and_files_along() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = committed(dir.path());
    index.begin_run().expect("test");
    index.stage_pack(&pack_info(2)).expect("test");
    index
        .stage_content(&hash(3), 103, &at(2, 30))
        .expect("test");
    for n in [1u8, 2] {
        index
            .stage_file(
                "src",
                &[b'a' + n - 1],
                &stat(u64::from(n)),
                &hash(n),
                &Stored::At(at(1, u64::from(n) * 10)),
            )
            .expect("test");
    }
    index
        .stage_file("src", b"c", &stat(3), &hash(3), &Stored::At(at(2, 30)))
        .expect("test");
    index
        .stage_file("other", b"x", &stat(3), &hash(3), &Stored::At(at(2, 30)))
        .expect("test");
    index.commit_run("snap2", &["src", "other"]).expect("test");

    let gone = index.forget_packs(&[pack_id(1), pack_id(9)]).expect("test");
    assert_eq!(gone, 2);
    drop(index);
    let mut index = open(dir.path());
    assert_eq!(index.unchanged("src", b"a", &stat(1)).expect("test"), None);
    assert_eq!(index.unchanged("src", b"b", &stat(2)).expect("test"), None);
    assert_eq!(index.content(&hash(1), 101).expect("test"), None);
    assert_eq!(index.content(&hash(2), 102).expect("test"), None);
    assert_eq!(index.pack(&pack_id(1)).expect("test"), None);
    assert!(
        index
            .unchanged("src", b"c", &stat(3))
            .expect("test")
            .is_some()
    );
    assert!(
        index
            .unchanged("other", b"x", &stat(3))
            .expect("test")
            .is_some()
    );
    assert_eq!(index.content(&hash(3), 103).expect("test"), Some(at(2, 30)));
    assert_eq!(index.packs().expect("test"), vec![pack_info(2)]);
    assert_eq!(index.forget_packs(&[pack_id(1)]).expect("test"), 0);
}

#[test]
fn the_re_check_cursor_moves_only_with_a_committed_run() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = committed(dir.path());
    assert_eq!(index.recheck_cursor().expect("test"), None);
    assert!(index.set_recheck_cursor(&pack_id(1)).is_err());
    index.begin_run().expect("test");
    index.set_recheck_cursor(&pack_id(1)).expect("test");
    assert!(index.set_recheck_cursor("../x").is_err());
    index.abandon_run().expect("test");
    assert_eq!(index.recheck_cursor().expect("test"), None);
    index.begin_run().expect("test");
    index.set_recheck_cursor(&pack_id(2)).expect("test");
    index.commit_run("snap2", &[]).expect("test");
    drop(index);
    let index = open(dir.path());
    assert_eq!(index.recheck_cursor().expect("test"), Some(pack_id(2)));
}

#[test]
fn forgetting_inside_a_run_drops_staged_rows_too() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = committed(dir.path());
    index.begin_run().expect("test");
    index.stage_pack(&pack_info(2)).expect("test");
    index
        .stage_content(&hash(3), 103, &at(2, 30))
        .expect("test");
    index
        .stage_file("src", b"c", &stat(3), &hash(3), &Stored::At(at(2, 30)))
        .expect("test");
    assert_eq!(index.forget_packs(&[pack_id(2)]).expect("test"), 0);
    assert_eq!(index.content(&hash(3), 103).expect("test"), None);
    assert_eq!(index.pack(&pack_id(2)).expect("test"), None);
    index.commit_run("snap2", &["src"]).expect("test");
    assert_eq!(index.unchanged("src", b"c", &stat(3)).expect("test"), None);
}

fn assert_fresh_and_working(index: &mut Index) {
    assert!(index.is_empty().expect("test"));
    assert_eq!(index.unchanged("src", b"a", &stat(1)).expect("test"), None);
    index.begin_run().expect("test");
    index
        .stage_file("src", b"a", &stat(1), &hash(1), &Stored::At(at(1, 0)))
        .expect("test");
    index.commit_run("fresh", &["src"]).expect("test");
    assert!(
        index
            .unchanged("src", b"a", &stat(1))
            .expect("test")
            .is_some()
    );
}

fn reopen_expecting_note(dir: &Path, reason: &str) -> Index {
    let (mut index, note) = Index::open(dir, JOB).expect("test");
    let note = note.expect("a note that the index was replaced");
    assert!(note.contains("moved it aside"), "{note}");
    assert!(note.contains(reason), "{note}");
    assert!(
        note.contains(&index_file(dir).display().to_string()),
        "{note}"
    );
    assert_eq!(broken_files(dir).len(), 1, "{:?}", broken_files(dir));
    assert_fresh_and_working(&mut index);
    index
}

#[test]
fn a_garbage_file_is_moved_aside() {
    let dir = tempfile::tempdir().expect("test");
    drop(committed(dir.path()));
    let path = index_file(dir.path());
    fs::write(&path, vec![0x5a; 64 * 1024]).expect("test");
    drop(reopen_expecting_note(dir.path(), "not a database"));
    let broken = dir.path().join("index").join(&broken_files(dir.path())[0]);
    assert_eq!(fs::read(broken).expect("test"), vec![0x5a; 64 * 1024]);
    // The fresh one is a good index from now on.
    let mut index = open(dir.path());
    assert!(
        index
            .unchanged("src", b"a", &stat(1))
            .expect("test")
            .is_some()
    );
}

#[test]
fn damaged_pages_are_found_at_open() {
    let dir = tempfile::tempdir().expect("test");
    {
        let mut index = open(dir.path());
        index.begin_run().expect("test");
        for n in 0..2000u64 {
            let name = format!("some/longer/path/to/file-{n}");
            index
                .stage_file(
                    "src",
                    name.as_bytes(),
                    &stat(n),
                    &hash(1),
                    &Stored::At(at(1, n)),
                )
                .expect("test");
        }
        index.commit_run("snap1", &["src"]).expect("test");
    }
    let path = index_file(dir.path());
    let mut bytes = fs::read(&path).expect("test");
    assert!(bytes.len() > 16 * 4096);
    // The header and schema page stay; the rows' pages do not.
    for b in &mut bytes[4 * 4096..] {
        *b = 0xa5;
    }
    fs::write(&path, bytes).expect("test");
    drop(reopen_expecting_note(dir.path(), "damaged"));
}

#[test]
fn another_schema_version_is_moved_aside() {
    let dir = tempfile::tempdir().expect("test");
    drop(committed(dir.path()));
    let conn = Connection::open(index_file(dir.path())).expect("test");
    conn.pragma_update(None, "user_version", 99).expect("test");
    drop(conn);
    drop(reopen_expecting_note(dir.path(), "schema version 99"));
}

#[test]
fn a_foreign_database_is_moved_aside() {
    let dir = tempfile::tempdir().expect("test");
    fs::create_dir(dir.path().join("index")).expect("test");
    let conn = Connection::open(index_file(dir.path())).expect("test");
    conn.execute_batch("CREATE TABLE x (y)").expect("test");
    drop(conn);
    drop(reopen_expecting_note(dir.path(), "coffer schema"));
}

#[test]
fn a_file_locked_for_too_long_is_moved_aside() {
    let dir = tempfile::tempdir().expect("test");
    drop(committed(dir.path()));
    let holder = Connection::open(index_file(dir.path())).expect("test");
    holder.execute_batch("BEGIN EXCLUSIVE").expect("test");
    drop(reopen_expecting_note(dir.path(), "locked"));
    drop(holder);
}

#[test]
fn a_run_dropped_before_commit_leaves_the_committed_state() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = committed(dir.path());
    index.begin_run().expect("test");
    index
        .stage_file("src", b"a", &stat(5), &hash(5), &Stored::At(at(2, 0)))
        .expect("test");
    index.stage_content(&hash(5), 105, &at(2, 0)).expect("test");
    index.stage_pack(&pack_info(2)).expect("test");
    drop(index);

    let mut index = open(dir.path());
    assert_eq!(
        index.last_snapshot().expect("test").as_deref(),
        Some("snap1")
    );
    assert_eq!(
        index.unchanged("src", b"a", &stat(1)).expect("test"),
        Some(known(1, 1))
    );
    assert_eq!(index.unchanged("src", b"a", &stat(5)).expect("test"), None);
    assert!(
        index
            .unchanged("src", b"b", &stat(2))
            .expect("test")
            .is_some()
    );
    assert_eq!(index.content(&hash(5), 105).expect("test"), None);
    assert_eq!(index.pack(&pack_id(2)).expect("test"), None);
}

const CRASH_DIR: &str = "H2_INDEX_CRASH_DIR";

/// The other half of `a_process_killed_mid_run_leaves_the_committed_state`.
#[test]
#[ignore = "run in a child process by a_process_killed_mid_run_leaves_the_committed_state"]
fn crashing_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let (mut index, _) = Index::open(Path::new(&dir), JOB).expect("test");
    // A tiny cache makes SQLite write the run's pages into the file before commit,
    // as a big run does.
    index
        .conn
        .pragma_update(None, "cache_size", 8)
        .expect("test");
    index.begin_run().expect("test");
    index.forget_packs(&[pack_id(1)]).expect("test");
    for n in 0..5000u64 {
        let name = format!("new/file-{n}");
        index
            .stage_file(
                "src",
                name.as_bytes(),
                &stat(n),
                &hash(5),
                &Stored::At(at(2, n)),
            )
            .expect("test");
    }
    index
        .stage_file("src", b"a", &stat(5), &hash(5), &Stored::At(at(2, 0)))
        .expect("test");
    index.stage_content(&hash(5), 105, &at(2, 0)).expect("test");
    index.stage_pack(&pack_info(2)).expect("test");
    // No destructor, no rollback: what kill -9 leaves.
    std::process::abort();
}

#[test]
fn a_process_killed_mid_run_leaves_the_committed_state() {
    let dir = tempfile::tempdir().expect("test");
    drop(committed(dir.path()));
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let output = Command::new(std::env::current_exe().expect("test"))
        .args([
            &format!("{module}::crashing_child"),
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .output()
        .expect("test");
    assert_eq!(
        output.status.signal(),
        Some(6),
        "the child was meant to abort mid-run: {output:?}"
    );
    // It died with its run's pages half written: SQLite has a journal to undo them.
    let journal = PathBuf::from(format!("{}-journal", index_file(dir.path()).display()));
    assert!(fs::metadata(&journal).expect("test").len() > 0);

    let mut index = open(dir.path());
    assert_eq!(
        index.last_snapshot().expect("test").as_deref(),
        Some("snap1")
    );
    assert_eq!(
        index.unchanged("src", b"a", &stat(1)).expect("test"),
        Some(known(1, 1))
    );
    assert_eq!(
        index
            .unchanged("src", b"new/file-1", &stat(1))
            .expect("test"),
        None
    );
    assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
    assert_eq!(index.content(&hash(5), 105).expect("test"), None);
    assert_eq!(index.packs().expect("test"), vec![pack_info(1)]);
    index.begin_run().expect("test");
    index.commit_run("snap2", &[]).expect("test");
    assert_eq!(index.content(&hash(5), 105).expect("test"), None);
}

#[test]
fn begin_run_clears_an_unfinished_run() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = committed(dir.path());
    index.begin_run().expect("test");
    index.stage_content(&hash(5), 105, &at(2, 0)).expect("test");
    index.stage_pack(&pack_info(2)).expect("test");
    index
        .stage_file("src", b"z", &stat(5), &hash(5), &Stored::At(at(2, 0)))
        .expect("test");
    // The run fails without abandon_run; the agent's next run begins on the same index.
    index.begin_run().expect("test");
    assert_eq!(index.content(&hash(5), 105).expect("test"), None);
    assert_eq!(index.pack(&pack_id(2)).expect("test"), None);
    index
        .stage_file("src", b"a", &stat(1), &hash(1), &Stored::At(at(1, 10)))
        .expect("test");
    index.commit_run("snap2", &["src"]).expect("test");
    assert_eq!(index.unchanged("src", b"z", &stat(5)).expect("test"), None);
    assert_eq!(index.unchanged("src", b"b", &stat(2)).expect("test"), None);
    assert!(
        index
            .unchanged("src", b"a", &stat(1))
            .expect("test")
            .is_some()
    );
    assert_eq!(index.packs().expect("test"), vec![pack_info(1)]);
}

#[test]
fn begin_run_clears_staged_rows_left_in_the_file() {
    let dir = tempfile::tempdir().expect("test");
    drop(committed(dir.path()));
    // Staging is never committed by this code; a file that has some anyway (an older
    // or other writer) must not leak them into the next commit.
    let conn = Connection::open(index_file(dir.path())).expect("test");
    conn.execute(
        "INSERT INTO staged_content VALUES (?1, 105, ?2, 0)",
        params![&[5u8; HASH_LEN][..], &[2u8; PACK_LEN][..]],
    )
    .expect("test");
    drop(conn);
    let mut index = open(dir.path());
    index.begin_run().expect("test");
    assert_eq!(index.content(&hash(5), 105).expect("test"), None);
    index.commit_run("snap2", &[]).expect("test");
    assert_eq!(index.content(&hash(5), 105).expect("test"), None);
}

#[test]
fn misuse_is_an_error_that_names_the_index() {
    let dir = tempfile::tempdir().expect("test");
    let mut index = open(dir.path());
    let path = index_file(dir.path()).display().to_string();
    let err = index
        .stage_file("src", b"a", &stat(1), &hash(1), &Stored::At(at(1, 0)))
        .expect_err("test");
    assert!(format!("{err:#}").contains(&path), "{err:#}");
    assert!(format!("{err:#}").contains("begin_run"), "{err:#}");
    assert!(index.commit_run("snap", &["src"]).is_err());
    index.begin_run().expect("test");
    for bad in ["ABCD", "xyz", &hash(0xab).to_uppercase(), &hash(1)[..62]] {
        let err = index
            .stage_file("src", b"a", &stat(1), bad, &Stored::At(at(1, 0)))
            .expect_err("test");
        assert!(format!("{err:#}").contains(&path), "{err:#}");
        assert!(
            format!("{err:#}").contains("staging a of source src"),
            "{err:#}"
        );
        assert!(index.content(bad, 1).is_err());
    }
    assert!(index.pack("not-a-pack").is_err());
    assert!(Index::open(dir.path(), "../x").is_err());
    assert!(Index::open(dir.path(), "").is_err());
}

fn chunk(n: u8, pack: u8) -> Chunk {
    Chunk {
        pack: pack_id(pack),
        offset: u64::from(n) * 1000,
        size: 300 + u64::from(n),
        blake3: hash(100 + n),
    }
}

/// A chunked file "big" of `hash(9)` whose chunks are in packs 1 and 2.
fn committed_with_a_chunked_file(dir: &Path) -> (Index, Vec<Chunk>) {
    let mut index = committed(dir);
    let list = vec![chunk(1, 1), chunk(2, 2), chunk(3, 1)];
    let size = list.iter().map(|c| c.size).sum::<u64>();
    index.begin_run().expect("test");
    index.stage_pack(&pack_info(2)).expect("test");
    for c in &list {
        index
            .stage_chunk(&c.blake3, c.size, &c.place())
            .expect("test");
    }
    index.stage_list(&hash(9), size, &list).expect("test");
    let mut st = stat(9);
    st.size = size;
    index
        .stage_file("src", b"big", &st, &hash(9), &Stored::Chunks(list.clone()))
        .expect("test");
    for n in [1u8, 2] {
        index
            .stage_file(
                "src",
                &[b'a' + n - 1],
                &stat(u64::from(n)),
                &hash(n),
                &Stored::At(at(1, u64::from(n) * 10)),
            )
            .expect("test");
    }
    index.commit_run("snap2", &["src"]).expect("test");
    (index, list)
}

#[test]
fn a_chunked_file_reads_back_with_its_chunks_which_are_not_whole_file_content() {
    let dir = tempfile::tempdir().expect("test");
    let (index, list) = committed_with_a_chunked_file(dir.path());
    drop(index);
    let mut index = open(dir.path());
    let size = list.iter().map(|c| c.size).sum::<u64>();
    let mut st = stat(9);
    st.size = size;
    assert_eq!(
        index.unchanged("src", b"big", &st).expect("test"),
        Some(Known {
            blake3: hash(9),
            content: Stored::Chunks(list.clone()),
        })
    );
    let c = &list[1];
    assert_eq!(
        index.chunk(&c.blake3, c.size).expect("test"),
        Some(c.place())
    );
    // Chunks and whole files never stand in for one another.
    assert_eq!(index.content(&c.blake3, c.size).expect("test"), None);
    assert_eq!(index.chunk(&hash(1), 101).expect("test"), None);
}

#[test]
fn forgetting_a_pack_that_holds_one_chunk_makes_the_chunked_file_read_again() {
    let dir = tempfile::tempdir().expect("test");
    let (mut index, list) = committed_with_a_chunked_file(dir.path());
    let size = list.iter().map(|c| c.size).sum::<u64>();
    let mut st = stat(9);
    st.size = size;
    // Pack 2 holds only the middle chunk: "a" and "b" (pack 1) stay, "big" goes.
    let gone = index.forget_packs(&[pack_id(2)]).expect("test");
    assert_eq!(gone, 1);
    assert_eq!(index.unchanged("src", b"big", &st).expect("test"), None);
    assert!(
        index
            .unchanged("src", b"a", &stat(1))
            .expect("test")
            .is_some()
    );
    assert_eq!(
        index.chunk(&list[1].blake3, list[1].size).expect("test"),
        None
    );
    assert!(
        index
            .chunk(&list[0].blake3, list[0].size)
            .expect("test")
            .is_some(),
        "chunks in other packs stay known"
    );
}

#[test]
fn an_index_of_schema_version_1_is_upgraded_in_place_and_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("test");
    drop(committed(dir.path()));
    // What the coffer before chunked files left: version 1, no chunk tables.
    let conn = Connection::open(index_file(dir.path())).expect("test");
    conn.execute_batch(
        "DROP TABLE chunks; DROP TABLE staged_chunks; DROP TABLE lists; DROP TABLE staged_lists;",
    )
    .expect("test");
    conn.pragma_update(None, "user_version", 1).expect("test");
    drop(conn);
    let read_only = Index::open_read_only(dir.path(), JOB).expect("test");
    assert!(read_only.is_some());
    drop(read_only);
    let mut index = open(dir.path());
    assert_eq!(
        index.unchanged("src", b"a", &stat(1)).expect("test"),
        Some(known(1, 1))
    );
    assert_eq!(index.chunk(&hash(1), 101).expect("test"), None);
    drop(index);
    let conn = Connection::open(index_file(dir.path())).expect("test");
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("test");
    assert_eq!(version, 2);
}
