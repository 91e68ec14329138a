//! Deep verify of one archive (a format-1 object, or a packed source rebuilt as
//! a tar stream): every regular file hashed, sparse files' holes included, and
//! matched in order against the manifest's entries, each problem noted in the
//! verdict.

use super::Verdict;
use crate::format::SourceManifest;
use crate::restore::in_order::InOrder;
use anyhow::{Context, Result, bail};
use coffer_plugins::{EntryKind, FileEntry};
use std::io::Read;

/// Hashes every file in the archive and compares with the manifest, whose regular
/// files come in the archive's order.
pub(super) fn check_archive(
    plain: &mut dyn Read,
    src: &SourceManifest,
    v: &mut Verdict,
) -> Result<()> {
    let files = src
        .entries
        .iter()?
        .filter(|e| e.as_ref().map_or(true, |e| e.kind == EntryKind::File));
    let mut manifest = InOrder::new(files)?;
    let missing = |w: FileEntry| {
        format!(
            "source {}: {}: in the manifest but not in the archive",
            src.name, w.path
        )
    };
    let mut archive = tar::Archive::new(plain);
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries().context("cannot read the archive")? {
        let mut entry = entry.context("cannot read the archive")?;
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let found = manifest.find(&raw, |w| v.problems.push(missing(w)))?;
        // A sparse file's entry holds its pieces of data; its hash is the whole
        // file's, zeros included.
        if let Some(w) = found.as_ref().filter(|w| w.sparse.is_some()) {
            let map = w.sparse.as_deref().unwrap_or_default();
            if !coffer_plugins::is_valid_sparse_map(map, w.size) {
                bail!(
                    "source {}: {name}: the manifest's map of a sparse file does not fit it",
                    src.name
                );
            }
            let data: u64 = map.iter().map(|(_, len)| len).sum();
            let (got, hash) = coffer_plugins::sparse::read_pieces(
                map,
                w.size,
                &mut entry,
                &mut buf,
                &mut |_, _| Ok(()),
            )
            .with_context(|| format!("source {}: {name}", src.name))?;
            v.files += 1;
            if got != data || w.blake3.as_deref() != Some(hash.to_hex().as_str()) {
                v.problems.push(format!(
                    "source {}: {name}: content does not match the manifest",
                    src.name
                ));
            }
            continue;
        }
        // Zeros after the content of a file that shrank while it was read
        // (`padding`) are not part of its size or hash.
        let padding = found.as_ref().map_or(0, |w| w.padding);
        let content = entry.size().saturating_sub(padding);
        let mut h = blake3::Hasher::new();
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .with_context(|| format!("source {}: {name}", src.name))?;
            if n == 0 {
                break;
            }
            let kept = (content.saturating_sub(size)).min(n as u64) as usize;
            h.update(&buf[..kept]);
            size += n as u64;
        }
        v.files += 1;
        match found {
            None => v.problems.push(format!(
                "source {}: {name}: in the archive but not in the manifest",
                src.name
            )),
            Some(w) => {
                if w.size.checked_add(w.padding) != Some(size)
                    || w.blake3.as_deref() != Some(h.finalize().to_hex().as_str())
                {
                    v.problems.push(format!(
                        "source {}: {name}: content does not match the manifest",
                        src.name
                    ));
                }
            }
        }
    }
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).context("cannot read the archive")?;
    manifest.rest(|w| v.problems.push(missing(w)))?;
    Ok(())
}
