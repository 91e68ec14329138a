//! Pruning one job on one target, for `coffer prune` and a run's retention:
//! applies the job's retention per target and removes the folders
//! of runs that never committed once they are older than `incomplete_after`.
//!
//! Needs no private key: it works from snapshot ids and markers. It only ever
//! lists and deletes under `<job>/` of the job's own targets, so another job (or
//! another agent's prefix in a shared bucket) is never touched. A snapshot's
//! marker is deleted first, so a half-deleted snapshot is never listed.
//!
//! Deleting needs the job's lock (`Mode::Delete` carries it): a folder without a
//! marker may be a run in progress, and only the lock says for sure that none is
//! running here. `coffer prune` (`by_hand.rs`) takes the lock and, when a backup
//! holds it, says so and leaves that job alone (exit 1) rather than wait: a backup
//! can run for hours, and the next prune does the work. A backup applies retention
//! under the lock it already holds. `incomplete_after` covers what the lock cannot
//! see (a run of the same job from another host writing to the same target).
//!
//! What the report lists as removed is what is gone: a folder counts once nothing
//! of it is left, including the staging files of uploads a killed run left on a
//! local disk, which object_store does not list. What the grace period keeps
//! (folders, unreferenced packs, staging files of packs) is reported too, with its
//! size and when it may go, so that a prune that frees nothing says why.

use crate::format::id::{is_id, time_of};
use crate::format::{MARKER, snapshot_dir};
use crate::lock::JobLock;
use crate::pack::gc::Waiting;
use crate::repo;
use crate::retention::policy::decide_checked;
use anyhow::{Context, Result, bail};
use coffer_config::Job;
use coffer_plugins::{Op, Target};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::runtime::Handle;

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub job: String,
    pub target: String,
    pub kept: Vec<KeptSnapshot>,
    /// Snapshots deleted (with `--dry-run`: that would be).
    pub forgotten: Vec<String>,
    /// Folders without a marker, older than the grace period, that are gone now
    /// (with `--dry-run`: that would go).
    pub incomplete_removed: Vec<String>,
    /// Format 2: packs no remaining snapshot references, older than the grace
    /// period, that are gone now (with `--dry-run`: that would go), and their bytes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packs_removed: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub packs_freed_bytes: u64,
    /// Packs the remaining snapshots reference, and their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub packs_live: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub packs_live_bytes: u64,
    /// Stored bytes of referenced packs that no kept snapshot uses (an estimate:
    /// `pack::gc::waste`), and the packs mostly unused (`repack_unused`), whose
    /// live files the next backup stores again.
    #[serde(skip_serializing_if = "is_zero")]
    pub packs_dead_bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packs_to_rewrite: Vec<String>,
    /// Staging files of pack uploads a killed run left on a local target
    /// (`<job>/packs/<id>.tar.zst.age#<n>`), older than the grace period, that are
    /// gone now (with `--dry-run`: that would go), and their bytes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub staging_removed: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub staging_freed_bytes: u64,
    /// S3: keys of multipart uploads a killed run of this host left unfinished
    /// (written down in state_dir before they started), aborted now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uploads_aborted: Vec<String>,
    /// Those that could not be aborted, each with why (a warning: the snapshots
    /// are fine, and the bucket's lifecycle rule is the safety net).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uploads_not_aborted: Vec<String>,
    /// Garbage kept only because it is younger than `incomplete_after`: how much,
    /// and from when a prune removes it.
    #[serde(skip_serializing_if = "Waiting::is_empty")]
    pub kept_for_grace: Waiting,
    /// S3 Object Lock: what retention or garbage collection would delete but is
    /// still held, and until when. Nothing held is deleted (a delete would only
    /// hide it behind a delete marker).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<Locked>,
    /// Folders that could not be removed, each with why; they stay for the next prune.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Something prune left because S3 Object Lock holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Locked {
    /// `snapshot ID`, `incomplete folder ID` or `pack ID`.
    pub what: String,
    /// `2026-12-08 10:00:00 UTC`.
    pub until: String,
    /// Why the retention could not be read, when it could not (then it is kept
    /// for an hour and asked again by the next prune).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl Locked {
    pub(crate) fn of(what: String, held: crate::retention::held::Held) -> Locked {
        Locked {
            what,
            until: crate::retention::held::day_time(held.until),
            unknown: held.unknown,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Serialize)]
