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
//!
//! The parts: this file (the entry point: open every target, check and repair
//! each, forget what stays damaged, rebuild the index), `target` (one target's
//! check and where a good copy comes from), `report` (what a repair found and
//! did), `copy`, `lost` and `rebuild`.

pub(crate) mod copy;
mod lost;
mod rebuild;
mod report;
mod target;

pub use lost::Lost;
pub use rebuild::Rebuilt;
pub use report::{DamagedSnapshot, Report};

use crate::format::seal::Trust;
use crate::format::{Marker, ObjectRecord, PackRecord};
use crate::keys::Identities;
use crate::lock::{JobLock, LockHeld, lock_job};
use crate::pack::damage::Stored;
use anyhow::{Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::{Access, Target};
use object_store::path::Path as ObjPath;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use target::repair_target;
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
