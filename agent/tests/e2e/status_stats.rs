//! `coffer status` and `coffer stats` against a local target: status before any
//! run (never run, and nothing created), after a success, a failure and a verify;
//! stats against what the target's files say on disk (packs, objects), with the
//! identity the logical size and a dedup ratio above 1, and a snapshot signed by
//! a stranger left out of every number.

use crate::common::packed_job::{FILES, backup_run, make_tree};
use crate::common::*;
use serde_json::Value;
use std::path::Path;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// The one job's object in `status --json`.
fn status_of(world: &World) -> Value {
    let v = json(&world.ok(&["status", "--json"]));
    let jobs = v.as_array().expect("an array");
    assert_eq!(jobs.len(), 1, "{v}");
    jobs[0].clone()
}

/// The one row of `stats --json`.
fn stats_of(world: &World) -> Value {
    let v = json(&world.ok(&["stats", "--json"]));
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{v}");
    rows[0].clone()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is no number in {v}"))
}

/// Sizes of the regular files directly in `dir` whose name passes `keep`.
fn sizes_in(dir: &Path, keep: impl Fn(&str) -> bool) -> (u64, u64) {
    let mut count = 0;
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let md = e.metadata().expect("metadata");
        if md.is_file() && keep(&name) {
            count += 1;
            total += md.len();
        }
    }
    (count, total)
}

/// The sizes of the tree's files, as `ls -l` gives them.
fn tree_bytes(root: &Path) -> u64 {
    let out = sh(&format!(
        "find '{}' -type f -printf '%s\\n'",
        root.display()
    ));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse::<u64>().expect("a size"))
        .sum()
}

#[test]
fn status_says_never_run_then_the_last_success_failure_and_verify() {
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    world.write_config(&format!(
        "schedule = \"0 3 * * *\"\n{}",
        dir_source("storage", &data, "")
    ));
    let state = world.path("state");

    // Before any run: "never run", exit 0, and the state directory still not there.
    let text = world.ok(&["status"]);
    assert!(text.contains("job app: never run"), "{text}");
    assert!(text.contains("next run"), "{text}");
    assert!(text.contains("schedule \"0 3 * * *\""), "{text}");
    let st = status_of(&world);
    assert!(st["last_run"].is_null(), "{st}");
    assert!(st["last_verify"].is_null(), "{st}");
    assert!(
        st["next_run"].as_str().is_some_and(|t| t.ends_with(":00Z")),
        "{st}"
    );
    assert!(!state.exists(), "status created the state directory");
    let err = world.expect(&["status", "--job", "nope"], 2);
    assert!(err.is_empty(), "stdout of a usage error: {err}");
    let out = world.run(&["status", "--job", "nope"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no job \"nope\""),
        "{out:?}"
    );

    // After a success.
    let id = world.backup();
    let st = status_of(&world);
    assert_eq!(st["last_run"]["outcome"], "success", "{st}");
    assert_eq!(st["last_run"]["snapshot"], id.as_str(), "{st}");
    assert!(st["last_run"]["error"].is_null(), "{st}");
    assert_eq!(st["snapshots"]["local"], 1, "{st}");
    // The first run stored every pack and object the target now holds.
    let stored = stats_of(&world)["stored_bytes"].clone();
    assert_eq!(st["last_run"]["stored_bytes"], stored, "{st}");
    assert_eq!(st["runs"]["success"], 1, "{st}");
    let success_at = st["last_success"]
        .as_str()
        .expect("a last success")
        .to_string();
    assert_eq!(
        st["last_run"]["ended_at"].as_str(),
        Some(success_at.as_str())
    );
    let text = world.ok(&["status", "--job", "app"]);
    assert!(text.starts_with("job app: success\n"), "{text}");
    assert!(text.contains(&format!("  snapshot      {id}\n")), "{text}");
    assert!(text.contains("  snapshots     local 1\n"), "{text}");
    assert!(text.contains("  last verify   never\n"), "{text}");

    // After a failure: the source path is gone.
    std::fs::rename(&data, world.path("data.moved")).expect("move the source away");
    world.expect(&["backup", "app"], 1);
    let st = status_of(&world);
    assert_eq!(st["last_run"]["outcome"], "failed", "{st}");
    let error = st["last_run"]["error"].as_str().expect("an error");
    assert!(error.contains(&data.display().to_string()), "{error}");
    assert_eq!(st["last_success"].as_str(), Some(success_at.as_str()));
    assert_eq!(st["runs"]["failed"], 1, "{st}");
    let text = world.ok(&["status"]);
    assert!(text.starts_with("job app: failed\n"), "{text}");
    assert!(
        text.contains(&format!(
            "  error         source storage: {}",
            data.display()
        )),
        "{text}"
    );
    assert!(
        !text.contains("  snapshot  "),
        "a failed run's id is no snapshot: {text}"
    );

    // After a deep verify (the World's identity file is there).
    std::fs::rename(world.path("data.moved"), &data).expect("move the source back");
    world.ok(&["verify", "--job", "app"]);
    let st = status_of(&world);
    assert_eq!(st["last_verify"]["mode"], "deep", "{st}");
    assert_eq!(st["last_verify"]["ok"], true, "{st}");
    assert!(st["last_deep_verify_success"].is_string(), "{st}");
    let text = world.ok(&["status"]);
    assert!(text.contains(": deep, ok\n"), "{text}");
    assert!(text.contains("  deep verify   last success 20"), "{text}");
}

