//! Database sources against real servers: one instant shared by a database and its
//! files, round trips through PostgreSQL, MariaDB, SQLite and Redis, dumps that
//! fail, the database/files check, and after_restore hooks.

use crate::common::servers::{Mariadb, Postgres, Redis};
use crate::common::uploads::UploadWriter;
use crate::common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn pg_source(world: &World, pg: &Postgres, db: &str, extra: &str) -> String {
    let pwfile = world.path("pg-password");
    std::fs::write(&pwfile, &pg.password).expect("password file");
    format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n{extra}\n",
        pg.url(db),
        pwfile.display()
    )
}

#[test]
fn postgres_and_files_are_taken_at_one_instant_under_load() {
    require_tool("pg_dump");
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE kadi");
    pg.psql(
        "kadi",
        "CREATE TABLE file (id serial PRIMARY KEY, path text NOT NULL, size bigint NOT NULL, state text NOT NULL DEFAULT 'active');
         CREATE TABLE metadata (name text PRIMARY KEY, value text);
         INSERT INTO metadata VALUES ('storage_schema_version', '42');
         CREATE TABLE ballast AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 200000) g;",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = tmp.path().join("storage");
    std::fs::create_dir_all(&storage).expect("mkdir");
    let world = World::new("");

    // The application: write the file, then commit its row; never the other way round.
    let writer = UploadWriter::start(
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/kadi",
            pg.password, pg.port
        ),
        storage.clone(),
        "INSERT INTO file (path, size) VALUES ($1, $2)",
        50,
    );
    writer.wait_for(300);
    world.write_config(&format!(
        "{}{}[jobs.app.check]\nsource = \"db\"\nfiles = \"storage\"\nquery = \"SELECT path, size FROM file WHERE state = 'active'\"\n",
        pg_source(&world, &pg, "kadi", "version_query = \"SELECT value FROM metadata WHERE name = 'storage_schema_version'\""),
        dir_source("storage", &storage, "")
    ));
    let before = writer.written();
    let out = world.ok(&["backup", "app", "--json"]);
    let during = writer.written() - before;
    writer.stop();
    let run = &json(&out)[0];
    assert_eq!(run["status"], "success", "{out}");
    // Checked inside the snapshot against what was captured: every row's file.
    assert_eq!(run["check"]["missing"], serde_json::json!([]), "{out}");
    assert_eq!(run["check"]["size"], serde_json::json!([]), "{out}");
    assert!(
        run["check"]["referenced"]
            .as_u64()
            .is_some_and(|n| n >= 300),
        "{out}"
    );
    assert!(
        during > 0,
        "the writer made no uploads during the backup; the test proves nothing"
    );
    let skew = run["skew_seconds"].as_f64().expect("skew");
    assert!(
        skew < 1.0,
        "skew {skew}s: the sources were not frozen together"
    );

    let list = json(&world.ok(&["list", "--job", "app", "--json"]));
    // Format 2 stores the dump as chunks in packs: the marker lists it under streams.
    let db_obj = list[0]["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .find(|o| o["source"] == "db")
        .expect("db stream")
        .clone();
    assert_eq!(db_obj["facts"]["schema_version"], "42", "{list}");
    assert!(
        db_obj["facts"]["server_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("15")),
        "{list}"
    );

    // Restore both elsewhere: the database into a new one, the files into a folder.
    pg.psql("postgres", "CREATE DATABASE kadi_restored");
    let dest = tmp.path().join("restored");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--json",
        "--to",
        dest.to_str().expect("utf8"),
        "--db-url",
        &pg.url("kadi_restored"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = json(&stdout);
    let check = &report["db_check"];
    assert_eq!(
        check["missing"],
        serde_json::json!([]),
        "rows without their file: {check}"
    );
    assert_eq!(check["size"], serde_json::json!([]), "{check}");
    let rows: u64 = pg
        .psql("kadi_restored", "SELECT count(*) FROM file")
        .parse()
        .expect("count");
    assert!(
        rows >= 300 && check["referenced"].as_u64() == Some(rows),
        "{rows} rows, {check}"
    );
    // Files written after the database instant may be there without a row: orphans
    // are a warning by default (exit 0), rows without files never happen.
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // Sequences came back: a new upload gets a fresh id.
    let new_id: u64 = pg
        .psql(
            "kadi_restored",
            "INSERT INTO file (path, size) VALUES ('new.bin', 1) RETURNING id",
        )
        .parse()
        .expect("id");
    assert!(
        new_id > rows,
        "sequence not restored: new id {new_id} with {rows} rows"
    );
}

#[test]
fn a_wrong_database_password_fails_the_run_without_printing_it() {
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::write(files.join("a"), b"a").expect("write");
    let world = World::new("");
    let wrong = "wrong-pass-Jd8";
    std::fs::write(world.path("pg-password"), wrong).expect("write");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n{}",
        pg.url("postgres"),
        world.path("pg-password").display(),
        dir_source("files", &files, "")
    ));
    let out = world.run(&["backup", "app"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("password authentication failed"), "{all}");
    assert!(
        !all.contains(wrong) && !all.contains(&pg.password),
        "a password was printed: {all}"
    );
    assert!(world.snapshots().is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(world.target().join("app"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "a failed run left {leftovers:?}");
}

#[test]
fn a_dump_command_failing_halfway_fails_the_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::write(files.join("a"), noise(1 << 20, 4)).expect("write");
    let world = World::new(&format!(
        "[[jobs.app.sources]]\nname = \"kanidm\"\ntype = \"command\"\ncommand = [\"sh\", \"-c\", \"head -c 3000000 /dev/urandom; echo disk full >&2; exit 1\"]\n{}",
        dir_source("files", &files, "")
    ));
    let out = world.run(&["backup", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("kanidm") && err.contains("disk full"), "{err}");
    assert!(world.snapshots().is_empty(), "a failed dump was committed");

    // The same source succeeding, restored through restore_command.
    let restored = tmp.path().join("from-restore-command");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"kanidm\"\ntype = \"command\"\nextension = \"json\"\ncommand = [\"sh\", \"-c\", \"printf '{{\\\"ok\\\":1}}'\"]\nrestore_command = [\"sh\", \"-c\", \"cat > {}\"]\n",
        restored.display()
    ));
    // A dump is reported as one, not as "0 files".
    let out = world.ok(&["backup", "app"]);
    assert!(out.contains("  source kanidm: command output, "), "{out}");
    assert!(!out.contains("0 files"), "{out}");
    world.ok(&["restore", "--job", "app"]);
    assert_eq!(
        std::fs::read_to_string(&restored).expect("restored"),
        "{\"ok\":1}"
    );
}

#[test]
fn mariadb_round_trip_keeps_every_row() {
    require_tool("mariadb-dump");
    let m = Mariadb::start();
    m.root_sql(
        "CREATE DATABASE app CHARACTER SET utf8mb4; USE app;
         CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100), data BLOB) ENGINE=InnoDB;
         INSERT INTO t (name, data) VALUES ('grüße ✓', UNHEX(REPEAT('00FF7F', 500))), ('plain', NULL);
         INSERT INTO t (name, data) SELECT CONCAT('row', a.id, b.id), RANDOM_BYTES(64) FROM t a, t b;
         INSERT INTO t (name, data) SELECT name, data FROM t;
         CREATE DATABASE app_restored;",
    )
    .expect("setup");
    let sum = |db: &str| {
        m.root_sql(&format!("CHECKSUM TABLE {db}.t EXTENDED"))
            .expect("checksum")
    };
    let rows = m.root_sql("SELECT COUNT(*) FROM app.t").expect("count");
    let world = World::new("");
    std::fs::write(world.path("my-password"), &m.password).expect("write");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"mysql\"\nurl = \"{}\"\npassword_file = \"{}\"\nversion_query = \"SELECT 7\"\n",
        m.url("app"),
        world.path("my-password").display()
    ));
    world.backup();
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--db-url",
        &m.url("app_restored"),
    ]);
    assert_eq!(
        m.root_sql("SELECT COUNT(*) FROM app_restored.t")
            .expect("count"),
        rows
    );
    let (a, b) = (sum("app"), sum("app_restored"));
    assert_eq!(
        a.split_whitespace().last(),
        b.split_whitespace().last(),
        "checksums differ: {a} / {b}"
    );
    let max_before: u64 = m
        .root_sql("SELECT MAX(id) FROM app.t")
        .expect("max")
        .parse()
        .expect("n");
    m.root_sql("INSERT INTO app_restored.t (name) VALUES ('after')")
        .expect("insert after restore");
    let max_after: u64 = m
        .root_sql("SELECT MAX(id) FROM app_restored.t")
        .expect("max")
        .parse()
        .expect("n");
    assert!(max_after > max_before);
}

