//! The commit side of a run: which targets take part (preflight), the manifest,
//! the check that every object is in place before the marker is written, and the
//! clean-up of a failed run's partial folder.

use crate::format::{MANIFEST, Manifest, ObjectRecord, object_path, snapshot_dir};
use crate::keys::Recipients;
use crate::pipeline::{Finished, ObjectWriter};
use anyhow::{Context, Result, anyhow};
use coffer_config::Job;
use coffer_plugins::{Explained, Op, Target};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::runtime::Handle;

/// Removes whatever a failed run left under the snapshot folder (best effort; prune
/// removes anything left after its grace period).
pub(super) fn remove_partial(rt: &Handle, targets: &[Target], job: &str, id: &str) {
    let dir = snapshot_dir(job, id);
    for t in targets {
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
pub(super) fn objects_in_place(
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
