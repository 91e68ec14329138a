//! Applications keep writing during a backup. A file that changes while it is read
//! is read again; one that keeps changing is stored as last read, marked `changed`
//! in the manifest, and restore and check report it; no file ever comes back padded
//! with zeros it did not have. The run still succeeds, and the snapshot stays
//! internally consistent (verify passes, restore gives the bytes that were stored).
//!
//! Each change lands in the middle of a read, deterministically: a fanotify gate
//! (common/read_gate.rs) holds every read of the file until the test has changed it.

use crate::common::read_gate::ReadGate;
use crate::common::*;
use std::io::Write;
use std::path::Path;
use std::process::Output;

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("truncate");
}

fn restore_to(world: &World, dest: &Path) -> Output {
    world.run(&[
        "restore",
        "--job",
        "app",
        "--to",
        dest.to_str().expect("utf8"),
    ])
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The manifest entry of `path` in snapshot `id`.
fn manifest_entry(world: &World, id: &str, path: &str) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_slice(&forge::manifest_plain(world, &world.target(), id))
            .expect("manifest json");
    m["sources"][0]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["path"] == path)
        .cloned()
        .unwrap_or_else(|| panic!("{path} not in the manifest"))
}

fn changed_count(world: &World) -> serde_json::Value {
    let list = world.ok(&["list", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).expect("json");
    v[0]["warnings"]["changed"].clone()
}

/// The issue's case: truncated while read. Before, the entry kept its old size and
/// was filled with zeros that the manifest hashed, so restore and check passed.
#[test]
fn a_file_truncated_while_read_is_read_again_and_never_padded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    let big = src.join("big.bin");
    let content = noise(64 << 20, 11);
    std::fs::write(&big, &content).expect("write");
    std::fs::write(src.join("calm.txt"), b"calm").expect("write");
    // Format 1, which stages the read (format 2: format2.rs).
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));

    // Three 1 MiB reads in, the file is cut to 10 MiB.
    let cut = big.clone();
    let gate = ReadGate::new(&big, move |n| {
        if n == 3 {
            truncate(&cut, 10 << 20);
        }
    });
    let out = world.run(&["backup", "app"]);
    let reads = gate.finish();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("big.bin: changed while it was read; read again, stored as read the second time (10485760 bytes)"),
        "{err}"
    );
    assert!(!err.contains("calm.txt"), "{err}");
    // The first read met the end after 10 MiB (11 reads, the last finding
    // nothing), the second read the 10 MiB there were (10 reads).
    assert_eq!(reads, 11 + 10);
    // Read consistently the second time: not a changed file.
    assert_eq!(changed_count(&world), 0);
    let id = world.snapshots().pop().expect("snapshot");
    let e = manifest_entry(&world, &id, "big.bin");
    assert_eq!(e["size"], 10 << 20);
    assert!(
        e.get("changed").is_none() && e.get("padding").is_none(),
        "{e}"
    );

    let dest = tmp.path().join("r");
    let restored = restore_to(&world, &dest);
    assert_eq!(restored.status.code(), Some(0), "{}", text(&restored));
    let back = std::fs::read(dest.join("data/big.bin")).expect("restored");
    assert_eq!(back.len(), 10 << 20, "not padded to the old size");
    assert!(
        back == content[..10 << 20],
        "the first 10 MiB, byte for byte"
    );
    let path = dest.join("data");
    let ok = world.ok(&[
        "check",
        "--job",
        "app",
        "--path",
        path.to_str().expect("utf8"),
    ]);
    assert!(ok.contains("consistent"), "{ok}");
}

