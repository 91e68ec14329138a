//! The pack writer: the `ContentSink` a packing walk writes new contents into.
//!
//! ```text
//! walk thread: tar bytes -> 1 MiB frames -> workers (zstd, one frame each, in parallel)
//!              -> in order -> ObjectWriter::start_raw (age -> every target)
//! ```
//! Frames are compressed independently, so they can be compressed in parallel
//! and read back one by one; the walk collects them in order, writing each to the
//! pack and its sizes to the seek table. A file's place (`ContentRef`) is its
//! offset in the uncompressed stream, known the moment it is written.
//!
//! Lookups (unchanged file, known content) go to the job's index, shared by the
//! run's directory sources behind a mutex; what this run stores is staged there
//! and becomes the index's truth only when a snapshot commits.
//!
//! Over 400 lines: a pack's life (open, frames in order, seal) and the sink the
//! walk writes to share one open pack. The compression threads are `workers.rs`.

use super::index::{Index, PackInfo};
use super::seek_table::SeekTable;
use super::workers::Workers;
use super::{FRAME, new_pack_id, pack_path};
use crate::keys::Recipients;
use crate::pipeline::write::UploadError;
use crate::pipeline::{ObjectWriter, Uploaded};
use coffer_plugins::{Chunk, ContentRef, ContentSink, FileStat, KnownContent, RawPath, Target};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

/// The tar end-of-archive marker closing every pack.
const TAR_END: [u8; 1024] = [0; 1024];

/// BLAKE3 of no bytes: the content of every empty file.
const EMPTY_BLAKE3: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

/// The pack being filled.
struct OpenPack {
    id: String,
    out: ObjectWriter,
    /// Uncompressed bytes of the frame being gathered.
    frame: Vec<u8>,
    /// Uncompressed bytes written to the pack so far (frames sent and gathering).
    pos: u64,
    /// Frames sent to the workers, oldest first, with their uncompressed sizes.
    pending: VecDeque<(u32, Receiver<io::Result<Vec<u8>>>)>,
    table: SeekTable,
    /// Bytes of file content written to it.
    content: u64,
}

/// One pack this run wrote, and which targets hold it.
#[derive(Debug)]
pub(crate) struct WrittenPack {
    pub(crate) info: PackInfo,
    pub(crate) plaintext_size: u64,
    pub(crate) targets: Vec<Result<Uploaded, UploadError>>,
}

/// What a packing source leaves: the packs it wrote and every pack its files
/// reference (old and new, the keys of `used`).
#[derive(Debug, Default)]
pub(crate) struct Packed {
    pub(crate) written: Vec<WrittenPack>,
    /// Files whose content was stored by this run, and their bytes.
    pub(crate) new_files: u64,
    pub(crate) new_bytes: u64,
    /// Files found unchanged by their stat, not read.
    pub(crate) unchanged_files: u64,
    /// Files read whose content was stored already.
    pub(crate) known_files: u64,
    /// Every pack the source's files are in, with the bytes of content they take
    /// in it (a copy of a file counted again): what tells a pack mostly unused by
    /// later snapshots.
    pub(crate) used: BTreeMap<String, u64>,
}

impl Packed {
    fn uses(&mut self, pack: &str, size: u64) {
        *self.used.entry(pack.to_string()).or_default() += size;
    }
}

pub(crate) struct PackWriter {
    rt: Handle,
    targets: Vec<Target>,
    job: String,
    source: String,
    recipients: Arc<Recipients>,
    cancel: Arc<AtomicBool>,
    pack_size: u64,
    index: Arc<Mutex<Index>>,
    workers: Workers,
    /// Frames in flight at most (two per worker keeps every worker busy).
    depth: usize,
    current: Option<OpenPack>,
    done: Packed,
    /// The index knew nothing when the run began: every file will be read.
    full_run: bool,
    /// Bytes of holes the source's sparse files may still declare: its share of
    /// `untrusted::MAX_HOLES`, what a restore accepts of a snapshot.
    holes_left: u64,
    /// Where this source's empty files point, once chosen (`empty_content`).
    empty: Option<ContentRef>,
    /// Why targets failed a pack that could not be finished: `abandon` reports
    /// them, as it does a pack's still open.
    failed: Vec<UploadError>,
}