#[test]
fn sqlite_copy_under_writes_restores_in_place_and_runs_hooks() {
    require_tool("sqlite3");
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("app.sqlite");
    sh(&format!(
        "sqlite3 '{}' 'PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE meta (k TEXT, v TEXT); INSERT INTO meta VALUES (\"schema\", \"3\");'",
        db.display()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, db) = (stop.clone(), db.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("sqlite3")
                    .arg(&db)
                    .arg(".timeout 5000")
                    .arg(format!(
                        "INSERT INTO t (v) VALUES (hex(randomblob(200))); -- {n}"
                    ))
                    .output()
                    .expect("sqlite3");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = tmp.path().join("hooks.log");
    let world = World::new("");
    world.write_config(&format!(
        "after_restore = [\"sh -c 'echo first >> {log}'\", \"sh -c 'echo second >> {log}'\"]\n\
         [[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\nversion_query = \"SELECT v FROM meta WHERE k = 'schema'\"\n",
        db.display(),
        log = log.display()
    ));
    let count = |p: &std::path::Path| -> u64 {
        String::from_utf8_lossy(
            &sh(&format!(
                "sqlite3 '{}' '.timeout 5000' 'SELECT count(*) FROM t'",
                p.display()
            ))
            .stdout,
        )
        .trim()
        .parse()
        .expect("count")
    };
    let low = count(&db);
    let said = world.ok(&["backup", "app"]);
    let high = count(&db);
    // A dump is reported as one, not as "0 files".
    assert!(said.contains("  source db: sqlite dump, "), "{said}");
    stop.store(true, Ordering::Relaxed);
    let inserts = writer.join().expect("writer");
    assert!(inserts > 0);

    // A copy first: consistent, and between the counts before and after the backup.
    let out_dir = tmp.path().join("copy");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        out_dir.to_str().expect("utf8"),
    ]);
    let copy = out_dir.join("db.sqlite");
    let ok = sh(&format!(
        "sqlite3 '{}' 'PRAGMA integrity_check'",
        copy.display()
    ));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "ok");
    let n = count(&copy);
    assert!(low <= n && n <= high, "{low} <= {n} <= {high}");
    assert!(!log.exists(), "hooks ran for a restore with --to");

    // In place: refused without --force, then replaced atomically, then the hooks, in order.
    let refused = world.run(&["restore", "--job", "app"]);
    assert_eq!(refused.status.code(), Some(2));
    world.ok(&["restore", "--job", "app", "--force"]);
    assert_eq!(count(&db), n);
    assert_eq!(
        std::fs::read_to_string(&log).expect("hook log"),
        "first\nsecond\n"
    );

    // A failing hook fails the restore.
    world.write_config(&format!(
        "after_restore = [\"false\"]\n[[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\n",
        db.display()
    ));
    let out = world.run(&["restore", "--job", "app", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("after_restore hook `false` failed"));
}

