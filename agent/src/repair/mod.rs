//! `coffer repair`: a job's targets checked against their signed markers, damaged
//! or missing objects copied back from a target that holds them intact, the rest
//! forgotten by the local index, and the snapshots that stay damaged named.
//!
//! Only markers signed by a trusted signer say what a target should hold: a
//! planted marker naming a real pack with another hash must never make repair
//! overwrite it. Only proof counts as damage (`pack::damage`: missing, or read
//! whole twice with another size or BLAKE3); an object that cannot be read
//! (network, permissions) is reported and left alone. Nothing is ever deleted
//! from a target: repair only writes objects whose bytes match their record.
//! Everything is done under the job lock, except a dry run, which changes
//! nothing (no target write, no index change) and so takes none, as prune's.

pub(crate) mod copy;
mod lost;
mod rebuild;

pub use lost::Lost;
pub use rebuild::Rebuilt;

use crate::format::seal::Trust;
use crate::format::{Marker, ObjectRecord, PackRecord, object_path};
use crate::keys::Identities;
use crate::lock::{JobLock, LockHeld, lock_job};
use crate::pack::damage::{Stored, check_object};
use anyhow::{Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::{Access, Target};
use copy::{CopyError, copy_verified};
use object_store::path::Path as ObjPath;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio::runtime::Handle;

/// What the command line asked for.
pub struct Options<'a> {
    /// Only this target is checked and repaired (the others still serve as sources).
    pub only: Option<&'a str>,
    pub dry_run: bool,
    /// With it: which files the damaged snapshots lose, and `rebuild_index`.
    pub ids: Option<&'a Identities>,
    pub rebuild_index: bool,
    pub trust: &'a Trust,
}

/// A pack, or one of a snapshot's own objects (manifest, dump, archive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pack,
    Object,
}

/// One thing a trusted marker binds by size and BLAKE3.
#[derive(Debug, Clone)]
struct Item {
    kind: Kind,
    /// The pack id, or `<snapshot>/<key>`.
    name: String,
    path: ObjPath,
    record: ObjectRecord,
}

/// Copied back (or, in a dry run, to be copied back) from another target.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    pub kind: Kind,
    pub name: String,
    pub from: String,
    /// Why it was damaged.
    pub was: String,
}

/// An item and what is wrong with it.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: Kind,
    pub name: String,
    pub why: String,
}

/// One target's check and repair.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    /// Snapshots whose markers a trusted signer signed: what drove the check.
    pub snapshots: usize,
    /// Markers not signed by a trusted signer: ignored.
    pub untrusted_snapshots: usize,
    pub packs_checked: usize,
    pub objects_checked: usize,
    /// Copied back from another target (dry run: would be).
    pub repaired: Vec<Repaired>,
    /// Proven damaged or missing, and no target holds a good copy.
    pub unrepairable: Vec<Problem>,
    /// Could not be read to the end: not known to be damaged, left alone.
    pub unreadable: Vec<Problem>,
    /// What could not be done (a copy that failed, a target that cannot be listed).
    pub failures: Vec<String>,
}

/// A snapshot that stays damaged on a target.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedSnapshot {
    pub target: String,
    pub snapshot: String,
    pub host: String,
    /// RFC 3339.
    pub finished_at: String,
    /// Keys of its own objects that stay damaged.
    pub objects: Vec<String>,
    pub packs: Vec<String>,
    /// With the identity: what it loses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Lost>,
}

/// A whole repair of one job.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub job: String,
    pub dry_run: bool,
    pub targets: Vec<TargetReport>,
    /// Packs the local index forgot (dry run: would forget): no good copy anywhere.
    pub forgotten_packs: Vec<String>,
    /// File rows of the last backup that pointed into them; None without an index
    /// on this host or in a dry run.
    pub forgotten_files: Option<u64>,
    pub damaged_snapshots: Vec<DamagedSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuilt_index: Option<Rebuilt>,
    /// Failures outside one target's check (the index, the rebuild).
    pub failures: Vec<String>,
    /// 0 nothing damaged or everything repaired, 3 snapshots stay damaged (a dry
    /// run: anything damaged), 1 something could not be read or written.
    pub exit_code: u8,
}

