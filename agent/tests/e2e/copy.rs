//! `coffer copy` between targets: every snapshot arrives byte for byte and
//! restores from the copy; a second run copies nothing; a copy cut short (the
//! marker and an object missing on the destination) is completed by the next run
//! with only what was missing; a damaged pack on the source is not copied and its
//! snapshot gets no marker on the destination; local to S3 restores too.

use crate::common::s3::S3Server;
use crate::common::*;
use crate::format2::{backup_json, files, marker_packs};
use serde_json::Value;
use std::path::Path;

fn make_data(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    for i in 0..6 {
        std::fs::write(
            dir.join(format!("f{i}")),
            noise(40_000 + i * 1000, seed + i as u64),
        )
        .expect("write");
    }
    std::fs::write(dir.join("sub/big"), noise(3 << 20, seed + 99)).expect("write");
}

/// A world with data (from `seed`) and a second local target `second`, not yet
/// in the job: (world, data folder, second's folder, its `[targets]` table).
fn two_local_targets(seed: u64) -> (World, std::path::PathBuf, std::path::PathBuf, String) {
    let world = World::new("");
    let data = world.path("data");
    make_data(&data, seed);
    let second = world.path("second");
    std::fs::create_dir_all(&second).expect("mkdir second");
    let second_toml = format!(
        "[targets.second]\ntype = \"local\"\npath = \"{}\"\n",
        second.display()
    );
    (world, data, second, second_toml)
}

/// `copy --json` of job `app`; its one JSON object, asserting the exit code.
fn copy_json(world: &World, to: &str, code: i32) -> Value {
    let out = world.expect(
        &[
            "copy", "--from", "local", "--to", to, "--job", "app", "--json",
        ],
        code,
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("copy json ({e}): {out}"))
}

fn outcomes(v: &Value) -> Vec<(String, String, u64)> {
    v["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id").to_string(),
                s["outcome"].as_str().expect("outcome").to_string(),
                s["objects_copied"].as_u64().expect("objects_copied"),
            )
        })
        .collect()
}

#[test]
fn copy_between_local_targets_is_exact_resumable_idempotent_and_refuses_damage() {
    require_root("restores owners");
    let (world, data, second, second_toml) = two_local_targets(1);
    let sources = dir_source("files", &data, "");
    world.write_config_with(&second_toml, &["local"], &sources);
    backup_json(&world, 0);
    std::fs::write(data.join("f0"), noise(50_000, 77)).expect("change");
    backup_json(&world, 0);
    let ids = world.snapshots();
    assert_eq!(ids.len(), 2);

    let v = copy_json(&world, "second", 0);
    let got = outcomes(&v);
    assert_eq!(got.len(), 2, "{v}");
    assert!(got.iter().all(|(_, o, n)| o == "copied" && *n > 0), "{v}");
    // Byte for byte what the backup wrote, and nothing else.
    assert_eq!(
        files(&second.join("app")),
        files(&world.target().join("app"))
    );

    // Again: nothing to do.
    let v = copy_json(&world, "second", 0);
    assert!(
        outcomes(&v)
            .iter()
            .all(|(_, o, n)| o == "already_there" && *n == 0),
        "{v}"
    );

    // Cut short: the marker and the manifest (chunks in a pack of its own) of the
    // latest are gone from the copy; the next run sends those two and nothing else.
    let latest = &ids[1];
    let folder = second.join("app").join(latest);
    std::fs::remove_file(folder.join("snapshot.json")).expect("rm marker");
    let manifest = crate::common::packed_job::manifest_packs(&world, latest);
    assert_eq!(manifest.len(), 1, "{manifest:?}");
    std::fs::remove_file(
        second
            .join("app/packs")
            .join(format!("{}.tar.zst.age", manifest[0])),
    )
    .expect("rm manifest");
    let v = copy_json(&world, "second", 0);
    let got = outcomes(&v);
    assert_eq!(got[0].1, "already_there", "{v}");
    assert_eq!((got[1].1.as_str(), got[1].2), ("copied", 1), "{v}");
    assert_eq!(
        files(&second.join("app")),
        files(&world.target().join("app"))
    );

    // The copy restores, once the job names the target.
    world.write_config_with(&second_toml, &["local", "second"], &sources);
    let out = world.ok(&[
        "verify",
        "--job",
        "app",
        "--target",
        "second",
        "--snapshot",
        "all",
    ]);
    assert_eq!(out.matches(": ok (").count(), 2, "{out}");
    let to = world.path("restored");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--target",
        "second",
        "--snapshot",
        latest,
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(files(&to.join("files")), files(&data));

    // Damage on the source: a third snapshot's new pack has a byte flipped.
    world.write_config_with(&second_toml, &["local"], &sources);
    std::fs::write(data.join("new"), noise(200_000, 5)).expect("new file");
    backup_json(&world, 0);
    let third = world.snapshots().pop().expect("third");
    let old: Vec<String> = marker_packs(&world.target(), latest);
    let new_pack = marker_packs(&world.target(), &third)
        .into_iter()
        .find(|p| !old.contains(p))
        .expect("a pack only the third snapshot has");
    let pack_file = |root: &Path| {
        root.join("app/packs")
            .join(format!("{new_pack}.tar.zst.age"))
    };
    let mut bytes = std::fs::read(pack_file(&world.target())).expect("pack");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(pack_file(&world.target()), bytes).expect("damage");
    let v = copy_json(&world, "second", 3);
    let got = outcomes(&v);
    assert_eq!(got[2].1, "failed", "{v}");
    assert!(v.to_string().contains("damaged"), "{v}");
    assert!(
        !second
            .join("app")
            .join(&third)
            .join("snapshot.json")
            .exists()
    );
    assert!(
        !pack_file(&second).exists(),
        "the damaged pack was written under its real name"
    );
}

