//! Filesystem snapshots at the freeze barrier (issue 13), on a real btrfs made by
//! each test on a loop device: `snapshot = "btrfs"` and the generic
//! `snapshot_command`/`release_command` pair each back up the tree of their
//! instant while a writer deletes and adds files; every snapshot is gone after a
//! run that succeeded, failed or was stopped by SIGTERM, and what a SIGKILLed run
//! held is released by the next run. Plus the window each source and the job
//! report. Slow walks come from a big sparse file (seconds of reading zeros),
//! never from sleeping.

use crate::common::btrfs::Btrfs;
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Sorts first, so the walk reaches everything else only after reading it.
const BIG: &str = "a-big.img";
/// Deleted from the live tree once the snapshot exists; sorts last.
const VICTIM: &str = "z-victim";
/// Created in the live tree once the snapshot exists.
const NEWCOMER: &str = "y-newcomer";

/// A tree whose walk takes seconds: a sparse file of `gib` GiB read first, some
/// small files, and the victim last.
fn fill(dir: &Path, gib: u64) {
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::File::create(dir.join(BIG))
        .and_then(|f| f.set_len(gib << 30))
        .expect("sparse file");
    for i in 0..200 {
        std::fs::write(dir.join("sub").join(format!("f{i:03}")), noise(512, i)).expect("write");
    }
    std::fs::write(dir.join(VICTIM), b"referenced by the database").expect("write");
}

fn spawn_backup(world: &World) -> Child {
    world
        .command(&["backup", "app", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup")
}

/// Polls until `ready`, failing if the backup ends first (the test would prove nothing).
fn wait_while_running(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the backup ended before {what}: the test proves nothing"
        );
        // A deadlock detector, not a timing claim.
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "never saw {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The one run `backup --json` reported.
fn run_of(out: &Output) -> Value {
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "backup --json: {e}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    runs[0].clone()
}

fn source<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no source {name} in {run}"))
}

fn seconds(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// Backs up while a writer deletes VICTIM and adds NEWCOMER in `live` as soon as
/// `snapshot_exists`; restores and checks the tree is the one of the snapshot's
/// instant. Returns the run's JSON report.
fn backup_while_writing(world: &World, live: &Path, snapshot_exists: impl Fn() -> bool) -> Value {
    let mut backup = spawn_backup(world);
    wait_while_running(&mut backup, "the snapshot existed", &snapshot_exists);
    std::fs::remove_file(live.join(VICTIM)).expect("delete the victim");
    std::fs::write(live.join(NEWCOMER), b"written after the instant").expect("add");
    assert!(
        backup.try_wait().expect("poll").is_none(),
        "the backup ended before the writer changed the tree: the test proves nothing"
    );
    let out = backup.wait_with_output().expect("wait for the backup");
    assert_eq!(
        out.status.code(),
        Some(0),
        "backup failed: {}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("vanished"),
        "the walk saw the live tree: {}",
        text(&out.stderr)
    );

    let restored = world.path("restored");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--source",
        "files",
        "--to",
        restored.to_str().expect("utf8"),
    ]);
    let files = restored.join("files");
    assert_eq!(
        std::fs::read(files.join(VICTIM)).expect("the victim was in the snapshot"),
        b"referenced by the database"
    );
    assert!(
        !files.join(NEWCOMER).exists(),
        "a file written after the instant was backed up"
    );
    assert!(
        files.join("sub/f199").exists() && files.join(BIG).exists(),
        "the rest of the tree is missing"
    );
    assert!(
        !files.join(".coffer-snapshots").exists(),
        "coffer's own snapshot directory was backed up"
    );
    run_of(&out)
}

/// The manifest of the last snapshot, decrypted.
fn manifest(world: &World) -> Value {
    let id = world.snapshots().pop().expect("a snapshot");
    serde_json::from_slice(&forge::manifest_plain(world, &world.target(), &id))
        .expect("manifest json")
}

/// Nothing coffer keeps about snapshots it holds is left in the state directory.
fn no_records(world: &World) -> bool {
    std::fs::read_dir(world.path("state/snapshots"))
        .map(|d| d.count() == 0)
        .unwrap_or(true)
}