fn index_err(e: anyhow::Error) -> io::Error {
    io::Error::other(format!("the index: {e:#}"))
}

/// Where a run's packs go, the same for each of its packing sources: the
/// targets, the recipients, the run's stop flag (set when any source fails) and
/// the job's index.
pub(crate) struct PackDest<'a> {
    pub(crate) rt: &'a Handle,
    pub(crate) targets: &'a [Target],
    pub(crate) job: &'a coffer_config::Job,
    pub(crate) recipients: &'a Arc<Recipients>,
    pub(crate) cancel: &'a Arc<AtomicBool>,
    pub(crate) index: &'a Arc<Mutex<Index>>,
}

impl PackWriter {
    pub(crate) fn new(dest: &PackDest, source: &str) -> io::Result<PackWriter> {
        let PackDest {
            rt,
            targets,
            job,
            recipients,
            cancel,
            index,
        } = *dest;
        let full_run = index
            .lock()
            .map_err(|_| io::Error::other("the index lock is poisoned"))?
            .is_empty()
            .unwrap_or(true);
        let threads = match job.compression.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            n => n,
        };
        let dir_sources = job
            .sources
            .iter()
            .filter(|s| matches!(s.kind, coffer_config::SourceKind::Directory(_)))
            .count()
            .max(1) as u64;
        Ok(PackWriter {
            rt: rt.clone(),
            targets: targets.to_vec(),
            job: job.name.clone(),
            source: source.to_string(),
            recipients: recipients.clone(),
            cancel: cancel.clone(),
            pack_size: job.pack_size,
            index: index.clone(),
            workers: Workers::start(threads, job.compression.level)?,
            depth: 2 * threads.max(1) as usize,
            current: None,
            done: Packed::default(),
            full_run,
            holes_left: crate::format::untrusted::MAX_HOLES / dir_sources,
            empty: None,
            failed: Vec::new(),
        })
    }

    fn index(&self) -> io::Result<std::sync::MutexGuard<'_, Index>> {
        self.index
            .lock()
            .map_err(|_| io::Error::other("the index lock is poisoned"))
    }

    fn open(&mut self) -> io::Result<()> {
        let id = new_pack_id();
        let out = ObjectWriter::start_raw(
            &self.rt,
            &self.targets,
            &pack_path(&self.job, &id),
            self.recipients.clone(),
            self.cancel.clone(),
        )?;
        self.current = Some(OpenPack {
            id,
            out,
            frame: Vec::with_capacity(FRAME),
            pos: 0,
            pending: VecDeque::new(),
            table: SeekTable::default(),
            content: 0,
        });
        Ok(())
    }

    /// Sends the gathered frame to the workers; collects the oldest results once
    /// enough are in flight.
    fn flush_frame(&mut self, drain: bool) -> io::Result<()> {
        let depth = self.depth;
        let Some(p) = self.current.as_mut() else {
            return Ok(());
        };
        if !p.frame.is_empty() {
            let frame = std::mem::replace(&mut p.frame, crate::pipeline::buffers::take(FRAME));
            let len = frame.len() as u32;
            let rx = self.workers.submit(frame)?;
            p.pending.push_back((len, rx));
        }
        while p.pending.len() > if drain { 0 } else { depth } {
            let Some((len, rx)) = p.pending.pop_front() else {
                break;
            };
            let compressed = rx
                .recv()
                .map_err(|_| io::Error::other("a compression worker stopped"))??;
            p.table
                .push(compressed.len() as u64, u64::from(len))
                .map_err(io::Error::other)?;
            p.out.write_owned(compressed)?;
        }
        Ok(())
    }

    /// Ends the current pack: the tar's end, the last frames, the seek table.
    fn close(&mut self) -> io::Result<()> {
        if self.current.is_none() {
            return Ok(());
        }
        self.write_all(&TAR_END)?;
        self.flush_frame(true)?;
        let Some(mut p) = self.current.take() else {
            return Ok(());
        };
        p.out.write_all(&p.table.to_skippable_frame())?;
        // Every target can fail while the pack is finished as well as while it is
        // written (an upload refused at its start, found only at the end): the
        // targets' own reasons are kept for the report either way.
        let fin = match p.out.finish_or_failures() {
            Ok(fin) => fin,
            Err(u) => {
                self.failed = u.failures;
                return Err(u.error);
            }
        };
        let info = PackInfo {
            id: p.id,
            stored_size: fin.stored_size,
            blake3: fin.blake3,
            content_size: p.content,
        };
        self.index()?.stage_pack(&info).map_err(index_err)?;
        self.done.written.push(WrittenPack {
            info,
            plaintext_size: p.pos,
            targets: fin.targets,
        });
        crate::malloc::release_freed();
        Ok(())
    }

    /// A place for empty content without writing any: an empty file's entry says
    /// size 0, and a read of 0 bytes fetches nothing (`PackReader::read`), but
    /// the entry must name a pack its snapshot lists. So it names a pack the
    /// snapshot has anyway when there is one: the pack being written, one this
    /// source's files already use, else the fullest pack the index knows (on
    /// every target, `run::packs::prepare`). Only when there is none (a first
    /// run) does an empty file go into a pack as an entry (its tar header),
    /// which used to make a pack of a few hundred bytes for a run whose only
    /// new file was empty (issue 26).
    fn empty_content(&mut self) -> io::Result<Option<ContentRef>> {
        if self.empty.is_some() {
            return Ok(self.empty.clone());
        }
        let pack = match (&self.current, self.done.used.keys().next()) {
            (Some(p), _) => Some(p.id.clone()),
            (None, Some(id)) => Some(id.clone()),
            (None, None) => self
                .index()?
                .packs()
                .map_err(index_err)?
                .into_iter()
                .max_by_key(|p| p.content_size)
                .map(|p| p.id),
        };
        self.empty = pack.map(|pack| ContentRef { pack, offset: 0 });
        Ok(self.empty.clone())
    }

    /// A chunked stream that is not a file (a dump, the manifest) is complete: its
    /// chunks count as used, it as one new or known content. No list of its chunks
    /// is kept: nothing looks a stream up by its whole hash, and a list per run
    /// would pile up in the index.
    pub(crate) fn stream_stored(&mut self, chunks: &[Chunk], new: bool) {
        for c in chunks {
            self.done.uses(&c.pack, c.size);
        }
        if new {
            self.done.new_files += 1;
        } else {
            self.done.known_files += 1;
        }
    }

    /// Ends the last pack; what the source stored and references.
    pub(crate) fn finish(&mut self) -> io::Result<Packed> {
        self.close()?;
        Ok(std::mem::take(&mut self.done))
    }

    /// Stops: the pack being written is abandoned. Returns the ids of the packs
    /// this writer finished, which a failed run deletes (no snapshot references
    /// them), and why targets failed the open pack on their own, if any did.
    pub(crate) fn abandon(mut self) -> (Vec<String>, Vec<UploadError>) {
        let mut own = match self.current.take() {
            Some(p) => p.out.abandon(),
            None => Vec::new(),
        };
        own.append(&mut self.failed);
        let ids = self.done.written.drain(..).map(|w| w.info.id).collect();
        (ids, own)
    }
}

