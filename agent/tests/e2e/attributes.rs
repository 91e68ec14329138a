//! Every attribute, or a clear statement of what is not kept (issue 13, item 6):
//! user xattrs, POSIX access and default ACLs and file capabilities go through
//! backup, restore and `check`, as `getfattr`, `getfacl`, `getcap` and `stat` see
//! them on this machine's filesystem; ACL entries follow names to new ids; a
//! destination without xattr support is warned about, not failed; what is not kept
//! (inode flags, `trusted.*`) is said at backup and restore; and a snapshot cannot
//! set a name coffer does not keep.

use crate::common::forge::Forgery;
use crate::common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use walkdir::WalkDir;

pub fn require_attr_tools() {
    require_root("sets file capabilities and ACLs for other users");
    for tool in [
        "getfattr", "setfattr", "getfacl", "setfacl", "getcap", "setcap",
    ] {
        require_tool(tool);
    }
}

/// A scratch folder on a filesystem with user xattrs and POSIX ACLs: a plain
/// temporary folder where the system's has them (ext4, XFS, btrfs; tmpfs since
/// Linux 6.6), else a small ext4 image mounted through a loop device, unmounted
/// when dropped.
pub struct AttrScratch {
    dir: tempfile::TempDir,
    mounted: Option<std::path::PathBuf>,
}

impl AttrScratch {
    pub fn new() -> AttrScratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"x").expect("write");
        let p = probe.display();
        let ok = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "setfattr -n user.probe -v 1 '{p}' && setfacl -m u:nobody:r '{p}'"
            ))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return AttrScratch { dir, mounted: None };
        }
        require_tool("mkfs.ext4");
        let (img, mnt) = (dir.path().join("fs.img"), dir.path().join("mnt"));
        sh(&format!(
            "truncate -s 64M '{i}' && mkfs.ext4 -q -F '{i}' && mkdir '{m}' && mount -o loop '{i}' '{m}'",
            i = img.display(),
            m = mnt.display()
        ));
        AttrScratch {
            dir,
            mounted: Some(mnt),
        }
    }

    pub fn path(&self) -> &Path {
        self.mounted.as_deref().unwrap_or(self.dir.path())
    }
}

impl Drop for AttrScratch {
    fn drop(&mut self) {
        if let Some(m) = &self.mounted {
            let _ = std::process::Command::new("umount").arg(m).output();
        }
    }
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `stat`, `getfattr`, `getfacl` and `getcap` say about every entry under
/// `root`, path by path (symlinks: only their target; they carry none of these).
pub fn attributes(root: &Path) -> BTreeMap<String, String> {
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
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(e.path()).expect("readlink");
            out.insert(rel, format!("link -> {}", target.display()));
            continue;
        }
        let p = e.path().display().to_string();
        let xattrs = text(&sh(&format!(
            "getfattr -h -d -m - -e hex --absolute-names '{p}' | sed '/^# file/d'"
        )));
        let acl = text(&sh(&format!("getfacl -n --omit-header '{p}'")));
        let cap = if md.is_file() {
            text(&sh(&format!("getcap '{p}'")))
                .replace(&p, "")
                .trim()
                .to_string()
        } else {
            String::new()
        };
        out.insert(
            rel,
            format!(
                "mode {:o}\nxattrs:\n{}acl:\n{}cap: {cap}",
                md.mode() & 0o7777,
                xattrs.trim_start(),
                acl
            ),
        );
    }
    out
}

