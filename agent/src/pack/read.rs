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
//! Over 400 lines: one reader with its error kinds, the cached seek tables and the
//! decoders it keeps between reads and what it was told the reads will need (about
//! 580 lines); the rest is its unit tests.

use super::plan::Plan;
use super::ranged::{FetchLimit, RangedObject, WindowCap, is_fetch_error};
use super::seek_table::{FOOTER, SeekTable};
use age::stream::StreamReader;
use object_store::ObjectStore;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use thiserror::Error;
use tokio::runtime::Handle;

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
/// Seek tables kept for packs no longer open: a restore that alternates between
/// more packs than it keeps open should not refetch their tails. A table is 8
/// bytes per MiB of pack.
const CACHED_TABLES: usize = 256;
/// age STREAM: 64 KiB plaintext chunks, each sealed with a 16-byte tag.
const AGE_CHUNK: u64 = 64 << 10;
const AGE_TAG: u64 = 16;
/// Two sealed chunks: age authenticates the length with the last, and the seek
/// table may start in the one before when the last is short.
const TAIL_PRELOAD: u64 = 2 * (AGE_CHUNK + AGE_TAG);
const COPY_BUF: u64 = 64 << 10;
/// zstd's largest block: decoding any byte of one needs all of it.
const ZSTD_BLOCK: u64 = 128 << 10;

pub(crate) use super::{is_pack_id, pack_path};
use crate::keys::Identities;

/// What went wrong with a pack. [`PackReader::read`] returns these inside an
/// `io::Error` (`get_ref()` and downcast to tell them apart).
#[derive(Debug, Error)]
pub enum PackError {
    #[error(
        "pack {pack} on target {target}: not encrypted to this identity; it was encrypted to {recipients}"
    )]
    NotForIdentity {
        pack: String,
        target: String,
        /// What its age header shows (`key_match::describe_recipients`).
        recipients: String,
    },
    #[error("pack {pack} on target {target} is damaged: {what}")]
    Damaged {
        pack: String,
        target: String,
        what: String,
    },
    #[error(
        "pack {pack} on target {target} holds {holds} bytes of content, too few for bytes {offset}..{end}"
    )]
    TooShort {
        pack: String,
        target: String,
        holds: u64,
        offset: u64,
        end: u64,
    },
    #[error("pack {pack} on target {target}: {cause}")]
    Fetch {
        pack: String,
        target: String,
        cause: io::Error,
    },
    #[error("pack {pack} on target {target}: {what}")]
    BadRequest {
        pack: String,
        target: String,
        what: String,
    },
}