impl Report {
    fn settle_exit_code(&mut self) {
        let damaged = !self.damaged_snapshots.is_empty()
            || (self.dry_run
                && self
                    .targets
                    .iter()
                    .any(|t| !t.repaired.is_empty() || !t.unrepairable.is_empty()));
        let failed = !self.failures.is_empty()
            || self
                .targets
                .iter()
                .any(|t| !t.failures.is_empty() || !t.unreadable.is_empty());
        self.exit_code = if damaged {
            crate::exit::INCONSISTENT
        } else if failed {
            crate::exit::FAILED
        } else {
            crate::exit::OK
        };
    }
}

/// One target of the job, opened or not.
struct Opened {
    name: String,
    target: Option<Target>,
    /// Trusted markers found on it (empty when it could not be listed).
    markers: Vec<Marker>,
    /// Markers on it that no trusted signer signed: ignored.
    untrusted: usize,
    /// Why it could not be opened or listed: then it is not checked.
    failed: Option<String>,
}

pub fn repair(rt: &Handle, cfg: &Config, job: &Job, opts: &Options<'_>) -> Result<Report> {
    let state_dir = &cfg.agent.state_dir;
    if let Some(t) = opts.only {
        // Names the job's targets when `t` is not one of them (exit 2).
        crate::repo::targets_of(cfg, job, Some(t), Access::Read).map(|_| ())?;
    }
    if opts.rebuild_index && opts.ids.is_none() {
        return Err(crate::exit::usage(
            "--rebuild-index reads the snapshots' encrypted manifests and needs the private \
             identity: pass --identity FILE or set [encryption] identity_file",
        ));
    }
    let lock = if opts.dry_run {
        None
    } else {
        Some(lock_job(state_dir, &job.name).map_err(|e| {
            if e.is::<LockHeld>() {
                e.context(format!(
                    "job {} not repaired: nothing was checked or changed; run repair again \
                     once that run is over",
                    job.name
                ))
            } else {
                e
            }
        })?)
    };
    let tmp_dir = state_dir.join("tmp");
    let mut report = Report {
        job: job.name.clone(),
        dry_run: opts.dry_run,
        targets: Vec::new(),
        forgotten_packs: Vec::new(),
        forgotten_files: None,
        damaged_snapshots: Vec::new(),
        rebuilt_index: None,
        failures: Vec::new(),
        exit_code: 0,
    };
    let opened = open_all(rt, cfg, job, opts.trust);
    // What is known of each item on each target: (target index, item name).
    let mut known: HashMap<(usize, String), Stored> = HashMap::new();
    let mut forget = BTreeSet::new();
    let chosen: Vec<usize> = (0..opened.len())
        .filter(|&i| opts.only.is_none_or(|o| o == opened[i].name))
        .collect();
    for &t in &chosen {
        let r = repair_target(
            rt,
            &opened,
            t,
            &job.name,
            opts.dry_run,
            &tmp_dir,
            &mut known,
        );
        let bad: BTreeSet<String> = r
            .unrepairable
            .iter()
            .filter(|p| p.kind == Kind::Pack)
            .map(|p| p.name.clone())
            .collect();
        forget.extend(bad);
        let stay: BTreeSet<&str> = r.unrepairable.iter().map(|p| p.name.as_str()).collect();
        for m in &opened[t].markers {
            let packs: Vec<String> = m
                .packs
                .iter()
                .filter(|p| stay.contains(p.id.as_str()))
                .map(|p| p.id.clone())
                .collect();
            let objects: Vec<String> = m
                .objects
                .iter()
                .filter(|o| stay.contains(object_name(&m.id, &o.key).as_str()))
                .map(|o| o.key.clone())
                .collect();
            if packs.is_empty() && objects.is_empty() {
                continue;
            }
            let lost = match (opts.ids, opened[t].target.as_ref()) {
                (Some(ids), Some(target)) => Some(lost::lost(
                    rt,
                    target,
                    m,
                    ids,
                    &tmp_dir,
                    &packs.iter().cloned().collect(),
                    &objects.iter().cloned().collect(),
                )),
                _ => None,
            };
            report.damaged_snapshots.push(DamagedSnapshot {
                target: opened[t].name.clone(),
                snapshot: m.id.clone(),
                host: m.host.clone(),
                finished_at: rfc3339(m),
                objects,
                packs,
                lost,
            });
        }
        report.targets.push(r);
    }
    report.forgotten_packs = forget.iter().cloned().collect();
    if let Some(lock) = lock.as_ref().filter(|_| !forget.is_empty()) {
        match crate::pack::damage::forget_locked(state_dir, lock, &report.forgotten_packs) {
            Ok(f) => report.forgotten_files = f.map(|f| f.files),
            Err(e) => report.failures.push(format!(
                "the index could not forget the damaged packs: {e:#}; the next backup may \
                 still reference them, run repair again"
            )),
        }
    }
    if opts.rebuild_index
        && let Some(ids) = opts.ids
    {
        let rebuilt = rebuild_index(rt, state_dir, job, &opened, &mut known, ids, lock.as_ref());
        match rebuilt {
            Ok(r) => report.rebuilt_index = Some(r),
            Err(e) => report.failures.push(format!("{e:#}")),
        }
    }
    report.settle_exit_code();
    Ok(report)
}