#[test]
fn redis_keys_round_trip_through_the_rdb() {
    let r = Redis::start(None);
    for i in 0..500 {
        r.cli(&["SET", &format!("key:{i}"), &format!("value {i} ✓")])
            .expect("set");
    }
    r.cli(&["HSET", "h", "a", "1", "b", "2"]).expect("hset");
    let world = World::new("");
    std::fs::write(world.path("redis-password"), &r.password).expect("write");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"{}\"\npassword_file = \"{}\"\n",
        r.url(),
        world.path("redis-password").display()
    ));
    world.backup();
    let dest = world.path("r");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    let restored = Redis::start(Some(&dest.join("cache.rdb")));
    assert_eq!(restored.cli(&["DBSIZE"]).expect("dbsize"), "501");
    assert_eq!(
        restored.cli(&["GET", "key:123"]).expect("get"),
        "value 123 ✓"
    );
    assert_eq!(restored.cli(&["HGET", "h", "b"]).expect("hget"), "2");
}

#[test]
fn check_finds_a_deleted_a_truncated_and_an_orphan_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = tmp.path().join("storage");
    std::fs::create_dir_all(storage.join("a")).expect("mkdir");
    let db = tmp.path().join("app.sqlite");
    let mut sql = String::from("CREATE TABLE file (path TEXT, size INTEGER);");
    for i in 0..20 {
        let rel = format!("a/f{i}.bin");
        std::fs::write(storage.join(&rel), noise(100 + i, i as u64)).expect("write");
        sql.push_str(&format!("INSERT INTO file VALUES ('{rel}', {});", 100 + i));
    }
    sh(&format!("sqlite3 '{}' \"{sql}\"", db.display()));
    let world = World::new("");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\n{}[jobs.app.check]\nsource = \"db\"\nfiles = \"storage\"\nquery = \"SELECT path, size FROM file\"\n",
        db.display(),
        dir_source("storage", &storage, "")
    ));
    world.ok(&["check", "--job", "app", "--db-only"]);
    world.backup();
    std::fs::remove_file(storage.join("a/f3.bin")).expect("delete");
    std::fs::write(storage.join("a/f7.bin"), b"short").expect("truncate");
    std::fs::write(storage.join("a/stray.bin"), b"nobody knows me").expect("orphan");
    let out = world.expect(&["check", "--job", "app", "--json"], 3);
    let v = json(&out);
    let c = &v["db_check"];
    assert_eq!(c["missing"], serde_json::json!(["a/f3.bin"]), "{c}");
    assert_eq!(c["size"].as_array().map(Vec::len), Some(1), "{c}");
    assert!(
        c["size"][0]
            .as_str()
            .is_some_and(|s| s.starts_with("a/f7.bin")),
        "{c}"
    );
    assert_eq!(c["orphans"], serde_json::json!(["a/stray.bin"]), "{c}");
    // The snapshot comparison sees the same three changes.
    let tree = &v["sources"][0];
    assert_eq!(tree["missing"], serde_json::json!(["a/f3.bin"]), "{tree}");
    assert_eq!(tree["extra"], serde_json::json!(["a/stray.bin"]), "{tree}");
    let human = world.expect(&["check", "--job", "app", "--db-only"], 3);
    assert!(
        human.contains("missing: a/f3.bin") && human.contains("orphan: a/stray.bin"),
        "{human}"
    );
}