impl From<PackError> for io::Error {
    fn from(e: PackError) -> io::Error {
        let kind = match &e {
            PackError::NotForIdentity { .. } => io::ErrorKind::PermissionDenied,
            PackError::Damaged { .. } => io::ErrorKind::InvalidData,
            PackError::TooShort { .. } => io::ErrorKind::UnexpectedEof,
            PackError::Fetch { cause, .. } => cause.kind(),
            PackError::BadRequest { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

type Plain = StreamReader<RangedObject>;
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
    limit: FetchLimit,
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
        self.open.push_front(open);
        self.open.truncate(OPEN_PACKS);
        self.cap.set(WINDOW_BUDGET / self.open.len() as u64);
        Ok(hash)
    }

    fn open_pack(
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

    /// Continues the decoder when `offset` is ahead of it in the frame it is
    /// decoding or, planned, in the same run of needed frames (a seek there would
    /// go back before the last window fetched and fetch it again); unplanned, when
    /// `offset` is a little ahead. Else seeks to the frame holding `offset`:
    /// decoding on would fetch every byte between, which a restore skipping files
    /// the snapshot no longer has (deleted, changed since) does not need.
    fn reposition(&self, open: OpenPack, offset: u64, end: u64) -> io::Result<OpenPack> {
        let OpenPack { info, decoder, pos } = open;
        self.check_holds(&info.pack, &info.table, offset, end)?;
        let frame_start = info
            .table
            .locate(offset)
            .map_or(u64::MAX, |f| f.decompressed_start);
        let near = match self.plan.run_end(&info.pack, pos) {
            Some(run_end) => offset < run_end,
            None => !self.plan.any() && offset - pos.min(offset) <= REUSE_DISTANCE,
        };
        if offset >= pos && (frame_start <= pos || near) {
            // Reading on in order: let fetch windows grow, over the planned need.
            match self.planned_end(&info, offset) {
                Some(at) => info.limit.set(at),
                None => info.limit.clear(),
            }
            return Ok(OpenPack { info, decoder, pos });
        }
        let plain = decoder.finish().into_inner();
        let (decoder, pos) = self.start_decoder(&info, plain, offset, end)?;
        Ok(OpenPack { info, decoder, pos })
    }

    /// The stored offset past the sealed chunks that hold the planned run of needs
    /// around `offset`, and one zstd block more (a block is decoded whole). Inside
    /// a frame the compressed position is taken in proportion: a hint, which a
    /// decoder needing more simply reads past.
    fn planned_end(&self, info: &PackInfo, offset: u64) -> Option<u64> {
        let end = self
            .plan
            .run_end(&info.pack, offset)?
            .min(info.table.decompressed_len());
        let last = info.table.locate(end.checked_sub(1)?)?;
        let into = u128::from(end - last.decompressed_start) * u128::from(last.compressed_size)
            / u128::from(last.decompressed_size.max(1));
        let at = last
            .compressed_start
            .saturating_add(u64::try_from(into).unwrap_or(u64::MAX))
            .saturating_add(ZSTD_BLOCK)
            .min(last.compressed_end());
        Some(cipher_end(info.payload_start, at))
    }

    /// A fresh decoder at the frame holding `offset`, and that frame's start.
    fn start_decoder(
        &self,
        info: &PackInfo,
        mut plain: Plain,
        offset: u64,
        end: u64,
    ) -> io::Result<(Decoder, u64)> {
        let Some(first) = info.table.locate(offset) else {
            return Err(self.too_short(&info.pack, &info.table, offset, end));
        };
        // Fetch no further than the planned need or, unplanned, the sealed chunks of
        // the first frame needed: a small read must not pull a doubled window. Past
        // it windows start small again.
        info.limit.set(
            self.planned_end(info, offset)
                .unwrap_or_else(|| cipher_end(info.payload_start, first.compressed_end())),
        );
        plain
            .seek(SeekFrom::Start(first.compressed_start))
            .map_err(|e| self.read_error(&info.pack, e))?;
        let mut decoder = zstd::stream::read::Decoder::new(plain)?;
        decoder.window_log_max(WINDOW_LOG_MAX)?;
        Ok((decoder, first.decompressed_start))
    }

    fn copy(
        &self,
        open: &mut OpenPack,
        offset: u64,
        size: u64,
        out: &mut dyn Write,
    ) -> io::Result<blake3::Hash> {
        let pack = open.info.pack.as_str();
        let ended = || {
            self.damaged(
                pack,
                "its frames decode to fewer bytes than its seek table lists".into(),
            )
        };
        let skip = offset - open.pos;
        let skipped = io::copy(&mut (&mut open.decoder).take(skip), &mut io::sink())
            .map_err(|e| self.read_error(pack, e))?;
        if skipped < skip {
            return Err(ended());
        }
        open.pos = offset;
        let mut hasher = blake3::Hasher::new();
        // At most COPY_BUF, so it fits usize.
        let mut buf = vec![0u8; size.min(COPY_BUF) as usize];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match open.decoder.read(&mut buf[..want]) {
                Ok(0) => return Err(ended()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(pack, e)),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot write content of pack {pack} on target {}: {e}",
                        self.target
                    ),
                )
            })?;
            left -= n as u64;
            open.pos += n as u64;
        }
        Ok(hasher.finalize())
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