/// The tree of the issue: a user xattr (and a binary one holding newlines), an
/// access ACL giving another user read on a group-read 0640 file, an ACL whose
/// mask is wider than the owning group (the mode shows the mask: 0660), a default
/// ACL on a directory, a file with `cap_net_raw`, a symlink and a hard link.
pub fn build_attr_tree(src: &Path) {
    std::fs::create_dir_all(src.join("inbox")).expect("mkdir");
    let write = |name: &str, mode: u32| {
        let p = src.join(name);
        std::fs::write(&p, format!("{name}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write("notes.txt", 0o644);
    write("shared.txt", 0o640);
    write("wide-mask.txt", 0o640);
    write("inbox/letter.txt", 0o600);
    std::fs::copy("/bin/true", src.join("ping")).expect("copy /bin/true");
    std::os::unix::fs::symlink("notes.txt", src.join("link")).expect("symlink");
    std::fs::hard_link(src.join("notes.txt"), src.join("other-name.txt")).expect("hard link");
    let s = src.display();
    sh(&format!(
        "cd '{s}' && setfattr -n user.comment -v hello notes.txt \
         && setfattr -n user.binary -v 0x0a00ff0a0a0d notes.txt \
         && setfacl -m u:nobody:r shared.txt \
         && setfacl -m u:nobody:rw wide-mask.txt \
         && setfacl -m u:nobody:rwx,g:nogroup:rx inbox \
         && setfacl -d -m u:nobody:rx inbox \
         && setcap cap_net_raw+ep ping"
    ));
}

fn restore_to(world: &World, to: &Path) -> std::process::Output {
    world.run(&[
        "restore",
        "--job",
        "app",
        "--to",
        to.to_str().expect("utf8"),
    ])
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn xattrs_acls_and_capabilities_survive_backup_restore_and_check() {
    require_attr_tools();
    let tmp = AttrScratch::new();
    let src = tmp.path().join("files");
    build_attr_tree(&src);
    let before = attributes(&src);
    // The tree is what the issue describes, as the tools see it.
    assert!(before["shared.txt"].contains("mode 640"), "{before:#?}");
    assert!(before["shared.txt"].contains("user:65534:r--"));
    assert!(before["wide-mask.txt"].contains("mode 660"));
    assert!(before["inbox"].contains("default:user:65534:r-x"));
    assert!(before["ping"].contains("cap_net_raw=ep"));
    assert!(before["notes.txt"].contains("user.comment=0x68656c6c6f"));

    let world = World::new(&dir_source("files", &src, ""));
    let id = world.backup();

    // The manifest records them (hex values), the hard link none of its own.
    let m: serde_json::Value =
        serde_json::from_slice(&forge::manifest_plain(&world, &world.target(), &id))
            .expect("manifest json");
    let entries = m["sources"][0]["entries"].as_array().expect("entries");
    let entry = |p: &str| {
        entries
            .iter()
            .find(|e| e["path"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("{p} not in the manifest"))
    };
    assert_eq!(entry("notes.txt")["xattrs"]["user.comment"], "68656c6c6f");
    assert_eq!(entry("notes.txt")["xattrs"]["user.binary"], "0a00ff0a0a0d");

    // An unchanged re-run opens no file: it reads the attributes through each
    // entry's directory (`On::At`), and records every entry as the first run did.
    let again = world.backup();
    let m2: serde_json::Value =
        serde_json::from_slice(&forge::manifest_plain(&world, &world.target(), &again))
            .expect("manifest json");
    assert_eq!(m2["sources"][0]["entries"], m["sources"][0]["entries"]);
    assert!(entry("ping")["xattrs"]["security.capability"].is_string());
    assert!(entry("inbox")["xattrs"]["system.posix_acl_default"].is_string());
    assert_eq!(entry("shared.txt")["acl_names"]["user:65534"], "nobody");
    assert!(entry("other-name.txt").get("xattrs").is_none());

    let out_dir = tmp.path().join("restored");
    let out = restore_to(&world, &out_dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text(&out).contains("consistent"), "{}", text(&out));
    let restored = out_dir.join("files");
    let after = attributes(&restored);
    assert_eq!(before, after, "attributes differ after restore");
    assert!(
        after["shared.txt"].contains("mode 640"),
        "not 0664: {after:#?}"
    );

    // `check` agrees, then sees a removed xattr and a removed capability.
    let path = restored.to_str().expect("utf8");
    let ok = world.ok(&["check", "--job", "app", "--path", path]);
    assert!(ok.contains("consistent"), "{ok}");
    sh(&format!(
        "setfattr -x user.comment '{path}/notes.txt' && setcap -r '{path}/ping' \
         && setfacl -m u:nobody:r '{path}/inbox/letter.txt'"
    ));
    let diff = world.expect(&["check", "--job", "app", "--path", path], 3);
    for want in [
        "xattr: notes.txt: user.comment missing",
        "xattr: ping: security.capability missing",
        "xattr: inbox/letter.txt: system.posix_acl_access is not in the snapshot",
        "INCONSISTENT",
    ] {
        assert!(diff.contains(want), "{want}:\n{diff}");
    }
    // A changed ACL is shown as text.
    sh(&format!("setfacl -m u:nobody:rw '{path}/shared.txt'"));
    let diff = world.expect(&["check", "--job", "app", "--path", path], 3);
    assert!(
        diff.contains("shared.txt: system.posix_acl_access is user::rw-,user:65534:rw-"),
        "{diff}"
    );
}

/// Test users, removed again when dropped.
struct User(String);

impl User {
    fn create(name: &str) -> User {
        require_tool("useradd");
        let _ = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("userdel {name}; groupdel {name}"))
            .output();
        sh(&format!(
            "useradd --no-create-home --user-group --shell /usr/sbin/nologin {name}"
        ));
        User(name.to_string())
    }

    fn id(&self, kind: &str) -> u32 {
        text(&sh(&format!("id -{kind} {}", self.0)))
            .trim()
            .parse()
            .expect("numeric id")
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("userdel {0}; groupdel {0}", self.0))
            .output();
    }
}

#[test]
fn acl_entries_follow_user_and_group_names_to_new_ids() {
    require_attr_tools();
    let name = format!("cfacl{}", std::process::id() % 100_000);
    let user = User::create(&name);
    let tmp = AttrScratch::new();
    let src = tmp.path().join("files");
    std::fs::create_dir_all(src.join("dir")).expect("mkdir");
    std::fs::write(src.join("f"), b"x").expect("write");
    let s = src.display();
    sh(&format!(
        "setfacl -m u:{name}:r,g:{name}:rw '{s}/f' && setfacl -d -m u:{name}:rx '{s}/dir'"
    ));
    let world = World::new(&dir_source("files", &src, ""));
    world.backup();

    // The restore host has the same names with other ids.
    let (old_uid, old_gid) = (user.id("u"), user.id("g"));
    sh(&format!(
        "usermod -u {} {name} && groupmod -g {} {name}",
        old_uid + 4000,
        old_gid + 4000
    ));
    let out_dir = tmp.path().join("restored");
    let out = restore_to(&world, &out_dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = out_dir.join("files");
    let acl = text(&sh(&format!(
        "getfacl -n --omit-header '{}/f'",
        r.display()
    )));
    assert!(
        acl.contains(&format!("user:{}:r--", old_uid + 4000))
            && acl.contains(&format!("group:{}:rw-", old_gid + 4000)),
        "{acl}"
    );
    let dacl = text(&sh(&format!(
        "getfacl -n --omit-header '{}/dir'",
        r.display()
    )));
    assert!(
        dacl.contains(&format!("default:user:{}:r-x", old_uid + 4000)),
        "{dacl}"
    );
    world.ok(&["check", "--job", "app", "--path", r.to_str().expect("utf8")]);
    // With numeric owners the recorded ids come back, and check expects them.
    let numeric = tmp.path().join("numeric");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--owner",
        "numeric",
        "--to",
        numeric.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let acl = text(&sh(&format!(
        "getfacl -n --omit-header '{}/files/f'",
        numeric.display()
    )));
    assert!(acl.contains(&format!("user:{old_uid}:r--")), "{acl}");
}

/// A ramfs, which keeps owners and modes but no extended attributes at all;
/// unmounted when dropped.
struct Ramfs(std::path::PathBuf);

impl Ramfs {
    fn mount(at: &Path) -> Ramfs {
        std::fs::create_dir_all(at).expect("mkdir");
        sh(&format!("mount -t ramfs coffer-test '{}'", at.display()));
        Ramfs(at.to_path_buf())
    }
}

impl Drop for Ramfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).output();
    }
}

#[test]
fn a_destination_without_xattrs_gets_a_warning_not_a_failed_restore() {
    require_attr_tools();
    require_tool("mount");
    let tmp = AttrScratch::new();
    let src = tmp.path().join("files");
    build_attr_tree(&src);
    let world = World::new(&dir_source("files", &src, ""));
    world.backup();
    let dest = tmp.path().join("ramfs");
    let _mounted = Ramfs::mount(&dest);
    let out = restore_to(&world, &dest);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}\n{}", text(&out));
    assert!(
        err.contains("source files: extended attributes NOT restored, the destination's filesystem does not support them")
            && err.contains("POSIX ACLs")
            && err.contains("file capabilities")
            && err.contains("user attributes"),
        "{err}"
    );
    // Contents, owners and modes are all there; the check says what it skipped.
    let restored = dest.join("files");
    let md = std::fs::metadata(restored.join("shared.txt")).expect("stat");
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::read(restored.join("ping")).expect("read"),
        std::fs::read("/bin/true").expect("read")
    );
    let out = world.ok(&[
        "check",
        "--job",
        "app",
        "--path",
        restored.to_str().expect("utf8"),
    ]);
    assert!(
        out.contains("not compared: the filesystem does not support them"),
        "{out}"
    );
}

