//! Chunked files (issue 24, first part): a file larger than the walk's read
//! buffer is cut into content-defined chunks as it is read, once. A big file that
//! changes a little stores the chunks around the change, not the file again;
//! every snapshot restores exactly; a damaged pack holding a chunk is found by a
//! stored-bytes verify and named by a deep one, and the next backup does not
//! build on it; packs and the manifest restore chunked files and dumps without
//! coffer (age, zstd, tar, jq: the script in docs/format.md); a format-2 snapshot
//! made before chunks restores, and its host backs up on from its old index.
//! Database dumps are chunked too: a PostgreSQL table that changes a little costs
//! the chunks around the change, every snapshot restores, and a swapped pack never
//! reaches pg_restore. So are a MariaDB dump and a SQLite database, whose copy
//! keeps the page layout.

use crate::common::packed_job::{backup_run, counts, marker_packs, packed};
use crate::common::*;
use serde_json::Value;
use std::path::Path;

const MIB: usize = 1 << 20;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// Bytes of every pack of job `app` on the local target.
fn packs_size(world: &World) -> u64 {
    std::fs::read_dir(world.target().join("app/packs"))
        .expect("packs")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum()
}

fn bytes_read(run: &Value) -> u64 {
    run["sources"][0]["bytes_read"]
        .as_u64()
        .unwrap_or_else(|| panic!("bytes_read in {run}"))
}

fn restore(world: &World, snapshot: &str) -> std::path::PathBuf {
    let to = world.path(&format!("restored-{snapshot}"));
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        snapshot,
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    to.join("files")
}

/// 24 MiB image, 6 MiB log, one small file; all noise (zstd gains nothing).
fn big_world() -> (World, std::path::PathBuf) {
    require_root("restores owners");
    let world = World::new("");
    let data = world.path("data");
    write(&data.join("disk.img"), &noise(24 * MIB, 1));
    write(&data.join("logs/app.log"), &noise(6 * MIB, 2));
    write(&data.join("small"), b"small file");
    world.write_config(&dir_source("files", &data, ""));
    (world, data)
}

