//! `coffer prune` against real backups: retention per job, old incomplete folders
//! removed (also those holding only the staging files object_store hides), fresh
//! ones (a run in progress) kept, what it reports equal to what went from the
//! disk, and another job sharing the target never touched.

use crate::common::*;

#[test]
fn prune_applies_retention_to_its_job_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"payload").expect("write");
    let world = World::new("");
    let config = |retention: &str| {
        format!(
            "{retention}\n{}\n[jobs.other]\ntargets = [\"local\"]\n[[jobs.other.sources]]\nname = \"data\"\ntype = \"directory\"\npath = \"{}\"\n",
            dir_source("data", &data, ""),
            data.display()
        )
    };
    // Snapshots first (retention also runs after every successful backup), then the policy.
    world.write_config(&config(""));
    for _ in 0..3 {
        world.ok(&["backup", "app"]);
        // Ids have one-second resolution: keep the order unambiguous.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    world.ok(&["backup", "other"]);
    let app = world.snapshots_of("app");
    assert_eq!(app.len(), 3);
    let other = world.snapshots_of("other");
    world.write_config(&config(
        "retention = { keep_last = 2, incomplete_after = \"1h\" }",
    ));

    // Leftovers of crashed runs: an old one, a fresh one, and an old one of the other job.
    let old = world.target().join("app/20000101T000000Z-dead");
    let fresh_id = coffer::format::id::new_id(time::OffsetDateTime::now_utc());
    let fresh = world.target().join("app").join(&fresh_id);
    let others_old = world.target().join("other/20000101T000000Z-beef");
    for d in [&old, &fresh, &others_old] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::write(d.join("data.tar.zst.age"), b"partial").expect("write");
    }
    // A run killed with -9 mid-upload leaves only `<object>#<n>` staging files.
    let staged = world.target().join("app/20000101T000000Z-cafe");
    std::fs::create_dir_all(&staged).expect("mkdir");
    std::fs::write(staged.join("data.tar.zst.age#1"), b"half").expect("write");
    std::fs::write(staged.join("manifest.json.zst.age#2"), b"half").expect("write");

    let dry = world.ok(&["prune", "--job", "app", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&dry).expect("json");
    assert_eq!(v[0]["forgotten"], serde_json::json!([app[0]]), "{dry}");
    assert_eq!(
        v[0]["incomplete_removed"],
        serde_json::json!(["20000101T000000Z-cafe", "20000101T000000Z-dead"]),
        "{dry}"
    );
    assert_eq!(
        world.snapshots_of("app").len(),
        3,
        "--dry-run deleted something"
    );
    assert!(staged.exists(), "--dry-run deleted something");

    let pruned = world.ok(&["prune", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&pruned).expect("json");
    let gone = [&old, &staged].iter().filter(|d| !d.exists()).count();
    assert_eq!(gone, 2, "old incomplete folders stay: {pruned}");
    assert_eq!(
        v[0]["incomplete_removed"].as_array().expect("array").len(),
        gone,
        "the report is not what went from the disk: {pruned}"
    );
    assert_eq!(
        world.snapshots_of("app"),
        app[1..].to_vec(),
        "keep_last = 2 keeps the two newest"
    );
    assert!(
        !world.snapshot_dir(&app[0]).exists(),
        "the forgotten folder is gone entirely"
    );
    assert!(!old.exists(), "an old incomplete folder stays");
    assert!(fresh.exists(), "a run that may still be going was removed");
    assert!(others_old.exists(), "prune of app touched job other");
    assert_eq!(
        world.snapshots_of("other"),
        other,
        "prune of app touched job other"
    );
    // The survivors still restore.
    world.ok(&["verify", "--job", "app", "--snapshot", "all"]);

    // Retention also runs after each successful backup.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    world.ok(&["backup", "app"]);
    let now = world.snapshots_of("app");
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], app[2], "the oldest of the three left");
}

/// Retention after a backup is reported as what it is, information: on stdout,
/// never as a warning on stderr (which cron mails every night).
#[test]
fn retention_after_a_backup_is_news_not_a_warning() {
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("f"), b"payload").expect("write");
    let world = World::new("");
    world.write_config(&format!(
        "retention = {{ keep_last = 1 }}\n{}",
        dir_source("data", data.path(), "")
    ));
    let first = world.backup();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = world.run(&["backup", "app"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("retention on local: forgot {first}")),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(world.snapshots().len(), 1);

    // A prune by hand keeps the snapshot count the metrics show in step.
    let status = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(world.path("state/status/app.json")).expect("status"))
            .expect("json")
    };
    world.write_config(&format!(
        "retention = {{ keep_last = 5 }}\n{}",
        dir_source("data", data.path(), "")
    ));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    world.backup();
    assert_eq!(status()["snapshots"]["local"], 2);
    world.write_config(&format!(
        "retention = {{ keep_last = 1 }}\n{}",
        dir_source("data", data.path(), "")
    ));
    world.ok(&["prune", "--job", "app"]);
    assert_eq!(
        status()["snapshots"]["local"],
        1,
        "stale after a prune by hand"
    );
}

