//! Retention applied by hand (`coffer prune`), one job at a time: the rules a
//! front end must not hold. The job's lock is taken here and, when a backup holds
//! it, the job is left alone rather than waited for (a backup can run for hours,
//! and the next prune does the work); `dry_run` needs no lock. After a real prune
//! the status keeps `coffer_snapshots` and the dead bytes true, as a backup's
//! retention does, and packs worth rewriting are queued for the next backup.
//! A backup's own retention is in `run/mod.rs`, under the lock it holds.

use crate::format::seal::Trust;
use crate::lock::{LockHeld, lock_job};
use crate::repo::targets_of;
use crate::retention::prune::{Mode, PruneReport, prune_target};
use anyhow::Result;
use coffer_config::{Config, Job};
use coffer_plugins::Target;
use tokio::runtime::Handle;

/// What to prune of a job.
pub(crate) struct Request<'a> {
    /// Only this target (a job without it is skipped).
    pub target: Option<&'a str>,
    /// Decide and report, delete nothing.
    pub dry_run: bool,
    pub trust: &'a Trust,
}

/// One target pruned, with what happened after it.
pub(crate) struct TargetPruned {
    pub report: PruneReport,
    /// The status could not be recorded (the prune itself is done).
    pub status_error: Option<anyhow::Error>,
    /// Packs queued for rewriting: a note, or why they could not be.
    pub repack: Option<Result<String>>,
}

/// Whether the job was pruned.
pub(crate) enum JobPruned {
    /// Nothing to do: the job does not ship to the target asked for, or has none.
    Skipped,
    Done,
    /// A backup holds the lock; says so, and that nothing was deleted.
    Busy(String),
}

/// Prunes `job` on its targets (or the one asked for), handing each target's
/// result to `each` as it is done.
pub(crate) fn prune_job(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    req: &Request<'_>,
    mut each: impl FnMut(TargetPruned),
) -> Result<JobPruned> {
    // A job without the target asked for is skipped; only the targets pruned
    // are opened, so a missing disk elsewhere does not stop this one.
    if let Some(only) = req.target
        && !job.targets.iter().any(|t| t == only)
    {
        return Ok(JobPruned::Skipped);
    }
    // Prune only deletes: a missing target directory is an error, never created.
    let targets: Vec<Target> = targets_of(cfg, job, req.target, coffer_plugins::Access::Read)?;
    if targets.is_empty() {
        return Ok(JobPruned::Skipped);
    }
    // Held until this job's targets are done.
    let lock = if req.dry_run {
        None
    } else {
        match lock_job(&cfg.agent.state_dir, &job.name) {
            Ok(l) => Some(l),
            Err(e) if e.is::<LockHeld>() => {
                return Ok(JobPruned::Busy(format!(
                    "job {} not pruned: {e:#}; nothing of it was deleted, run prune again once it is done",
                    job.name
                )));
            }
            Err(e) => return Err(e.context(format!("cannot prune job {}", job.name))),
        }
    };
    let mode = lock.as_ref().map_or(Mode::DryRun, Mode::Delete);
    for target in &targets {
        let report = prune_target(rt, job, target, mode, req.trust)?;
        let mut done = TargetPruned {
            report,
            status_error: None,
            repack: None,
        };
        if lock.is_some() {
            let kept = done.report.kept.len() as u64;
            let dead = done.report.packs_dead_bytes;
            let updated = crate::status::update(&cfg.agent.state_dir, &job.name, |s| {
                s.snapshots.insert(target.name.clone(), kept);
                s.dead_bytes.insert(target.name.clone(), dead);
            });
            done.status_error = updated.err();
            done.repack = crate::pack::gc::rewrite_later(
                &cfg.agent.state_dir,
                &job.name,
                &done.report.packs_to_rewrite,
            )
            .transpose();
        }
        each(done);
    }
    Ok(JobPruned::Done)
}
