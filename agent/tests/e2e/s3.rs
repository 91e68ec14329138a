//! S3 targets against a real S3-compatible server (s3s-fs on loopback): round trip
//! under a prefix, one run to a local and an S3 target with identical ciphertext,
//! growing parts within `max_parts`, a server killed mid-upload, a missing bucket
//! next to a working target (partial), and wrong credentials that are named but
//! never shown.

use crate::common::s3::{S3Server, files_under, same_files};
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const BUCKET: &str = "coffer-test";
const MIB: usize = 1 << 20;

/// A small tree: nested folders, text files and `big` bytes of noise.
fn make_tree(root: &Path, big: usize) {
    std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
    std::fs::write(root.join("hello.txt"), b"hello s3\n").expect("write");
    std::fs::write(root.join("a/b/nested.txt"), b"nested\n").expect("write");
    std::fs::write(root.join("a/empty"), b"").expect("write");
    if big > 0 {
        std::fs::write(root.join("a/noise.bin"), noise(big, 7)).expect("write");
    }
}

fn backup_json(world: &World, code: i32) -> Value {
    let out = world.expect(&["backup", "app", "--json"], code);
    let v: Value = serde_json::from_str(&out).expect("backup json");
    v[0].clone()
}

fn target_run<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["name"] == name)
        .expect("target in the run")
}

#[test]
fn round_trip_through_s3_under_a_prefix() {
    let s3 = S3Server::start(&[BUCKET]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, 12 * MIB);
    let mut world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));
    // Credentials from the standard environment variables this time.
    world.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), s3.secret_key.clone()),
    ];
    let target = format!(
        "[targets.s3]\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"/team/backups/\"\n\
         endpoint = \"{}\"\nallow_http = true\npart_size = \"5MiB\"\n",
        s3.endpoint()
    );
    world.write_config_with(
        &target,
        &["s3"],
        &format!("{FORMAT_1}{}", dir_source("data", &src, "")),
    );

    let run = backup_json(&world, 0);
    assert_eq!(run["status"], "success", "{run}");
    let id = run["snapshot"].as_str().expect("id").to_string();
    // 12 MiB of noise in 5 MiB parts: three parts, as the server also says.
    let data_upload = &target_run(&run, "s3")["uploads"][0];
    assert_eq!(data_upload["key"], "data.tar.zst.age");
    assert_eq!(data_upload["parts"], 3, "{run}");
    let key = format!("team/backups/app/{id}/data.tar.zst.age");
    assert!(
        s3.etag(BUCKET, &key).ends_with("-3\""),
        "{}",
        s3.etag(BUCKET, &key)
    );

    // Everything is under the prefix, and only the three objects of the snapshot.
    let stored = files_under(&s3.bucket_dir(BUCKET));
    let want: Vec<String> = ["data.tar.zst.age", "manifest.json.zst.age", "snapshot.json"]
        .iter()
        .map(|k| format!("team/backups/app/{id}/{k}"))
        .collect();
    assert_eq!(stored, want);
    assert!(
        s3.pending_uploads().is_empty(),
        "{:?}",
        s3.pending_uploads()
    );

    assert_eq!(world.snapshots(), vec![id.clone()]);
    let out = world.ok(&["verify", "--job", "app", "--stored-only"]);
    assert!(out.contains("stored bytes only"), "{out}");
    let out = world.ok(&["verify", "--job", "app"]);
    assert!(out.contains("decrypted"), "{out}");

    let to = tmp.path().join("restored");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        to.to_str().expect("utf8"),
    ]);
    same_files(&src, &to.join("data"));
    world.ok(&[
        "check",
        "--job",
        "app",
        "--path",
        to.join("data").to_str().expect("utf8"),
    ]);

    // The bytes come from the server: damage them there and verify sees it.
    let obj = s3.bucket_dir(BUCKET).join(&key);
    let mut bytes = std::fs::read(&obj).expect("read object");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&obj, bytes).expect("damage object");
    let out = world.expect(&["verify", "--job", "app", "--stored-only"], 3);
    assert!(out.contains("do not match snapshot.json"), "{out}");
}

