//! The write path of one object: plaintext -> zstd -> age -> every target.
//!
//! ```text
//! caller thread        encrypt thread              one task per target
//! write() -> zstd MT -> chunks -> age StreamWriter -> fan-out -> multipart upload
//! ```
//! Bytes are compressed and encrypted once however many targets there are; the fan-out
//! shares each ciphertext chunk (`Bytes`) without copying. Every hop is a bounded
//! channel, so memory stays flat whatever the data size, and the slowest target sets
//! the pace. Encryption runs off the caller's thread so reading, hashing and
//! compressing overlap with it. Each target's upload (`upload.rs`) cuts the stream
//! into parts by that target's plan. Dropping an unfinished writer aborts every upload.

use crate::keys::Recipients;
use crate::pipeline::buffers::{self, GivenBack};
pub use crate::pipeline::upload::{Part, UploadError, Uploaded};
use bytes::Bytes;
use coffer_config::Compression;
use coffer_plugins::Target;
use object_store::path::Path as ObjPath;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Size of the chunks passed between stages.
const CHUNK: usize = 1 << 20;
/// What a chunk's buffer holds: a chunk, and the last write that filled it.
const CHUNK_BUF: usize = CHUNK + CHUNK / 4;
/// Chunks queued between zstd and age, and between age and each upload. Deeper
/// queues only cost memory: 4 measured the same speed as 2 and 4 MiB more.
const QUEUE: usize = 2;
/// Bytes per zstd worker job.
const ZSTD_JOB: u32 = 1 << 20;

/// zstd's output: cut into chunks for the encryption thread. `None` marks a clean end;
/// a sender dropped without it means the object is abandoned.
struct ChunkSender {
    tx: SyncSender<Option<Vec<u8>>>,
    buf: Vec<u8>,
    cancel: Arc<AtomicBool>,
}

fn stage_stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the encryption stage stopped")
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.go_on()?;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buf, buffers::take(CHUNK_BUF));
            self.tx.send(Some(full)).map_err(|_| stage_stopped())?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ChunkSender {
    /// An error once the run or this object is cancelled. Not
    /// `ErrorKind::Interrupted`: `write_all` retries that forever.
    fn go_on(&self) -> io::Result<()> {
        if self.cancel.load(Ordering::Relaxed) || crate::cancel::requested() {
            return Err(io::Error::other("run cancelled"));
        }
        Ok(())
    }

    /// `data` as a chunk of its own when nothing is gathered and it is big
    /// enough to be worth a message (a pack's compressed frame), without
    /// copying it; otherwise gathered as `write` does.
    fn send_owned(&mut self, data: Vec<u8>) -> io::Result<()> {
        if !self.buf.is_empty() || data.len() < CHUNK / 4 {
            self.write_all(&data)?;
            buffers::give(data);
            return Ok(());
        }
        self.go_on()?;
        self.tx.send(Some(data)).map_err(|_| stage_stopped())
    }

    fn end(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.tx.send(Some(rest)).map_err(|_| stage_stopped())?;
        }
        self.tx.send(None).map_err(|_| stage_stopped())
    }
}

struct TargetOut {
    tx: Option<mpsc::Sender<Part>>,
}

/// age's output: hashed, counted, and shared with every target still accepting.
struct FanOut {
    outs: Vec<TargetOut>,
    buf: Vec<u8>,
    hasher: blake3::Hasher,
    size: u64,
}

impl FanOut {
    fn ship(&mut self, part: Bytes) -> io::Result<()> {
        for out in &mut self.outs {
            if let Some(tx) = &out.tx
                && tx.blocking_send(Part::Data(part.clone())).is_err()
            {
                // That target's upload failed; it reports why when joined.
                out.tx = None;
            }
        }
        if self.outs.iter().all(|o| o.tx.is_none()) {
            return Err(io::Error::other("every target failed"));
        }
        Ok(())
    }

    fn done(mut self) -> io::Result<(u64, blake3::Hash)> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.hasher.update(&rest);
            self.ship(Bytes::from_owner(GivenBack(rest)))?;
        }
        for out in &self.outs {
            if let Some(tx) = &out.tx {
                let _ = tx.blocking_send(Part::Done);
            }
        }
        Ok((self.size, self.hasher.finalize()))
    }
}

