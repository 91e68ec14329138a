//! The commit side of a run: which targets take part (preflight), what each
//! lane's uploads gave, the manifest, the marker, the check that every object is
//! in place before the marker is written, the commit per target, and the
//! clean-up of a failed run's partial folder.

use super::lane::{Lane, Taking, live};
use super::report::ObjectUpload;
use super::stream::Streamed;
use crate::format::{
    FormatVersion, MANIFEST, MARKER, Manifest, Marker, ObjectRecord, object_path, snapshot_dir,
};
use crate::keys::Recipients;
use crate::pipeline::{Finished, ObjectWriter};
use crate::retention::held::{self, Hold};
use anyhow::{Context, Result, anyhow};
use coffer_config::Job;
use coffer_plugins::{Explained, Op, Target};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// Removes whatever a failed run left under the snapshot folder (best effort; prune
/// removes anything left after its grace period, and is the only one to on a
/// target this host does not prune).
pub(super) fn remove_partial(rt: &Handle, targets: &[Target], job: &str, id: &str) {
    let dir = snapshot_dir(job, id);
    for t in targets.iter().filter(|t| t.prunes_here) {
        rt.block_on(async {
            let mut listing = t.store.list(Some(&dir));
            while let Some(Ok(meta)) = listing.next().await {
                let _ = t.store.delete(&meta.location).await;
            }
        });
        t.remove_empty_folder(&dir);
    }
}

/// Lists the job's folder on every target at once: for each, the names of the
/// folders in it (so the run's id can avoid them), or why it failed.
pub(super) fn preflight(
    rt: &Handle,
    targets: &[Target],
    job: &str,
) -> Vec<Result<Vec<String>, Explained>> {
    let folder = object_store::path::Path::from(job);
    rt.block_on(futures::future::join_all(targets.iter().map(|t| {
        let folder = &folder;
        async move {
            match t.store.list_with_delimiter(Some(folder)).await {
                Ok(listing) => Ok(listing
                    .common_prefixes
                    .iter()
                    .filter_map(|p| p.filename().map(str::to_string))
                    .collect()),
                Err(e) => {
                    let mut x = t.explain(Op::List, &e);
                    x.message = format!("cannot list: {}", x.message);
                    Err(x)
                }
            }
        }
    })))
}

/// Asks every target for each object the marker will list (concurrently); per
/// target, `Some(why)` when one is missing or has another size than was written.
pub(crate) fn objects_in_place(
    rt: &Handle,
    targets: &[Target],
    job: &str,
    id: &str,
    objects: &[ObjectRecord],
) -> Vec<Option<String>> {
    rt.block_on(futures::future::join_all(targets.iter().map(
        |t| async move {
            let heads = objects.iter().map(|o| async move {
                let path = object_path(job, id, &o.key);
                match t.store.head(&path).await {
                    Ok(meta) if meta.size == o.stored_size => None,
                    Ok(meta) => Some(format!(
                        "{path} holds {} bytes, {} were written",
                        meta.size, o.stored_size
                    )),
                    Err(object_store::Error::NotFound { .. }) => {
                        Some(format!("{path} is gone (deleted while the run went on?)"))
                    }
                    Err(e) => Some(format!(
                        "cannot check {path}: {}",
                        t.explain(Op::Read, &e).detail
                    )),
                }
            });
            let problems: Vec<String> = futures::future::join_all(heads)
                .await
                .into_iter()
                .flatten()
                .collect();
            (!problems.is_empty()).then(|| problems.join("; "))
        },
    )))
}

pub(super) fn write_manifest(
    rt: &Handle,
    targets: &[Target],
    job: &Job,
    id: &str,
    manifest: &Manifest,
    recipients: &Arc<Recipients>,
) -> Result<Finished> {
    if targets.is_empty() {
        return Err(anyhow!("every target failed"));
    }
    let path = object_path(&job.name, id, MANIFEST);
    let mut w = ObjectWriter::start(
        rt,
        targets,
        &path,
        recipients.clone(),
        job.compression,
        Arc::new(AtomicBool::new(false)),
    )?;
    if let Err(e) = serde_json::to_writer(&mut w, manifest) {
        w.abandon();
        return Err(e).context("cannot write the manifest");
    }
    Ok(w.finish()?)
}