#[test]
fn a_database_server_killed_during_the_dump_fails_the_run() {
    let mut pg = Postgres::start();
    // Enough data that pg_dump is still streaming when the server dies.
    pg.psql(
        "postgres",
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS pad FROM generate_series(1, 3000000) g",
    );
    let world = World::new("");
    world.write_config(&pg_source(&world, &pg, "postgres", ""));
    let mut child = std::process::Command::new(coffer_bin())
        .arg("--config")
        .arg(&world.config)
        .args(["backup", "app"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn backup");
    let job_dir = world.target().join("app");
    let start = std::time::Instant::now();
    while std::fs::read_dir(&job_dir).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(start.elapsed().as_secs() < 60, "the dump never started");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the backup finished before the server could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    pg.kill();
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pg_dump failed"), "{err}");
    assert!(
        world.snapshots().is_empty(),
        "a dump cut short was committed"
    );
}

/// On a new server the database does not exist yet: restore creates it, owned by
/// the role that owned it when it was dumped (the snapshot is signed), and a user
/// without the right to create one gets the exact command instead.
#[test]
fn restore_creates_a_missing_database_with_its_owner_or_says_how() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE ROLE kinto LOGIN");
    pg.psql("postgres", "CREATE DATABASE kinto OWNER kinto");
    pg.psql(
        "kinto",
        "CREATE TABLE records (id serial PRIMARY KEY, body text); \
         INSERT INTO records (body) SELECT 'r' || g FROM generate_series(1, 50) g",
    );
    let world = World::new("");
    world.write_config(&pg_source(&world, &pg, "kinto", ""));
    world.backup();

    let out = world.run(&["restore", "--job", "app", "--db-url", &pg.url("kinto_new")]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("database kinto_new did not exist") && said.contains("owned by kinto"),
        "{said}"
    );
    assert_eq!(pg.psql("kinto_new", "SELECT count(*) FROM records"), "50");
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'kinto_new'"
        ),
        "kinto",
        "the recorded owner"
    );

    // A login that may not create databases: nothing is created, and the error
    // says what to run.
    pg.psql(
        "postgres",
        &format!("CREATE ROLE restorer LOGIN PASSWORD '{}'", pg.password),
    );
    let url = format!("postgres://restorer@127.0.0.1:{}/kinto_other", pg.port);
    let out = world.run(&["restore", "--job", "app", "--db-url", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // A command that asks no password: over the local socket as postgres (with
    // `-h 127.0.0.1` createdb asked for postgres's password).
    let createdb = format!(
        "`sudo -u postgres createdb -p {} -O kinto kinto_other` on this host",
        pg.port
    );
    assert!(
        err.contains("could not create it") && err.contains(&createdb),
        "{err}"
    );
    assert!(!err.contains("-h 127.0.0.1"), "{err}");
    assert!(!err.contains("at line"), "{err}");
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'kinto_other'"
        ),
        "0"
    );
}

