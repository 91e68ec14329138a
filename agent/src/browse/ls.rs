//! What a snapshot holds, entry by entry, without restoring it: a restore of a
//! large tree to learn whether one file is in it costs hours, the manifest alone
//! has the answer. The file list is read from its scratch file in walk order and
//! handed on as it comes, so memory does not grow with the tree; with a PATH the
//! read stops once the walk has passed that subtree.

use super::{Ordered, directory_sources};
use crate::exit::usage;
use crate::format::{Manifest, SourceManifest};
use crate::restore::in_order::walk_order;
use anyhow::{Context, Result};
use coffer_plugins::FileEntry;
use std::cmp::Ordering;

/// Which part of the snapshot to list: one source or all its directory sources,
/// the whole tree or the subtree at `path` (`<source>/<path>` names a source too).
pub(crate) struct Request<'a> {
    pub source: Option<&'a str>,
    pub path: Option<&'a [u8]>,
}

/// Hands every entry of the part `req` asks for to `sink` (with its source's
/// name), in walk order; returns how many. A PATH that names nothing is bad usage.
pub(crate) fn ls(
    manifest: &Manifest,
    req: &Request<'_>,
    mut sink: impl FnMut(&str, &FileEntry) -> Result<()>,
) -> Result<u64> {
    let all = directory_sources(manifest, req.source)?;
    let (sources, under) = match req.path {
        None => (all, b".".to_vec()),
        Some(p) => resolve(all, req.source.is_some(), p),
    };
    let mut shown = 0u64;
    for src in sources {
        let what = format!("source {} of snapshot {}", src.name, manifest.snapshot);
        let list = src
            .entries
            .iter()
            .with_context(|| format!("cannot read the file list of {what}"))?;
        for e in Ordered::new(list, what) {
            let e = e?;
            if !is_under(e.path.as_bytes(), &under) {
                // The subtree is one run of the walk: once past it, nothing more
                // of this source can be in it.
                if walk_order(e.path.as_bytes(), &under) == Ordering::Greater {
                    break;
                }
                continue;
            }
            shown += 1;
            sink(&src.name, &e)?;
        }
    }
    if shown == 0
        && let Some(p) = req.path
    {
        return Err(usage(format!(
            "snapshot {} holds no {} in {}",
            manifest.snapshot,
            coffer_plugins::escape_controls(&String::from_utf8_lossy(p)),
            req.source.map_or_else(
                || "any directory source".to_string(),
                |s| format!("source {s}")
            )
        )));
    }
    Ok(shown)
}

/// Which sources PATH is in, and PATH inside them. `<source>/<path>` names a
/// source when its first part is one of the snapshot's directory sources (and no
/// `--source` was given); otherwise PATH is looked for in every source listed.
fn resolve<'m>(
    sources: Vec<&'m SourceManifest>,
    source_given: bool,
    path: &[u8],
) -> (Vec<&'m SourceManifest>, Vec<u8>) {
    let path = normalize(path);
    if !source_given {
        let (head, rest) = match path.iter().position(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..], &b""[..]),
        };
        if let Some(src) = sources.iter().find(|s| s.name.as_bytes() == head) {
            return (vec![*src], normalize(rest));
        }
    }
    (sources, path)
}

/// PATH as a manifest spells it: no leading `/` or `./`, no trailing `/`; the
/// source's root is `.`.
fn normalize(mut p: &[u8]) -> Vec<u8> {
    loop {
        if let Some(rest) = p.strip_prefix(b"/") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix(b"./") {
            p = rest;
        } else {
            break;
        }
    }
    while let Some(rest) = p.strip_suffix(b"/") {
        p = rest;
    }
    if p.is_empty() {
        b".".to_vec()
    } else {
        p.to_vec()
    }
}

/// `path` is `under` itself or inside it.
fn is_under(path: &[u8], under: &[u8]) -> bool {
    under == b"."
        || path == under
        || (path.starts_with(under) && path.get(under.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_as_the_manifest_spells_them() {
        assert_eq!(normalize(b"/uploads/2024/"), b"uploads/2024");
        assert_eq!(normalize(b"./a"), b"a");
        assert_eq!(normalize(b"."), b".");
        assert_eq!(normalize(b"/"), b".");
        assert_eq!(normalize(b""), b".");
    }

    #[test]
    fn a_subtree_is_the_entry_and_what_is_under_it() {
        assert!(is_under(b"docs", b"docs"));
        assert!(is_under(b"docs/a", b"docs"));
        assert!(!is_under(b"docs.txt", b"docs"));
        assert!(!is_under(b"docs-old/a", b"docs"));
        assert!(!is_under(b"doc", b"docs"));
        assert!(is_under(b".", b"."));
        assert!(is_under(b"anything/at/all", b"."));
    }
}
