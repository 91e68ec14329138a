//! S3 Object Lock seen from a job: which objects a snapshot holds, holding them
//! until the snapshot's end plus the lock's days (the run, before and after its
//! marker), and asking how long an object is still held (prune and garbage
//! collection never delete what is held; stored-bytes verify reports an object
//! held for less than a snapshot that references it needs).
//!
//! A snapshot's retention is derived from its signed marker (`finished_at` plus
//! the target's `days`), so every host computes the same date without a clock of
//! the target's.
//!
//! A run holds the packs it extends a little longer than its snapshot needs
//! (`SLACK_DAYS`) and writes down until when (`state_dir/held/<job>/<target>.json`),
//! so that the runs of the next days find them held long enough and send nothing:
//! one retention request per pack and week instead of per pack and run. Kopia
//! extends its locks by its maintenance interval for the same reason. Lost or
//! unreadable, the record only costs a run that extends every pack again.

use crate::format::{MARKER, Marker, PackRecord, object_path};
use coffer_plugins::{LockError, ObjectLock, Target};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// Retention requests in flight at once: each is a small signed request.
const IN_FLIGHT: usize = 8;

/// How many days longer than its snapshot needs a pack is held when it is
/// extended (fewer when the lock's `days` are fewer).
const SLACK_DAYS: u32 = 7;

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
/// references (before its marker is written), then the marker itself. A run
/// hands in its state directory, where it writes down until when it held each
/// pack; `coffer copy` does not, and holds every pack.
#[derive(Clone, Copy)]
pub(crate) enum Hold<'a> {
    Contents(Option<&'a Path>),
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
    let need = lock.until(marker.finished_at);
    let state_dir = match what {
        Hold::Marker => {
            let path = [object_path(job, &marker.id, MARKER)];
            return hold_all(rt, lock, &path, need);
        }
        Hold::Contents(None) => return hold_all(rt, lock, &referenced(job, marker), need),
        Hold::Contents(Some(dir)) => dir,
    };
    let objects: Vec<ObjPath> = marker
        .objects
        .iter()
        .map(|o| object_path(job, &marker.id, &o.key))
        .collect();
    hold_all(rt, lock, &objects, need)?;
    let record = record_path(state_dir, job, &target.name);
    let held = record
        .as_deref()
        .map(|r| read_record(r, &target.description))
        .unwrap_or_default();
    let extend = to_extend(&held, &marker.packs, need.unix_timestamp());
    let until = need + time::Duration::days(i64::from(SLACK_DAYS.min(lock.days())));
    let paths: Vec<ObjPath> = extend
        .iter()
        .map(|id| crate::pack::pack_path(job, id))
        .collect();
    hold_all(rt, lock, &paths, until)?;
    if let Some(record) = record {
        let now_held: BTreeMap<String, i64> = marker
            .packs
            .iter()
            .map(|p| {
                let t = match held.get(&p.id) {
                    Some(t) if !extend.contains(&p.id.as_str()) => *t,
                    _ => until.unix_timestamp(),
                };
                (p.id.clone(), t)
            })
            .collect();
        if let Err(e) = write_record(&record, &target.description, &now_held) {
            // The next run then extends every pack again: a cost, not a danger.
            tracing::warn!(
                "job {job}, target {}: cannot write {}: {e}",
                target.name,
                record.display()
            );
        }
    }
    Ok(())
}

/// The packs whose recorded hold ends before `need` (Unix seconds), or that
/// have none recorded.
pub(crate) fn to_extend<'a>(
    held: &BTreeMap<String, i64>,
    packs: &'a [PackRecord],
    need: i64,
) -> Vec<&'a str> {
    packs
        .iter()
        .filter(|p| held.get(&p.id).is_none_or(|t| *t < need))
        .map(|p| p.id.as_str())
        .collect()
}

/// `state_dir/held/<job>/<target>.json`; none for a target name that is no plain
/// file name.
fn record_path(state_dir: &Path, job: &str, target: &str) -> Option<PathBuf> {
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0']);
    (plain(job) && plain(target)).then(|| {
        state_dir
            .join("held")
            .join(job)
            .join(format!("{target}.json"))
    })
}