/// A restore whose database and files disagree starts nothing: its after_restore
/// hooks are not run, and the operator is told which ones and how to run them.
#[test]
fn an_inconsistent_restore_names_the_hooks_it_did_not_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = tmp.path().join("storage");
    std::fs::create_dir_all(&storage).expect("mkdir");
    std::fs::write(storage.join("kept.bin"), b"here").expect("write");
    let db = tmp.path().join("app.sqlite");
    sh(&format!(
        "sqlite3 '{}' \"CREATE TABLE file (path TEXT); INSERT INTO file VALUES ('kept.bin'), ('lost.bin');\"",
        db.display()
    ));
    let log = tmp.path().join("hooks.log");
    let world = World::new("");
    world.write_config(&format!(
        "after_restore = [\"sh -c 'echo started >> {log}'\"]\n\
         [[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\n{}\
         [jobs.app.check]\nsource = \"db\"\nfiles = \"storage\"\nquery = \"SELECT path FROM file\"\n",
        db.display(),
        dir_source("storage", &storage, ""),
        log = log.display()
    ));
    world.run(&["backup", "app"]);
    assert_eq!(world.snapshots().len(), 1, "the snapshot is committed");
    std::fs::remove_dir_all(&storage).expect("lose the files");
    std::fs::remove_file(&db).expect("lose the database");
    let out = world.run(&["restore", "--job", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("were NOT run")
            && err.contains(&format!("sh -c 'echo started >> {}'", log.display())),
        "{err}"
    );
    assert!(err.contains("COFFER_SNAPSHOT="), "{err}");
    assert!(!log.exists(), "a hook ran on inconsistent data");
}

