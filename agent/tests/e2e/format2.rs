//! Format 2 end to end: unchanged files are not read and known content is not
//! stored again; a target that missed runs is complete after its next run (and
//! verify proves it); prune deletes exactly the packs no snapshot references;
//! `restore --path` reads little from the target, local or S3; packs unpack with
//! the standard tools within the documented limits; a killed backup never leaves a
//! committed snapshot that references a missing pack; format-1 snapshots still
//! restore.

use crate::common::s3::S3Server;
use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `backup --json` of job `app`, asserting the exit code; the job's run.
pub(crate) fn backup_json(world: &World, code: i32) -> Value {
    // Ids have one-second resolution: the next snapshot must sort after this one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = world.expect(&["backup", "app", "--json"], code);
    let v: Value = serde_json::from_str(&out).expect("backup json");
    v[0].clone()
}

/// The packed source's counts in a run report.
fn packed(run: &Value, source: &str) -> (u64, u64, u64, u64) {
    let s = run["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == source)
        .expect("source in report");
    let p = &s["packed"];
    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
    (
        n("unchanged_files"),
        n("known_files"),
        n("new_files"),
        n("new_packs"),
    )
}

/// The marker of snapshot `id` in job `app` on the local target folder `root`.
fn marker(root: &Path, id: &str) -> Value {
    let text =
        std::fs::read_to_string(root.join("app").join(id).join("snapshot.json")).expect("marker");
    let v: Value = serde_json::from_str(&text).expect("marker json");
    v["marker"].clone()
}

/// Snapshot `id`'s packs of its sources' contents (not those of its manifest).
pub(crate) fn marker_packs(root: &Path, id: &str) -> Vec<String> {
    let m = marker(root, id);
    let manifest = crate::common::packed_job::manifest_chunk_packs(&m);
    m["packs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["id"].as_str().expect("id").to_string())
                .filter(|p| !manifest.contains(p))
                .collect()
        })
        .unwrap_or_default()
}

/// Every pack snapshot `id` lists, its manifest's too.
fn all_marker_packs(root: &Path, id: &str) -> Vec<String> {
    marker(root, id)["packs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["id"].as_str().expect("id").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The packs stored under `root/app/packs` but those holding a snapshot's
/// manifest (every run writes one, with what of its manifest changed).
fn content_packs(root: &Path) -> BTreeSet<String> {
    let mut manifests = BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir(root.join("app")) {
        for e in dir.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if e.path().join("snapshot.json").exists() {
                manifests.extend(crate::common::packed_job::manifest_chunk_packs(&marker(
                    root, &id,
                )));
            }
        }
    }
    stored_packs(root)
        .into_iter()
        .filter(|p| !manifests.contains(p))
        .collect()
}

/// The pack ids stored under `root/app/packs`.
fn stored_packs(root: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(root.join("app").join("packs")) {
        Err(_) => BTreeSet::new(),
        Ok(dir) => dir
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(".tar.zst.age").map(str::to_string))
            .collect(),
    }
}

/// Path -> content of every regular file under `root`.
pub(crate) fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(e.path()).expect("read"))
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// 40 files of 1 to 200 KiB in three folders.
fn make_tree(root: &Path) {
    for i in 0..40u64 {
        let len = 1024 + (i as usize * 5003) % (200 << 10);
        write(
            &root.join(format!("d{}/f{i:02}", i % 3)),
            &noise(len, i + 1),
        );
    }
}

