//! Format 2's side of the directory walk: a regular file's content goes into the
//! run's packs (`ContentSink`), and only when it is not stored already.
//!
//! - Unchanged since the last snapshot (same path and stat): not even opened.
//! - Small (up to the read buffer): read once into the buffer until a read is
//!   stable, hashed, then written unless its content is known.
//! - Larger: read once, cut into content-defined chunks as it is read, each
//!   chunk hashed and stored unless known (`chunked`): a big file that changed a
//!   little costs the chunks around the change. If it changed during the read,
//!   it is read again; the chunks of the discarded read stay in the pack unused.
//! - Sparse: only its data, in a PAX sparse entry.

use super::Walk;
use crate::fs::stat::Stat;
use crate::fs::xattr::On;
use crate::sources::source::SourceError;
use crate::tree::chunked::Chunks;
use crate::tree::chunker::Chunker;
use crate::tree::content::{ContentSink, FileStat, KnownContent};
use crate::tree::entry::{ContentRef, EntryKind, FileEntry, RawPath, Stored};
use crate::tree::stable_read::{Capture, Fault, MAX_TRIES, differs};
use crate::tree::tar_writer::{HeaderSpec, TarWriter};
use crate::tree::walk_ahead;
use std::fs::File;
use std::io;
use std::path::Path;
use tar::EntryType;

/// A file's entry written into the current pack (`write_into`).
struct Written {
    /// Where its content starts.
    at: ContentRef,
    /// How many bytes were read; zeros fill the rest of the entry when it shrank.
    len: u64,
    /// Their BLAKE3 in hex, when asked for.
    hash: Option<String>,
}

/// A file's content found stored (now, or by an earlier snapshot), for
/// `packed_done`.
struct Found<'a> {
    blake3: String,
    content: Stored,
    /// The stat the next run compares with, when the file did not change.
    stat: Option<&'a Stat>,
    /// Which read found it (1: the first; more are reported).
    tries: u32,
}

impl Walk<'_, '_> {
    /// What tells `md`'s file unchanged, under the live tree's device when read
    /// from a filesystem snapshot (see `stable_dev`).
    fn file_stat(&self, md: &Stat) -> FileStat {
        let mut stat = FileStat::of(md);
        if let Some(dev) = self.stable_dev {
            stat.dev = dev;
        }
        stat
    }

