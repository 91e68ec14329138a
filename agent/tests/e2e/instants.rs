//! The order of the two instants (issue 22): an application writes an upload and
//! then commits the row that names it, so the database must be frozen before the
//! files. With `snapshot = "btrfs"` the filesystem snapshot used to be taken first
//! (it is quicker than exporting a PostgreSQL snapshot), and rows committed in
//! between named files the snapshot lacked. Here a real writer keeps adding
//! uploads on a btrfs subvolume while backups run; every run's check, made inside
//! the database snapshot against the captured files, must find every row's file
//! at its size, and every run must report the database's instant first.

use crate::common::btrfs::Btrfs;
use crate::common::servers::Postgres;
use crate::common::uploads::UploadWriter;
use crate::common::*;

const RUNS: usize = 8;

#[test]
fn with_btrfs_the_database_is_frozen_first_and_no_committed_row_lacks_its_file() {
    require_tool("pg_dump");
    let fs = Btrfs::new();
    let storage = fs.subvolume("storage");
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE upload (id serial PRIMARY KEY, path text NOT NULL, size bigint NOT NULL)",
    );
    let world = World::new("");
    let pwfile = world.path("pg-password");
    std::fs::write(&pwfile, &pg.password).expect("password file");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\n{}\
         [jobs.app.check]\nsource = \"db\"\nfiles = \"storage\"\nquery = \"SELECT path, size FROM upload\"\n",
        pg.url("app"),
        pwfile.display(),
        dir_source("storage", &storage, "snapshot = \"btrfs\"\nexclude = [\"/.coffer-snapshots\"]")
    ));

    // The application: each upload written whole, then its row committed.
    let writer = UploadWriter::start(
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/app",
            pg.password, pg.port
        ),
        storage.clone(),
        "INSERT INTO upload (path, size) VALUES ($1, $2)",
        20,
    );
    writer.wait_for(100);
    let mut failures = Vec::new();
    for run in 0..RUNS {
        let before = writer.written();
        let out = world.run(&["backup", "app", "--json"]);
        let during = writer.written() - before;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("run {run}: not JSON ({e}): {text}"));
        let r = &report[0];
        assert_eq!(r["status"], "success", "run {run}: {text}");
        assert!(during > 0, "run {run}: the writer wrote nothing during it");
        let instant = |name: &str| {
            let s = r["sources"]
                .as_array()
                .expect("sources")
                .iter()
                .find(|s| s["name"] == name)
                .unwrap_or_else(|| panic!("source {name}: {text}"));
            time::OffsetDateTime::parse(
                s["consistency_instant"].as_str().expect("instant"),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("rfc3339")
        };
        let (db, files) = (instant("db"), instant("storage"));
        if db > files {
            failures.push(format!(
                "run {run}: files frozen {} before the database",
                db - files
            ));
        }
        if out.status.code() != Some(0)
            || r["check"]["missing"] != serde_json::json!([])
            || r["check"]["size"] != serde_json::json!([])
        {
            let count = |k: &str| r["check"][k].as_array().map_or(0, Vec::len);
            failures.push(format!(
                "run {run}: exit {:?}, {} rows without their file, {} with another size (first: {})",
                out.status.code(),
                count("missing"),
                count("size"),
                r["check"]["missing"][0]
            ));
        }
    }
    writer.stop();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(fs.subvolumes(), ["storage"], "a snapshot was left behind");
}

/// One backup's `--json` report.
fn backup_report(world: &World) -> serde_json::Value {
    let out = world.ok(&["backup", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v[0]["sources"][0].clone()
}

#[test]
fn with_btrfs_new_files_are_read_once_and_unchanged_ones_not_even_when_the_snapshot_device_shifts()
{
    let fs = Btrfs::new();
    let data = fs.subvolume("data");
    let mut total = 0u64;
    for i in 0..40u64 {
        let body = noise(20_000 + i as usize * 5000, i);
        total += body.len() as u64;
        std::fs::write(data.join(format!("f{i:02}.bin")), body).expect("write");
    }
    let world = World::new(&dir_source("files", &data, "snapshot = \"btrfs\""));
    let first = backup_report(&world);
    assert_eq!(
        first["bytes_read"].as_u64(),
        Some(total),
        "each new file read once: {first}"
    );
    // Another snapshot of the subvolume held between the runs: btrfs gives the next
    // one another device number.
    let held = fs.mnt().join("held");
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(&data)
        .arg(&held)
        .output()
        .expect("btrfs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = backup_report(&world);
    assert_eq!(again["bytes_read"].as_u64(), Some(0), "unchanged: {again}");
    std::fs::write(data.join("new.bin"), noise(70_000, 99)).expect("write");
    let third = backup_report(&world);
    assert_eq!(third["bytes_read"].as_u64(), Some(70_000), "{third}");
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "delete"])
        .arg(&held)
        .output()
        .expect("btrfs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