#[test]
fn a_damaged_status_file_is_said_and_shown_as_never_run() {
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    world.write_config(&dir_source("storage", &data, ""));
    world.backup();
    std::fs::write(world.path("state/status/app.json"), b"{\"runs\": 7").expect("damage");
    let out = world.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("status/app.json is not a coffer status file"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("job app: never run"),
        "{out:?}"
    );
}

#[test]
fn stats_count_what_the_target_holds_and_with_the_identity_the_dedup() {
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    world.write_config(&dir_source("storage", &data, ""));
    let err = world.run(&["stats", "--job", "nope"]);
    assert_eq!(err.status.code(), Some(2), "{err:?}");
    assert!(String::from_utf8_lossy(&err.stderr).contains("no job \"nope\""));
    backup_run(&world);
    backup_run(&world);
    let ids = world.snapshots();
    assert_eq!(ids.len(), 2);

    // Without a private key: no identity file on this host.
    let hidden = world.path("identity.away");
    std::fs::rename(&world.identity, &hidden).expect("hide the identity");
    let s = stats_of(&world);
    let packs_dir = world.target().join("app/packs");
    let (packs, pack_bytes) = sizes_in(&packs_dir, |n| n.ends_with(".tar.zst.age"));
    assert!(packs > 0 && pack_bytes > 0);
    let mut objects = (0, 0);
    for id in &ids {
        let (c, b) = sizes_in(&world.snapshot_dir(id), |n| n != "snapshot.json");
        objects = (objects.0 + c, objects.1 + b);
    }
    assert_eq!(n(&s, "snapshots"), 2, "{s}");
    assert_eq!(n(&s, "untrusted_snapshots"), 0, "{s}");
    assert_eq!(
        (n(&s, "packs"), n(&s, "pack_bytes")),
        (packs, pack_bytes),
        "{s}"
    );
    assert_eq!((n(&s, "objects"), n(&s, "object_bytes")), objects, "{s}");
    assert_eq!(n(&s, "stored_bytes"), pack_bytes + objects.1, "{s}");
    assert_eq!(n(&s, "dead_bytes"), 0, "both snapshots use every file: {s}");
    assert_eq!(n(&s, "unreferenced_packs"), 0, "{s}");
    assert!(
        s.get("logical").is_none(),
        "no identity, no logical size: {s}"
    );

    // A pack no marker lists (a killed run's, say) is unreferenced, at its size.
    let first_pack = std::fs::read_dir(&packs_dir)
        .expect("packs")
        .flatten()
        .next()
        .expect("a pack")
        .path();
    let stray = packs_dir.join(format!("{}.tar.zst.age", "f".repeat(32)));
    std::fs::copy(&first_pack, &stray).expect("copy a pack");
    let stray_len = std::fs::metadata(&stray).expect("stray").len();
    let s = stats_of(&world);
    assert_eq!(
        (n(&s, "unreferenced_packs"), n(&s, "unreferenced_bytes")),
        (1, stray_len),
        "{s}"
    );
    assert_eq!(
        n(&s, "pack_bytes"),
        pack_bytes,
        "a stray pack is not stored data: {s}"
    );
    std::fs::remove_file(&stray).expect("remove the stray pack");

    // With the identity: the files' sizes, twice, over what is stored once.
    std::fs::rename(&hidden, &world.identity).expect("bring the identity back");
    let s = stats_of(&world);
    let logical = &s["logical"];
    let tree = tree_bytes(&data);
    assert!(tree > 0);
    assert_eq!(n(logical, "newest_bytes"), tree, "{s}");
    assert_eq!(n(logical, "all_bytes"), 2 * tree, "{s}");
    assert_eq!(logical["newest_snapshot"], ids[1].as_str(), "{s}");
    let ratio = logical["dedup_ratio"].as_f64().expect("a ratio");
    let expected = (2 * tree) as f64 / n(&s, "stored_bytes") as f64;
    assert!(ratio > 1.0, "two backups of the same data dedup: {s}");
    assert!((ratio - expected).abs() < 1e-9, "{ratio} vs {expected}");
    let text = world.ok(&["stats"]);
    let header = text.lines().next().expect("a header");
    assert!(
        header.starts_with("job  target  snapshots") && header.ends_with("all snapshots  dedup"),
        "{text}"
    );
    assert!(text.contains(&format!("{ratio:.2}x")), "{text}");
    let row = text.lines().nth(1).expect("a row");
    assert!(row.starts_with("app  local "), "{text}");
    assert_eq!(
        header.len(),
        row.len(),
        "the columns line up (right-aligned numbers end together):\n{text}"
    );
    assert_eq!(FILES, 12);
}

