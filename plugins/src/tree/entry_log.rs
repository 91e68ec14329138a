//! The entries a directory source wrote, kept on disk instead of in memory.
//!
//! A manifest line costs a few hundred bytes in memory; a million files would cost a
//! few hundred MiB of the application server's memory. The walk appends each entry
//! to an unnamed temporary file (zstd-compressed JSON lines), and the manifest is
//! written by reading it back, so a backup's memory does not grow with its file count.
//! The file has no name: it vanishes with the process, even after a crash.

use crate::tree::entry::{EntryKind, FileEntry};
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Fast and still about 10x smaller than the JSON.
const SPILL_LEVEL: i32 = 1;

#[derive(Default)]
pub struct EntryLog {
    /// `None` until the first entry (database sources never have any).
    state: Option<Spill>,
    len: u64,
    files: u64,
    /// Bytes of content of the regular files.
    bytes: u64,
    dirs: u64,
    hardlinks: u64,
    /// Sparse files, and the bytes of their holes (size minus data).
    sparse: u64,
    holes: u64,
}

enum Spill {
    /// serde_json writes in small pieces: the buffer saves a zstd call for each.
    Writing(BufWriter<zstd::Encoder<'static, File>>),
    Done(File),
    /// Writing failed earlier; the error was returned then.
    Broken,
}

impl std::fmt::Debug for EntryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EntryLog({} entries)", self.len)
    }
}

impl EntryLog {
    /// An empty log whose entries will go to an unnamed file in `dir`.
    pub fn create_in(dir: &Path) -> io::Result<EntryLog> {
        std::fs::create_dir_all(dir)?;
        let file = tempfile::tempfile_in(dir)?;
        let enc = BufWriter::with_capacity(64 << 10, zstd::Encoder::new(file, SPILL_LEVEL)?);
        Ok(EntryLog {
            state: Some(Spill::Writing(enc)),
            ..EntryLog::default()
        })
    }

    pub fn push(&mut self, e: &FileEntry) -> io::Result<()> {
        let Some(Spill::Writing(enc)) = &mut self.state else {
            return Err(io::Error::other("entry log is not open for writing"));
        };
        serde_json::to_writer(&mut *enc, e)?;
        enc.write_all(b"\n")?;
        self.len += 1;
        match e.kind {
            EntryKind::File => {
                self.files += 1;
                self.bytes = self.bytes.saturating_add(e.size);
                if let Some(map) = &e.sparse {
                    let data = map.iter().fold(0u64, |n, (_, len)| n.saturating_add(*len));
                    self.sparse += 1;
                    self.holes = self.holes.saturating_add(e.size.saturating_sub(data));
                }
            }
            EntryKind::Dir => self.dirs += 1,
            EntryKind::Hardlink => self.hardlinks += 1,
            _ => {}
        }
        Ok(())
    }

    /// Ends writing; entries can be read back from then on.
    pub fn finish(&mut self) -> io::Result<()> {
        match self.state.take() {
            Some(Spill::Writing(enc)) => {
                self.state = Some(Spill::Broken);
                let file = enc.into_inner().map_err(|e| e.into_error())?.finish()?;
                self.state = Some(Spill::Done(file));
                Ok(())
            }
            other => {
                self.state = other;
                Ok(())
            }
        }
    }

    /// Every entry logged, including links and directories.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Regular files among them.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Bytes of content of the regular files written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Directories among them.
    pub fn dirs(&self) -> u64 {
        self.dirs
    }

    /// Hard links among them (further names of a file: no inode of their own).
    pub fn hardlinks(&self) -> u64 {
        self.hardlinks
    }

    /// Sparse files among the regular files (format 2).
    pub fn sparse(&self) -> u64 {
        self.sparse
    }

    /// Bytes of the sparse files' holes: of `bytes`, what is not data.
    pub fn holes(&self) -> u64 {
        self.holes
    }

    /// Reads the entries back in the order they were pushed.
    pub fn iter(&self) -> io::Result<Entries<'_>> {
        let inner = self
            .raw_lines()?
            .map(|plain| serde_json::Deserializer::from_reader(plain).into_iter());
        Ok(Entries { inner })
    }

    /// The log's JSON lines from the start; `None` when nothing was logged.
    fn raw_lines(&self) -> io::Result<Option<Plain<'_>>> {
        match &self.state {
            None => Ok(None),
            Some(Spill::Done(file)) => {
                let raw = BufReader::with_capacity(64 << 10, ReadAt { file, pos: 0 });
                // serde_json reads a byte at a time: it needs a buffer in front.
                Ok(Some(BufReader::with_capacity(
                    64 << 10,
                    zstd::Decoder::with_buffer(raw)?,
                )))
            }
            Some(_) => Err(io::Error::other("entry log read before it was finished")),
        }
    }
}

/// Reads a file from the start through `pread`, so a shared `&File` can be read
/// more than once.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The log's JSON lines, decompressed.
type Plain<'a> = BufReader<zstd::Decoder<'static, BufReader<ReadAt<'a>>>>;