#[test]
fn a_btrfs_snapshot_backs_up_the_tree_of_its_instant() {
    let fs = Btrfs::new();
    // `path` is the subvolume's root: the snapshot lands inside it and the walk
    // must not back up coffer's own directory.
    let data = fs.subvolume("data");
    fill(&data, 8);
    let world = World::new(&dir_source("files", &data, "snapshot = \"btrfs\""));
    let snapshot = data.join(".coffer-snapshots/app.files");

    let run = backup_while_writing(&world, &data, || snapshot.exists());

    assert!(!snapshot.exists() && !data.join(".coffer-snapshots").exists());
    assert_eq!(fs.subvolumes(), ["data"], "a snapshot was left behind");
    assert!(no_records(&world), "the snapshot's record was left behind");
    let files = source(&run, "files");
    assert_eq!(seconds(files, "window_seconds"), 0.0, "{run}");
    assert!(files["consistency_instant"].is_string(), "{run}");
    assert_eq!(
        seconds(&run, "window_seconds"),
        seconds(&run, "skew_seconds")
    );

    // The backup tells nothing of the snapshot it was read from.
    let m = manifest(&world);
    let src = &m["sources"][0];
    assert_eq!(src["origin"], data.to_str().expect("utf8"), "{src}");
    assert_eq!(src["facts"]["filesystem_snapshot"], "btrfs", "{src}");
    assert_eq!(src["window_seconds"], 0.0, "{src}");
    assert!(m["window_seconds"].is_number(), "no window in the manifest");
}

/// A snapshot script pair for the generic form: each records its environment in
/// `log`, one line per call.
fn generic_scripts(dir: &Path, subvolume: &Path, snapshots: &Path, log: &Path) -> String {
    let create = dir.join("snap-create");
    let release = dir.join("snap-release");
    std::fs::write(
        &create,
        format!(
            "#!/bin/sh\nset -e\necho \"create $COFFER_JOB $COFFER_SOURCE $COFFER_PATH\" >> '{log}'\n\
             btrfs subvolume snapshot -r '{sub}' '{snaps}/'\"$COFFER_JOB-$COFFER_SOURCE\" >/dev/null\n\
             echo '{snaps}/'\"$COFFER_JOB-$COFFER_SOURCE\"/files\n",
            log = log.display(),
            sub = subvolume.display(),
            snaps = snapshots.display(),
        ),
    )
    .expect("write script");
    std::fs::write(
        &release,
        format!(
            "#!/bin/sh\nset -e\necho \"release $COFFER_JOB $COFFER_SOURCE $COFFER_PATH $COFFER_SNAPSHOT_PATH\" >> '{log}'\n\
             btrfs subvolume delete \"$(dirname \"$COFFER_SNAPSHOT_PATH\")\" >/dev/null\n",
            log = log.display(),
        ),
    )
    .expect("write script");
    sh(&format!(
        "chmod 755 '{}' '{}'",
        create.display(),
        release.display()
    ));
    format!(
        "snapshot_command = [\"{}\"]\nrelease_command = [\"{}\"]\n",
        create.display(),
        release.display()
    )
}

#[test]
fn the_generic_form_reads_what_its_command_prints_and_releases_it() {
    let fs = Btrfs::new();
    // `path` is a directory inside the subvolume: the script prints its
    // counterpart inside the snapshot.
    let app = fs.subvolume("app");
    let live = app.join("files");
    fill(&live, 8);
    let snapshots = fs.mnt().join("snaps");
    std::fs::create_dir(&snapshots).expect("mkdir");
    let log = fs.mnt().join("calls.log");
    let keys = generic_scripts(fs.mnt().as_path(), &app, &snapshots, &log);
    let world = World::new(&dir_source("files", &live, &keys));
    let snapshot = snapshots.join("app-files");

    let run = backup_while_writing(&world, &live, || snapshot.exists());

    assert_eq!(fs.subvolumes(), ["app"], "the snapshot was not released");
    assert!(no_records(&world), "the snapshot's record was left behind");
    let calls = std::fs::read_to_string(&log).expect("the scripts ran");
    assert_eq!(
        calls,
        format!(
            "create app files {live}\nrelease app files {live} {snap}/files\n",
            live = live.display(),
            snap = snapshot.display()
        )
    );
    assert_eq!(seconds(source(&run, "files"), "window_seconds"), 0.0);
    let m = manifest(&world);
    assert_eq!(m["sources"][0]["origin"], live.to_str().expect("utf8"));
    assert_eq!(m["sources"][0]["facts"]["filesystem_snapshot"], "command");
}

