//! A stream source stored as chunks (a database dump in format 2) read back in
//! order: each chunk is fetched from its pack, checked against the BLAKE3 the
//! (signed, bound) manifest lists for it before one byte of it is handed on, and
//! the whole stream against its own BLAKE3 at the end. A swapped or damaged chunk
//! therefore never reaches a restore program; a stream cut short by one stops
//! before its end, which `HoldBack` keeps from the program until `verified` is set.
//!
//! `read_chunk` is the one way to get a chunk as the manifest lists it: this
//! stream, the tar stream restore and verify read files from (`tar_view`) and
//! `mount` each call it and say what went wrong in their own terms.

use super::read::PackReader;
use crate::format::{ChunkedStream, Marker};
use coffer_plugins::Chunk;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a chunk could not be had as the manifest lists it.
pub(crate) enum ChunkError {
    /// Its pack is not in snapshot.json.
    Unlisted,
    /// The pack's read failed, as `PackReader::read` says (damage, a missing
    /// pack, the network, an identity that is no recipient).
    Read(io::Error),
    /// Its bytes are not the ones listed.
    Mismatch,
}

/// Writes chunk `c` of a snapshot of `marker` to `out`, checked against the hash
/// the manifest lists when `check` (a manifest's own chunks have none listed:
/// their whole is checked). Bytes reach `out` as they are read: a caller that
/// hands them on must hold them until this returns.
pub(crate) fn read_chunk(
    packs: &mut PackReader<'_>,
    marker: &Marker,
    c: &Chunk,
    check: bool,
    out: &mut dyn Write,
) -> Result<(), ChunkError> {
    let pack = marker.pack(&c.pack).ok_or(ChunkError::Unlisted)?;
    let hash = packs
        .read(&pack.id, pack.stored_size, c.offset, c.size, out)
        .map_err(ChunkError::Read)?;
    if check && hash.to_hex().as_str() != c.blake3 {
        return Err(ChunkError::Mismatch);
    }
    Ok(())
}

pub(crate) struct ChunkStream<'a> {
    packs: PackReader<'a>,
    marker: &'a Marker,
    stream: ChunkedStream,
    /// Whether each chunk has a hash to check (not a manifest's: see
    /// `ManifestChunks`); the whole is checked either way.
    each: bool,
    /// What the messages call it: the source and the snapshot.
    label: String,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    whole: blake3::Hasher,
    verified: Arc<AtomicBool>,
}

impl<'a> ChunkStream<'a> {
    pub(crate) fn new(
        packs: PackReader<'a>,
        marker: &'a Marker,
        stream: &ChunkedStream,
        label: String,
    ) -> ChunkStream<'a> {
        ChunkStream::with(packs, marker, stream.clone(), true, label)
    }

    /// The manifest of `marker`, stored as chunks: checked whole only.
    pub(crate) fn manifest(
        packs: PackReader<'a>,
        marker: &'a Marker,
        m: &crate::format::ManifestChunks,
        label: String,
    ) -> ChunkStream<'a> {
        let stream = ChunkedStream {
            size: m.size,
            blake3: m.blake3.clone(),
            chunks: m
                .chunks
                .iter()
                .map(|p| coffer_plugins::Chunk {
                    pack: p.pack.clone(),
                    offset: p.offset,
                    size: p.size,
                    blake3: String::new(),
                })
                .collect(),
        };
        ChunkStream::with(packs, marker, stream, false, label)
    }

    fn with(
        mut packs: PackReader<'a>,
        marker: &'a Marker,
        stream: ChunkedStream,
        each: bool,
        label: String,
    ) -> ChunkStream<'a> {
        // Told every read ahead, the reader fetches no further than they go.
        for c in &stream.chunks {
            packs.plan(&c.pack, c.offset, c.size);
        }
        ChunkStream {
            packs,
            marker,
            stream,
            each,
            label,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            whole: blake3::Hasher::new(),
            verified: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Fetches the first chunk now: an identity that is not a recipient, or a
    /// missing pack, is then an error of its own rather than one a parser reading
    /// the stream wraps (and whose chain an `io::Error` inside cuts).
    pub(crate) fn start(&mut self) -> io::Result<()> {
        if self.next == 0 && !self.stream.chunks.is_empty() {
            self.fetch()?;
        }
        Ok(())
    }

    /// Set once every chunk and the whole stream matched the manifest.
    pub(crate) fn verified_flag(&self) -> Arc<AtomicBool> {
        self.verified.clone()
    }

    fn bad(&self, why: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", self.label))
    }

    /// The next chunk into `buf`, checked.
    fn fetch(&mut self) -> io::Result<()> {
        let c = &self.stream.chunks[self.next];
        self.buf.clear();
        self.pos = 0;
        let read = read_chunk(&mut self.packs, self.marker, c, self.each, &mut self.buf);
        let mismatch = match read {
            Ok(()) => self.buf.len() as u64 != c.size,
            Err(ChunkError::Mismatch) => true,
            Err(ChunkError::Read(e)) => return Err(not_for_identity(e)),
            Err(ChunkError::Unlisted) => {
                return Err(self.bad(format!(
                    "pack {} of a chunk is not listed in snapshot.json",
                    coffer_plugins::escape_controls(&c.pack)
                )));
            }
        };
        if mismatch {
            return Err(self.bad(format!(
                "chunk {} at offset {} of pack {} does not match the manifest (the pack is \
                 damaged, or was replaced by someone who can write to the target)",
                self.next + 1,
                c.offset,
                c.pack
            )));
        }
        self.whole.update(&self.buf);
        self.next += 1;
        Ok(())
    }
}

impl Read for ChunkStream<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.next == self.stream.chunks.len() {
                if self.whole.finalize().to_hex().as_str() != self.stream.blake3 {
                    return Err(self.bad(
                        "its chunks do not make the stream the manifest's BLAKE3 names".into(),
                    ));
                }
                self.verified.store(true, Ordering::SeqCst);
                return Ok(0);
            }
            self.fetch()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A pack not encrypted to the identity given, as the error every reader of
/// objects gives (`key_match::NotForIdentity`): what makes verify and restore say
/// "not encrypted to this identity (FILE)" and exit 2 rather than call it damage.
fn not_for_identity(e: io::Error) -> io::Error {
    use super::read::PackError;
    match e.get_ref().and_then(|i| i.downcast_ref::<PackError>()) {
        Some(PackError::NotForIdentity {
            pack,
            target,
            recipients,
        }) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            crate::key_match::NotForIdentity {
                object: format!("pack {pack} on target {target}"),
                recipients: recipients.clone(),
            },
        ),
        _ => e,
    }
}
