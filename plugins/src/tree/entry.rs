//! One file as recorded in the manifest: what the restore must recreate and what
//! `check` compares against. Paths are bytes on Linux; they are kept lossless.

use crate::fs::inode_flags::InodeFlag;
use crate::fs::xattr::Xattrs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    /// A further name of a regular file already recorded; `link` holds the first name.
    Hardlink,
    Fifo,
    Char,
    Block,
}

/// A relative path inside a source, `/`-separated; `.` is the source root.
/// Stored as a JSON string when it is UTF-8 and as a byte array otherwise.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawPath {
    Text(String),
    Bytes(Vec<u8>),
}

impl RawPath {
    pub fn from_bytes(b: &[u8]) -> RawPath {
        match std::str::from_utf8(b) {
            Ok(s) => RawPath::Text(s.to_string()),
            Err(_) => RawPath::Bytes(b.to_vec()),
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RawPath::Text(s) => s.as_bytes(),
            RawPath::Bytes(b) => b,
        }
    }
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(self.as_bytes()))
    }
    pub fn is_root(&self) -> bool {
        self.as_bytes() == b"."
    }
}

impl fmt::Debug for RawPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Shown with control characters escaped: a file named `a\nerror: ...` must not
/// forge a line in coffer's output.
impl fmt::Display for RawPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            escape_controls(&String::from_utf8_lossy(self.as_bytes()))
        )
    }
}

/// `s` with every control character (newline, escape, ...) written as an escape
/// sequence, for any name that reaches a human message: names come from file
/// systems and targets that other people write to.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether a path read from a manifest is one a walk could have produced: relative,
/// no `..`, no empty name, no NUL (`.` is the root itself).
pub fn is_safe_relative(raw: &[u8]) -> bool {
    !raw.is_empty()
        && raw.first() != Some(&b'/')
        && !raw.contains(&0)
        && raw
            .split(|b| *b == b'/')
            .all(|part| !part.is_empty() && part != b"..")
        && (raw == b"." || !raw.split(|b| *b == b'/').any(|p| p == b"."))
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: RawPath,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Seconds since the epoch and nanoseconds.
    pub mtime: i64,
    #[serde(default)]
    pub mtime_nsec: u32,
    /// BLAKE3 of the content, hex; regular files only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Symlink target, or for a hard link the path of the first name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<RawPath>,
    /// Device numbers of char and block devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<(u32, u32)>,
    /// The file changed during every read the backup made of it: its content is
    /// what the last read got, not the file as of one instant.
    #[serde(default, skip_serializing_if = "is_false")]
    pub changed: bool,
    /// Zero bytes after the content in this file's archive entry: it shrank while
    /// it was read straight into the stream (too large to re-read), after its
    /// header promised `size + padding` bytes. They are not part of `size` or
    /// `blake3`, and a restore does not write them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub padding: u64,
    /// The extended attributes coffer keeps (`user.*`, POSIX ACLs, file
    /// capabilities; see `xattr`), values in hex. None for hard links: they share
    /// the first name's inode.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: Xattrs,
    /// The user and group names of the ids its ACLs name (`"user:1001": "kadi"`),
    /// so a restore can give them by name, as it does owners.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acl_names: BTreeMap<String, String>,
    /// Immutable and append-only flags: recorded, not restored (see `inode_flags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<InodeFlag>,
    /// Format 2: where the file's content is stored (a pack and a place in it).
    /// None in format 1, where the source's archive holds every file in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentRef>,
    /// Format 2, a sparse file: where its data is, as (offset, length) pairs in
    /// order; everything else reads as zeros. Its content in the pack is the data
    /// only, one piece after the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<Vec<(u64, u64)>>,
    /// Format 2, a file cut into content-defined chunks (files larger than the
    /// walk's read buffer): its content is these chunks, in order, each a tar
    /// entry of its own in a pack; `content` is then None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<Chunk>>,
}

