//! `coffer copy`: a job's snapshots copied from one target to another as they are
//! stored (ciphertext: no identity is needed, and the copy is byte for byte what
//! the backup host wrote). The source is hostile input like any target: only
//! markers a trusted key signed are copied, every object and pack is checked
//! against the size and BLAKE3 that marker binds while it streams through (a
//! mismatch, found at the object's end, aborts that upload, so nothing wrong is
//! left under the real name), and the marker itself is written last, once the
//! destination lists every object and pack at its size. A snapshot already
//! committed on the destination is left alone, and objects already there at the
//! right size are not sent again: a copy killed halfway is resumed by running it
//! again, and running it twice copies nothing the second time.

use crate::format::seal::Trust;
use crate::format::{MARKER, Marker, ObjectRecord, object_path, snapshot_dir};
use crate::lock::{LockHeld, lock_job};
use crate::pipeline::read::{ObjectReader, is_mismatch};
use crate::repair::copy::{WriteFailed, parent, write_object};
use crate::retention::held::{self, Hold};
use anyhow::{Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::{Access, Op, Target, open_target};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use tokio::runtime::Handle;

/// What the command line asked for.
pub struct Request<'a> {
    pub from: &'a str,
    pub to: &'a str,
    /// `all`, `latest` or a snapshot id.
    pub which: &'a str,
    pub trust: &'a Trust,
    /// Only say what would be copied.
    pub dry_run: bool,
}

/// What happened to one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its marker is now on the destination (or would be, in a dry run).
    Copied,
    /// The destination had its marker already.
    AlreadyThere,
    /// Not committed on the destination: see `error`.
    Failed,
}

#[derive(Debug, Serialize)]
pub struct SnapshotCopy {
    pub id: String,
    pub outcome: Outcome,
    /// Objects and packs sent (or to send), and their stored bytes.
    pub objects_copied: u64,
    pub bytes_copied: u64,
    /// Objects and packs the destination held already at the right size.
    pub objects_present: u64,
    pub error: Option<String>,
    /// The source's copy of something this snapshot needs is damaged (a hash or
    /// size other than the marker's).
    #[serde(skip)]
    pub damaged: bool,
}

#[derive(Debug, Serialize)]
pub struct Copied {
    pub job: String,
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    pub snapshots: Vec<SnapshotCopy>,
    /// Snapshots on the source that no trusted key signed: never copied.
    pub untrusted: usize,
}

impl Copied {
    /// 0 when every snapshot asked for is on the destination; 3 when the source
    /// holds damage (another target may have a good copy: `coffer repair`); 1
    /// when a snapshot failed otherwise (the destination refused, a read stopped):
    /// running the copy again resumes it.
    pub fn exit_code(&self) -> u8 {
        if self.snapshots.iter().any(|s| s.damaged) {
            3
        } else if self.snapshots.iter().any(|s| s.outcome == Outcome::Failed) {
            1
        } else {
            0
        }
    }
}

