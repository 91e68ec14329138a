//! A restore reads what it restores (issue 22): the files of a snapshot made over
//! several runs lie in several packs, and in path order a restore goes back and
//! forth between them. Each pack's reader must stay open across those switches,
//! or every switch fetches the age header again and decodes a frame from its
//! start: a 5.8 MB restore used to read 63 MiB.
//!
//! The 20-run tests count what the restore process read with the kernel's help
//! (strace: bytes returned by read calls on the target's files, or received from
//! the S3 server), not with coffer's own counter, and compare it with the least
//! the format allows (`pack_parts`): with 4 packs kept open such a restore read
//! 3.6 times that; fetch windows running past the last needed file of a pack,
//! and seeks back behind the last window, cost another 6-11 %.

use crate::common::s3::{S3Server, files_under};
use crate::common::*;
use serde_json::Value;
use std::path::Path;

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
    // The packs of the files (the manifest's own pack aside).
    let manifest = crate::common::packed_job::manifest_chunk_packs(latest);
    let packs: Vec<&Value> = latest["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .filter(|p| !manifest.iter().any(|m| p["id"] == m.as_str()))
        .collect();
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

/// Files of the churned tree: `RUNS` backups, each adding, changing and deleting.
const RUNS: u64 = 20;
const FIRST_FILES: u64 = 150;
const ADDED: u64 = 8;
const CHANGED: u64 = 4;
const DELETED: u64 = 2;

/// A well-mixed 64-bit number from `seed` (splitmix64), for names and sizes.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes a file of 20-200 kB of noise at a name that sorts anywhere among the
/// others, so that in path order a restore moves between the packs of all runs.
fn add_file(data: &Path, seed: u64) {
    let h = mix(seed);
    let path = data.join(format!("d{}/{h:016x}.bin", h % 6));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let size = 20_000 + (mix(h) % 180_000) as usize;
    std::fs::write(&path, noise(size, h)).expect("write");
}

/// Run `run` of the churn: the first writes the tree, each later one adds,
/// changes (new content and size) and deletes a few files picked across it. Each
/// also writes a big file of 1.5-3 MB, first (`a/`) or last (`z/`) in its pack, and
/// deletes the one from two runs before: an older pack then holds whole frames a
/// restore of the latest snapshot must not read.
fn churn(data: &Path, run: u64) {
    let big = |r: u64| data.join(format!("{}/big{r:02}.bin", ["a", "z"][r as usize % 2]));
    std::fs::create_dir_all(big(run).parent().expect("parent")).expect("mkdir");
    std::fs::write(
        big(run),
        noise(1_500_000 + (mix(run) % 1_500_000) as usize, run),
    )
    .expect("write");
    if run >= 2 {
        std::fs::remove_file(big(run - 2)).expect("remove an old big file");
    }
    if run == 0 {
        (0..FIRST_FILES).for_each(|i| add_file(data, i));
        return;
    }
    let files: Vec<String> = files_under(data)
        .into_iter()
        .filter(|f| f.starts_with('d'))
        .collect();
    for k in 0..CHANGED + DELETED {
        let pick = &files[(mix(run * 100 + k) % files.len() as u64) as usize];
        let path = data.join(pick);
        if k < CHANGED {
            let seed = mix(run * 1000 + k);
            std::fs::write(&path, noise(20_000 + (seed % 180_000) as usize, seed)).expect("write");
        } else {
            // A file picked twice is gone already.
            let _ = std::fs::remove_file(&path);
        }
    }
    (0..ADDED).for_each(|k| add_file(data, 1_000_000 + run * 100 + k));
}

/// Makes job `app` `RUNS` snapshots old, then restores its latest snapshot and the
/// middle one under strace and compares what was read from the target with what
/// the restore needs. `objects` is where the target keeps the job's objects (for
/// working out what is needed), `watched` and `port` where the restore reads them.
fn twenty_runs_then_restores(world: &World, objects: &Path, watched: &Path, port: Option<u16>) {
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for run in 0..RUNS {
        churn(&data, run);
        // Ids have one-second resolution: the next snapshot must sort after this one.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        world.ok(&["backup", "app"]);
    }
    let ids = world.snapshots();
    assert_eq!(ids.len(), RUNS as usize);
    let where_ = if port.is_some() { "s3" } else { "local" };
    for (which, id) in [("latest", &ids[ids.len() - 1]), ("10th", &ids[9])] {
        let need = pack_parts::needed(world, objects, id, "files");
        let to = world.path(&format!("restored-{which}"));
        let (out, reads) = kernel_reads::traced(
            world,
            &[
                "restore",
                "--job",
                "app",
                "--snapshot",
                id,
                "--to",
                to.to_str().expect("utf8"),
                "--json",
            ],
            watched,
            port,
        );
        let v: Value = serde_json::from_str(&out).expect("restore json");
        let fetched = v["fetched_bytes"].as_u64().unwrap_or(0);
        if which == "latest" {
            // The cost of keeping many packs open, for the record (GNU time).
            let again = world.path("restored-again");
            let args = ["restore", "--job", "app", "--snapshot", id, "--to"];
            let again = again.to_str().expect("utf8");
            let (kib, code, text) = rss::peak_rss(world, &[&args[..], &[again]].concat());
            assert_eq!(code, Some(0), "{text}");
            eprintln!("{where_}, {which} snapshot: restore's peak RSS {kib} KiB");
            for f in files_under(&data) {
                let (got, want) = (to.join("files").join(&f), data.join(&f));
                assert!(
                    std::fs::read(got).expect("restored") == std::fs::read(want).expect("original"),
                    "{f} differs"
                );
            }
        }
        // Locally: bytes read from files under the target (packs, manifest,
        // markers); from S3: bytes received from the server, HTTP headers included.
        let (read, fetches, requests) = match port {
            Some(_) => {
                let gets = reads.requests.values().sum::<u64>();
                (
                    reads.tcp,
                    reads.requests.get("GET").copied().unwrap_or(0),
                    gets,
                )
            }
            None => (reads.file_bytes("/"), reads.file_opens("/packs/"), 0),
        };
        // Besides packs a restore reads the manifest and every marker, and on S3
        // each response's headers and the listing (measured: about 250 bytes per
        // request; 1 KiB allowed).
        let allowance = need.manifest + need.markers + requests * 1024;
        let per_pack: Vec<String> = need
            .per_pack
            .iter()
            .map(|(pack, (n, whole, files))| {
                format!(
                    "pack {pack}: {files} files, {n} of {whole} bytes needed, {} read",
                    reads.file_bytes(pack)
                )
            })
            .collect();
        eprintln!(
            "{where_}, {which} snapshot: {} bytes in {} files from {} packs ({} bytes stored); \
             needed {} bytes; read {read} ({:.3}x needed, {:.3}x restored), {fetches} pack \
             fetches; coffer counted {fetched}; allowance {allowance} (manifest {}, markers {}, \
             {requests} requests)",
            need.restored,
            need.files,
            need.packs,
            need.packs_stored,
            need.stored,
            read as f64 / need.stored as f64,
            read as f64 / need.restored as f64,
            need.manifest,
            need.markers,
        );
        assert!(
            read * 10 <= need.stored * 11 + allowance * 10,
            "{where_}, {which} snapshot: read {read} bytes from the target for {} needed ({:.2}x) \
             and {allowance} allowed besides:\n{}",
            need.stored,
            read as f64 / need.stored as f64,
            per_pack.join("\n")
        );
    }
}

#[test]
fn a_restore_20_snapshots_old_reads_about_what_it_needs_locally() {
    require_root("restores owners");
    let world = World::new("");
    world.write_config(&dir_source("files", &world.path("data"), ""));
    twenty_runs_then_restores(&world, &world.target(), &world.target(), None);
}

#[test]
fn a_restore_20_snapshots_old_reads_about_what_it_needs_from_s3() {
    require_root("restores owners");
    let s3 = S3Server::start(&["bucket"]);
    let world = s3.files_world();
    let objects = s3.bucket_dir("bucket").join("f2");
    twenty_runs_then_restores(&world, &objects, &world.target(), Some(s3.port));
}
