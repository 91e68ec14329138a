//! `coffer repair`: a pack damaged on one target is copied back from another that
//! holds it intact (local and S3), a dry run changes nothing, a second run has
//! nothing to do; a pack no target holds intact is forgotten by the index and the
//! snapshots that lose files are named with those files; a marker no trusted
//! signer signed never makes repair overwrite a genuine pack; and the index is
//! rebuilt from the targets so the next backup stores nothing again.

use crate::common::forge::Forgery;
use crate::common::packed_job::{
    FILES, backup_run, counts, make_tree, manifest_packs, marker_packs, packed,
};
use crate::common::s3::S3Server;
use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Only repair (and verify) find the damage: the backup's own re-check is off.
const NO_RECHECK: &str = "recheck_packs = 0\n";
const BUCKET: &str = "coffer-repair";

/// `backup --json` of job `app`; its run, which must succeed.
fn backup_json(world: &World) -> Value {
    let run = backup_run(world);
    assert_eq!(run["status"], "success", "{run}");
    run
}

fn pack_file(root: &Path, id: &str) -> PathBuf {
    root.join("app/packs").join(format!("{id}.tar.zst.age"))
}

fn flip_middle(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("read pack");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, &bytes).expect("write pack");
    bytes
}

fn repair_json(world: &World, args: &[&str], code: i32) -> Value {
    let mut all = vec!["repair", "--job", "app", "--json"];
    all.extend_from_slice(args);
    let out = world.expect(&all, code);
    let v: Value = serde_json::from_str(&out).expect("repair json");
    assert_eq!(v["exit_code"], code, "{v}");
    v
}

fn target_report<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["target"] == name)
        .unwrap_or_else(|| panic!("target {name} in {v}"))
}

/// Deep verify of every snapshot on `target`: all ok.
fn deep_verify_all(world: &World, target: &str) {
    let out = world.ok(&[
        "verify",
        "--job",
        "app",
        "--snapshot",
        "all",
        "--target",
        target,
    ]);
    assert!(!out.contains("DAMAGED"), "{out}");
    let oks = out.matches(": ok (").count();
    assert!(oks >= 1 && out.contains("deep"), "{out}");
}

/// A world whose job `app` goes to the local target and a second local one.
fn two_local_targets() -> (World, PathBuf) {
    let world = World::new("");
    let second = world.path("backups2");
    std::fs::create_dir_all(&second).expect("second target");
    let data = world.path("data");
    make_tree(&data);
    world.write_config_with(
        &format!(
            "[targets.second]\ntype = \"local\"\npath = \"{}\"\n",
            second.display()
        ),
        &["local", "second"],
        &format!("{NO_RECHECK}{}", dir_source("files", &data, "")),
    );
    (world, second)
}

fn file_hash(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).expect("read"))
        .to_hex()
        .to_string()
}

