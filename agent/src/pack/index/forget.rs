//! Dropping packs that are gone from every target (pruned, lost) with every row
//! that points into them, so that their files are read and stored again; and
//! clearing the index for `repair --rebuild-index`.

use super::codec::{CHUNK_LEN, parse_hex};
use super::{Index, PACK_LEN};
use anyhow::{Context, Result};
use rusqlite::params_from_iter;

/// Deleting by pack scans the tables (an index on pack would cost more on every run
/// than it saves on the rare prune); this many ids share one scan.
const FORGET_CHUNK: usize = 500;

impl Index {
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
            .execute_batch(
                "DELETE FROM files; DELETE FROM content; DELETE FROM packs; DELETE FROM chunks;
                 DELETE FROM lists;",
            )
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
                ("chunks", "pack"),
                ("staged_chunks", "pack"),
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
        gone += self.delete_lists_in(keys)?;
        Ok(gone)
    }

    /// Drops the lists of chunked files with a chunk in one of the packs `keys`: their
    /// `files` rows then find no list and the files are read again. Lists are few
    /// (files over the read buffer), so they are scanned. Returns how many committed
    /// lists went (each a chunked file's content, counted with the files).
    fn delete_lists_in(&self, keys: &[[u8; PACK_LEN]]) -> rusqlite::Result<u64> {
        let mut gone = 0;
        let packs: std::collections::HashSet<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        for table in ["lists", "staged_lists"] {
            let mut doomed = Vec::new();
            {
                let mut stmt = self
                    .conn
                    .prepare(&format!("SELECT blake3, size, chunks FROM {table}"))?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    let chunks: Vec<u8> = row.get(2)?;
                    // A list that does not decode is dropped too: it cannot be used.
                    let hit = !chunks.len().is_multiple_of(CHUNK_LEN)
                        || chunks
                            .chunks_exact(CHUNK_LEN)
                            .any(|c| packs.contains(&c[32..48]));
                    if hit {
                        doomed.push((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?));
                    }
                }
            }
            for (hash, size) in doomed {
                let n = self.conn.execute(
                    &format!("DELETE FROM {table} WHERE blake3 = ?1 AND size = ?2"),
                    rusqlite::params![hash, size],
                )?;
                if table == "lists" {
                    gone += n as u64;
                }
            }
        }
        Ok(gone)
    }
}
