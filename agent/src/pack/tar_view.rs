//! A packed source seen as the tar stream format 1 stores: every entry of the
//! manifest, in order, with each file's bytes fetched from its pack.
//!
//! Restore and deep verify already unpack and check a tar stream entry by entry
//! against the manifest (no path outside the destination, no device unless asked,
//! every file's size and hash); rebuilding that stream lets format 2 go through
//! the same guarded code instead of a second copy of it. The headers come from the
//! (signed, bound) manifest, never from a pack; each file's bytes are hashed as
//! they are fetched and must match the manifest, or the stream stops with the
//! file's and the pack's names.

use super::read::PackReader;
use crate::format::{Marker, SourceManifest};
use crate::keys::Identities;
use anyhow::{Context, Result, anyhow, bail};
use coffer_plugins::tar_writer::{HeaderSpec, TarWriter};
use coffer_plugins::{EntryKind, Target};
use std::io::{self, BufWriter, Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::runtime::Handle;

/// Where a packed source's contents are read from.
pub(crate) struct PackedView<'a> {
    pub(crate) rt: &'a Handle,
    pub(crate) target: &'a Target,
    pub(crate) marker: &'a Marker,
    pub(crate) ids: &'a Identities,
    /// Bytes fetched from the target, for the report.
    pub(crate) fetched: Arc<AtomicU64>,
}

/// Which entries the stream holds (`restore --path`); all when `None`.
pub(crate) type Keep<'a> = Option<&'a crate::restore::path_filter::PathFilter>;

/// Runs `consume` on the tar stream of `source`, produced on a second thread.
/// The error returned is the root cause: the producer's (a damaged pack) unless it
/// only stopped because `consume` did.
pub(crate) fn with_tar<T>(
    view: &PackedView<'_>,
    source: &SourceManifest,
    keep: Keep<'_>,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let (mut r, w) = io::pipe().context("cannot make a pipe")?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce(view, source, keep, w));
        let consumed = consume(&mut r);
        drop(r);
        let produced = producer.join().unwrap_or_else(|_| {
            Err(anyhow!(
                "coffer failed reading packs (a panic); please report this"
            ))
        });
        match (produced, consumed) {
            (Ok(()), c) => c,
            (Err(p), Ok(v)) if stopped_by_reader(&p) => Ok(v),
            (Err(p), Err(c)) if stopped_by_reader(&p) => Err(c),
            (Err(p), _) => Err(p),
        }
    })
}

