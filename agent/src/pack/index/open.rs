//! Opening an index: whether a file on disk is a usable index (SQLite's own
//! checks, the schema version, coffer's tables), and moving an unusable one aside
//! for a fresh one, since the index is a cache and costs one full run to rebuild.

use super::Index;
use super::schema::{PREPARED, SCHEMA_VERSION, SEEN_TABLE, create_schema, upgrade_from_1};
use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Negative: KiB. Bounded so that memory stays flat however many files a job has.
/// 8 MiB: an unchanged run of 1,000,000 files took 12.6 s with it and 12.5 s with
/// 16 MiB (its lookups go in path order), and the first backup's peak RSS fell by
/// the difference.
const CACHE_SIZE: i64 = -8 * 1024;

/// The job lock keeps other coffer processes away, so a lock that lasts this long is
/// held by nothing that matters.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why opening failed: a file that is not a usable index is replaced, any other failure
/// (permissions, a full disk, an I/O error) is reported, since a fresh file would not fare
/// better and the old one may be fine.
enum OpenError {
    Unusable(String),
    Fatal(anyhow::Error),
}

impl Index {
    /// Where the index of `job` lives: state_dir/index/<job>.sqlite.
    pub fn file(state_dir: &Path, job: &str) -> std::path::PathBuf {
        state_dir.join("index").join(format!("{job}.sqlite"))
    }

    /// state_dir/index/<job>.sqlite (creates the folder, mode 0700). A file that is not a
    /// usable index (corrupt, wrong schema version, locked by nothing) is moved aside as
    /// <job>.sqlite.broken-<unix time> and a fresh one created; the returned note says so.
    pub fn open(state_dir: &Path, job: &str) -> Result<(Index, Option<String>)> {
        if job.is_empty() || job == "." || job == ".." || job.contains(['/', '\0']) {
            bail!("job name {job:?} cannot name an index file");
        }
        let path = Index::file(state_dir, job);
        let dir = path.parent().unwrap_or(state_dir);
        // The index lists every path of the backed-up trees: not for other users' eyes.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the index folder {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making the index folder {} private", dir.display()))?;
        let why = match Index::open_file(&path) {
            Ok(index) => return Ok((index, None)),
            Err(OpenError::Fatal(e)) => return Err(e),
            Err(OpenError::Unusable(why)) => why,
        };
        let broken = move_aside(&path)?;
        match Index::open_file(&path) {
            Ok(index) => {
                let note = format!(
                    "index {} was not usable ({why}); moved it aside as {} and started an empty one: \
                     this run reads every file",
                    path.display(),
                    broken.display()
                );
                Ok((index, Some(note)))
            }
            Err(OpenError::Fatal(e)) => Err(e),
            Err(OpenError::Unusable(again)) => Err(anyhow!(
                "index {}: a fresh index is not usable either ({again}); the broken one ({why}) is {}",
                path.display(),
                broken.display()
            )),
        }
    }

