//! A small format-2 job for the tests of damaged packs and their repair: a tree of
//! a dozen files in three folders, backups as JSON reports, and what a report and
//! a marker say about packs.

use super::{World, noise};
use serde_json::Value;
use std::path::Path;

pub const FILES: u64 = 12;

/// `FILES` files of 2-98 KiB of noise in `d0`, `d1`, `d2` under `root`.
pub fn make_tree(root: &Path) {
    for i in 0..FILES {
        let path = root.join(format!("d{}/f{i:02}", i % 3));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, noise(2048 + (i as usize * 7919) % (96 << 10), i + 1))
            .expect("write");
    }
}

/// `backup --json` of job `app` (which must exit 0); its run.
pub fn backup_run(world: &World) -> Value {
    // Ids have one-second resolution: the next snapshot must sort after this one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = world.ok(&["backup", "app", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("backup json");
    v[0].clone()
}

/// The `packed` report of the run's one source.
pub fn packed(run: &Value) -> &Value {
    &run["sources"][0]["packed"]
}

/// (unchanged, known, new) files of the run's one source.
pub fn counts(run: &Value) -> (u64, u64, u64) {
    let p = packed(run);
    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {run}"));
    (n("unchanged_files"), n("known_files"), n("new_files"))
}

/// The marker inside the `snapshot.json` of snapshot folder `dir`.
fn marker_of(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("snapshot.json")).expect("marker");
    let v: Value = serde_json::from_str(&text).expect("marker json");
    v["marker"].clone()
}

/// The packs that hold snapshot `id`'s manifest (format 2 keeps it as chunks in
/// packs of its own), in the order of its chunks.
pub fn manifest_packs(world: &World, id: &str) -> Vec<String> {
    let mut packs = manifest_chunk_packs(&marker_of(&world.snapshot_dir(id)));
    assert!(!packs.is_empty(), "snapshot {id} has no manifest chunks");
    packs.dedup();
    packs
}

/// The pack ids snapshot `id` of job `app` on the local target lists for its
/// sources' contents (not the packs of its manifest: `manifest_packs`).
pub fn marker_packs(world: &World, id: &str) -> Vec<String> {
    let marker = marker_of(&world.snapshot_dir(id));
    let manifest = manifest_chunk_packs(&marker);
    marker["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_string())
        .filter(|p| !manifest.contains(p))
        .collect()
}

/// The packs a marker's manifest chunks are in (none for a manifest object).
pub fn manifest_chunk_packs(marker: &Value) -> Vec<String> {
    marker["manifest"]["chunks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["pack"].as_str().expect("pack").to_string())
                .collect()
        })
        .unwrap_or_default()
}