/// Every target of the job, opened and listed; one that fails is kept with why,
/// so the others can still be checked and serve as sources.
fn open_all(rt: &Handle, cfg: &Config, job: &Job, trust: &Trust) -> Vec<Opened> {
    let mut out = Vec::new();
    for name in &job.targets {
        let mut o = Opened {
            name: name.clone(),
            target: None,
            markers: Vec::new(),
            untrusted: 0,
            failed: None,
        };
        match crate::repo::targets_of(cfg, job, Some(name), Access::Read) {
            Ok(mut t) => o.target = t.pop(),
            Err(e) => o.failed = Some(format!("target {name}: cannot open it: {e:#}")),
        }
        if let Some(t) = &o.target {
            match crate::repo::snapshots(rt, t, &job.name) {
                Ok(mut all) => {
                    o.untrusted = keep_trusted(&mut all, trust);
                    o.markers = all;
                }
                Err(e) => {
                    o.failed = Some(format!("target {name}: cannot list the snapshots: {e:#}"))
                }
            }
        }
        out.push(o);
    }
    out
}

fn object_name(snapshot: &str, key: &str) -> String {
    format!("{snapshot}/{key}")
}

fn rfc3339(m: &Marker) -> String {
    m.finished_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Every distinct item the trusted markers name; pack ids that two markers
/// record differently are left out (and reported): no record can be trusted to
/// decide which copy is right.
fn items_of(job: &str, markers: &[&Marker], failures: &mut Vec<String>) -> Vec<Item> {
    let mut packs: BTreeMap<String, PackRecord> = BTreeMap::new();
    let mut disputed = BTreeSet::new();
    let mut objects = Vec::new();
    for m in markers {
        for p in &m.packs {
            match packs.get(&p.id) {
                Some(q) if q.stored_size != p.stored_size || q.blake3 != p.blake3 => {
                    disputed.insert(p.id.clone());
                }
                Some(_) => {}
                None => {
                    packs.insert(p.id.clone(), p.clone());
                }
            }
        }
        for o in &m.objects {
            objects.push(Item {
                kind: Kind::Object,
                name: object_name(&m.id, &o.key),
                path: object_path(job, &m.id, &o.key),
                record: o.clone(),
            });
        }
    }
    for id in &disputed {
        failures.push(format!(
            "pack {id}: trusted snapshots record it with different sizes or hashes; left alone"
        ));
    }
    let mut out: Vec<Item> = packs
        .into_values()
        .filter(|p| !disputed.contains(&p.id) && crate::pack::is_pack_id(&p.id))
        .map(|p| Item {
            kind: Kind::Pack,
            path: crate::pack::pack_path(job, &p.id),
            record: p.as_object(),
            name: p.id,
        })
        .collect();
    out.extend(objects);
    out
}

fn repair_target(
    rt: &Handle,
    opened: &[Opened],
    t: usize,
    job: &str,
    dry_run: bool,
    tmp_dir: &std::path::Path,
    known: &mut HashMap<(usize, String), Stored>,
) -> TargetReport {
    let o = &opened[t];
    let mut r = TargetReport {
        target: o.name.clone(),
        snapshots: 0,
        untrusted_snapshots: o.untrusted,
        packs_checked: 0,
        objects_checked: 0,
        repaired: Vec::new(),
        unrepairable: Vec::new(),
        unreadable: Vec::new(),
        failures: Vec::new(),
    };
    let Some(target) = o.target.as_ref().filter(|_| o.failed.is_none()) else {
        r.failures.push(format!(
            "{}; not checked",
            o.failed.as_deref().unwrap_or("cannot open it")
        ));
        return r;
    };
    let trusted: Vec<&Marker> = o.markers.iter().collect();
    r.snapshots = trusted.len();
    for item in items_of(job, &trusted, &mut r.failures) {
        match item.kind {
            Kind::Pack => r.packs_checked += 1,
            Kind::Object => r.objects_checked += 1,
        }
        let state = check_object(rt, target, &item.path, &item.record);
        let was = match &state {
            Stored::Intact => {
                known.insert((t, item.name.clone()), Stored::Intact);
                continue;
            }
            Stored::Unreadable(why) => {
                r.unreadable.push(Problem {
                    kind: item.kind,
                    name: item.name.clone(),
                    why: why.clone(),
                });
                known.insert((t, item.name.clone()), state);
                continue;
            }
            Stored::Bad(why) => why.clone(),
        };
        known.insert((t, item.name.clone()), state);
        match good_copy(rt, opened, t, &item, dry_run, tmp_dir, known) {
            Ok(from) => {
                known.insert((t, item.name.clone()), Stored::Intact);
                r.repaired.push(Repaired {
                    kind: item.kind,
                    name: item.name.clone(),
                    from,
                    was,
                });
            }
            Err(why) => match why {
                NoCopy::Nowhere(tried) => r.unrepairable.push(Problem {
                    kind: item.kind,
                    name: item.name.clone(),
                    why: if tried.is_empty() {
                        was
                    } else {
                        format!("{was}; {}", tried.join("; "))
                    },
                }),
                NoCopy::Failed(why) => {
                    r.failures.push(format!("{}: {why}", item.name));
                    r.unrepairable.push(Problem {
                        kind: item.kind,
                        name: item.name.clone(),
                        why: format!("{was}; the copy from another target failed: {why}"),
                    });
                }
            },
        }
    }
    r
}

enum NoCopy {
    /// No other target holds a good copy (what each said).
    Nowhere(Vec<String>),
    /// One does, but writing it to the target failed (or the copy did not check).
    Failed(String),
}

/// Finds a good copy of `item` on another target and (unless `dry_run`) copies it
/// to target `t`, checking it there after; returns the source's name.
fn good_copy(
    rt: &Handle,
    opened: &[Opened],
    t: usize,
    item: &Item,
    dry_run: bool,
    tmp_dir: &std::path::Path,
    known: &mut HashMap<(usize, String), Stored>,
) -> Result<String, NoCopy> {
    let Some(to) = opened[t].target.as_ref() else {
        return Err(NoCopy::Failed(format!(
            "target {} is not open",
            opened[t].name
        )));
    };
    let mut tried = Vec::new();
    let mut last_failure = None;
    for (s, source) in opened.iter().enumerate() {
        let Some(from) = source.target.as_ref().filter(|_| s != t) else {
            continue;
        };
        if matches!(known.get(&(s, item.name.clone())), Some(Stored::Bad(_))) {
            tried.push(format!("target {}: damaged too", source.name));
            continue;
        }
        if dry_run {
            match check_object(rt, from, &item.path, &item.record) {
                Stored::Intact => {
                    known.insert((s, item.name.clone()), Stored::Intact);
                    return Ok(source.name.clone());
                }
                Stored::Bad(why) => {
                    tried.push(format!("target {}: {why}", source.name));
                    known.insert((s, item.name.clone()), Stored::Bad(why));
                }
                Stored::Unreadable(why) => {
                    tried.push(format!("target {}: cannot read it: {why}", source.name))
                }
            }
            continue;
        }
        match copy_verified(rt, from, to, &item.path, &item.record, tmp_dir) {
            Ok(()) => match check_object(rt, to, &item.path, &item.record) {
                Stored::Intact => {
                    known.insert((s, item.name.clone()), Stored::Intact);
                    return Ok(source.name.clone());
                }
                Stored::Bad(why) | Stored::Unreadable(why) => {
                    last_failure = Some(format!(
                        "copied from target {}, but the copy on target {} does not check: {why}",
                        source.name, opened[t].name
                    ));
                }
            },
            Err(CopyError::SourceBad(why)) => {
                tried.push(format!("target {}: {why}", source.name));
                known.insert((s, item.name.clone()), Stored::Bad(why));
            }
            Err(CopyError::SourceUnreadable(why)) => {
                tried.push(format!("target {}: cannot read it: {why}", source.name));
            }
            Err(CopyError::Write(why)) => last_failure = Some(why),
        }
    }
    match last_failure {
        Some(why) => Err(NoCopy::Failed(why)),
        None => Err(NoCopy::Nowhere(tried)),
    }
}

fn rebuild_index(
    rt: &Handle,
    state_dir: &std::path::Path,
    job: &Job,
    opened: &[Opened],
    known: &mut HashMap<(usize, String), Stored>,
    ids: &Identities,
    lock: Option<&JobLock>,
) -> Result<Rebuilt> {
    if let Some(o) = opened.iter().find(|o| o.target.is_none()) {
        return Err(anyhow!(
            "job {}: the index was not rebuilt: target {} could not be opened, so no pack \
             can be known to be intact on every target",
            job.name,
            o.name
        ));
    }
    let targets: Vec<Target> = opened.iter().filter_map(|o| o.target.clone()).collect();
    let snapshots: Vec<(usize, Marker)> = opened
        .iter()
        .enumerate()
        .flat_map(|(i, o)| o.markers.iter().map(move |m| (i, m.clone())))
        .collect();
    let mut intact = |i: usize, p: &PackRecord| -> bool {
        let key = (i, p.id.clone());
        if let Some(s) = known.get(&key) {
            return *s == Stored::Intact;
        }
        let s = crate::pack::damage::check_stored(rt, &targets[i], &job.name, p);
        let ok = s == Stored::Intact;
        known.insert(key, s);
        ok
    };
    rebuild::rebuild(
        rt,
        state_dir,
        &job.name,
        &targets,
        snapshots,
        &mut intact,
        ids,
        lock,
    )
}

/// Keeps only the markers `trust` accepts; returns how many it refused.
fn keep_trusted(markers: &mut Vec<Marker>, trust: &Trust) -> usize {
    let before = markers.len();
    markers.retain(|m| trust.refusal(m).is_none());
    before - markers.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(id: &str, packs: serde_json::Value) -> Marker {
        let json = serde_json::json!({
            "format": 2, "id": id, "job": "app", "host": "h", "coffer_version": "0",
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
            "skew_seconds": 0.0,
            "objects": [{"key": "manifest.json.zst.age", "plaintext_size": 1,
                         "stored_size": 2, "blake3": "ab".repeat(32)}],
            "packs": packs,
        });
        serde_json::from_value(json).expect("marker")
    }

    fn pack(id: &str, hash: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "stored_size": 10, "blake3": hash.repeat(32),
                           "content_size": 5, "used": 5})
    }

    #[test]
    fn packs_two_trusted_markers_record_differently_are_left_alone() {
        let shared = "1".repeat(32);
        let disputed = "2".repeat(32);
        let a = marker(
            "20260101T000000Z-0001",
            serde_json::json!([pack(&shared, "aa"), pack(&disputed, "bb")]),
        );
        let b = marker(
            "20260101T000001Z-0002",
            serde_json::json!([pack(&shared, "aa"), pack(&disputed, "cc")]),
        );
        let mut failures = Vec::new();
        let items = items_of("app", &[&a, &b], &mut failures);
        let packs: Vec<&str> = items
            .iter()
            .filter(|i| i.kind == Kind::Pack)
            .map(|i| i.name.as_str())
            .collect();
        // The shared pack once, the disputed one not at all; each snapshot's manifest.
        assert_eq!(packs, vec![shared.as_str()]);
        assert_eq!(items.iter().filter(|i| i.kind == Kind::Object).count(), 2);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains(&disputed), "{failures:?}");
    }
}
