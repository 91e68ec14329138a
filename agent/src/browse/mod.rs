//! Reading what snapshots hold without restoring them: `ls` (one snapshot's
//! subtree), `find` (a pattern over every snapshot of a job) and `diff` (two
//! snapshots, entry by entry). The front ends turn flags into these calls and
//! format what comes back; every engine here streams the file lists (from their
//! scratch files, in walk order) and hands entries to a sink one at a time, so
//! memory does not grow with the tree or the number of snapshots.
//!
//! What they share lives here: which directory sources of a snapshot they read,
//! the check that a file list comes in walk order, and the snapshots a reading
//! command may open.

pub(crate) mod diff;
pub(crate) mod find;
pub(crate) mod ls;

use crate::exit::usage;
use crate::format::seal::Trust;
use crate::format::{Manifest, Marker, SourceManifest};
use crate::keys::Identities;
use crate::restore::in_order::walk_order;
use anyhow::{Context, Result, anyhow};
use coffer_config::SourceType;
use coffer_plugins::{FileEntry, RawPath, Target};
use std::cmp::Ordering;
use std::path::Path;
use tokio::runtime::Handle;

/// A job's snapshots on one target as a reading command sees them: the identity
/// that decrypts their manifests, the signers it accepts, and where file lists
/// are spooled while they are read (the state directory's `tmp`).
pub(crate) struct Snapshots<'a> {
    pub rt: &'a Handle,
    pub target: &'a Target,
    pub job: &'a str,
    pub ids: &'a Identities,
    pub trust: &'a Trust,
    pub tmp_dir: &'a Path,
}

impl Snapshots<'_> {
    /// The committed snapshots, oldest first; refused when a signer is neither
    /// trusted nor named (`repo::vet_signers` says what to do).
    pub(crate) fn markers(&self) -> Result<Vec<Marker>> {
        let markers = crate::repo::snapshots(self.rt, self.target, self.job)?;
        crate::repo::vet_signers(self.trust, &markers, self.job, &self.target.name)?;
        Ok(markers)
    }

    /// A snapshot's manifest, its file lists kept in scratch files (never in memory).
    pub(crate) fn read(&self, marker: &Marker) -> Result<Manifest> {
        crate::repo::read_manifest(self.rt, self.target, marker, self.ids, self.tmp_dir)
    }
}

/// The directory sources of `manifest` (those with file lists), or the one named;
/// naming one the snapshot does not hold, or one that is not a directory, is bad
/// usage.
pub(crate) fn directory_sources<'m>(
    manifest: &'m Manifest,
    only: Option<&str>,
) -> Result<Vec<&'m SourceManifest>> {
    let Some(name) = only else {
        return Ok(manifest
            .sources
            .iter()
            .filter(|s| s.kind == SourceType::Directory)
            .collect());
    };
    match manifest.source(name) {
        Some(s) if s.kind == SourceType::Directory => Ok(vec![s]),
        Some(s) => Err(usage(format!(
            "source {name} of snapshot {} is a {} dump, not a directory: it has no file list",
            manifest.snapshot,
            s.kind.as_str()
        ))),
        None => {
            let have: Vec<&str> = manifest.sources.iter().map(|s| s.name.as_str()).collect();
            Err(usage(format!(
                "snapshot {} has no source \"{name}\"; it has: {}",
                manifest.snapshot,
                have.join(", ")
            )))
        }
    }
}

/// A source's entries, checked to come in walk order (each path after the one
/// before): `diff`'s merge and `ls`'s early stop rely on it, and a list out of
/// order would make them report wrong differences instead of failing.
pub(crate) struct Ordered<I> {
    entries: I,
    last: Option<RawPath>,
    /// Which list, for errors: "source storage of snapshot 2024...".
    what: String,
}

impl<I> Ordered<I> {
    pub(crate) fn new(entries: I, what: String) -> Ordered<I> {
        Ordered {
            entries,
            last: None,
            what,
        }
    }
}

impl<I: Iterator<Item = std::io::Result<FileEntry>>> Iterator for Ordered<I> {
    type Item = Result<FileEntry>;
    fn next(&mut self) -> Option<Result<FileEntry>> {
        let e = match self.entries.next()? {
            Ok(e) => e,
            Err(err) => {
                return Some(
                    Err(err).with_context(|| format!("cannot read the file list of {}", self.what)),
                );
            }
        };
        if let Some(last) = &self.last
            && walk_order(last.as_bytes(), e.path.as_bytes()) != Ordering::Less
        {
            return Some(Err(anyhow!(
                "the file list of {} is not in walk order ({} after {}): the manifest is damaged",
                self.what,
                e.path,
                last
            )));
        }
        self.last = Some(e.path.clone());
        Some(Ok(e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use coffer_plugins::EntryKind;

    pub(crate) fn entry(path: &str, kind: EntryKind) -> FileEntry {
        FileEntry::bare(path, kind)
    }

    #[test]
    fn a_list_out_of_walk_order_is_an_error() {
        let list = [".", "a", "a/b", "a-b", "a.b"].map(|p| Ok(entry(p, EntryKind::File)));
        let got: Result<Vec<_>> = Ordered::new(list.into_iter(), "test".into()).collect();
        assert_eq!(got.expect("in order").len(), 5);
        // Byte order puts `a-b` before `a/b`; the walk does not.
        let list = [".", "a", "a-b", "a/b"].map(|p| Ok(entry(p, EntryKind::File)));
        let err = Ordered::new(list.into_iter(), "test".into())
            .collect::<Result<Vec<_>>>()
            .expect_err("out of order");
        assert!(
            format!("{err:#}").contains("not in walk order (a/b after a-b)"),
            "{err:#}"
        );
        let twice = ["a", "a"].map(|p| Ok(entry(p, EntryKind::File)));
        assert!(
            Ordered::new(twice.into_iter(), "test".into())
                .collect::<Result<Vec<_>>>()
                .is_err()
        );
    }
}