    /// A regular file in format 2: unchanged since the last snapshot (by its stat)
    /// it is not opened; otherwise read and hashed, and written only when its
    /// content is not stored yet.
    pub(super) fn packed_file(
        &mut self,
        abs: &Path,
        rel: RawPath,
        sys: (&Path, On<'_>),
        md: &Stat,
        opened: Option<io::Result<File>>,
    ) -> Result<(), SourceError> {
        let Some(sink) = self.sink.take() else {
            return Err(self.out_err(io::Error::other("no pack writer")));
        };
        let done = self.packed_file_into(&mut *sink, abs, rel, sys, md, opened);
        self.sink = Some(sink);
        done
    }

    fn packed_file_into(
        &mut self,
        sink: &mut dyn ContentSink,
        abs: &Path,
        rel: RawPath,
        (sys, on): (&Path, On<'_>),
        md: &Stat,
        opened: Option<io::Result<File>>,
    ) -> Result<(), SourceError> {
        let stat = self.file_stat(md);
        if let Some(known) = sink
            .unchanged(&rel, &stat)
            .map_err(|err| self.out_err(err))?
        {
            let mut e = self.entry_for(rel, EntryKind::File, md, Some((on, abs)));
            e.size = stat.size;
            e.blake3 = Some(known.blake3.clone());
            e.set_stored(known.content.clone());
            sink.kept(&e.path).map_err(|err| self.out_err(err))?;
            // Passed over, but covered: the bar's estimate counts the whole tree.
            self.progress.add(stat.size, 1);
            return self.record(&e);
        }
        let opened = opened.unwrap_or_else(|| walk_ahead::open_nofollow(sys));
        let Some((file, before)) = self.open_found(abs, opened)? else {
            return Ok(());
        };
        if let Some(map) = crate::tree::sparse::data_map(&file, &before) {
            let data = map.iter().map(|(_, len)| len).sum::<u64>();
            if sink.take_holes(before.len().saturating_sub(data)) {
                return self.packed_sparse(sink, abs, rel, &file, before, map);
            }
            // Over the snapshot's share of holes: stored whole, as a file without holes.
        }
        // A file in a filesystem snapshot cannot change: held in the buffer, it is
        // read once, like a live one (it used to be hashed and then read again).
        if before.len() > self.reader.buf.len() as u64 {
            return self.packed_large(sink, abs, rel, &file, before);
        }
        let captured = self
            .reader
            .capture(&file, before, &mut self.outcome.bytes_read, self.progress)
            .map_err(|f| self.fault(abs, f))?;
        let (mut e, stat) = match captured {
            Capture::Held(read) => {
                let mut e =
                    self.entry_for(rel, EntryKind::File, &read.md, Some((On::File(&file), abs)));
                e.size = read.len;
                let hash = read.hash.to_hex().to_string();
                let known = sink
                    .known(&hash, read.len)
                    .map_err(|err| self.out_err(err))?;
                let content = match known {
                    Some(c) => {
                        self.reader.discard(&read);
                        c
                    }
                    None => {
                        sink.begin(read.len).map_err(|err| self.out_err(err))?;
                        let mut tar = TarWriter::new(&mut *sink);
                        self.header(&mut tar, &e, EntryType::Regular)?;
                        let at = tar.get_ref().here();
                        self.reader
                            .emit(&read, &mut |b| tar.data(b))
                            .map_err(|f| self.fault(abs, f))?;
                        tar.pad().map_err(|err| self.out_err(err))?;
                        sink.stored(&hash, read.len, &at, true)
                            .map_err(|err| self.out_err(err))?;
                        at
                    }
                };
                e.blake3 = Some(hash);
                e.set_stored(Stored::At(content));
                self.note_reads(abs, &read, &mut e);
                let stat = read.stable.then(|| self.file_stat(&read.md));
                (e, stat)
            }
            Capture::Direct { md, why } => {
                let mut e = self.entry_for(rel, EntryKind::File, &md, Some((On::File(&file), abs)));
                e.size = md.len();
                let Written { at, len, hash } = self.write_into(sink, abs, &file, &e, true)?;
                let padding = e.size - len;
                let after = self.stat(abs, &file)?;
                e.size = len;
                e.padding = padding;
                let hash = hash.unwrap_or_default();
                sink.stored(&hash, len, &at, true)
                    .map_err(|err| self.out_err(err))?;
                e.blake3 = Some(hash);
                e.set_stored(Stored::At(at));
                let changed = self.note_direct(abs, &md, &after, &why, &mut e);
                (e, (!changed).then(|| self.file_stat(&after)))
            }
        };
        if let (Some(blake3), Some(content)) = (e.blake3.clone(), e.stored()) {
            let known = KnownContent { blake3, content };
            sink.seen(&e.path, stat.as_ref(), &known)
                .map_err(|err| self.out_err(err))?;
        }
        e.padding = 0;
        self.progress.add(0, 1);
        self.record(&e)
    }

    /// A file larger than the read buffer: read once, cut into content-defined
    /// chunks on the way (`chunked`), each hashed and stored unless its content is
    /// known. When it changed during the read, it is read again: the chunks that
    /// did not change are known by then and cost nothing; those of the discarded
    /// read stay in the pack, unused.
    fn packed_large(
        &mut self,
        sink: &mut dyn ContentSink,
        abs: &Path,
        rel: RawPath,
        file: &File,
        before: Stat,
    ) -> Result<(), SourceError> {
        let mut e = self.entry_for(rel, EntryKind::File, &before, Some((On::File(file), abs)));
        let mut md = before;
        let mut chunker = Chunker::default();
        let mut tries = 0;
        loop {
            tries += 1;
            let mut read = Chunks::default();
            let (len, hash) = self
                .reader
                .read_direct(
                    file,
                    md.len(),
                    &mut self.outcome.bytes_read,
                    self.progress,
                    &mut |b| chunker.push(b, &mut |c| read.store(sink, c)),
                )
                .map_err(|f| self.fault(abs, f))?;
            chunker
                .finish(&mut |c| read.store(sink, c))
                .map_err(|err| self.out_err(err))?;
            let after = self.stat(abs, file)?;
            let stable = len == md.len() && !differs(&md, &after);
            if !stable && tries <= MAX_TRIES {
                md = after;
                continue;
            }
            let hash = hash.to_hex().to_string();
            sink.chunked(&hash, len, &read.chunks, read.new)
                .map_err(|err| self.out_err(err))?;
            e.size = len;
            if !stable {
                // Still changing: kept as last read, and marked.
                e.changed = true;
                self.outcome.changed += 1;
                self.outcome.warnings.push(format!(
                    "{}: changed while it was read, {} times: stored as last read ({len} bytes) \
                     and marked as changed in the snapshot",
                    abs.display(),
                    MAX_TRIES + 1
                ));
            }
            let found = Found {
                blake3: hash,
                content: Stored::Chunks(read.chunks),
                // Read again next time when it changed (no stat to compare with).
                stat: stable.then_some(&after),
                // Its reads are reported above when it kept changing.
                tries: if stable { tries } else { 1 },
            };
            return self.packed_done(sink, e, found, abs);
        }
    }

    /// Writes `e`'s tar entry with the file's bytes into the current pack.
    fn write_into(
        &mut self,
        sink: &mut dyn ContentSink,
        abs: &Path,
        file: &File,
        e: &FileEntry,
        hash: bool,
    ) -> Result<Written, SourceError> {
        sink.begin(e.size).map_err(|err| self.out_err(err))?;
        let mut tar = TarWriter::new(&mut *sink);
        self.header(&mut tar, e, EntryType::Regular)?;
        let at = tar.get_ref().here();
        let mut hasher = hash.then(blake3::Hasher::new);
        let len = self
            .reader
            .copy_at(
                file,
                0,
                e.size,
                &mut self.outcome.bytes_read,
                self.progress,
                &mut |b| {
                    if let Some(h) = hasher.as_mut() {
                        h.update(b);
                    }
                    tar.data(b)
                },
            )
            .map_err(|f| self.fault(abs, f))?;
        tar.zeros(e.size - len).map_err(|err| self.out_err(err))?;
        tar.pad().map_err(|err| self.out_err(err))?;
        Ok(Written {
            at,
            len,
            hash: hasher.map(|h| h.finalize().to_hex().to_string()),
        })
    }

    fn stat(&self, abs: &Path, file: &File) -> Result<Stat, SourceError> {
        Stat::of(file).map_err(|err| self.fault(abs, Fault::Source(err)))
    }

    /// Records a file whose content is stored (now or before): in the manifest, and
    /// with its stat for the next run when it did not change.
    fn packed_done(
        &mut self,
        sink: &mut dyn ContentSink,
        mut e: FileEntry,
        found: Found<'_>,
        abs: &Path,
    ) -> Result<(), SourceError> {
        let Found {
            blake3,
            content,
            stat,
            tries,
        } = found;
        if tries > 1 {
            self.outcome.warnings.push(format!(
                "{}: changed while it was read; read again, stored as read the {} time \
                 ({} bytes), unchanged during that read",
                abs.display(),
                super::ordinal(tries),
                e.size
            ));
        }
        let known = KnownContent { blake3, content };
        sink.seen(&e.path, stat.map(|md| self.file_stat(md)).as_ref(), &known)
            .map_err(|err| self.out_err(err))?;
        e.blake3 = Some(known.blake3);
        e.set_stored(known.content);
        self.progress.add(0, 1);
        self.record(&e)
    }

    /// A sparse file in format 2: only its data is read and stored (a PAX 1.0
    /// sparse entry), the holes are recorded in the manifest. Its hash is that of
    /// the whole file, zeros included, as for any file. Such a file is read again
    /// by the next run (the index does not keep maps), and its stored pieces are
    /// never given to another file as known content.
    fn packed_sparse(
        &mut self,
        sink: &mut dyn ContentSink,
        abs: &Path,
        rel: RawPath,
        file: &File,
        before: Stat,
        map: Vec<(u64, u64)>,
    ) -> Result<(), SourceError> {
        let mut e = self.entry_for(rel, EntryKind::File, &before, Some((On::File(file), abs)));
        e.size = before.len();
        let data: u64 = map.iter().map(|(_, len)| len).sum();
        sink.begin(data).map_err(|err| self.out_err(err))?;
        let mut tar = TarWriter::new(&mut *sink);
        tar.sparse_header(&HeaderSpec::of(&e), &map)
            .map_err(|err| self.out_err(err))?;
        let at = tar.get_ref().here();
        let mut hasher = blake3::Hasher::new();
        let mut pos = 0u64;
        for &(off, len) in &map {
            crate::tree::sparse::hash_zeros(&mut hasher, off - pos);
            let (got, _) = self
                .reader
                .read_direct_at(
                    file,
                    off,
                    len,
                    &mut self.outcome.bytes_read,
                    self.progress,
                    &mut |b| {
                        hasher.update(b);
                        tar.data(b)
                    },
                )
                .map_err(|f| self.fault(abs, f))?;
            // A piece that shrank: zeros keep the entry's promised length.
            tar.zeros(len - got).map_err(|err| self.out_err(err))?;
            crate::tree::sparse::hash_zeros(&mut hasher, len - got);
            pos = off + len;
        }
        crate::tree::sparse::hash_zeros(&mut hasher, e.size - pos);
        tar.pad().map_err(|err| self.out_err(err))?;
        let after = Stat::of(file).map_err(|err| self.fault(abs, Fault::Source(err)))?;
        let hash = hasher.finalize().to_hex().to_string();
        sink.stored(&hash, data, &at, false)
            .map_err(|err| self.out_err(err))?;
        e.blake3 = Some(hash);
        e.set_stored(Stored::At(at));
        e.sparse = Some(map);
        self.note_direct(abs, &before, &after, "it is sparse", &mut e);
        self.progress.add(0, 1);
        self.record(&e)
    }
}