/// The job's check runs inside the PostgreSQL snapshot at backup time and is
/// compared with the files the snapshot captured: a row whose file is not there
/// is reported and exits 3 (the snapshot stands), an orphan is a warning unless
/// the job says orphans fail, and the counts reach the manifest's status metrics.
#[test]
fn backup_checks_the_database_against_the_files_it_captured() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = tmp.path().join("storage");
    std::fs::create_dir_all(&storage).expect("mkdir");
    std::fs::write(storage.join("a.bin"), b"aaaa").expect("write");
    std::fs::write(storage.join("stray.bin"), b"nobody").expect("write");
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE kinto");
    pg.psql(
        "kinto",
        "CREATE TABLE attachment (location text, size bigint); \
         INSERT INTO attachment VALUES ('a.bin', 4)",
    );
    let world = World::new("");
    let config = |orphans: &str| {
        format!(
            "{}{}[jobs.app.check]\nsource = \"db\"\nfiles = \"storage\"\nquery = \"SELECT location, size FROM attachment\"\n{orphans}",
            pg_source(&world, &pg, "kinto", ""),
            dir_source("storage", &storage, ""),
        )
    };
    world.write_config(&config(""));
    // Only an orphan: a warning, exit 0.
    let out = world.ok(&["backup", "app", "--json"]);
    let run = &json(&out)[0];
    assert_eq!(
        run["check"]["orphans"],
        serde_json::json!(["stray.bin"]),
        "{run}"
    );
    assert_eq!(run["check"]["missing"], serde_json::json!([]), "{run}");
    // The same with orphans = "fail": exit 3, the snapshot committed all the same.
    world.write_config(&config("orphans = \"fail\"\n"));
    world.expect(&["backup", "app"], 3);
    assert_eq!(world.snapshots().len(), 2);
    // A row whose file the snapshot lacks: exit 3, named in the output.
    world.write_config(&config(""));
    pg.psql("kinto", "INSERT INTO attachment VALUES ('gone.bin', 7)");
    let out = world.run(&["backup", "app"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("missing: gone.bin"), "{said}");
    assert_eq!(world.snapshots().len(), 3, "the snapshot stands");
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(world.path("state/status/app.json")).expect("status"),
    )
    .expect("json");
    assert_eq!(status["last_check"]["missing"], 1, "{status}");
    assert_eq!(status["last_check"]["orphans"], 1, "{status}");
    assert_eq!(status["last_check"]["referenced"], 2, "{status}");
    // The signed marker says whether the check passed, for retention, which
    // reads no manifest: of the day, keep_daily keeps the newest snapshot whose
    // check passed (the first), not the newest (an inconsistent one), and says so.
    let ids = world.snapshots();
    let marker = |id: &str| -> serde_json::Value {
        let text =
            std::fs::read_to_string(world.target().join("app").join(id).join("snapshot.json"))
                .expect("marker");
        serde_json::from_str::<serde_json::Value>(&text).expect("json")["marker"].clone()
    };
    assert_eq!(marker(&ids[0])["check"]["consistent"], true);
    assert_eq!(marker(&ids[1])["check"]["consistent"], false);
    assert_eq!(marker(&ids[2])["check"]["consistent"], false);
    assert_eq!(marker(&ids[2])["check"]["missing"], 1);
    let cfg = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        cfg.replacen(
            "[jobs.app]\n",
            "[jobs.app]\nretention = { keep_daily = 1 }\n",
            1,
        ),
    )
    .expect("config");
    let out = world.ok(&["prune", "--job", "app", "--dry-run", "--json"]);
    let report = &json(&out)[0];
    assert_eq!(
        report["kept"],
        serde_json::json!([{"id": ids[0], "reasons": ["daily: newest that passed its check"]}]),
        "{report}"
    );
    assert_eq!(
        report["forgotten"],
        serde_json::json!([ids[1], ids[2]]),
        "{report}"
    );
    let text = world.ok(&["prune", "--job", "app", "--dry-run"]);
    assert!(
        text.contains(&format!(
            "keep   {} (daily: newest that passed its check)",
            ids[0]
        )),
        "{text}"
    );
}