    fn check_holds(&self, pack: &str, table: &SeekTable, offset: u64, end: u64) -> io::Result<()> {
        if end > table.decompressed_len() {
            return Err(self.too_short(pack, table, offset, end));
        }
        Ok(())
    }

    fn too_short(&self, pack: &str, table: &SeekTable, offset: u64, end: u64) -> io::Error {
        PackError::TooShort {
            pack: pack.to_string(),
            target: self.target.clone(),
            holds: table.decompressed_len(),
            offset,
            end,
        }
        .into()
    }

    fn damaged(&self, pack: &str, what: String) -> io::Error {
        PackError::Damaged {
            pack: pack.to_string(),
            target: self.target.clone(),
            what,
        }
        .into()
    }

    fn bad_request(&self, pack: &str, what: &str) -> io::Error {
        PackError::BadRequest {
            pack: pack.to_string(),
            target: self.target.clone(),
            what: what.to_string(),
        }
        .into()
    }

    /// A read through age and zstd failed: the store, or the bytes themselves.
    fn read_error(&self, pack: &str, e: io::Error) -> io::Error {
        if is_fetch_error(&e) {
            PackError::Fetch {
                pack: pack.to_string(),
                target: self.target.clone(),
                cause: e,
            }
            .into()
        } else {
            self.damaged(
                pack,
                format!("{e} (its stored bytes do not decrypt or decompress)"),
            )
        }
    }

    fn age_error(&self, pack: &str, header: &[u8], e: age::DecryptError) -> io::Error {
        match e {
            age::DecryptError::NoMatchingKeys => PackError::NotForIdentity {
                pack: pack.to_string(),
                target: self.target.clone(),
                recipients: crate::key_match::describe_recipients(header),
            }
            .into(),
            age::DecryptError::Io(e) => self.read_error(pack, e),
            other => self.damaged(pack, format!("its age header is unusable: {other}")),
        }
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
fn payload_start(stored_size: u64, stream_len: u64) -> u64 {
    let chunks = stream_len.div_ceil(AGE_CHUNK).max(1);
    stored_size.saturating_sub(stream_len.saturating_add(chunks.saturating_mul(AGE_TAG)))
}

/// The stored offset just past the sealed chunk holding plaintext byte `plain_end - 1`.
fn cipher_end(payload_start: u64, plain_end: u64) -> u64 {
    let chunks = plain_end.div_ceil(AGE_CHUNK);
    payload_start.saturating_add(chunks.saturating_mul(AGE_CHUNK + AGE_TAG))
}

/// Hashes what goes through.
struct Hashed<'a, W: Write> {
    out: W,
    hasher: &'a mut blake3::Hasher,
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
mod tests {
    use super::super::seek_table::{FRAME_SIZE, MAX_FRAMES};
    use super::*;
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use std::sync::atomic::Ordering;
    use tokio::runtime::Runtime;

    const JOB: &str = "web";
    const TARGET: &str = "offsite";

    fn pack_id(n: u32) -> String {
        format!("{n:032x}")
    }

    /// Deterministic incompressible bytes.
    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut out);
        out
    }

    /// Bytes that compress some but not entirely, like a tar of mixed files.
    fn mixed(len: usize) -> Vec<u8> {
        let noise = random(len, 7);
        (0..len)
            .map(|i| {
                if (i / 4096) % 3 == 0 {
                    noise[i]
                } else {
                    b"coffer keeps backups "[i % 21] ^ (i / 65536) as u8
                }
            })
            .collect()
    }

    /// A seekable zstd stream of `payload` as coffer's writer lays it out.
    fn seekable(payload: &[u8]) -> Vec<u8> {
        let mut z = zstd::bulk::Compressor::new(3).expect("compressor");
        z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .expect("checksums");
        let mut table = SeekTable::new();
        let mut out = Vec::new();
        for frame in payload.chunks(FRAME_SIZE) {
            let c = z.compress(frame).expect("compress");
            table
                .push(c.len() as u64, frame.len() as u64)
                .expect("frame");
            out.extend_from_slice(&c);
        }
        out.extend(table.to_skippable_frame());
        out
    }

