//! The local index of format 2: what makes a re-run cheap without keeping anything per
//! file in memory. It remembers, per job, the stat, BLAKE3 and pack position of every
//! file of the last committed snapshot (so an unchanged file is not read again), the
//! content already stored (so a new copy of known content is referenced, not stored),
//! and the packs that hold it.
//!
//! It is a cache, never the truth: a file that is missing, corrupt or of another schema
//! version is moved aside and replaced by an empty index, which costs one full run and
//! nothing else. The caller checks it against the packs that really exist on the targets
//! (`forget_packs`) before trusting it.
//!
//! A run's rows are staged in tables of their own inside one write transaction that
//! lasts from `begin_run` to `commit_run`: lookups on the same connection see them, and
//! a process that dies at any point leaves the last committed state, because SQLite
//! rolls the unfinished transaction back. Staging lives in the same database file so
//! there is only one thing to keep consistent.
//!
//! Over 400 lines: the schema, the statements on it and the checks that decide
//! whether a file on disk is a usable index belong together (about 750 lines of
//! code); the rest is its unit tests.

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params, params_from_iter};
use std::fmt::Display;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use coffer_plugins::{ContentRef, FileStat as Stat, KnownContent as Known};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: String,
    pub stored_size: u64,
    /// Of the stored bytes, lowercase hex.
    pub blake3: String,
    /// Bytes of file content stored in it (what `used` in a marker compares to).
    pub content_size: u64,
}

/// Bumped on any change of the tables below; an index of another version is moved aside.
const SCHEMA_VERSION: i32 = 1;

/// Hashes and pack ids are stored as bytes, not hex: it halves the largest columns.
const HASH_LEN: usize = 32;
const PACK_LEN: usize = 16;

/// Negative: KiB. Bounded so that memory stays flat however many files a job has.
const CACHE_SIZE: i64 = -16 * 1024;

/// The job lock keeps other coffer processes away, so a lock that lasts this long is
/// held by nothing that matters.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Deleting by pack scans the tables (an index on pack would cost more on every run
/// than it saves on the rare prune); this many ids share one scan.
const FORGET_CHUNK: usize = 500;

