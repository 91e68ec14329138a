//! Storing a stream's chunks (`tree::chunker`: a big file, a database dump) into
//! the run's packs: each chunk is hashed, looked up, and written as a tar entry of
//! its own only when its content is not stored yet, so one read both hashes and
//! stores the stream.
//!
//! A chunk's entry is named `.coffer-chunks/<BLAKE3>`: extracting packs with
//! plain `tar` gives every chunk under its hash, and the manifest's list of a
//! file's chunks says what to concatenate (docs/format.md has the script).

use crate::tree::chunker::Chunker;
use crate::tree::content::ContentSink;
use crate::tree::entry::Chunk;
use crate::tree::tar_writer::{HeaderSpec, TarWriter};
use std::collections::BTreeMap;
use std::io;
use tar::EntryType;

/// The folder a plain `tar -x` of a pack puts chunks in.
pub const CHUNK_DIR: &str = ".coffer-chunks";

/// One read of a chunked stream: its chunks so far.
#[derive(Debug, Default)]
pub struct Chunks {
    pub chunks: Vec<Chunk>,
    /// Whether this read stored any chunk (the stream counts as new content).
    pub new: bool,
}

impl Chunks {
    /// Stores `data`, the next chunk, unless its content is known.
    pub fn store(&mut self, sink: &mut dyn ContentSink, data: &[u8]) -> io::Result<()> {
        let blake3 = blake3::hash(data).to_hex().to_string();
        let size = data.len() as u64;
        let at = match sink.known_chunk(&blake3, size)? {
            Some(at) => at,
            None => {
                sink.begin(size)?;
                let name = format!("{CHUNK_DIR}/{blake3}");
                let (no_xattrs, no_names) = (BTreeMap::new(), BTreeMap::new());
                let mut tar = TarWriter::new(&mut *sink);
                tar.header(&HeaderSpec {
                    path: name.as_bytes(),
                    kind: EntryType::Regular,
                    mode: 0o600,
                    uid: 0,
                    gid: 0,
                    user: None,
                    group: None,
                    mtime: 0,
                    size,
                    link: None,
                    rdev: None,
                    xattrs: &no_xattrs,
                    acl_names: &no_names,
                })?;
                let at = tar.get_ref().here();
                tar.data(data)?;
                tar.pad()?;
                sink.stored_chunk(&blake3, size, &at)?;
                self.new = true;
                at
            }
        };
        self.chunks.push(Chunk {
            pack: at.pack,
            offset: at.offset,
            size,
            blake3,
        });
        Ok(())
    }
}

/// A stream written chunk by chunk into a sink's packs (a database dump): what
/// `finish` returns is its hash, its size and its chunks.
pub struct ChunkedWriter<'a> {
    sink: &'a mut dyn ContentSink,
    chunker: Chunker,
    chunks: Chunks,
    hasher: blake3::Hasher,
    size: u64,
}

/// A chunked stream as stored: its BLAKE3 (hex), size and chunks.
#[derive(Debug)]
pub struct Chunked {
    pub blake3: String,
    pub size: u64,
    pub chunks: Chunks,
}

impl<'a> ChunkedWriter<'a> {
    pub fn new(sink: &'a mut dyn ContentSink) -> ChunkedWriter<'a> {
        ChunkedWriter::with_chunker(sink, Chunker::default())
    }

    /// With a chunker of less room (`Chunker::with_room`): for a stream written
    /// when memory is tightest, the manifest.
    pub fn with_chunker(sink: &'a mut dyn ContentSink, chunker: Chunker) -> ChunkedWriter<'a> {
        ChunkedWriter {
            sink,
            chunker,
            chunks: Chunks::default(),
            hasher: blake3::Hasher::new(),
            size: 0,
        }
    }

    /// The last chunk stored; the stream's hash, size and chunks.
    pub fn finish(mut self) -> io::Result<Chunked> {
        let (sink, chunks) = (&mut *self.sink, &mut self.chunks);
        self.chunker.finish(&mut |c| chunks.store(sink, c))?;
        Ok(Chunked {
            blake3: self.hasher.finalize().to_hex().to_string(),
            size: self.size,
            chunks: self.chunks,
        })
    }
}

impl io::Write for ChunkedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        let (sink, chunks) = (&mut *self.sink, &mut self.chunks);
        self.chunker.push(buf, &mut |c| chunks.store(sink, c))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
