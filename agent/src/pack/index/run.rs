//! A run's writes: staging its files, content and packs inside one write
//! transaction from `begin_run` to `commit_run` (or `abandon_run`), so that a
//! process that dies at any point leaves the last committed state.

use super::codec::{encode_chunks, parse_hex, signed};
use super::schema::{
    CLEAR_STAGING, COMMIT_CHUNKS, COMMIT_CONTENT, COMMIT_LISTS, COMMIT_PACKS, COMMIT_SNAPSHOT,
    MARK_SEEN, STAGE_CHUNK, STAGE_CONTENT, STAGE_FILE, STAGE_LIST, STAGE_PACK, UNSEE,
};
use super::{ContentRef, HASH_LEN, Index, PACK_LEN, PackInfo, Stat};
use anyhow::{Context, Result, bail};
use coffer_plugins::{Chunk, Stored};
use rusqlite::{params, params_from_iter};

impl Index {
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
        self.kept_in_run = false;
        // Staging is only ever committed empty, so this finds rows only in a file that
        // some other code wrote; it is cheap when there are none.
        if let Err(e) = self.conn.execute_batch(CLEAR_STAGING) {
            let _ = self.rollback();
            return Err(e).with_context(|| self.doing("clearing staged rows"));
        }
        Ok(())
    }

    pub fn stage_file(
        &mut self,
        source: &str,
        path: &[u8],
        stat: &Stat,
        blake3: &str,
        content: &Stored,
    ) -> Result<()> {
        let doing = || self.doing_file("staging", source, path);
        self.require_run().with_context(doing)?;
        let hash = parse_hex::<HASH_LEN>(blake3, "BLAKE3 hash").with_context(doing)?;
        // A chunked file has no pack of its own: its list is under its hash.
        let (pack, offset) = match content {
            Stored::At(c) => (
                parse_hex::<PACK_LEN>(&c.pack, "pack id")
                    .with_context(doing)?
                    .to_vec(),
                c.offset,
            ),
            Stored::Chunks(_) => (Vec::new(), 0),
        };
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
            signed(offset)
        ])
        .with_context(doing)?;
        // A statement per new file of a first run otherwise, for nothing.
        if self.kept_in_run {
            let mut stmt = self.conn.prepare_cached(UNSEE).with_context(doing)?;
            stmt.execute(params![source, path]).with_context(doing)?;
        }
        Ok(())
    }

    /// `path` of `source` is in this run as its committed row says (`unchanged`
    /// found it): kept at commit without being staged.
    pub fn keep_file(&mut self, source: &str, path: &[u8]) -> Result<()> {
        self.kept_in_run = true;
        let doing = || self.doing_file("keeping", source, path);
        self.require_run().with_context(doing)?;
        let mut stmt = self.conn.prepare_cached(MARK_SEEN).with_context(doing)?;
        stmt.execute(params![source, path]).with_context(doing)?;
        Ok(())
    }

    /// The chunks of a chunked file's content, stored (or found) by this run.
    pub fn stage_list(&mut self, blake3: &str, size: u64, chunks: &[Chunk]) -> Result<()> {
        let doing = || self.doing(format!("staging the chunks of {blake3} ({size} bytes)"));
        self.require_run().with_context(doing)?;
        let hash = parse_hex::<HASH_LEN>(blake3, "BLAKE3 hash").with_context(doing)?;
        let list = encode_chunks(chunks).with_context(doing)?;
        let mut stmt = self.conn.prepare_cached(STAGE_LIST).with_context(doing)?;
        stmt.execute(params![&hash[..], signed(size), list])
            .with_context(doing)?;
        Ok(())
    }

    pub fn stage_content(&mut self, blake3: &str, size: u64, content: &ContentRef) -> Result<()> {
        self.stage_place(STAGE_CONTENT, "content", blake3, size, content)
    }

    /// A chunk this run stored (or, rebuilding, that a snapshot references).
    pub fn stage_chunk(&mut self, blake3: &str, size: u64, at: &ContentRef) -> Result<()> {
        self.stage_place(STAGE_CHUNK, "chunk", blake3, size, at)
    }

    fn stage_place(
        &mut self,
        sql: &str,
        what: &str,
        blake3: &str,
        size: u64,
        content: &ContentRef,
    ) -> Result<()> {
        let doing = || self.doing(format!("staging {what} {blake3} of {size} bytes"));
        self.require_run().with_context(doing)?;
        let hash = parse_hex::<HASH_LEN>(blake3, "BLAKE3 hash").with_context(doing)?;
        let pack = parse_hex::<PACK_LEN>(&content.pack, "pack id").with_context(doing)?;
        let mut stmt = self.conn.prepare_cached(sql).with_context(doing)?;
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
    /// or kept for them (files of other sources stay), staged content and packs join the committed ones,
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
            // New and changed files; then files gone since the last run.
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
            for source in sources {
                self.delete_gone_files(source)?;
            }
        }
        self.conn.execute(COMMIT_CONTENT, [])?;
        self.conn.execute(COMMIT_CHUNKS, [])?;
        self.conn.execute(COMMIT_LISTS, [])?;
        self.conn.execute(COMMIT_PACKS, [])?;
        self.conn.execute(COMMIT_SNAPSHOT, [snapshot])?;
        self.conn.execute_batch(CLEAR_STAGING)
    }

    /// Deletes the rows of `source` that this run neither kept nor staged. Kept and
    /// staged names are apart (`MARK_SEEN`, `UNSEE`) and every kept name has its
    /// row, so when the rows number as many as the two together, none is gone, and
    /// the search for gone rows (an anti-join over every row) is skipped.
    fn delete_gone_files(&self, source: &str) -> rusqlite::Result<()> {
        let count = |table: &str| -> rusqlite::Result<i64> {
            self.conn.query_row(
                &format!("SELECT count(*) FROM {table} WHERE source = ?1"),
                [source],
                |row| row.get(0),
            )
        };
        if count("files")? == count("seen_files")? + count("staged_files")? {
            return Ok(());
        }
        self.conn.execute(
            "DELETE FROM files WHERE source = ?1
             AND NOT EXISTS (SELECT 1 FROM seen_files s WHERE s.source = files.source AND s.path = files.path)
             AND NOT EXISTS (SELECT 1 FROM staged_files s WHERE s.source = files.source AND s.path = files.path)",
            [source],
        )?;
        Ok(())
    }

    /// The run failed: staged rows are dropped; committed rows untouched.
    pub fn abandon_run(&mut self) -> Result<()> {
        self.rollback()
            .with_context(|| self.doing("abandoning the run"))
    }

    pub(super) fn require_run(&self) -> Result<()> {
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

    pub(super) fn rollback(&mut self) -> rusqlite::Result<()> {
        self.in_run = false;
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK")
    }
}