impl Write for FanOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            let part = std::mem::replace(&mut self.buf, buffers::take(CHUNK_BUF));
            // Hashed a part at a time, not per write: age writes 64 KiB + 16, and
            // each write's first partial KiB went through BLAKE3 one lane wide.
            self.hasher.update(&part);
            // Given back once every target's upload is done with it.
            self.ship(Bytes::from_owner(GivenBack(part)))?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn encrypt_loop(
    rx: Receiver<Option<Vec<u8>>>,
    recipients: &Recipients,
    fan: FanOut,
) -> io::Result<(u64, blake3::Hash)> {
    let encryptor = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| io::Error::other(format!("cannot encrypt: {e}")))?;
    let mut w = encryptor.wrap_output(fan)?;
    loop {
        match rx.recv() {
            Ok(Some(chunk)) => {
                w.write_all(&chunk)?;
                buffers::give(chunk);
            }
            Ok(None) => break,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "object abandoned",
                ));
            }
        }
    }
    w.finish()?.done()
}

/// What one finished object looks like, and which targets have it.
#[derive(Debug)]
pub struct Finished {
    pub plaintext_size: u64,
    pub stored_size: u64,
    pub blake3: String,
    /// Per target (in the order given to `start`): `Ok` if it holds the object.
    pub targets: Vec<Result<Uploaded, UploadError>>,
}

/// A `Write` that compresses, encrypts and uploads one object to several targets.
/// It blocks (it is a `Write`): use it from a source's thread or `spawn_blocking`,
/// never from async code; `finish` and `abandon` wait for the uploads.
/// What `write` feeds: zstd, or (for bytes compressed already, format 2's packs)
/// the encryption stage directly.
enum Stage {
    Zstd(zstd::stream::write::Encoder<'static, ChunkSender>),
    Raw(ChunkSender),
}

impl Stage {
    fn end(self) -> io::Result<()> {
        match self {
            Stage::Zstd(e) => e.finish().and_then(ChunkSender::end),
            Stage::Raw(s) => s.end(),
        }
    }
}

pub struct ObjectWriter {
    encoder: Option<Stage>,
    encrypt: Option<std::thread::JoinHandle<io::Result<(u64, blake3::Hash)>>>,
    uploads: Vec<(
        String,
        tokio::task::JoinHandle<Result<Uploaded, UploadError>>,
    )>,
    plaintext: u64,
    rt: Handle,
}

impl ObjectWriter {
    /// `cancel` lets another part of the run stop this object early.
    pub fn start(
        rt: &Handle,
        targets: &[Target],
        path: &ObjPath,
        recipients: Arc<Recipients>,
        compression: Compression,
        cancel: Arc<AtomicBool>,
    ) -> io::Result<ObjectWriter> {
        let (sink, mut w) = Self::start_stages(rt, targets, path, recipients, cancel)?;
        let mut encoder = zstd::stream::write::Encoder::new(sink, compression.level)?;
        let threads = match compression.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            n => n,
        };
        // Even one worker takes compression off the reading thread.
        encoder.multithread(threads)?;
        // zstd's default job is 4x the window (8 MiB at level 3) per worker, plus as
        // many output buffers: most of a run's memory. 1 MiB jobs keep that small
        // (a 1 GiB incompressible file: 66 MiB peak with 2 MiB jobs, 49 MiB with
        // these); the overlap with the previous job keeps the ratio: a 288 MiB log
        // came out 0.2% smaller than with 2 MiB jobs, at the same speed.
        encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))?;
        encoder.include_checksum(true)?;
        w.encoder = Some(Stage::Zstd(encoder));
        Ok(w)
    }

    /// An object whose bytes arrive compressed already (a pack's zstd frames):
    /// encrypted and uploaded as written.
    pub fn start_raw(
        rt: &Handle,
        targets: &[Target],
        path: &ObjPath,
        recipients: Arc<Recipients>,
        cancel: Arc<AtomicBool>,
    ) -> io::Result<ObjectWriter> {
        let (sink, mut w) = Self::start_stages(rt, targets, path, recipients, cancel)?;
        w.encoder = Some(Stage::Raw(sink));
        Ok(w)
    }

    fn start_stages(
        rt: &Handle,
        targets: &[Target],
        path: &ObjPath,
        recipients: Arc<Recipients>,
        cancel: Arc<AtomicBool>,
    ) -> io::Result<(ChunkSender, ObjectWriter)> {
        let mut outs = Vec::new();
        let mut uploads = Vec::new();
        for t in targets {
            let (tx, rx) = mpsc::channel(QUEUE);
            outs.push(TargetOut { tx: Some(tx) });
            let task = rt.spawn(crate::pipeline::upload::upload(t.clone(), path.clone(), rx));
            uploads.push((t.name.clone(), task));
        }
        let fan = FanOut {
            outs,
            buf: buffers::take(CHUNK_BUF),
            hasher: blake3::Hasher::new(),
            size: 0,
        };
        let (tx, rx) = sync_channel(QUEUE);
        let encrypt = std::thread::Builder::new()
            .name("coffer-encrypt".into())
            .spawn(move || encrypt_loop(rx, &recipients, fan))?;
        let sink = ChunkSender {
            tx,
            buf: buffers::take(CHUNK_BUF),
            cancel,
        };
        Ok((
            sink,
            ObjectWriter {
                encoder: None,
                encrypt: Some(encrypt),
                uploads,
                plaintext: 0,
                rt: rt.clone(),
            },
        ))
    }

    /// Ends the object. The object is complete on every target whose result is `Ok`.
    pub fn finish(self) -> io::Result<Finished> {
        self.finish_or_failures().map_err(|u| u.error)
    }

    /// `finish`, and when the object could not be finished, each target's own
    /// failure besides the error (what a run's report puts on those targets).
    pub fn finish_or_failures(mut self) -> Result<Finished, Unfinished> {
        let encoder = self.encoder.take().ok_or_else(|| Unfinished {
            error: io::Error::other("object already finished"),
            failures: Vec::new(),
        })?;
        let ended = encoder.end();
        let encrypted = match self.encrypt.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("the encryption thread panicked")),
        };
        let uploads: Vec<_> = std::mem::take(&mut self.uploads)
            .into_iter()
            .map(|(name, h)| match self.rt.block_on(h) {
                Ok(r) => r,
                Err(e) => Err(task_failed(name, &e)),
            })
            .collect();
        match ended.and(encrypted) {
            Ok((stored_size, hash)) => Ok(Finished {
                plaintext_size: self.plaintext,
                stored_size,
                blake3: hash.to_hex().to_string(),
                targets: uploads,
            }),
            Err(e) => {
                // A target failing makes the fan-out fail only when all have: say why.
                let failures: Vec<UploadError> = uploads
                    .into_iter()
                    .filter_map(Result::err)
                    .filter(|e| !e.abandoned)
                    .collect();
                let error = if failures.is_empty() {
                    e
                } else {
                    let why: Vec<String> = failures.iter().map(ToString::to_string).collect();
                    io::Error::other(why.join("; "))
                };
                Err(Unfinished { error, failures })
            }
        }
    }
}

