//! Opening a pack for reading: the age header (bounded before age's parser sees
//! it), decryption to the identities, the seek table from the end of the zstd
//! stream (checked before anything is allocated for it), and the tables kept for
//! packs no longer open so that switching back does not fetch their tails again.

use super::super::ranged::RangedObject;
use super::super::seek_table::{FOOTER, SeekTable};
use super::{
    AGE_CHUNK, AGE_TAG, HEADER_MAX, OpenPack, PackInfo, PackReader, Plain, Table, pack_path,
};
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::sync::Arc;

/// Seek tables kept for packs no longer open: a restore that alternates between
/// more packs than it keeps open should not refetch their tails. A table is 8
/// bytes per MiB of pack.
const CACHED_TABLES: usize = 256;
/// Two sealed chunks: age authenticates the length with the last, and the seek
/// table may start in the one before when the last is short.
pub(super) const TAIL_PRELOAD: u64 = 2 * (AGE_CHUNK + AGE_TAG);

impl PackReader<'_> {
    pub(super) fn open_pack(
        &mut self,
        pack: &str,
        stored_size: u64,
        offset: u64,
        end: u64,
    ) -> io::Result<OpenPack> {
        let mut object = RangedObject::new(
            self.rt.clone(),
            self.store.clone(),
            pack_path(&self.job, pack),
            stored_size,
            self.fetched.clone(),
        );
        object.set_window_cap(self.cap.clone());
        let limit = object.fetch_limit();
        let cached = self.cached_table(pack, stored_size);
        if cached.is_none() {
            object
                .preload_tail(TAIL_PRELOAD)
                .map_err(|e| self.read_error(pack, e))?;
        }
        let header = self.check_header(pack, &mut object)?;
        let decryptor =
            age::Decryptor::new_buffered(object).map_err(|e| self.age_error(pack, &header, e))?;
        let mut plain = decryptor
            .decrypt(
                self.identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
            .map_err(|e| self.age_error(pack, &header, e))?;
        let (table, stream_len) = match cached {
            Some(hit) => hit,
            None => {
                let (table, stream_len) = self.read_table(pack, &mut plain)?;
                let table = Arc::new(table);
                self.remember(pack, stored_size, table.clone(), stream_len);
                (table, stream_len)
            }
        };
        let info = PackInfo {
            pack: pack.to_string(),
            stored_size,
            table,
            payload_start: payload_start(stored_size, stream_len),
            limit,
        };
        self.check_holds(pack, &info.table, offset, end)?;
        let (decoder, pos) = self.start_decoder(&info, plain, offset, end)?;
        Ok(OpenPack { info, decoder, pos })
    }

    /// Refuses a pack whose age header does not end within [`HEADER_MAX`] bytes,
    /// before age's parser sees it; leaves `object` at its start and returns the
    /// bytes seen (the header, to describe its recipients should none match).
    fn check_header(&self, pack: &str, object: &mut RangedObject) -> io::Result<Vec<u8>> {
        let mut seen = Vec::new();
        while !header_complete(&seen) {
            if seen.len() >= HEADER_MAX {
                return Err(self.damaged(
                    pack,
                    format!("its age header does not end within {HEADER_MAX} bytes"),
                ));
            }
            let got = object.fill_buf().map_err(|e| self.read_error(pack, e))?;
            if got.is_empty() {
                return Err(self.damaged(pack, "it ends inside its age header".into()));
            }
            let take = got.len().min(HEADER_MAX - seen.len());
            seen.extend_from_slice(&got[..take]);
            object.consume(take);
        }
        object.seek(SeekFrom::Start(0))?;
        Ok(seen)
    }

    /// Reads the seek table from the end of the zstd stream.
    fn read_table(&self, pack: &str, plain: &mut Plain) -> io::Result<(SeekTable, u64)> {
        let bad_table = |what: String| self.damaged(pack, format!("bad seek table: {what}"));
        let stream_len = plain
            .seek(SeekFrom::End(0))
            .map_err(|e| self.read_error(pack, e))?;
        if stream_len < FOOTER as u64 {
            return Err(bad_table(format!(
                "the zstd stream is {stream_len} bytes, too short to end with one"
            )));
        }
        let mut footer = [0u8; FOOTER];
        self.read_at(pack, plain, stream_len - FOOTER as u64, &mut footer)?;
        let table_len = SeekTable::table_len(&footer).map_err(|e| bad_table(e.to_string()))?;
        // Checked before allocating: the footer alone may claim up to 200 MiB.
        if table_len > stream_len {
            return Err(bad_table(format!(
                "it needs {table_len} bytes but the whole zstd stream is {stream_len}"
            )));
        }
        let mut tail = vec![0u8; usize::try_from(table_len).map_err(|e| bad_table(e.to_string()))?];
        self.read_at(pack, plain, stream_len - table_len, &mut tail)?;
        let table = SeekTable::parse(&tail, stream_len).map_err(|e| bad_table(e.to_string()))?;
        Ok((table, stream_len))
    }

    fn read_at(&self, pack: &str, plain: &mut Plain, at: u64, buf: &mut [u8]) -> io::Result<()> {
        plain
            .seek(SeekFrom::Start(at))
            .and_then(|_| plain.read_exact(buf))
            .map_err(|e| self.read_error(pack, e))
    }

    fn cached_table(&mut self, pack: &str, stored_size: u64) -> Option<(Arc<SeekTable>, u64)> {
        let at = self
            .tables
            .iter()
            .position(|t| t.pack == pack && t.stored_size == stored_size)?;
        let hit = self.tables.remove(at)?;
        let out = (hit.table.clone(), hit.stream_len);
        self.tables.push_front(hit);
        Some(out)
    }

    fn remember(&mut self, pack: &str, stored_size: u64, table: Arc<SeekTable>, stream_len: u64) {
        self.tables.truncate(CACHED_TABLES - 1);
        self.tables.push_front(Table {
            pack: pack.to_string(),
            stored_size,
            table,
            stream_len,
        });
    }
}

/// Whether `seen` holds a whole age header: the MAC line `--- ...` and its newline.
fn header_complete(seen: &[u8]) -> bool {
    seen.windows(5)
        .position(|w| w == b"\n--- ")
        .is_some_and(|at| seen[at + 5..].contains(&b'\n'))
}

/// Where the age payload (the first sealed chunk) starts in a stored object of
/// `stored_size` bytes whose plaintext is `stream_len` bytes: age seals every 64 KiB,
/// and an empty plaintext still has one (empty) chunk.
pub(super) fn payload_start(stored_size: u64, stream_len: u64) -> u64 {
    let chunks = stream_len.div_ceil(AGE_CHUNK).max(1);
    stored_size.saturating_sub(stream_len.saturating_add(chunks.saturating_mul(AGE_TAG)))
}
