//! Setuid, setgid and sticky bits and file capabilities come back only with the
//! recorded owner (issue 20, item 3): a user whose files are backed up can
//! `chmod u+s` their own binary, and a restore that gives it another owner
//! (`--owner skip` as root, an owner policy, a restore not as root) must not turn
//! it into a setuid binary of root or of the policy's user. Format 1 and 2 alike;
//! the restore's own check and `coffer check` expect what the restore did, and
//! still notice a wrong mode.

use crate::attributes::{AttrScratch, require_attr_tools};
use crate::common::*;
use crate::unprivileged::{NOBODY, as_nobody};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// An id no account of the test machine has: a user's files, as on the backup host.
const USER: u32 = 4242;

/// A copy of /bin/true at `rel` under `root`, owned `uid:gid`, with `mode`
/// (chmod after chown: chown clears setuid).
fn binary(root: &Path, rel: &str, (uid, gid): (u32, u32), mode: u32) {
    let p = root.join(rel);
    std::fs::copy("/bin/true", &p).expect("copy /bin/true");
    std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("lstat").mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let md = std::fs::symlink_metadata(p).expect("lstat");
    (md.uid(), md.gid())
}

fn capability(p: &Path) -> String {
    let out = sh(&format!("getcap '{}'", p.display()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The user's setuid binary (and a hard link to it), a setgid one of the user's
/// group, a setuid-root one, one with `cap_net_raw` and a setgid, sticky folder of
/// the user's.
fn build(src: &Path) {
    std::fs::create_dir_all(src.join("shared")).expect("mkdir");
    binary(src, "tool", (USER, USER), 0o4755);
    std::fs::hard_link(src.join("tool"), src.join("tool-again")).expect("hard link");
    binary(src, "gtool", (0, USER), 0o2755);
    binary(src, "rtool", (0, 0), 0o4755);
    binary(src, "ping", (USER, USER), 0o755);
    sh(&format!(
        "setcap cap_net_raw+ep '{}'",
        src.join("ping").display()
    ));
    let shared = src.join("shared");
    std::os::unix::fs::lchown(&shared, Some(USER), Some(USER)).expect("chown");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o3777)).expect("chmod");
}

fn restore(world: &World, to: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "restore",
        "--job",
        "app",
        "--to",
        to.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    world.run(&args)
}

#[test]
fn setuid_setgid_and_capabilities_come_back_only_with_the_recorded_owner() {
    require_attr_tools();
    for format in ["", FORMAT_1] {
        let tmp = AttrScratch::new();
        let src = tmp.path().join("files");
        build(&src);
        let world = World::new(&format!("{format}{}", dir_source("files", &src, "")));
        world.backup();

        // Owners restored exactly (as root, the default): everything is kept.
        let exact = tmp.path().join("exact");
        let out = restore(&world, &exact, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{format}{err}");
        assert!(!err.contains("WITHOUT"), "{format}{err}");
        let r = exact.join("files");
        assert_eq!(mode(&r.join("tool")), 0o4755, "{format}");
        assert_eq!(owner(&r.join("tool")), (USER, USER), "{format}");
        assert_eq!(mode(&r.join("gtool")), 0o2755, "{format}");
        assert_eq!(mode(&r.join("rtool")), 0o4755, "{format}");
        assert_eq!(mode(&r.join("shared")), 0o3777, "{format}");
        assert!(
            capability(&r.join("ping")).contains("cap_net_raw=ep"),
            "{format}"
        );
        // `check` agrees, and still sees a bit that went missing.
        let path = r.to_str().expect("utf8");
        world.ok(&["check", "--job", "app", "--path", path]);
        std::fs::set_permissions(r.join("tool"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let diff = world.expect(&["check", "--job", "app", "--path", path], 3);
        assert!(diff.contains("mode: tool: 0755, expected 4755"), "{diff}");

        // `--owner skip` as root: root owns everything, so nothing of the user's
        // keeps a bit or a capability; the setuid-root binary is root's as recorded.
        let skipped = tmp.path().join("skipped");
        let out = restore(&world, &skipped, &["--owner", "skip"]);
        let (err, text) = (stderr(&out), stdout(&out));
        assert_eq!(out.status.code(), Some(0), "{format}{err}{text}");
        assert!(text.contains("consistent"), "{format}{text}");
        let r = skipped.join("files");
        assert_eq!(owner(&r.join("tool")), (0, 0), "{format}");
        assert_eq!(mode(&r.join("tool")), 0o755, "{format}: setuid root");
        assert_eq!(mode(&r.join("tool-again")), 0o755, "{format}");
        assert_eq!(mode(&r.join("gtool")), 0o755, "{format}: setgid root");
        assert_eq!(
            mode(&r.join("rtool")),
            0o4755,
            "{format}: root's, as recorded"
        );
        assert_eq!(mode(&r.join("shared")), 0o1777, "{format}: sticky stays");
        assert_eq!(capability(&r.join("ping")).trim(), "", "{format}");
        for want in [
            "source files: 4 entries restored WITHOUT their setuid/setgid/sticky bits or file capabilities",
            "tool (setuid)",
            "gtool (setgid)",
            "ping (capability)",
            "shared (setgid)",
        ] {
            assert!(err.contains(want), "{format}{want}:\n{err}");
        }
        assert!(!err.contains("rtool"), "{format}{err}");
    }
}

#[test]
fn an_owner_policy_does_not_hand_out_setuid_or_capabilities() {
    require_attr_tools();
    let tmp = AttrScratch::new();
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    binary(&src, "rtool", (0, 0), 0o4755);
    binary(&src, "ping", (0, 0), 0o755);
    sh(&format!(
        "setcap cap_net_raw+ep '{}'",
        src.join("ping").display()
    ));
    let policy = format!("restore = {{ owner = \"{NOBODY}:{NOBODY}\" }}");
    let world = World::new(&dir_source("files", &src, &policy));
    world.backup();

    let dest = tmp.path().join("policy");
    let out = restore(&world, &dest, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}{}", stdout(&out));
    let r = dest.join("files");
    assert_eq!(owner(&r.join("rtool")), (NOBODY, NOBODY));
    assert_eq!(
        mode(&r.join("rtool")),
        0o755,
        "setuid for the policy's user"
    );
    assert_eq!(capability(&r.join("ping")).trim(), "");
    assert!(
        err.contains("2 entries restored WITHOUT")
            && err.contains("rtool (setuid)")
            && err.contains("ping (capability)"),
        "{err}"
    );
    // `check` (with the same policy) agrees, and notices the bit set again.
    let path = r.to_str().expect("utf8");
    world.ok(&["check", "--job", "app", "--path", path]);
    std::fs::set_permissions(r.join("rtool"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
    sh(&format!("setcap cap_net_raw+ep '{path}/ping'"));
    let diff = world.expect(&["check", "--job", "app", "--path", path], 3);
    assert!(
        diff.contains("mode: rtool: 4755, expected 0755 (setuid, setgid"),
        "{diff}"
    );
    assert!(
        diff.contains("xattr: ping: security.capability is set, but a file capability is kept only with the recorded owner"),
        "{diff}"
    );

    // `--owner preserve` overrides the policy's owner: recorded owners, bits kept.
    let preserved = tmp.path().join("preserved");
    let out = restore(&world, &preserved, &["--owner", "preserve"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("WITHOUT"), "{}", stderr(&out));
    let r = preserved.join("files");
    assert_eq!(
        (owner(&r.join("rtool")), mode(&r.join("rtool"))),
        ((0, 0), 0o4755)
    );
    assert!(capability(&r.join("ping")).contains("cap_net_raw=ep"));
}

#[test]
fn a_restore_not_as_root_clears_the_bits_of_other_owners() {
    require_root("makes files of other users and runs coffer as nobody");
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    binary(&src, "tool", (USER, USER), 0o4755);
    binary(&src, "gtool", (0, USER), 0o2755);
    // nobody's own setuid binary: restored by nobody it has its recorded owner.
    binary(&src, "own", (NOBODY, NOBODY), 0o4755);
    let world = World::new(&dir_source("files", &src, ""));
    world.backup();
    // Everything of the world (config, identity, target, state) is nobody's now.
    sh(&format!(
        "chown -R {NOBODY}:{NOBODY} '{}'",
        world.dir.path().display()
    ));
    std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");

    let dest = world.path("restore");
    let to = dest.to_str().expect("utf8");
    let (code, out, err) = as_nobody(&world, &["restore", "--job", "app", "--to", to]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("consistent"), "{out}");
    let r = dest.join("files");
    assert_eq!(owner(&r.join("tool")).0, NOBODY);
    assert_eq!(
        mode(&r.join("tool")),
        0o755,
        "setuid for the restoring user"
    );
    assert_eq!(mode(&r.join("gtool")), 0o755);
    assert_eq!(mode(&r.join("own")), 0o4755, "nobody's own, as recorded");
    assert!(
        err.contains("2 entries restored WITHOUT")
            && err.contains("tool (setuid)")
            && err.contains("gtool (setgid)"),
        "{err}"
    );
    // `check` as nobody (owners not compared) expects the same.
    let path = r.to_str().expect("utf8");
    let (code, out, err) = as_nobody(&world, &["check", "--job", "app", "--path", path]);
    assert_eq!(code, Some(0), "{out}{err}");
}