/// Before, a prune that kept unreferenced packs for the grace period said
/// "0 removed" and nothing else. Now its report (text and --json) names them: how
/// many, how big, and from when a prune removes them.
#[test]
fn packs_kept_for_the_grace_period_are_reported_with_their_date() {
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("old.bin"), noise(3 << 20, 7)).expect("write");
    let world = World::new(&format!(
        "pack_size = \"1MiB\"\nretention = {{ keep_last = 1 }}\n{}",
        dir_source("data", data.path(), "")
    ));
    world.backup();
    // The next run forgets the first snapshot, whose packs nothing references now.
    std::fs::remove_file(data.path().join("old.bin")).expect("rm");
    std::fs::write(data.path().join("new.bin"), b"new").expect("write");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let kept = world.backup();
    assert_eq!(world.snapshots(), vec![kept.clone()]);
    let marker: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(world.snapshot_dir(&kept).join("snapshot.json")).expect("marker"),
    )
    .expect("json");
    let referenced: Vec<String> = marker["marker"]["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .map(|p| format!("{}.tar.zst.age", p["id"].as_str().expect("id")))
        .collect();
    let waiting: Vec<std::fs::Metadata> = std::fs::read_dir(world.target().join("app/packs"))
        .expect("packs")
        .flatten()
        .filter(|e| !referenced.contains(&e.file_name().to_string_lossy().into_owned()))
        .map(|e| e.metadata().expect("stat"))
        .collect();
    assert!(!waiting.is_empty(), "no unreferenced pack to wait for");
    let bytes: u64 = waiting.iter().map(|m| m.len()).sum();
    let times: Vec<chrono::DateTime<chrono::Utc>> = waiting
        .iter()
        .map(|m| m.modified().expect("mtime").into())
        .collect();
    let day = chrono::Duration::hours(24);
    let (from, by) = (
        *times.iter().min().expect("min") + day,
        *times.iter().max().expect("max") + day,
    );

    let out = world.ok(&["prune", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v[0]["packs_removed"], serde_json::Value::Null, "{out}");
    let g = &v[0]["kept_for_grace"];
    assert_eq!(g["packs"], waiting.len() as u64, "{out}");
    assert_eq!(g["bytes"], bytes, "{out}");
    let date = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(g[k].as_str().unwrap_or_else(|| panic!("{k}: {out}")))
            .expect("rfc3339")
            .to_utc()
    };
    for (got, want) in [
        (date("removable_from"), from),
        (date("all_removable_by"), by),
    ] {
        assert!(
            (got - want).num_seconds().abs() <= 1,
            "{got} is not {want}: {out}"
        );
    }
    let text = world.ok(&["prune", "--job", "app"]);
    let line = format!(
        "kept until older than incomplete_after: {} pack(s) no snapshot references",
        waiting.len()
    );
    assert!(text.contains(&line), "{text}");
    // To the minute (the second either side, should the minute turn in between).
    let shown = |t: chrono::DateTime<chrono::Utc>| {
        format!("removable from {}", t.format("%Y-%m-%d %H:%M UTC"))
    };
    let second = chrono::Duration::seconds(1);
    assert!(
        [from - second, from, from + second]
            .iter()
            .any(|t| text.contains(&shown(*t))),
        "{text}"
    );
    // Nothing went: they are still all there.
    let left = std::fs::read_dir(world.target().join("app/packs"))
        .expect("packs")
        .count();
    assert_eq!(left, referenced.len() + waiting.len());
}

#[test]
fn a_snapshot_folder_swapped_for_a_symlink_is_never_deleted_through() {
    // A target writer replaces an old folder of the job with a symlink to a folder
    // of the backup host: prune (as root) lists it as an old incomplete run.
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"payload").expect("write");
    let world = World::new(&dir_source("data", &data, ""));
    world.ok(&["backup", "app"]);
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(victim.join("data.tar.zst.age"), b"not coffer's").expect("write");
    std::fs::write(victim.join("keep.txt"), b"precious").expect("write");
    std::os::unix::fs::symlink(&victim, world.target().join("app/20000101T000000Z-d00d"))
        .expect("symlink");
    let out = world.run(&["prune", "--job", "app", "--json"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        victim.join("data.tar.zst.age").exists() && victim.join("keep.txt").exists(),
        "prune deleted through a symlink: {text}"
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("20000101T000000Z-d00d"), "{text}");
}
