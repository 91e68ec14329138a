//! The read path: stream an object from a target, check its stored bytes against
//! `snapshot.json`, decrypt with age and decompress with zstd, as a plain `Read`.
//!
//! Errors carry the object's name so that "flip one byte" ends in a message that
//! says which object is damaged.
//!
//! Over 400 lines: the readers of one chain (stored bytes, age, zstd, the pump)
//! share the error types that name the object.

use crate::format::ObjectRecord;
use crate::key_match::{NotForIdentity, describe_recipients};
use crate::keys::Identities;
use bytes::Bytes;
use coffer_plugins::{Op, Target};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{GetResultPayload, ObjectStoreExt};
use std::io::{self, BufReader, Read};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Where the stored bytes come from: a local file is read directly with large reads
/// (object_store would stream it in 8 KiB pieces through the runtime); anything
/// remote arrives as a stream pumped by a task.
enum Body {
    File(std::fs::File),
    Stream {
        rx: mpsc::Receiver<Result<Bytes, object_store::Error>>,
        cur: Bytes,
    },
}

/// Raw stored bytes of one object, checked at EOF against the marker's size and BLAKE3.
pub struct ObjectReader {
    body: Body,
    hasher: blake3::Hasher,
    size: u64,
    expect: Option<(u64, String)>,
    label: String,
    finished: bool,
    /// Set once the stored bytes matched the marker at EOF.
    verified: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The operation whose display counts the bytes read from the target (none
    /// for a staged copy, or when nobody follows).
    counted: Option<std::sync::Arc<crate::report::Work>>,
}

impl ObjectReader {
    pub fn open(
        rt: &Handle,
        target: &Target,
        path: &ObjPath,
        expect: Option<&ObjectRecord>,
    ) -> io::Result<ObjectReader> {
        let label = format!("object {path} on target {}", target.name);
        let got = rt.block_on(target.store.get(path)).map_err(|e| {
            // An object the target says is not there keeps that kind: it is proof
            // that the object is gone (`pack::damage`), where any other failure is not.
            let kind = match e {
                object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
                _ => io::ErrorKind::Other,
            };
            io::Error::new(
                kind,
                format!(
                    "cannot read {path}: {}",
                    target.explain(Op::Read, &e).message
                ),
            )
        })?;
        let body = match got.payload {
            GetResultPayload::File(file, _) => Body::File(file),
            GetResultPayload::Stream(mut s) => {
                let (tx, rx) = mpsc::channel(8);
                rt.spawn(async move {
                    while let Some(item) = s.next().await {
                        if tx.send(item).await.is_err() {
                            break;
                        }
                    }
                });
                Body::Stream {
                    rx,
                    cur: Bytes::new(),
                }
            }
        };
        Ok(ObjectReader {
            body,
            hasher: blake3::Hasher::new(),
            size: 0,
            expect: expect.map(|o| (o.stored_size, o.blake3.clone())),
            label,
            finished: false,
            verified: Default::default(),
            counted: None,
        })
    }

    /// Counts the stored bytes read into `work` (its progress display).
    pub fn counting(mut self, work: &std::sync::Arc<crate::report::Work>) -> ObjectReader {
        self.counted = Some(work.clone());
        self
    }