impl FileEntry {
    /// An entry of `kind` at `path` with every attribute at its zero value (mode
    /// 0644, owned by root): what tests and hand-built manifests start from.
    pub fn bare(path: &str, kind: EntryKind) -> FileEntry {
        FileEntry {
            path: RawPath::from_bytes(path.as_bytes()),
            kind,
            size: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: 0,
            mtime_nsec: 0,
            blake3: None,
            link: None,
            rdev: None,
            changed: false,
            padding: 0,
            xattrs: Default::default(),
            acl_names: Default::default(),
            flags: Vec::new(),
            content: None,
            sparse: None,
            chunks: None,
        }
    }
}

/// Pieces of data a sparse file may have and still be recorded as sparse: the
/// map must stay small in the manifest (a file with more is stored whole).
pub const MAX_SPARSE_PIECES: usize = 4096;

/// Whether `map` is one a backup could have written for a file of `size` bytes:
/// in order, not overlapping, inside the file, not too many pieces.
pub fn is_valid_sparse_map(map: &[(u64, u64)], size: u64) -> bool {
    let mut end = 0u64;
    map.len() <= MAX_SPARSE_PIECES
        && map.iter().all(|&(off, len)| {
            let ok = off >= end && len > 0 && off.checked_add(len).is_some_and(|e| e <= size);
            end = off.saturating_add(len);
            ok
        })
}

/// Where a file's content lives in format 2: pack `pack` (its id), starting at
/// `offset` bytes into the pack's uncompressed tar stream. The length is the
/// file's `size`; the bytes are checked against its `blake3` when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRef {
    pub pack: String,
    pub offset: u64,
}

/// One chunk of a chunked file (`FileEntry::chunks`): `size` bytes at `offset`
/// of pack `pack`'s uncompressed tar stream, hashing to `blake3` (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub pack: String,
    pub offset: u64,
    pub size: u64,
    pub blake3: String,
}

impl Chunk {
    /// Where it is, as any stored content's place.
    pub fn place(&self) -> ContentRef {
        ContentRef {
            pack: self.pack.clone(),
            offset: self.offset,
        }
    }
}

/// Whether `chunks` can be the content of a file of `size` bytes as a backup
/// writes it: none empty or over the chunker's largest, and their sizes add up.
pub fn is_valid_chunk_list(chunks: &[Chunk], size: u64) -> bool {
    let mut sum = 0u64;
    chunks.iter().all(|c| {
        sum = sum.saturating_add(c.size);
        c.size > 0 && c.size <= crate::tree::chunker::MAX as u64
    }) && sum == size
}

/// Where stored content is: one place in a pack, or chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    At(ContentRef),
    Chunks(Vec<Chunk>),
}

impl Stored {
    /// Every pack it is in, with the bytes it takes there (a chunk each).
    pub fn uses(&self, size: u64) -> Vec<(&str, u64)> {
        match self {
            Stored::At(c) => vec![(c.pack.as_str(), size)],
            Stored::Chunks(list) => list.iter().map(|c| (c.pack.as_str(), c.size)).collect(),
        }
    }
}

impl FileEntry {
    /// Where this file's content is stored (format 2), if the manifest says.
    pub fn stored(&self) -> Option<Stored> {
        match (&self.content, &self.chunks) {
            (_, Some(list)) => Some(Stored::Chunks(list.clone())),
            (Some(c), None) => Some(Stored::At(c.clone())),
            (None, None) => None,
        }
    }

    /// Records where its content is stored.
    pub fn set_stored(&mut self, stored: Stored) {
        match stored {
            Stored::At(c) => {
                self.content = Some(c);
                self.chunks = None;
            }
            Stored::Chunks(list) => {
                self.content = None;
                self.chunks = Some(list);
            }
        }
    }

    /// Every pack its content is in (chunks may be in several).
    pub fn packs(&self) -> Vec<&str> {
        let mut packs: Vec<&str> = self.content.iter().map(|c| c.pack.as_str()).collect();
        packs.extend(self.chunks.iter().flatten().map(|c| c.pack.as_str()));
        packs
    }
}