pub struct KeptSnapshot {
    pub id: String,
    pub reasons: Vec<&'static str>,
}

/// Whether prune deletes, and the proof that it may.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    DryRun,
    /// The job's lock, held by the caller for the whole prune.
    Delete(&'a JobLock),
}

/// Deletes every object under a snapshot folder (the marker first) and what killed
/// uploads left there; fails unless the folder is gone afterwards.
fn delete_snapshot(rt: &Handle, target: &Target, job: &str, id: &str) -> Result<()> {
    let dir = snapshot_dir(job, id);
    let on = || format!("folder {dir} on {}", target.label());
    // A target writer may have swapped the folder for a symlink to anywhere on
    // this host: nothing is deleted through it.
    target.refuse_linked_folder(&dir).with_context(on)?;
    rt.block_on(async {
        let refused = |e: &object_store::Error| target.explain(Op::Delete, e).detail;
        match target.store.delete(&dir.clone().join(MARKER)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => bail!("cannot delete {MARKER} in {}: {}", on(), refused(&e)),
        }
        for location in list_folder(target, &dir).await.with_context(on)? {
            match target.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => bail!("cannot delete {location}: {}", refused(&e)),
            }
        }
        Ok(())
    })?;
    target.remove_leftovers(&dir).with_context(on)?;
    target.remove_empty_folder(&dir);
    let left = rt.block_on(list_folder(target, &dir)).with_context(on)?;
    if !left.is_empty() {
        bail!(
            "{} still holds {} object(s) after deleting",
            on(),
            left.len()
        );
    }
    if !target.folder_gone(&dir) {
        bail!(
            "{} still holds files that coffer did not write; look at it and remove it by hand",
            on()
        );
    }
    Ok(())
}

/// What a folder holds, staging files included; best effort (it is only told).
async fn folder_bytes(target: &Target, dir: &ObjPath) -> u64 {
    let mut listing = target.store.list(Some(dir));
    let mut bytes = 0u64;
    while let Some(Ok(meta)) = listing.next().await {
        bytes = bytes.saturating_add(meta.size);
    }
    let staged = target.leftovers(dir).unwrap_or_default();
    staged.iter().fold(bytes, |b, l| b.saturating_add(l.size))
}

/// Object Lock: the longest hold on an object of `dir`, if any is still held.
fn held_in_folder(
    rt: &Handle,
    target: &Target,
    dir: &ObjPath,
    now: OffsetDateTime,
) -> Option<crate::retention::held::Held> {
    target.object_lock()?;
    let objects = rt.block_on(list_folder(target, dir)).ok()?;
    crate::retention::held::held_after_each(rt, target, &objects, now)
        .into_iter()
        .flatten()
        .max_by_key(|h| h.until)
}

async fn list_folder(target: &Target, dir: &ObjPath) -> Result<Vec<ObjPath>> {
    let mut listing = target.store.list(Some(dir));
    let mut objects = Vec::new();
    while let Some(meta) = listing.next().await {
        objects.push(meta.context("cannot list")?.location);
    }
    Ok(objects)
}

