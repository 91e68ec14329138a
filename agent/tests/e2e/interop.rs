//! The "restore without coffer" promise: every object is a plain age file holding a
//! plain zstd stream, and directory sources are tar archives GNU tar extracts.

use crate::common::*;
use walkdir::WalkDir;

#[test]
fn age_zstd_and_tar_restore_a_snapshot_without_coffer() {
    require_tool("age");
    require_tool("zstd");
    require_tool("tar");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("docs");
    std::fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
    std::fs::write(src.join("sub/deeper/report.txt"), b"numbers\n".repeat(1000)).expect("write");
    std::fs::write(src.join("photo.jpg"), noise(2 << 20, 3)).expect("write");
    let long = "n".repeat(120);
    std::fs::create_dir_all(src.join(&long)).expect("mkdir");
    std::fs::write(
        src.join(&long)
            .join("long-name-".to_string() + &"x".repeat(90)),
        b"pax path",
    )
    .expect("write");
    std::os::unix::fs::symlink("photo.jpg", src.join("cover.jpg")).expect("symlink");
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("docs", &src, "")));
    let id = world.backup();
    let snap = world.snapshot_dir(&id);
    let out = tmp.path().join("by-hand");
    std::fs::create_dir_all(&out).expect("mkdir");
    sh(&format!(
        "age -d -i '{id}' '{obj}' | zstd -d | tar -x -C '{out}'",
        id = world.identity.display(),
        obj = snap.join("docs.tar.zst.age").display(),
        out = out.display()
    ));
    let mut compared = 0;
    for e in WalkDir::new(&src) {
        let e = e.expect("walk");
        let rel = e.path().strip_prefix(&src).expect("prefix");
        let got = out.join(rel);
        let md = e.path().symlink_metadata().expect("lstat");
        if md.is_file() {
            assert_eq!(
                std::fs::read(e.path()).expect("src"),
                std::fs::read(&got).expect("extracted"),
                "{}",
                rel.display()
            );
            compared += 1;
        } else if md.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(e.path()).expect("l"),
                std::fs::read_link(&got).expect("l")
            );
        }
    }
    assert_eq!(compared, 3);

    // The manifest is readable the same way and lists every file with its hash.
    let manifest = sh(&format!(
        "age -d -i '{}' '{}' | zstd -d",
        world.identity.display(),
        snap.join("manifest.json.zst.age").display()
    ));
    let m: serde_json::Value = serde_json::from_slice(&manifest.stdout).expect("manifest json");
    assert_eq!(m["format"], 1);
    let entries = m["sources"][0]["entries"].as_array().expect("entries");
    let report = entries
        .iter()
        .find(|e| e["path"] == "sub/deeper/report.txt")
        .expect("listed");
    assert_eq!(
        report["blake3"],
        blake3::hash(&b"numbers\n".repeat(1000))
            .to_hex()
            .to_string()
    );
}

/// GNU tar restores what coffer keeps: user xattrs and file capabilities from the
/// `SCHILY.xattr.*` records, ACLs from `SCHILY.acl.*` (GNU tar never sets the
/// `system.posix_acl_*` attributes itself), with the modes they belong to.
#[test]
fn gnu_tar_restores_the_same_xattrs_acls_and_capabilities() {
    use crate::attributes::{AttrScratch, attributes, build_attr_tree, require_attr_tools};
    require_attr_tools();
    require_tool("age");
    require_tool("zstd");
    require_tool("tar");
    let tmp = AttrScratch::new();
    let src = tmp.path().join("files");
    build_attr_tree(&src);
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("files", &src, "")));
    let id = world.backup();
    let out = tmp.path().join("by-hand");
    std::fs::create_dir_all(&out).expect("mkdir");
    sh(&format!(
        "age -d -i '{id}' '{obj}' | zstd -d | tar --xattrs --xattrs-include='*' --acls -x -C '{out}'",
        id = world.identity.display(),
        obj = world.snapshot_dir(&id).join("files.tar.zst.age").display(),
        out = out.display()
    ));
    let (before, after) = (attributes(&src), attributes(&out));
    assert_eq!(before, after, "GNU tar restored other attributes");
    assert!(after["ping"].contains("cap_net_raw=ep"), "{after:#?}");
    assert!(after["inbox"].contains("default:user:65534:r-x"));
    assert!(after["notes.txt"].contains("user.binary=0x0a00ff0a0a0d"));
}