/// The shipped Kinto example, pointed at a real PostgreSQL holding Kinto's
/// `objects` table and an attachments folder: its check query finds every live
/// record's attachment, ignores tombstones, and names the one whose file is gone.
/// Records hold what kinto-attachment stores: the path under base_path without
/// `kinto.attachment.base_url`, a URL with it (any host; first a base_url without
/// a path, as shipped, then with `/attachments/` set as the example says).
#[test]
fn the_kinto_example_checks_attachments_at_backup_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let attachments = tmp.path().join("attachments");
    std::fs::create_dir_all(attachments.join("blog/articles")).expect("mkdir");
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE kinto");
    // Kinto's storage schema (objects since schema 21, metadata with the version).
    pg.psql(
        "kinto",
        "CREATE TABLE metadata (name TEXT PRIMARY KEY, value TEXT); \
         INSERT INTO metadata VALUES ('storage_schema_version', '23'); \
         CREATE TABLE objects (id TEXT COLLATE \"C\" NOT NULL, parent_id TEXT COLLATE \"C\" NOT NULL, \
           resource_name TEXT COLLATE \"C\" NOT NULL, last_modified TIMESTAMP NOT NULL, \
           data JSONB NOT NULL DEFAULT '{}'::JSONB, deleted BOOLEAN NOT NULL, \
           PRIMARY KEY (id, parent_id, resource_name))",
    );
    // What kinto-attachment stores as the location: urljoin(base_url, path).
    let record = |i: usize, location: &str| {
        let rel = format!("blog/articles/{i}.png");
        std::fs::write(attachments.join(&rel), noise(500 + i, i as u64)).expect("write");
        format!(
            "('r{i}', '/buckets/blog/collections/articles', 'record', now(), \
             '{{\"title\": \"t{i}\", \"attachment\": {{\"location\": \"{location}{rel}\", \"size\": {}}}}}', false)",
            500 + i
        )
    };
    let mut rows = Vec::new();
    for i in 0..5 {
        rows.push(record(i, ""));
    }
    // base_url set to a host alone, with a port, protocol-relative.
    rows.push(record(5, "https://cdn.example.com/"));
    rows.push(record(6, "http://localhost:8888/"));
    rows.push(record(7, "//cdn.example.com/"));
    // A record without attachment, a tombstone, and a record whose file is gone.
    rows.push("('plain', '/buckets/blog/collections/articles', 'record', now(), '{\"title\": \"x\"}', false)".into());
    rows.push("('dead', '/buckets/blog/collections/articles', 'record', now(), '{\"attachment\": {\"location\": \"blog/articles/dead.png\", \"size\": 1}}', true)".into());
    rows.push("('lost', '/buckets/blog/collections/articles', 'record', now(), '{\"attachment\": {\"location\": \"blog/articles/lost.png\", \"size\": 3}}', false)".into());
    pg.psql(
        "kinto",
        &format!("INSERT INTO objects VALUES {}", rows.join(", ")),
    );

    let world = World::new("");
    let recipients = world.path("recipients.txt");
    std::fs::write(&recipients, format!("{}\n", world.recipient)).expect("recipients");
    let pwfile = world.path("pg-password");
    std::fs::write(&pwfile, &pg.password).expect("password file");
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/kinto.toml"),
    )
    .expect("the Kinto example");
    let path = |p: &std::path::Path| p.display().to_string();
    let text = example
        .replace("/var/lib/coffer", &path(&world.path("state")))
        .replace("/etc/coffer/recipients.txt", &path(&recipients))
        .replace("/etc/coffer/identity.txt", &path(&world.identity))
        .replace("/mnt/backups/coffer", &path(&world.target()))
        .replace("postgres://kinto@localhost:5432/kinto", &pg.url("kinto"))
        .replace("/etc/coffer/kinto-db-password", &path(&pwfile))
        .replace("/var/lib/kinto/attachments", &path(&attachments));
    std::fs::write(&world.config, &text).expect("config");
    let check_once = |referenced: usize, missing: serde_json::Value| {
        let out = world.run(&["backup", "kinto", "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{stdout}");
        let check = json(&stdout)[0]["check"].clone();
        assert_eq!(check["referenced"], referenced, "{check}");
        assert_eq!(check["missing"], missing, "{check}");
        assert_eq!(check["size"], serde_json::json!([]), "{check}");
        assert_eq!(check["orphans"], serde_json::json!([]), "{check}");
    };
    check_once(9, serde_json::json!(["blog/articles/lost.png"]));

    // base_url = "https://cdn.example.com/attachments/": records uploaded since
    // hold it whole, the older ones keep theirs; the example's one setting.
    let shipped = "SELECT '/'::text AS path";
    assert!(text.contains(shipped), "the example's base.path setting");
    std::fs::write(
        &world.config,
        text.replace(shipped, "SELECT '/attachments/'::text AS path"),
    )
    .expect("config");
    let later = [
        record(8, "https://cdn.example.com/attachments/"),
        record(9, "https://CDN.example.com:8443/attachments/"),
        "('gone', '/buckets/blog/collections/articles', 'record', now(), '{\"attachment\": {\"location\": \"https://cdn.example.com/attachments/blog/articles/gone.png\", \"size\": 3}}', false)".into(),
    ];
    pg.psql(
        "kinto",
        &format!("INSERT INTO objects VALUES {}", later.join(", ")),
    );
    check_once(
        12,
        serde_json::json!(["blog/articles/gone.png", "blog/articles/lost.png"]),
    );
    let list = world.ok(&["list", "--job", "kinto", "--json"]);
    assert!(list.contains("\"schema_version\": \"23\""), "{list}");
}

