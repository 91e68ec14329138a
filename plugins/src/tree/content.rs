//! Format 2's side of a directory walk: where file contents go when they are
//! stored in shared packs instead of one archive per snapshot.
//!
//! The walk asks the sink first whether a file is unchanged since the last
//! snapshot (same path and stat: not even opened), then, once it has read and
//! hashed it, whether its content is already stored (a copy or a rename costs
//! nothing); only new content is written, as one tar entry, into the sink. The
//! sink (the agent's pack writer) decides which pack that is and where; this
//! crate knows nothing of packs, compression or targets.

use crate::fs::stat::Stat;
use crate::tree::entry::{Chunk, ContentRef, RawPath, Stored};
use std::io::{self, Write};

/// What tells a file unchanged without reading it, as restic does with its
/// parent snapshot: size, both times to the nanosecond, inode and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
    pub ino: u64,
    pub dev: u64,
}

impl FileStat {
    pub fn of(md: &Stat) -> FileStat {
        FileStat {
            size: md.len(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
            ctime: md.ctime(),
            ctime_nsec: md.ctime_nsec().clamp(0, 999_999_999) as u32,
            ino: md.ino(),
            dev: md.dev(),
        }
    }
}

/// Stored content the sink already knows: its hash and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownContent {
    pub blake3: String,
    pub content: Stored,
}

/// Where a packing walk puts contents. Writes go to the current pack's tar
/// stream; `here` is the place the next byte will have.
pub trait ContentSink: Write + Send {
    /// Whether the walk should expect to read every file (nothing is known from an
    /// earlier snapshot: a first or full run), so opening files ahead of the
    /// reader, which lets the kernel read them ahead, pays off.
    fn reads_all(&self) -> bool;
    /// The last snapshot's record of `path`, when its stat was exactly `stat`.
    fn unchanged(&mut self, path: &RawPath, stat: &FileStat) -> io::Result<Option<KnownContent>>;
    /// Content with this hash and size that is already stored (or was stored
    /// earlier in this run).
    fn known(&mut self, blake3: &str, size: u64) -> io::Result<Option<ContentRef>>;
    /// A file of `size` bytes is about to be written: the sink may start a new
    /// pack first. Its tar entry (header, data, padding) follows.
    fn begin(&mut self, size: u64) -> io::Result<()>;
    /// Where the next byte written lands.
    fn here(&self) -> ContentRef;
    /// A sparse file with `holes` bytes of holes is about to be stored as one:
    /// whether the source's share of holes per snapshot has room for them (taking
    /// it). When not, the file is stored whole, zeros included: a restore hashes a
    /// sparse file whole, so it accepts only so many holes per snapshot.
    fn take_holes(&mut self, holes: u64) -> bool;
    /// The entry begun last is complete: its content (of `size` bytes, starting at
    /// `at`) hashes to `blake3`. `shared` is false for content stored in a form
    /// only its own entry can read (a sparse file's pieces): no other file may be
    /// given it as known content.
    fn stored(&mut self, blake3: &str, size: u64, at: &ContentRef, shared: bool) -> io::Result<()>;
    /// Where a chunk with this hash and size is stored already (by this run or an
    /// earlier one), if it is.
    fn known_chunk(&mut self, blake3: &str, size: u64) -> io::Result<Option<ContentRef>>;
    /// The chunk begun last (`begin`, then its tar entry) is complete.
    fn stored_chunk(&mut self, blake3: &str, size: u64, at: &ContentRef) -> io::Result<()>;
    /// A chunked file's content is complete: `size` bytes hashing to `blake3`,
    /// made of `chunks`, `new` when some were stored by this read.
    fn chunked(&mut self, blake3: &str, size: u64, chunks: &[Chunk], new: bool) -> io::Result<()>;
    /// `path`, which `unchanged` found, is in this snapshot as it was: what the
    /// sink knew of it stays as it is.
    fn kept(&mut self, path: &RawPath) -> io::Result<()>;
    /// `path` is in this snapshot with this content; a stat of `None` means it
    /// changed while read and must be read again next time.
    fn seen(
        &mut self,
        path: &RawPath,
        stat: Option<&FileStat>,
        known: &KnownContent,
    ) -> io::Result<()>;
}
