//! A format-2 run's packs from start to end, owned by one `RunPacks`: the index
//! checked against what the targets hold before anything is read, a pack writer
//! per packing source, every pack the run wrote, the marker's pack list, the
//! check that a target holds every pack before it gets the marker, and at the end
//! either the index's commit or, for a run that committed nowhere, the index's
//! rollback and the deletion of every pack the run wrote (no snapshot will
//! reference them). No other part of the run deletes packs.
//!
//! The rule that keeps every snapshot complete: content counts as stored only if
//! its pack is on every target of this run. A target that missed runs lacks newer
//! packs, so their files are read and stored again, into new packs that go to
//! every target; no marker ever lands on a target without all its packs.

use super::lane::{Lane, live};
use crate::format::PackRecord;
use crate::pack::gc::{Listed, list_packs};
use crate::pack::index::Index;
use crate::pack::write::{PackDest, PackWriter};
use anyhow::{Context, Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::Target;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

/// The job's index for this run, checked against the targets, and the packs the
/// run wrote.
pub(super) struct RunPacks {
    pub(super) index: Arc<Mutex<Index>>,
    /// What the operator should know: a full run and why, packs stored again.
    pub(super) notes: Vec<String>,
    /// Every pack a writer of this run finished or abandoned, by id.
    written: Mutex<Vec<String>>,
}

impl RunPacks {
    /// A pack writer for one source of the run.
    pub(super) fn writer(
        &self,
        ctx: &super::context::RunContext,
        source: &str,
    ) -> std::io::Result<PackWriter> {
        PackWriter::new(
            &PackDest {
                rt: ctx.rt,
                targets: ctx.targets,
                job: ctx.job,
                recipients: ctx.recipients,
                cancel: &ctx.failed,
                index: &self.index,
            },
            source,
        )
    }

    /// Notes packs a writer wrote (sealed and sent, whether or not its source
    /// finished), so the end of the run can delete them if nothing commits.
    pub(super) fn wrote(&self, ids: impl IntoIterator<Item = String>) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    /// The run failed before any target committed: the index forgets the run and
    /// every pack it wrote is deleted from `targets` (best effort: what stays is
    /// garbage prune removes). Returns what the operator should know.
    pub(super) fn fail(&self, rt: &Handle, targets: &[Target], job: &str) -> Option<String> {
        let rolled_back = settle(&self.index, None, &[]).err();
        let written = std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()));
        crate::pack::gc::delete_packs(rt, targets, job, &written);
        rolled_back.map(|e| format!("{e:#}"))
    }

    /// The end of a run that got as far as a commit: the index takes the run's rows
    /// when `committed` names the snapshot a target took; otherwise as `fail`.
    pub(super) fn finish(
        &self,
        rt: &Handle,
        targets: &[Target],
        job: &str,
        committed: Option<&str>,
        sources: &[&str],
    ) -> Option<String> {
        match committed {
            Some(id) => settle(&self.index, Some(id), sources)
                .err()
                .map(|e| format!("{e:#}")),
            None => self.fail(rt, targets, job),
        }
    }
}

/// Whether `job` writes format 2: directories in packs, every other source as
/// chunks in packs.
pub(super) fn wanted(job: &Job) -> bool {
    job.format == 2
}

/// The run's packs: the index, checked against the packs every live target
/// holds; a target whose packs cannot be listed is out of the run.
pub(super) fn prepare_packs(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    lanes: &mut [Lane],
) -> Result<RunPacks> {
    let (listing, targets) = live(lanes);
    let listed = super::packs::listings(rt, &targets, &job.name);
    let mut ok = Vec::new();
    for ((lane, target), l) in listing.into_iter().zip(targets).zip(listed) {
        match l {
            Ok(l) => ok.push((target, l)),
            Err(why) => {
                lane.report.error = Some(why.clone());
                lane.fail(why, true);
            }
        }
    }
    if ok.is_empty() {
        return Err(anyhow!("no target can be written: cannot list their packs"));
    }
    let mut packs = super::packs::prepare(rt, cfg, job, &mut ok)?;
    let (_, targets) = live(lanes);
    super::packs::recheck(rt, &targets, job, &mut packs)?;
    Ok(packs)
}

/// Lists the job's packs on each target; `Err(why)` for a target that cannot.
pub(super) fn listings(
    rt: &Handle,
    targets: &[Target],
    job: &str,
) -> Vec<Result<BTreeMap<String, Listed>, String>> {
    targets
        .iter()
        .map(|t| list_packs(rt, t, job).map_err(|e| format!("{e:#}")))
        .collect()
}

/// Opens the index and forgets the packs that are not on every target.
pub(super) fn prepare(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    listed: &mut [(Target, BTreeMap<String, Listed>)],
) -> Result<RunPacks> {
    let (mut index, moved) = Index::open(&cfg.agent.state_dir, &job.name)?;
    let mut notes: Vec<String> = moved.into_iter().collect();
    index.begin_run()?;
    let rows = index.packs()?;
    notes.extend(super::pack_copy::copy_missing(rt, job, listed, &rows));
    let missing: Vec<String> = rows
        .into_iter()
        .filter(|p| {
            !listed
                .iter()
                .all(|(_, l)| l.get(&p.id).is_some_and(|got| got.size == p.stored_size))
        })
        .map(|p| p.id)
        .collect();
    let again = if missing.is_empty() {
        0
    } else {
        index.forget_packs(&missing)?
    };
    if index.is_empty()? {
        notes.push(format!(
            "job {}: no index of earlier snapshots in {} (a first run, or the state was lost): \
             every file is read and stored",
            job.name,
            cfg.agent.state_dir.display()
        ));
    } else if !missing.is_empty() {
        notes.push(format!(
            "job {}: {} pack(s) are not on every target (one missed runs, or they were deleted): \
             {again} file(s) they held are read and stored again",
            job.name,
            missing.len()
        ));
    }
    Ok(RunPacks {
        index: Arc::new(Mutex::new(index)),
        notes,
        written: Mutex::default(),
    })
}

