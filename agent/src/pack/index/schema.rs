//! The index's tables and every statement on them, in one place, so that a change
//! of the schema and of what reads it are made (and reviewed) together; and
//! making the tables in a new file.

use rusqlite::Connection;

/// Bumped on any change of the tables below; an index of an older version is
/// brought up to date (`CHUNK_TABLES` added to version 1), one of another is moved aside.
pub(super) const SCHEMA_VERSION: i32 = 2;

// WITHOUT ROWID: every lookup is by the whole primary key, so the row lives in the key's
// b-tree and a lookup is one search instead of two.
pub(super) const SCHEMA: &str = "
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

/// Version 2: chunked files. `chunks` is where each chunk is, as `content` is for whole
/// files (kept apart so that a file's content never points at a chunk's entry, nor a
/// chunk at a file's: a pack unpacked with plain tar has every chunk under its name);
/// `lists` the chunks of each chunked file's content, by the whole file's hash and size
/// (`codec::encode_chunks`). A chunked file's `files` row has an empty `pack`.
pub(super) const CHUNK_TABLES: &str = "
CREATE TABLE chunks (
    blake3 BLOB NOT NULL, size INTEGER NOT NULL, pack BLOB NOT NULL, pack_offset INTEGER NOT NULL,
    PRIMARY KEY (blake3, size)
) WITHOUT ROWID;
CREATE TABLE staged_chunks (
    blake3 BLOB NOT NULL, size INTEGER NOT NULL, pack BLOB NOT NULL, pack_offset INTEGER NOT NULL,
    PRIMARY KEY (blake3, size)
) WITHOUT ROWID;
CREATE TABLE lists (
    blake3 BLOB NOT NULL, size INTEGER NOT NULL, chunks BLOB NOT NULL,
    PRIMARY KEY (blake3, size)
) WITHOUT ROWID;
CREATE TABLE staged_lists (
    blake3 BLOB NOT NULL, size INTEGER NOT NULL, chunks BLOB NOT NULL,
    PRIMARY KEY (blake3, size)
) WITHOUT ROWID;
";

pub(super) const UNCHANGED: &str = "SELECT blake3, pack, pack_offset FROM files
    WHERE source = ?1 AND path = ?2 AND size = ?3 AND mtime = ?4 AND mtime_nsec = ?5
      AND ctime = ?6 AND ctime_nsec = ?7 AND ino = ?8 AND dev = ?9";
pub(super) const STAGE_FILE: &str = "INSERT OR REPLACE INTO staged_files
    (source, path, size, mtime, mtime_nsec, ctime, ctime_nsec, ino, dev, blake3, pack, pack_offset)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
// Staged rows win over committed ones everywhere, as they will at commit.
pub(super) const CONTENT_STAGED: &str =
    "SELECT pack, pack_offset FROM staged_content WHERE blake3 = ?1 AND size = ?2";
pub(super) const CONTENT_COMMITTED: &str =
    "SELECT pack, pack_offset FROM content WHERE blake3 = ?1 AND size = ?2";
pub(super) const STAGE_CONTENT: &str =
    "INSERT OR REPLACE INTO staged_content (blake3, size, pack, pack_offset)
    VALUES (?1, ?2, ?3, ?4)";
pub(super) const CHUNK_STAGED: &str =
    "SELECT pack, pack_offset FROM staged_chunks WHERE blake3 = ?1 AND size = ?2";
pub(super) const CHUNK_COMMITTED: &str =
    "SELECT pack, pack_offset FROM chunks WHERE blake3 = ?1 AND size = ?2";
pub(super) const STAGE_CHUNK: &str =
    "INSERT OR REPLACE INTO staged_chunks (blake3, size, pack, pack_offset)
    VALUES (?1, ?2, ?3, ?4)";
pub(super) const LIST_STAGED: &str =
    "SELECT chunks FROM staged_lists WHERE blake3 = ?1 AND size = ?2";
pub(super) const LIST_COMMITTED: &str = "SELECT chunks FROM lists WHERE blake3 = ?1 AND size = ?2";
pub(super) const STAGE_LIST: &str =
    "INSERT OR REPLACE INTO staged_lists (blake3, size, chunks) VALUES (?1, ?2, ?3)";
pub(super) const STAGE_PACK: &str = "INSERT OR REPLACE INTO staged_packs (id, stored_size, blake3, content_size) VALUES (?1, ?2, ?3, ?4)";
pub(super) const PACK_STAGED: &str =
    "SELECT stored_size, blake3, content_size FROM staged_packs WHERE id = ?1";
pub(super) const PACK_COMMITTED: &str =
    "SELECT stored_size, blake3, content_size FROM packs WHERE id = ?1";
pub(super) const PACKS: &str = "SELECT id, stored_size, blake3, content_size FROM staged_packs
    UNION ALL
    SELECT id, stored_size, blake3, content_size FROM packs WHERE id NOT IN (SELECT id FROM staged_packs)
    ORDER BY id";
