//! Storing a big file's chunks (`tree::chunker`) into the run's packs: each chunk
//! is hashed, looked up, and written as a tar entry of its own only when its
//! content is not stored yet, so one read both hashes and stores the file.
//!
//! A chunk's entry is named `.coffer-chunks/<BLAKE3>`: extracting packs with
//! plain `tar` gives every chunk under its hash, and the manifest's list of a
//! file's chunks says what to concatenate (docs/format.md has the script).

use crate::tree::content::ContentSink;
use crate::tree::entry::Chunk;
use crate::tree::tar_writer::{HeaderSpec, TarWriter};
use std::collections::BTreeMap;
use std::io;
use tar::EntryType;

/// The folder a plain `tar -x` of a pack puts chunks in.
pub const CHUNK_DIR: &str = ".coffer-chunks";

/// One read of a chunked file: its chunks so far.
#[derive(Default)]
pub(super) struct Read {
    pub(super) chunks: Vec<Chunk>,
    /// Whether this read stored any chunk (the file counts as new content).
    pub(super) new: bool,
}

impl Read {
    /// Stores `data`, the next chunk, unless its content is known.
    pub(super) fn store(&mut self, sink: &mut dyn ContentSink, data: &[u8]) -> io::Result<()> {
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