impl Write for PackWriter {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            let p = self
                .current
                .as_mut()
                .ok_or_else(|| io::Error::other("no pack is open"))?;
            let room = FRAME - p.frame.len();
            let n = room.min(data.len());
            p.frame.extend_from_slice(&data[..n]);
            p.pos += n as u64;
            data = &data[n..];
            if p.frame.len() == FRAME {
                self.flush_frame(false)?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ContentSink for PackWriter {
    fn reads_all(&self) -> bool {
        self.full_run
    }

    fn unchanged(&mut self, path: &RawPath, stat: &FileStat) -> io::Result<Option<KnownContent>> {
        let found = self
            .index()?
            .unchanged(&self.source, path.as_bytes(), stat)
            .map_err(index_err)?;
        if let Some(k) = &found {
            for (pack, size) in k.content.uses(stat.size) {
                self.done.uses(pack, size);
            }
            self.done.unchanged_files += 1;
        }
        Ok(found)
    }

    fn known(&mut self, blake3: &str, size: u64) -> io::Result<Option<ContentRef>> {
        let mut found = self.index()?.content(blake3, size).map_err(index_err)?;
        if found.is_none() && size == 0 && blake3 == EMPTY_BLAKE3 {
            found = self.empty_content()?;
        }
        if let Some(c) = &found {
            self.done.uses(&c.pack, size);
            self.done.known_files += 1;
        }
        Ok(found)
    }

    fn begin(&mut self, size: u64) -> io::Result<()> {
        let full = self.current.as_ref().is_some_and(|p| {
            p.pos >= self.pack_size || (p.pos > 0 && p.pos.saturating_add(size) > self.pack_size)
        });
        if full {
            self.close()?;
        }
        if self.current.is_none() {
            self.open()?;
        }
        Ok(())
    }

    fn here(&self) -> ContentRef {
        match &self.current {
            Some(p) => ContentRef {
                pack: p.id.clone(),
                offset: p.pos,
            },
            None => ContentRef {
                pack: String::new(),
                offset: 0,
            },
        }
    }

    fn take_holes(&mut self, holes: u64) -> bool {
        match self.holes_left.checked_sub(holes) {
            Some(left) => {
                self.holes_left = left;
                true
            }
            None => false,
        }
    }

    fn stored(&mut self, blake3: &str, size: u64, at: &ContentRef, shared: bool) -> io::Result<()> {
        if shared {
            self.index()?
                .stage_content(blake3, size, at)
                .map_err(index_err)?;
        }
        self.done.uses(&at.pack, size);
        if let Some(p) = self.current.as_mut().filter(|p| p.id == at.pack) {
            p.content += size;
        }
        self.done.new_files += 1;
        self.done.new_bytes += size;
        Ok(())
    }

    fn known_chunk(&mut self, blake3: &str, size: u64) -> io::Result<Option<ContentRef>> {
        self.index()?.chunk(blake3, size).map_err(index_err)
    }

    fn stored_chunk(&mut self, blake3: &str, size: u64, at: &ContentRef) -> io::Result<()> {
        self.index()?
            .stage_chunk(blake3, size, at)
            .map_err(index_err)?;
        // What the pack holds; what snapshots use of it is counted by `chunked`
        // (a chunk of a read that was discarded is held, not used).
        if let Some(p) = self.current.as_mut().filter(|p| p.id == at.pack) {
            p.content += size;
        }
        self.done.new_bytes += size;
        Ok(())
    }

    fn chunked(&mut self, blake3: &str, size: u64, chunks: &[Chunk], new: bool) -> io::Result<()> {
        self.index()?
            .stage_list(blake3, size, chunks)
            .map_err(index_err)?;
        self.stream_stored(chunks, new);
        Ok(())
    }

    fn kept(&mut self, path: &RawPath) -> io::Result<()> {
        self.index()?
            .keep_file(&self.source, path.as_bytes())
            .map_err(index_err)
    }

    fn seen(
        &mut self,
        path: &RawPath,
        stat: Option<&FileStat>,
        known: &KnownContent,
    ) -> io::Result<()> {
        if let Some(stat) = stat {
            self.index()?
                .stage_file(
                    &self.source,
                    path.as_bytes(),
                    stat,
                    &known.blake3,
                    &known.content,
                )
                .map_err(index_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_empty_hash_is_blake3_of_no_bytes() {
        assert_eq!(blake3::hash(b"").to_hex().as_str(), super::EMPTY_BLAKE3);
    }
}