/// Over the staging limit (1 GiB at most) a file is streamed directly and cannot be read
/// again: when it shrinks, its entry ends in zeros, which the manifest records as
/// padding outside its size and hash. Restore writes what was read, and restore
/// and check call the file changed.
#[test]
fn a_file_too_large_to_read_again_that_shrinks_comes_back_as_read_and_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    let big = src.join("huge.img");
    let head = noise(10 << 20, 12);
    {
        let mut f = std::fs::File::create(&big).expect("create");
        f.write_all(&head).expect("write");
        // Sparse beyond: 1 GiB + 1 MiB, over the limit, costing no disk.
        f.set_len((1 << 30) + (1 << 20)).expect("extend");
    }
    // Format 1: the zeros after a shrunk file are in its archive entry (`padding`);
    // format 2 reads a file this sparse as its pieces of data.
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));
    let cut = big.clone();
    let gate = ReadGate::new(&big, move |n| {
        if n == 3 {
            truncate(&cut, 10 << 20);
        }
    });
    let out = world.run(&["backup", "app"]);
    gate.finish();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("huge.img: changed while it was read, and not read again because it is over "),
        "{err}"
    );
    assert!(
        err.contains(
            "it shrank from 1074790400 to 10485760 bytes: a restore writes the 10485760 bytes read"
        ),
        "{err}"
    );
    assert_eq!(changed_count(&world), 1);
    let id = world.snapshots().pop().expect("snapshot");
    let e = manifest_entry(&world, &id, "huge.img");
    assert_eq!(e["size"], 10 << 20);
    assert_eq!(e["padding"], (1u64 << 30) + (1 << 20) - (10 << 20));
    assert_eq!(e["changed"], true);
    assert_eq!(e["blake3"], blake3::hash(&head).to_hex().to_string());
    // Deep verify (the config has the identity) hashes the content without the padding.
    let verified = world.ok(&["verify", "--job", "app"]);
    assert!(verified.contains("ok"), "{verified}");

    let dest = tmp.path().join("r");
    let restored = restore_to(&world, &dest);
    let said = text(&restored);
    assert_eq!(restored.status.code(), Some(3), "{said}");
    assert!(
        said.contains("changed during backup: huge.img: changed while the backup read it"),
        "{said}"
    );
    assert!(said.contains("INCONSISTENT: as in the snapshot"), "{said}");
    let back = std::fs::read(dest.join("data/huge.img")).expect("restored");
    assert_eq!(back.len(), 10 << 20, "no zeros after what was read");
    assert!(back == head);
}

/// Changed during every read (the gate appends to it before each one): stored as
/// last read, at the size that read had, marked in the manifest, counted, and
/// reported by restore (exit 3, hooks not run) and check.
#[test]
fn a_file_that_keeps_changing_is_marked_and_restore_and_check_say_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    let busy = src.join("busy.log");
    std::fs::write(&busy, noise(8 << 20, 5)).expect("write");
    std::fs::write(src.join("calm.txt"), b"calm").expect("write");
    // Format 1, which stages the read (format 2: format2.rs).
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));

    let log = busy.clone();
    let gate = ReadGate::new(&busy, move |_| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        f.write_all(b"another line\n").expect("append");
    });
    let out = world.run(&["backup", "app"]);
    let reads = gate.finish();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("busy.log: changed while it was read, 3 times: stored as last read"),
        "{err}"
    );
    assert!(!err.contains("calm.txt"), "{err}");
    assert!(reads >= 3 * 8, "three whole reads: {reads}");
    assert_eq!(changed_count(&world), 1);
    let id = world.snapshots().pop().expect("snapshot");
    let e = manifest_entry(&world, &id, "busy.log");
    assert_eq!(e["changed"], true, "{e}");
    let stored = e["size"].as_u64().expect("size");
    assert!(
        stored > 8 << 20,
        "the third read saw the first two's appends: {stored}"
    );
    let verified = world.ok(&["verify", "--job", "app"]);
    assert!(verified.contains("ok"), "{verified}");

    let dest = tmp.path().join("r");
    let restored = restore_to(&world, &dest);
    let said = text(&restored);
    assert_eq!(restored.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!(
            "changed during backup: busy.log: changed while the backup read it; stored as last read ({stored} bytes)"
        )),
        "{said}"
    );
    // What was stored is the file's first bytes as one read saw them.
    let back = std::fs::read(dest.join("data/busy.log")).expect("restored");
    let live = std::fs::read(&busy).expect("live");
    assert_eq!(back.len() as u64, stored);
    assert!(live.starts_with(&back));

    let path = dest.join("data");
    let checked = world.expect(
        &[
            "check",
            "--job",
            "app",
            "--path",
            path.to_str().expect("utf8"),
            "--json",
        ],
        3,
    );
    let v: serde_json::Value = serde_json::from_str(&checked).expect("check json");
    assert_eq!(v["consistent"], false);
    let s = &v["sources"][0];
    assert_eq!(s["changed"].as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(s["content"].as_array().map(Vec::len), Some(0), "{s}");
}

/// A tree whose `crowded` directory holds, after `big.bin` (4 MiB, read first),
/// more entries than the walk may run ahead: while the gate holds the first read
/// of `big.bin`, the walk cannot have gone past them.
fn crowded(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let big = dir.join("0big.bin");
    std::fs::write(&big, noise(4 << 20, 3)).expect("write");
    for i in 0..300 {
        std::fs::write(dir.join(format!("f{i:04}")), format!("{i}")).expect("write");
    }
    big
}