/// Copies the snapshots of `job` that `req` names from one target to another.
pub fn copy(rt: &Handle, cfg: &Config, job: &Job, req: &Request) -> Result<Copied> {
    if req.from == req.to {
        return Err(crate::exit::usage(format!(
            "--from and --to are both target {}: name two different targets",
            req.from
        )));
    }
    let from = open(cfg, req.from, Access::Read)?;
    let to = open(cfg, req.to, Access::Write)?.with_upload_journal(&cfg.agent.state_dir);
    // A backup of this job running here could collect, as garbage, packs copied
    // before their marker: the job's lock keeps the two apart, as repair does.
    let _lock = if req.dry_run {
        None
    } else {
        Some(lock_job(&cfg.agent.state_dir, &job.name).map_err(|e| {
            if e.is::<LockHeld>() {
                e.context(format!(
                    "job {}: nothing copied; run copy again once that run is over",
                    job.name
                ))
            } else {
                e
            }
        })?)
    };
    let mut markers = crate::repo::snapshots(rt, &from, &job.name)?;
    let before = markers.len();
    markers.retain(|m| req.trust.refusal(m).is_none());
    let untrusted = before - markers.len();
    let chosen: Vec<Marker> = match req.which {
        "all" => markers,
        which => vec![crate::repo::pick(markers, which, &job.name, &from.name)?],
    };
    let present: BTreeSet<String> = crate::repo::snapshots(rt, &to, &job.name)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    let mut packs = pack_sizes(rt, &to, &job.name)?;
    let mut out = Copied {
        job: job.name.clone(),
        from: from.name.clone(),
        to: to.name.clone(),
        dry_run: req.dry_run,
        snapshots: Vec::new(),
        untrusted,
    };
    for listed in &chosen {
        let mut s = SnapshotCopy {
            id: listed.id.clone(),
            outcome: Outcome::Copied,
            objects_copied: 0,
            bytes_copied: 0,
            objects_present: 0,
            error: None,
            damaged: false,
        };
        if present.contains(&listed.id) {
            s.outcome = Outcome::AlreadyThere;
        } else if let Err(e) = one_snapshot(rt, (&from, &to), job, req, &mut packs, &mut s) {
            s.outcome = Outcome::Failed;
            s.damaged = matches!(e, Failed::Damaged(_));
            s.error = Some(e.to_string());
        }
        out.snapshots.push(s);
        if crate::cancel::requested() {
            break;
        }
    }
    Ok(out)
}

/// Why a snapshot was not copied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failed {
    /// The source's copy of something it needs does not match the marker.
    #[error("{0}")]
    Damaged(String),
    #[error("{0}")]
    Other(String),
}

impl From<String> for Failed {
    fn from(why: String) -> Failed {
        Failed::Other(why)
    }
}

