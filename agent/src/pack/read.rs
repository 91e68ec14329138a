//! Reading one file's content out of a pack without downloading the pack: ranged
//! fetches under age's seekable decryption, the zstd seek table to find the frame
//! that holds the content, and decoders kept open (one per pack, for the last few
//! packs) so that a restore reading files in path order decodes each frame once.
//!
//! A pack is hostile input (age recipients are public, anyone who can write to the
//! bucket can plant one): sizes are bounded before allocating, the seek table must
//! add up, zstd's window is capped, and errors say which pack on which target is
//! wrong and how. The caller checks the returned BLAKE3 against its signed manifest.
//!
//! The parts: this file (the reader, what it keeps between reads, and its entry
//! points), `open` (a pack's age header and seek table, and the tables kept for
//! packs no longer open), `decode` (continuing or restarting a decoder, copying
//! out what was asked) and `error` (what went wrong, naming pack and target).

use super::plan::Plan;
use super::ranged::WindowCap;
use super::seek_table::SeekTable;
use crate::keys::Identities;
use object_store::ObjectStore;
use std::collections::VecDeque;
use std::io::{self, BufReader, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::runtime::Handle;

mod decode;
mod error;
mod open;

pub(crate) use super::{is_pack_id, pack_path};
pub use error::PackError;

/// Largest zstd window accepted (8 MiB): a crafted frame cannot make the decoder
/// allocate more. coffer's frames are 1 MiB and need a window of at most that.
pub const WINDOW_LOG_MAX: u32 = 23;
/// Unplanned (see `plan`), how far ahead of the decoder's position a read may
/// start and still continue decoding rather than seek: decoding a few MiB costs
/// less than refetching.
pub const REUSE_DISTANCE: u64 = 4 << 20;
/// The age header must end within this many bytes. age's parser retries from the
/// start as lines arrive, so an endless planted header would cost quadratic time.
pub const HEADER_MAX: usize = 64 << 10;
/// age STREAM: 64 KiB plaintext chunks, each sealed with a 16-byte tag.
const AGE_CHUNK: u64 = 64 << 10;
const AGE_TAG: u64 = 16;

type Plain = age::stream::StreamReader<super::ranged::RangedObject>;
type Decoder = zstd::stream::read::Decoder<'static, BufReader<Plain>>;

struct Table {
    pack: String,
    stored_size: u64,
    table: Arc<SeekTable>,
    /// Bytes of the zstd stream (the age plaintext).
    stream_len: u64,
}

/// What stays known about the pack last read from while its decoder is replaced.
struct PackInfo {
    pack: String,
    stored_size: u64,
    table: Arc<SeekTable>,
    /// Where the age payload starts in the stored object, for fetch hints.
    payload_start: u64,
    limit: super::ranged::FetchLimit,
}

/// The pack last read from, with its decoder where the last read left it.
struct OpenPack {
    info: PackInfo,
    decoder: Decoder,
    /// Uncompressed offset of the decoder's next byte.
    pos: u64,
}

pub struct PackReader<'a> {
    rt: Handle,
    store: Arc<dyn ObjectStore>,
    target: String,
    job: String,
    identities: &'a Identities,
    fetched: Arc<AtomicU64>,
    tables: VecDeque<Table>,
    /// The packs read from last, most recent first, each with its decoder where
    /// the last read left it: files in path order alternate between the packs of
    /// the runs that stored them, and reopening a pack on each switch fetched its
    /// header again and decoded a frame from its start (20x the stored bytes).
    open: VecDeque<OpenPack>,
    /// The largest fetch window each open pack may use now: [`WINDOW_BUDGET`]
    /// shared among them.
    cap: WindowCap,
    /// What the caller said its reads will need, if it did (`plan`).
    plan: Plan,
}

/// How many packs a reader keeps open. A snapshot made over many runs has its
/// files in path order spread over the packs of those runs (20 runs, 20 packs):
/// with 4 open, a restore of such a snapshot reopened a pack for most files and
/// read 3.6 times what it needed. Each open pack holds a zstd decoder (about
/// 1.3 MiB for coffer's 1 MiB frames, at most 8 MiB for a crafted pack), 64 KiB of
/// age plaintext, its tail and its share of [`WINDOW_BUDGET`].
const OPEN_PACKS: usize = 32;
/// Fetch windows of all open packs together: one pack alone still fetches up to
/// `ranged::MAX_WINDOW` at a time; 32 open get 512 KiB each.
const WINDOW_BUDGET: u64 = 16 << 20;