/// Clears the flags set on `paths` when dropped, so the temporary folder can go.
struct Flagged(Vec<std::path::PathBuf>);

impl Drop for Flagged {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-ia")
                .arg(p)
                .output();
        }
    }
}

#[test]
fn what_is_not_kept_is_said_at_backup_and_at_restore() {
    require_attr_tools();
    require_tool("chattr");
    let tmp = AttrScratch::new();
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    for f in ["frozen", "log", "internal"] {
        std::fs::write(src.join(f), b"x").expect("write");
    }
    let _flags = Flagged(vec![src.join("frozen"), src.join("log")]);
    sh(&format!(
        "cd '{}' && chattr +i frozen && chattr +a log && setfattr -n trusted.coffer-test -v x internal",
        src.display()
    ));
    let world = World::new(&dir_source("files", &src, ""));
    // The second run is unchanged: it reads flags and attribute names through
    // each file's directory, opening none.
    for _ in 0..2 {
        let out = world.run(&["backup", "app"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains("source files: 1 immutable and 1 append-only entries")
                && err.contains("a restore does not set them"),
            "{err}"
        );
        assert!(
            err.contains("extended attributes not kept") && err.contains("trusted.* on 1"),
            "{err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let out = restore_to(&world, &tmp.path().join("restored"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("2 entries had the immutable or append-only flag")
            && err.contains("frozen (immutable (chattr +i))")
            && err.contains("log (append-only (chattr +a))"),
        "{err}"
    );
}

#[test]
fn a_snapshot_cannot_set_attributes_coffer_does_not_keep() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"hello").expect("write");
    let world = World::new(&dir_source("files", &src, ""));
    let id = world.backup();
    for (name, value) in [
        ("trusted.overlay.redirect", "2f657463"),
        (
            "security.selinux",
            "73797374656d5f753a6f626a6563745f723a7368616477",
        ),
        ("user.big", &"00".repeat(64 * 1024 + 1)),
    ] {
        let mut f = Forgery::of(&world, &id);
        for e in f.manifest["sources"][0]["entries"]
            .as_array_mut()
            .expect("entries")
        {
            if e["path"] == "a.txt" {
                e["xattrs"] = serde_json::json!({ name: value });
            }
        }
        f.save_unsigned();
        let dest = tmp.path().join(format!("dest-{}", name.replace('.', "-")));
        let out = world.run(&[
            "restore",
            "--job",
            "app",
            "--allow-unsigned",
            "--to",
            dest.to_str().expect("utf8"),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            (err.contains("a.txt") && err.contains("not one coffer keeps"))
                || err.contains("value over 64 KiB"),
            "{name}: {err}"
        );
        assert!(
            !dest.join("files/a.txt").exists(),
            "{name}: nothing restored"
        );
    }
}