#[test]
fn a_failed_run_releases_every_snapshot_it_took() {
    let fs = Btrfs::new();
    let data = fs.subvolume("data");
    fill(&data, 0);
    let app = fs.subvolume("app");
    fill(&app.join("files"), 0);
    let snapshots = fs.mnt().join("snaps");
    std::fs::create_dir(&snapshots).expect("mkdir");
    let log = fs.mnt().join("calls.log");
    let keys = generic_scripts(fs.mnt().as_path(), &app, &snapshots, &log);
    let both = format!(
        "{}{}",
        dir_source("files", &data, "snapshot = \"btrfs\""),
        dir_source("other", &app.join("files"), &keys)
    );

    // A source that cannot be frozen: the others froze (and took their
    // snapshots) behind the barrier, and are dropped unread.
    let missing = fs.mnt().join("missing");
    let world = World::new(&format!("{both}{}", dir_source("gone", &missing, "")));
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        fs.subvolumes(),
        ["data", "app"],
        "a snapshot was left behind"
    );
    assert!(!data.join(".coffer-snapshots").exists());
    assert!(no_records(&world));
    let calls = std::fs::read_to_string(&log).expect("the scripts ran");
    assert!(
        calls.starts_with("create app other") && calls.contains("\nrelease app other"),
        "{calls}"
    );

    // A source that fails while the others stream.
    std::fs::remove_file(&log).expect("rm log");
    world.write_config(&format!(
        "{both}[[jobs.app.sources]]\nname = \"dump\"\ntype = \"command\"\n\
         command = [\"sh\", \"-c\", \"echo partial; exit 3\"]\n"
    ));
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("dump"), "{}", text(&out.stderr));
    assert!(world.snapshots().is_empty());
    assert_eq!(
        fs.subvolumes(),
        ["data", "app"],
        "a snapshot was left behind"
    );
    assert!(no_records(&world));
    let calls = std::fs::read_to_string(&log).expect("the scripts ran");
    assert!(calls.contains("\nrelease app other"), "{calls}");
}

