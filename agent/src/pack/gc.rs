//! What packs a target holds, and deleting those no snapshot needs.
//!
//! Garbage collection needs no private key: every commit marker lists the packs
//! its snapshot references. A pack goes only when no marker on the target lists
//! it, it is older than the job's grace period (a run on another host may be
//! filling it right now; runs on this host are kept out by the job lock, which
//! prune holds), and every marker folder on the target could be read: a marker
//! this coffer cannot read (a newer format, damage) might reference anything.
//!
//! A run killed while it writes a pack leaves that pack's staging file
//! `<id>.tar.zst.age#<n>` on a local target (object_store hides it from listings);
//! it goes by the same grace period, by its modification time, and only under
//! that exact name. On S3 the same kill leaves an unfinished multipart upload,
//! which object_store can neither list nor abort without its upload id: prune
//! aborts those whose id the run wrote down (`upload_journal`, in
//! `retention::prune`), and a lifecycle rule on the bucket removes the rest (see
//! docs/configuration.md, "S3").

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

/// Deletes packs (best effort: what fails is garbage prune removes later). A
/// target this host does not prune (`prune = "elsewhere"`) is left alone: the
/// host that prunes it collects them.
pub(crate) fn delete_packs(rt: &Handle, targets: &[Target], job: &str, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    for t in targets.iter().filter(|t| t.prunes_here) {
        // A packs folder swapped for a symlink is not deleted through.
        if let Err(e) = t.refuse_linked_folder(&crate::pack::packs_dir(job)) {
            tracing::warn!("job {job}, target {}: packs not deleted: {e}", t.name);
            continue;
        }
        rt.block_on(futures::future::join_all(ids.iter().map(|id| async move {
            match t.store.delete(&pack_path(job, id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::debug!(
                    "cannot delete pack {id} of job {job}: {}",
                    t.explain(coffer_plugins::Op::Delete, &e).message
                ),
            }
        })));
    }
}

/// Repacking without the key, from the live files on disk: the mostly unused
/// packs are dropped from this host's index, so the next backup reads the files
/// they held and stores them in new packs; once the snapshots that still
/// reference the old packs are forgotten, garbage collection deletes them. (A
/// repack that reads the packs would need the private identity on the backup
/// host, which coffer keeps elsewhere.) Call with the job's lock held. Returns
/// what to tell the operator.
pub(crate) fn rewrite_later(
    state_dir: &std::path::Path,
    job: &str,
    ids: &[String],
) -> Result<Option<String>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let (mut index, _) = super::index::Index::open(state_dir, job)?;
    let files = index.forget_packs(ids)?;
    Ok((files > 0).then(|| {
        format!(
            "{} pack(s) are mostly unused by the kept snapshots: the next backup stores \
             their {files} live file(s) again, and the packs go once no snapshot needs them",
            ids.len()
        )
    }))
}

/// What prune leaves on a target only because it is younger than the grace
/// period (`incomplete_after`): garbage that goes with a later prune, from when.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Waiting {
    /// Packs no snapshot references.
    pub packs: u64,
    /// Staging files of pack uploads that never completed (local targets).
    pub staging_files: u64,
    /// Folders of runs that never committed.
    pub incomplete_folders: u64,
    pub bytes: u64,
    /// When the first of them may go, and when the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removable_from: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_removable_by: Option<chrono::DateTime<chrono::Utc>>,
}

impl Waiting {
    pub(crate) fn is_empty(&self) -> bool {
        self.packs + self.staging_files + self.incomplete_folders == 0
    }

    /// Counts `bytes` that may go at `at`.
    fn add(&mut self, bytes: u64, at: chrono::DateTime<chrono::Utc>) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.removable_from = Some(self.removable_from.map_or(at, |t| t.min(at)));
        self.all_removable_by = Some(self.all_removable_by.map_or(at, |t| t.max(at)));
    }

    /// Adds what `other` counts.
    pub(crate) fn merge(&mut self, other: &Waiting) {
        self.packs += other.packs;
        self.staging_files += other.staging_files;
        self.incomplete_folders += other.incomplete_folders;
        self.bytes = self.bytes.saturating_add(other.bytes);
        for at in [other.removable_from, other.all_removable_by]
            .into_iter()
            .flatten()
        {
            self.add(0, at);
        }
    }

    pub(crate) fn add_pack(&mut self, bytes: u64, at: chrono::DateTime<chrono::Utc>) {
        self.packs += 1;
        self.add(bytes, at);
    }

    pub(crate) fn add_staging(&mut self, bytes: u64, at: chrono::DateTime<chrono::Utc>) {
        self.staging_files += 1;
        self.add(bytes, at);
    }

    pub(crate) fn add_folder(&mut self, bytes: u64, at: chrono::DateTime<chrono::Utc>) {
        self.incomplete_folders += 1;
        self.add(bytes, at);
    }
}

