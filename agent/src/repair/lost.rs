//! What a snapshot that stays damaged loses, read from its manifest with the
//! identity: a damaged manifest loses the whole snapshot (nothing says what it
//! held or how to restore it), a damaged dump or archive object its whole source,
//! a damaged pack the files of packed sources whose content is in it.

use crate::format::{MANIFEST, Marker};
use crate::keys::Identities;
use coffer_plugins::{EntryKind, Target};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;
use tokio::runtime::Handle;

/// File names listed per source; the counts are always complete.
const MAX_PATHS: usize = 1000;

/// One source of a damaged snapshot and what of it is lost.
#[derive(Debug, Clone, Serialize)]
pub struct LostSource {
    pub source: String,
    /// The whole source is lost (its dump or archive object is damaged).
    pub whole: bool,
    /// Files whose content is in a damaged pack (for a whole source: 0).
    pub files: u64,
    pub bytes: u64,
    /// The first of those files (at most 1000), as `<path inside the source>`.
    pub paths: Vec<String>,
}

/// What reading the manifest said.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "lost", rename_all = "snake_case")]
pub enum Lost {
    /// The manifest itself is damaged: the snapshot cannot be restored at all.
    WholeSnapshot,
    Sources {
        sources: Vec<LostSource>,
    },
    /// The manifest could not be read (not for this identity, unreadable).
    Unknown {
        why: String,
    },
}

/// The files `marker` loses on `target` with `bad` (pack ids and object keys
/// that stay damaged).
pub(super) fn lost(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    ids: &Identities,
    tmp_dir: &Path,
    bad_packs: &BTreeSet<String>,
    bad_objects: &BTreeSet<String>,
) -> Lost {
    let manifest_in_bad = marker
        .manifest
        .as_ref()
        .is_some_and(|m| m.chunks.iter().any(|c| bad_packs.contains(&c.pack)));
    if bad_objects.contains(MANIFEST) || manifest_in_bad {
        return Lost::WholeSnapshot;
    }
    let manifest = match crate::repo::read_manifest(rt, target, marker, ids, tmp_dir) {
        Ok(m) => m,
        Err(e) => {
            return Lost::Unknown {
                why: format!("{e:#}"),
            };
        }
    };
    let mut sources = Vec::new();
    for key in bad_objects {
        if let Some(name) = marker.object(key).and_then(|o| o.source.clone()) {
            sources.push(LostSource {
                source: name,
                whole: true,
                files: 0,
                bytes: 0,
                paths: Vec::new(),
            });
        }
    }
    if !bad_packs.is_empty() {
        // A chunked stream (a dump) with a chunk in a damaged pack is lost whole.
        for s in &manifest.sources {
            let hit = s
                .chunked
                .as_ref()
                .is_some_and(|c| c.chunks.iter().any(|c| bad_packs.contains(&c.pack)));
            if hit {
                sources.push(LostSource {
                    source: s.name.clone(),
                    whole: true,
                    files: 0,
                    bytes: 0,
                    paths: Vec::new(),
                });
            }
        }
        for s in manifest.sources.iter().filter(|s| s.packed) {
            if sources.iter().any(|l| l.whole && l.source == s.name) {
                continue;
            }
            let mut l = LostSource {
                source: s.name.clone(),
                whole: false,
                files: 0,
                bytes: 0,
                paths: Vec::new(),
            };
            let entries = match s.entries.iter() {
                Ok(e) => e,
                Err(e) => {
                    return Lost::Unknown {
                        why: format!("source {}: cannot read its file list: {e}", s.name),
                    };
                }
            };
            for e in entries {
                let e = match e {
                    Ok(e) => e,
                    Err(e) => {
                        return Lost::Unknown {
                            why: format!("source {}: cannot read its file list: {e}", s.name),
                        };
                    }
                };
                let in_bad = e.kind == EntryKind::File
                    && e.packs().into_iter().any(|p| bad_packs.contains(p));
                if in_bad {
                    l.files += 1;
                    l.bytes += e.size;
                    if l.paths.len() < MAX_PATHS {
                        l.paths.push(e.path.to_string());
                    }
                }
            }
            if l.files > 0 {
                sources.push(l);
            }
        }
    }
    Lost::Sources { sources }
}