#[test]
fn a_big_file_that_changes_a_little_stores_the_chunks_around_the_change_and_is_read_once() {
    let (world, data) = big_world();
    let first = backup_run(&world);
    assert_eq!(counts(&first), (0, 0, 3), "{first}");
    // Read once: before chunks, every file over the read buffer was read twice
    // (once to hash it, once to store it).
    assert_eq!(bytes_read(&first), (30 * MIB + 10) as u64, "{first}");
    let after_first = packs_size(&world);
    assert!(after_first > (30 * MIB) as u64, "{after_first}");
    let v1_img = std::fs::read(data.join("disk.img")).expect("read");
    let v1_log = std::fs::read(data.join("logs/app.log")).expect("read");

    // 64 KiB rewritten in place in the middle of the image; 200 KiB appended to the log.
    let mut img = v1_img.clone();
    img[12 * MIB..12 * MIB + 65536].copy_from_slice(&noise(65536, 3));
    write(&data.join("disk.img"), &img);
    let mut log = v1_log.clone();
    log.extend_from_slice(&noise(200 << 10, 4));
    write(&data.join("logs/app.log"), &log);
    let second = backup_run(&world);
    assert_eq!(counts(&second), (1, 0, 2), "{second}");
    assert_eq!(
        bytes_read(&second),
        (img.len() + log.len()) as u64,
        "{second}"
    );
    let grew = packs_size(&world) - after_first;
    // The two files are 30.2 MiB; what changed lies in a few chunks of about 1 MiB
    // (at most 4 MiB each).
    assert!(
        grew < (10 * MIB) as u64,
        "the second run stored {grew} bytes for 264 KiB of change"
    );
    let new_bytes = packed(&second)["new_bytes"].as_u64().expect("new_bytes");
    assert!(new_bytes < (10 * MIB) as u64, "{second}");

    // Unchanged: not read at all, nothing stored.
    let third = backup_run(&world);
    assert_eq!(counts(&third), (3, 0, 0), "{third}");
    assert_eq!(bytes_read(&third), 0, "{third}");
    assert_eq!(packed(&third)["new_packs"], 0, "{third}");

    let ids = world.snapshots();
    assert_eq!(ids.len(), 3);
    let old = restore(&world, &ids[0]);
    assert!(std::fs::read(old.join("disk.img")).expect("read") == v1_img);
    assert!(std::fs::read(old.join("logs/app.log")).expect("read") == v1_log);
    for id in &ids[1..] {
        let new = restore(&world, id);
        assert!(std::fs::read(new.join("disk.img")).expect("read") == img);
        assert!(std::fs::read(new.join("logs/app.log")).expect("read") == log);
        assert_eq!(
            std::fs::read(new.join("small")).expect("read"),
            b"small file"
        );
    }
    let id = world.identity.to_str().expect("utf-8");
    let out = world.ok(&[
        "verify",
        "--job",
        "app",
        "--snapshot",
        "all",
        "--identity",
        id,
    ]);
    assert_eq!(out.matches(": ok (").count(), 3, "{out}");

    // One file restored by path reads its chunks, not the whole job's packs.
    let to = world.path("one");
    let out = world.ok(&[
        "restore",
        "--job",
        "app",
        "--path",
        "logs/app.log",
        "--to",
        to.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(std::fs::read(to.join("files/logs/app.log")).expect("read") == log);
    let v: Value = serde_json::from_str(&out).expect("restore json");
    let fetched = v["fetched_bytes"].as_u64().expect("fetched_bytes");
    assert!(
        fetched <= (log.len() + 2 * MIB) as u64,
        "restoring the 6.2 MiB log fetched {fetched} bytes"
    );
}

#[test]
fn a_damaged_pack_holding_chunks_is_found_named_and_not_built_upon() {
    let (world, _data) = big_world();
    world.write_config(&format!(
        "recheck_packs = 0\n{}",
        dir_source("files", &world.path("data"), "")
    ));
    backup_run(&world);
    let snapshot = world.snapshots().pop().expect("snapshot");
    let packs = marker_packs(&world, &snapshot);
    assert_eq!(packs.len(), 1, "{packs:?}");
    let path = world
        .target()
        .join("app/packs")
        .join(format!("{}.tar.zst.age", packs[0]));
    let mut bytes = std::fs::read(&path).expect("read pack");
    // Inside the image's chunks (the pack holds the files in path order).
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&path, bytes).expect("write pack");

    let out = world.expect(&["verify", "--job", "app", "--stored-only"], 3);
    assert!(out.contains("DAMAGED") && out.contains(&packs[0]), "{out}");
    let id = world.identity.to_str().expect("utf-8");
    let out = world.expect(
        &[
            "verify",
            "--job",
            "app",
            "--snapshot",
            "latest",
            "--identity",
            id,
        ],
        3,
    );
    assert!(out.contains("DAMAGED"), "{out}");
    assert!(out.contains("disk.img") || out.contains(&packs[0]), "{out}");

    // Every chunk of that pack is stored again; the new snapshot does not use it.
    let next = backup_run(&world);
    assert_eq!(counts(&next), (0, 0, 3), "{next}");
    let latest = world.snapshots().pop().expect("snapshot");
    assert!(!marker_packs(&world, &latest).contains(&packs[0]));
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
fn packs_and_the_manifest_restore_chunked_files_with_age_zstd_tar_and_jq() {
    for tool in ["age", "zstd", "tar", "jq"] {
        require_tool(tool);
    }
    let (world, data) = big_world();
    // And a stream source: a command's output of 9 MiB, stored as chunks too.
    let dump = world.path("dump.bin");
    write(&dump, &noise(9 * MIB, 5));
    world.write_config(&format!(
        "{}[[jobs.app.sources]]\nname = \"export\"\ntype = \"command\"\n\
         command = [\"cat\", \"{}\"]\nextension = \"bin\"\n",
        dir_source("files", &data, ""),
        dump.display()
    ));
    backup_run(&world);
    let mut img = std::fs::read(data.join("disk.img")).expect("read");
    img[5 * MIB..5 * MIB + 4096].fill(7);
    write(&data.join("disk.img"), &img);
    backup_run(&world);
    let latest = world.snapshots().pop().expect("snapshot");
    let out = world.path("by-hand");
    std::fs::create_dir_all(&out).expect("mkdir");
    // The script of docs/format.md, for a snapshot with one source.
    let script = format!(
        r#"set -eu
cd {snap}
for p in $(jq -r '.marker.packs[].id' snapshot.json); do
  age -d -i {id} ../packs/$p.tar.zst.age | zstd -d | tar -x -C {out}
done
jq -r '.marker.manifest.chunks[] | "\(.pack) \(.offset) \(.size)"' snapshot.json |
  while read -r p o n; do
    age -d -i {id} ../packs/$p.tar.zst.age | zstd -d | tail -c +$((o + 1)) | head -c "$n"
  done > {out}.manifest.json
jq -r '.sources[].entries[]? | select(.chunks) | [.path, (.chunks | map(.blake3) | join(" "))] | @tsv' {out}.manifest.json |
  while IFS="$(printf '\t')" read -r path hashes; do
    (cd {out}/.coffer-chunks && cat $hashes) > "{out}/$path"
  done
jq -r '.sources[] | select(.name == "export") | .chunked.chunks[].blake3' {out}.manifest.json |
  (cd {out}/.coffer-chunks && xargs cat) > {out}/export.bin
rm -r {out}/.coffer-chunks
"#,
        snap = world.snapshot_dir(&latest).display(),
        id = world.identity.display(),
        out = out.display(),
    );
    let done = sh(&script);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(std::fs::read(out.join("disk.img")).expect("read") == img);
    assert!(
        std::fs::read(out.join("logs/app.log")).expect("read")
            == std::fs::read(data.join("logs/app.log")).expect("read")
    );
    assert_eq!(
        std::fs::read(out.join("small")).expect("read"),
        b"small file"
    );
    assert!(
        std::fs::read(out.join("export.bin")).expect("read") == std::fs::read(&dump).expect("read")
    );
}

#[test]
fn a_format_2_snapshot_made_before_chunks_restores_and_backs_up_on() {
    require_root("restores owners");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/fixtures/format2");
    let dir = tempfile::tempdir().expect("tempdir");
    for part in ["target", "state", "tree"] {
        sh(&format!(
            "cp -a {}/{part} {}/{part}",
            fixture.display(),
            dir.path().display()
        ));
    }
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
            "[agent]\nstate_dir = \"{d}/state\"\n[encryption]\nrecipients = [\"{recipient}\"]\n\
             identity_file = \"{}\"\ntrusted_signers = [\"{}\"]\n[targets.local]\ntype = \"local\"\n\
             path = \"{d}/target\"\n[jobs.app]\ntargets = [\"local\"]\n[[jobs.app.sources]]\n\
             name = \"files\"\ntype = \"directory\"\npath = \"{d}/tree\"\n",
            identity.display(),
            signer.trim(),
            d = dir.path().display(),
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
    let tree = crate::format2::files(&dir.path().join("tree"));
    assert_eq!(crate::format2::files(&to.join("files")), tree);
    let out = coffer(&["verify", "--job", "app"]);
    assert!(out.contains(": ok ("), "{out}");

    // From the old host's state (an index of schema version 1): the copied tree
    // has new inodes, so every file is read; the small ones are found stored, the
    // big log is cut into chunks once.
    let mut log = std::fs::read(dir.path().join("tree/big.log")).expect("read");
    log.extend_from_slice(b"one more line\n");
    std::fs::write(dir.path().join("tree/big.log"), &log).expect("write");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run: Value = serde_json::from_str(&coffer(&["backup", "app", "--json"])).expect("json");
    let p = &run[0]["sources"][0]["packed"];
    assert_eq!(p["known_files"], 2, "{run}");
    assert_eq!(p["new_files"], 1, "{run}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again: Value = serde_json::from_str(&coffer(&["backup", "app", "--json"])).expect("json");
    assert_eq!(
        again[0]["sources"][0]["packed"]["unchanged_files"], 3,
        "{again}"
    );
    let to = dir.path().join("restored-latest");
    coffer(&[
        "restore",
        "--job",
        "app",
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert!(std::fs::read(to.join("files/big.log")).expect("read") == log);
    let out = coffer(&[
        "verify",
        "--job",
        "app",
        "--snapshot",
        "all",
        "--identity",
        identity.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.matches(": ok (").count(), 3, "{out}");
}

/// One checksum of the table's rows, as the database has them now.
fn table_sum(pg: &crate::common::servers::Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT count(*) || ':' || md5(string_agg(id::text || '=' || payload, ',' ORDER BY id)) FROM items",
    )
}

#[test]
fn a_postgres_dump_that_changes_a_little_stores_what_changed_and_every_snapshot_restores() {
    require_root("restores owners");
    let pg = crate::common::servers::Postgres::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);
         INSERT INTO items SELECT g, md5(g::text) || repeat(' x', 40) FROM generate_series(1, 250000) g",
    );
    let world = World::new("");
    let pwfile = world.path("pg-password");
    std::fs::write(&pwfile, &pg.password).expect("password file");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n",
        pg.url("shop"),
        pwfile.display()
    ));
    let first = backup_run(&world);
    let dump = bytes_read(&first);
    assert!(dump > (20 * MIB) as u64, "{first}");
    let mut sums = vec![table_sum(&pg, "shop")];
    let mut growth = Vec::new();
    for round in 0..3u64 {
        let before = packs_size(&world);
        // An append-mostly table: 1% new rows, a batch of recent rows updated,
        // a few old ones deleted.
        let top = 250_000 + round * 2500;
        pg.psql(
            "shop",
            &format!(
                "INSERT INTO items SELECT g, md5(g::text) || ' new' FROM generate_series({}, {}) g;
                 UPDATE items SET payload = payload || ' edited' WHERE id BETWEEN {} AND {};
                 DELETE FROM items WHERE id BETWEEN {} AND {}",
                top + 1,
                top + 2500,
                top - 300,
                top - 100,
                1000 + round * 50,
                1000 + round * 50 + 20
            ),
        );
        sums.push(table_sum(&pg, "shop"));
        let run = backup_run(&world);
        assert!(bytes_read(&run) > dump, "{run}");
        growth.push(packs_size(&world) - before);
    }
    // A whole new dump per round would be `dump` bytes (zstd gains little on md5
    // text); what changed lies in a few chunks and the tail.
    for g in &growth {
        assert!(
            *g < dump * 2 / 5,
            "a round stored {g} bytes of a {dump}-byte dump: {growth:?}"
        );
    }
    for (i, id) in world.snapshots().iter().enumerate() {
        let db = format!("restored{i}");
        pg.psql("postgres", &format!("CREATE DATABASE {db}"));
        world.ok(&[
            "restore",
            "--job",
            "app",
            "--snapshot",
            id,
            "--db-url",
            &pg.url(&db),
        ]);
        assert_eq!(table_sum(&pg, &db), sums[i], "snapshot {id}");
    }
    let id = world.identity.to_str().expect("utf-8");
    let out = world.ok(&[
        "verify",
        "--job",
        "app",
        "--snapshot",
        "all",
        "--identity",
        id,
    ]);
    assert_eq!(out.matches(": ok (").count(), 4, "{out}");
}

#[test]
fn a_swapped_pack_never_reaches_pg_restore() {
    require_tool("pg_restore");
    let pg = crate::common::servers::Postgres::start();
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE t (id int, v text);
         INSERT INTO t SELECT i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 200000) i",
    );
    let world = World::new("");
    let pwfile = world.path("pg-password");
    std::fs::write(&pwfile, &pg.password).expect("password file");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n",
        pg.url("app"),
        pwfile.display()
    ));
    backup_run(&world);
    let old = world.snapshots().pop().expect("snapshot");
    pg.psql("app", "UPDATE t SET v = 'changed' WHERE id > 199000");
    backup_run(&world);
    let new = world.snapshots().pop().expect("snapshot");
    let old_packs = marker_packs(&world, &old);
    let added: Vec<String> = marker_packs(&world, &new)
        .into_iter()
        .filter(|p| !old_packs.contains(p))
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    // A target writer puts a genuine older pack (encrypted to the same public
    // recipients, so it decrypts and decodes) under the new pack's name.
    let packs = world.target().join("app/packs");
    std::fs::copy(
        packs.join(format!("{}.tar.zst.age", old_packs[0])),
        packs.join(format!("{}.tar.zst.age", added[0])),
    )
    .expect("swap");
    pg.psql("postgres", "CREATE DATABASE fresh");
    let rollbacks = || {
        pg.psql(
            "postgres",
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = 'fresh'",
        )
    };
    let before = rollbacks();
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--snapshot",
        &new,
        "--db-url",
        &pg.url("fresh"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&added[0]), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(rollbacks(), before, "pg_restore ran statements: {err}");
    let tables = pg.psql(
        "fresh",
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    );
    assert_eq!(tables, "0", "{err}");
}