fn restore_to(world: &World, snapshot: &str, extra: &[&str]) -> PathBuf {
    let to = world.path(&format!("restored-{snapshot}-{}", extra.len()));
    let mut args = vec![
        "restore",
        "--job",
        "app",
        "--snapshot",
        snapshot,
        "--to",
        to.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    world.ok(&args);
    to
}

#[test]
fn unchanged_files_are_not_read_and_known_content_is_not_stored_again() {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    world.write_config(&dir_source("files", &data, ""));

    let first = backup_json(&world, 0);
    assert_eq!(packed(&first, "files"), (0, 0, 40, 1), "{first}");
    let notes = first["notes"].to_string();
    assert!(notes.contains("no index of earlier snapshots"), "{notes}");

    let again = backup_json(&world, 0);
    assert_eq!(packed(&again, "files"), (40, 0, 0, 0), "{again}");
    assert_eq!(again["sources"][0]["bytes_read"], 0, "{again}");

    // A copy and a rename cost nothing; one new file and one changed file are stored.
    std::fs::copy(data.join("d0/f00"), data.join("d1/copy-of-f00")).expect("copy");
    std::fs::rename(data.join("d2/f02"), data.join("d2/renamed")).expect("rename");
    write(&data.join("d0/new"), &noise(5000, 99));
    write(&data.join("d1/f01"), &noise(7000, 98));
    let third = backup_json(&world, 0);
    let (unchanged, known, new, new_packs) = packed(&third, "files");
    assert_eq!((known, new, new_packs), (2, 2, 1), "{third}");
    assert_eq!(unchanged, 38, "{third}");
    assert_eq!(content_packs(&world.target()).len(), 2);

    let ids = world.snapshots();
    let latest = ids.last().expect("snapshot").clone();
    let to = restore_to(&world, &latest, &[]);
    assert_eq!(files(&to.join("files")), files(&data));
    let out = world.ok(&["verify", "--job", "app", "--snapshot", "all"]);
    assert_eq!(out.matches(": ok (").count(), 3, "{out}");

    // A lost index costs one full run, never a wrong snapshot.
    std::fs::remove_dir_all(world.path("state/index")).expect("remove index");
    write(&data.join("d0/after-loss"), b"x");
    let full = backup_json(&world, 0);
    let (unchanged, known, new, _) = packed(&full, "files");
    assert_eq!(unchanged, 0, "{full}");
    // Every file read, and stored again but for the copy (the same content).
    assert_eq!((known, new), (1, 42), "{full}");
    let latest = world.snapshots().pop().expect("snapshot");
    let to = restore_to(&world, &latest, &["--path", "d0/after-loss"]);
    assert_eq!(
        std::fs::read(to.join("files/d0/after-loss")).expect("read"),
        b"x"
    );
}

/// Issue 26 item 8: a run whose only new file is empty wrote a pack of 375
/// bytes for it (a tar header). Its entry says size 0 and points into a pack the
/// snapshot lists anyway: no new pack, and it restores as an empty file.
#[test]
fn a_run_whose_only_new_files_are_empty_writes_no_pack() {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    write(&data.join("f"), &noise(4000, 3));
    world.write_config(&dir_source("files", &data, ""));
    let first = backup_json(&world, 0);
    assert_eq!(packed(&first, "files"), (0, 0, 1, 1), "{first}");
    let before = content_packs(&world.target());

    write(&data.join("empty"), b"");
    write(&data.join("d/also-empty"), b"");
    let second = backup_json(&world, 0);
    let (unchanged, known, new, new_packs) = packed(&second, "files");
    assert_eq!((unchanged, known, new, new_packs), (1, 2, 0, 0), "{second}");
    assert_eq!(content_packs(&world.target()), before, "no new pack");
    let latest = world.snapshots().pop().expect("snapshot");
    assert_eq!(marker_packs(&world.target(), &latest).len(), 1);
    let to = restore_to(&world, &latest, &[]);
    assert_eq!(files(&to.join("files")), files(&data));
    assert_eq!(
        std::fs::metadata(to.join("files/empty"))
            .expect("restored")
            .len(),
        0
    );
    let out = world.ok(&["verify", "--job", "app", "--snapshot", "all"]);
    assert_eq!(out.matches(": ok (").count(), 2, "{out}");
    // Unchanged the next time, like any file.
    let third = backup_json(&world, 0);
    assert_eq!(packed(&third, "files"), (3, 0, 0, 0), "{third}");
}

#[test]
fn a_target_that_missed_runs_gets_every_pack_copied_and_verify_proves_it() {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    let other = world.path("other");
    // A second disk, there before the config names it (coffer does not create it).
    std::fs::create_dir_all(&other).expect("mkdir other");
    let other_toml = format!(
        "[targets.other]\ntype = \"local\"\npath = \"{}\"\n",
        other.display()
    );
    let sources = dir_source("files", &data, "");
    world.write_config_with(&other_toml, &["local"], &sources);
    backup_json(&world, 0);

    // `other` joins: it has none of the packs; they are copied to it from `local`
    // (checked against the index's hashes), so no file is read again.
    world.write_config_with(&other_toml, &["local", "other"], &sources);
    let run = backup_json(&world, 0);
    let (unchanged, _, new, _) = packed(&run, "files");
    assert_eq!((unchanged, new), (40, 0), "{run}");
    assert!(
        run["notes"]
            .to_string()
            .contains("that target other lacked"),
        "{run}"
    );
    let latest = world.snapshots().pop().expect("snapshot");
    for root in [world.target(), other.clone()] {
        let have = stored_packs(&root);
        for p in marker_packs(&root, &latest) {
            assert!(have.contains(&p), "pack {p} missing on {}", root.display());
        }
    }
    let out = world.ok(&["verify", "--job", "app", "--target", "other"]);
    assert!(out.contains(": ok ("), "{out}");

    // A pack lost on one target: verify of the snapshot that needed it says it is
    // missing and the index forgets it (a damaged pack is never built upon), so
    // the next run stores its files again everywhere.
    let lost = marker_packs(&other, &latest)[0].clone();
    std::fs::remove_file(other.join("app/packs").join(format!("{lost}.tar.zst.age")))
        .expect("remove pack");
    let out = world.expect(
        &[
            "verify",
            "--job",
            "app",
            "--target",
            "other",
            "--stored-only",
        ],
        3,
    );
    assert!(out.contains(&lost) || out.contains("DAMAGED"), "{out}");
    let run = backup_json(&world, 0);
    let (_, _, new, _) = packed(&run, "files");
    assert_eq!(new, 40, "{run}");
    let out = world.ok(&["verify", "--job", "app", "--target", "other"]);
    assert!(out.contains(": ok ("), "{out}");
    let latest = world.snapshots().pop().expect("snapshot");
    let to = world.path("from-other");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--target",
        "other",
        "--snapshot",
        &latest,
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(files(&to.join("files")), files(&data));
}

#[test]
fn prune_deletes_exactly_the_packs_no_snapshot_references_on_every_target() {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    let other = world.path("other");
    // A second disk, there before the config names it (coffer does not create it).
    std::fs::create_dir_all(&other).expect("mkdir other");
    let other_toml = format!(
        "[targets.other]\ntype = \"local\"\npath = \"{}\"\n",
        other.display()
    );
    let sources = format!(
        "retention = {{ keep_last = 2 }}\n{}",
        dir_source("files", &data, "")
    );
    world.write_config_with(&other_toml, &["local"], &sources);
    backup_json(&world, 0);
    world.write_config_with(&other_toml, &["local", "other"], &sources);
    // From the second round on, each round's file is alone in its pack (the
    // first round's went with the whole tree to `other`) and deleted the next
    // round: once its snapshots are forgotten, its pack is garbage on both targets.
    for round in 0..4u64 {
        write(
            &data.join(format!("d0/round{round}")),
            &noise(30_000, 500 + round),
        );
        if round > 0 {
            std::fs::remove_file(data.join(format!("d0/round{}", round - 1))).expect("rm");
        }
        std::fs::remove_file(data.join(format!("d1/f{:02}", 1 + 3 * round))).expect("rm");
        backup_json(&world, 0);
    }
    // Packs are collected only once older than incomplete_after (24h by default).
    for root in [world.target(), other.clone()] {
        sh(&format!(
            "touch -d '3 days ago' {}/app/packs/*",
            root.display()
        ));
    }
    let before: Vec<usize> = [world.target(), other.clone()]
        .iter()
        .map(|r| stored_packs(r).len())
        .collect();
    world.ok(&["prune", "--job", "app"]);
    let ids: Vec<String> = world
        .snapshots()
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for (root, before) in [world.target(), other.clone()].iter().zip(before) {
        let referenced: BTreeSet<String> = ids
            .iter()
            .filter(|id| root.join("app").join(id).exists())
            .flat_map(|id| all_marker_packs(root, id))
            .collect();
        let have = stored_packs(root);
        assert_eq!(have, referenced, "on {}", root.display());
        assert!(
            have.len() < before,
            "nothing collected on {}",
            root.display()
        );
    }
    let to = restore_to(&world, ids.last().expect("id"), &[]);
    assert_eq!(files(&to.join("files")), files(&data));

    // A marker this coffer cannot read might reference anything: nothing is collected.
    let foreign = world.target().join("app/20200101T000000Z-abcd");
    write(&foreign.join("snapshot.json"), b"{\"format\": 99}");
    sh(&format!(
        "touch -d '3 days ago' {}/app/packs/*",
        world.target().display()
    ));
    write(&data.join("d0/round-last"), &noise(40_000, 700));
    backup_json(&world, 0);
    sh(&format!(
        "touch -d '3 days ago' {}/app/packs/*",
        world.target().display()
    ));
    let before = stored_packs(&world.target()).len();
    let out = world.run(&["prune", "--job", "app", "--target", "local"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("could not be read"), "{text}");
    assert_eq!(stored_packs(&world.target()).len(), before);
}

fn partial_restore_reads_little(world: &World) {
    let data = world.path("data");
    // 3 x 48 MiB of noise around one 4 KiB file: several packs.
    for i in 0..3u64 {
        write(&data.join(format!("big/{i}")), &noise(48 << 20, 10 + i));
    }
    let small = noise(4096, 77);
    write(&data.join("big/1a-small"), &small);
    backup_json(world, 0);
    let latest = world.snapshots().pop().expect("snapshot");
    let to = world.path("partial");
    let out = world.ok(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &latest,
        "--path",
        "big/1a-small",
        "--to",
        to.to_str().expect("utf-8"),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("restore json");
    let fetched = v["fetched_bytes"].as_u64().expect("fetched_bytes");
    assert!(fetched > 4096, "{v}");
    assert!(fetched <= 4096 + (2 << 20), "read {fetched} bytes: {v}");
    let got = files(&to.join("files"));
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["big/1a-small"]);
    assert_eq!(got["big/1a-small"], small);
    // A pattern that matches nothing is a usage error.
    world.expect(
        &[
            "restore",
            "--job",
            "app",
            "--path",
            "nothing/*",
            "--to",
            world.path("none").to_str().expect("utf-8"),
        ],
        2,
    );
}

#[test]
fn restoring_one_small_file_reads_at_most_its_size_and_2_mib_locally() {
    require_root("restores owners");
    let world = World::new("");
    world.write_config(&dir_source("files", &world.path("data"), ""));
    partial_restore_reads_little(&world);
}

#[test]
fn restoring_one_small_file_reads_at_most_its_size_and_2_mib_from_s3() {
    require_root("restores owners");
    let s3 = S3Server::start(&["bucket"]);
    let world = s3.files_world();
    partial_restore_reads_little(&world);
    let out = world.ok(&["verify", "--job", "app"]);
    assert!(out.contains(": ok ("), "{out}");
}

#[test]
fn packs_unpack_with_age_zstd_and_tar_within_the_documented_limits() {
    for tool in ["age", "zstd", "tar"] {
        require_tool(tool);
    }
    let world = World::new("");
    let data = world.path("data");
    write(&data.join("a"), b"deleted later");
    write(&data.join("b"), b"first version");
    write(&data.join("c"), b"renamed later");
    world.write_config(&dir_source("files", &data, ""));
    backup_json(&world, 0);
    std::fs::remove_file(data.join("a")).expect("rm");
    write(&data.join("b"), b"second version");
    std::fs::rename(data.join("c"), data.join("d")).expect("rename");
    backup_json(&world, 0);
    let latest = world.snapshots().pop().expect("snapshot");
    let out = world.path("by-hand");
    std::fs::create_dir_all(&out).expect("mkdir");
    let packs = marker_packs(&world.target(), &latest);
    assert_eq!(packs.len(), 2, "{packs:?}");
    // In the order snapshot.json lists them (the order they were written).
    for p in &packs {
        sh(&format!(
            "age -d -i {} {}/app/packs/{p}.tar.zst.age | zstd -d | tar -x -C {}",
            world.identity.display(),
            world.target().display(),
            out.display()
        ));
    }
    let got = files(&out);
    // The newest version wins; a renamed file is at its old path; a deleted one may reappear.
    assert_eq!(got["b"], b"second version");
    assert_eq!(got["c"], b"renamed later");
    assert_eq!(got["a"], b"deleted later");
    assert!(!got.contains_key("d"), "{:?}", got.keys());
}

#[test]
fn a_killed_backup_never_commits_a_snapshot_that_misses_a_pack() {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    for i in 0..12u64 {
        write(&data.join(format!("f{i}")), &noise(6 << 20, 300 + i));
    }
    world.write_config(&dir_source("files", &data, ""));
    // Small packs: many pack boundaries to be killed at.
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        cfg.replace("[jobs.app]\n", "[jobs.app]\npack_size = \"8MiB\"\n"),
    )
    .expect("config");
    let mut seed = 0x2545_f491_u64;
    for round in 0..6u64 {
        write(
            &data.join(format!("new{round}")),
            &noise(3 << 20, 900 + round),
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = std::time::Duration::from_millis(50 + seed % 700);
        let mut child = world.spawn_silent(&["backup", "app"]);
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    // Every committed snapshot has every pack it lists, with the bytes it lists.
    if !world.snapshots().is_empty() {
        world.ok(&[
            "verify",
            "--job",
            "app",
            "--snapshot",
            "all",
            "--stored-only",
        ]);
    }
    // And the index the killed runs left is one a good run can use.
    let run = backup_json(&world, 0);
    assert_eq!(run["status"], "success", "{run}");
    let latest = world.snapshots().pop().expect("snapshot");
    let to = restore_to(&world, &latest, &[]);
    assert_eq!(files(&to.join("files")), files(&data));
    world.ok(&["verify", "--job", "app", "--snapshot", "all"]);
}

#[test]
fn a_format_1_snapshot_restores_next_to_format_2_ones() {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    let v1 = files(&data);
    world.write_config(&format!("format = 1\n{}", dir_source("files", &data, "")));
    backup_json(&world, 0);
    let first = world.snapshots().pop().expect("snapshot");
    assert!(
        world
            .snapshot_dir(&first)
            .join("files.tar.zst.age")
            .exists()
    );
    write(&data.join("d0/more"), b"more");
    world.write_config(&dir_source("files", &data, ""));
    backup_json(&world, 0);
    let second = world.snapshots().pop().expect("snapshot");
    assert!(
        !world
            .snapshot_dir(&second)
            .join("files.tar.zst.age")
            .exists()
    );
    assert_eq!(files(&restore_to(&world, &first, &[]).join("files")), v1);
    assert_eq!(
        files(&restore_to(&world, &second, &[]).join("files")),
        files(&data)
    );
    let out = world.ok(&["verify", "--job", "app", "--snapshot", "all"]);
    assert_eq!(out.matches(": ok (").count(), 2, "{out}");
    // --path needs format 2.
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &first,
        "--path",
        "d0/*",
        "--to",
        world.path("p").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("format 1"));
}

#[test]
fn a_sparse_file_is_read_stored_and_restored_as_its_data_and_holes() {
    require_root("restores owners");
    for tool in ["age", "zstd", "tar"] {
        require_tool(tool);
    }
    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let sparse = data.join("disk.img");
    let f = std::fs::File::create(&sparse).expect("create");
    f.set_len(4 << 30).expect("4 GiB of holes");
    use std::os::unix::fs::FileExt;
    f.write_all_at(&noise(8192, 5), 1 << 30).expect("write");
    f.write_all_at(b"tail", (4 << 30) - 4).expect("write");
    drop(f);
    world.write_config(&dir_source("files", &data, ""));
    let run = backup_json(&world, 0);
    let read = run["sources"][0]["bytes_read"]
        .as_u64()
        .expect("bytes_read");
    assert!(
        read < 1 << 20,
        "read {read} bytes of a file with 12 KiB of data"
    );
    let stored = run["sources"][0]["stored_size"].as_u64().expect("stored");
    assert!(stored < 1 << 20, "stored {stored} bytes");

    let latest = world.snapshots().pop().expect("snapshot");
    let to = restore_to(&world, &latest, &[]);
    let back = to.join("files/disk.img");
    let md = std::fs::metadata(&back).expect("restored");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(md.len(), 4 << 30);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} blocks: not sparse",
        md.blocks()
    );
    sh(&format!("cmp {} {}", sparse.display(), back.display()));
    let out = world.ok(&["verify", "--job", "app"]);
    assert!(out.contains(": ok (1") || out.contains(": ok ("), "{out}");

    // The pack holds a PAX sparse entry: GNU tar restores it sparse too.
    let by_hand = world.path("by-hand");
    std::fs::create_dir_all(&by_hand).expect("mkdir");
    for p in marker_packs(&world.target(), &latest) {
        sh(&format!(
            "age -d -i {} {}/app/packs/{p}.tar.zst.age | zstd -d | tar -x -C {}",
            world.identity.display(),
            world.target().display(),
            by_hand.display()
        ));
    }
    let md = std::fs::metadata(by_hand.join("disk.img")).expect("tar restored");
    assert!(md.blocks() * 512 < 1 << 20, "{} blocks", md.blocks());
    sh(&format!(
        "cmp {} {}",
        sparse.display(),
        by_hand.join("disk.img").display()
    ));
}