/// Before, the walk met `b` listed as a directory, failed to list it (ENOTDIR)
/// and failed the run; now it is the file it has become.
#[test]
fn a_directory_replaced_by_a_file_before_the_walk_reaches_it_is_stored_as_that_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    let big = crowded(&src.join("a"));
    std::fs::create_dir_all(src.join("b/sub")).expect("mkdir");
    std::fs::write(src.join("b/sub/x.txt"), b"x").expect("write");
    let world = World::new(&dir_source("data", &src, ""));
    let b = src.join("b");
    let gate = ReadGate::new(&big, move |n| {
        if n == 1 {
            std::fs::remove_dir_all(&b).expect("rm b");
            std::fs::write(&b, b"now a file").expect("write b");
        }
    });
    let out = world.run(&["backup", "app"]);
    gate.finish();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let dest = tmp.path().join("r");
    let restored = restore_to(&world, &dest);
    assert_eq!(restored.status.code(), Some(0), "{}", text(&restored));
    assert_eq!(
        std::fs::read(dest.join("data/b")).expect("b is a file"),
        b"now a file"
    );
    assert_eq!(std::fs::read(dest.join("data/a/f0299")).expect("a"), b"299");
}

/// Replaced while the walk is inside it: the walk goes on in the directory it has
/// open (moved away), relative to it. Before, the first symlink or subdirectory
/// after the swap failed the run (ENOTDIR on its full path).
#[test]
fn a_directory_replaced_by_a_file_while_it_is_walked_does_not_fail_the_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    let b = src.join("b");
    let big = crowded(&b);
    std::os::unix::fs::symlink("f0000", b.join("zz-link")).expect("symlink");
    std::fs::create_dir_all(b.join("zz-sub")).expect("mkdir");
    std::fs::write(b.join("zz-sub/inner.txt"), b"inner").expect("write");
    let world = World::new(&dir_source("data", &src, ""));
    let moved = tmp.path().join("b.old");
    let gate = ReadGate::new(&big, move |n| {
        if n == 1 {
            std::fs::rename(&b, &moved).expect("move b away");
            std::fs::write(&b, b"now a file").expect("write b");
        }
    });
    let out = world.run(&["backup", "app"]);
    gate.finish();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    // Its entries were read relative to the directory the walk held, attributes
    // included: nothing went wrong for any of them.
    assert!(!said.contains("warning: source"), "{said}");

    // The snapshot holds `b` as the walk found it.
    let dest = tmp.path().join("r");
    let restored = restore_to(&world, &dest);
    assert_eq!(restored.status.code(), Some(0), "{}", text(&restored));
    let rb = dest.join("data/b");
    assert_eq!(
        std::fs::read_link(rb.join("zz-link")).expect("link"),
        Path::new("f0000")
    );
    assert_eq!(
        std::fs::read(rb.join("zz-sub/inner.txt")).expect("inner"),
        b"inner"
    );
    assert_eq!(std::fs::read(rb.join("f0299")).expect("f0299"), b"299");
}

/// `depth` nested directories of 200-byte names under `dir`, each made relative to
/// its parent (the full path is too long for mkdir), with `deep.txt` and
/// `deep.link` at the bottom; returns the full path of `deep.txt`.
fn deep_tree(dir: &Path, depth: usize) -> std::path::PathBuf {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, mkdirat};
    let name = "d".repeat(200);
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(dir, flags, Mode::empty()).expect("open");
    let mut abs = dir.to_path_buf();
    for _ in 0..depth {
        mkdirat(&fd, name.as_str(), Mode::from_bits_truncate(0o750)).expect("mkdirat");
        fd = openat(&fd, name.as_str(), flags, Mode::empty()).expect("openat");
        abs.push(&name);
    }
    let file = openat(
        &fd,
        "deep.txt",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o640),
    )
    .expect("create");
    nix::unistd::write(&file, b"deep content").expect("write");
    nix::unistd::symlinkat("deep.txt", &fd, "deep.link").expect("symlink");
    abs.push("deep.txt");
    abs
}

/// `deep.txt`'s content and mode and `deep.link`'s target in `dir`, whose path is
/// too long to use whole: opened one directory at a time.
fn read_deep(dir: &Path) -> (Vec<u8>, u32, String) {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, fstat};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open("/", flags, Mode::empty()).expect("open /");
    for c in dir.components().skip(1) {
        fd = openat(&fd, c.as_os_str(), flags, Mode::empty()).expect("openat");
    }
    let file = openat(&fd, "deep.txt", OFlag::O_RDONLY, Mode::empty()).expect("open file");
    let mode = fstat(&file).expect("fstat").st_mode & 0o7777;
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(file), &mut content).expect("read");
    let link = nix::fcntl::readlinkat(&fd, "deep.link").expect("readlink");
    (content, mode, link.to_string_lossy().into_owned())
}