/// The marker's fields that say what the snapshot is rather than what it holds.
pub(super) fn marker_of(
    taking: &Taking,
    host: String,
    (skew, window): (f64, f64),
    key: &crate::format::seal::HostKey,
) -> Marker {
    Marker {
        format: if taking.packs.is_some() {
            FormatVersion::V2
        } else {
            FormatVersion::V1
        },
        id: taking.id.clone(),
        job: taking.job.name.clone(),
        host,
        coffer_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: taking.started,
        finished_at: OffsetDateTime::now_utc(),
        skew_seconds: skew,
        window_seconds: Some(window),
        objects: Vec::new(),
        packs: Vec::new(),
        packed_size: 0,
        packed_sources: Vec::new(),
        streams: Vec::new(),
        manifest: None,
        warnings: Default::default(),
        check: None,
        seal: crate::format::seal::Seal::Signed(key.public),
    }
}

/// Per lane streaming, what each source's upload gave: a target commits only if
/// it holds every source object.
pub(super) fn record_uploads(streaming: &mut [&mut Lane], streamed: &[Streamed]) {
    for s in streamed {
        for (lane, result) in streaming.iter_mut().zip(&s.finished.targets) {
            match result {
                Ok(up) => lane.report.uploads.push(ObjectUpload {
                    key: if s.packed.is_some() {
                        format!("{}: new packs", s.name)
                    } else {
                        s.key.clone()
                    },
                    upload: *up,
                }),
                Err(e) => lane.fail(e.to_string(), e.retryable),
            }
        }
    }
}

/// Writes the manifest to every lane still in; a lane whose write failed is out.
/// Returns the manifest's record for the marker.
pub(super) fn manifest_to(
    taking: &Taking,
    lanes: &mut [Lane],
    manifest: &Manifest,
    recipients: &Arc<Recipients>,
) -> Result<ObjectRecord> {
    let (mut live_lanes, live_targets) = live(lanes);
    let fin = write_manifest(
        taking.rt,
        &live_targets,
        taking.job,
        &taking.id,
        manifest,
        recipients,
    )?;
    for (lane, result) in live_lanes.iter_mut().zip(&fin.targets) {
        match result {
            Ok(up) => lane.report.uploads.push(ObjectUpload {
                key: MANIFEST.to_string(),
                upload: *up,
            }),
            Err(e) => lane.fail(e.to_string(), e.retryable),
        }
    }
    Ok(ObjectRecord {
        key: MANIFEST.to_string(),
        source: None,
        plaintext_size: fin.plaintext_size,
        stored_size: fin.stored_size,
        blake3: fin.blake3,
        facts: BTreeMap::new(),
    })
}