/// A pack read that failed the way a damaged, cut short or missing pack does.
fn looks_damaged(err: &io::Error) -> bool {
    use super::read::PackError;
    match err.get_ref().and_then(|e| e.downcast_ref::<PackError>()) {
        Some(PackError::Damaged { .. } | PackError::TooShort { .. }) => true,
        Some(PackError::Fetch { cause, .. }) => cause.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}

fn stopped_by_reader(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A file's bytes as tar entry data.
struct Data<'a, W: Write>(&'a mut TarWriter<W>);

impl<W: Write> Write for Data<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.data(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn produce(
    view: &PackedView<'_>,
    source: &SourceManifest,
    keep: Keep<'_>,
    out: io::PipeWriter,
) -> Result<()> {
    let mut packs = PackReader::of_target(
        view.rt,
        view.target,
        &view.marker.job,
        view.ids,
        view.fetched.clone(),
    );
    // Every read announced first, so that the reader fetches no further into a
    // pack than the snapshot's files there go (one pass over the manifest's list).
    for e in source.entries.iter()? {
        let e = e?;
        if e.kind != EntryKind::File || keep.is_some_and(|k| !k.keeps(&e)) {
            continue;
        }
        if let Some(content) = &e.content {
            let data = e.sparse.as_ref().map_or(e.size, |m| {
                m.iter()
                    .fold(0u64, |sum, (_, len)| sum.saturating_add(*len))
            });
            packs.plan(&content.pack, content.offset, data);
        }
        for c in e.chunks.iter().flatten() {
            packs.plan(&c.pack, c.offset, c.size);
        }
    }
    let mut tar = TarWriter::new(BufWriter::with_capacity(256 << 10, out));
    for e in source.entries.iter()? {
        let e = e?;
        if keep.is_some_and(|k| !k.keeps(&e)) {
            continue;
        }
        // A sparse file's entry holds its pieces of data only, one after the
        // other; the restore puts them where the manifest's map says.
        let data = e
            .sparse
            .as_ref()
            .map(|m| m.iter().map(|(_, len)| len).sum());
        tar.header(&HeaderSpec {
            size: data.unwrap_or(e.size),
            ..HeaderSpec::of(&e)
        })?;
        if e.kind != EntryKind::File {
            continue;
        }
        if let Some(chunks) = &e.chunks {
            read_chunks(view, &mut packs, source, &e, chunks, &mut Data(&mut tar))?;
            tar.pad()?;
            continue;
        }
        let content = e.content.as_ref().ok_or_else(|| {
            anyhow!(
                "source {}: {}: the manifest says where no content is (not a format-2 entry)",
                source.name,
                e.path
            )
        })?;
        let pack = view.marker.pack(&content.pack).ok_or_else(|| {
            anyhow!(
                "source {}: {}: its pack {} is not listed in snapshot.json",
                source.name,
                e.path,
                coffer_plugins::escape_controls(&content.pack)
            )
        })?;
        let fetched = match &e.sparse {
            None => packs.read(
                &pack.id,
                pack.stored_size,
                content.offset,
                e.size,
                &mut Data(&mut tar),
            ),
            Some(map) => {
                if !coffer_plugins::is_valid_sparse_map(map, e.size) {
                    bail!(
                        "source {}: {}: the manifest's map of a sparse file does not fit it",
                        source.name,
                        e.path
                    );
                }
                packs.read_sparse(
                    &pack.id,
                    pack.stored_size,
                    content.offset,
                    map,
                    e.size,
                    &mut Data(&mut tar),
                    // In a tar stream the pieces follow one another.
                    |_, _| Ok(()),
                )
            }
        };
        // Typed with the pack's id: the caller checks that pack whole and has the
        // index forget it if it is proven damaged (`damage`).
        let suspect = |message: String| super::damage::Suspect {
            pack: pack.id.clone(),
            message,
        };
        let hash = fetched.map_err(|err| read_failed(source, &e, &pack.id, err))?;
        if e.blake3.as_deref() != Some(hash.to_hex().as_str()) {
            return Err(suspect(format!(
                "source {}: {}: the bytes in pack {} do not match the manifest's BLAKE3 \
                 (the pack is damaged, or was replaced by someone who can write to target {})",
                source.name, e.path, pack.id, view.target.name
            ))
            .into());
        }
        tar.pad()?;
    }
    tar.finish()?.flush()?;
    Ok(())
}

/// Why reading `e`'s bytes from `pack` failed: typed as a suspect pack when it
/// looks like damage (the caller then reads the pack whole), not for a wrong
/// identity or a network error.
fn read_failed(
    source: &SourceManifest,
    e: &coffer_plugins::FileEntry,
    pack: &str,
    err: io::Error,
) -> anyhow::Error {
    let message = format!("source {}: {}: {err}", source.name, e.path);
    if looks_damaged(&err) {
        anyhow::Error::new(super::damage::Suspect {
            pack: pack.to_string(),
            message,
        })
    } else {
        anyhow!(message)
    }
}

/// A chunked file's bytes, chunk after chunk, each checked against its hash as it
/// arrives (so a damaged chunk names its pack), the whole against the file's.
fn read_chunks(
    view: &PackedView<'_>,
    packs: &mut PackReader<'_>,
    source: &SourceManifest,
    e: &coffer_plugins::FileEntry,
    chunks: &[coffer_plugins::Chunk],
    out: &mut dyn Write,
) -> Result<()> {
    if e.sparse.is_some() || !coffer_plugins::is_valid_chunk_list(chunks, e.size) {
        bail!(
            "source {}: {}: the manifest's chunks do not add up to the file's {} bytes",
            source.name,
            e.path,
            e.size
        );
    }
    let mut whole = blake3::Hasher::new();
    for c in chunks {
        use super::chunk_stream::{ChunkError, read_chunk};
        let mut both = super::read::Hashed {
            out: &mut *out,
            hasher: &mut whole,
        };
        match read_chunk(packs, view.marker, c, true, &mut both) {
            Ok(()) => {}
            Err(ChunkError::Unlisted) => bail!(
                "source {}: {}: its pack {} is not listed in snapshot.json",
                source.name,
                e.path,
                coffer_plugins::escape_controls(&c.pack)
            ),
            Err(ChunkError::Read(err)) => return Err(read_failed(source, e, &c.pack, err)),
            Err(ChunkError::Mismatch) => {
                return Err(super::damage::Suspect {
                    pack: c.pack.clone(),
                    message: format!(
                        "source {}: {}: a chunk's bytes in pack {} (offset {}) do not match the \
                         manifest's BLAKE3 (the pack is damaged, or was replaced by someone who \
                         can write to target {})",
                        source.name, e.path, c.pack, c.offset, view.target.name
                    ),
                }
                .into());
            }
        }
    }
    if e.blake3.as_deref() != Some(whole.finalize().to_hex().as_str()) {
        bail!(
            "source {}: {}: its chunks do not make the file the manifest's BLAKE3 names \
             (a manifest written wrong)",
            source.name,
            e.path
        );
    }
    Ok(())
}