/// Before, the walk failed the run at the first path over PATH_MAX, and a restore
/// could not have created it (it made parents and files by their full path).
#[test]
fn a_path_longer_than_path_max_is_backed_up_restored_and_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("top.txt"), b"top").expect("write");
    let deep = deep_tree(&src, 25);
    assert!(deep.as_os_str().len() > 4096);
    let world = World::new(&dir_source("data", &src, ""));
    let out = world.run(&["backup", "app"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("warning"), "{said}");
    let id = world.snapshots().pop().expect("snapshot");
    let rel = deep.strip_prefix(&src).expect("under src");
    let e = manifest_entry(&world, &id, rel.to_str().expect("utf8"));
    assert_eq!(e["size"], 12);
    assert_eq!(e["mode"], 0o640);
    let link = rel.with_file_name("deep.link");
    let l = manifest_entry(&world, &id, link.to_str().expect("utf8"));
    assert_eq!(l["link"], "deep.txt");
    let verified = world.ok(&["verify", "--job", "app"]);
    assert!(verified.contains("ok"), "{verified}");

    // Restored at the same depth, with its mode, its symlink, and checked.
    let dest = tmp.path().join("r");
    let restored = restore_to(&world, &dest);
    let said = text(&restored);
    assert_eq!(restored.status.code(), Some(0), "{said}");
    assert!(said.contains("consistent (29 entries checked)"), "{said}");
    let back = dest.join("data");
    let (content, mode, link) = read_deep(&back.join(rel.parent().expect("parent")));
    assert_eq!(
        (content.as_slice(), mode, link.as_str()),
        (&b"deep content"[..], 0o640, "deep.txt")
    );
    let checked = world.ok(&[
        "check",
        "--job",
        "app",
        "--path",
        back.to_str().expect("utf8"),
    ]);
    assert!(checked.contains("consistent"), "{checked}");
    // Restoring over it (--force) swaps it out and removes it, at any depth.
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        dest.to_str().expect("utf8"),
        "--force",
    ]);
}

/// Format 2 reads a large file once to hash it and once into the pack: cut while
/// it was hashed, it is hashed again and stored once, at the size it then had.
#[test]
fn in_format_2_a_file_truncated_while_read_is_read_again_and_stored_as_it_then_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    let big = src.join("big.bin");
    let content = noise(64 << 20, 11);
    std::fs::write(&big, &content).expect("write");
    let world = World::new(&dir_source("data", &src, ""));
    let cut = big.clone();
    let gate = ReadGate::new(&big, move |n| {
        if n == 3 {
            truncate(&cut, 10 << 20);
        }
    });
    let out = world.run(&["backup", "app"]);
    gate.finish();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("big.bin: changed while it was read; read again, stored as read the second time (10485760 bytes)"),
        "{err}"
    );
    assert_eq!(changed_count(&world), 0);
    let dest = tmp.path().join("r");
    let restored = restore_to(&world, &dest);
    assert_eq!(restored.status.code(), Some(0), "{}", text(&restored));
    let back = std::fs::read(dest.join("data/big.bin")).expect("restored");
    assert!(
        back == content[..10 << 20],
        "not the 10 MiB the file then held"
    );
    let verified = world.ok(&["verify", "--job", "app"]);
    assert!(verified.contains(": ok ("), "{verified}");
}

/// Format 2: a large file that changes during every read is stored as the last
/// read that went into the pack, marked changed; the earlier copies are unused.
#[test]
fn in_format_2_a_file_that_keeps_changing_is_stored_as_last_read_and_marked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    let busy = src.join("busy.log");
    // Over the 8 MiB format 2 reads in one go: hashed, then written.
    std::fs::write(&busy, noise(12 << 20, 5)).expect("write");
    let world = World::new(&dir_source("data", &src, ""));
    let log = busy.clone();
    let gate = ReadGate::new(&busy, move |_| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        f.write_all(b"another line\n").expect("append");
    });
    let out = world.run(&["backup", "app"]);
    gate.finish();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("busy.log: changed while it was read, 4 times: stored as last read"),
        "{err}"
    );
    assert_eq!(changed_count(&world), 1);
    let verified = world.ok(&["verify", "--job", "app"]);
    assert!(verified.contains(": ok ("), "{verified}");
    let dest = tmp.path().join("r");
    let restored = restore_to(&world, &dest);
    assert_eq!(restored.status.code(), Some(3), "{}", text(&restored));
    assert!(text(&restored).contains("busy.log"), "{}", text(&restored));
}
