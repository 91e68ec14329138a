//! What packs a target holds, and deleting those no snapshot needs.
//!
//! Garbage collection needs no private key: every commit marker lists the packs
//! its snapshot references. A pack goes only when no marker on the target lists
//! it, it is older than the job's grace period (a run on another host may be
//! filling it right now; runs on this host are kept out by the job lock, which
//! prune holds), and every marker folder on the target could be read: a marker
//! this coffer cannot read (a newer format, damage) might reference anything.

use super::{pack_id_of, pack_path, packs_dir};
use anyhow::{Result, anyhow};
use coffer_plugins::{Op, Target};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use std::collections::{BTreeMap, BTreeSet};
use tokio::runtime::Handle;

/// One pack as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) size: u64,
    pub(crate) modified: chrono::DateTime<chrono::Utc>,
}

/// The packs of `job` on `target`, by id. Other names in the folder are left
/// alone (not coffer's).
pub(crate) fn list_packs(
    rt: &Handle,
    target: &Target,
    job: &str,
) -> Result<BTreeMap<String, Listed>> {
    let dir = packs_dir(job);
    rt.block_on(async {
        let mut out = BTreeMap::new();
        let mut listing = target.store.list(Some(&dir));
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| {
                anyhow!(
                    "cannot list the packs of job {job}: {}",
                    target.explain(Op::List, &e).message
                )
            })?;
            if let Some(id) = pack_id_of(&meta.location) {
                out.insert(
                    id.to_string(),
                    Listed {
                        size: meta.size,
                        modified: meta.last_modified,
                    },
                );
            }
        }
        Ok(out)
    })
}

/// Deletes packs (best effort: what fails is garbage prune removes later).
pub(crate) fn delete_packs(rt: &Handle, targets: &[Target], job: &str, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    for t in targets {
        rt.block_on(futures::future::join_all(ids.iter().map(|id| async move {
            match t.store.delete(&pack_path(job, id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::debug!(
                    "cannot delete pack {id} of job {job} on target {}: {e}",
                    t.name
                ),
            }
        })));
    }
}

/// What a collection found and did on one target.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Collected {
    pub(crate) deleted: Vec<String>,
    pub(crate) freed_bytes: u64,
    /// Unreferenced packs younger than the grace period, left for next time.
    pub(crate) young: usize,
    /// Packs still referenced, and their bytes.
    pub(crate) live: usize,
    pub(crate) live_bytes: u64,
}

/// The packs of `listed` that no marker references and that are older than
/// `grace` at `now`.
pub(crate) fn unreferenced(
    listed: &BTreeMap<String, Listed>,
    referenced: &BTreeSet<&str>,
    now: chrono::DateTime<chrono::Utc>,
    grace: std::time::Duration,
) -> Collected {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut c = Collected::default();
    for (id, l) in listed {
        if referenced.contains(id.as_str()) {
            c.live += 1;
            c.live_bytes = c.live_bytes.saturating_add(l.size);
        } else if now.signed_duration_since(l.modified) < grace {
            c.young += 1;
        } else {
            c.deleted.push(id.clone());
            c.freed_bytes = c.freed_bytes.saturating_add(l.size);
        }
    }
    c
}

/// Deletes the packs of `job` on `target` that none of `markers` references.
/// `unread` counts marker folders that could not be read: then nothing is
/// deleted (one of them might reference any pack).
pub(crate) fn collect(
    rt: &Handle,
    target: &Target,
    job: &str,
    markers: &[crate::format::Marker],
    unread: usize,
    grace: std::time::Duration,
    dry_run: bool,
) -> Result<Collected> {
    let listed = list_packs(rt, target, job)?;
    if listed.is_empty() {
        return Ok(Collected::default());
    }
    if unread > 0 {
        return Err(anyhow!(
            "packs of job {job} on target {} were not collected: {unread} snapshot marker(s) \
             could not be read, and they may reference any pack (see the warnings above)",
            target.name
        ));
    }
    let referenced: BTreeSet<&str> = markers
        .iter()
        .flat_map(|m| m.packs.iter().map(|p| p.id.as_str()))
        .collect();
    let c = unreferenced(&listed, &referenced, chrono::Utc::now(), grace);
    if !dry_run {
        delete_packs(rt, std::slice::from_ref(target), job, &c.deleted);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mins_ago: i64) -> Listed {
        Listed {
            size: 100,
            modified: chrono::Utc::now() - chrono::Duration::minutes(mins_ago),
        }
    }

    #[test]
    fn only_old_unreferenced_packs_are_garbage() {
        let listed: BTreeMap<String, Listed> = [
            ("a".repeat(32), at(600)),
            ("b".repeat(32), at(600)),
            ("c".repeat(32), at(1)),
        ]
        .into_iter()
        .collect();
        let a = "a".repeat(32);
        let referenced: BTreeSet<&str> = [a.as_str()].into_iter().collect();
        let c = unreferenced(
            &listed,
            &referenced,
            chrono::Utc::now(),
            std::time::Duration::from_secs(3600),
        );
        assert_eq!(c.deleted, vec!["b".repeat(32)]);
        assert_eq!((c.live, c.young, c.freed_bytes), (1, 1, 100));
    }
}