    fn encrypt(plain: &[u8], to: &age::x25519::Identity) -> Vec<u8> {
        let recipient = to.to_public();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .expect("recipients");
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).expect("wrap");
        w.write_all(plain).expect("encrypt");
        w.finish().expect("finish");
        out
    }

    struct Env {
        rt: Runtime,
        store: Arc<dyn ObjectStore>,
        identity: age::x25519::Identity,
        fetched: Arc<AtomicU64>,
        _dir: Option<tempfile::TempDir>,
    }

    fn env(local: bool) -> Env {
        let (store, dir): (Arc<dyn ObjectStore>, _) = if local {
            let dir = tempfile::tempdir().expect("tempdir");
            let fs = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
            (Arc::new(fs), Some(dir))
        } else {
            (Arc::new(InMemory::new()), None)
        };
        Env {
            rt: Runtime::new().expect("runtime"),
            store,
            identity: age::x25519::Identity::generate(),
            fetched: Arc::default(),
            _dir: dir,
        }
    }

    impl Env {
        /// Stores `payload` as pack `id`; returns the stored size.
        fn put_pack(&self, id: &str, payload: &[u8]) -> u64 {
            self.put_stored(id, encrypt(&seekable(payload), &self.identity))
        }

        fn put_stored(&self, id: &str, stored: Vec<u8>) -> u64 {
            let len = stored.len() as u64;
            self.rt
                .block_on(
                    self.store
                        .put(&pack_path(JOB, id), PutPayload::from(stored)),
                )
                .expect("put");
            len
        }

        fn reader_for(&self, identity: &age::x25519::Identity) -> PackReader<'static> {
            // Leaked: a test's few readers borrow their identities for good.
            let ids: Identities = vec![Box::new(identity.clone())];
            let ids: &'static Identities = Box::leak(Box::new(ids));
            PackReader::new(
                self.rt.handle().clone(),
                self.store.clone(),
                TARGET,
                JOB,
                ids,
                self.fetched.clone(),
            )
        }

        fn reader(&self) -> PackReader<'static> {
            self.reader_for(&self.identity)
        }

        fn fetched(&self) -> u64 {
            self.fetched.load(Ordering::Relaxed)
        }
    }

    fn read(r: &mut PackReader, id: &str, stored: u64, offset: u64, size: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let hash = r
            .read(id, stored, offset, size, &mut out)
            .unwrap_or_else(|e| panic!("read {offset}+{size}: {e}"));
        assert_eq!(out.len() as u64, size);
        assert_eq!(hash, blake3::hash(&out), "hash of what was written");
        out
    }

    fn read_err(r: &mut PackReader, id: &str, stored: u64, offset: u64, size: u64) -> io::Error {
        let mut out = Vec::new();
        match r.read(id, stored, offset, size, &mut out) {
            Ok(_) => panic!("read {offset}+{size} of {id} succeeded"),
            Err(e) => e,
        }
    }

    fn pack_error(e: &io::Error) -> &PackError {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<PackError>())
            .unwrap_or_else(|| panic!("not a PackError: {e:?}"))
    }

    #[test]
    fn contents_round_trip_at_any_offset_on_both_stores() {
        const F: u64 = FRAME_SIZE as u64;
        let payload = mixed(3 * FRAME_SIZE + 12_345);
        let len = payload.len() as u64;
        let cases = [
            (0, 1),
            (0, 100),
            (5, 1000),
            (F - 10, 20),
            (F, 1),
            (F - 1, F + 2),
            (len - 1, 1),
            (len - 1000, 1000),
            (123, 0),
            (F + 77, 5000),
            (2 * F + 3, 40_000),
            (10, 10),
            (0, len),
            (len - 12_345, 12_345),
            (5 * F / 2, 1),
        ];
        for local in [false, true] {
            let env = env(local);
            let id = pack_id(1);
            let stored = env.put_pack(&id, &payload);
            let mut r = env.reader();
            for &(offset, size) in &cases {
                let got = read(&mut r, &id, stored, offset, size);
                let want = &payload[offset as usize..(offset + size) as usize];
                assert!(got == want, "{offset}+{size} on local={local}");
            }
            // Each case again on a reader with nothing cached or open.
            for &(offset, size) in &cases {
                let got = read(&mut env.reader(), &id, stored, offset, size);
                assert!(got == payload[offset as usize..(offset + size) as usize]);
            }
        }
    }

    #[test]
    fn an_empty_content_needs_no_pack() {
        let env = env(false);
        let mut r = env.reader();
        let got = read(&mut r, &pack_id(9), 12_345, 77, 0);
        assert!(got.is_empty());
        assert_eq!(env.fetched(), 0);
    }

    #[test]
    fn reading_in_order_fetches_the_pack_about_once() {
        let payload = mixed(10 * FRAME_SIZE + 4321);
        let env = env(false);
        let id = pack_id(2);
        let stored = env.put_pack(&id, &payload);
        // Contents of uneven sizes one after the other, as a tar of many files.
        let mut contents = Vec::new();
        let (mut at, mut step) = (0u64, 1u64);
        while at < payload.len() as u64 {
            let size = (step * 7919 % 300_000).min(payload.len() as u64 - at);
            contents.push((at, size));
            at += size + 512;
            step += 1;
        }
        contents.retain(|&(o, s)| o + s <= payload.len() as u64);
        let mut r = env.reader();
        for &(offset, size) in &contents {
            let got = read(&mut r, &id, stored, offset, size);
            assert!(got == payload[offset as usize..(offset + size) as usize]);
        }
        let in_order = env.fetched();
        eprintln!(
            "in-order read of {} contents: fetched {in_order} bytes of a {stored}-byte pack",
            contents.len()
        );
        assert!(
            in_order <= stored + 16 * 1024,
            "fetched {in_order} for a pack of {stored}"
        );
        assert!(
            in_order >= stored * 9 / 10,
            "fetched {in_order}: too little?"
        );

        // The same without a kept decoder, for contrast.
        env.fetched.store(0, Ordering::Relaxed);
        for &(offset, size) in &contents {
            read(&mut env.reader(), &id, stored, offset, size);
        }
        eprintln!("the same with a new reader per content: {}", env.fetched());
        assert!(env.fetched() > 2 * in_order);
    }

    #[test]
    fn a_small_read_from_a_big_pack_fetches_little() {
        let payload = random(64 << 20, 1);
        let env = env(false);
        let id = pack_id(3);
        let stored = env.put_pack(&id, &payload);
        const MIB: u64 = 1 << 20;
        for offset in [
            32 * MIB,
            32 * MIB + 500_000,
            33 * MIB - 2048,
            33 * MIB - 4096,
        ] {
            env.fetched.store(0, Ordering::Relaxed);
            let got = read(&mut env.reader(), &id, stored, offset, 4096);
            assert!(got == payload[offset as usize..offset as usize + 4096]);
            let fetched = env.fetched();
            eprintln!("4 KiB at {offset} of a {stored}-byte pack: fetched {fetched} bytes");
            assert!(fetched <= 4096 + 2 * MIB, "fetched {fetched}");
        }
    }

    #[test]
    // Needs the zstd CLI: in the tier `tests/run` runs (feature `e2e`), not in a
    // bare `cargo test`.
    #[cfg(feature = "e2e")]
    fn the_plaintext_is_a_plain_zstd_stream_for_the_cli() {
        let payload = mixed(2 * FRAME_SIZE + 999);
        let id = age::x25519::Identity::generate();
        let stored = encrypt(&seekable(&payload), &id);
        let mut plain = Vec::new();
        age::Decryptor::new(&stored[..])
            .expect("age header")
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .expect("decrypt")
            .read_to_end(&mut plain)
            .expect("read");
        // Fails, never skips, when the CLI is missing: operators rely on it.
        let mut zstd = std::process::Command::new("zstd")
            .args(["-d", "-c", "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the zstd CLI must be installed for this test");
        let mut stdin = zstd.stdin.take().expect("stdin");
        let feeder = std::thread::spawn(move || stdin.write_all(&plain));
        let output = zstd.wait_with_output().expect("zstd runs");
        feeder.join().expect("feeder").expect("feed zstd");
        assert!(output.status.success(), "zstd -d failed");
        assert!(output.stdout == payload, "zstd -d gave other bytes");
    }

    #[test]
    fn a_wrong_identity_is_named_as_such() {
        let env = env(false);
        let id = pack_id(4);
        let stored = env.put_pack(&id, &mixed(100_000));
        let other = age::x25519::Identity::generate();
        let e = read_err(&mut env.reader_for(&other), &id, stored, 0, 10);
        assert!(
            matches!(pack_error(&e), PackError::NotForIdentity { .. }),
            "{e}"
        );
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let msg = e.to_string();
        assert!(msg.contains("not encrypted to this identity"), "{msg}");
        assert!(
            msg.contains("1 recipient (1 X25519), none of them this identity"),
            "{msg}"
        );
        assert!(msg.contains(&id) && msg.contains(TARGET), "{msg}");
    }

    #[test]
    fn a_flipped_byte_is_an_error_never_wrong_bytes() {
        let payload = mixed(2 * FRAME_SIZE + 5000);
        let env = env(false);
        let good = encrypt(&seekable(&payload), &env.identity);
        let n = good.len();
        let header_end = good
            .windows(5)
            .position(|w| w == b"\n--- ")
            .expect("mac line");
        for (i, at) in [10, header_end + 10, header_end + 200, n / 2, n - 100, n - 1]
            .into_iter()
            .enumerate()
        {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            let id = pack_id(100 + i as u32);
            let stored = env.put_stored(&id, bad);
            let e = read_err(&mut env.reader(), &id, stored, 0, payload.len() as u64);
            eprintln!("byte {at} flipped: {e}");
            assert!(e.to_string().contains(&id), "{e}");
            if at > header_end + 100 {
                assert!(matches!(pack_error(&e), PackError::Damaged { .. }), "{e}");
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            }
        }
    }

    /// Encrypts a hand-made stream: frames of `payload`, then `table` as given.
    fn crafted(env: &Env, id: &str, payload: &[u8], patch: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let mut plain = seekable(payload);
        patch(&mut plain);
        env.put_stored(id, encrypt(&plain, &env.identity))
    }

    fn set_u32(plain: &mut [u8], from_end: usize, v: u32) {
        let at = plain.len() - from_end;
        plain[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn crafted_seek_tables_are_refused() {
        let payload = mixed(2 * FRAME_SIZE + 100);
        let env = env(false);
        let damaged = |e: &io::Error, needle: &str| {
            assert!(matches!(pack_error(e), PackError::Damaged { .. }), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        };
        // Footer: Number_Of_Frames at 9 from the end. Entries: 3 frames, so the
        // first entry starts 9 + 24 bytes from the end.
        let id = pack_id(20);
        let stored = crafted(&env, &id, &payload, |p| set_u32(p, 9, u32::MAX));
        let e = read_err(&mut env.reader(), &id, stored, 0, 10);
        damaged(&e, "4294967295 frames, more than");

        // Allowed count, but a 128 MiB table in a 1 MiB stream: refused before allocating.
        let id = pack_id(21);
        let stored = crafted(&env, &id, &payload, |p| set_u32(p, 9, MAX_FRAMES));
        let e = read_err(&mut env.reader(), &id, stored, 0, 10);
        damaged(&e, "needs 134217745 bytes but the whole zstd stream is");

        let id = pack_id(22);
        let stored = crafted(&env, &id, &payload, |p| {
            let at = p.len() - 33;
            let c = u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
            set_u32(p, 33, c + 1);
        });
        let e = read_err(&mut env.reader(), &id, stored, 0, 10);
        damaged(&e, "add up to");

        // Sizes that add up, but a last frame claiming 100 bytes it does not hold.
        let id = pack_id(23);
        let stored = crafted(&env, &id, &payload, |p| set_u32(p, 13, 200));
        let end = payload.len() as u64 + 100;
        let e = read_err(&mut env.reader(), &id, stored, end - 50, 50);
        damaged(&e, "decode to fewer bytes");

        // No seek table at all.
        let id = pack_id(24);
        let stored = crafted(&env, &id, &payload, |p| {
            p.truncate(p.len() - (8 + 24 + 9));
        });
        let e = read_err(&mut env.reader(), &id, stored, 0, 10);
        damaged(&e, "does not end with a seek table");

        // A valid pack asked for more than it holds.
        let id = pack_id(25);
        let stored = env.put_pack(&id, &payload);
        let len = payload.len() as u64;
        for (offset, size) in [(len - 10, 11), (len, 1), (u64::MAX - 5, 5)] {
            let e = read_err(&mut env.reader(), &id, stored, offset, size);
            assert!(matches!(pack_error(&e), PackError::TooShort { .. }), "{e}");
            assert!(e.to_string().contains(&format!("holds {len} bytes")), "{e}");
        }
        let e = read_err(&mut env.reader(), &id, stored, u64::MAX, 2);
        assert!(
            matches!(pack_error(&e), PackError::BadRequest { .. }),
            "{e}"
        );
    }

    #[test]
    fn a_frame_needing_a_big_window_is_refused() {
        let env = env(false);
        let payload = mixed(10 << 20);
        let mut z = zstd::bulk::Compressor::new(3).expect("compressor");
        z.set_parameter(zstd::zstd_safe::CParameter::WindowLog(24))
            .expect("window");
        let mut plain = z.compress(&payload).expect("compress");
        let mut table = SeekTable::new();
        table
            .push(plain.len() as u64, payload.len() as u64)
            .expect("frame");
        plain.extend(table.to_skippable_frame());
        let id = pack_id(50);
        let stored = env.put_stored(&id, encrypt(&plain, &env.identity));
        let e = read_err(&mut env.reader(), &id, stored, 0, 10);
        assert!(matches!(pack_error(&e), PackError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains("too much memory"), "{e}");
    }

    #[test]
    fn planned_reads_skip_the_frames_between_and_stop_at_the_need() {
        let payload = random(8 * FRAME_SIZE + 10, 7);
        let env = env(false);
        let id = pack_id(80);
        let stored = env.put_pack(&id, &payload);
        // Two files 3 frames apart, as a restore of a snapshot whose pack holds
        // files deleted since between them (within REUSE_DISTANCE).
        let wanted = [(100u64, 50_000u64), (3 * FRAME_SIZE as u64 + 1000, 50_000)];
        let fetch = |plan: bool| {
            env.fetched.store(0, Ordering::Relaxed);
            let mut r = env.reader();
            for &(offset, size) in wanted.iter().filter(|_| plan) {
                r.plan(&id, offset, size);
            }
            for &(offset, size) in &wanted {
                let got = read(&mut r, &id, stored, offset, size);
                assert!(got == payload[offset as usize..(offset + size) as usize]);
            }
            env.fetched()
        };
        let (unplanned, planned) = (fetch(false), fetch(true));
        eprintln!("fetched {unplanned} bytes unplanned, {planned} planned");
        // Each read: the chunks up to its end, a zstd block and a chunk of margin;
        // the header and the tail once.
        let each = 50_000 + 1000 + ZSTD_BLOCK + 2 * (AGE_CHUNK + AGE_TAG);
        assert!(planned <= 2 * each + TAIL_PRELOAD + 16 * 1024, "{planned}");
        assert!(unplanned > 3 * FRAME_SIZE as u64, "{unplanned}");
    }

    #[test]
    fn reads_may_alternate_between_packs() {
        let env = env(false);
        let (a, b) = (mixed(2 * FRAME_SIZE + 10), random(FRAME_SIZE + 10, 5));
        let (ida, idb) = (pack_id(60), pack_id(61));
        let (sa, sb) = (env.put_pack(&ida, &a), env.put_pack(&idb, &b));
        let mut r = env.reader();
        let mut opens = Vec::new();
        // Forward in each, as a restore in path order reads packs of several runs.
        for round in 0..3u64 {
            for (id, stored, payload) in [(&ida, sa, &a), (&idb, sb, &b)] {
                let before = env.fetched();
                let offset = 1000 + round * 20_000;
                let got = read(&mut r, id, stored, offset, 5000);
                assert!(got == payload[offset as usize..offset as usize + 5000]);
                opens.push(env.fetched() - before);
            }
        }
        // Both stay open: going back to a pack fetches neither its header nor its
        // tail again, only what its decoder had not fetched yet.
        for later in &opens[2..] {
            assert!(*later + TAIL_PRELOAD <= opens[0].min(opens[1]), "{opens:?}");
        }
        // A reader holds at most OPEN_PACKS packs open.
        for n in 0..(OPEN_PACKS as u32 + 2) {
            let id = pack_id(70 + n);
            let stored = env.put_pack(&id, &b);
            read(&mut r, &id, stored, 0, 100);
        }
        assert_eq!(r.open.len(), OPEN_PACKS);
    }

    #[test]
    fn missing_or_short_packs_name_the_pack_and_target() {
        let env = env(true);
        let id = pack_id(30);
        let e = read_err(&mut env.reader(), &id, 5000, 0, 10);
        assert!(matches!(pack_error(&e), PackError::Fetch { .. }), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let msg = e.to_string();
        assert!(msg.contains(&id) && msg.contains(TARGET), "{msg}");

        let stored = env.put_pack(&id, &mixed(300_000));
        let e = read_err(&mut env.reader(), &id, stored + 10, 0, 10);
        assert!(matches!(pack_error(&e), PackError::Fetch { .. }), "{e}");
        assert!(e.to_string().contains("shorter than"), "{e}");

        let e = read_err(&mut env.reader(), "not-a-pack", stored, 0, 10);
        assert!(
            matches!(pack_error(&e), PackError::BadRequest { .. }),
            "{e}"
        );
    }

    #[test]
    fn an_endless_age_header_is_refused() {
        let env = env(false);
        let id = pack_id(40);
        let mut junk = b"age-encryption.org/v1\n".to_vec();
        junk.extend(std::iter::repeat_n(b"-> X25519 abc\n".as_slice(), 10_000).flatten());
        let stored = env.put_stored(&id, junk);
        let e = read_err(&mut env.reader(), &id, stored, 0, 10);
        assert!(e.to_string().contains("does not end within"), "{e}");
        assert!(env.fetched() < 2 * TAIL_PRELOAD + HEADER_MAX as u64);
    }

    #[test]
    fn packs_live_where_the_writer_puts_them() {
        let id = pack_id(0xabc);
        assert!(is_pack_id(&id));
        assert_eq!(
            pack_path("web", &id).to_string(),
            format!("web/packs/{id}.tar.zst.age")
        );
        assert!(!is_pack_id(&id.to_uppercase()));
        assert!(!is_pack_id(&id[1..]));
        assert!(!is_pack_id(&format!("{id}0")));
        assert!(!is_pack_id("0123456789abcdef0123456789abcdeg"));
        assert!(!is_pack_id("../0123456789abcdef0123456789abc"));
    }

    #[test]
    fn a_reader_can_move_to_a_worker_thread() {
        fn send<T: Send>() {}
        send::<PackReader>();
    }
}