#[test]
fn copy_from_local_to_s3_restores_from_s3() {
    require_root("restores owners");
    let s3 = S3Server::start(&["bucket"]);
    let world = World::new("");
    let data = world.path("data");
    make_data(&data, 3);
    let secret = s3.secret_file(world.dir.path());
    let s3_toml = s3.target_toml("s3", "bucket", &secret, "prefix = \"copied\"\n");
    let sources = dir_source("files", &data, "");
    world.write_config_with(&s3_toml, &["local"], &sources);
    backup_json(&world, 0);
    let v = copy_json(&world, "s3", 0);
    assert_eq!(outcomes(&v)[0].1, "copied", "{v}");
    world.write_config_with(&s3_toml, &["local", "s3"], &sources);
    let to = world.path("restored");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--target",
        "s3",
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(files(&to.join("files")), files(&data));
}

#[test]
fn a_backup_copies_a_pack_one_target_lacks_from_another_and_never_a_damaged_one() {
    require_root("restores owners");
    let (world, data, second, second_toml) = two_local_targets(5);
    world.write_config_with(
        &second_toml,
        &["local", "second"],
        &dir_source("files", &data, ""),
    );
    backup_json(&world, 0);
    let first = world.snapshots().pop().expect("snapshot");
    let packs = marker_packs(&world.target(), &first);
    let pack_file =
        |root: &Path, id: &str| root.join("app/packs").join(format!("{id}.tar.zst.age"));

    // Lost on `second`: the next run copies it back and reads no file again.
    std::fs::remove_file(pack_file(&second, &packs[0])).expect("rm pack");
    let run = backup_json(&world, 0);
    assert_eq!(run["sources"][0]["packed"]["new_files"], 0, "{run}");
    assert!(
        run["notes"].to_string().contains("copied 1 pack(s)"),
        "{run}"
    );
    assert_eq!(
        std::fs::read(pack_file(&second, &packs[0])).expect("copied back"),
        std::fs::read(pack_file(&world.target(), &packs[0])).expect("original")
    );

    // Lost on `second` and damaged on `local`: not copied; the files are stored again.
    std::fs::remove_file(pack_file(&second, &packs[0])).expect("rm pack");
    let mut bytes = std::fs::read(pack_file(&world.target(), &packs[0])).expect("pack");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(pack_file(&world.target(), &packs[0]), bytes).expect("damage");
    let run = backup_json(&world, 0);
    assert!(
        run["notes"]
            .to_string()
            .contains("could not be copied to target second"),
        "{run}"
    );
    assert!(!pack_file(&second, &packs[0]).exists());
    assert!(
        run["sources"][0]["packed"]["new_files"].as_u64() > Some(0),
        "{run}"
    );
    let out = world.ok(&["verify", "--job", "app", "--target", "second"]);
    assert!(out.contains(": ok ("), "{out}");
}