/// What the record holds: the target it was written for (its bucket, prefix and
/// endpoint, so that a target name pointed at another bucket starts afresh) and
/// each pack's hold, Unix seconds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    target: String,
    held: BTreeMap<String, i64>,
}

/// The record's holds for `target`, or nothing when it is missing, unreadable or
/// another target's (then every pack is extended once more, which is safe).
fn read_record(path: &Path, target: &str) -> BTreeMap<String, i64> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        .filter(|r| r.target == target)
        .map(|r| r.held)
        .unwrap_or_default()
}

fn write_record(path: &Path, target: &str, held: &BTreeMap<String, i64>) -> std::io::Result<()> {
    let record = Record {
        target: target.to_string(),
        held: held.clone(),
    };
    let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    coffer_plugins::fs::durable::replace_file(path, &bytes)
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

/// For each of `paths` (in their order, asked `IN_FLIGHT` at a time), until when
/// it is held on `target`, if it still is at `now`; `None` when the target has no
/// lock or the object's retention has ended. A failure to ask counts as held (for
/// an hour): deleting what may be locked would only hide it behind a delete
/// marker, and the next prune asks again.
pub(crate) fn held_after_each(
    rt: &Handle,
    target: &Target,
    paths: &[ObjPath],
    now: OffsetDateTime,
) -> Vec<Option<Held>> {
    let Some(lock) = target.object_lock() else {
        return vec![None; paths.len()];
    };
    rt.block_on(
        futures::stream::iter(paths)
            .map(|p| async move {
                match lock.held_until(p).await {
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
            })
            .buffered(IN_FLIGHT)
            .collect(),
    )
}

/// Splits `items` into those no lock holds at `now` and those held (with until
/// when), asking for the retention of each one's object (`path_of`) as
/// `held_after_each` does. Every item is free on a target without a lock.
pub(crate) fn split_held<T>(
    rt: &Handle,
    target: &Target,
    items: Vec<T>,
    path_of: impl Fn(&T) -> ObjPath,
    now: OffsetDateTime,
) -> (Vec<T>, Vec<(T, Held)>) {
    let paths: Vec<ObjPath> = items.iter().map(path_of).collect();
    let holds = held_after_each(rt, target, &paths, now);
    let (mut free, mut held) = (Vec::new(), Vec::new());
    for (item, hold) in items.into_iter().zip(holds) {
        match hold {
            Some(h) => held.push((item, h)),
            None => free.push(item),
        }
    }
    (free, held)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(id: &str) -> PackRecord {
        PackRecord {
            id: id.to_string(),
            stored_size: 0,
            blake3: String::new(),
            content_size: 0,
            used: 0,
        }
    }

    #[test]
    fn only_packs_held_for_less_than_needed_or_unknown_are_extended() {
        let packs = [pack("a"), pack("b"), pack("c"), pack("d")];
        let held = BTreeMap::from([
            ("a".to_string(), 1_000),
            ("b".to_string(), 999),
            ("d".to_string(), 5_000),
        ]);
        assert_eq!(to_extend(&held, &packs, 1_000), vec!["b", "c"]);
        assert_eq!(
            to_extend(&BTreeMap::new(), &packs, 0),
            vec!["a", "b", "c", "d"]
        );
    }

    #[test]
    fn the_record_round_trips_and_a_damaged_or_other_targets_one_reads_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = record_path(dir.path(), "app", "s3").expect("a plain name");
        let held = BTreeMap::from([("a".to_string(), 7)]);
        write_record(&path, "s3 bucket b", &held).expect("write");
        assert_eq!(read_record(&path, "s3 bucket b"), held);
        assert!(read_record(&path, "s3 bucket other").is_empty());
        std::fs::write(&path, b"{not json").expect("damage");
        assert!(read_record(&path, "s3 bucket b").is_empty());
        assert!(record_path(dir.path(), "app", "../x").is_none());
    }
}