/// What a collection found and did on one target.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Collected {
    pub(crate) deleted: Vec<String>,
    pub(crate) freed_bytes: u64,
    /// Unreferenced packs and staging files younger than the grace period, left
    /// for next time.
    pub(crate) young: Waiting,
    /// Staging files of killed pack uploads removed (`<job>/packs/<name>`), and
    /// their bytes.
    pub(crate) staging_removed: Vec<String>,
    pub(crate) staging_freed_bytes: u64,
    /// Packs still referenced, and their bytes.
    pub(crate) live: usize,
    pub(crate) live_bytes: u64,
    /// Stored bytes of the referenced packs that no kept snapshot uses (an
    /// estimate, see `waste`).
    pub(crate) dead_bytes: u64,
    /// Referenced packs of which kept snapshots use less than the job's
    /// `repack_unused` share allows: their live files are to be stored again.
    pub(crate) mostly_unused: Vec<String>,
    /// Unreferenced packs S3 Object Lock still holds: left until it ends.
    pub(crate) locked: Vec<crate::retention::prune::Locked>,
}

/// How much of each referenced pack no kept snapshot uses, from the markers alone
/// (no key needed): a pack holds `content_size` bytes of files and each marker says
/// how many of them its snapshot uses; the most any kept snapshot uses is taken
/// as what is live. Exact when later snapshots use part of what earlier ones used
/// (files are added and deleted, never brought back), an over-estimate of the
/// waste otherwise. Returns the dead stored bytes, and the packs whose unused
/// share is at least `rewrite_above`.
pub(crate) fn waste(markers: &[crate::format::Marker], rewrite_above: f64) -> (u64, Vec<String>) {
    let mut packs: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for p in markers.iter().flat_map(|m| &m.packs) {
        let e = packs.entry(p.id.as_str()).or_default();
        e.0 = e.0.max(p.stored_size);
        e.1 = e.1.max(p.content_size);
        e.2 = e.2.max(p.used);
    }
    let mut dead = 0u64;
    let mut rewrite = Vec::new();
    for (id, (stored, content, used)) in packs {
        if content == 0 {
            continue;
        }
        let unused = content.saturating_sub(used) as f64 / content as f64;
        dead = dead.saturating_add((stored as f64 * unused) as u64);
        if unused >= rewrite_above && unused > 0.0 {
            rewrite.push(id.to_string());
        }
    }
    (dead, rewrite)
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
            c.young.add_pack(
                l.size,
                l.modified
                    .checked_add_signed(grace)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
            );
        } else {
            c.deleted.push(id.clone());
            c.freed_bytes = c.freed_bytes.saturating_add(l.size);
        }
    }
    c
}

/// The snapshots that stay on a target, as a collection must see them: the
/// markers read, and how many marker folders could not be read.
pub(crate) struct Remaining<'a> {
    pub(crate) markers: &'a [crate::format::Marker],
    pub(crate) unread: usize,
}

/// A job's rules for its garbage: how long an unreferenced pack or staging file
/// is left alone (a run elsewhere may still be writing it), and the unused share
/// from which a pack is to be rewritten.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) grace: std::time::Duration,
    pub(crate) rewrite_above: f64,
}

/// Deletes the packs of `job` on `target` that none of the remaining markers
/// references. When some marker folders could not be read, nothing is deleted
/// (one of them might reference any pack).
pub(crate) fn collect(
    rt: &Handle,
    target: &Target,
    job: &str,
    remaining: Remaining,
    rules: Rules,
    dry_run: bool,
) -> Result<Collected> {
    let Remaining { markers, unread } = remaining;
    let Rules {
        grace,
        rewrite_above,
    } = rules;
    let listed = list_packs(rt, target, job)?;
    if listed.is_empty() && unread > 0 {
        return Ok(Collected::default());
    }
    if unread > 0 {
        return Err(anyhow!(
            "packs of job {job} on target {} were not collected: {unread} snapshot marker(s) \
             could not be read, and they may reference any pack (see the warnings above)",
            target.name
        ));
    }
    let staging = staging_leftovers(target, job, grace, dry_run)?;
    if listed.is_empty() {
        return Ok(staging);
    }
    let referenced: BTreeSet<&str> = markers
        .iter()
        .flat_map(|m| m.packs.iter().map(|p| p.id.as_str()))
        .collect();
    let mut c = unreferenced(&listed, &referenced, chrono::Utc::now(), grace);
    (c.dead_bytes, c.mostly_unused) = waste(markers, rewrite_above);
    if target.object_lock().is_some() {
        let (free, held) = crate::retention::held::split_held(
            rt,
            target,
            std::mem::take(&mut c.deleted),
            |id| pack_path(job, id),
            time::OffsetDateTime::now_utc(),
        );
        for (id, held) in held {
            c.freed_bytes = c.freed_bytes.saturating_sub(listed[&id].size);
            c.locked.push(crate::retention::prune::Locked::of(
                format!("pack {id}"),
                held,
            ));
        }
        c.deleted = free;
    }
    if !dry_run {
        delete_packs(rt, std::slice::from_ref(target), job, &c.deleted);
    }
    c.staging_removed = staging.staging_removed;
    c.staging_freed_bytes = staging.staging_freed_bytes;
    c.young.merge(&staging.young);
    Ok(c)
}

