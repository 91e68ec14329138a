//! `repair --rebuild-index`: the job's local index made again from the targets,
//! for a host whose state_dir was lost or whose index was moved away, so the next
//! backup stores only what is new instead of everything.
//!
//! The newest trusted snapshot whose manifest can be read gives the rows: each
//! pack of its marker that is intact (stored bytes checked) on every target of
//! the job, and the content of each file stored in one of those packs. The
//! manifest records no inode numbers, devices or change times, which the index's
//! "unchanged" rows key on, so those rows are not made: the next backup reads
//! every file once, finds its content already stored, and stores nothing again.
//! Sparse files' content is stored in a form only their own entry reads, as a
//! backup keeps it out of the index too.

use crate::format::{Marker, PackRecord};
use crate::keys::Identities;
use crate::pack::index::{Index, PackInfo};
use anyhow::{Context, Result, anyhow};
use coffer_plugins::{EntryKind, Target};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;
use tokio::runtime::Handle;

/// What the rebuild took, or (dry run) would take.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    pub snapshot: String,
    /// The target its manifest was read from.
    pub target: String,
    pub dry_run: bool,
    /// Packs of the snapshot counted as stored.
    pub packs: usize,
    /// Packs of the snapshot left out: not intact on every target.
    pub packs_left_out: Vec<String>,
    /// Files whose content the index now counts as stored.
    pub contents: u64,
    /// Files of packed sources left out (content in a pack left out, sparse).
    pub files_left_out: u64,
    /// Always: no "unchanged (not read)" rows, and why.
    pub note: String,
}

pub(super) const NO_STAT_ROWS: &str = "the manifest records no inode numbers or change times, so the index has no \
     \"unchanged (not read)\" rows: the next backup reads every file once and stores \
     only content that is not in these packs";

/// `snapshots`: every trusted marker of the job with the index of the target
/// (in `targets`) it was found on. `intact(t, pack)`: whether the pack is intact
/// on `targets[t]`. `lock`: held unless this is a dry run.
#[allow(clippy::too_many_arguments)]
pub(super) fn rebuild(
    rt: &Handle,
    state_dir: &Path,
    job: &str,
    targets: &[Target],
    mut snapshots: Vec<(usize, Marker)>,
    intact: &mut dyn FnMut(usize, &PackRecord) -> bool,
    ids: &Identities,
    lock: Option<&crate::lock::JobLock>,
) -> Result<Rebuilt> {
    let tmp_dir = state_dir.join("tmp");
    snapshots.sort_by(|a, b| b.1.cmp_finished(&a.1));
    // A manifest damaged on one target may read on another: every copy is tried.
    let mut tried: Vec<(String, String)> = Vec::new();
    let mut chosen = None;
    for (t, marker) in snapshots {
        match crate::repo::read_manifest(rt, &targets[t], &marker, ids, &tmp_dir) {
            Ok(m) => {
                chosen = Some((t, marker, m));
                break;
            }
            Err(e) => tried.push((marker.id.clone(), format!("{e:#}"))),
        }
    }
    let Some((t, marker, manifest)) = chosen else {
        let why = tried
            .first()
            .map(|(id, e)| format!("; the newest, {id}: {e}"))
            .unwrap_or_default();
        return Err(anyhow!(
            "job {job}: no trusted snapshot whose manifest can be read on any target{why}; \
             the index was not rebuilt"
        ));
    };
    let mut keep = BTreeSet::new();
    let mut left_out = Vec::new();
    for p in &marker.packs {
        if (0..targets.len()).all(|i| intact(i, p)) {
            keep.insert(p.id.clone());
        } else {
            left_out.push(p.id.clone());
        }
    }
    let mut contents = 0u64;
    let mut files_left_out = 0u64;
    let mut index = match lock {
        Some(_) => {
            let (mut index, _) = Index::open(state_dir, job)?;
            index.begin_run()?;
            index.clear_committed()?;
            for p in marker.packs.iter().filter(|p| keep.contains(&p.id)) {
                index.stage_pack(&PackInfo {
                    id: p.id.clone(),
                    stored_size: p.stored_size,
                    blake3: p.blake3.clone(),
                    content_size: p.content_size,
                })?;
            }
            Some(index)
        }
        None => None,
    };
    // A chunked dump's chunks count as stored too: the next dump stores only what
    // changed since.
    for c in manifest
        .sources
        .iter()
        .filter_map(|s| s.chunked.as_ref())
        .flat_map(|c| &c.chunks)
        .filter(|c| keep.contains(&c.pack))
    {
        if let Some(index) = index.as_mut()
            && let Err(err) = index.stage_chunk(&c.blake3, c.size, &c.place())
        {
            let _ = index.abandon_run();
            return Err(err).context(format!("job {job}: the index was not rebuilt"));
        }
    }
    for s in manifest.sources.iter().filter(|s| s.packed) {
        let read = |e: std::io::Error| {
            anyhow!(
                "snapshot {}, source {}: cannot read its file list: {e}",
                marker.id,
                s.name
            )
        };
        for e in s.entries.iter().map_err(read)? {
            let e = e.map_err(read)?;
            if let (EntryKind::File, Some(hash), Some(chunks)) = (e.kind, &e.blake3, &e.chunks) {
                if !chunks.iter().all(|c| keep.contains(&c.pack)) {
                    files_left_out += 1;
                    continue;
                }
                contents += 1;
                if let Some(index) = index.as_mut() {
                    let staged = chunks
                        .iter()
                        .try_for_each(|c| index.stage_chunk(&c.blake3, c.size, &c.place()))
                        .and_then(|()| index.stage_list(hash, e.size, chunks));
                    if let Err(err) = staged {
                        let _ = index.abandon_run();
                        return Err(err).context(format!("job {job}: the index was not rebuilt"));
                    }
                }
                continue;
            }
            let (Some(hash), Some(content)) = (e.blake3.as_ref(), e.content.as_ref()) else {
                continue;
            };
            if e.kind != EntryKind::File {
                continue;
            }
            if e.sparse.is_some() || !keep.contains(&content.pack) {
                files_left_out += 1;
                continue;
            }
            contents += 1;
            if let Some(index) = index.as_mut()
                && let Err(err) = index.stage_content(hash, e.size, content)
            {
                let _ = index.abandon_run();
                return Err(err).context(format!("job {job}: the index was not rebuilt"));
            }
        }
    }
    if let Some(mut index) = index {
        // commit_run rolls back itself when it fails: the old rows stay.
        index
            .commit_run(&marker.id, &[])
            .context(format!("job {job}: the index was not rebuilt"))?;
    }
    Ok(Rebuilt {
        snapshot: marker.id.clone(),
        target: targets[t].name.clone(),
        dry_run: lock.is_none(),
        packs: keep.len(),
        packs_left_out: left_out,
        contents,
        files_left_out,
        note: NO_STAT_ROWS.to_string(),
    })
}