#[test]
fn one_run_ships_identical_ciphertext_to_local_and_s3() {
    let s3 = S3Server::start(&[BUCKET]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, 7 * MIB);
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));
    let secret = s3.secret_file(tmp.path());
    let target = s3.target_toml("s3", BUCKET, &secret, "prefix = \"copy\"\n");
    world.write_config_with(&target, &["local", "s3"], &dir_source("data", &src, ""));

    let run = backup_json(&world, 0);
    assert_eq!(run["status"], "success", "{run}");
    let id = run["snapshot"].as_str().expect("id").to_string();
    let local_dir = world.snapshot_dir(&id);
    let s3_dir = s3.bucket_dir(BUCKET).join("copy/app").join(&id);
    // Same objects, byte for byte: compressed and encrypted once, shipped twice.
    same_files(&local_dir, &s3_dir);
    let marker: Value =
        serde_json::from_slice(&std::fs::read(local_dir.join("snapshot.json")).expect("marker"))
            .expect("marker json");
    // snapshot.json is the signed envelope {marker, signer, signature}.
    for o in marker["marker"]["objects"].as_array().expect("objects") {
        let key = o["key"].as_str().expect("key");
        let hash = blake3::hash(&std::fs::read(s3_dir.join(key)).expect("object"));
        assert_eq!(o["blake3"], hash.to_hex().as_str(), "{key}");
    }

    let listed = world.ok(&["list", "--job", "app", "--json"]);
    let rows: Value = serde_json::from_str(&listed).expect("list json");
    let mut targets: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            assert_eq!(r["id"], id.as_str());
            r["target"].as_str().expect("target")
        })
        .collect();
    targets.sort();
    assert_eq!(targets, ["local", "s3"]);

    // `--target` picks the copy; both restore the same tree.
    for t in ["local", "s3"] {
        let to = tmp.path().join(format!("from-{t}"));
        let out = world.ok(&[
            "restore",
            "--job",
            "app",
            "--target",
            t,
            "--to",
            to.to_str().expect("utf8"),
            "--json",
        ]);
        let v: Value = serde_json::from_str(&out).expect("restore json");
        assert_eq!(v["target"], t);
        same_files(&src, &to.join("data"));
    }
    world.ok(&["verify", "--job", "app", "--target", "s3"]);
}

#[test]
fn parts_grow_so_an_object_never_needs_more_than_max_parts() {
    let s3 = S3Server::start(&[BUCKET]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, 40 * MIB);
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));
    let secret = s3.secret_file(tmp.path());
    let limits =
        |max: u32| format!("part_size = \"5MiB\"\nmax_parts = {max}\nparts_in_flight = 2\n");

    // Four parts of 5, 10, 20 and (the rest of) 40 MiB hold 40 MiB of noise;
    // fixed 5 MiB parts would need nine.
    let target = s3.target_toml("s3", BUCKET, &secret, &limits(4));
    world.write_config_with(
        &target,
        &["s3"],
        &format!("{FORMAT_1}{}", dir_source("data", &src, "")),
    );
    let run = backup_json(&world, 0);
    assert_eq!(run["status"], "success", "{run}");
    let id = run["snapshot"].as_str().expect("id").to_string();
    let up = &target_run(&run, "s3")["uploads"][0];
    assert_eq!(up["parts"], 4, "{run}");
    assert_eq!(up["largest_part"], 20 * MIB, "{run}");
    let stored = run["sources"][0]["stored_size"].as_u64().expect("size");
    assert_eq!(up["bytes"], stored);
    let etag = s3.etag(BUCKET, &format!("app/{id}/data.tar.zst.age"));
    assert!(etag.ends_with("-4\""), "server says {etag}");
    world.ok(&["verify", "--job", "app"]);

    // Three parts (35 MiB) cannot: the run fails, says what to change, the upload
    // is aborted on the server, and the object a second, small source completed
    // under the prefix meanwhile is removed again.
    let small = tmp.path().join("small");
    make_tree(&small, 0);
    let target = s3.target_toml(
        "s3",
        BUCKET,
        &secret,
        &format!("{}prefix = \"p\"\n", limits(3)),
    );
    let sources = format!(
        "{FORMAT_1}{}{}",
        dir_source("data", &src, ""),
        dir_source("small", &small, "")
    );
    world.write_config_with(&target, &["s3"], &sources);
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target s3") && err.contains("raise part_size or max_parts"),
        "{err}"
    );
    assert!(
        s3.pending_uploads().is_empty(),
        "{:?}",
        s3.pending_uploads()
    );
    assert!(world.snapshots().is_empty());
    let left: Vec<String> = files_under(&s3.bucket_dir(BUCKET))
        .into_iter()
        .filter(|f| !f.starts_with(&format!("app/{id}/")))
        .collect();
    assert!(left.is_empty(), "the failed run left {left:?}");
}

