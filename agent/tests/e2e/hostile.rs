//! Hostile snapshots: whoever can write to a target (a shared bucket, a NAS) can
//! plant folders, markers, manifests and objects, encrypted to the public
//! recipients. None of it may write outside the restore destination, be restored
//! without a trusted signature, or make coffer use unbounded memory or disk.

use crate::common::forge::Forgery;
use crate::common::rss::{BOMB_RSS_KIB, peak_rss};
use crate::common::servers::Postgres;
use crate::common::*;
use std::path::Path;

fn files_world() -> (World, tempfile::TempDir, String) {
    files_world_in("")
}

/// `files_world` with job keys (`FORMAT_1`) before the sources.
fn files_world_in(job_keys: &str) -> (World, tempfile::TempDir, String) {
    require_tool("age");
    require_tool("zstd");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"hello").expect("write");
    let cmd = "[[jobs.app.sources]]\nname = \"dump\"\ntype = \"command\"\ncommand = [\"printf\", \"dumped\"]\nextension = \"txt\"\n";
    let world = World::new(&format!("{job_keys}{}{cmd}", dir_source("files", &src, "")));
    let id = world.backup();
    (world, tmp, id)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).map_or(true, |mut d| d.next().is_none())
}

/// Renames source `from` to `to` in the manifest and the marker.
fn rename_source(f: &mut Forgery<'_>, from: &str, to: &str) {
    for s in f.manifest["sources"].as_array_mut().expect("sources") {
        if s["name"] == from {
            s["name"] = to.into();
        }
    }
    for o in f.marker["objects"].as_array_mut().expect("objects") {
        if o["source"] == from {
            o["source"] = to.into();
        }
    }
}

#[test]
fn names_from_a_snapshot_cannot_leave_the_restore_directory() {
    let (world, tmp, id) = files_world();
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(victim.join("precious"), b"keep").expect("write");
    let dest = tmp.path().join("a/b/dest");
    std::fs::create_dir_all(&dest).expect("mkdir");
    let absolute = victim.display().to_string();
    for (source, evil) in [
        ("files", "../../../victim"),
        ("files", absolute.as_str()),
        ("dump", "../../../victim"),
        ("dump", absolute.as_str()),
    ] {
        // Start from the real snapshot each time.
        let good = world.snapshot_dir(&id);
        let copy = tmp.path().join("good-copy");
        if !copy.exists() {
            sh(&format!("cp -a '{}' '{}'", good.display(), copy.display()));
        }
        sh(&format!(
            "rm -rf '{g}' && cp -a '{c}' '{g}'",
            g = good.display(),
            c = copy.display()
        ));
        let mut f = Forgery::of(&world, &id);
        rename_source(&mut f, source, evil);
        f.save_unsigned();
        for force in [false, true] {
            let mut args = vec![
                "restore",
                "--job",
                "app",
                "--allow-unsigned",
                "--to",
                dest.to_str().expect("utf8"),
            ];
            if force {
                args.push("--force");
            }
            let out = world.run(&args);
            assert_ne!(
                out.status.code(),
                Some(0),
                "{source} as {evil:?}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("is not a name coffer accepts")
                    || stderr(&out).contains("not a name coffer writes"),
                "{source} as {evil:?}: {}",
                stderr(&out)
            );
            assert_eq!(
                std::fs::read(victim.join("precious")).expect("victim kept"),
                b"keep",
                "{source} as {evil:?}"
            );
            assert_eq!(
                std::fs::read_dir(&victim).expect("ls").count(),
                1,
                "nothing written into the victim directory"
            );
            assert!(is_empty_dir(&dest), "nothing written into the destination");
        }
    }
}

