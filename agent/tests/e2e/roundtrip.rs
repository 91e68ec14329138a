//! Round trip of a realistic tree: nested and empty directories, empty files, a
//! 50 MiB file, 2,000 small files, relative and dangling symlinks, a hard link,
//! unicode and space names, special modes, two owners. Owners come back by name on
//! a host where those users have other ids; a config policy overrides them.

use crate::common::*;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use walkdir::WalkDir;

/// Test users, removed again when dropped.
struct Users(Vec<String>);

impl Users {
    fn create(names: &[String]) -> Users {
        for tool in ["useradd", "usermod", "groupmod", "userdel"] {
            require_tool(tool);
        }
        for n in names {
            let _ = sh_quiet(&format!("userdel {n}; groupdel {n}"));
            sh(&format!(
                "useradd --no-create-home --user-group --shell /usr/sbin/nologin {n}"
            ));
        }
        Users(names.to_vec())
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = sh_quiet(&format!("userdel {n}; groupdel {n}"));
        }
    }
}

fn sh_quiet(cmd: &str) -> bool {
    std::process::Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn id_of(kind: &str, name: &str) -> u32 {
    let out = sh(&format!("id -{kind} {name}"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

fn name_of_uid(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn name_of_gid(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

/// What a tree looks like, path by path, with owners as names.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in WalkDir::new(root).sort_by_file_name() {
        let e = e.expect("walk");
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let md = e.path().symlink_metadata().expect("lstat");
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!(
                "link->{}",
                std::fs::read_link(e.path()).expect("readlink").display()
            )
        } else if ft.is_dir() {
            format!("dir {:o}", md.mode() & 0o7777)
        } else {
            let data = std::fs::read(e.path()).expect("read");
            format!(
                "file {:o} {} {} nlink{} mtime{}",
                md.mode() & 0o7777,
                data.len(),
                blake3::hash(&data).to_hex(),
                md.nlink(),
                md.mtime()
            )
        };
        let owner = format!("{}:{}", name_of_uid(md.uid()), name_of_gid(md.gid()));
        out.insert(rel, format!("{what} {owner}"));
    }
    out
}

fn build_tree(root: &Path, alice: &str, bob: &str) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, data).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    w("nested/a/b/c/deep.txt", b"deep\n", 0o640);
    std::fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    std::fs::create_dir_all(root.join("nested/empty")).expect("mkdir");
    w("empty-file", b"", 0o600);
    w("big.bin", &noise(50 << 20, 1), 0o640);
    for i in 0..2000 {
        let body = format!("file {i}\n").repeat(i % 40 + 1);
        w(
            &format!("small/{:02}/f{i:04}.txt", i % 20),
            body.as_bytes(),
            0o640,
        );
    }
    w("ünïcødé 文件.txt", "grüße\n".as_bytes(), 0o600);
    w("with space.txt", b"spaces\n", 0o640);
    // Linux names are bytes: a Latin-1 name is not UTF-8 and must survive as it is.
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9-latin1.txt");
    std::fs::write(root.join(latin1), b"latin-1 name").expect("write");
    w("bin/tool", b"#!/bin/sh\necho hi\n", 0o4755);
    std::os::unix::fs::symlink("nested/a/b/c/deep.txt", root.join("link-rel")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).expect("symlink");
    std::fs::hard_link(
        root.join("with space.txt"),
        root.join("nested/hard-again.txt"),
    )
    .expect("hard link");
    std::fs::set_permissions(root.join("nested"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod");
    sh(&format!(
        "chown -R {alice}:{alice} '{r}/small' '{r}/big.bin' && chown {bob}:{bob} '{r}/ünïcødé 文件.txt' '{r}/nested' && chown -h {bob}:{alice} '{r}/link-rel'",
        r = root.display()
    ));
    // chown clears setuid: set it again.
    std::fs::set_permissions(
        root.join("bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .expect("chmod");
}

#[test]
fn round_trip_restores_content_links_modes_and_owners_by_name() {
    require_root("creates users and restores owners");
    let tag = std::process::id() % 100_000;
    let (alice, bob) = (format!("cfa{tag}"), format!("cfb{tag}"));
    let _users = Users::create(&[alice.clone(), bob.clone()]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("storage");
    build_tree(&src, &alice, &bob);
    let before = describe(&src);

    let world = World::new(&dir_source("storage", &src, ""));
    let id = world.backup();
    let verified = world.ok(&["verify", "--job", "app"]);
    assert!(
        verified.contains("ok") && verified.contains("decrypted"),
        "{verified}"
    );

    // The restore host has the same names with other ids.
    let old_uid = id_of("u", &alice);
    sh(&format!(
        "usermod -u {nu} {alice} && groupmod -g {ng} {alice} && usermod -u {nb} {bob} && groupmod -g {ngb} {bob}",
        nu = old_uid + 4000,
        ng = id_of("g", &alice) + 4000,
        nb = id_of("u", &bob) + 4000,
        ngb = id_of("g", &bob) + 4000
    ));
    assert_ne!(id_of("u", &alice), old_uid);

    let out_dir = tmp.path().join("restored");
    let out = world.ok(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &id,
        "--to",
        out_dir.to_str().expect("utf8"),
    ]);
    assert!(out.contains("consistent"), "{out}");
    let restored = out_dir.join("storage");
    let after = describe(&restored);
    // Source files still carry the old numeric ids (names no longer resolve to them);
    // compare everything but owners there, and owners by name on the restored side.
    let strip = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.rsplit_once(' ')
                        .map(|(a, _)| a.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    assert_eq!(
        strip(&before),
        strip(&after),
        "content, modes, links differ"
    );
    let owner = |m: &BTreeMap<String, String>, p: &str| {
        m[p].rsplit_once(' ')
            .map(|(_, o)| o.to_string())
            .unwrap_or_default()
    };
    assert_eq!(owner(&after, "big.bin"), format!("{alice}:{alice}"));
    assert_eq!(
        owner(&after, "small/03/f0003.txt"),
        format!("{alice}:{alice}")
    );
    assert_eq!(owner(&after, "ünïcødé 文件.txt"), format!("{bob}:{bob}"));
    assert_eq!(owner(&after, "nested"), format!("{bob}:{bob}"));
    assert_eq!(owner(&after, "link-rel"), format!("{bob}:{alice}"));
    let md = std::fs::metadata(restored.join("big.bin")).expect("stat");
    assert_eq!(
        md.uid(),
        id_of("u", &alice),
        "owner restored by name, not by old id"
    );
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9-latin1.txt");
    assert_eq!(
        std::fs::read(restored.join(latin1)).expect("non-UTF-8 name restored"),
        b"latin-1 name"
    );
    let tool = std::fs::metadata(restored.join("bin/tool")).expect("stat");
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid survives chown");
    let a = std::fs::metadata(restored.join("with space.txt")).expect("stat");
    let b = std::fs::metadata(restored.join("nested/hard-again.txt")).expect("stat");
    assert_eq!(a.ino(), b.ino(), "hard link restored as a hard link");

    // `check` agrees, and finds a change once one is made.
    let restored_s = restored.to_str().expect("utf8");
    world.ok(&["check", "--job", "app", "--path", restored_s]);
    std::fs::write(restored.join("small/00/f0000.txt"), b"tampered").expect("write");
    let diff = world.expect(&["check", "--job", "app", "--path", restored_s], 3);
    assert!(diff.contains("small/00/f0000.txt"), "{diff}");
}

#[test]
fn restore_policy_sets_owner_and_modes() {
    require_root("creates users and restores owners");
    let tag = std::process::id() % 100_000;
    let kadi = format!("cfk{tag}");
    let _users = Users::create(std::slice::from_ref(&kadi));
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("uploads");
    std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
    std::fs::write(src.join("a/b/x.bin"), noise(5000, 2)).expect("write");
    std::fs::write(src.join("top.txt"), b"top").expect("write");
    std::fs::set_permissions(src.join("top.txt"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::symlink("top.txt", src.join("alias")).expect("symlink");

    let policy = format!(
        "restore = {{ owner = \"{kadi}:{kadi}\", dir_mode = \"0750\", file_mode = \"0640\" }}"
    );
    let world = World::new(&dir_source("uploads", &src, &policy));
    world.backup();
    let out_dir = tmp.path().join("r");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        out_dir.to_str().expect("utf8"),
    ]);
    let kuid = id_of("u", &kadi);
    let kgid = id_of("g", &kadi);
    for e in WalkDir::new(out_dir.join("uploads")) {
        let e = e.expect("walk");
        let md = e.path().symlink_metadata().expect("lstat");
        assert_eq!((md.uid(), md.gid()), (kuid, kgid), "{}", e.path().display());
        if md.is_dir() {
            assert_eq!(md.mode() & 0o7777, 0o750, "{}", e.path().display());
        } else if md.is_file() {
            assert_eq!(md.mode() & 0o7777, 0o640, "{}", e.path().display());
        }
    }
    // `--owner numeric` overrides the policy's owner but keeps its modes.
    let out2 = tmp.path().join("r2");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--owner",
        "numeric",
        "--to",
        out2.to_str().expect("utf8"),
    ]);
    let md = std::fs::metadata(out2.join("uploads/top.txt")).expect("stat");
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o640));
}