#[test]
fn a_mostly_unused_pack_is_rewritten_from_the_live_files_and_then_deleted() {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    // Retention comes after the two runs, so that the prune by hand is what finds
    // the pack mostly unused and has its files forgotten in the index.
    world.write_config(&dir_source("files", &data, ""));
    backup_json(&world, 0);
    let first = world.snapshots().pop().expect("snapshot");
    let old_pack = marker_packs(&world.target(), &first)[0].clone();
    // 34 of the 40 files go: most of the one pack is unused once the first
    // snapshot is forgotten (keep_last = 1).
    for i in 0..34u64 {
        std::fs::remove_file(data.join(format!("d{}/f{i:02}", i % 3))).expect("rm");
    }
    backup_json(&world, 0);
    world.write_config(&format!(
        "retention = {{ keep_last = 1 }}\n{}",
        dir_source("files", &data, "")
    ));
    let pruned = world.run(&["prune", "--job", "app", "--json"]);
    let (out, err) = (
        String::from_utf8_lossy(&pruned.stdout),
        String::from_utf8_lossy(&pruned.stderr),
    );
    assert_eq!(pruned.status.code(), Some(0), "{err}");
    // The note goes beside the JSON, never into it (it once made stdout unparsable).
    assert!(
        err.contains("repack: 1 pack(s) are mostly unused") && err.contains("6 live file(s)"),
        "{err}"
    );
    let v: Value = serde_json::from_str(&out).expect("prune json");
    let dead = v[0]["packs_dead_bytes"].as_u64().expect("dead bytes");
    let stored = v[0]["packs_live_bytes"].as_u64().expect("live bytes");
    assert!(dead > stored / 2 && dead < stored, "{v}");
    assert_eq!(v[0]["packs_to_rewrite"][0], old_pack.as_str(), "{v}");
    let status: Value = serde_json::from_str(
        &std::fs::read_to_string(world.path("state/status/app.json")).expect("status"),
    )
    .expect("status json");
    assert_eq!(status["dead_bytes"]["local"], dead, "{status}");

    // The next run stores the 6 live files again, in a new pack.
    let run = backup_json(&world, 0);
    let (unchanged, known, new, new_packs) = packed(&run, "files");
    assert_eq!((unchanged, known, new, new_packs), (0, 0, 6, 1), "{run}");
    let latest = world.snapshots().pop().expect("snapshot");
    assert!(!marker_packs(&world.target(), &latest).contains(&old_pack));
    // Once no kept snapshot references it (and it is old enough), it is deleted.
    sh(&format!(
        "touch -d '3 days ago' {}/app/packs/*",
        world.target().display()
    ));
    world.ok(&["prune", "--job", "app"]);
    assert!(!stored_packs(&world.target()).contains(&old_pack));
    let to = restore_to(&world, &latest, &[]);
    assert_eq!(files(&to.join("files")), files(&data));
}