#[test]
fn a_server_killed_mid_upload_fails_the_run_cleanly_and_the_next_run_works() {
    let mut s3 = S3Server::start(&[BUCKET]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, 160 * MIB);
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));
    let secret = s3.secret_file(tmp.path());
    // Few, quick retries: the test waits for them to run out.
    let target = s3.target_toml(
        "s3",
        BUCKET,
        &secret,
        "part_size = \"5MiB\"\nmax_retries = 2\nretry_timeout = \"2s\"\n",
    );
    world.write_config_with(
        &target,
        &["s3"],
        &format!("{FORMAT_1}{}", dir_source("data", &src, "")),
    );

    let mut child = world
        .command(&["backup", "app"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn backup");
    let start = Instant::now();
    while s3.pending_uploads().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no upload started"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the backup ended before the server could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    s3.kill();
    let out = wait_with_timeout(child, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("target s3") && err.contains(&format!("bucket {BUCKET}")),
        "{err}"
    );

    s3.restart();
    assert!(world.snapshots().is_empty(), "a failed run is listed");
    // Nothing became an object: the unfinished upload is invisible to listings.
    let objects = files_under(&s3.bucket_dir(BUCKET));
    assert!(objects.is_empty(), "{objects:?}");

    let run = backup_json(&world, 0);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(world.snapshots().len(), 1);
    world.ok(&["verify", "--job", "app", "--stored-only"]);
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().expect("poll").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the backup did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_missing_bucket_fails_that_target_and_the_other_commits() {
    let s3 = S3Server::start(&[BUCKET]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, MIB);
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));
    let secret = s3.secret_file(tmp.path());
    let target = s3.target_toml("offsite", "no-such-bucket", &secret, "");
    world.write_config_with(
        &target,
        &["local", "offsite"],
        &dir_source("data", &src, ""),
    );

    let run = backup_json(&world, 1);
    assert_eq!(run["status"], "partial", "{run}");
    let id = run["snapshot"].as_str().expect("id");
    assert_eq!(target_run(&run, "local")["committed"], true);
    let failed = target_run(&run, "offsite");
    assert_eq!(failed["committed"], false);
    let why = failed["error"].as_str().expect("error");
    assert!(
        why.contains("target offsite") && why.contains("bucket no-such-bucket not found"),
        "{why}"
    );
    // The human output names the failing target too.
    let out = world.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PARTIAL"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("target offsite: FAILED"));

    let listed = world.ok(&["list", "--job", "app", "--target", "local", "--json"]);
    assert!(listed.contains(id), "{listed}");
    // Listing every target shows what the good one holds and fails on the other.
    let out = world.run(&["list", "--job", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target offsite") && err.contains("not found"),
        "{err}"
    );
    world.ok(&["verify", "--job", "app", "--target", "local"]);
}

#[test]
fn wrong_credentials_are_named_and_the_secret_never_shown() {
    let s3 = S3Server::start(&[BUCKET]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, MIB);
    let mut world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));
    let wrong = format!("wrong-{}", s3.secret_key);
    let secret = tmp.path().join("wrong-secret");
    std::fs::write(&secret, &wrong).expect("write");
    let target = s3.target_toml("s3", BUCKET, &secret, "");
    world.write_config_with(
        &target,
        &["s3"],
        &format!("{FORMAT_1}{}", dir_source("data", &src, "")),
    );
    // Everything coffer and its libraries would log.
    world.env = vec![("COFFER_LOG".into(), "trace".into())];

    for args in [
        &["backup", "app"][..],
        &["list", "--job", "app"][..],
        &["verify", "--job", "app", "--stored-only"][..],
        &["config", "check"][..],
    ] {
        let out = world.run(args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(&wrong), "{args:?} shows the secret");
        assert!(!all.contains(&s3.secret_key), "{args:?} shows a secret");
        if args[0] == "config" {
            assert_eq!(out.status.code(), Some(0), "{all}");
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(
            all.contains("target s3")
                && all.contains(&format!("bucket {BUCKET}"))
                && all.contains("check the credentials"),
            "{args:?}: {all}"
        );
    }
    assert!(files_under(&s3.bucket_dir(BUCKET)).is_empty());
}

#[test]
fn sigterm_aborts_the_multipart_upload_and_leaves_no_snapshot() {
    let s3 = S3Server::start(&[BUCKET]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, 160 * MIB);
    let world = World::new(&format!("{FORMAT_1}{}", dir_source("data", &src, "")));
    let secret = s3.secret_file(tmp.path());
    let target = s3.target_toml("s3", BUCKET, &secret, "part_size = \"5MiB\"\n");
    world.write_config_with(&target, &["local", "s3"], &dir_source("data", &src, ""));

    let child = world
        .command(&["backup", "app"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn backup");
    let start = Instant::now();
    // Wait until a part has reached the server, then stop the run as systemd would.
    while !s3.pending_uploads().iter().any(|f| f.contains(".part-")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no part uploaded"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stopped by a signal"), "{err}");
    // Aborted on the server: no parts kept, nothing visible, nothing listed.
    assert!(
        s3.pending_uploads().is_empty(),
        "{:?}",
        s3.pending_uploads()
    );
    assert!(files_under(&s3.bucket_dir(BUCKET)).is_empty());
    assert!(
        files_under(&world.target()).is_empty(),
        "local target keeps files"
    );
    assert!(world.snapshots().is_empty());
}