/// A SQLite source whose file is missing says so (it said "is not a file"), and a
/// folder given as its path is told apart.
#[test]
fn a_missing_sqlite_file_is_said_to_be_missing() {
    let world = World::new("");
    let db = world.path("nowhere/app.db");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\n",
        db.display()
    ));
    let out = world.run(&["backup", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the database file {} does not exist",
            db.display()
        )),
        "{err}"
    );
    assert!(!err.contains("is not a file"), "{err}");

    std::fs::create_dir_all(&db).expect("a folder where the file should be");
    let out = world.run(&["backup", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a file: `path` is the database file itself"),
        "{err}"
    );
}

#[test]
fn restore_path_says_the_database_was_not_restored_rather_than_show_its_schema() {
    require_tool("sqlite3");
    let world = World::new("");
    let db = world.path("app.db");
    let out = sh(&format!(
        "sqlite3 '{}' \"CREATE TABLE meta (k, v); INSERT INTO meta VALUES ('schema', '7');\"",
        db.display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = world.path("files");
    std::fs::create_dir_all(files.join("docs")).expect("mkdir");
    std::fs::write(files.join("docs/a.txt"), b"a").expect("write");
    world.write_config(&format!(
        "[[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\nversion_query = \"SELECT v FROM meta WHERE k = 'schema'\"\n\n{}",
        db.display(),
        dir_source("files", &files, "")
    ));
    world.ok(&["backup", "app"]);
    let to = world.path("out");
    let out = world.ok(&[
        "restore",
        "--job",
        "app",
        "--path",
        "docs/a.txt",
        "--to",
        to.to_str().expect("utf8"),
    ]);
    assert!(
        out.contains(
            "source db (sqlite): not restored (--path restores files and folders of directory sources only)"
        ),
        "{out}"
    );
    assert!(!out.contains("schema version"), "{out}");
    let written: Vec<_> = std::fs::read_dir(&to)
        .expect("out")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(written, ["files"], "only the directory source was restored");
    assert!(to.join("files/docs/a.txt").exists());
    // Restored, its schema version is shown as before.
    let out = world.ok(&[
        "restore",
        "--job",
        "app",
        "--source",
        "db",
        "--to",
        world.path("out2").to_str().expect("utf8"),
    ]);
    assert!(
        out.contains("source db: schema version 7 at backup time"),
        "{out}"
    );
    assert!(
        out.contains("source files (directory): not restored (not named by --source)"),
        "{out}"
    );
}
