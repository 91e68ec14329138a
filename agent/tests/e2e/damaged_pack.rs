//! A damaged pack is never built upon: once a stored-bytes verify, a deep verify
//! or a restore finds one byte of a pack flipped, the local index forgets the
//! pack, the next backup reads and stores its files again into new packs, and the
//! new snapshot deep-verifies clean. (Before, the index still counted the files
//! as stored and the new snapshot referenced the same damaged pack.) Without any
//! verify, the backup's own re-check of packs (`recheck_packs`) finds it too.

use crate::common::packed_job::{
    FILES, backup_run as backup_json, counts, make_tree, marker_packs,
};
use crate::common::*;
use serde_json::Value;

const NO_RECHECK: &str = "recheck_packs = 0\n";

/// One backup of the tree, one byte in the middle of its only pack flipped;
/// returns the world, the snapshot and the pack. `job_keys` go before the
/// sources (`recheck_packs = 0`: only verify or restore can find the damage).
fn damaged_world(job_keys: &str) -> (World, String, String) {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    world.write_config(&format!("{job_keys}{}", dir_source("files", &data, "")));
    let first = backup_json(&world);
    assert_eq!(counts(&first), (0, 0, FILES), "{first}");
    let snapshot = world.snapshots().pop().expect("snapshot");
    let packs = marker_packs(&world, &snapshot);
    assert_eq!(packs.len(), 1, "{packs:?}");
    let path = world
        .target()
        .join("app/packs")
        .join(format!("{}.tar.zst.age", packs[0]));
    let mut bytes = std::fs::read(&path).expect("read pack");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).expect("write pack");
    (world, snapshot, packs[0].clone())
}

/// The next backup stores every file again, into a new pack, and its snapshot
/// deep-verifies clean with the identity.
fn next_backup_does_not_build_on(world: &World, damaged: &str) {
    let run = backup_json(world);
    assert_eq!(
        counts(&run),
        (0, 0, FILES),
        "every file of the damaged pack is read and stored again: {run}"
    );
    let latest = world.snapshots().pop().expect("snapshot");
    assert!(
        !marker_packs(world, &latest).contains(&damaged.to_string()),
        "the new snapshot references the damaged pack"
    );
    let id = world.identity.to_str().expect("utf-8");
    let out = world.ok(&[
        "verify",
        "--job",
        "app",
        "--snapshot",
        "latest",
        "--identity",
        id,
    ]);
    assert!(out.contains(": ok ("), "{out}");
}

#[test]
fn a_pack_found_damaged_by_a_stored_bytes_verify_is_not_built_upon() {
    let (world, snapshot, pack) = damaged_world(NO_RECHECK);
    let out = world.expect(&["verify", "--job", "app", "--stored-only"], 3);
    assert!(
        out.contains(&format!("{snapshot} on local: DAMAGED")),
        "{out}"
    );
    assert!(out.contains(&pack), "{out}");
    next_backup_does_not_build_on(&world, &pack);
    // And the verify said so.
    assert!(
        out.contains("forgot 1 damaged or missing pack(s) (12 file(s)"),
        "{out}"
    );
}

#[test]
fn a_pack_found_damaged_by_a_deep_verify_is_not_built_upon() {
    let (world, snapshot, pack) = damaged_world(NO_RECHECK);
    let id = world.identity.to_str().expect("utf-8");
    let out = world.expect(
        &[
            "verify",
            "--job",
            "app",
            "--snapshot",
            "latest",
            "--identity",
            id,
        ],
        3,
    );
    assert!(
        out.contains(&format!("{snapshot} on local: DAMAGED")),
        "{out}"
    );
    next_backup_does_not_build_on(&world, &pack);
    assert!(out.contains("forgot 1 damaged"), "{out}");
}

#[test]
fn a_pack_found_damaged_by_a_restore_is_not_built_upon() {
    let (world, snapshot, pack) = damaged_world(NO_RECHECK);
    let to = world.path("restored");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &snapshot,
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&pack), "{stderr}");
    next_backup_does_not_build_on(&world, &pack);
    assert!(stderr.contains("forgot 1 damaged"), "{stderr}");
}

