//! A run killed before its commit marker leaves nothing that list, restore or verify
//! would take for a snapshot, does not block the next run, and what it left on the
//! disk (the staging files of its uploads, hidden from object listings) goes with
//! the next prune once old enough, counted as it goes.

use crate::common::read_gate::ReadGate;
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

/// The staging files `<id>.tar.zst.age#<n>` in `packs/` of job `app` on `root`.
fn pack_staging(root: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(root.join("app/packs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains('#'))
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of the packs stored in `packs/` of job `app` on `root`.
fn stored_packs(root: &std::path::Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(root.join("app/packs"))
        .expect("packs folder")
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".tar.zst.age").map(str::to_string)
        })
        .collect()
}

/// Every pack the committed snapshots of job `app` on `root` reference.
fn referenced_packs(world: &World) -> std::collections::BTreeSet<String> {
    world
        .snapshots()
        .iter()
        .flat_map(|id| {
            let text = std::fs::read_to_string(world.snapshot_dir(id).join("snapshot.json"))
                .expect("marker");
            let v: serde_json::Value = serde_json::from_str(&text).expect("marker json");
            v["marker"]["packs"]
                .as_array()
                .expect("packs")
                .iter()
                .map(|p| p["id"].as_str().expect("id").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A backup killed with -9 while it writes a pack leaves the pack's staging file
/// (hidden from object listings) in `packs/`. Before, prune never removed it, so
/// every kill could cost up to `pack_size` for good; now it goes once older than
/// `incomplete_after`, with the finished packs no snapshot references.
#[test]
fn a_pack_half_written_by_a_killed_run_goes_with_prune() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("first.bin"), noise(3 << 20, 1)).expect("write");
    let world = World::new(&format!(
        "pack_size = \"1MiB\"\n{}",
        dir_source("data", &src, "")
    ));
    world.backup();
    let packs = world.target().join("app/packs");
    assert!(pack_staging(&world.target()).is_empty());

    // The second run's new file is held mid-read once a pack is being staged, so
    // the kill is sure to land while that pack is half written.
    let big = src.join("second.bin");
    std::fs::write(&big, noise(16 << 20, 2)).expect("write");
    let release = std::sync::Arc::new(AtomicBool::new(false));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let gate = {
        let release = release.clone();
        let root = world.target();
        ReadGate::new(&big, move |n| {
            // The first read comes before any chunk of the file is cut. By the
            // second, the first 8 MiB are cut and stored, so a pack is open; but its
            // staging file is made by the upload task, which may lag under load (a
            // CI run once read the whole file before it appeared): wait for it.
            if n < 2 {
                return;
            }
            let asked = std::time::Instant::now();
            while pack_staging(&root).is_empty() {
                if asked.elapsed() > Duration::from_secs(60) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = held_tx.send(());
            while !release.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut child = world.spawn_silent(&["backup", "app"]);
    let held = held_rx.recv_timeout(Duration::from_secs(120));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    release.store(true, Ordering::Relaxed);
    gate.finish();
    assert!(
        held.is_ok(),
        "the backup never staged a pack while reading second.bin"
    );
    let staged = pack_staging(&world.target());
    assert!(
        !staged.is_empty(),
        "the killed run left no staging file in packs/: the prune below proves nothing"
    );
    assert_eq!(world.snapshots().len(), 1, "the killed run committed");
    // Fresh, it may be a run on another host still writing: kept, and said so.
    let out = world.ok(&["prune", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(pack_staging(&world.target()), staged, "{out}");
    assert_eq!(
        v[0]["kept_for_grace"]["staging_files"],
        staged.len() as u64,
        "{out}"
    );

    // Everything on the target three days old: past the default grace period (24h).
    sh(&format!(
        "find {} -exec touch -h -d '3 days ago' {{}} +",
        world.target().display()
    ));
    let dry = world.ok(&["prune", "--job", "app", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&dry).expect("json");
    assert_eq!(
        v[0]["staging_removed"].as_array().map(Vec::len),
        Some(staged.len()),
        "{dry}"
    );
    assert_eq!(
        pack_staging(&world.target()),
        staged,
        "--dry-run removed it"
    );
    let out = world.ok(&["prune", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        pack_staging(&world.target()),
        Vec::<String>::new(),
        "a killed run's staging file is left: {out}"
    );
    assert_eq!(
        v[0]["staging_removed"].as_array().map(Vec::len),
        Some(staged.len()),
        "the report is not what went: {out}"
    );
    assert_eq!(
        stored_packs(&world.target()),
        referenced_packs(&world),
        "packs left that no marker references, or missing: {out}"
    );
    assert!(packs.is_dir());
    world.ok(&["verify", "--job", "app"]);
}