/// The per-run re-check (`recheck_packs`): that many packs of the index, in
/// turn from where the last run stopped, read whole on every target of the run
/// and compared with the size and BLAKE3 this host wrote (no identity needed).
/// One proven bad is forgotten now, in the run's transaction, so this very run
/// reads and stores its files again; one that cannot be read proves nothing.
/// Costs up to `recheck_packs` x `pack_size` read per target per run.
pub(super) fn recheck(
    rt: &Handle,
    targets: &[Target],
    job: &Job,
    run: &mut RunPacks,
) -> Result<()> {
    use crate::pack::damage::{Stored, check_stored};
    if job.recheck_packs == 0 || targets.is_empty() {
        return Ok(());
    }
    let mut index = run
        .index
        .lock()
        .map_err(|_| anyhow!("the index lock is poisoned"))?;
    // Sorted by id, which is the order of their hex.
    let packs = index.packs()?;
    if packs.is_empty() {
        return Ok(());
    }
    let after = index.recheck_cursor()?.unwrap_or_default();
    let start = packs.partition_point(|p| p.id <= after);
    let k = usize::try_from(job.recheck_packs)
        .unwrap_or(usize::MAX)
        .min(packs.len());
    let chosen: Vec<_> = packs.iter().cycle().skip(start).take(k).collect();
    let mut bad = Vec::new();
    for p in &chosen {
        let record = record_of(p, 0);
        for t in targets {
            match check_stored(rt, t, &job.name, &record) {
                Stored::Intact => {}
                Stored::Bad(why) => {
                    run.notes
                        .push(format!("job {}: re-check of packs: {why}", job.name));
                    bad.push(p.id.clone());
                    break;
                }
                Stored::Unreadable(why) => run.notes.push(format!(
                    "job {}: re-check of pack {} on target {} could not read it (not taken \
                     for damage): {why}",
                    job.name, p.id, t.name
                )),
            }
        }
    }
    if let Some(last) = chosen.last() {
        index.set_recheck_cursor(&last.id)?;
    }
    if !bad.is_empty() {
        let files = index.forget_packs(&bad)?;
        run.notes.push(format!(
            "job {}: the re-check found {} damaged pack(s); the index forgot them: \
             {files} file(s) they held are read and stored again",
            job.name,
            bad.len()
        ));
    }
    Ok(())
}

/// What the index knows of a pack, as a marker records it, with `used` bytes of
/// its content taken by the snapshot.
pub(super) fn record_of(p: &crate::pack::index::PackInfo, used: u64) -> PackRecord {
    PackRecord {
        id: p.id.clone(),
        stored_size: p.stored_size,
        blake3: p.blake3.clone(),
        content_size: p.content_size,
        used,
    }
}

/// The marker's pack list: every pack a file of the snapshot is in (the keys of
/// `used`), with the bytes of content the snapshot takes in it.
pub(super) fn records(
    index: &Mutex<Index>,
    used: &BTreeMap<String, u64>,
) -> Result<Vec<PackRecord>> {
    let mut index = index
        .lock()
        .map_err(|_| anyhow!("the index lock is poisoned"))?;
    used.iter()
        .map(|(id, used)| {
            let p = index
                .pack(id)?
                .ok_or_else(|| anyhow!("pack {id} is referenced but not in the index"))?;
            Ok(record_of(&p, (*used).min(p.content_size)))
        })
        .collect()
}

/// Per target, `Some(why)` when a pack the marker lists is missing or has another
/// size than written: listed afresh, so a pack deleted meanwhile is caught.
pub(crate) fn packs_in_place(
    rt: &Handle,
    targets: &[Target],
    job: &str,
    packs: &[PackRecord],
) -> Vec<Option<String>> {
    if packs.is_empty() {
        return targets.iter().map(|_| None).collect();
    }
    listings(rt, targets, job)
        .into_iter()
        .map(|listed| {
            let listed = match listed {
                Ok(l) => l,
                Err(why) => return Some(why),
            };
            let wrong: Vec<&str> = packs
                .iter()
                .filter(|p| listed.get(&p.id).is_none_or(|l| l.size != p.stored_size))
                .map(|p| p.id.as_str())
                .collect();
            (!wrong.is_empty()).then(|| {
                format!(
                    "{} pack(s) missing or cut short (deleted while the run went on?), e.g. {}",
                    wrong.len(),
                    wrong[0]
                )
            })
        })
        .collect()
}

/// After the commit: the index takes the run's rows when a target took the
/// snapshot, and drops them otherwise.
fn settle(index: &Mutex<Index>, committed: Option<&str>, sources: &[&str]) -> Result<()> {
    let mut index = index
        .lock()
        .map_err(|_| anyhow!("the index lock is poisoned"))?;
    match committed {
        Some(id) => index
            .commit_run(id, sources)
            .context("the snapshot is committed, but the local index could not record it (the next run is a full one)"),
        None => index.abandon_run(),
    }
}
