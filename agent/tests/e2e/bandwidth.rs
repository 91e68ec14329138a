//! `limit_upload`: a target's writes stay under its rate, for a local directory and
//! for a real S3 server (s3s-fs on loopback), and nonsense rates are refused naming
//! the key. Only the lower bound is asserted (the run was not faster than the
//! limit allows), which holds on a loaded machine; the figures are printed
//! (`--nocapture`) to see how close to the limit the upload ran.

use crate::common::s3::S3Server;
use crate::common::*;
use serde_json::Value;
use std::time::Instant;

const MIB: u64 = 1 << 20;
/// The bucket's saved burst: a quarter of a second at the rate (plugins/src/targets/throttle.rs).
const BURST_SECONDS: f64 = 0.25;

/// Backs up job `job` and returns (seconds, bytes written to its one target).
fn timed_backup(world: &World, job: &str) -> (f64, u64) {
    let start = Instant::now();
    let out = world.ok(&["backup", job, "--json"]);
    let seconds = start.elapsed().as_secs_f64();
    let run: Value = serde_json::from_str(&out).expect("backup json");
    assert_eq!(run[0]["status"], "success", "{run}");
    let written: u64 = run[0]["targets"][0]["uploads"]
        .as_array()
        .expect("uploads")
        .iter()
        .map(|u| u["bytes"].as_u64().expect("bytes"))
        .sum();
    (seconds, written)
}

#[test]
fn uploads_to_local_and_s3_targets_stay_under_limit_upload() {
    let s3 = S3Server::start(&["coffer-limit"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    // Incompressible: what is stored is what is read.
    std::fs::write(src.join("noise.bin"), noise(64 * MIB as usize, 11)).expect("write");
    let world = World::new("");
    let secret = s3.secret_file(tmp.path());
    let rate = 8 * MIB;
    let targets = format!(
        "{}\n[jobs.to-local]\ntargets = [\"local\"]\n{}\n[jobs.to-s3]\ntargets = [\"s3\"]\n{}",
        s3.target_toml("s3", "coffer-limit", &secret, "limit_upload = \"8MiB/s\"\n"),
        dir_source("data", &src, "").replace("jobs.app", "jobs.to-local"),
        dir_source("data", &src, "").replace("jobs.app", "jobs.to-s3"),
    );
    world.write_config_with(&targets, &["local"], &dir_source("data", &src, ""));
    let text = std::fs::read_to_string(&world.config).expect("config");
    // The local target gets the same limit.
    let text = text.replacen(
        "[targets.local]\ntype = \"local\"\n",
        "[targets.local]\ntype = \"local\"\nlimit_upload = \"8MiB/s\"\n",
        1,
    );
    std::fs::write(&world.config, text).expect("config");
    let check = world.ok(&["config", "check"]);
    assert!(check.contains("uploads at most 8.0 MiB/s"), "{check}");

    for job in ["to-local", "to-s3"] {
        let (seconds, written) = timed_backup(&world, job);
        assert!(written >= 64 * MIB, "{job}: wrote only {written} bytes");
        // The bucket grants bytes at the rate, after a burst saved while idle.
        let least = written as f64 / rate as f64 - BURST_SECONDS;
        eprintln!(
            "limit_upload {job}: {written} bytes in {seconds:.2} s = {:.2} MiB/s (limit 8 MiB/s, \
             no faster than {least:.2} s allowed)",
            written as f64 / seconds / MIB as f64
        );
        assert!(
            seconds >= least,
            "{job}: {written} bytes in {seconds:.2} s beats 8 MiB/s (at least {least:.2} s)"
        );
    }
}

#[test]
fn nonsense_rates_are_refused_naming_the_key() {
    let world = World::new(&dir_source("data", std::path::Path::new("/tmp"), ""));
    let good = std::fs::read_to_string(&world.config).expect("config");
    for (bad, says) in [
        ("0", "has no unit"),
        ("\"0MiB/s\"", "above 0"),
        ("\"-5MiB/s\"", "not a rate"),
        ("\"20/s\"", "has no unit"),
        ("\"20MiB\"", "not a rate"),
        ("20971520", "has no unit"),
    ] {
        let text = good.replacen(
            "[targets.local]\ntype = \"local\"\n",
            &format!("[targets.local]\ntype = \"local\"\nlimit_upload = {bad}\n"),
            1,
        );
        std::fs::write(&world.config, text).expect("config");
        for args in [&["config", "check"][..], &["backup"][..]] {
            let out = world.run(args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{bad} {args:?}: {err}");
            assert!(
                err.contains("targets.local.limit_upload") && err.contains(says),
                "{bad}: {err}"
            );
        }
    }
}