#[test]
fn a_pack_damaged_on_one_target_is_copied_back_from_the_other() {
    let (world, second) = two_local_targets();
    backup_json(&world);
    // A second snapshot: one more file, in a pack of its own.
    std::fs::write(world.path("data/d0/late"), noise(30_000, 99)).expect("write");
    backup_json(&world);
    let snaps = world.snapshots();
    let pack = marker_packs(&world, &snaps[0])[0].clone();
    let damaged = flip_middle(&pack_file(&world.target(), &pack));
    let index = world.path("state/index/app.sqlite");
    let index_before = file_hash(&index);

    // Dry run: says what it would copy, changes nothing.
    let out = world.expect(&["repair", "--job", "app", "--dry-run"], 3);
    assert!(
        out.contains(&format!("would copy pack {pack} back from target second")),
        "{out}"
    );
    // Two packs of files, and the two snapshots' manifest packs.
    assert!(out.contains("target second: checked 4 pack(s)"), "{out}");
    assert_eq!(
        std::fs::read(pack_file(&world.target(), &pack)).expect("read"),
        damaged,
        "a dry run wrote to the target"
    );
    assert_eq!(
        file_hash(&index),
        index_before,
        "a dry run changed the index"
    );

    // While a backup or prune holds the job's lock: refused, nothing done.
    let lock = std::fs::File::open(world.path("state/locks/app.lock")).expect("lock file");
    lock.try_lock().expect("take the job lock");
    let out = world.run(&["repair", "--job", "app"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains("run repair again"), "{stderr}");
    drop(lock);
    assert_eq!(
        std::fs::read(pack_file(&world.target(), &pack)).expect("read"),
        damaged
    );

    // The repair: the good copy comes back from the second target.
    let v = repair_json(&world, &[], 0);
    let local = target_report(&v, "local");
    assert_eq!(local["repaired"][0]["name"], pack.as_str(), "{v}");
    assert_eq!(local["repaired"][0]["from"], "second", "{v}");
    // Two packs of files and one manifest pack per snapshot (the manifests are
    // chunks in packs, and a packed source has no object of its own).
    assert_eq!(local["packs_checked"], 4, "{v}");
    assert_eq!(local["objects_checked"], 0, "{v}");
    assert!(v["damaged_snapshots"].as_array().expect("array").is_empty());
    assert!(v["forgotten_packs"].as_array().expect("array").is_empty());
    assert_eq!(
        std::fs::read(pack_file(&world.target(), &pack)).expect("read"),
        std::fs::read(pack_file(&second, &pack)).expect("read"),
        "the repaired pack differs from the good copy"
    );
    // No staging file left in the packs folder.
    let names: Vec<String> = std::fs::read_dir(world.target().join("app/packs"))
        .expect("packs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n.ends_with(".tar.zst.age")),
        "{names:?}"
    );
    deep_verify_all(&world, "local");
    deep_verify_all(&world, "second");

    // Idempotent: nothing to do the second time.
    let out = world.ok(&["repair", "--job", "app"]);
    assert_eq!(out.matches("all intact: nothing to do").count(), 2, "{out}");
    assert!(out.contains("nothing damaged remains"), "{out}");
    assert!(!out.contains("copied"), "{out}");
}

#[test]
fn a_pack_no_target_holds_intact_is_forgotten_and_its_snapshots_named() {
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    world.write_config(&format!("{NO_RECHECK}{}", dir_source("files", &data, "")));
    backup_json(&world);
    let snapshot = world.snapshots().pop().expect("snapshot");
    let pack = marker_packs(&world, &snapshot)[0].clone();
    flip_middle(&pack_file(&world.target(), &pack));

    let out = world.expect(&["repair", "--job", "app"], 3);
    assert!(
        out.contains(&format!("DAMAGED pack {pack}: no target holds a good copy")),
        "{out}"
    );
    assert!(
        out.contains(&format!("snapshot {snapshot} on target local"))
            && out.contains("stays DAMAGED"),
        "{out}"
    );
    assert!(
        out.contains(&format!("source files: loses {FILES} file(s)")),
        "{out}"
    );
    assert!(out.contains("d0/f00"), "{out}");
    assert!(
        out.contains(&format!("forgot 1 pack(s) no target holds intact: {pack}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("({FILES} file(s) of the last backup")),
        "{out}"
    );

    // JSON: the same, with every lost file.
    let v = repair_json(&world, &[], 3);
    let d = &v["damaged_snapshots"][0];
    assert_eq!(d["snapshot"], snapshot.as_str(), "{v}");
    assert_eq!(d["packs"][0], pack.as_str(), "{v}");
    assert!(
        d["finished_at"].as_str().expect("date").starts_with("20"),
        "{v}"
    );
    assert_eq!(d["lost"]["lost"], "sources", "{v}");
    assert_eq!(d["lost"]["sources"][0]["files"], FILES, "{v}");
    assert_eq!(
        d["lost"]["sources"][0]["paths"]
            .as_array()
            .expect("paths")
            .len() as u64,
        FILES
    );
    // Without the identity: the snapshot is named, its files are not.
    let mut cfg = std::fs::read_to_string(&world.config).expect("config");
    cfg = cfg.replace(
        &format!("identity_file = \"{}\"\n", world.identity.display()),
        "",
    );
    std::fs::write(&world.config, cfg).expect("config");
    let out = world.expect(&["repair", "--job", "app"], 3);
    assert!(out.contains("pass --identity"), "{out}");
    assert!(!out.contains("d0/f00"), "{out}");

    // The index forgot the pack: the next backup stores every file again, and
    // its snapshot deep-verifies clean.
    let run = backup_json(&world);
    assert_eq!(counts(&run), (0, 0, FILES), "{run}");
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
}

#[test]
fn a_damaged_manifest_loses_the_whole_snapshot() {
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    world.write_config(&format!("{NO_RECHECK}{}", dir_source("files", &data, "")));
    backup_json(&world);
    let snapshot = world.snapshots().pop().expect("snapshot");
    // Format 2: the manifest is chunks in a pack of its own.
    let pack = manifest_packs(&world, &snapshot)[0].clone();
    assert!(!marker_packs(&world, &snapshot).is_empty());
    flip_middle(&pack_file(&world.target(), &pack));
    let out = world.expect(&["repair", "--job", "app"], 3);
    assert!(
        out.contains(&pack) && out.contains("no target holds a good copy"),
        "{out}"
    );
    assert!(out.contains("the whole snapshot is lost"), "{out}");
}

#[test]
fn a_damaged_manifest_object_loses_the_whole_snapshot() {
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    // Format 1: the manifest is an object.
    world.write_config(&format!(
        "format = 1\n{NO_RECHECK}{}",
        dir_source("files", &data, "")
    ));
    backup_json(&world);
    let snapshot = world.snapshots().pop().expect("snapshot");
    flip_middle(&world.snapshot_dir(&snapshot).join("manifest.json.zst.age"));
    let out = world.expect(&["repair", "--job", "app"], 3);
    assert!(
        out.contains(&format!(
            "DAMAGED object {snapshot}/manifest.json.zst.age: no target holds a good copy"
        )),
        "{out}"
    );
    assert!(out.contains("the whole snapshot is lost"), "{out}");
    // A manifest object is not in the index: no pack is forgotten.
    assert!(!out.contains("forgot"), "{out}");
}

#[test]
fn a_pack_damaged_on_s3_is_copied_back_from_the_local_target() {
    let s3 = S3Server::start(&[BUCKET]);
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    let secret = s3.secret_file(world.dir.path());
    world.write_config_with(
        &s3.target_toml("s3", BUCKET, &secret, ""),
        &["local", "s3"],
        &format!("{NO_RECHECK}{}", dir_source("files", &data, "")),
    );
    backup_json(&world);
    let snapshot = world.snapshots().pop().expect("snapshot");
    let pack = marker_packs(&world, &snapshot)[0].clone();
    let on_s3 = pack_file(&s3.bucket_dir(BUCKET), &pack);
    flip_middle(&on_s3);
    // And the manifest (chunks in a pack of its own) is gone from S3 altogether.
    let manifest_pack = manifest_packs(&world, &snapshot)[0].clone();
    assert_ne!(manifest_pack, pack);
    let manifest = pack_file(&s3.bucket_dir(BUCKET), &manifest_pack);
    std::fs::remove_file(&manifest).expect("remove the manifest on S3");

    let out = world.expect(
        &["repair", "--job", "app", "--target", "s3", "--dry-run"],
        3,
    );
    assert!(
        out.contains(&format!("would copy pack {pack} back from target local")),
        "{out}"
    );
    assert!(
        !out.contains("target local: checked"),
        "only s3 is checked: {out}"
    );
    assert!(!manifest.exists());

    let v = repair_json(&world, &["--target", "s3"], 0);
    let r = target_report(&v, "s3");
    let names: Vec<&str> = r["repaired"]
        .as_array()
        .expect("repaired")
        .iter()
        .map(|x| x["name"].as_str().expect("name"))
        .collect();
    assert!(names.contains(&pack.as_str()), "{v}");
    assert!(names.contains(&manifest_pack.as_str()), "{v}");
    assert_eq!(
        std::fs::read(&on_s3).expect("read"),
        std::fs::read(pack_file(&world.target(), &pack)).expect("read")
    );
    assert_eq!(
        std::fs::read(&manifest).expect("read"),
        std::fs::read(pack_file(&world.target(), &manifest_pack)).expect("read")
    );
    assert!(
        s3.pending_uploads().is_empty(),
        "{:?}",
        s3.pending_uploads()
    );
    deep_verify_all(&world, "s3");
    let out = world.ok(&["repair", "--job", "app"]);
    assert_eq!(out.matches("all intact: nothing to do").count(), 2, "{out}");

    // A target that cannot be reached proves nothing: reported (exit 1), and
    // nothing is copied to it or forgotten.
    let mut s3 = s3;
    s3.kill();
    let out = world.expect(&["repair", "--job", "app", "--target", "s3"], 1);
    assert!(
        out.contains("target s3: cannot list the snapshots"),
        "{out}"
    );
    assert!(out.contains("not checked"), "{out}");
    assert!(!out.contains("copied") && !out.contains("forgot"), "{out}");
}

#[test]
fn an_untrusted_marker_never_makes_repair_overwrite_a_genuine_pack() {
    let (world, second) = two_local_targets();
    backup_json(&world);
    let snapshot = world.snapshots().pop().expect("snapshot");
    let pack = marker_packs(&world, &snapshot)[0].clone();
    let genuine = std::fs::read(pack_file(&world.target(), &pack)).expect("read");
    // The attacker's bytes under the genuine pack's name on the second target,
    // and on both targets a marker of their own key binding the pack to them.
    let planted = noise(genuine.len(), 4242);
    std::fs::write(pack_file(&second, &pack), &planted).expect("plant pack");
    let fake = format!("{}f", &snapshot[..snapshot.len() - 1]);
    let fake = if fake == snapshot {
        format!("{}e", &snapshot[..snapshot.len() - 1])
    } else {
        fake
    };
    sh(&format!(
        "cp -a '{}' '{}'",
        world.snapshot_dir(&snapshot).display(),
        world.snapshot_dir(&fake).display()
    ));
    let mut f = Forgery::of(&world, &fake);
    f.marker["id"] = fake.as_str().into();
    f.manifest["snapshot"] = fake.as_str().into();
    f.marker["packs"][0]["blake3"] = blake3::hash(&planted).to_hex().to_string().into();
    f.marker["packs"][0]["stored_size"] = planted.len().into();
    f.save_signed_by_stranger();
    sh(&format!(
        "cp -a '{}' '{}'",
        world.snapshot_dir(&fake).display(),
        second.join("app").join(&fake).display()
    ));

    let out = world.ok(&["repair", "--job", "app"]);
    assert!(
        out.contains("ignored 1 snapshot(s) not signed by a trusted signer"),
        "{out}"
    );
    // The genuine pack stays; the planted one on the second target is the damage,
    // and it is repaired from the genuine copy.
    assert_eq!(
        std::fs::read(pack_file(&world.target(), &pack)).expect("read"),
        genuine,
        "repair overwrote a genuine pack"
    );
    assert!(
        out.contains(&format!("copied pack {pack} back from target local")),
        "{out}"
    );
    assert_eq!(
        std::fs::read(pack_file(&second, &pack)).expect("read"),
        genuine
    );
    // The planted markers are left where they are: repair deletes nothing.
    assert!(world.snapshot_dir(&fake).join("snapshot.json").exists());
    assert!(
        second
            .join("app")
            .join(&fake)
            .join("snapshot.json")
            .exists()
    );
}

#[test]
fn the_index_rebuilt_from_the_targets_lets_the_next_backup_store_nothing_again() {
    let (world, _second) = two_local_targets();
    let first = backup_json(&world);
    assert_eq!(counts(&first), (0, 0, FILES), "{first}");
    let index = world.path("state/index/app.sqlite");
    std::fs::remove_file(&index).expect("remove the index");

    // Without an identity it cannot read the manifests.
    let out = world.run(&[
        "repair",
        "--job",
        "app",
        "--rebuild-index",
        "--identity",
        world.path("nonexistent").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!index.exists());

    let out = world.expect(
        &["repair", "--job", "app", "--rebuild-index", "--dry-run"],
        0,
    );
    assert!(
        out.contains("index would be rebuilt from snapshot"),
        "{out}"
    );
    assert!(!index.exists(), "a dry run made an index");

    let v = repair_json(&world, &["--rebuild-index"], 0);
    let r = &v["rebuilt_index"];
    // The files' pack and the manifest's.
    assert_eq!(r["packs"], 2, "{v}");
    assert_eq!(r["contents"], FILES, "{v}");
    assert!(
        r["note"]
            .as_str()
            .expect("note")
            .contains("reads every file once")
    );
    assert!(index.exists());

    // Files are read again (the manifest has no inode numbers), none stored.
    let run = backup_json(&world);
    assert_eq!(counts(&run), (0, FILES, 0), "{run}");
    assert_eq!(packed(&run)["new_bytes"], 0, "{run}");
    assert_eq!(packed(&run)["new_packs"], 0, "{run}");
    let latest = world.snapshots().pop().expect("snapshot");
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
    assert!(out.contains(": ok (") && !out.contains("DAMAGED"), "{out}");
    assert_eq!(marker_packs(&world, &latest).len(), 1);
    // And from then on it is incremental as ever.
    let run = backup_json(&world);
    assert_eq!(counts(&run), (FILES, 0, 0), "{run}");
}