#[test]
fn stats_leave_out_a_snapshot_no_trusted_key_signed_and_count_dead_bytes_as_prune_does() {
    let world = World::new("");
    let data = world.path("data");
    make_tree(&data);
    world.write_config(&format!(
        "retention = {{ keep_last = 1 }}\n{}",
        dir_source("storage", &data, "")
    ));
    backup_run(&world);
    let before = stats_of(&world);

    // A copy of the snapshot, claiming a huge pack, signed by someone else.
    let real = world.snapshots().pop().expect("a snapshot");
    let planted = "20990101T000000Z-beef";
    sh(&format!(
        "cp -a '{}' '{}'",
        world.snapshot_dir(&real).display(),
        world.snapshot_dir(planted).display()
    ));
    let mut f = forge::Forgery::of(&world, planted);
    f.marker["id"] = planted.into();
    f.manifest["snapshot"] = planted.into();
    for p in f.marker["packs"].as_array_mut().expect("packs") {
        p["stored_size"] = (1u64 << 40).into();
    }
    f.save_signed_by_stranger();
    let s = stats_of(&world);
    assert_eq!(n(&s, "untrusted_snapshots"), 1, "{s}");
    for key in [
        "snapshots",
        "packs",
        "pack_bytes",
        "objects",
        "object_bytes",
    ] {
        assert_eq!(s[key], before[key], "{key}: {s} vs {before}");
    }
    assert_eq!(
        s["logical"]["all_bytes"], before["logical"]["all_bytes"],
        "the planted manifest is not read: {s}"
    );
    let text = world.ok(&["stats"]);
    assert!(
        text.contains("1 snapshot not signed by a trusted key left out"),
        "{text}"
    );
    std::fs::remove_dir_all(world.snapshot_dir(planted)).expect("remove the planted one");

    // Half the files go; the next backup's retention forgets the snapshot that
    // used them: what the kept one leaves unused in the packs is dead, and stats
    // says what the backup's prune wrote into the status (the metrics' number).
    for i in (0..FILES).step_by(2) {
        std::fs::remove_file(data.join(format!("d{}/f{i:02}", i % 3))).expect("rm");
    }
    backup_run(&world);
    assert_eq!(world.snapshots().len(), 1);
    let s = stats_of(&world);
    let dead = n(&s, "dead_bytes");
    assert!(dead > 0 && dead < n(&s, "pack_bytes"), "{s}");
    let status: Value =
        json(&std::fs::read_to_string(world.path("state/status/app.json")).expect("status file"));
    assert_eq!(
        status["dead_bytes"]["local"].as_u64(),
        Some(dead),
        "{status}"
    );
}
