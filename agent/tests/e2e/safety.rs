//! Restore must treat the archive as hostile and stored objects as possibly damaged:
//! crafted archives are refused without writing outside the destination; a flipped
//! byte is reported by verify (both modes) and restore, naming the object; a
//! non-empty destination is not overwritten unless asked.

use crate::common::*;
use std::path::Path;

/// A tar header with a raw name, bypassing the tar crate's own path checks.
fn raw_header(name: &[u8], kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    if let Some(l) = link {
        h.set_link_name(l).expect("link name");
    }
    h.set_cksum();
    h
}

/// name, type, data, link target
type Crafted<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a str>);

fn tar_of(entries: &[Crafted<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        out.extend_from_slice(raw_header(name, *kind, data.len() as u64, *link).as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Replaces a snapshot's source object with `tar` (compressed and encrypted by the
/// real zstd and age CLIs) and writes a consistent but unsigned snapshot around it,
/// as anyone who can write to the target can: restores below pass
/// `--allow-unsigned`, so that the archive checks themselves are what is tested.
fn plant(world: &World, id: &str, object: &str, tar: &[u8]) {
    let mut forgery = forge::Forgery::of(world, id);
    forgery.put_object(object, Some("files"), tar);
    forgery.save_unsigned();
}

fn setup() -> (World, tempfile::TempDir, String) {
    require_tool("age");
    require_tool("zstd");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"hello").expect("write");
    std::fs::write(src.join("big.bin"), noise(3 << 20, 9)).expect("write");
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("files", &src, "")));
    let id = world.backup();
    (world, tmp, id)
}

fn assert_nothing_restored(dest: &Path) {
    if dest.exists() {
        let left: Vec<_> = std::fs::read_dir(dest).expect("read dest").collect();
        assert!(
            left.is_empty(),
            "restore left files behind in {}: {left:?}",
            dest.display()
        );
    }
}

#[test]
fn crafted_archives_are_refused_and_write_nothing_outside() {
    let (world, tmp, id) = setup();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let abs = outside.join("abs.txt");
    let abs_name = abs.to_str().expect("utf8").as_bytes().to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "absolute path",
            tar_of(&[(&abs_name, tar::EntryType::Regular, b"pwned", None)]),
        ),
        (
            "dot-dot path",
            tar_of(&[(b"../../escape.txt", tar::EntryType::Regular, b"pwned", None)]),
        ),
        (
            "write through symlink",
            tar_of(&[
                (
                    b"link",
                    tar::EntryType::Symlink,
                    b"",
                    Some(outside.to_str().expect("utf8")),
                ),
                (b"link/through.txt", tar::EntryType::Regular, b"pwned", None),
            ]),
        ),
        (
            "hard link to outside",
            tar_of(&[(
                b"hl",
                tar::EntryType::Link,
                b"",
                Some("../../outside/abs.txt"),
            )]),
        ),
    ];
    for (what, tar) in cases {
        plant(&world, &id, "files.tar.zst.age", &tar);
        let dest = tmp.path().join(format!("dest-{}", what.replace(' ', "-")));
        let out = world.run(&[
            "restore",
            "--job",
            "app",
            "--allow-unsigned",
            "--to",
            dest.to_str().expect("utf8"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("refusing"), "{what}: {err}");
        assert!(!abs.exists(), "{what}: wrote {}", abs.display());
        assert!(
            !outside.join("through.txt").exists(),
            "{what}: wrote through the symlink"
        );
        assert!(
            !tmp.path().join("escape.txt").exists()
                && !tmp.path().parent().expect("p").join("escape.txt").exists()
        );
        assert_nothing_restored(&dest.join("files"));
    }
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn a_flipped_byte_fails_verify_and_restore_naming_the_object() {
    let (world, tmp, id) = setup();
    world.ok(&["verify", "--job", "app", "--stored-only"]);
    world.ok(&["verify", "--job", "app"]);
    flip_byte(&world.snapshot_dir(&id).join("files.tar.zst.age"));

    for args in [
        &["verify", "--job", "app", "--stored-only"][..],
        &["verify", "--job", "app"][..],
    ] {
        let out = world.expect(args, 3);
        assert!(
            out.contains("DAMAGED") && out.contains("files.tar.zst.age"),
            "{args:?}: {out}"
        );
    }
    let dest = tmp.path().join("dest");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("files.tar.zst.age"), "{err}");
    assert_nothing_restored(&dest.join("files"));

    // The same for the manifest.
    let id2 = world.backup();
    flip_byte(&world.snapshot_dir(&id2).join("manifest.json.zst.age"));
    let out = world.expect(&["verify", "--job", "app", "--snapshot", &id2], 3);
    assert!(out.contains("manifest.json.zst.age"), "{out}");
}

#[test]
fn a_non_empty_destination_is_kept_unless_forced() {
    let (world, tmp, _id) = setup();
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(dest.join("files")).expect("mkdir");
    std::fs::write(dest.join("files/precious.txt"), b"keep me").expect("write");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read(dest.join("files/precious.txt")).expect("kept"),
        b"keep me"
    );

    world.ok(&[
        "restore",
        "--job",
        "app",
        "--force",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    assert!(
        !dest.join("files/precious.txt").exists(),
        "--force replaces the contents"
    );
    assert_eq!(
        std::fs::read(dest.join("files/a.txt")).expect("restored"),
        b"hello"
    );
}

#[test]
fn forced_restore_of_a_damaged_object_keeps_the_old_contents() {
    let (world, tmp, id) = setup();
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(dest.join("files")).expect("mkdir");
    std::fs::write(dest.join("files/precious.txt"), b"keep me").expect("write");
    flip_byte(&world.snapshot_dir(&id).join("files.tar.zst.age"));
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--force",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(dest.join("files/precious.txt")).expect("kept"),
        b"keep me"
    );
    let names: Vec<_> = std::fs::read_dir(dest.join("files"))
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no staging left behind: {names:?}");
}