type Stream<'a> = serde_json::StreamDeserializer<'a, serde_json::de::IoRead<Plain<'a>>, FileEntry>;

pub struct Entries<'a> {
    inner: Option<Stream<'a>>,
}

impl Iterator for Entries<'_> {
    type Item = io::Result<FileEntry>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .as_mut()?
            .next()
            .map(|r| r.map_err(io::Error::from))
    }
}

/// Writes the log as a JSON array, reading it back as it goes. Each line is the
/// JSON serde_json wrote for an entry, so it goes out as it is (`RawValue`, still
/// checked to be one JSON value): parsing a million entries into `FileEntry`s only
/// to write them again the same way cost a tenth of an unchanged run's CPU.
impl Serialize for EntryLog {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fail = |e: &io::Error| S::Error::custom(spill_error(e));
        let mut seq = serializer.serialize_seq(None)?;
        if let Some(mut lines) = self.raw_lines().map_err(|e| fail(&e))? {
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).map_err(|e| fail(&e))? == 0 {
                    break;
                }
                let raw: &serde_json::value::RawValue =
                    serde_json::from_str(line.trim_end_matches('\n'))
                        .map_err(|e| fail(&io::Error::from(e)))?;
                seq.serialize_element(raw)?;
            }
        }
        seq.end()
    }
}

thread_local! {
    static SPILL_DIR: std::cell::RefCell<Option<std::path::PathBuf>> =
        const { std::cell::RefCell::new(None) };
    /// Entries the logs read from JSON may still hold together, and why
    /// (`spill_into_at_most`).
    static SPILL_LEFT: std::cell::RefCell<Option<(u64, String)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a manifest read) with logs read from JSON kept in `dir`; without it they
/// go to the system's temporary directory.
pub fn spill_into<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    let before = SPILL_DIR.with(|d| d.replace(Some(dir.to_path_buf())));
    let out = f();
    SPILL_DIR.with(|d| *d.borrow_mut() = before);
    out
}

/// `spill_into`, where all the logs read together hold at most `max` entries: the
/// read fails at the first entry over it, before it is spilled, with `why` (what
/// the bound is) as the error.
pub fn spill_into_at_most<T>(dir: &Path, max: u64, why: String, f: impl FnOnce() -> T) -> T {
    let before = SPILL_LEFT.with(|l| l.replace(Some((max, why))));
    let out = spill_into(dir, f);
    SPILL_LEFT.with(|l| *l.borrow_mut() = before);
    out
}

/// Takes one entry from the `spill_into_at_most` budget, if there is one.
fn take_one() -> Result<(), String> {
    SPILL_LEFT.with(|l| match &mut *l.borrow_mut() {
        None => Ok(()),
        Some((0, why)) => Err(why.clone()),
        Some((left, _)) => {
            *left -= 1;
            Ok(())
        }
    })
}

/// Reads a JSON array of entries (a manifest's) into an unnamed file, so reading a
/// manifest does not take memory per file either.
impl<'de> Deserialize<'de> for EntryLog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LogVisitor;
        impl<'de> Visitor<'de> for LogVisitor {
            type Value = EntryLog;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of file entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EntryLog, A::Error> {
                use serde::de::Error as _;
                let fail = |e: io::Error| A::Error::custom(spill_error(&e));
                let dir = SPILL_DIR
                    .with(|d| d.borrow().clone())
                    .unwrap_or_else(std::env::temp_dir);
                let mut log = EntryLog::create_in(&dir).map_err(|e| {
                    A::Error::custom(format!(
                        "cannot keep the file list in {}: {e}",
                        dir.display()
                    ))
                })?;
                // Only manifests read from a target come through here: their paths
                // are joined to a destination, so each must be one a walk produces.
                while let Some(e) = seq.next_element::<FileEntry>()? {
                    take_one().map_err(A::Error::custom)?;
                    let link_ok = e.kind != EntryKind::Hardlink
                        || e.link
                            .as_ref()
                            .is_some_and(|l| crate::tree::entry::is_safe_relative(l.as_bytes()));
                    if !crate::tree::entry::is_safe_relative(e.path.as_bytes()) || !link_ok {
                        return Err(A::Error::custom(format!(
                            "file entry {} is not a relative path inside the source",
                            e.path
                        )));
                    }
                    // Their names and values are set on the restored files.
                    crate::fs::xattr::check(&e.xattrs, &e.acl_names)
                        .map_err(|why| A::Error::custom(format!("file entry {}: {why}", e.path)))?;
                    log.push(&e).map_err(fail)?;
                }
                log.finish().map_err(fail)?;
                Ok(log)
            }
        }
        deserializer.deserialize_seq(LogVisitor)
    }
}

fn spill_error(e: &io::Error) -> String {
    format!("cannot keep the file list in the temporary directory: {e}")
}

#[cfg(test)]
#[path = "entry_log_tests.rs"]
mod tests;