#[test]
fn on_s3_a_round_trip_check_verify_ls_find_and_diff_work_from_packs() {
    require_root("restores owners");
    let s3 = S3Server::start(&["bucket"]);
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    let secret = s3.secret_file(world.dir.path());
    let target = s3.target_toml("s3", "bucket", &secret, "");
    world.write_config_with(&target, &["s3"], &dir_source("files", &data, ""));
    backup_json(&world, 0);
    write(&data.join("d0/added.txt"), b"added");
    std::fs::remove_file(data.join("d1/f01")).expect("rm");
    let run = backup_json(&world, 0);
    assert_eq!(packed(&run, "files").2, 1, "{run}");
    let ids = world.snapshots();
    let (a, b) = (ids[0].clone(), ids[1].clone());

    let to = restore_to(&world, &b, &[]);
    assert_eq!(files(&to.join("files")), files(&data));
    let out = world.ok(&["check", "--job", "app"]);
    assert!(out.contains("consistent"), "{out}");
    let out = world.ok(&["verify", "--job", "app", "--snapshot", "all"]);
    assert_eq!(out.matches(": ok (").count(), 2, "{out}");
    let out = world.ok(&[
        "verify",
        "--job",
        "app",
        "--snapshot",
        "all",
        "--stored-only",
    ]);
    assert_eq!(out.matches(": ok (").count(), 2, "{out}");

    let out = world.ok(&["ls", "--job", "app", "--snapshot", &b, "files/d0"]);
    assert!(out.contains("files/d0/added.txt"), "{out}");
    let out = world.ok(&["find", "--job", "app", "added.txt"]);
    assert!(out.contains("1 match"), "{out}");
    assert!(
        out.contains(&format!("{b} ")) && !out.contains(&format!("{a} ")),
        "{out}"
    );
    let out = world.ok(&["diff", "--job", "app", &a, &b]);
    assert!(out.contains("files/d0/added.txt"), "{out}");
    assert!(out.contains("files/d1/f01"), "{out}");
    assert!(out.contains("1 added, 1 removed, 0 changed"), "{out}");
}

