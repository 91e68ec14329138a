//! The order of the two instants (issue 22): an application writes an upload and
//! then commits the row that names it, so the database must be frozen before the
//! files. With `snapshot = "btrfs"` the filesystem snapshot used to be taken first
//! (it is quicker than exporting a PostgreSQL snapshot), and rows committed in
//! between named files the snapshot lacked. Here a real writer keeps adding
//! uploads on a btrfs subvolume while backups run; every run's check, made inside
//! the database snapshot against the captured files, must find every row's file
//! at its size, and every run must report the database's instant first. The same
//! writer, in both orders, runs against a SQLite database too: its copy is the
//! database's instant there, and the check runs on that copy.

use crate::common::btrfs::Btrfs;
use crate::common::servers::Postgres;
use crate::common::uploads::{KEPT_FOR, UploadWriter};
use crate::common::*;

const RUNS: usize = 8;

/// How the writers add an upload's row and delete it, on `App`'s table.
const UPLOAD_ROWS: (&str, &str) = (
    "INSERT INTO upload (path, size) VALUES ($1, $2)",
    "DELETE FROM upload WHERE path = $1",
);

/// PostgreSQL (or SQLite) with an `upload` table, a btrfs subvolume `storage`,
/// and a job `app` backing both up with `snapshot = "btrfs"` and the check
/// inside the snapshot.
struct App {
    fs: Btrfs,
    storage: std::path::PathBuf,
    db: Db,
    world: World,
}

/// Where the application keeps its rows.
enum Db {
    Postgres(Postgres),
    /// The database file, in WAL mode, outside the subvolume.
    Sqlite(std::path::PathBuf),
}

impl App {
    fn start() -> App {
        require_tool("pg_dump");
        let pg = Postgres::start();
        pg.psql("postgres", "CREATE DATABASE app");
        pg.psql(
            "app",
            "CREATE TABLE upload (id serial PRIMARY KEY, path text NOT NULL, size bigint NOT NULL)",
        );
        let world = World::new("");
        let pwfile = world.path("pg-password");
        std::fs::write(&pwfile, &pg.password).expect("password file");
        let source = format!(
            "[[jobs.app.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\n",
            pg.url("app"),
            pwfile.display(),
        );
        App::with(Db::Postgres(pg), world, &source)
    }

    fn sqlite() -> App {
        let world = World::new("");
        let file = world.path("app.sqlite");
        let db = rusqlite::Connection::open(&file).expect("open the SQLite database");
        db.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE upload (id INTEGER PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL);",
        )
        .expect("create the table");
        let source = format!(
            "[[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{}\"\n\n",
            file.display()
        );
        App::with(Db::Sqlite(file), world, &source)
    }

    fn with(db: Db, world: World, source: &str) -> App {
        let fs = Btrfs::new();
        let storage = fs.subvolume("storage");
        world.write_config(&format!(
            "{source}{}[jobs.app.check]\nsource = \"db\"\nfiles = \"storage\"\nquery = \"SELECT path, size FROM upload\"\n",
            dir_source("storage", &storage, "snapshot = \"btrfs\"\nexclude = [\"/.coffer-snapshots\"]")
        ));
        App {
            fs,
            storage,
            db,
            world,
        }
    }

    fn pg(&self) -> &Postgres {
        match &self.db {
            Db::Postgres(pg) => pg,
            Db::Sqlite(_) => panic!("a PostgreSQL test on the SQLite app"),
        }
    }

    /// Every run released the snapshots it took: only the subvolume is left.
    fn assert_no_snapshot_left(&self) {
        assert_eq!(
            self.fs.subvolumes(),
            ["storage"],
            "a snapshot was left behind"
        );
    }

    fn writer_url(&self) -> String {
        match &self.db {
            Db::Postgres(pg) => format!(
                "postgres://postgres:{}@127.0.0.1:{}/app",
                pg.password, pg.port
            ),
            Db::Sqlite(file) => format!("sqlite://{}", file.display()),
        }
    }
}

/// One backup's report, with its sources' instants and windows.
struct Run {
    text: String,
    report: serde_json::Value,
    code: Option<i32>,
}

