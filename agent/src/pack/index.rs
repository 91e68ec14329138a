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
//! The parts: `schema` (the tables and every statement on them), `open` (whether
//! a file on disk is a usable index, and moving it aside when not), `lookup`
//! (what a run asks), `run` (staging and committing a run), `forget` (dropping
//! packs that are gone) and `codec` (how values are stored in columns).

use anyhow::{Result, bail};
use rusqlite::Connection;
use std::fmt::Display;
use std::path::PathBuf;

pub(crate) use coffer_plugins::{ContentRef, FileStat as Stat, KnownContent as Known};

mod codec;
mod forget;
mod lookup;
mod open;
mod run;
mod schema;

#[cfg(test)]
use codec::parse_hex;
use codec::to_hex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: String,
    pub stored_size: u64,
    /// Of the stored bytes, lowercase hex.
    pub blake3: String,
    /// Bytes of file content stored in it (what `used` in a marker compares to).
    pub content_size: u64,
}

/// Hashes and pack ids are stored as bytes, not hex: it halves the largest columns.
const HASH_LEN: usize = 32;
const PACK_LEN: usize = 16;

#[derive(Debug)]
pub struct Index {
    conn: Connection,
    path: PathBuf,
    /// Between `begin_run` and `commit_run`/`abandon_run`: the run's transaction is open.
    in_run: bool,
    /// This run kept a file (`keep_file`): a file staged after it may be one it
    /// kept, whose name must then leave `seen_files`.
    kept_in_run: bool,
}

impl Index {
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

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
