//! What a run asks the index: whether a file is unchanged since the last
//! committed run, where known content and packs are (staged rows first, as they
//! will win at commit), and where the per-run re-check of packs goes on.

use super::codec::{decode_chunks, parse_hex, signed, unsigned};
use super::schema::{
    CHUNK_COMMITTED, CHUNK_STAGED, CONTENT_COMMITTED, CONTENT_STAGED, LAST_SNAPSHOT,
    LIST_COMMITTED, LIST_STAGED, PACK_COMMITTED, PACK_STAGED, PACKS, UNCHANGED,
};
use super::{ContentRef, HASH_LEN, Index, Known, PACK_LEN, PackInfo, Stat};
use anyhow::{Context, Result};
use coffer_plugins::{Chunk, Stored};
use rusqlite::{OptionalExtension, params};

impl Index {
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
        drop(stmt);
        let Some((hash, pack, offset)) = row else {
            return Ok(None);
        };
        let blake3 = self.stored_hex(&hash, HASH_LEN, "file hash")?;
        let content = if pack.is_empty() {
            // A chunked file: unchanged only while its list is still known (a
            // forgotten pack takes the lists that use it).
            match self.list(&blake3, stat.size)? {
                Some(list) => Stored::Chunks(list),
                None => return Ok(None),
            }
        } else {
            Stored::At(ContentRef {
                pack: self.stored_hex(&pack, PACK_LEN, "pack id")?,
                offset: unsigned(offset),
            })
        };
        Ok(Some(Known { blake3, content }))
    }

    /// The chunks of a chunked file's content, committed or staged in this run.
    pub fn list(&self, blake3: &str, size: u64) -> Result<Option<Vec<Chunk>>> {
        let doing = || self.doing(format!("looking up the chunks of {blake3} ({size} bytes)"));
        let hash = parse_hex::<HASH_LEN>(blake3, "BLAKE3 hash").with_context(doing)?;
        for sql in [LIST_STAGED, LIST_COMMITTED] {
            let mut stmt = self.conn.prepare_cached(sql).with_context(doing)?;
            let row = stmt
                .query_row(params![&hash[..], signed(size)], |row| {
                    row.get::<_, Vec<u8>>(0)
                })
                .optional()
                .with_context(doing)?;
            if let Some(list) = row {
                let list = decode_chunks(&list)
                    .with_context(|| format!("{}: the index is damaged", doing()))?;
                return Ok(Some(list));
            }
        }
        Ok(None)
    }

    /// Committed content, or content staged earlier in this run (two copies of a new file in one run).
    pub fn content(&mut self, blake3: &str, size: u64) -> Result<Option<ContentRef>> {
        self.place_of([CONTENT_STAGED, CONTENT_COMMITTED], "content", blake3, size)
    }

    /// A chunk stored by a committed run or earlier in this one.
    pub fn chunk(&mut self, blake3: &str, size: u64) -> Result<Option<ContentRef>> {
        self.place_of([CHUNK_STAGED, CHUNK_COMMITTED], "chunk", blake3, size)
    }

    fn place_of(
        &mut self,
        sqls: [&str; 2],
        what: &str,
        blake3: &str,
        size: u64,
    ) -> Result<Option<ContentRef>> {
        let doing = || self.doing(format!("looking up {what} {blake3} of {size} bytes"));
        let hash = parse_hex::<HASH_LEN>(blake3, "BLAKE3 hash").with_context(doing)?;
        for sql in sqls {
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
}