/// `COUNT(*)` and a checksum of the table, as sqlite3 sees them in `db`.
fn sqlite_sum(db: &Path) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg("SELECT count(*), sum(length(payload)), sum(id) FROM items")
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_sqlite_database_that_changes_a_little_stores_what_changed_and_restores() {
    require_tool("sqlite3");
    let world = World::new("");
    let db = world.path("app.sqlite");
    // About 24 MiB of pages; the payloads do not compress away.
    sh(&format!(
        "sqlite3 '{}' \"CREATE TABLE items (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 100000)
         INSERT INTO items SELECT i, hex(randomblob(100)) FROM g;\"",
        db.display()
    ));
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\n",
        db.display()
    ));
    let first = backup_run(&world);
    let copy = bytes_read(&first);
    assert!(copy > (20 * MIB) as u64, "{first}");
    // A few early rows deleted, some added, a recent batch updated: the page
    // layout after the first deleted row must not move (a rebuilt copy, as
    // VACUUM INTO makes, stores the whole database again).
    let before = packs_size(&world);
    sh(&format!(
        "sqlite3 '{}' \"DELETE FROM items WHERE id BETWEEN 1000 AND 1010;
         UPDATE items SET payload = payload || 'edited' WHERE id BETWEEN 99000 AND 99200;
         WITH RECURSIVE g(i) AS (SELECT 100001 UNION ALL SELECT i + 1 FROM g WHERE i < 101000)
         INSERT INTO items SELECT i, hex(randomblob(100)) FROM g;\"",
        db.display()
    ));
    let changed = sqlite_sum(&db);
    backup_run(&world);
    let growth = packs_size(&world) - before;
    assert!(
        growth < copy / 4,
        "the second run stored {growth} bytes of a {copy}-byte database"
    );
    let to = world.restore_latest();
    assert_eq!(sqlite_sum(&to.join("db.sqlite")), changed);
}