impl<'a> PackReader<'a> {
    /// Every byte fetched is added to `fetched`. Use from plain threads, never from
    /// inside the runtime behind `rt`: fetches `block_on` it.
    pub fn new(
        rt: Handle,
        store: Arc<dyn ObjectStore>,
        target: &str,
        job: &str,
        identities: &'a Identities,
        fetched: Arc<AtomicU64>,
    ) -> PackReader<'a> {
        PackReader {
            rt,
            store,
            target: target.to_string(),
            job: job.to_string(),
            identities,
            fetched,
            tables: VecDeque::new(),
            open: VecDeque::new(),
            cap: WindowCap::default(),
            plan: Plan::default(),
        }
    }

    /// A reader of job `job`'s packs on `target`: how every command opens one.
    pub fn of_target(
        rt: &Handle,
        target: &coffer_plugins::Target,
        job: &str,
        identities: &'a Identities,
        fetched: Arc<AtomicU64>,
    ) -> PackReader<'a> {
        PackReader::new(
            rt.clone(),
            target.store.clone(),
            &target.name,
            job,
            identities,
            fetched,
        )
    }

    /// Announces that a coming read needs `size` bytes at `offset` of `pack`: told
    /// every read ahead, the reader fetches no further than the needed bytes go.
    pub fn plan(&mut self, pack: &str, offset: u64, size: u64) {
        self.plan.need(pack, offset, size);
    }

    /// A sparse file of `size` bytes whose pieces of data (`map`, already checked
    /// with `is_valid_sparse_map`) are stored one after the other in pack `pack`
    /// from uncompressed `start`: each piece is written to `out` after `seek`
    /// is told its offset in the file (a tar stream takes them in a row, a file
    /// seeks to it). Returns the hash of the whole file, zeros included.
    #[allow(clippy::too_many_arguments)]
    pub fn read_sparse<W: Write>(
        &mut self,
        pack: &str,
        stored_size: u64,
        start: u64,
        map: &[(u64, u64)],
        size: u64,
        out: &mut W,
        mut seek: impl FnMut(&mut W, u64) -> io::Result<()>,
    ) -> io::Result<blake3::Hash> {
        let mut hasher = blake3::Hasher::new();
        let mut pos = 0u64;
        let mut at = start;
        for &(off, len) in map {
            coffer_plugins::sparse::hash_zeros(&mut hasher, off - pos);
            seek(out, off)?;
            let mut hashed = Hashed {
                out: &mut *out,
                hasher: &mut hasher,
            };
            self.read(pack, stored_size, at, len, &mut hashed)?;
            at += len;
            pos = off + len;
        }
        coffer_plugins::sparse::hash_zeros(&mut hasher, size - pos);
        Ok(hasher.finalize())
    }

    /// Writes the `size` bytes at uncompressed `offset` of pack `pack` (stored size
    /// `stored_size`, as recorded by the writer) to `out` and returns their BLAKE3.
    /// Reads at increasing offsets of one pack continue its decoder.
    pub fn read(
        &mut self,
        pack: &str,
        stored_size: u64,
        offset: u64,
        size: u64,
        out: &mut dyn Write,
    ) -> io::Result<blake3::Hash> {
        if !is_pack_id(pack) {
            return Err(self.bad_request(pack, "not a pack id (32 lowercase hex digits)"));
        }
        let Some(end) = offset.checked_add(size) else {
            return Err(self.bad_request(pack, &format!("offset {offset} + size {size} overflows")));
        };
        if size == 0 {
            return Ok(blake3::Hasher::new().finalize());
        }
        // Taken out so that any error leaves no half-read decoder behind.
        let held = self
            .open
            .iter()
            .position(|o| o.info.pack == pack && o.info.stored_size == stored_size)
            .and_then(|i| self.open.remove(i));
        let mut open = match held {
            Some(o) => self.reposition(o, offset, end)?,
            None => self.open_pack(pack, stored_size, offset, end)?,
        };
        let hash = self.copy(&mut open, offset, size, out)?;
        // A pack read past its last planned byte (or to its end) serves no read in
        // order after this one: its decoder and fetch window go now, not once 32
        // others have pushed it out (a 10 GiB chunked dump spans 165 packs; its
        // restore held 32 decoders, 110 MiB at the peak). Read again, it is
        // reopened from its cached seek table.
        let done = open.pos >= open.info.table.decompressed_len()
            || self.plan.last_end(pack).is_some_and(|end| open.pos >= end);
        if !done {
            self.open.push_front(open);
            self.open.truncate(OPEN_PACKS);
        }
        self.cap.set(WINDOW_BUDGET / self.open.len().max(1) as u64);
        Ok(hash)
    }
}

/// Hashes what goes through.
pub(crate) struct Hashed<'a, W: Write> {
    pub(crate) out: W,
    pub(crate) hasher: &'a mut blake3::Hasher,
}

impl<W: Write> Write for Hashed<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
