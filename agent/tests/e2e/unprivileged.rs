//! coffer run by an unprivileged user: a file it cannot read fails the run and is
//! named (or is skipped and reported with `skip_unreadable`), and a restore without
//! root leaves owners alone with one warning instead of failing.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

pub(crate) const NOBODY: u32 = 65534;

/// Runs coffer as nobody (no groups): exit code, stdout, stderr.
pub(crate) fn as_nobody(world: &World, args: &[&str]) -> (Option<i32>, String, String) {
    require_tool("setpriv");
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            coffer_bin(),
            "--config",
        ])
        .arg(&world.config)
        .args(args)
        .output()
        .expect("run setpriv");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn open_up(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn unreadable_files_fail_the_run_unless_skipped_and_restore_works_without_root() {
    require_root("hands files to nobody and runs coffer as nobody");
    let tmp = tempfile::tempdir().expect("tempdir");
    open_up(tmp.path(), 0o755);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    open_up(&src, 0o755);
    std::fs::write(src.join("public.txt"), b"anyone").expect("write");
    open_up(&src.join("public.txt"), 0o644);
    std::fs::write(src.join("secret.txt"), b"root only").expect("write");
    open_up(&src.join("secret.txt"), 0o600);

    let world = World::new(&dir_source("files", &src, ""));
    open_up(world.dir.path(), 0o755);
    open_up(&world.config, 0o644);
    for d in ["state", "backups", "restore"] {
        let p = world.path(d);
        std::fs::create_dir_all(&p).expect("mkdir");
        nix::unistd::chown(
            &p,
            Some(nix::unistd::Uid::from_raw(NOBODY)),
            Some(nix::unistd::Gid::from_raw(NOBODY)),
        )
        .expect("chown");
    }

    let (code, _, err) = as_nobody(&world, &["backup", "app"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("secret.txt")
            && err.contains("cannot read")
            && err.contains("skip_unreadable"),
        "{err}"
    );
    assert!(world.snapshots().is_empty(), "a failed run left a snapshot");

    world.write_config(&dir_source("files", &src, "skip_unreadable = true"));
    open_up(&world.config, 0o644);
    let (code, _, err) = as_nobody(&world, &["backup", "app"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("secret.txt") && err.contains("skipped"),
        "{err}"
    );

    // Restore as nobody (given the identity): owners are skipped with one warning.
    open_up(&world.identity, 0o644);
    let dest = world.path("restore");
    let (code, out, err) = as_nobody(
        &world,
        &[
            "restore",
            "--job",
            "app",
            "--to",
            dest.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(err.matches("not running as root").count(), 1, "{err}");
    assert!(out.contains("consistent"), "{out}");
    assert_eq!(
        std::fs::read(dest.join("files/public.txt")).expect("restored"),
        b"anyone"
    );
    assert!(!dest.join("files/secret.txt").exists());
}