#[test]
fn a_mariadb_dump_that_changes_a_little_stores_what_changed_and_restores() {
    require_tool("mariadb-dump");
    let m = crate::common::servers::Mariadb::start();
    m.root_sql(
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE items (id BIGINT PRIMARY KEY, payload TEXT NOT NULL) ENGINE=InnoDB;
         INSERT INTO items SELECT seq, CONCAT(MD5(seq), REPEAT(' x', 40)) FROM seq_1_to_250000;
         CREATE DATABASE restored;",
    )
    .expect("setup");
    let world = World::new("");
    std::fs::write(world.path("my-password"), &m.password).expect("write");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"mysql\"\nurl = \"{}\"\npassword_file = \"{}\"\n",
        m.url("shop"),
        world.path("my-password").display()
    ));
    let first = backup_run(&world);
    let dump = bytes_read(&first);
    assert!(dump > (20 * MIB) as u64, "{first}");
    let mut growth = Vec::new();
    for round in 0..2u64 {
        let before = packs_size(&world);
        // As for PostgreSQL: 1% new rows, a batch of recent rows updated, a few
        // old ones deleted.
        let top = 250_000 + round * 2500;
        m.root_sql(&format!(
            "USE shop;
             INSERT INTO items SELECT seq, CONCAT(MD5(seq), ' new') FROM seq_{}_to_{};
             UPDATE items SET payload = CONCAT(payload, ' edited') WHERE id BETWEEN {} AND {};
             DELETE FROM items WHERE id BETWEEN {} AND {};",
            top + 1,
            top + 2500,
            top - 300,
            top - 100,
            1000 + round * 50,
            1000 + round * 50 + 20
        ))
        .expect("churn");
        backup_run(&world);
        growth.push(packs_size(&world) - before);
    }
    for g in &growth {
        assert!(
            *g < dump * 2 / 5,
            "a round stored {g} bytes of a {dump}-byte dump: {growth:?}"
        );
    }
    world.ok(&["restore", "--job", "app", "--db-url", &m.url("restored")]);
    let sum = |db: &str| {
        m.root_sql(&format!("CHECKSUM TABLE {db}.items EXTENDED"))
            .expect("checksum")
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(sum("restored"), sum("shop"));
}