    /// Reads the whole object into an unnamed private file in `dir` (`O_TMPFILE`,
    /// mode 0600, gone when closed), checking it against `snapshot.json` at its
    /// end, and returns a reader over that copy, already authenticated. What is
    /// staged is the stored (encrypted, compressed) bytes: the copy is as small as
    /// the object and holds no plaintext. The copy cannot change after the check,
    /// which a second read from the target could (anyone who can write to the
    /// target can swap the object between two reads).
    pub fn staged(mut self, dir: &std::path::Path) -> io::Result<ObjectReader> {
        use std::io::Seek;
        if self.expect.is_none() {
            return Err(io::Error::other(format!(
                "{}: no record in snapshot.json to check it against",
                self.label
            )));
        }
        let label = self.label.clone();
        let context = |e: io::Error| {
            named(
                e.kind(),
                format!(
                    "{label}: cannot stage it in {} (it needs as much free space as the object's size): {e}",
                    dir.display()
                ),
            )
        };
        std::fs::create_dir_all(dir).map_err(context)?;
        let mut copy = tempfile::tempfile_in(dir).map_err(context)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            // Errors of the read (damage, a mismatch at the end) already name the object.
            let n = match self.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            io::Write::write_all(&mut copy, &buf[..n]).map_err(context)?;
        }
        if !self.verified.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(named(
                io::ErrorKind::InvalidData,
                format!("{}: ended without matching snapshot.json", self.label),
            ));
        }
        copy.rewind().map_err(context)?;
        Ok(ObjectReader {
            body: Body::File(copy),
            hasher: blake3::Hasher::new(),
            size: 0,
            expect: None,
            label: self.label,
            finished: false,
            verified: self.verified,
            counted: None,
        })
    }

    /// Becomes true when the whole object was read and matched `snapshot.json`.
    pub fn verified_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.verified.clone()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn at_end(&mut self) -> io::Result<usize> {
        if !self.finished {
            self.finished = true;
            if let Some((size, hash)) = &self.expect {
                let got = self.hasher.finalize().to_hex().to_string();
                if *size == self.size && *hash == got {
                    self.verified
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        Mismatch(format!(
                            "{}: stored bytes do not match snapshot.json (size {} vs {}, blake3 {} vs {}): the object is damaged",
                            self.label, self.size, size, got, hash
                        )),
                    ));
                }
            }
        }
        Ok(0)
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let n = match &mut self.body {
            Body::File(f) => f
                .read(buf)
                .map_err(|e| named(e.kind(), format!("{}: {e}", self.label)))?,
            Body::Stream { rx, cur } => {
                while cur.is_empty() {
                    match rx.blocking_recv() {
                        Some(Ok(b)) => *cur = b,
                        Some(Err(e)) => {
                            return Err(named(
                                io::ErrorKind::Other,
                                format!("{}: {e}", self.label),
                            ));
                        }
                        None => return self.at_end(),
                    }
                }
                let n = buf.len().min(cur.len());
                buf[..n].copy_from_slice(&cur[..n]);
                let _ = cur.split_to(n);
                n
            }
        };
        if n == 0 {
            return self.at_end();
        }
        if let Some(work) = &self.counted {
            work.read(n as u64);
        }
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// An error that already names its object, so `Labeled` need not name it again.
#[derive(Debug)]
struct Named(String);

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Named {}

/// The whole object was read and its size or BLAKE3 is not what `snapshot.json`
/// binds: proof of damage, unlike an error on the way. It names its object too.
#[derive(Debug)]
struct Mismatch(String);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

/// Whether `e` is an `ObjectReader`'s finding that the stored bytes, read to
/// their end, differ from the marker (never a failure to read them).
pub fn is_mismatch(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Mismatch>())
}

fn named(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, Named(msg))
}

/// Prefixes every error of the inner reader with the object's name.
pub struct Labeled<R> {
    inner: R,
    label: String,
}

impl<R: Read> Read for Labeled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.get_ref()
                .is_some_and(|inner| inner.is::<Named>() || inner.is::<Mismatch>())
            {
                return e;
            }
            named(
                e.kind(),
                format!(
                    "{}: {e} (the object is damaged or was tampered with)",
                    self.label
                ),
            )
        })
    }
}

