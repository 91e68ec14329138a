//! A restore reads what it restores (issue 22): the files of a snapshot made over
//! several runs lie in several packs, and in path order a restore goes back and
//! forth between them. Each pack's reader must stay open across those switches,
//! or every switch fetches the age header again and decodes a frame from its
//! start: a 5.8 MB restore used to read 63 MiB.

use crate::common::*;
use serde_json::Value;

#[test]
fn a_restore_that_alternates_between_packs_reads_each_stored_byte_about_once() {
    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    world.write_config(&dir_source("files", &data, ""));
    let body = |i: u64| noise(20_000 + (i as usize * 3_001) % 40_000, i);
    // Odd files in the first run's pack, even ones in the second's: in path order
    // every file is in the other pack than the one before.
    for i in (1..240u64).step_by(2) {
        std::fs::write(data.join(format!("f{i:03}.bin")), body(i)).expect("write");
    }
    world.ok(&["backup", "app"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for i in (0..240u64).step_by(2) {
        std::fs::write(data.join(format!("f{i:03}.bin")), body(i)).expect("write");
    }
    world.ok(&["backup", "app"]);
    let list: Value =
        serde_json::from_str(&world.ok(&["list", "--job", "app", "--json"])).expect("json");
    let latest = list.as_array().and_then(|a| a.last()).expect("latest");
    let packs = latest["packs"].as_array().expect("packs");
    assert_eq!(packs.len(), 2, "{latest}");
    let stored: u64 = packs
        .iter()
        .map(|p| p["stored_size"].as_u64().expect("size"))
        .sum();
    let to = world.path("restored");
    let out = world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        to.to_str().expect("utf8"),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("restore json");
    let fetched = v["fetched_bytes"].as_u64().expect("fetched_bytes");
    for i in 0..240u64 {
        assert_eq!(
            std::fs::read(to.join(format!("files/f{i:03}.bin"))).expect("restored"),
            body(i)
        );
    }
    eprintln!("fetched {fetched} bytes for packs of {stored} stored bytes");
    assert!(
        fetched * 10 <= stored * 11,
        "read {fetched} bytes from the target for packs of {stored} stored bytes ({:.2}x)",
        fetched as f64 / stored as f64
    );
}