/// Removes the staging files of pack uploads a killed run left in the job's
/// `packs/` folder of a local target, once older than `grace` by their
/// modification time (a run on another host still writing one keeps touching
/// it). Only `<pack id>.tar.zst.age#<n>` goes: any other name there is not
/// coffer's. Staging files are no packs, so no marker can reference one. The
/// younger ones are counted in `young`.
fn staging_leftovers(
    target: &Target,
    job: &str,
    grace: std::time::Duration,
    dry_run: bool,
) -> Result<Collected> {
    let dir = packs_dir(job);
    let found = target.leftovers(&dir).map_err(|e| {
        anyhow!(
            "cannot look for the leftovers of killed runs of job {job} on {}: {e}",
            target.label()
        )
    })?;
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let now = chrono::Utc::now();
    let mut c = Collected::default();
    for l in found {
        if !l
            .object
            .strip_suffix(".tar.zst.age")
            .is_some_and(super::is_pack_id)
        {
            continue;
        }
        let modified = chrono::DateTime::<chrono::Utc>::from(l.modified);
        if now.signed_duration_since(modified) < grace {
            c.young.add_staging(
                l.size,
                modified
                    .checked_add_signed(grace)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
            );
            continue;
        }
        if !dry_run {
            target.remove_leftover(&dir, &l.name).map_err(|e| {
                anyhow!(
                    "job {job}: the staging file {} of a killed run was not removed: {e}",
                    l.name
                )
            })?;
        }
        c.staging_removed.push(format!("{dir}/{}", l.name));
        c.staging_freed_bytes = c.staging_freed_bytes.saturating_add(l.size);
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
        assert_eq!((c.live, c.young.packs, c.freed_bytes), (1, 1, 100));
        assert_eq!(c.young.bytes, 100);
        let removable = c.young.removable_from.expect("a date");
        let expect = listed[&"c".repeat(32)].modified + chrono::Duration::hours(1);
        assert_eq!(removable, expect);
    }

    fn marker_using(uses: &[(&str, u64)]) -> crate::format::Marker {
        let json = serde_json::json!({
            "format": 2, "id": "20260101T000000Z-abcd", "job": "app", "host": "h",
            "coffer_version": "0", "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:00:00Z", "skew_seconds": 0.0, "objects": [],
            "packs": uses.iter().map(|(id, used)| serde_json::json!({
                "id": id, "stored_size": 1000, "blake3": "0".repeat(64),
                "content_size": 2000, "used": used,
            })).collect::<Vec<_>>(),
        });
        serde_json::from_value(json).expect("marker")
    }

    #[test]
    fn waste_is_what_no_kept_snapshot_uses() {
        let (a, b) = ("a".repeat(32), "b".repeat(32));
        // a: the older snapshot uses 1800 of 2000 bytes, the newer 200; b: both 500.
        let kept = [
            marker_using(&[(&a, 1800), (&b, 500)]),
            marker_using(&[(&a, 200), (&b, 500)]),
        ];
        let (dead, rewrite) = waste(&kept, 0.5);
        // a: 10% unused of 1000 stored; b: 75% of 1000.
        assert_eq!(dead, 100 + 750);
        assert_eq!(rewrite, vec![b.clone()]);
        // Once the older snapshot is forgotten, most of a is dead too.
        let (dead, rewrite) = waste(&kept[1..], 0.5);
        assert_eq!(dead, 900 + 750);
        assert_eq!(rewrite, vec![a, b]);
        // 1.0 never asks for a rewrite unless nothing is used.
        assert!(waste(&kept, 1.0).1.is_empty());
    }
}
