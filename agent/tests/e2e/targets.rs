//! A local target's directory is never created by accident (issue 14): a missing
//! one is usually a backup disk that is not mounted, and writing there fills the
//! filesystem below the mount point. Only `backup` with `create = true` creates
//! it; every other command fails with exit 2 and leaves nothing behind.

use crate::common::*;
use std::path::Path;
use std::process::Output;

const ADVICE: &str = "is the backup disk mounted?";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A world whose job backs up one small directory; `create` is written into the
/// local target's table when given.
fn world_with(create: Option<bool>) -> (World, tempfile::TempDir) {
    require_tool("age");
    require_tool("zstd");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"hello").expect("write");
    let world = World::new(&dir_source("files", &src, ""));
    if let Some(create) = create {
        set_create(&world, create);
    }
    (world, tmp)
}

fn set_create(world: &World, create: bool) {
    let text = std::fs::read_to_string(&world.config).expect("read config");
    let line = format!("path = \"{}\"\n", world.target().display());
    assert!(text.contains(&line), "{text}");
    let text = text.replace(&line, &format!("{line}create = {create}\n"));
    std::fs::write(&world.config, text).expect("write config");
}

/// Asserts a run failed with exit 2 on the missing target directory, named with
/// its absolute path, and that the directory is still not there.
fn refused(world: &World, args: &[&str], out: &Output) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "coffer {args:?}: {err}");
    let target = world.target().display().to_string();
    assert!(
        err.contains(&format!(
            "target local (local {target}): {target} does not exist"
        )) && err.contains(ADVICE),
        "coffer {args:?}: {err}"
    );
    assert!(!world.target().exists(), "coffer {args:?} created {target}");
}

#[test]
fn a_backup_to_a_missing_directory_fails_and_creates_nothing() {
    let (world, _tmp) = world_with(None);
    std::fs::remove_dir(world.target()).expect("remove the target directory");
    let args = ["backup", "app"];
    let out = world.run(&args);
    refused(&world, &args, &out);
    assert!(
        stderr(&out).contains("create it, or set create = true"),
        "{}",
        stderr(&out)
    );
    // `create = false` written out means the same.
    set_create(&world, false);
    let out = world.run(&args);
    refused(&world, &args, &out);
}

#[test]
fn create_true_lets_the_first_backup_make_the_directory() {
    let (world, _tmp) = world_with(Some(true));
    std::fs::remove_dir(world.target()).expect("remove the target directory");
    let id = world.backup();
    assert!(world.target().is_dir());
    assert!(world.snapshot_dir(&id).join("snapshot.json").is_file());
    // And a second backup into the directory it made works as usual.
    world.ok(&["backup", "app"]);
    assert_eq!(world.snapshots().len(), 2);
}

#[test]
fn reading_commands_never_create_a_missing_directory() {
    for create in [false, true] {
        let (world, tmp) = world_with(Some(create));
        let id = world.backup();
        // The disk is unmounted: its directory goes away with it.
        std::fs::rename(world.target(), tmp.path().join("unmounted")).expect("rename");
        let to = tmp.path().join("restored");
        let to = to.to_str().expect("utf8");
        let src = tmp.path().join("files");
        let src = src.to_str().expect("utf8");
        let commands: [&[&str]; 10] = [
            &["list"],
            &["list", "--job", "app"],
            &["verify", "--job", "app"],
            &["restore", "--job", "app", "--snapshot", &id, "--to", to],
            &["check", "--job", "app", "--path", src],
            &["ls", "--job", "app"],
            &["find", "--job", "app", "a*"],
            &["diff", "--job", "app", &id, "latest"],
            &["prune", "--dry-run"],
            &["prune"],
        ];
        for args in commands {
            let out = world.run(args);
            refused(&world, args, &out);
        }
        assert!(!Path::new(to).exists(), "restore wrote {to}");
        // config check is about the config: the same advice, as a warning.
        let out = world.run(&["config", "check"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains("warning: target local") && err.contains(ADVICE),
            "{err}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("target local: local "),
            "config check no longer prints the target"
        );
        assert!(!world.target().exists(), "config check created the target");
    }
}

#[test]
fn a_relative_path_is_reported_absolute_and_not_created() {
    let (world, tmp) = world_with(None);
    let text = std::fs::read_to_string(&world.config).expect("read config");
    let text = text.replace(
        &format!("path = \"{}\"", world.target().display()),
        "path = \"backups\"",
    );
    std::fs::write(&world.config, text).expect("write config");
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    let out = world
        .command(&["list"])
        .current_dir(&cwd)
        .output()
        .expect("run coffer");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let looked_at = cwd.join("backups").display().to_string();
    assert!(
        err.contains(&format!("{looked_at} does not exist")) && err.contains(ADVICE),
        "{err}"
    );
    assert!(!cwd.join("backups").exists(), "list created {looked_at}");
}

#[test]
fn the_quick_start_works_in_a_fresh_directory() {
    require_tool("age");
    require_tool("zstd");
    // A stand-in for a fresh clone: the example config, run from a directory
    // without coffer-quickstart/, backs up that directory (`path = "."`).
    let clone = tempfile::tempdir().expect("tempdir");
    std::fs::write(clone.path().join("README.md"), b"# a project\n").expect("write");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/quickstart.toml");
    let run = |args: &[&str]| {
        std::process::Command::new(coffer_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .current_dir(clone.path())
            .env_remove("COFFER_CONFIG")
            .output()
            .expect("run coffer")
    };
    let out = run(&["backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("committed to local"), "{stdout}");
    assert!(clone.path().join("coffer-quickstart/backups").is_dir());
    let out = run(&["list", "--job", "quickstart", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    // The restore the backup prints (into ./coffer-restore), then a second run:
    // it stores nothing new, the restored copy is not backed up.
    let id = list[0]["id"].as_str().expect("id");
    let out = run(&[
        "restore",
        "--job",
        "quickstart",
        "--snapshot",
        id,
        "--to",
        "./coffer-restore",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        clone
            .path()
            .join("coffer-restore/repository/README.md")
            .is_file()
    );
    let out = run(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup json");
    let text = report.to_string();
    assert!(
        !text.contains("coffer-restore") && text.contains("\"files\":1"),
        "the second run backed up the restored copy: {text}"
    );
}