#[test]
fn a_pack_merely_missing_from_a_verify_target_is_forgotten_too() {
    let (world, _, pack) = damaged_world(NO_RECHECK);
    std::fs::remove_file(
        world
            .target()
            .join("app/packs")
            .join(format!("{pack}.tar.zst.age")),
    )
    .expect("remove pack");
    let out = world.expect(&["verify", "--job", "app", "--stored-only"], 3);
    next_backup_does_not_build_on(&world, &pack);
    assert!(out.contains("forgot 1 damaged or missing"), "{out}");
}

#[test]
fn the_backup_re_checks_a_pack_per_run_and_does_not_build_on_a_damaged_one() {
    // The default: one pack per run, read back whole from every target.
    let (world, _, pack) = damaged_world("");
    let run = backup_json(&world);
    assert_eq!(counts(&run), (0, 0, FILES), "{run}");
    let notes = run["notes"].to_string();
    assert!(notes.contains("re-check of packs"), "{notes}");
    assert!(notes.contains(&pack), "{notes}");
    assert!(
        notes.contains("the re-check found 1 damaged pack(s)"),
        "{notes}"
    );
    let latest = world.snapshots().pop().expect("snapshot");
    assert!(!marker_packs(&world, &latest).contains(&pack));
    let id = world.identity.to_str().expect("utf-8");
    let out = world.ok(&[
        "verify",
        "--job",
        "app",
        "--snapshot",
        "latest",
        "--identity",
        id,
    ]);
    assert!(out.contains(": ok ("), "{out}");
    // An intact pack is read and passes: the next run stores nothing again.
    let run = backup_json(&world);
    assert_eq!(counts(&run), (FILES, 0, 0), "{run}");
    assert!(!run["notes"].to_string().contains("re-check"), "{run}");
}

/// `coffer verify` without `--job` verifies every job, as backup and prune do:
/// each job reported on its own, one job's damage or error not hiding the others,
/// and the exit code the worst of them (damage: 3).
#[test]
fn verify_without_a_job_verifies_every_job_and_exits_with_the_worst() {
    let (world, snapshot, _) = damaged_world(NO_RECHECK);
    let other = world.path("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("a"), b"intact").expect("write");
    let mut cfg = std::fs::read_to_string(&world.config).expect("config");
    cfg.push_str(&format!(
        "\n[jobs.other]\ntargets = [\"local\"]\n[[jobs.other.sources]]\nname = \"data\"\n\
         type = \"directory\"\npath = \"{}\"\n\n[jobs.fresh]\ntargets = [\"local\"]\n\
         [[jobs.fresh.sources]]\nname = \"data\"\ntype = \"directory\"\npath = \"{}\"\n",
        other.display(),
        other.display()
    ));
    std::fs::write(&world.config, cfg).expect("config");
    world.ok(&["backup", "other"]);
    let other_snapshot = world
        .snapshots_of("other")
        .pop()
        .expect("snapshot of other");

    let out = world.run(&["verify", "--stored-only"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("job app: {snapshot} on local: DAMAGED")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("job other: {other_snapshot} on local: ok (")),
        "{stdout}"
    );
    // Never backed up: said, and the other jobs still verified.
    assert!(stderr.contains("job fresh: not verified"), "{stderr}");

    // --json: one list, each verdict naming its job.
    let out = world.run(&["verify", "--stored-only", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).expect("verify json");
    let by_job: Vec<(&str, bool)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|v| {
            (
                v["job"].as_str().expect("job"),
                v["ok"].as_bool().expect("ok"),
            )
        })
        .collect();
    assert_eq!(by_job, vec![("app", false), ("other", true)], "{v}");

    // Only the intact job: fine. The damaged job alone still says so.
    world.ok(&["verify", "--stored-only", "--job", "other"]);
}