// WITHOUT ROWID: every lookup is by the whole primary key, so the row lives in the key's
// b-tree and a lookup is one search instead of two.
const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE files (
    source TEXT NOT NULL, path BLOB NOT NULL,
    size INTEGER NOT NULL, mtime INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,
    ctime INTEGER NOT NULL, ctime_nsec INTEGER NOT NULL, ino INTEGER NOT NULL, dev INTEGER NOT NULL,
    blake3 BLOB NOT NULL, pack BLOB NOT NULL, pack_offset INTEGER NOT NULL,
    PRIMARY KEY (source, path)
) WITHOUT ROWID;
CREATE TABLE staged_files (
    source TEXT NOT NULL, path BLOB NOT NULL,
    size INTEGER NOT NULL, mtime INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,
    ctime INTEGER NOT NULL, ctime_nsec INTEGER NOT NULL, ino INTEGER NOT NULL, dev INTEGER NOT NULL,
    blake3 BLOB NOT NULL, pack BLOB NOT NULL, pack_offset INTEGER NOT NULL,
    PRIMARY KEY (source, path)
) WITHOUT ROWID;
CREATE TABLE content (
    blake3 BLOB NOT NULL, size INTEGER NOT NULL, pack BLOB NOT NULL, pack_offset INTEGER NOT NULL,
    PRIMARY KEY (blake3, size)
) WITHOUT ROWID;
CREATE TABLE staged_content (
    blake3 BLOB NOT NULL, size INTEGER NOT NULL, pack BLOB NOT NULL, pack_offset INTEGER NOT NULL,
    PRIMARY KEY (blake3, size)
) WITHOUT ROWID;
CREATE TABLE packs (
    id BLOB PRIMARY KEY, stored_size INTEGER NOT NULL, blake3 BLOB NOT NULL,
    content_size INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE staged_packs (
    id BLOB PRIMARY KEY, stored_size INTEGER NOT NULL, blake3 BLOB NOT NULL,
    content_size INTEGER NOT NULL
) WITHOUT ROWID;
";

const UNCHANGED: &str = "SELECT blake3, pack, pack_offset FROM files
    WHERE source = ?1 AND path = ?2 AND size = ?3 AND mtime = ?4 AND mtime_nsec = ?5
      AND ctime = ?6 AND ctime_nsec = ?7 AND ino = ?8 AND dev = ?9";
const STAGE_FILE: &str = "INSERT OR REPLACE INTO staged_files
    (source, path, size, mtime, mtime_nsec, ctime, ctime_nsec, ino, dev, blake3, pack, pack_offset)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
// Staged rows win over committed ones everywhere, as they will at commit.
const CONTENT_STAGED: &str =
    "SELECT pack, pack_offset FROM staged_content WHERE blake3 = ?1 AND size = ?2";
const CONTENT_COMMITTED: &str =
    "SELECT pack, pack_offset FROM content WHERE blake3 = ?1 AND size = ?2";
const STAGE_CONTENT: &str =
    "INSERT OR REPLACE INTO staged_content (blake3, size, pack, pack_offset)
    VALUES (?1, ?2, ?3, ?4)";
const STAGE_PACK: &str = "INSERT OR REPLACE INTO staged_packs (id, stored_size, blake3, content_size) VALUES (?1, ?2, ?3, ?4)";
const PACK_STAGED: &str =
    "SELECT stored_size, blake3, content_size FROM staged_packs WHERE id = ?1";
const PACK_COMMITTED: &str = "SELECT stored_size, blake3, content_size FROM packs WHERE id = ?1";
const PACKS: &str = "SELECT id, stored_size, blake3, content_size FROM staged_packs
    UNION ALL
    SELECT id, stored_size, blake3, content_size FROM packs WHERE id NOT IN (SELECT id FROM staged_packs)
    ORDER BY id";
const LAST_SNAPSHOT: &str = "SELECT value FROM meta WHERE key = 'last_snapshot'";

// The upserts skip rows that did not change, so an unchanged re-run rewrites no page of
// the committed tables. (`WHERE true` is how SQLite tells the upsert from a join.)
const COMMIT_CONTENT: &str = "INSERT INTO content (blake3, size, pack, pack_offset)
    SELECT blake3, size, pack, pack_offset FROM staged_content WHERE true
    ON CONFLICT (blake3, size) DO UPDATE SET pack = excluded.pack, pack_offset = excluded.pack_offset
    WHERE (content.pack, content.pack_offset) IS NOT (excluded.pack, excluded.pack_offset)";
const COMMIT_PACKS: &str = "INSERT INTO packs (id, stored_size, blake3, content_size)
    SELECT id, stored_size, blake3, content_size FROM staged_packs WHERE true
    ON CONFLICT (id) DO UPDATE SET stored_size = excluded.stored_size, blake3 = excluded.blake3,
        content_size = excluded.content_size
    WHERE (packs.stored_size, packs.blake3, packs.content_size)
        IS NOT (excluded.stored_size, excluded.blake3, excluded.content_size)";
const COMMIT_SNAPSHOT: &str = "INSERT INTO meta (key, value) VALUES ('last_snapshot', ?1)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const CLEAR_STAGING: &str =
    "DELETE FROM staged_files; DELETE FROM staged_content; DELETE FROM staged_packs;";

/// Every statement of the hot paths, prepared at open: a file whose tables are not ours
/// fails here, where it can still be moved aside, rather than in the middle of a run.
const PREPARED: &[&str] = &[
    UNCHANGED,
    STAGE_FILE,
    CONTENT_STAGED,
    CONTENT_COMMITTED,
    STAGE_CONTENT,
    STAGE_PACK,
    PACK_STAGED,
    PACK_COMMITTED,
    PACKS,
    LAST_SNAPSHOT,
];

#[derive(Debug)]
pub struct Index {
    conn: Connection,
    path: PathBuf,
    /// Between `begin_run` and `commit_run`/`abandon_run`: the run's transaction is open.
    in_run: bool,
}

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
        if version != SCHEMA_VERSION {
            bail!(
                "index {}: schema version {version}, this coffer uses {SCHEMA_VERSION} (a backup would start a new one)",
                path.display()
            );
        }
        Ok(Some(Index {
            conn,
            path,
            in_run: false,
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
        } else if version != SCHEMA_VERSION {
            return Err(OpenError::Unusable(format!(
                "schema version {version}, this coffer uses {SCHEMA_VERSION}"
            )));
        } else {
            // Reads every page once (about a second per few hundred MB): damage found
            // now costs a full run, damage found mid-run would fail every run after it.
            let check: String = conn
                .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
                .map_err(fail("checking the file"))?;
            if check != "ok" {
                return Err(OpenError::Unusable(format!("damaged: {check}")));
            }
        }
        for sql in PREPARED {
            conn.prepare_cached(sql)
                .map_err(|e| OpenError::Unusable(format!("tables are not coffer's: {e}")))?;
        }
        Ok(Index {
            conn,
            path: path.to_path_buf(),
            in_run: false,
        })
    }

    /// True when nothing was ever committed (first run, lost state_dir): the run is a full one.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.last_snapshot()?.is_none())
    }

    pub fn last_snapshot(&self) -> Result<Option<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(LAST_SNAPSHOT)
            .with_context(|| self.doing("reading the last snapshot"))?;
        stmt.query_row([], |row| row.get(0))
            .optional()
            .with_context(|| self.doing("reading the last snapshot"))
    }

    /// Starts a run: clears what a crashed run staged.
    pub fn begin_run(&mut self) -> Result<()> {
        // A run of this process that neither committed nor abandoned (an early return,
        // a panic caught by the agent) still has its transaction open.
        self.rollback()
            .with_context(|| self.doing("dropping an unfinished run"))?;
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .with_context(|| self.doing("starting a run"))?;
        self.in_run = true;
        // Staging is only ever committed empty, so this finds rows only in a file that
        // some other code wrote; it is cheap when there are none.
        if let Err(e) = self.conn.execute_batch(CLEAR_STAGING) {
            let _ = self.rollback();
            return Err(e).with_context(|| self.doing("clearing staged rows"));
        }
        Ok(())
    }

    pub fn unchanged(&mut self, source: &str, path: &[u8], stat: &Stat) -> Result<Option<Known>> {
        let doing = || self.doing_file("looking up", source, path);
        let mut stmt = self.conn.prepare_cached(UNCHANGED).with_context(doing)?;
        let row = stmt
            .query_row(
                params![
                    source,
                    path,
                    signed(stat.size),
                    stat.mtime,
                    stat.mtime_nsec,
                    stat.ctime,
                    stat.ctime_nsec,
                    signed(stat.ino),
                    signed(stat.dev)
                ],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .with_context(doing)?;
        let Some((hash, pack, offset)) = row else {
            return Ok(None);
        };
        Ok(Some(Known {
            blake3: self.stored_hex(&hash, HASH_LEN, "file hash")?,
            content: ContentRef {
                pack: self.stored_hex(&pack, PACK_LEN, "pack id")?,
                offset: unsigned(offset),
            },
        }))
    }

    /// Committed content, or content staged earlier in this run (two copies of a new file in one run).
    pub fn content(&mut self, blake3: &str, size: u64) -> Result<Option<ContentRef>> {
        let doing = || self.doing(format!("looking up content {blake3} of {size} bytes"));
        let hash = parse_hex::<HASH_LEN>(blake3, "BLAKE3 hash").with_context(doing)?;
        for sql in [CONTENT_STAGED, CONTENT_COMMITTED] {
            let mut stmt = self.conn.prepare_cached(sql).with_context(doing)?;
            let row = stmt
                .query_row(params![&hash[..], signed(size)], |row| {
                    Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()
                .with_context(doing)?;
            if let Some((pack, offset)) = row {
                return Ok(Some(ContentRef {
                    pack: self.stored_hex(&pack, PACK_LEN, "pack id")?,
                    offset: unsigned(offset),
                }));
            }
        }
        Ok(None)
    }

    pub fn stage_file(
        &mut self,
        source: &str,
        path: &[u8],
        stat: &Stat,
        blake3: &str,
        content: &ContentRef,
    ) -> Result<()> {
        let doing = || self.doing_file("staging", source, path);
        self.require_run().with_context(doing)?;
        let hash = parse_hex::<HASH_LEN>(blake3, "BLAKE3 hash").with_context(doing)?;
        let pack = parse_hex::<PACK_LEN>(&content.pack, "pack id").with_context(doing)?;
        let mut stmt = self.conn.prepare_cached(STAGE_FILE).with_context(doing)?;
        stmt.execute(params![
            source,
            path,
            signed(stat.size),
            stat.mtime,
            stat.mtime_nsec,
            stat.ctime,
            stat.ctime_nsec,
            signed(stat.ino),
            signed(stat.dev),
            &hash[..],
            &pack[..],
            signed(content.offset)
        ])
        .with_context(doing)?;
        Ok(())
    }

    pub fn stage_content(&mut self, blake3: &str, size: u64, content: &ContentRef) -> Result<()> {
        let doing = || self.doing(format!("staging content {blake3} of {size} bytes"));
        self.require_run().with_context(doing)?;
        let hash = parse_hex::<HASH_LEN>(blake3, "BLAKE3 hash").with_context(doing)?;
        let pack = parse_hex::<PACK_LEN>(&content.pack, "pack id").with_context(doing)?;
        let mut stmt = self
            .conn
            .prepare_cached(STAGE_CONTENT)
            .with_context(doing)?;
        stmt.execute(params![
            &hash[..],
            signed(size),
            &pack[..],
            signed(content.offset)
        ])
        .with_context(doing)?;
        Ok(())
    }

    pub fn stage_pack(&mut self, pack: &PackInfo) -> Result<()> {
        let doing = || self.doing(format!("staging pack {}", pack.id));
        self.require_run().with_context(doing)?;
        let id = parse_hex::<PACK_LEN>(&pack.id, "pack id").with_context(doing)?;
        let hash = parse_hex::<HASH_LEN>(&pack.blake3, "BLAKE3 hash").with_context(doing)?;
        let mut stmt = self.conn.prepare_cached(STAGE_PACK).with_context(doing)?;
        stmt.execute(params![
            &id[..],
            signed(pack.stored_size),
            &hash[..],
            signed(pack.content_size)
        ])
        .with_context(doing)?;
        Ok(())
    }

    /// A committed or staged pack.
    pub fn pack(&mut self, id: &str) -> Result<Option<PackInfo>> {
        let doing = || self.doing(format!("looking up pack {id}"));
        let key = parse_hex::<PACK_LEN>(id, "pack id").with_context(doing)?;
        for sql in [PACK_STAGED, PACK_COMMITTED] {
            let mut stmt = self.conn.prepare_cached(sql).with_context(doing)?;
            let row = stmt
                .query_row(params![&key[..]], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .optional()
                .with_context(doing)?;
            if let Some((stored_size, hash, content_size)) = row {
                return Ok(Some(PackInfo {
                    id: id.to_string(),
                    stored_size: unsigned(stored_size),
                    blake3: self.stored_hex(&hash, HASH_LEN, "pack hash")?,
                    content_size: unsigned(content_size),
                }));
            }
        }
        Ok(None)
    }

    pub fn packs(&mut self) -> Result<Vec<PackInfo>> {
        let doing = || self.doing("listing packs");
        let mut stmt = self.conn.prepare_cached(PACKS).with_context(doing)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .with_context(doing)?;
        let mut packs = Vec::new();
        for row in rows {
            let (id, stored_size, hash, content_size) = row.with_context(doing)?;
            packs.push(PackInfo {
                id: self.stored_hex(&id, PACK_LEN, "pack id")?,
                stored_size: unsigned(stored_size),
                blake3: self.stored_hex(&hash, HASH_LEN, "pack hash")?,
                content_size: unsigned(content_size),
            });
        }
        Ok(packs)
    }

    /// The last pack the per-run re-check read (`run::packs`), so the next run
    /// goes on from there; it moves only with a committed run.
    pub fn recheck_cursor(&self) -> Result<Option<String>> {
        let doing = || self.doing("reading the re-check cursor");
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'recheck_after'",
                [],
                |row| row.get(0),
            )
            .optional()
            .with_context(doing)
    }

    pub fn set_recheck_cursor(&mut self, id: &str) -> Result<()> {
        let doing = || self.doing(format!("moving the re-check cursor to pack {id}"));
        self.require_run().with_context(doing)?;
        parse_hex::<PACK_LEN>(id, "pack id").with_context(doing)?;
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('recheck_after', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [id],
            )
            .with_context(doing)?;
        Ok(())
    }

    /// The run committed snapshot `snapshot`: the files of `sources` become exactly what was staged
    /// for them (files of other sources stay), staged content and packs join the committed ones,
    /// staging is cleared; one transaction, durable when it returns.
    pub fn commit_run(&mut self, snapshot: &str, sources: &[&str]) -> Result<()> {
        let doing = format!("committing the run of snapshot {snapshot}");
        self.require_run().with_context(|| self.doing(&doing))?;
        let merged = self
            .merge_staging(snapshot, sources)
            .and_then(|()| self.conn.execute_batch("COMMIT"));
        if let Err(e) = merged {
            // The snapshot is on the targets all the same; the next run is a fuller one.
            let _ = self.rollback();
            return Err(e).with_context(|| self.doing(&doing));
        }
        self.in_run = false;
        Ok(())
    }

    fn merge_staging(&self, snapshot: &str, sources: &[&str]) -> rusqlite::Result<()> {
        if !sources.is_empty() {
            let list = vec!["?"; sources.len()].join(", ");
            // Files gone since the last run; then new and changed ones.
            self.conn.execute(
                &format!(
                    "DELETE FROM files WHERE source IN ({list}) AND NOT EXISTS
                     (SELECT 1 FROM staged_files s WHERE s.source = files.source AND s.path = files.path)"
                ),
                params_from_iter(sources),
            )?;
            self.conn.execute(
                &format!(
                    "INSERT INTO files
                     (source, path, size, mtime, mtime_nsec, ctime, ctime_nsec, ino, dev, blake3, pack, pack_offset)
                     SELECT source, path, size, mtime, mtime_nsec, ctime, ctime_nsec, ino, dev, blake3, pack, pack_offset
                     FROM staged_files WHERE source IN ({list})
                     ON CONFLICT (source, path) DO UPDATE SET
                       size = excluded.size, mtime = excluded.mtime, mtime_nsec = excluded.mtime_nsec,
                       ctime = excluded.ctime, ctime_nsec = excluded.ctime_nsec, ino = excluded.ino,
                       dev = excluded.dev, blake3 = excluded.blake3, pack = excluded.pack,
                       pack_offset = excluded.pack_offset
                     WHERE (files.size, files.mtime, files.mtime_nsec, files.ctime, files.ctime_nsec,
                            files.ino, files.dev, files.blake3, files.pack, files.pack_offset)
                       IS NOT (excluded.size, excluded.mtime, excluded.mtime_nsec, excluded.ctime,
                            excluded.ctime_nsec, excluded.ino, excluded.dev, excluded.blake3,
                            excluded.pack, excluded.pack_offset)"
                ),
                params_from_iter(sources),
            )?;
        }
        self.conn.execute(COMMIT_CONTENT, [])?;
        self.conn.execute(COMMIT_PACKS, [])?;
        self.conn.execute(COMMIT_SNAPSHOT, [snapshot])?;
        self.conn.execute_batch(CLEAR_STAGING)
    }

    /// The run failed: staged rows are dropped; committed rows untouched.
    pub fn abandon_run(&mut self) -> Result<()> {
        self.rollback()
            .with_context(|| self.doing("abandoning the run"))
    }

    /// Packs gone from every target (pruned, lost): they and every content and file row pointing into
    /// them are dropped, so those files are read and stored again. Returns how many file rows went.
    ///
    /// Inside a run it is part of the run's transaction (and undone if the run is abandoned);
    /// outside one it is committed before it returns. The count is of committed file rows.
    pub fn forget_packs(&mut self, ids: &[String]) -> Result<u64> {
        let doing = || self.doing(format!("forgetting {} packs", ids.len()));
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            keys.push(parse_hex::<PACK_LEN>(id, "pack id").with_context(doing)?);
        }
        if self.in_run {
            self.require_run().with_context(doing)?;
            return self.delete_packs(&keys).with_context(doing);
        }
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .with_context(doing)?;
        let gone = match self.delete_packs(&keys) {
            Ok(gone) => gone,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e).with_context(doing);
            }
        };
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e).with_context(doing);
        }
        Ok(gone)
    }

    /// Inside a run: drops every committed file, content and pack row, so that
    /// what the run stages is the whole index once it commits (`repair
    /// --rebuild-index` rebuilds it from a snapshot's manifest). Abandoning the
    /// run brings them back.
    pub fn clear_committed(&mut self) -> Result<()> {
        let doing = || self.doing("clearing the index for a rebuild");
        self.require_run().with_context(doing)?;
        self.conn
            .execute_batch("DELETE FROM files; DELETE FROM content; DELETE FROM packs;")
            .with_context(doing)
    }

    fn delete_packs(&self, keys: &[[u8; PACK_LEN]]) -> rusqlite::Result<u64> {
        let mut gone = 0;
        for chunk in keys.chunks(FORGET_CHUNK) {
            let list = vec!["?"; chunk.len()].join(", ");
            for (table, column) in [
                ("files", "pack"),
                ("staged_files", "pack"),
                ("content", "pack"),
                ("staged_content", "pack"),
                ("packs", "id"),
                ("staged_packs", "id"),
            ] {
                let n = self.conn.execute(
                    &format!("DELETE FROM {table} WHERE {column} IN ({list})"),
                    params_from_iter(chunk.iter().map(|key| &key[..])),
                )?;
                if table == "files" {
                    gone += n as u64;
                }
            }
        }
        Ok(gone)
    }

    fn require_run(&self) -> Result<()> {
        if !self.in_run {
            bail!("no run is open (begin_run first)");
        }
        // SQLite rolls a transaction back by itself after some errors (a full disk): the
        // run's staging is gone and must not be completed by rows staged after it.
        if self.conn.is_autocommit() {
            bail!(
                "the run's transaction was rolled back after an earlier error; the run must be abandoned"
            );
        }
        Ok(())
    }

    fn rollback(&mut self) -> rusqlite::Result<()> {
        self.in_run = false;
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK")
    }

    fn stored_hex(&self, bytes: &[u8], len: usize, what: &str) -> Result<String> {
        if bytes.len() != len {
            bail!(
                "index {}: a stored {what} has {} bytes, not {len}: the index is damaged",
                self.path.display(),
                bytes.len()
            );
        }
        Ok(to_hex(bytes))
    }

    fn doing(&self, what: impl Display) -> String {
        format!("index {}: {what}", self.path.display())
    }

    fn doing_file(&self, what: &str, source: &str, path: &[u8]) -> String {
        format!(
            "index {}: {what} {} of source {source}",
            self.path.display(),
            String::from_utf8_lossy(path)
        )
    }
}

fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let made = (|| {
        // Re-read under the write lock: only an empty file gets our tables.
        let version: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
        if version != 0 || tables != 0 {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
                Some("tables without a coffer schema version".to_string()),
            ));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
    })();
    match made {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
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

/// SQLite integers are i64. Reinterpreting the bits is a bijection, so two different
/// inodes, devices or sizes can never be stored as the same value and compare equal,
/// and the huge inode numbers some filesystems hand out are kept rather than refused.
fn signed(v: u64) -> i64 {
    v.cast_signed()
}

fn unsigned(v: i64) -> u64 {
    v.cast_unsigned()
}

fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let bad = || anyhow!("{what} {s:?} is not {} lowercase hex digits", N * 2);
    // Lowercase only, so that a stored id reads back exactly as it was given.
    if !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
    Ok(out)
}

fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    const JOB: &str = "job";

    fn hash(n: u8) -> String {
        to_hex(&[n; HASH_LEN])
    }

    #[test]
    fn ids_are_lowercase_hex_of_their_exact_length_and_read_back_as_given() {
        let id = "00ff10ab".repeat(4);
        let bytes = parse_hex::<PACK_LEN>(&id, "pack id").expect("lowercase");
        assert_eq!(to_hex(&bytes), id);
        for bad in [
            id.to_uppercase(),
            id[1..].to_string(),
            format!("{}g", &id[1..]),
        ] {
            let err = parse_hex::<PACK_LEN>(&bad, "pack id").expect_err("refused");
            assert!(err.to_string().contains("lowercase hex digits"), "{err}");
        }
    }

    fn pack_id(n: u8) -> String {
        to_hex(&[n; PACK_LEN])
    }

    fn at(pack: u8, offset: u64) -> ContentRef {
        ContentRef {
            pack: pack_id(pack),
            offset,
        }
    }

    fn stat(n: u64) -> Stat {
        Stat {
            size: 100 + n,
            mtime: 1_700_000_000 + i64::try_from(n).expect("test"),
            mtime_nsec: 11,
            ctime: 1_700_000_100,
            ctime_nsec: 22,
            ino: 1000 + n,
            dev: 64769,
        }
    }

    fn pack_info(n: u8) -> PackInfo {
        PackInfo {
            id: pack_id(n),
            stored_size: 4096 + u64::from(n),
            blake3: hash(200 + n),
            content_size: 8192 + u64::from(n),
        }
    }

    fn open(dir: &Path) -> Index {
        let (index, note) = Index::open(dir, JOB).expect("test");
        assert_eq!(note, None);
        index
    }

    fn index_file(dir: &Path) -> PathBuf {
        dir.join("index").join(format!("{JOB}.sqlite"))
    }

    fn broken_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join("index"))
            .expect("test")
            .map(|e| e.expect("test").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("job.sqlite.broken-") && !n.ends_with("-journal"))
            .collect();
        names.sort();
        names
    }

    /// One committed run: files a and b of source "src", content and pack 1.
    fn committed(dir: &Path) -> Index {
        let mut index = open(dir);
        index.begin_run().expect("test");
        index.stage_pack(&pack_info(1)).expect("test");
        for (n, name) in [(1u8, b"a".as_slice()), (2, b"b")] {
            let content = at(1, u64::from(n) * 10);
            index
                .stage_content(&hash(n), 100 + u64::from(n), &content)
                .expect("test");
            index
                .stage_file("src", name, &stat(u64::from(n)), &hash(n), &content)
                .expect("test");
        }
        index.commit_run("snap1", &["src"]).expect("test");
        index
    }

    fn known(n: u8, pack: u8) -> Known {
        Known {
            blake3: hash(n),
            content: at(pack, u64::from(n) * 10),
        }
    }

    #[test]
    fn round_trip_survives_reopening() {
        let dir = tempfile::tempdir().expect("test");
        {
            let index = open(dir.path());
            assert!(index.is_empty().expect("test"));
            assert_eq!(index.last_snapshot().expect("test"), None);
        }
        drop(committed(dir.path()));
        let mut index = open(dir.path());
        assert!(!index.is_empty().expect("test"));
        assert_eq!(
            index.last_snapshot().expect("test").as_deref(),
            Some("snap1")
        );
        assert_eq!(
            index.unchanged("src", b"a", &stat(1)).expect("test"),
            Some(known(1, 1))
        );
        assert_eq!(
            index.unchanged("src", b"b", &stat(2)).expect("test"),
            Some(known(2, 1))
        );
        assert_eq!(index.unchanged("src", b"c", &stat(1)).expect("test"), None);
        assert_eq!(
            index.unchanged("other", b"a", &stat(1)).expect("test"),
            None
        );
        assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
        assert_eq!(index.pack(&pack_id(1)).expect("test"), Some(pack_info(1)));
        assert_eq!(index.packs().expect("test"), vec![pack_info(1)]);
        let mode = fs::metadata(dir.path().join("index"))
            .expect("test")
            .permissions();
        assert_eq!(mode.mode() & 0o777, 0o700);
    }

    type Change = fn(&mut Stat);

    #[test]
    fn any_changed_stat_field_is_a_change() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = committed(dir.path());
        let base = stat(1);
        let changes: [(&str, Change); 7] = [
            ("size", |s| s.size += 1),
            ("mtime", |s| s.mtime += 1),
            ("mtime_nsec", |s| s.mtime_nsec += 1),
            ("ctime", |s| s.ctime += 1),
            ("ctime_nsec", |s| s.ctime_nsec += 1),
            ("ino", |s| s.ino += 1),
            ("dev", |s| s.dev += 1),
        ];
        for (field, change) in changes {
            let mut changed = base;
            change(&mut changed);
            assert_eq!(
                index.unchanged("src", b"a", &changed).expect("test"),
                None,
                "{field}"
            );
        }
        assert_eq!(
            index.unchanged("src", b"a", &base).expect("test"),
            Some(known(1, 1))
        );
    }

    #[test]
    fn u64_values_beyond_i64_are_kept_exactly() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = open(dir.path());
        let big = Stat {
            size: u64::MAX,
            ino: u64::MAX - 1,
            dev: 1 << 63,
            ..stat(1)
        };
        let content = at(3, u64::MAX);
        index.begin_run().expect("test");
        index
            .stage_file("src", b"big", &big, &hash(3), &content)
            .expect("test");
        index
            .stage_content(&hash(3), u64::MAX, &content)
            .expect("test");
        index
            .stage_pack(&PackInfo {
                stored_size: u64::MAX,
                ..pack_info(3)
            })
            .expect("test");
        index.commit_run("snap", &["src"]).expect("test");
        let found = index
            .unchanged("src", b"big", &big)
            .expect("test")
            .expect("test");
        assert_eq!(found.content, content);
        for other in [
            Stat {
                ino: u64::MAX,
                ..big
            },
            Stat { dev: 0, ..big },
            Stat {
                size: u64::MAX - 1,
                ..big
            },
        ] {
            assert_eq!(index.unchanged("src", b"big", &other).expect("test"), None);
        }
        assert_eq!(
            index.content(&hash(3), u64::MAX).expect("test"),
            Some(content)
        );
        assert_eq!(
            index
                .pack(&pack_id(3))
                .expect("test")
                .expect("test")
                .stored_size,
            u64::MAX
        );
    }

    #[test]
    fn non_utf8_paths_are_kept_byte_for_byte() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = open(dir.path());
        let path = b"dir/caf\xe9/\xff\xfe.txt";
        index.begin_run().expect("test");
        index
            .stage_file("src", path, &stat(1), &hash(1), &at(1, 0))
            .expect("test");
        index.commit_run("snap", &["src"]).expect("test");
        drop(index);
        let mut index = open(dir.path());
        assert!(
            index
                .unchanged("src", path, &stat(1))
                .expect("test")
                .is_some()
        );
        // The same text once both are made UTF-8 by replacement: must not match.
        assert_eq!(
            index
                .unchanged("src", b"dir/caf\xe8/\xfe\xff.txt", &stat(1))
                .expect("test"),
            None
        );
        assert_eq!(
            index
                .unchanged(
                    "src",
                    "dir/caf\u{fffd}/\u{fffd}\u{fffd}.txt".as_bytes(),
                    &stat(1)
                )
                .expect("test"),
            None
        );
    }

    #[test]
    fn content_is_found_committed_and_staged_but_not_abandoned() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = committed(dir.path());
        assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
        // Same hash, other size: another content.
        assert_eq!(index.content(&hash(1), 102).expect("test"), None);

        index.begin_run().expect("test");
        assert_eq!(index.content(&hash(7), 7).expect("test"), None);
        index.stage_content(&hash(7), 7, &at(2, 70)).expect("test");
        index.stage_pack(&pack_info(2)).expect("test");
        assert_eq!(index.content(&hash(7), 7).expect("test"), Some(at(2, 70)));
        assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
        assert_eq!(index.pack(&pack_id(2)).expect("test"), Some(pack_info(2)));
        assert_eq!(
            index.packs().expect("test"),
            vec![pack_info(1), pack_info(2)]
        );
        index.abandon_run().expect("test");

        assert_eq!(index.content(&hash(7), 7).expect("test"), None);
        assert_eq!(index.pack(&pack_id(2)).expect("test"), None);
        assert_eq!(index.packs().expect("test"), vec![pack_info(1)]);
        assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
        assert_eq!(
            index.last_snapshot().expect("test").as_deref(),
            Some("snap1")
        );
        // Abandoned means gone, not merely hidden until the next commit.
        index.begin_run().expect("test");
        index.commit_run("snap2", &[]).expect("test");
        assert_eq!(index.content(&hash(7), 7).expect("test"), None);
    }

    #[test]
    fn commit_replaces_the_files_of_the_listed_sources_only() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = open(dir.path());
        index.begin_run().expect("test");
        for source in ["one", "two", "three"] {
            for (n, name) in [(1u8, b"a".as_slice()), (2, b"b")] {
                index
                    .stage_file(source, name, &stat(u64::from(n)), &hash(n), &at(1, 0))
                    .expect("test");
            }
        }
        index
            .commit_run("snap1", &["one", "two", "three"])
            .expect("test");

        index.begin_run().expect("test");
        // one: a changed, b deleted, c new. two: staged but not committed. three: listed,
        // nothing staged, so it has no files left.
        index
            .stage_file("one", b"a", &stat(5), &hash(5), &at(2, 0))
            .expect("test");
        index
            .stage_file("one", b"c", &stat(6), &hash(6), &at(2, 1))
            .expect("test");
        index
            .stage_file("two", b"a", &stat(7), &hash(7), &at(2, 2))
            .expect("test");
        index.commit_run("snap2", &["one", "three"]).expect("test");
        drop(index);

        let mut index = open(dir.path());
        let mut look = |source: &str, name: &[u8], n: u64| {
            index
                .unchanged(source, name, &stat(n))
                .expect("test")
                .map(|k| k.blake3)
        };
        assert_eq!(look("one", b"a", 1), None);
        assert_eq!(look("one", b"a", 5), Some(hash(5)));
        assert_eq!(look("one", b"b", 2), None);
        assert_eq!(look("one", b"c", 6), Some(hash(6)));
        assert_eq!(look("two", b"a", 1), Some(hash(1)));
        assert_eq!(look("two", b"a", 7), None);
        assert_eq!(look("two", b"b", 2), Some(hash(2)));
        assert_eq!(look("three", b"a", 1), None);
        assert_eq!(look("three", b"b", 2), None);
        assert_eq!(
            index.last_snapshot().expect("test").as_deref(),
            Some("snap2")
        );
    }

    #[test]
    fn forgotten_packs_take_their_content_and_files_along() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = committed(dir.path());
        index.begin_run().expect("test");
        index.stage_pack(&pack_info(2)).expect("test");
        index
            .stage_content(&hash(3), 103, &at(2, 30))
            .expect("test");
        for n in [1u8, 2] {
            index
                .stage_file(
                    "src",
                    &[b'a' + n - 1],
                    &stat(u64::from(n)),
                    &hash(n),
                    &at(1, u64::from(n) * 10),
                )
                .expect("test");
        }
        index
            .stage_file("src", b"c", &stat(3), &hash(3), &at(2, 30))
            .expect("test");
        index
            .stage_file("other", b"x", &stat(3), &hash(3), &at(2, 30))
            .expect("test");
        index.commit_run("snap2", &["src", "other"]).expect("test");

        let gone = index.forget_packs(&[pack_id(1), pack_id(9)]).expect("test");
        assert_eq!(gone, 2);
        drop(index);
        let mut index = open(dir.path());
        assert_eq!(index.unchanged("src", b"a", &stat(1)).expect("test"), None);
        assert_eq!(index.unchanged("src", b"b", &stat(2)).expect("test"), None);
        assert_eq!(index.content(&hash(1), 101).expect("test"), None);
        assert_eq!(index.content(&hash(2), 102).expect("test"), None);
        assert_eq!(index.pack(&pack_id(1)).expect("test"), None);
        assert!(
            index
                .unchanged("src", b"c", &stat(3))
                .expect("test")
                .is_some()
        );
        assert!(
            index
                .unchanged("other", b"x", &stat(3))
                .expect("test")
                .is_some()
        );
        assert_eq!(index.content(&hash(3), 103).expect("test"), Some(at(2, 30)));
        assert_eq!(index.packs().expect("test"), vec![pack_info(2)]);
        assert_eq!(index.forget_packs(&[pack_id(1)]).expect("test"), 0);
    }

    #[test]
    fn the_re_check_cursor_moves_only_with_a_committed_run() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = committed(dir.path());
        assert_eq!(index.recheck_cursor().expect("test"), None);
        assert!(index.set_recheck_cursor(&pack_id(1)).is_err());
        index.begin_run().expect("test");
        index.set_recheck_cursor(&pack_id(1)).expect("test");
        assert!(index.set_recheck_cursor("../x").is_err());
        index.abandon_run().expect("test");
        assert_eq!(index.recheck_cursor().expect("test"), None);
        index.begin_run().expect("test");
        index.set_recheck_cursor(&pack_id(2)).expect("test");
        index.commit_run("snap2", &[]).expect("test");
        drop(index);
        let index = open(dir.path());
        assert_eq!(index.recheck_cursor().expect("test"), Some(pack_id(2)));
    }

    #[test]
    fn forgetting_inside_a_run_drops_staged_rows_too() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = committed(dir.path());
        index.begin_run().expect("test");
        index.stage_pack(&pack_info(2)).expect("test");
        index
            .stage_content(&hash(3), 103, &at(2, 30))
            .expect("test");
        index
            .stage_file("src", b"c", &stat(3), &hash(3), &at(2, 30))
            .expect("test");
        assert_eq!(index.forget_packs(&[pack_id(2)]).expect("test"), 0);
        assert_eq!(index.content(&hash(3), 103).expect("test"), None);
        assert_eq!(index.pack(&pack_id(2)).expect("test"), None);
        index.commit_run("snap2", &["src"]).expect("test");
        assert_eq!(index.unchanged("src", b"c", &stat(3)).expect("test"), None);
    }

    fn assert_fresh_and_working(index: &mut Index) {
        assert!(index.is_empty().expect("test"));
        assert_eq!(index.unchanged("src", b"a", &stat(1)).expect("test"), None);
        index.begin_run().expect("test");
        index
            .stage_file("src", b"a", &stat(1), &hash(1), &at(1, 0))
            .expect("test");
        index.commit_run("fresh", &["src"]).expect("test");
        assert!(
            index
                .unchanged("src", b"a", &stat(1))
                .expect("test")
                .is_some()
        );
    }

    fn reopen_expecting_note(dir: &Path, reason: &str) -> Index {
        let (mut index, note) = Index::open(dir, JOB).expect("test");
        let note = note.expect("a note that the index was replaced");
        assert!(note.contains("moved it aside"), "{note}");
        assert!(note.contains(reason), "{note}");
        assert!(
            note.contains(&index_file(dir).display().to_string()),
            "{note}"
        );
        assert_eq!(broken_files(dir).len(), 1, "{:?}", broken_files(dir));
        assert_fresh_and_working(&mut index);
        index
    }

    #[test]
    fn a_garbage_file_is_moved_aside() {
        let dir = tempfile::tempdir().expect("test");
        drop(committed(dir.path()));
        let path = index_file(dir.path());
        fs::write(&path, vec![0x5a; 64 * 1024]).expect("test");
        drop(reopen_expecting_note(dir.path(), "not a database"));
        let broken = dir.path().join("index").join(&broken_files(dir.path())[0]);
        assert_eq!(fs::read(broken).expect("test"), vec![0x5a; 64 * 1024]);
        // The fresh one is a good index from now on.
        let mut index = open(dir.path());
        assert!(
            index
                .unchanged("src", b"a", &stat(1))
                .expect("test")
                .is_some()
        );
    }

    #[test]
    fn damaged_pages_are_found_at_open() {
        let dir = tempfile::tempdir().expect("test");
        {
            let mut index = open(dir.path());
            index.begin_run().expect("test");
            for n in 0..2000u64 {
                let name = format!("some/longer/path/to/file-{n}");
                index
                    .stage_file("src", name.as_bytes(), &stat(n), &hash(1), &at(1, n))
                    .expect("test");
            }
            index.commit_run("snap1", &["src"]).expect("test");
        }
        let path = index_file(dir.path());
        let mut bytes = fs::read(&path).expect("test");
        assert!(bytes.len() > 16 * 4096);
        // The header and schema page stay; the rows' pages do not.
        for b in &mut bytes[4 * 4096..] {
            *b = 0xa5;
        }
        fs::write(&path, bytes).expect("test");
        drop(reopen_expecting_note(dir.path(), "damaged"));
    }

    #[test]
    fn another_schema_version_is_moved_aside() {
        let dir = tempfile::tempdir().expect("test");
        drop(committed(dir.path()));
        let conn = Connection::open(index_file(dir.path())).expect("test");
        conn.pragma_update(None, "user_version", 99).expect("test");
        drop(conn);
        drop(reopen_expecting_note(dir.path(), "schema version 99"));
    }

    #[test]
    fn a_foreign_database_is_moved_aside() {
        let dir = tempfile::tempdir().expect("test");
        fs::create_dir(dir.path().join("index")).expect("test");
        let conn = Connection::open(index_file(dir.path())).expect("test");
        conn.execute_batch("CREATE TABLE x (y)").expect("test");
        drop(conn);
        drop(reopen_expecting_note(dir.path(), "coffer schema"));
    }

    #[test]
    fn a_file_locked_for_too_long_is_moved_aside() {
        let dir = tempfile::tempdir().expect("test");
        drop(committed(dir.path()));
        let holder = Connection::open(index_file(dir.path())).expect("test");
        holder.execute_batch("BEGIN EXCLUSIVE").expect("test");
        drop(reopen_expecting_note(dir.path(), "locked"));
        drop(holder);
    }

    #[test]
    fn a_run_dropped_before_commit_leaves_the_committed_state() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = committed(dir.path());
        index.begin_run().expect("test");
        index
            .stage_file("src", b"a", &stat(5), &hash(5), &at(2, 0))
            .expect("test");
        index.stage_content(&hash(5), 105, &at(2, 0)).expect("test");
        index.stage_pack(&pack_info(2)).expect("test");
        drop(index);

        let mut index = open(dir.path());
        assert_eq!(
            index.last_snapshot().expect("test").as_deref(),
            Some("snap1")
        );
        assert_eq!(
            index.unchanged("src", b"a", &stat(1)).expect("test"),
            Some(known(1, 1))
        );
        assert_eq!(index.unchanged("src", b"a", &stat(5)).expect("test"), None);
        assert!(
            index
                .unchanged("src", b"b", &stat(2))
                .expect("test")
                .is_some()
        );
        assert_eq!(index.content(&hash(5), 105).expect("test"), None);
        assert_eq!(index.pack(&pack_id(2)).expect("test"), None);
    }

    const CRASH_DIR: &str = "H2_INDEX_CRASH_DIR";

    /// The other half of `a_process_killed_mid_run_leaves_the_committed_state`.
    #[test]
    #[ignore = "run in a child process by a_process_killed_mid_run_leaves_the_committed_state"]
    fn crashing_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR) else {
            return;
        };
        let (mut index, _) = Index::open(Path::new(&dir), JOB).expect("test");
        // A tiny cache makes SQLite write the run's pages into the file before commit,
        // as a big run does.
        index
            .conn
            .pragma_update(None, "cache_size", 8)
            .expect("test");
        index.begin_run().expect("test");
        index.forget_packs(&[pack_id(1)]).expect("test");
        for n in 0..5000u64 {
            let name = format!("new/file-{n}");
            index
                .stage_file("src", name.as_bytes(), &stat(n), &hash(5), &at(2, n))
                .expect("test");
        }
        index
            .stage_file("src", b"a", &stat(5), &hash(5), &at(2, 0))
            .expect("test");
        index.stage_content(&hash(5), 105, &at(2, 0)).expect("test");
        index.stage_pack(&pack_info(2)).expect("test");
        // No destructor, no rollback: what kill -9 leaves.
        std::process::abort();
    }

    #[test]
    fn a_process_killed_mid_run_leaves_the_committed_state() {
        let dir = tempfile::tempdir().expect("test");
        drop(committed(dir.path()));
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let output = Command::new(std::env::current_exe().expect("test"))
            .args([
                &format!("{module}::crashing_child"),
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CRASH_DIR, dir.path())
            .output()
            .expect("test");
        assert_eq!(
            output.status.signal(),
            Some(6),
            "the child was meant to abort mid-run: {output:?}"
        );
        // It died with its run's pages half written: SQLite has a journal to undo them.
        let journal = PathBuf::from(format!("{}-journal", index_file(dir.path()).display()));
        assert!(fs::metadata(&journal).expect("test").len() > 0);

        let mut index = open(dir.path());
        assert_eq!(
            index.last_snapshot().expect("test").as_deref(),
            Some("snap1")
        );
        assert_eq!(
            index.unchanged("src", b"a", &stat(1)).expect("test"),
            Some(known(1, 1))
        );
        assert_eq!(
            index
                .unchanged("src", b"new/file-1", &stat(1))
                .expect("test"),
            None
        );
        assert_eq!(index.content(&hash(1), 101).expect("test"), Some(at(1, 10)));
        assert_eq!(index.content(&hash(5), 105).expect("test"), None);
        assert_eq!(index.packs().expect("test"), vec![pack_info(1)]);
        index.begin_run().expect("test");
        index.commit_run("snap2", &[]).expect("test");
        assert_eq!(index.content(&hash(5), 105).expect("test"), None);
    }

    #[test]
    fn begin_run_clears_an_unfinished_run() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = committed(dir.path());
        index.begin_run().expect("test");
        index.stage_content(&hash(5), 105, &at(2, 0)).expect("test");
        index.stage_pack(&pack_info(2)).expect("test");
        index
            .stage_file("src", b"z", &stat(5), &hash(5), &at(2, 0))
            .expect("test");
        // The run fails without abandon_run; the agent's next run begins on the same index.
        index.begin_run().expect("test");
        assert_eq!(index.content(&hash(5), 105).expect("test"), None);
        assert_eq!(index.pack(&pack_id(2)).expect("test"), None);
        index
            .stage_file("src", b"a", &stat(1), &hash(1), &at(1, 10))
            .expect("test");
        index.commit_run("snap2", &["src"]).expect("test");
        assert_eq!(index.unchanged("src", b"z", &stat(5)).expect("test"), None);
        assert_eq!(index.unchanged("src", b"b", &stat(2)).expect("test"), None);
        assert!(
            index
                .unchanged("src", b"a", &stat(1))
                .expect("test")
                .is_some()
        );
        assert_eq!(index.packs().expect("test"), vec![pack_info(1)]);
    }

    #[test]
    fn begin_run_clears_staged_rows_left_in_the_file() {
        let dir = tempfile::tempdir().expect("test");
        drop(committed(dir.path()));
        // Staging is never committed by this code; a file that has some anyway (an older
        // or other writer) must not leak them into the next commit.
        let conn = Connection::open(index_file(dir.path())).expect("test");
        conn.execute(
            "INSERT INTO staged_content VALUES (?1, 105, ?2, 0)",
            params![&[5u8; HASH_LEN][..], &[2u8; PACK_LEN][..]],
        )
        .expect("test");
        drop(conn);
        let mut index = open(dir.path());
        index.begin_run().expect("test");
        assert_eq!(index.content(&hash(5), 105).expect("test"), None);
        index.commit_run("snap2", &[]).expect("test");
        assert_eq!(index.content(&hash(5), 105).expect("test"), None);
    }

    #[test]
    fn misuse_is_an_error_that_names_the_index() {
        let dir = tempfile::tempdir().expect("test");
        let mut index = open(dir.path());
        let path = index_file(dir.path()).display().to_string();
        let err = index
            .stage_file("src", b"a", &stat(1), &hash(1), &at(1, 0))
            .expect_err("test");
        assert!(format!("{err:#}").contains(&path), "{err:#}");
        assert!(format!("{err:#}").contains("begin_run"), "{err:#}");
        assert!(index.commit_run("snap", &["src"]).is_err());
        index.begin_run().expect("test");
        for bad in ["ABCD", "xyz", &hash(0xab).to_uppercase(), &hash(1)[..62]] {
            let err = index
                .stage_file("src", b"a", &stat(1), bad, &at(1, 0))
                .expect_err("test");
            assert!(format!("{err:#}").contains(&path), "{err:#}");
            assert!(
                format!("{err:#}").contains("staging a of source src"),
                "{err:#}"
            );
            assert!(index.content(bad, 1).is_err());
        }
        assert!(index.pack("not-a-pack").is_err());
        assert!(Index::open(dir.path(), "../x").is_err());
        assert!(Index::open(dir.path(), "").is_err());
    }
}