/// An object that could not be finished: why, and the targets' own failures.
pub struct Unfinished {
    pub error: io::Error,
    pub failures: Vec<UploadError>,
}

impl ObjectWriter {
    /// Writes `data`, which the writer may keep rather than copy: for an
    /// object whose bytes arrive compressed (`start_raw`), a big piece goes to
    /// the encryption stage as it is.
    pub fn write_owned(&mut self, data: Vec<u8>) -> io::Result<()> {
        let n = data.len() as u64;
        match self.encoder.as_mut() {
            Some(Stage::Raw(s)) => s.send_owned(data)?,
            Some(Stage::Zstd(e)) => e.write_all(&data)?,
            None => return Err(io::Error::other("object already finished")),
        }
        self.plaintext += n;
        Ok(())
    }

    /// Stops the object (every upload aborts) and returns why targets failed on
    /// their own, if any did: when every target failed, that is why the run stopped.
    pub fn abandon(mut self) -> Vec<UploadError> {
        drop(self.encoder.take());
        if let Some(h) = self.encrypt.take() {
            let _ = h.join();
        }
        std::mem::take(&mut self.uploads)
            .into_iter()
            .filter_map(|(name, h)| match self.rt.block_on(h) {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => (!e.abandoned).then_some(e),
                Err(e) => Some(task_failed(name, &e)),
            })
            .collect()
    }
}

fn task_failed(name: String, e: &tokio::task::JoinError) -> UploadError {
    UploadError {
        message: format!("target {name}: the upload task failed: {e}"),
        target: name,
        retryable: true,
        abandoned: false,
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let enc = self
            .encoder
            .as_mut()
            .ok_or_else(|| io::Error::other("object already finished"))?;
        let n = match enc {
            Stage::Zstd(e) => e.write(data)?,
            Stage::Raw(s) => s.write(data)?,
        };
        self.plaintext += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    /// An object neither finished nor abandoned (a source that panicked while
    /// streaming): closing the chain without an end marker makes every upload
    /// abort its multipart upload on its own. Nothing here waits on the runtime:
    /// a drop may happen anywhere, also on a runtime thread, where `block_on`
    /// panics. `abandon` is the way that waits; prune removes what is left.
    fn drop(&mut self) {
        drop(self.encoder.take());
        if let Some(h) = self.encrypt.take() {
            let _ = h.join();
        }
    }
}