/// Applies one job's retention on one target. Listing problems are errors (nothing
/// was deleted); a folder that cannot be removed is recorded in the report's
/// `errors` and the others are still done.
pub fn prune_target(
    rt: &Handle,
    job: &Job,
    target: &Target,
    mode: Mode,
    trust: &crate::format::seal::Trust,
) -> Result<PruneReport> {
    if let Mode::Delete(lock) = mode
        && lock.job != job.name
    {
        bail!(
            "prune of job {} was handed the lock of job {}",
            job.name,
            lock.job
        );
    }
    let mut report = PruneReport {
        job: job.name.clone(),
        target: target.name.clone(),
        ..PruneReport::default()
    };
    if matches!(mode, Mode::Delete(_)) && !target.prunes_here {
        report.errors.push(format!(
            "target {} has prune = \"elsewhere\": this host never deletes there; nothing \
             was forgotten or deleted. Run coffer prune on the host that prunes it (its \
             config has this target with prune = \"here\")",
            target.name
        ));
        return Ok(report);
    }
    // Retention counts only snapshots this host accepts: planted ones must not push
    // genuine snapshots out of `keep_last`. The others are left alone, and said so.
    let (markers, refused): (Vec<_>, Vec<_>) = repo::snapshots(rt, target, &job.name)?
        .into_iter()
        .partition(|m| trust.refusal(m).is_none());
    report.kept.extend(refused.iter().map(|m| KeptSnapshot {
        id: m.id.clone(),
        reasons: vec!["not signed by a trusted key: left alone"],
    }));
    let mut forget = Vec::new();
    if let Some(policy) = &job.retention {
        // Periods from the ids' seconds, as always; `markers` are in the order
        // they finished (`repo::snapshots`), which orders runs of one second.
        let times: Vec<OffsetDateTime> = markers
            .iter()
            .map(|m| time_of(&m.id).unwrap_or(m.started_at))
            .collect();
        // A period keeps its newest snapshot whose backup-time check passed.
        let passed: Vec<bool> = markers.iter().map(|m| m.check_passed()).collect();
        for (m, reasons) in markers.iter().zip(decide_checked(&times, &passed, policy)) {
            if reasons.is_empty() {
                forget.push(m.id.clone());
            } else {
                report.kept.push(KeptSnapshot {
                    id: m.id.clone(),
                    reasons,
                });
            }
        }
    } else {
        report.kept.extend(
            markers
                .iter()
                .map(|m| KeptSnapshot {
                    id: m.id.clone(),
                    reasons: vec!["no retention configured"],
                })
                .collect::<Vec<_>>(),
        );
    }
    // Object Lock: a snapshot still held stays, whatever the retention says.
    if target.object_lock().is_some() {
        let (free, held) = crate::retention::held::split_held(
            rt,
            target,
            std::mem::take(&mut forget),
            |id| snapshot_dir(&job.name, id).join(MARKER),
            OffsetDateTime::now_utc(),
        );
        for (id, held) in held {
            report.kept.push(KeptSnapshot {
                id: id.clone(),
                reasons: vec!["held by the bucket's Object Lock"],
            });
            report
                .locked
                .push(Locked::of(format!("snapshot {id}"), held));
        }
        forget = free;
    }
    // Folders that never got a marker: crashed or cancelled runs (or one running
    // elsewhere, which is why only those older than the grace period go).
    let listing = rt
        .block_on(
            target
                .store
                .list_with_delimiter(Some(&ObjPath::from(job.name.as_str()))),
        )
        .with_context(|| format!("cannot list job {} on {}", job.name, target.label()))?;
    let committed: std::collections::HashSet<&str> =
        markers.iter().map(|m| m.id.as_str()).collect();
    let now = OffsetDateTime::now_utc();
    let mut incomplete = Vec::new();
    // Folders with a marker this coffer could not read: they may reference any
    // pack, so no pack is collected while one is there.
    let mut unread = 0;
    for dir in &listing.common_prefixes {
        let Some(id) = dir.filename().filter(|f| is_id(f)) else {
            continue;
        };
        if committed.contains(id) || refused.iter().any(|m| m.id == id) {
            continue;
        }
        // Not a crashed run: a snapshot this coffer cannot read (a newer format,
        // damage, a planted file). Deleting it could lose a real snapshot.
        if rt
            .block_on(target.store.head(&dir.clone().join(MARKER)))
            .is_ok()
        {
            unread += 1;
            report.errors.push(format!(
                "job {}: folder {id} has a {MARKER} this coffer cannot read (see the warning \
                 above): left alone; remove it by hand if it is not a snapshot",
                job.name
            ));
            continue;
        }
        let Some(t) = time_of(id) else { continue };
        if now - t > job.incomplete_after {
            if let Some(held) = held_in_folder(rt, target, dir, now) {
                report
                    .locked
                    .push(Locked::of(format!("incomplete folder {id}"), held));
                continue;
            }
            incomplete.push(id.to_string());
        } else {
            let at = time::Duration::try_from(job.incomplete_after)
                .ok()
                .and_then(|grace| t.checked_add(grace))
                .and_then(|at| chrono::DateTime::from_timestamp(at.unix_timestamp(), 0))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            let bytes = rt.block_on(folder_bytes(target, dir));
            report.kept_for_grace.add_folder(bytes, at);
        }
    }
    if let Mode::DryRun = mode {
        let remaining: Vec<crate::format::Marker> = markers
            .iter()
            .chain(&refused)
            .filter(|m| !forget.contains(&m.id))
            .cloned()
            .collect();
        report.forgotten = forget;
        report.incomplete_removed = incomplete;
        collect_packs(rt, job, target, &remaining, unread, true, &mut report);
        return Ok(report);
    }
    // An upload of this job recorded in state_dir is no run's now: the lock is
    // ours. Its parts are invisible to listings, so only its id can remove them.
    let aborted = rt.block_on(target.abort_recorded_uploads(&job.name));
    report.uploads_aborted = aborted.keys;
    report.uploads_not_aborted = aborted.failed;
    for (ids, removed, what) in [
        (forget, &mut report.forgotten, "snapshot"),
        (
            incomplete,
            &mut report.incomplete_removed,
            "incomplete folder",
        ),
    ] {
        for id in ids {
            match delete_snapshot(rt, target, &job.name, &id) {
                Ok(()) => removed.push(id),
                Err(e) => report
                    .errors
                    .push(format!("job {}: {what} {id} not removed: {e:#}", job.name)),
            }
        }
    }
    // Snapshots whose marker is gone no longer hold their packs; any other marker
    // (one that failed to delete, one not trusted here) still does.
    let remaining: Vec<crate::format::Marker> = markers
        .into_iter()
        .chain(refused)
        .filter(|m| !report.forgotten.contains(&m.id))
        .collect();
    collect_packs(rt, job, target, &remaining, unread, false, &mut report);
    Ok(report)
}

/// Format 2's garbage collection after the snapshots are forgotten (`pack::gc`).
fn collect_packs(
    rt: &Handle,
    job: &Job,
    target: &Target,
    remaining: &[crate::format::Marker],
    unread: usize,
    dry_run: bool,
    report: &mut PruneReport,
) {
    use crate::pack::gc::{Remaining, Rules};
    let rules = Rules {
        grace: job.incomplete_after,
        rewrite_above: job.repack_unused,
    };
    let remaining = Remaining {
        markers: remaining,
        unread,
    };
    let collected = crate::pack::gc::collect(rt, target, &job.name, remaining, rules, dry_run);
    match collected {
        Ok(c) => {
            report.packs_removed = c.deleted;
            report.packs_freed_bytes = c.freed_bytes;
            report.packs_live = c.live as u64;
            report.packs_live_bytes = c.live_bytes;
            report.packs_dead_bytes = c.dead_bytes;
            report.packs_to_rewrite = c.mostly_unused;
            report.staging_removed = c.staging_removed;
            report.staging_freed_bytes = c.staging_freed_bytes;
            report.kept_for_grace.merge(&c.young);
            report.locked.extend(c.locked);
        }
        Err(e) => report.errors.push(format!("{e:#}")),
    }
}