fn open(cfg: &Config, name: &str, access: Access) -> Result<Target> {
    let t = cfg.targets.get(name).ok_or_else(|| {
        crate::exit::usage(format!(
            "target {name} is not defined in {} (defined: {})",
            cfg.file.display(),
            cfg.targets.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    open_target(t, access).map_err(|e| anyhow!("target {name}: {e}"))
}

/// Copies one snapshot: its objects and packs the destination lacks, then, once
/// all are listed there at their size, its marker (the source's bytes, as signed).
fn one_snapshot(
    rt: &Handle,
    (from, to): (&Target, &Target),
    job: &Job,
    req: &Request,
    packs: &mut BTreeMap<String, u64>,
    s: &mut SnapshotCopy,
) -> Result<(), Failed> {
    let marker_path = object_path(&job.name, &s.id, MARKER);
    // The marker is read again as bytes: those are what is written, so they are
    // what is checked (and a marker replaced since the listing is caught).
    let bytes = rt
        .block_on(crate::repo::read_marker_bytes(from, &marker_path))
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(|| format!("{marker_path} is gone from target {}", from.name))?;
    let marker = crate::format::seal::open(&bytes)
        .and_then(|m| crate::format::untrusted::check_marker(&m, &job.name, &s.id).map(|()| m))
        .map_err(|why| format!("{marker_path}: {why}"))?;
    if let Some(why) = req.trust.refusal(&marker) {
        return Err(format!("{marker_path}: {why}").into());
    }
    let folder = sizes(rt, to, &snapshot_dir(&job.name, &s.id)).map_err(|e| format!("{e:#}"))?;
    // (path, record, the pack's id for a pack, the size the destination has)
    let mut wanted: Vec<(ObjPath, ObjectRecord, Option<&str>, Option<u64>)> = Vec::new();
    for p in &marker.packs {
        let path = crate::pack::pack_path(&job.name, &p.id);
        let have = packs.get(&p.id).copied();
        wanted.push((path, p.as_object(), Some(&p.id), have));
    }
    for o in &marker.objects {
        let path = object_path(&job.name, &s.id, &o.key);
        wanted.push((path, o.clone(), None, folder.get(&o.key).copied()));
    }
    for (path, record, pack, have) in &wanted {
        if *have == Some(record.stored_size) {
            s.objects_present += 1;
            continue;
        }
        s.objects_copied += 1;
        s.bytes_copied += record.stored_size;
        if req.dry_run {
            continue;
        }
        copy_object(rt, from, to, path, record)?;
        if let Some(id) = pack {
            packs.insert(id.to_string(), record.stored_size);
        }
    }
    if req.dry_run {
        return Ok(());
    }
    // Asked afresh, as a run's commit does: a prune elsewhere may have removed
    // something meanwhile.
    let dest = std::slice::from_ref(to);
    let problem = crate::run::objects_in_place(rt, dest, &job.name, &s.id, &marker.objects)
        .pop()
        .flatten()
        .or_else(|| {
            crate::run::packs_in_place(rt, dest, &job.name, &marker.packs)
                .pop()
                .flatten()
        });
    if let Some(why) = problem {
        return Err(format!("target {}: {why}; marker not written", to.name).into());
    }
    // Object Lock on the destination: held as a backup there would hold them.
    held::hold(rt, to, &job.name, &marker, Hold::Contents(None))
        .map_err(|e| format!("{}; marker not written", e.message))?;
    rt.block_on(to.store.put(&marker_path, PutPayload::from(bytes)))
        .map_err(|e| {
            format!(
                "cannot write {marker_path}: {}",
                to.explain(Op::Write, &e).message
            )
        })?;
    held::hold(rt, to, &job.name, &marker, Hold::Marker)
        .map_err(|e| format!("snapshot copied but its marker not locked: {}", e.message))?;
    Ok(())
}

/// One object or pack, streamed from `from` to `to` and checked on the way.
pub(crate) fn copy_object(
    rt: &Handle,
    from: &Target,
    to: &Target,
    path: &ObjPath,
    record: &ObjectRecord,
) -> Result<(), Failed> {
    if let Some(dir) = parent(path) {
        to.refuse_linked_folder(&dir).map_err(|e| {
            format!(
                "target {}: {dir} is not a plain folder ({e}); not writing through it",
                to.name
            )
        })?;
    }
    let read_failed = |e: std::io::Error| {
        if is_mismatch(&e) || e.kind() == std::io::ErrorKind::NotFound {
            Failed::Damaged(format!(
                "damaged or missing on target {}: {e} (nothing written for it; \
                 `coffer repair` copies a good copy back from another target)",
                from.name
            ))
        } else {
            Failed::Other(format!(
                "target {}: the read of {path} stopped: {e} (nothing written for it)",
                from.name
            ))
        }
    };
    let reader = ObjectReader::open(rt, from, path, Some(record)).map_err(read_failed)?;
    write_object(rt, to, path, reader).map_err(|e| match e {
        WriteFailed::Read(e) => read_failed(e),
        WriteFailed::Upload(why) => Failed::Other(why),
    })
}

/// The job's packs on `target` and their sizes, by pack id.
fn pack_sizes(rt: &Handle, target: &Target, job: &str) -> Result<BTreeMap<String, u64>> {
    Ok(crate::pack::gc::list_packs(rt, target, job)?
        .into_iter()
        .map(|(id, l)| (id, l.size))
        .collect())
}

/// The objects under `dir` on `target` and their sizes, by name relative to it
/// (a missing folder lists nothing).
fn sizes(rt: &Handle, target: &Target, dir: &ObjPath) -> Result<BTreeMap<String, u64>> {
    rt.block_on(async {
        let mut out = BTreeMap::new();
        let mut listing = target.store.list(Some(dir));
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| {
                anyhow!(
                    "cannot list {dir} on target {}: {}",
                    target.name,
                    target.explain(Op::List, &e).message
                )
            })?;
            if let Some(name) = meta.location.filename() {
                out.insert(name.to_string(), meta.size);
            }
        }
        Ok(out)
    })
}
