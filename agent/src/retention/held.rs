//! S3 Object Lock seen from a job: which objects a snapshot holds, holding them
//! until the snapshot's end plus the lock's days (the run, before and after its
//! marker), and asking how long an object is still held (prune and garbage
//! collection never delete what is held; stored-bytes verify reports an object
//! held for less than a snapshot that references it needs).
//!
//! A snapshot's retention is derived from its signed marker (`finished_at` plus
//! the target's `days`), so every host computes the same date without a clock of
//! the target's.

use crate::format::{MARKER, Marker, object_path};
use coffer_plugins::{LockError, ObjectLock, Target};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// Retention requests in flight at once: each is a small signed request.
const IN_FLIGHT: usize = 8;

/// Every object and pack the snapshot of `marker` references, without the marker.
pub(crate) fn referenced(job: &str, marker: &Marker) -> Vec<ObjPath> {
    let mut paths: Vec<ObjPath> = marker
        .packs
        .iter()
        .map(|p| crate::pack::pack_path(job, &p.id))
        .collect();
    paths.extend(
        marker
            .objects
            .iter()
            .map(|o| object_path(job, &marker.id, &o.key)),
    );
    paths
}

/// What a commit holds on a locked target: first everything the snapshot
/// references (before its marker is written), then the marker itself.
#[derive(Clone, Copy)]
pub(crate) enum Hold {
    Contents,
    Marker,
}

/// Holds `what` of the snapshot of `marker` on `target` until the snapshot's
/// retention ends (a run's commit, `coffer copy`). Nothing to do on a target
/// without Object Lock.
pub(crate) fn hold(
    rt: &Handle,
    target: &Target,
    job: &str,
    marker: &Marker,
    what: Hold,
) -> Result<(), LockError> {
    let Some(lock) = target.object_lock() else {
        return Ok(());
    };
    let paths = match what {
        Hold::Contents => referenced(job, marker),
        Hold::Marker => vec![object_path(job, &marker.id, MARKER)],
    };
    hold_all(rt, lock, &paths, lock.until(marker.finished_at))
}

/// Holds every path until `until` (extending, never shortening); the first
/// failure is returned, after the others were tried.
fn hold_all(
    rt: &Handle,
    lock: &ObjectLock,
    paths: &[ObjPath],
    until: OffsetDateTime,
) -> Result<(), LockError> {
    rt.block_on(async {
        let results: Vec<Result<(), LockError>> = futures::stream::iter(paths)
            .map(|p| lock.hold(p, until))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    })
}

/// Until when `path` is held on `target`, if it still is at `now`; `None` when
/// the target has no lock or the object's retention has ended. A failure to ask
/// counts as held (for an hour): deleting what may be locked would only hide it
/// behind a delete marker, and the next prune asks again.
pub(crate) fn held_after(
    rt: &Handle,
    target: &Target,
    path: &ObjPath,
    now: OffsetDateTime,
) -> Option<Held> {
    let lock = target.object_lock()?;
    match rt.block_on(lock.held_until(path)) {
        Ok(Some(until)) if until > now => Some(Held {
            until,
            unknown: None,
        }),
        Ok(_) => None,
        Err(e) => Some(Held {
            until: now + time::Duration::hours(1),
            unknown: Some(e.message),
        }),
    }
}

/// An object prune leaves alone because it is (or may be) locked.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub until: OffsetDateTime,
    /// Why the retention could not be read, when it could not.
    pub unknown: Option<String>,
}

/// What verify reports of one snapshot on a locked target: each referenced object
/// (and the marker) whose retention ends before the snapshot's, or unreadable.
pub(crate) fn short_holds(
    rt: &Handle,
    lock: &ObjectLock,
    job: &str,
    marker: &Marker,
) -> Vec<String> {
    let wanted = lock.until(marker.finished_at);
    let mut paths = referenced(job, marker);
    paths.push(object_path(job, &marker.id, MARKER));
    rt.block_on(async {
        futures::stream::iter(&paths)
            .map(|p| async move {
                match lock.held_until(p).await {
                    Ok(Some(until)) if until >= wanted - time::Duration::seconds(1) => None,
                    Ok(Some(until)) => Some(format!(
                        "{p} is held until {}, before snapshot {}'s retention ends ({})",
                        day_time(until),
                        marker.id,
                        day_time(wanted)
                    )),
                    Ok(None) => Some(format!(
                        "{p} has no retention, but snapshot {} needs it held until {}",
                        marker.id,
                        day_time(wanted)
                    )),
                    Err(e) => Some(e.message),
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter_map(|x| async move { x })
            .collect()
            .await
    })
}

/// `2026-12-08 10:00:00 UTC`, as the front ends write times (`when`, which the
/// domain does not reach).
pub(crate) fn day_time(t: OffsetDateTime) -> String {
    chrono::DateTime::from_timestamp(t.unix_timestamp(), 0).map_or_else(
        || "?".to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