#[test]
fn sigterm_releases_the_snapshot() {
    let fs = Btrfs::new();
    let data = fs.subvolume("data");
    fill(&data, 64);
    let world = World::new(&dir_source("files", &data, "snapshot = \"btrfs\""));
    let snapshot = data.join(".coffer-snapshots/app.files");
    let mut backup = spawn_backup(&world);
    wait_while_running(&mut backup, "the snapshot existed", || snapshot.exists());
    let pid = nix::unistd::Pid::from_raw(i32::try_from(backup.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let out = backup.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!snapshot.exists(), "SIGTERM left the snapshot");
    assert_eq!(fs.subvolumes(), ["data"]);
    assert!(no_records(&world));
    assert!(world.snapshots().is_empty());
}

#[test]
fn what_a_killed_run_held_is_released_by_the_next_run() {
    let fs = Btrfs::new();
    let data = fs.subvolume("data");
    fill(&data, 64);
    let app = fs.subvolume("app");
    // Slow too: its snapshot must still be held when the run is killed.
    fill(&app.join("files"), 64);
    let snapshots = fs.mnt().join("snaps");
    std::fs::create_dir(&snapshots).expect("mkdir");
    let log = fs.mnt().join("calls.log");
    let keys = generic_scripts(fs.mnt().as_path(), &app, &snapshots, &log);
    let world = World::new(&format!(
        "{}{}",
        dir_source("files", &data, "snapshot = \"btrfs\""),
        dir_source("other", &app.join("files"), &keys)
    ));
    let btrfs_snapshot = data.join(".coffer-snapshots/app.files");
    let generic_snapshot = snapshots.join("app-other");

    let mut backup = spawn_backup(&world);
    // The generic snapshot's record is written once its command printed the path
    // (a snapshot a kill catches before that is not known to coffer: README), so
    // the kill waits for the record too, not only for the snapshot.
    let generic_record = world.path("state/snapshots/app.other.json");
    wait_while_running(
        &mut backup,
        "both snapshots and their records existed",
        || btrfs_snapshot.exists() && generic_snapshot.exists() && generic_record.exists(),
    );
    backup.kill().expect("SIGKILL");
    backup.wait().expect("reap");
    let mut left = fs.subvolumes();
    left.sort();
    assert_eq!(
        left,
        [
            "app",
            "data",
            "data/.coffer-snapshots/app.files",
            "snaps/app-other"
        ],
        "the killed run left no snapshots: the test proves nothing"
    );

    // The next run releases both (the generic one through its release_command)
    // before it takes its own; a quick run now.
    std::fs::remove_file(data.join(BIG)).expect("rm");
    std::fs::remove_file(app.join("files").join(BIG)).expect("rm");
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("released {}", btrfs_snapshot.display()))
            && err.contains(&format!("released {}/files", generic_snapshot.display())),
        "the run does not say what it released: {err}"
    );
    let mut left = fs.subvolumes();
    left.sort();
    assert_eq!(left, ["app", "data"]);
    assert!(no_records(&world));
    let calls = std::fs::read_to_string(&log).expect("the scripts ran");
    assert_eq!(
        calls.matches("release app other").count(),
        2,
        "the leftover and this run's own: {calls}"
    );

    // A leftover whose record is lost (a state directory wiped): found by its name.
    std::fs::create_dir(data.join(".coffer-snapshots")).expect("mkdir");
    fs.snapshot(&data, &btrfs_snapshot);
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("removed {}", btrfs_snapshot.display())),
        "{}",
        text(&out.stderr)
    );
    let mut left = fs.subvolumes();
    left.sort();
    assert_eq!(left, ["app", "data"]);
}

#[test]
fn a_live_walk_reports_its_window_and_a_snapshot_none() {
    let fs = Btrfs::new();
    let data = fs.subvolume("data");
    fill(&data, 4);
    let live = fs.mnt().join("live");
    fill(&live, 4);
    let world = World::new(&format!(
        "{}{}",
        dir_source("files", &data, "snapshot = \"btrfs\""),
        dir_source("live", &live, "")
    ));
    let out = world.run(&["backup", "app", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run = run_of(&out);
    let walked = seconds(source(&run, "live"), "window_seconds");
    // Reading 4 GiB takes far longer than the clock's resolution.
    assert!(walked > 0.01, "a walk of 4 GiB took {walked}s: {run}");
    assert_eq!(seconds(source(&run, "files"), "window_seconds"), 0.0);
    let (skew, window) = (
        seconds(&run, "skew_seconds"),
        seconds(&run, "window_seconds"),
    );
    assert!(window >= walked && window >= skew, "{run}");

    let listed: Value =
        serde_json::from_str(&world.ok(&["list", "--job", "app", "--json"])).expect("list json");
    assert_eq!(listed[0]["window_seconds"].as_f64(), Some(window));
    assert_eq!(listed[0]["skew_seconds"].as_f64(), Some(skew));
    let text_list = world.ok(&["list", "--job", "app"]);
    assert!(text_list.contains("window"), "{text_list}");
    assert!(text_list.contains(&format!("{window:.3}s")), "{text_list}");

    let status: Value = serde_json::from_slice(
        &std::fs::read(world.path("state/status/app.json")).expect("status file"),
    )
    .expect("status json");
    assert_eq!(status["last_window_seconds"].as_f64(), Some(window));

    let m = manifest(&world);
    assert_eq!(m["window_seconds"].as_f64(), Some(window));
    let live_manifest = m["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "live"))
        .expect("live in the manifest");
    assert_eq!(live_manifest["window_seconds"].as_f64(), Some(walked));

    // The text report shows both.
    let out = world.run(&["backup", "app"]);
    let said = text(&out.stdout);
    assert!(said.contains(", window "), "{said}");
    assert!(
        said.contains("source files: ") && said.contains("window 0.000s"),
        "{said}"
    );
}