#[test]
fn unsigned_and_foreign_snapshots_are_refused_unless_trusted_explicitly() {
    let (world, tmp, id) = files_world();
    let dest = |n: &str| tmp.path().join(n).to_str().expect("utf8").to_string();
    // A genuine snapshot restores; list shows it signed by this host.
    world.ok(&["restore", "--job", "app", "--to", &dest("genuine")]);
    let listed = world.ok(&["list", "--job", "app", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(rows[0]["signature"], "signed", "{listed}");

    // The same content without a signature.
    Forgery::of(&world, &id).save_unsigned();
    let out = world.run(&["restore", "--job", "app", "--to", &dest("unsigned")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unsigned (by a coffer older than 0.2, or by anyone"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new(&dest("unsigned")).exists());
    for args in [
        &["verify", "--job", "app"][..],
        &["verify", "--job", "app", "--stored-only"][..],
    ] {
        let out = world.run(args);
        assert_ne!(
            out.status.code(),
            Some(0),
            "{args:?} accepted an unsigned snapshot"
        );
    }
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--allow-unsigned",
        "--to",
        &dest("allowed"),
    ]);

    // Signed, but by a key nobody trusts.
    let stranger = Forgery::of(&world, &id).save_signed_by_stranger();
    let out = world.run(&["restore", "--job", "app", "--to", &dest("foreign")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // One error that shows what the key signed, not a key to paste blindly.
    assert!(
        stderr(&out).contains("no accepted snapshot")
            && stderr(&out).contains(&format!("{stranger} (NOT trusted): 1 snapshot, finished")),
        "{}",
        stderr(&out)
    );
    // --allow-unsigned is not a way around a foreign signature.
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--allow-unsigned",
        "--to",
        &dest("foreign2"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let listed = world.ok(&["list", "--job", "app"]);
    assert!(listed.contains("UNTRUSTED"), "{listed}");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--trust-signer",
        &stranger,
        "--to",
        &dest("trusted-now"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "trusting {stranger} for this command only (--trust-signer): on target"
        )) && stderr(&out).contains("it signed 1 snapshot of job app"),
        "what is trusted is shown first: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(tmp.path().join("trusted-now/files/a.txt")).expect("restored"),
        b"hello"
    );

    // A tampered signed marker is not a snapshot at all.
    let marker = world.snapshot_dir(&id).join("snapshot.json");
    let text = std::fs::read_to_string(&marker).expect("marker");
    std::fs::write(
        &marker,
        text.replacen("\"skew_seconds\": 0", "\"skew_seconds\": 1", 1),
    )
    .expect("write");
    let out = world.run(&["list", "--job", "app"]);
    assert!(
        stderr(&out).contains("does not verify") || !text.contains("\"skew_seconds\": 0"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn latest_is_the_newest_trusted_snapshot_and_misfiled_markers_are_ignored() {
    let (world, tmp, id) = files_world();
    // A forged snapshot with a newer id, in its own folder.
    let newer = "29990101T000000Z-beef";
    sh(&format!(
        "cp -a '{}' '{}'",
        world.snapshot_dir(&id).display(),
        world.snapshot_dir(newer).display()
    ));
    let mut f = Forgery::of(&world, newer);
    f.marker["id"] = newer.into();
    f.manifest["snapshot"] = newer.into();
    f.put_object("files.tar.zst.age", Some("files"), &[0u8; 1024]);
    f.save_unsigned();
    let dest = tmp.path().join("dest");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("skipping snapshot") && stderr(&out).contains(newer),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));

    // A genuine marker copied into another folder names its own folder: ignored.
    let other = "20200101T000000Z-0001";
    sh(&format!(
        "cp -a '{}' '{}'",
        world.snapshot_dir(&id).display(),
        world.snapshot_dir(other).display()
    ));
    let out = world.run(&["list", "--job", "app", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert!(!ids.contains(&other), "{ids:?}");
    assert!(
        stderr(&out).contains(other) && stderr(&out).contains("names snapshot"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_planted_marker_that_claims_to_finish_last_is_not_latest_and_not_counted() {
    // `latest` goes by the markers' `finished_at`: a marker nobody trusted can say
    // any time, so its time must decide nothing, for restore or for retention.
    let (world, tmp, first) = files_world_in("retention = { keep_last = 1 }\n");
    let src = tmp.path().join("files");
    std::fs::write(src.join("a.txt"), b"newer content").expect("write");
    let genuine = world.backup();
    assert_ne!(genuine, first);
    let future = "2999-01-01T00:00:00Z";
    // An unsigned one and one signed by a stranger, both with older ids (the id
    // no longer says what is latest) and both finished "in 2999".
    let mut planted = Vec::new();
    for (n, sign) in [(1, false), (2, true)] {
        let id = format!("20000101T000000Z-000{n}");
        sh(&format!(
            "cp -a '{}' '{}'",
            world.snapshot_dir(&genuine).display(),
            world.snapshot_dir(&id).display()
        ));
        let mut f = Forgery::of(&world, &id);
        f.marker["id"] = id.clone().into();
        f.manifest["snapshot"] = id.clone().into();
        f.marker["finished_at"] = future.into();
        f.put_object("dump.txt.zst.age", Some("dump"), b"planted");
        if sign {
            f.save_signed_by_stranger();
        } else {
            f.save_unsigned();
        }
        planted.push(id);
    }
    let listed = world.snapshots();
    assert!(
        planted
            .iter()
            .all(|p| listed[listed.len() - 2..].contains(p)),
        "list orders by the claimed time: {listed:?}"
    );
    let dest = tmp.path().join("dest");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&genuine));
    for p in &planted {
        assert!(
            stderr(&out).contains("skipping snapshot") && stderr(&out).contains(p.as_str()),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(
        std::fs::read(dest.join("files/a.txt")).expect("restored"),
        b"newer content"
    );
    assert_eq!(
        std::fs::read(dest.join("dump.txt")).expect("dump"),
        b"dumped"
    );

    // Retention counts only accepted snapshots: keep_last = 1 keeps the genuine
    // newest (the backup's own retention already forgot the first) and leaves
    // the planted ones alone.
    let pruned = world.ok(&["prune", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&pruned).expect("json");
    assert_eq!(v[0]["forgotten"], serde_json::json!([]), "{pruned}");
    let mut left = world.snapshots();
    left.sort();
    let mut expect = planted.clone();
    expect.push(genuine);
    expect.sort();
    assert_eq!(left, expect, "{pruned}");
    assert!(!left.contains(&first));
}

#[test]
fn bombs_stay_within_64_mib_and_the_manifest_size() {
    let (world, tmp, id) = files_world();

    // A 512 MiB snapshot.json (sparse: it costs the disk nothing).
    let fat = "20200202T000000Z-0002";
    std::fs::create_dir_all(world.snapshot_dir(fat)).expect("mkdir");
    sh(&format!(
        "truncate -s 512M '{}'",
        world.snapshot_dir(fat).join("snapshot.json").display()
    ));
    let (kib, code, err) = peak_rss(&world, &["list", "--job", "app"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        kib < BOMB_RSS_KIB,
        "list of a 512 MiB marker peaked at {kib} KiB"
    );
    assert!(err.contains(fat), "the fat marker is reported: {err}");
    std::fs::remove_dir_all(world.snapshot_dir(fat)).expect("rm");

    // A manifest holding one 300 MiB string, a few hundred KiB once compressed.
    let mut f = Forgery::of(&world, &id);
    let huge = world.path("huge.json");
    sh(&format!(
        "{{ printf '{{\"format\":1,\"snapshot\":\"{id}\",\"job\":\"app\",\"host\":\"h\",\"started_at\":\"2026-01-01T00:00:00Z\",\"skew_seconds\":0,\"sources\":[{{\"name\":\"'; head -c 300M /dev/zero | tr '\\0' a; printf '\"}}]}}'; }} | zstd -q -1 -c | age -r {} > '{}'",
        world.recipient,
        huge.display()
    ));
    let stored = std::fs::read(&huge).expect("bomb");
    assert!(
        stored.len() < 1 << 20,
        "the bomb is small: {}",
        stored.len()
    );
    f.marker["objects"]
        .as_array_mut()
        .expect("objects")
        .retain(|o| o["key"] != "manifest.json.zst.age");
    // The bomb is an object: the genuine manifest's chunks leave the marker.
    f.marker.as_object_mut().expect("marker").remove("manifest");
    f.marker["objects"]
        .as_array_mut()
        .expect("objects")
        .push(serde_json::json!({
            "key": "manifest.json.zst.age",
            "plaintext_size": 300u64 << 20,
            "stored_size": stored.len(),
            "blake3": blake3::hash(&stored).to_hex().to_string(),
        }));
    let marker = serde_json::to_vec(&f.marker).expect("json");
    std::fs::write(
        world.snapshot_dir(&id).join("manifest.json.zst.age"),
        &stored,
    )
    .expect("w");
    std::fs::write(world.snapshot_dir(&id).join("snapshot.json"), marker).expect("w");
    let dest = tmp.path().join("dest");
    let dest_s = dest.to_str().expect("utf8").to_string();
    for args in [
        vec![
            "restore",
            "--job",
            "app",
            "--allow-unsigned",
            "--to",
            &dest_s,
        ],
        vec!["verify", "--job", "app", "--allow-unsigned"],
    ] {
        let (kib, code, err) = peak_rss(&world, &args);
        assert_ne!(code, Some(0), "{args:?}: {err}");
        assert!(err.contains("without a quote"), "{args:?}: {err}");
        assert!(kib < BOMB_RSS_KIB, "{args:?} peaked at {kib} KiB");
    }
    assert!(is_empty_dir(&dest));
}

#[test]
fn an_archive_bomb_writes_no_more_than_the_manifest_declares() {
    let (world, tmp, id) = files_world_in(FORMAT_1);
    // The archive claims a.txt holds 1 GiB of zeros (the manifest says 5 bytes): a few
    // hundred KiB once compressed. (Huge long-name entries: tar_guard's unit tests.)
    let plant = world.path("bomb.tar.zst.age");
    sh(&format!(
        "python3 - <<'PY' | zstd -q -1 -c | age -r {r} > '{out}'
import sys, tarfile, io
w = sys.stdout.buffer
def hdr(name, size, kind=b'0'):
    h = tarfile.TarInfo(name); h.size = size; h.type = kind
    return h.tobuf(format=tarfile.GNU_FORMAT)
w.write(hdr('./', 0, tarfile.DIRTYPE))
w.write(hdr('a.txt', 1 << 30))
chunk = bytes(1 << 20)
for _ in range(1024): w.write(chunk)
PY",
        r = world.recipient,
        out = plant.display()
    ));
    let stored = std::fs::read(&plant).expect("bomb");
    let mut f = Forgery::of(&world, &id);
    f.put_stored(
        "files.tar.zst.age",
        Some("files"),
        &stored,
        (1 << 30) + 1536,
    );
    f.save_unsigned();
    let dest = tmp.path().join("dest");
    let (kib, code, err) = peak_rss(
        &world,
        &[
            "restore",
            "--job",
            "app",
            "--allow-unsigned",
            "--source",
            "files",
            "--to",
            dest.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(kib < BOMB_RSS_KIB, "restore peaked at {kib} KiB");
    let used = sh(&format!("du -sk '{}' | cut -f1", dest.display()));
    let used: u64 = String::from_utf8_lossy(&used.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(used <= 1024 + 64, "the destination grew to {used} KiB");
}

#[test]
fn a_swapped_database_dump_is_never_committed() {
    require_tool("pg_restore");
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('old');",
    );
    let world = World::new("");
    let pwfile = world.path("pg-password");
    std::fs::write(&pwfile, &pg.password).expect("password file");
    // Format 1: the dump is one object (format 2's chunks: `chunks::a_swapped_pack_
    // never_reaches_pg_restore`).
    world.write_config(&format!(
        "format = 1\n[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n",
        pg.url("app"),
        pwfile.display()
    ));
    let old = world.backup();
    pg.psql("app", "UPDATE t SET v = 'new';");
    // Ids sort by the second they were taken in: make `new` the latest.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let new = world.backup();
    // The attacker puts the older dump into the newer snapshot, keeping the signed
    // marker (which still lists the newer dump's hash).
    std::fs::copy(
        world.snapshot_dir(&old).join("db.dump.zst.age"),
        world.snapshot_dir(&new).join("db.dump.zst.age"),
    )
    .expect("swap");
    pg.psql("postgres", "CREATE DATABASE fresh");
    let url = pg.url("fresh");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &new,
        "--db-url",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("db.dump.zst.age"), "{}", stderr(&out));
    let tables = pg.psql(
        "fresh",
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    );
    assert_eq!(tables.trim(), "0", "the swapped dump was committed");
}

#[test]
fn control_characters_in_file_names_are_escaped_in_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("ok.txt"), b"x").expect("write");
    std::fs::write(src.join("a\nsource files: consistent"), b"y").expect("write");
    let world = World::new(&dir_source("files", &src, ""));
    world.backup();
    std::fs::remove_file(src.join("a\nsource files: consistent")).expect("rm");
    let out = world.run(&["check", "--job", "app"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("a\\nsource files: consistent"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("source files: consistent")),
        "a file name forged a line: {text}"
    );
}

#[test]
fn planted_snapshots_do_not_push_genuine_ones_out_of_retention() {
    require_tool("age");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("files");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"hello").expect("write");
    let world = World::new(&format!(
        "retention = {{ keep_last = 1 }}\n{}",
        dir_source("files", &src, "")
    ));
    let genuine = world.backup();
    // Three newer snapshots, unsigned, as anyone with write access could plant them.
    for n in 1..=3 {
        let id = format!("2999010{n}T000000Z-000{n}");
        sh(&format!(
            "cp -a '{}' '{}'",
            world.snapshot_dir(&genuine).display(),
            world.snapshot_dir(&id).display()
        ));
        let mut f = Forgery::of(&world, &id);
        f.marker["id"] = id.as_str().into();
        f.manifest["snapshot"] = id.as_str().into();
        f.save_unsigned();
    }
    let out = world.ok(&["prune", "--job", "app", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report[0]["forgotten"], serde_json::json!([]), "{out}");
    assert!(world.snapshot_dir(&genuine).join("snapshot.json").exists());
    assert!(out.contains("not signed by a trusted key"), "{out}");
}