/// Format 2: writes the manifest as chunks into packs, to every lane still in (a
/// lane whose pack upload failed is out): an unchanged tree's manifest repeats the
/// last one's chunks, which are not stored again. Returns where the marker finds
/// it, and the packs it is in (for the marker's list and the run's clean-up).
pub(super) fn manifest_chunked(
    ctx: &super::context::RunContext,
    packs: &super::packs::RunPacks,
    lanes: &mut [Lane],
    manifest: &Manifest,
) -> Result<(crate::format::ManifestChunks, crate::pack::write::Packed)> {
    let (mut live_lanes, live_targets) = live(lanes);
    if live_targets.is_empty() {
        return Err(anyhow!("every target failed"));
    }
    let here = super::context::RunContext {
        targets: &live_targets,
        failed: ctx.failed.clone(),
        ..*ctx
    };
    let mut writer = packs
        .writer(&here, "manifest")
        .context("cannot start the manifest's pack writer")?;
    let written = (|| -> std::io::Result<_> {
        // The run's peak of memory is here, with every pack buffer alive: a
        // chunker of 1 MiB room, written through a buffer of a quarter of that.
        let chunker = coffer_plugins::chunker::Chunker::with_room(1 << 20);
        let mut chunked =
            coffer_plugins::chunked::ChunkedWriter::with_chunker(&mut writer, chunker);
        {
            let mut out = std::io::BufWriter::with_capacity(256 << 10, &mut chunked);
            serde_json::to_writer(&mut out, manifest)?;
            std::io::Write::flush(&mut out)?;
        }
        chunked.finish()
    })();
    let done = written.and_then(|c| {
        writer.stream_stored(&c.chunks.chunks, c.chunks.new);
        Ok((c, writer.finish()?))
    });
    let (c, packed) = match done {
        Ok(done) => done,
        Err(e) => {
            let (ids, own) = writer.abandon();
            packs.wrote(ids);
            // As for a source's packs: each target's own failure is its reason.
            super::lane::put_failures(lanes, &own);
            return Err(anyhow!("cannot write the manifest: {e}"));
        }
    };
    packs.wrote(packed.written.iter().map(|w| w.info.id.clone()));
    let fin = super::stream::packs_finished(&live_targets, &packed);
    for (lane, result) in live_lanes.iter_mut().zip(&fin.targets) {
        match result {
            Ok(up) => lane.report.uploads.push(ObjectUpload {
                key: "manifest: new packs".to_string(),
                upload: *up,
            }),
            Err(e) => lane.fail(e.to_string(), e.retryable),
        }
    }
    let chunks = crate::format::ManifestChunks {
        size: c.size,
        blake3: c.blake3,
        chunks: c
            .chunks
            .chunks
            .into_iter()
            .map(|c| crate::format::ChunkPlace {
                pack: c.pack,
                offset: c.offset,
                size: c.size,
            })
            .collect(),
    };
    Ok((chunks, packed))
}

/// The commit, per target: a target gets the signed marker only if it holds every
/// object the marker lists, with the size written; a lane that does not commit
/// loses what the run wrote to it. Returns how many targets committed.
pub(super) fn commit(
    rt: &Handle,
    job: &Job,
    lanes: &mut [Lane],
    marker: &Marker,
    marker_bytes: Vec<u8>,
    state_dir: &std::path::Path,
) -> usize {
    let marker_path = object_path(&job.name, &marker.id, MARKER);
    let (mut live_lanes, live_targets) = live(lanes);
    let checked = objects_in_place(rt, &live_targets, &job.name, &marker.id, &marker.objects);
    let packs_checked = super::packs::packs_in_place(rt, &live_targets, &job.name, &marker.packs);
    for ((lane, problem), packs_problem) in live_lanes.iter_mut().zip(checked).zip(packs_checked) {
        let problem = problem.or(packs_problem);
        if let Some(why) = problem {
            // An object gone or cut short (a prune from elsewhere, a full disk):
            // a new run writes everything afresh.
            lane.fail(format!("not committed: {why}"), true);
            continue;
        }
        // Object Lock: what the snapshot references is held before the marker
        // says it exists, and the marker right after; a snapshot that could not
        // be held is not one this target keeps.
        if let Err(e) = held::hold(
            rt,
            &lane.target,
            &job.name,
            marker,
            Hold::Contents(Some(state_dir)),
        ) {
            lane.fail(format!("not committed: {}", e.message), e.retryable);
            continue;
        }
        let written = rt.block_on(
            lane.target
                .store
                .put(&marker_path, PutPayload::from(marker_bytes.clone())),
        );
        if let Err(e) = written {
            let x = lane.target.explain(Op::Write, &e);
            lane.fail(
                format!("cannot write {marker_path}: {}", x.message),
                x.retryable,
            );
            continue;
        }
        if let Err(e) = held::hold(rt, &lane.target, &job.name, marker, Hold::Marker) {
            lane.fail(
                format!("snapshot written but its marker not locked: {}", e.message),
                e.retryable,
            );
        }
    }
    let mut committed = 0;
    for lane in lanes.iter_mut() {
        match &lane.out {
            None => {
                lane.report.committed = true;
                committed += 1;
            }
            Some(e) => {
                lane.report.error = Some(e.clone());
                if lane.written {
                    remove_partial(
                        rt,
                        std::slice::from_ref(&lane.target),
                        &job.name,
                        &marker.id,
                    );
                }
            }
        }
    }
    committed
}