pub(super) const LAST_SNAPSHOT: &str = "SELECT value FROM meta WHERE key = 'last_snapshot'";

// The upserts skip rows that did not change, so an unchanged re-run rewrites no page of
// the committed tables. (`WHERE true` is how SQLite tells the upsert from a join.)
pub(super) const COMMIT_CONTENT: &str = "INSERT INTO content (blake3, size, pack, pack_offset)
    SELECT blake3, size, pack, pack_offset FROM staged_content WHERE true
    ON CONFLICT (blake3, size) DO UPDATE SET pack = excluded.pack, pack_offset = excluded.pack_offset
    WHERE (content.pack, content.pack_offset) IS NOT (excluded.pack, excluded.pack_offset)";
pub(super) const COMMIT_CHUNKS: &str = "INSERT INTO chunks (blake3, size, pack, pack_offset)
    SELECT blake3, size, pack, pack_offset FROM staged_chunks WHERE true
    ON CONFLICT (blake3, size) DO UPDATE SET pack = excluded.pack, pack_offset = excluded.pack_offset
    WHERE (chunks.pack, chunks.pack_offset) IS NOT (excluded.pack, excluded.pack_offset)";
pub(super) const COMMIT_LISTS: &str = "INSERT INTO lists (blake3, size, chunks)
    SELECT blake3, size, chunks FROM staged_lists WHERE true
    ON CONFLICT (blake3, size) DO UPDATE SET chunks = excluded.chunks
    WHERE lists.chunks IS NOT excluded.chunks";
pub(super) const COMMIT_PACKS: &str = "INSERT INTO packs (id, stored_size, blake3, content_size)
    SELECT id, stored_size, blake3, content_size FROM staged_packs WHERE true
    ON CONFLICT (id) DO UPDATE SET stored_size = excluded.stored_size, blake3 = excluded.blake3,
        content_size = excluded.content_size
    WHERE (packs.stored_size, packs.blake3, packs.content_size)
        IS NOT (excluded.stored_size, excluded.blake3, excluded.content_size)";
pub(super) const COMMIT_SNAPSHOT: &str =
    "INSERT INTO meta (key, value) VALUES ('last_snapshot', ?1)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";
pub(super) const CLEAR_STAGING: &str =
    "DELETE FROM staged_files; DELETE FROM staged_content; DELETE FROM staged_packs;
     DELETE FROM staged_chunks; DELETE FROM staged_lists; DELETE FROM seen_files;";

/// The files of this run found unchanged: only their names, where `staged_files`
/// would copy every column of a row that stays as it is, and the commit would
/// compare them all again (2-3 s of an unchanged run of a million files). A run's
/// own rows, like staging, so it needs no schema version: made at open when
/// missing, and an older coffer leaves it alone.
pub(super) const SEEN_TABLE: &str = "CREATE TABLE IF NOT EXISTS seen_files (
    source TEXT NOT NULL, path BLOB NOT NULL,
    PRIMARY KEY (source, path)
) WITHOUT ROWID;";
// Never a name staged in this run: the commit counts the two apart.
pub(super) const MARK_SEEN: &str = "INSERT OR IGNORE INTO seen_files (source, path)
    SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM staged_files WHERE source = ?1 AND path = ?2)";
pub(super) const UNSEE: &str = "DELETE FROM seen_files WHERE source = ?1 AND path = ?2";

/// Every statement of the hot paths, prepared at open: a file whose tables are not ours
/// fails here, where it can still be moved aside, rather than in the middle of a run.
pub(super) const PREPARED: &[&str] = &[
    UNCHANGED,
    STAGE_FILE,
    MARK_SEEN,
    UNSEE,
    CONTENT_STAGED,
    CONTENT_COMMITTED,
    STAGE_CONTENT,
    CHUNK_STAGED,
    CHUNK_COMMITTED,
    STAGE_CHUNK,
    LIST_STAGED,
    LIST_COMMITTED,
    STAGE_LIST,
    STAGE_PACK,
    PACK_STAGED,
    PACK_COMMITTED,
    PACKS,
    LAST_SNAPSHOT,
];

pub(super) fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    write_transaction(conn, || {
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
        conn.execute_batch(CHUNK_TABLES)?;
        conn.execute_batch(SEEN_TABLE)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
    })
}

/// Brings a version 1 index (before chunked files) to version 2: its rows stay valid,
/// so upgrading costs no full run.
pub(super) fn upgrade_from_1(conn: &Connection) -> rusqlite::Result<()> {
    write_transaction(conn, || {
        let version: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version != 1 {
            // Another process upgraded it meanwhile.
            return Ok(());
        }
        conn.execute_batch(CHUNK_TABLES)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
    })
}

/// Runs `change` under the write lock (`BEGIN IMMEDIATE`): committed when it
/// succeeds, rolled back when it fails.
fn write_transaction(
    conn: &Connection,
    change: impl FnOnce() -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match change() {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
