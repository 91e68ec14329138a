//! A run killed before its commit marker leaves nothing that list, restore or verify
//! would take for a snapshot, does not block the next run, and what it left on the
//! disk (the staging files of its uploads, hidden from object listings) goes with
//! the next prune once old enough, counted as it goes.

use crate::common::*;
use std::time::{Duration, Instant};

#[test]
fn a_killed_run_leaves_no_listed_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("small.txt"), b"small").expect("write");
    // A sparse file: tens of seconds of reading and hashing, no disk space.
    let huge = src.join("huge.img");
    std::fs::File::create(&huge)
        .expect("create")
        .set_len(60 << 30)
        .expect("sparse");
    let world = World::new(&dir_source("data", &src, ""));

    let mut child = std::process::Command::new(coffer_bin())
        .arg("--config")
        .arg(&world.config)
        .args(["backup", "app"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn backup");
    let job_dir = world.target().join("app");
    let start = Instant::now();
    // Wait until the run is writing its object, then kill it without warning.
    let snapshot_dir = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the backup never started writing"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the backup finished before it could be killed"
        );
        let dirs: Vec<_> = std::fs::read_dir(&job_dir)
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        if let Some(d) = dirs.first() {
            break d.path();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(
        !snapshot_dir.join("snapshot.json").exists(),
        "a marker was written"
    );
    assert!(world.snapshots().is_empty(), "a killed run is listed");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--to",
        tmp.path().join("r").to_str().expect("utf8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "restore of nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The killed run's upload is a staging file `<object>#<n>` that object_store
    // does not list. Age the folder past the grace period (ids carry their time),
    // and plant a second old one holding nothing but a staging file.
    let staging = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("read the folder")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains('#'))
            .collect()
    };
    assert!(
        !staging(&snapshot_dir).is_empty(),
        "the killed run left no staging file: the prune below proves nothing"
    );
    let aged = job_dir.join("20000101T000000Z-dead");
    std::fs::rename(&snapshot_dir, &aged).expect("age the folder");
    let planted = job_dir.join("20000101T000001Z-beef");
    std::fs::create_dir_all(&planted).expect("mkdir");
    std::fs::write(planted.join("x.zst.age#1"), b"half").expect("write");
    let on_disk = |dirs: &[&std::path::PathBuf]| dirs.iter().filter(|d| d.exists()).count();
    let before = on_disk(&[&aged, &planted]);
    assert_eq!(before, 2);

    let out = world.ok(&["prune", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let removed = v[0]["incomplete_removed"].as_array().expect("array").len();
    assert_eq!(on_disk(&[&aged, &planted]), 0, "left on disk: {out}");
    assert_eq!(
        removed, before,
        "prune's count is not what it removed: {out}"
    );
    // Nothing left means nothing claimed the next time.
    let again = world.ok(&["prune", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&again).expect("json");
    assert_eq!(v[0]["incomplete_removed"], serde_json::json!([]), "{again}");

    // The lock died with the process: the next run goes through.
    std::fs::remove_file(&huge).expect("rm");
    world.backup();
    assert_eq!(world.snapshots().len(), 1);
}
