//! Turning the streamed sources into what a snapshot records: the manifest
//! (every source, its facts and entries), the marker's object list, the warning
//! totals, and what the run's report shows.

use super::report::SourceRun;
use super::stream::{PUBLIC_FACTS, Streamed};
use crate::format::{
    FormatVersion, Manifest, ObjectBinding, ObjectRecord, SourceManifest, StreamRecord,
    WarningCounts,
};
use coffer_config::Job;
use time::OffsetDateTime;

/// What the report shows of the sources, once they have streamed.
#[derive(Default)]
pub(super) struct Shown {
    pub(super) sources: Vec<SourceRun>,
    pub(super) warnings: Vec<String>,
}

/// The streamed sources turned into the manifest and the marker's object list.
pub(super) struct Assembled {
    pub(super) objects: Vec<ObjectRecord>,
    /// The marker's record of each stream source stored as chunks.
    pub(super) streams: Vec<StreamRecord>,
    pub(super) manifest: Manifest,
    pub(super) totals: WarningCounts,
    pub(super) shown: Shown,
}

pub(super) fn assemble(
    job: &Job,
    id: &str,
    started: OffsetDateTime,
    (skew, window): (f64, f64),
    streamed: Vec<Streamed>,
) -> Assembled {
    let host = crate::host::name().unwrap_or_default();
    let mut objects = Vec::new();
    let mut streams = Vec::new();
    let mut totals = WarningCounts::default();
    let mut shown = Shown::default();
    let mut sources = Vec::new();
    for s in streamed {
        let o = &s.outcome;
        totals.changed += o.changed;
        totals.vanished += o.vanished;
        totals.skipped += o.skipped;
        shown
            .warnings
            .extend(o.warnings.iter().map(|w| format!("source {}: {w}", s.name)));
        shown.sources.push(SourceRun {
            name: s.name.clone(),
            files: o.entries.files() as usize,
            bytes_read: o.bytes_read,
            data_bytes: if o.entries.files() > 0 {
                o.entries.bytes()
            } else {
                o.bytes_read
            },
            plaintext_size: s.finished.plaintext_size,
            stored_size: s.finished.stored_size,
            consistency_instant: s.instant,
            window_seconds: s.window_seconds,
            packed: s.packed.as_ref().map(|p| super::report::PackedRun {
                unchanged_files: p.unchanged_files,
                known_files: p.known_files,
                new_files: p.new_files,
                new_bytes: p.new_bytes,
                new_packs: p.written.len() as u64,
                packs: p.used.len() as u64,
            }),
        });
        // A chunked stream is in packs too, but not a packed (directory) source.
        let packed = s.packed.is_some() && s.chunked.is_none();
        let facts = || {
            o.facts
                .iter()
                .filter(|(k, _)| PUBLIC_FACTS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if let Some(c) = &s.chunked {
            streams.push(StreamRecord {
                source: s.name.clone(),
                plaintext_size: c.size,
                facts: facts(),
            });
        } else if s.packed.is_none() {
            objects.push(ObjectRecord {
                key: s.key.clone(),
                source: Some(s.name.clone()),
                plaintext_size: s.finished.plaintext_size,
                stored_size: s.finished.stored_size,
                blake3: s.finished.blake3.clone(),
                facts: facts(),
            });
        }
        sources.push(SourceManifest {
            name: s.name,
            kind: s.kind,
            object: s.key,
            packed,
            origin: s.origin,
            consistency_instant: s.instant,
            window_seconds: Some(s.window_seconds),
            facts: s.outcome.facts,
            bytes_read: s.outcome.bytes_read,
            warnings: WarningCounts {
                changed: s.outcome.changed,
                vanished: s.outcome.vanished,
                skipped: s.outcome.skipped,
            },
            entries: s.outcome.entries,
            chunked: s.chunked,
        });
    }
    let manifest = Manifest {
        format: if sources.iter().any(|s| s.packed || s.chunked.is_some()) {
            FormatVersion::V2
        } else {
            FormatVersion::V1
        },
        snapshot: id.to_string(),
        job: job.name.clone(),
        host,
        started_at: started,
        skew_seconds: skew,
        window_seconds: Some(window),
        sources,
        objects: objects
            .iter()
            .map(|o| ObjectBinding {
                key: o.key.clone(),
                plaintext_size: o.plaintext_size,
                stored_size: o.stored_size,
                blake3: o.blake3.clone(),
            })
            .collect(),
        check: None,
    };
    Assembled {
        objects,
        streams,
        manifest,
        totals,
        shown,
    }
}
