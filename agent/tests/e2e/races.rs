//! Races and rough edges around a run, against the real binary: a prune while a
//! backup runs, an object deleted under a running backup, the lower bound on
//! `incomplete_after`, a reader that closes stdout early, and a commit on a full
//! filesystem. Slow runs come from big sparse files (no disk space, seconds of
//! reading), never from sleeping.

use crate::common::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A source directory with a sparse file of `gib` GiB: zeros read, hashed and
/// compressed at some GB/s, so the run lasts a few seconds to tens of seconds.
fn slow_dir(root: &Path, name: &str, gib: u64) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::File::create(dir.join("sparse.img"))
        .expect("create")
        .set_len(gib << 30)
        .expect("sparse");
    dir
}

fn small_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("small.txt"), b"small").expect("write");
    dir
}

fn spawn_backup(world: &World) -> Child {
    world
        .command(&["backup", "app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup")
}

/// Waits until `found` returns something, failing if the backup ends first.
fn wait_for<T>(child: &mut Child, what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = found() {
            return t;
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the backup ended before {what}"
        );
        // A deadlock detector, not a timing claim.
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "never saw {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn snapshot_folder(world: &World) -> Option<std::path::PathBuf> {
    std::fs::read_dir(world.target().join("app"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .next()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn prune_leaves_a_job_being_backed_up_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let big = slow_dir(tmp.path(), "big", 200);
    let world = World::new(&dir_source("big", &big, ""));
    let mut backup = spawn_backup(&world);
    let folder = wait_for(&mut backup, "its folder appeared", || {
        snapshot_folder(&world)
    });

    let out = world.run(&["prune", "--job", "app"]);
    let err = text(&out.stderr);
    assert!(
        backup.try_wait().expect("poll").is_none(),
        "the backup ended before prune was done: the test proves nothing"
    );
    assert_eq!(out.status.code(), Some(1), "prune during a backup: {err}");
    assert!(
        err.contains("job app not pruned") && err.contains("locks/app.lock"),
        "the refusal names the job and the lock: {err}"
    );
    assert!(folder.exists(), "prune touched the running backup's folder");
    // A dry run needs no lock: it deletes nothing.
    world.ok(&["prune", "--job", "app", "--dry-run"]);

    backup.kill().expect("kill");
    backup.wait().expect("reap");
}

#[test]
fn a_backup_does_not_commit_an_object_deleted_under_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let small = small_dir(tmp.path(), "small");
    let big = slow_dir(tmp.path(), "big", 8);
    let world = World::new(&format!(
        "{FORMAT_1}{}{}",
        dir_source("small", &small, ""),
        dir_source("big", &big, "")
    ));
    let mut backup = spawn_backup(&world);
    // The small source's object is complete (renamed from its staging file) long
    // before the big one is: delete it the way a careless prune would.
    let object = wait_for(&mut backup, "the small object was complete", || {
        let o = snapshot_folder(&world)?.join("small.tar.zst.age");
        o.exists().then_some(o)
    });
    std::fs::remove_file(&object).expect("delete the finished object");
    assert!(
        backup.try_wait().expect("poll").is_none(),
        "the backup ended before the object was deleted: the test proves nothing"
    );

    let out = backup.wait_with_output().expect("wait for the backup");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    assert!(
        err.contains("small.tar.zst.age is gone") && err.contains("target local"),
        "the failure says which object and which target: {err}"
    );
    assert!(
        world.snapshots().is_empty(),
        "a snapshot missing an object was committed"
    );
    assert!(
        snapshot_folder(&world).is_none_or(|f| !f.join("snapshot.json").exists()),
        "a marker was written"
    );
}

#[test]
fn incomplete_after_below_an_hour_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let small = small_dir(tmp.path(), "small");
    let world = World::new(&format!(
        "retention = {{ keep_last = 2, incomplete_after = \"59m\" }}\n{}",
        dir_source("small", &small, "")
    ));
    let out = world.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = std::fs::read_to_string(&world.config)
        .expect("read config")
        .lines()
        .position(|l| l.contains("incomplete_after"))
        .expect("the line")
        + 1;
    assert!(
        err.contains(&format!("coffer.toml:{line}:"))
            && err.contains("jobs.app.retention.incomplete_after")
            && err.contains("minimum is 1h"),
        "the error names the file, line, key and minimum: {err}"
    );
    // The bound itself is allowed.
    world.write_config(&format!(
        "retention = {{ keep_last = 2, incomplete_after = \"1h\" }}\n{}",
        dir_source("small", &small, "")
    ));
    world.ok(&["config", "check"]);
}

/// Runs coffer with a stdout pipe whose reader is already gone.
fn with_closed_stdout(world: &World, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    world
        .command(args)
        .stdout(writer)
        .output()
        .expect("run coffer")
}

#[test]
fn a_reader_that_goes_away_ends_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let small = small_dir(tmp.path(), "small");
    let world = World::new(&dir_source("small", &small, ""));

    // backup keeps going when its report cannot be printed: exit 0, a snapshot.
    let out = with_closed_stdout(&world, &["backup", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(world.snapshots().len(), 1);

    // restore keeps SIGPIPE ignored (it feeds database tools through pipes): it
    // finishes its work and exits 0 without panicking.
    for json in [false, true] {
        let dest = tmp.path().join(format!("restored-{json}"));
        let mut args = vec![
            "restore",
            "--job",
            "app",
            "--to",
            dest.to_str().expect("utf8"),
        ];
        if json {
            args.push("--json");
        }
        let out = with_closed_stdout(&world, &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("panicked"),
            "{}",
            text(&out.stderr)
        );
        assert!(dest.join("small").exists(), "{args:?} restored nothing");
    }

    let old = world.target().join("app/20000101T000000Z-dead");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(old.join("small.tar.zst.age#1"), b"partial").expect("write");
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["prune"],
        &["verify", "--job", "app"],
    ] {
        let out = with_closed_stdout(&world, args);
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "coffer {args:?}: {err}");
        assert!(
            out.status.code() == Some(0) || out.status.signal() == Some(sigpipe()),
            "coffer {args:?} ended with {:?}: {err}",
            out.status
        );
    }
    assert!(!old.exists(), "prune did not do its work before printing");
}

/// SIGPIPE is 13 on every Linux architecture.
fn sigpipe() -> i32 {
    nix::sys::signal::Signal::SIGPIPE as i32
}

/// Unmounts (and so empties) a test filesystem however the test ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_commit_on_a_full_filesystem_says_why() {
    require_root("mounts a tmpfs as the target");
    let tmp = tempfile::tempdir().expect("tempdir");
    let small = small_dir(tmp.path(), "small");
    // Format 1: the inodes below are counted for its layout.
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("small", &small, "")));
    let target = world.target();
    std::fs::create_dir_all(&target).expect("mkdir");
    // Room for the target's root, app/, the snapshot folder and its two objects,
    // and not one inode more: snapshot.json, the commit, gets ENOSPC ("No space
    // left on device"), exactly as on a disk that filled up during the run.
    sh(&format!(
        "mount -t tmpfs -o size=8m,nr_inodes=5 coffer-full {}",
        target.display()
    ));
    let _mounted = Mounted(target.clone());

    let out = world.run(&["backup", "app"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no target accepted the snapshot")
            && err.contains("target local")
            && err.contains("No space left on device"),
        "the failure says why the target refused: {err}"
    );
    assert!(
        !std::fs::read_dir(target.join("app"))
            .map(|d| d.flatten().any(|e| e.path().join("snapshot.json").exists()))
            .unwrap_or(false),
        "a marker was written"
    );
}