impl Run {
    fn of(world: &World, run: usize) -> Run {
        let out = world.run(&["backup", "app", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("run {run}: not JSON ({e}): {text}"));
        let report = report[0].clone();
        assert_eq!(report["status"], "success", "run {run}: {text}");
        Run {
            text,
            report,
            code: out.status.code(),
        }
    }

    fn source(&self, name: &str) -> &serde_json::Value {
        self.report["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("source {name}: {}", self.text))
    }

    /// A source's instant and the end of its window.
    fn span(&self, name: &str) -> (time::OffsetDateTime, time::OffsetDateTime) {
        let s = self.source(name);
        let at = time::OffsetDateTime::parse(
            s["consistency_instant"].as_str().expect("instant"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339");
        let window = s["window_seconds"].as_f64().expect("window");
        (at, at + time::Duration::seconds_f64(window))
    }

    /// Why this run's check is not clean, if it is not.
    fn inconsistency(&self, run: usize) -> Option<String> {
        let check = &self.report["check"];
        if self.code == Some(0)
            && check["missing"] == serde_json::json!([])
            && check["size"] == serde_json::json!([])
        {
            return None;
        }
        let count = |k: &str| check[k].as_array().map_or(0, Vec::len);
        Some(format!(
            "run {run}: exit {:?}, {} rows without their file, {} with another size (first: {})",
            self.code,
            count("missing"),
            count("size"),
            check["missing"][0]
        ))
    }
}

#[test]
fn with_btrfs_the_database_is_frozen_first_and_no_committed_row_lacks_its_file() {
    let app = App::start();
    // The application: each upload written whole, then its row committed.
    let writer = UploadWriter::start(app.writer_url(), app.storage.clone(), UPLOAD_ROWS.0, 20);
    writer.wait_for(100);
    let mut failures = Vec::new();
    for run in 0..RUNS {
        let before = writer.written();
        let r = Run::of(&app.world, run);
        let during = writer.written() - before;
        assert!(during > 0, "run {run}: the writer wrote nothing during it");
        let ((db, _), (files, _)) = (r.span("db"), r.span("storage"));
        if db > files {
            failures.push(format!(
                "run {run}: files frozen {} before the database",
                db - files
            ));
        }
        failures.extend(r.inconsistency(run));
    }
    writer.stop();
    assert!(failures.is_empty(), "{failures:#?}");
    app.assert_no_snapshot_left();
}

/// The issue's acceptance writer: uploads written, then their rows committed;
/// rows deleted (committed), then their files removed. The database freezes
/// between two btrfs snapshots, so a row deleted between its instant and the later
/// snapshot still has its file, taken from the earlier one. Every one of 20
/// snapshots is restored (database into a new one, files into a folder) and
/// checked: no restored row lacks its file or has it at another size.
#[test]
fn with_btrfs_a_writer_adding_and_deleting_loses_no_file_in_20_restored_snapshots() {
    const SNAPSHOTS: usize = 20;
    let app = App::start();
    let writer =
        UploadWriter::start_churning(app.writer_url(), app.storage.clone(), UPLOAD_ROWS, 20);
    // Deleting from the first run on.
    writer.wait_for(KEPT_FOR + 100);
    let mut failures = Vec::new();
    let mut completed = 0;
    let mut windows = Vec::new();
    for run in 0..SNAPSHOTS {
        let r = Run::of(&app.world, run);
        let ((db, _), (files, files_end)) = (r.span("db"), r.span("storage"));
        // The files' state spans the earlier snapshot to the later one when any
        // came from the earlier: the database's instant lies inside that span.
        if db > files_end {
            failures.push(format!(
                "run {run}: the files' window ends {} before the database's instant",
                db - files_end
            ));
        }
        let done = r.report["check"]["completed"]
            .as_array()
            .map_or(0, Vec::len);
        if done > 0 && files > db {
            failures.push(format!(
                "run {run}: {done} files completed, yet the files' instant is after the database's"
            ));
        }
        completed += done;
        windows.push(r.report["window_seconds"].as_f64().unwrap_or(f64::NAN));
        failures.extend(r.inconsistency(run));
    }
    writer.stop();
    let ids = app.world.snapshots();
    assert_eq!(ids.len(), SNAPSHOTS, "{ids:?}");
    for (n, id) in ids.iter().enumerate() {
        let db = format!("restored_{n}");
        app.pg().psql("postgres", &format!("CREATE DATABASE {db}"));
        let dest = app.world.path(&format!("restored-{n}"));
        let out = app.world.run(&[
            "restore",
            "--job",
            "app",
            "--snapshot",
            id,
            "--json",
            "--to",
            dest.to_str().expect("utf8"),
            "--db-url",
            &app.pg().url(&db),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("restore {id}: not JSON ({e}): {stdout}"));
        let check = &report["db_check"];
        let rows: u64 = app
            .pg()
            .psql(&db, "SELECT count(*) FROM upload")
            .parse()
            .expect("count");
        if out.status.code() != Some(0)
            || check["missing"] != serde_json::json!([])
            || check["size"] != serde_json::json!([])
            || check["referenced"].as_u64() != Some(rows)
        {
            failures.push(format!(
                "restore of {id}: exit {:?}, {rows} rows, check {check}",
                out.status.code()
            ));
        }
    }
    eprintln!(
        "{SNAPSHOTS} snapshots: {completed} files taken from the earlier snapshot; windows {windows:?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // Else no deletion fell between the instants, and this proved nothing.
    assert!(completed > 0, "no file was completed in {SNAPSHOTS} runs");
    app.assert_no_snapshot_left();
}

/// The other order an application may use: the file removed, then the row's
/// deletion committed a little later. A database snapshot taken in between
/// names a file no snapshot and not the live tree holds: nothing can complete
/// it, and the run says so (exit 3) with the cause, the application's order.
#[test]
fn with_btrfs_a_writer_removing_files_before_rows_is_reported_with_the_order_as_cause() {
    removing_files_before_rows_is_reported(App::start());
}

/// Runs against `app` a writer that removes a file, then a second later commits
/// the deletion of its row: some runs must catch it, each with exit 3 and the
/// application's order as the cause.
fn removing_files_before_rows_is_reported(app: App) {
    const SNAPSHOTS: usize = 5;
    let writer = UploadWriter::start_removing_files_first(
        app.writer_url(),
        app.storage.clone(),
        UPLOAD_ROWS,
        // Nearly all of the writer's time is spent between a removal and its
        // commit, and long enough that the earlier snapshot lacks the file too.
        std::time::Duration::from_secs(1),
    );
    writer.wait_for(KEPT_FOR + 10);
    let mut inconsistent = 0;
    for run in 0..SNAPSHOTS {
        let r = Run::of(&app.world, run);
        if r.inconsistency(run).is_none() {
            continue;
        }
        inconsistent += 1;
        assert_eq!(r.code, Some(3), "run {run}: {}", r.text);
        let cause = r.report["check"]["cause"].as_str().unwrap_or_default();
        assert!(
            cause.contains("removes a file before it commits the deletion of its row"),
            "run {run}: {}",
            r.text
        );
    }
    writer.stop();
    eprintln!("{inconsistent} of {SNAPSHOTS} runs caught a file removed before its row");
    assert!(
        inconsistent > 0,
        "no run caught a removal before its commit in {SNAPSHOTS} runs"
    );
    app.assert_no_snapshot_left();
}

/// The churning writer (file written, row committed; row deleted, file
/// removed) against SQLite: every run's check, on its copy, is clean, and every
/// snapshot restored (the copy as a file, the files into a folder) has each
/// row's file at its size.
#[test]
fn with_btrfs_and_sqlite_a_writer_adding_and_deleting_loses_no_file() {
    const SNAPSHOTS: usize = 8;
    let app = App::sqlite();
    let writer =
        UploadWriter::start_churning(app.writer_url(), app.storage.clone(), UPLOAD_ROWS, 20);
    writer.wait_for(KEPT_FOR + 100);
    let mut failures = Vec::new();
    let mut completed = 0;
    for run in 0..SNAPSHOTS {
        let before = writer.written();
        let r = Run::of(&app.world, run);
        assert!(
            writer.written() > before,
            "run {run}: the writer stood still"
        );
        let ((db, _), (_, files_end)) = (r.span("db"), r.span("storage"));
        if db > files_end {
            failures.push(format!(
                "run {run}: the files' window ends {} before the copy's instant",
                db - files_end
            ));
        }
        completed += r.report["check"]["completed"]
            .as_array()
            .map_or(0, Vec::len);
        failures.extend(r.inconsistency(run));
    }
    writer.stop();
    let ids = app.world.snapshots();
    assert_eq!(ids.len(), SNAPSHOTS, "{ids:?}");
    for id in &ids {
        let dest = app.world.restore_snapshot(id);
        let copy = rusqlite::Connection::open(dest.join("db.sqlite")).expect("open the copy");
        let mut rows = copy
            .prepare("SELECT path, size FROM upload")
            .expect("query");
        let rows: Vec<(String, i64)> = rows
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(rows.len() > 100, "restore of {id}: {} rows", rows.len());
        let lacking: Vec<&(String, i64)> = rows
            .iter()
            .filter(|(path, size)| {
                let found = std::fs::metadata(dest.join("storage").join(path)).ok();
                found.map(|m| m.len() as i64) != Some(*size)
            })
            .collect();
        if !lacking.is_empty() {
            failures.push(format!(
                "restore of {id}: {} of {} rows without their file at its size (first: {:?})",
                lacking.len(),
                rows.len(),
                lacking[0]
            ));
        }
    }
    eprintln!("{SNAPSHOTS} snapshots: {completed} files taken from the earlier snapshot");
    assert!(failures.is_empty(), "{failures:#?}");
    // Else no deletion fell between the copy and the later snapshot.
    assert!(completed > 0, "no file was completed in {SNAPSHOTS} runs");
    app.assert_no_snapshot_left();
}

/// The other order against SQLite: the file removed, then the row's deletion
/// committed a second later. A copy made in between names a file nothing holds:
/// the run says so (exit 3) with the application's order as the cause.
#[test]
fn with_btrfs_and_sqlite_a_writer_removing_files_before_rows_is_reported_with_the_order_as_cause() {
    removing_files_before_rows_is_reported(App::sqlite());
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