#[test]
fn a_snapshot_made_by_the_coffer_before_format_2_restores() {
    require_root("restores owners");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/fixtures/format1");
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("target");
    sh(&format!(
        "cp -a {}/target {}",
        fixture.display(),
        target.display()
    ));
    let signer = std::fs::read_to_string(fixture.join("signer.txt")).expect("signer");
    let identity = fixture.join("identity.txt");
    let recipient = std::fs::read_to_string(&identity)
        .expect("identity")
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .expect("public key");
    let config = dir.path().join("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[encryption]\nrecipients = [\"{recipient}\"]\n\
             identity_file = \"{}\"\ntrusted_signers = [\"{}\"]\n[targets.local]\ntype = \"local\"\n\
             path = \"{}\"\n[jobs.app]\ntargets = [\"local\"]\n[[jobs.app.sources]]\n\
             name = \"files\"\ntype = \"directory\"\npath = \"{}\"\n",
            dir.path().join("state").display(),
            identity.display(),
            signer.trim(),
            target.display(),
            dir.path().join("live").display()
        ),
    )
    .expect("config");
    let coffer = |args: &[&str]| {
        let out = std::process::Command::new(coffer_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("run coffer");
        assert!(
            out.status.success(),
            "coffer {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let to = dir.path().join("restored");
    coffer(&[
        "restore",
        "--job",
        "app",
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(files(&to.join("files")), files(&fixture.join("tree")));
    assert_eq!(
        std::fs::read_link(to.join("files/link")).expect("symlink"),
        Path::new("a.txt")
    );
    let out = coffer(&["verify", "--job", "app"]);
    assert!(out.contains(": ok ("), "{out}");
    let out = coffer(&["ls", "--job", "app"]);
    assert!(out.contains("files/docs/b.md"), "{out}");
}

/// `restore --path` takes a path as `find` and `ls` print it, `<source>/<path>`:
/// it restores that source's file only; the path inside the source still works
/// and matches in every source.
#[test]
fn restore_path_takes_the_source_slash_path_form_find_prints() {
    require_root("restores owners");
    let world = World::new("");
    let (storage, media) = (world.path("storage"), world.path("media"));
    write(&storage.join("dir3/sub/note.md"), b"storage's note");
    write(&storage.join("dir3/other.md"), b"not asked for");
    write(&media.join("dir3/sub/note.md"), b"media's note");
    world.write_config(&format!(
        "{}{}",
        dir_source("storage", &storage, ""),
        dir_source("media", &media, "")
    ));
    world.backup();
    let found = world.ok(&["find", "--job", "app", "note.md"]);
    let printed = found
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("storage/")))
        .unwrap_or_else(|| panic!("find printed no storage/ path: {found}"));
    assert_eq!(printed, "storage/dir3/sub/note.md", "{found}");

    let to = restore_to(&world, "latest", &["--path", printed]);
    assert_eq!(
        files(&to.join("storage")).into_keys().collect::<Vec<_>>(),
        vec!["dir3/sub/note.md"]
    );
    assert!(
        !to.join("media").exists(),
        "media restored for a storage/ path"
    );

    // The path inside the source: in every source that has it.
    let to = restore_to(
        &world,
        "latest",
        &[
            "--path",
            "dir3/sub/note.md",
            "--source",
            "storage",
            "--source",
            "media",
        ],
    );
    assert_eq!(
        files(&to.join("storage"))["dir3/sub/note.md"],
        b"storage's note"
    );
    assert_eq!(
        files(&to.join("media"))["dir3/sub/note.md"],
        b"media's note"
    );
}

/// `coffer list` names a job's directory sources: format 2 stores them in packs,
/// with no object of their own, so the marker lists them apart (readable without
/// the private key).
#[test]
fn list_shows_the_directory_sources_of_a_packed_snapshot() {
    let world = World::new("");
    write(&world.path("storage/a"), b"a");
    write(&world.path("media/b"), b"b");
    world.write_config(&format!(
        "{}{}",
        dir_source("storage", &world.path("storage"), ""),
        dir_source("media", &world.path("media"), "")
    ));
    world.backup();
    // No identity needed: list reads markers alone.
    std::fs::remove_file(&world.identity).expect("remove the identity");
    let listed = world.ok(&["list", "--job", "app"]);
    let row = listed.lines().nth(1).expect("a snapshot row");
    assert!(row.trim_end().ends_with("storage,media"), "{listed}");
    let v: Value =
        serde_json::from_str(&world.ok(&["list", "--job", "app", "--json"])).expect("list json");
    assert_eq!(
        v[0]["packed_sources"],
        serde_json::json!(["storage", "media"]),
        "{v}"
    );
}