    /// The job's index for reading only (`backup --dry-run`): nothing is created,
    /// moved or written, not even the folder. `None` when there is none yet.
    pub fn open_read_only(state_dir: &Path, job: &str) -> Result<Option<Index>> {
        let path = Index::file(state_dir, job);
        if !path.is_file() {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .with_context(|| format!("index {}: opening it for reading", path.display()))?;
        let version: i32 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .with_context(|| format!("index {}: reading the schema version", path.display()))?;
        // Version 1 reads as 2 without chunked files (a backup adds their table).
        if version != SCHEMA_VERSION && version != 1 {
            bail!(
                "index {}: schema version {version}, this coffer uses {SCHEMA_VERSION} (a backup would start a new one)",
                path.display()
            );
        }
        Ok(Some(Index {
            conn,
            path,
            in_run: false,
            kept_in_run: false,
        }))
    }

    fn open_file(path: &Path) -> Result<Index, OpenError> {
        let fail = |what: &'static str| {
            move |e: rusqlite::Error| classify(e, &format!("index {}: {what}", path.display()))
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(fail("opening"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(fail("setting the busy timeout"))?;
        // The first statement that reads the file: garbage shows up here as "not a
        // database". A rollback journal rather than WAL: staged rows go to fresh pages,
        // which a rollback journal does not copy, while WAL would write them twice.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "TRUNCATE", |row| row.get(0))
            .map_err(fail("setting the journal mode"))?;
        if !mode.eq_ignore_ascii_case("truncate") {
            return Err(OpenError::Unusable(format!("journal mode stays {mode}")));
        }
        // Not NORMAL: in rollback-journal mode NORMAL leaves the journal's truncation, the
        // commit itself, unsynced, so a power cut could bring the journal back and undo a
        // committed run. There is one commit per run, so FULL costs a few fsyncs.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail("setting synchronous"))?;
        conn.pragma_update(None, "cache_size", CACHE_SIZE)
            .map_err(fail("setting the cache size"))?;
        conn.set_prepared_statement_cache_capacity(32);

        let version: i32 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(fail("reading the schema version"))?;
        if version == 0 {
            create_schema(&conn).map_err(fail("creating the tables"))?;
        } else if version != SCHEMA_VERSION && version != 1 {
            return Err(OpenError::Unusable(format!(
                "schema version {version}, this coffer uses {SCHEMA_VERSION}"
            )));
        } else {
            // Reads every page once (about a second per few hundred MB): damage found
            // now costs a full run, damage found mid-run would fail every run after it.
            read_ahead(path);
            let check: String = conn
                .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
                .map_err(fail("checking the file"))?;
            if check != "ok" {
                return Err(OpenError::Unusable(format!("damaged: {check}")));
            }
            if version == 1 {
                upgrade_from_1(&conn).map_err(fail("upgrading the schema from version 1"))?;
            }
            conn.execute_batch(SEEN_TABLE)
                .map_err(fail("adding the table of unchanged files"))?;
        }
        for sql in PREPARED {
            conn.prepare_cached(sql)
                .map_err(|e| OpenError::Unusable(format!("tables are not coffer's: {e}")))?;
        }
        Ok(Index {
            conn,
            path: path.to_path_buf(),
            in_run: false,
            kept_in_run: false,
        })
    }
}

/// Reads the file through once, front to back, so the check that follows finds its
/// pages cached. The check reads a page at a time in B-tree order, which on a cold
/// cache waits on one small read after another: on a million files' index (380 MB)
/// it took 3.2 s, against 0.65 s for this read and 0.3 s for the check after it.
/// The run's lookups then find the pages cached too. Not when the file is over half
/// the memory available: its first pages could leave the cache before the check
/// reaches them, and the file would be read twice. A read that fails here is left
/// to the check to report.
fn read_ahead(path: &Path) {
    use std::io::Read;
    let Ok(mut file) = fs::File::open(path) else {
        return;
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let available = coffer_plugins::meminfo::bytes("MemAvailable").unwrap_or(0);
    if size > available / 2 {
        return;
    }
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn classify(e: rusqlite::Error, doing: &str) -> OpenError {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::NotADatabase
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked,
        ) => OpenError::Unusable(format!("{doing}: {e}")),
        _ => OpenError::Fatal(anyhow::Error::new(e).context(doing.to_string())),
    }
}

/// Renames the file and its journals, which SQLite would otherwise replay into the fresh
/// file; they keep their suffix so the broken copy can still be opened to see what went wrong.
fn move_aside(path: &Path) -> Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let broken = PathBuf::from(format!("{}.broken-{now}", path.display()));
    fs::rename(path, &broken).with_context(|| {
        format!(
            "index {}: moving the unusable index aside as {}",
            path.display(),
            broken.display()
        )
    })?;
    for suffix in ["-journal", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        let to = PathBuf::from(format!("{}{suffix}", broken.display()));
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "index {}: moving {} aside as {}",
                        path.display(),
                        from.display(),
                        to.display()
                    )
                });
            }
        }
    }
    Ok(broken)
}
