//! `latest` is the snapshot that finished last. Ids name the second a run started
//! and four hex digits, so several runs in one second must still be told apart:
//! new ids carry the millisecond, and snapshots made by earlier versions (random
//! digits) are ordered by their signed markers' `finished_at`.

use crate::common::forge::Forgery;
use crate::common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One backup of job `app`; the id it made (from its own report, not `list`).
fn backup_id(world: &World) -> String {
    let out = world.ok(&["backup", "app", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&out).expect("backup json");
    runs[0]["snapshot"]
        .as_str()
        .expect("the run's snapshot id")
        .to_string()
}

/// Sleeps until just after the start of the next second of the clock.
fn to_next_second() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    let left = Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()));
    std::thread::sleep(left + Duration::from_millis(5));
}

/// What `restore --snapshot latest` brings back of the file, and the id it names.
fn restore_latest(world: &World, dest: &std::path::Path) -> (String, String) {
    let _ = std::fs::remove_dir_all(dest);
    let out = world.ok(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        "latest",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    let content = std::fs::read_to_string(dest.join("files/v.txt")).expect("restored file");
    (content, out)
}

#[test]
fn of_three_snapshots_in_one_second_latest_is_the_last_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    let world = World::new(&dir_source("files", &src, ""));
    // A first run outside the measured ones: the index and the signing key exist.
    std::fs::write(src.join("v.txt"), "first").expect("write");
    world.ok(&["backup", "app"]);

    // Three backups, the file changed before each (a new size each time, so no
    // run can take it for unchanged), until three land in one second.
    let mut made: Vec<(String, String)> = Vec::new();
    for attempt in 0..30 {
        to_next_second();
        made.clear();
        for run in 0..3 {
            let content = format!("attempt {attempt} run {run}\n").repeat(run + 1);
            std::fs::write(src.join("v.txt"), &content).expect("write");
            made.push((backup_id(&world), content));
        }
        if made.iter().all(|(id, _)| id[..16] == made[0].0[..16]) {
            break;
        }
    }
    let ids: Vec<&str> = made.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        ids.iter().all(|id| id[..16] == ids[0][..16]),
        "no three backups in one second in 30 tries (each run takes over 300 ms?): {ids:?}"
    );
    // New ids sort in the order the runs were made, within the second too.
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let dest = tmp.path().join("dest");
    let (restored, out) = restore_latest(&world, &dest);
    assert_eq!(
        restored, made[2].1,
        "restore latest took another snapshot: {out}"
    );
    assert!(out.contains(ids[2]), "{out}");
    assert_eq!(world.snapshots().last().map(String::as_str), Some(ids[2]));

    // The same three as an earlier coffer named them: the second, then random
    // digits that say nothing of the order (the newest neither the highest nor the
    // lowest). Signed by this host, as they would have been.
    let second = &ids[0][..16];
    let old: Vec<String> = ["ffff", "0001", "8000"]
        .iter()
        .map(|digits| format!("{second}-{digits}"))
        .collect();
    for (id, old_id) in ids.iter().zip(&old) {
        let mut f = Forgery::of(&world, id);
        f.move_to(old_id);
        f.save_signed_by_host();
    }
    let (restored, out) = restore_latest(&world, &dest);
    assert_eq!(
        restored, made[2].1,
        "restore latest took another snapshot of the second: {out}"
    );
    assert!(out.contains(&old[2]), "{out}");
    let listed = world.snapshots();
    assert_eq!(
        listed[listed.len() - 3..],
        old[..],
        "list is not in finish order"
    );

    // Retention's newest is the same one.
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        cfg.replacen(
            "[jobs.app]\n",
            "[jobs.app]\nretention = { keep_last = 1 }\n",
            1,
        ),
    )
    .expect("config");
    world.ok(&["prune", "--job", "app"]);
    assert_eq!(
        world.snapshots(),
        [old[2].clone()],
        "keep_last = 1 kept another"
    );
}