/// The plaintext of a stored object.
pub fn decrypt(
    reader: ObjectReader,
    identities: &Identities,
) -> io::Result<Labeled<Box<dyn Read + Send>>> {
    let label = reader.label().to_string();
    let header = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tapped = HeaderTap {
        inner: reader,
        seen: header.clone(),
        full: false,
    };
    let dec =
        age::Decryptor::new_buffered(BufReader::with_capacity(1 << 20, tapped)).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{label}: not a readable age file: {e}"),
            )
        })?;
    let plain = dec
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            // Not damage: the object is for other keys. Say what its header shows.
            age::DecryptError::NoMatchingKeys => io::Error::new(
                io::ErrorKind::PermissionDenied,
                NotForIdentity {
                    object: label.clone(),
                    recipients: header
                        .lock()
                        .map(|h| describe_recipients(&h))
                        .unwrap_or_else(|_| "recipients not recorded".to_string()),
                },
            ),
            e => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{label}: cannot decrypt: {e}"),
            ),
        })?;
    let unzstd = zstd::stream::read::Decoder::new(Labeled {
        inner: plain,
        label: label.clone(),
    })?;
    Ok(Labeled {
        inner: Box::new(unzstd),
        label,
    })
}

/// Keeps a copy of the first bytes read through it (the age header, bounded by
/// `pack::read::HEADER_MAX`), so that an object for other keys can be described
/// after age has consumed its header.
struct HeaderTap<R> {
    inner: R,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// Set once `seen` holds `HEADER_MAX` bytes: the rest of the stream passes by.
    full: bool,
}

impl<R: Read> Read for HeaderTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.full
            && let Ok(mut seen) = self.seen.lock()
        {
            let take = n.min(crate::pack::read::HEADER_MAX.saturating_sub(seen.len()));
            seen.extend_from_slice(&buf[..take]);
            self.full = seen.len() >= crate::pack::read::HEADER_MAX;
        }
        Ok(n)
    }
}

/// Runs `inner` (decryption and decompression) on its own thread, handing 1 MiB
/// chunks over a bounded queue, so that unpacking overlaps with them.
pub struct Pumped {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Pumped {
    pub fn spawn(mut inner: impl Read + Send + 'static) -> io::Result<Pumped> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("coffer-decrypt".into())
            .spawn(move || {
                loop {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut filled = 0;
                    // Fill whole chunks: small reads would cost a channel hop each.
                    while filled < buf.len() {
                        match inner.read(&mut buf[filled..]) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    buf.truncate(filled);
                    let end = filled == 0;
                    if tx.send(Ok(buf)).is_err() || end {
                        return;
                    }
                }
            })?;
        Ok(Pumped {
            rx,
            cur: Vec::new(),
            pos: 0,
            done: false,
        })
    }
}

impl Read for Pumped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the decryption thread stopped")),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// How much plaintext `HoldBack` keeps until the object is verified: more than the
/// last block any database tool needs to see before it commits.
const HOLD: usize = 1 << 20;

/// Hands out a plaintext except its last `HOLD` bytes until the stored object has
/// been read to its end and matched the (signed) marker. A database tool fed from it
/// (pg_restore in one transaction) therefore never sees the end of a swapped or
/// damaged dump, and cannot commit it.
pub struct HoldBack<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
    verified: std::sync::Arc<std::sync::atomic::AtomicBool>,
    label: String,
}

impl<R: Read> HoldBack<R> {
    /// `verified` and `label` come from the object's `ObjectReader`, which sits
    /// deep inside `inner`.
    pub fn from_parts(
        inner: R,
        verified: std::sync::Arc<std::sync::atomic::AtomicBool>,
        label: String,
    ) -> HoldBack<R> {
        HoldBack {
            inner,
            buf: Vec::new(),
            start: 0,
            eof: false,
            verified,
            label,
        }
    }
}

impl<R: Read> Read for HoldBack<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let avail = self.buf.len() - self.start;
            let free = if self.eof {
                avail
            } else {
                avail.saturating_sub(HOLD)
            };
            if free > 0 || self.eof {
                let n = free.min(out.len());
                out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            if self.start > 0 && self.start >= self.buf.len() / 2 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + (256 << 10), 0);
            let got = match self.inner.read(&mut self.buf[old..]) {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            };
            self.buf.truncate(old + got);
            if got == 0 {
                if !self.verified.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: the plaintext ended before the stored bytes were checked against snapshot.json",
                            self.label
                        ),
                    ));
                }
                self.eof = true;
            }
        }
    }
}
