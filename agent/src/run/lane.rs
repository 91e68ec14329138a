//! A run's targets as lanes, how they are opened and listed before anything is
//! read, and the snapshot being taken.
//!
//! Each target goes through the run as one `Lane`: it is in until something
//! fails for it (opening, listing, an upload, the manifest, the in-place check,
//! the marker), and then out with the first reason, which is what the report
//! shows.
//! `Taking` is the snapshot's id and times, and what a failed run undoes: the
//! partial folders and, through the run's packs, the packs it wrote.

use super::RunStatus;
use super::assemble::Shown;
use super::commit::{preflight, remove_partial};
use super::packs::RunPacks;
use super::report::{JobRun, TargetRun};
use crate::pipeline::upload::UploadError;
use anyhow::Result;
use coffer_config::{Config, Job};
use coffer_plugins::{Access, Target, open_target};
use std::collections::HashSet;
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// One target's way through the run.
pub(super) struct Lane {
    pub(super) target: Target,
    pub(super) report: TargetRun,
    /// Why the target is out of the run; `None` while it is in.
    pub(super) out: Option<String>,
    /// Whether a later run could get past that reason.
    pub(super) retryable: bool,
    /// Objects were sent to it, so a failure must remove what it got.
    pub(super) written: bool,
    /// It is out because its local directory is missing (a setup problem).
    pub(super) missing_root: bool,
}

impl Lane {
    pub(super) fn new(target: Target) -> Lane {
        Lane {
            report: TargetRun {
                name: target.name.clone(),
                description: target.description.clone(),
                committed: false,
                error: None,
                uploads: Vec::new(),
            },
            target,
            out: None,
            retryable: false,
            written: false,
            missing_root: false,
        }
    }

    /// The target's part of the run report: a target out of the run says why,
    /// whichever stage took it out (a failed run is reported before the commit
    /// step that copies the reason).
    fn into_report(self) -> TargetRun {
        let mut report = self.report;
        if report.error.is_none() {
            report.error = self.out;
        }
        report
    }

    pub(super) fn is_in(&self) -> bool {
        self.out.is_none()
    }

    /// Takes the target out of the run; the first reason is the one reported.
    pub(super) fn fail(&mut self, why: String, retryable: bool) {
        if self.out.is_none() {
            self.out = Some(why);
            self.retryable = retryable;
        }
    }
}

/// The lanes still in the run, with their targets (in the same order) for the
/// pipeline, which reports one result per target it was given.
pub(super) fn live(lanes: &mut [Lane]) -> (Vec<&mut Lane>, Vec<Target>) {
    let live: Vec<&mut Lane> = lanes.iter_mut().filter(|l| l.is_in()).collect();
    let targets = live.iter().map(|l| l.target.clone()).collect();
    (live, targets)
}

/// Times and identity of the snapshot being taken, and its packs once the run
/// has them.
pub(super) struct Taking<'a> {
    pub(super) rt: &'a Handle,
    pub(super) job: &'a Job,
    pub(super) id: String,
    pub(super) started: OffsetDateTime,
    /// Format 2, once the index is prepared.
    pub(super) packs: Option<RunPacks>,
}

impl Taking<'_> {
    /// A run that failed: nothing of it may remain that could look like a snapshot.
    pub(super) fn failed(&self, mut lanes: Vec<Lane>, shown: Shown, e: anyhow::Error) -> JobRun {
        blame_targets(&mut lanes, &e);
        let e = if crate::cancel::requested() {
            e.context("stopped by a signal; uploads aborted")
        } else {
            e
        };
        let written: Vec<Target> = lanes
            .iter()
            .filter(|l| l.written)
            .map(|l| l.target.clone())
            .collect();
        remove_partial(self.rt, &written, &self.job.name, &self.id);
        if let Some(packs) = &self.packs {
            // The rollback's own error adds nothing to the run's.
            let _ = packs.fail(self.rt, &written, &self.job.name);
        }
        let retryable = !crate::cancel::requested() && super::retry::could_help(&e);
        let mut run = self.report(lanes, shown, (0.0, 0.0), RunStatus::Failed);
        run.error = Some(format!("{e:#}"));
        run.retryable = retryable;
        run
    }

    pub(super) fn report(
        &self,
        lanes: Vec<Lane>,
        shown: Shown,
        (skew_seconds, window_seconds): (f64, f64),
        status: RunStatus,
    ) -> JobRun {
        JobRun {
            job: self.job.name.clone(),
            snapshot: self.id.clone(),
            status,
            error: None,
            duration_seconds: (OffsetDateTime::now_utc() - self.started).as_seconds_f64(),
            skew_seconds,
            window_seconds,
            sources: shown.sources,
            missing_root: lanes.iter().any(|l| l.missing_root),
            targets: lanes.into_iter().map(Lane::into_report).collect(),
            warnings: shown.warnings,
            notes: Vec::new(),
            hook_errors: Vec::new(),
            retryable: false,
            check: None,
        }
    }
}

/// When every target failed under a source, each failure is that target's
/// reason too: the report says it on the target, however soon the pipeline
/// noticed (mid-stream, or only as the source's last pack ended). A lane
/// already out keeps its first reason.
fn blame_targets(lanes: &mut [Lane], e: &anyhow::Error) {
    let Some(all) = e
        .chain()
        .find_map(|c| c.downcast_ref::<super::retry::AllTargetsFailed>())
    else {
        return;
    };
    put_failures(lanes, &all.failures);
}

/// Takes each target that failed on its own out of the run, with its failure
/// as the reason (a lane already out keeps its first).
pub(super) fn put_failures(lanes: &mut [Lane], failures: &[UploadError]) {
    for f in failures {
        if let Some(lane) = lanes.iter_mut().find(|l| l.target.name == f.target) {
            lane.fail(f.to_string(), f.retryable);
        }
    }
}

/// A lane per target of the job. A target that cannot be opened (a local
/// directory that is missing: a disk not mounted) is out of the run from the
/// start, like one that cannot be listed: the job's other targets still get the
/// snapshot.
pub(super) fn open_lanes(cfg: &Config, job: &Job) -> Result<Vec<Lane>> {
    let mut lanes = Vec::new();
    for name in &job.targets {
        let t = cfg
            .targets
            .get(name)
            .ok_or_else(|| crate::exit::usage(format!("target {name} is not defined")))?;
        match open_target(t, Access::Write) {
            Ok(target) => lanes.push(Lane::new(target.with_upload_journal(&cfg.agent.state_dir))),
            Err(e) => {
                let mut lane = Lane::new(Target::unopened(t));
                lane.report.error = Some(e.to_string());
                lane.missing_root = e.is_missing_root();
                lane.fail(e.to_string(), e.retryable());
                lanes.push(lane);
            }
        }
    }
    Ok(lanes)
}

/// Lists the job's snapshot folders on every lane still in; a target that cannot
/// be listed is out. Returns the folder names found (ids already taken).
pub(super) fn list_targets(rt: &Handle, job: &Job, lanes: &mut [Lane]) -> HashSet<String> {
    let (mut listing, all) = live(lanes);
    let mut taken = HashSet::new();
    for (lane, listed) in listing.iter_mut().zip(preflight(rt, &all, &job.name)) {
        match listed {
            Ok(folders) => taken.extend(folders),
            Err(why) => {
                lane.report.error = Some(why.message.clone());
                lane.fail(why.message, why.retryable);
            }
        }
    }
    taken
}

/// Aborts the S3 uploads a killed run of this job left unfinished (parts the
/// provider keeps and bills, seen by no listing), now that the targets answer:
/// under the job lock, so none of them is still being written here. Returns the
/// notes; what could not be aborted joins `leftovers`.
pub(super) fn abort_recorded_uploads(
    rt: &Handle,
    job: &Job,
    lanes: &mut [Lane],
    leftovers: &mut Vec<String>,
) -> Vec<String> {
    let mut notes = Vec::new();
    for t in live(lanes).1 {
        let aborted = rt.block_on(t.abort_recorded_uploads(&job.name));
        if !aborted.keys.is_empty() {
            notes.push(format!(
                "target {}: aborted {} unfinished upload(s) a killed run left",
                t.name,
                aborted.keys.len()
            ));
        }
        leftovers.extend(
            aborted
                .failed
                .iter()
                .map(|f| format!("target {}: {f}", t.name)),
        );
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::retry::AllTargetsFailed;
    use coffer_plugins::PartPlan;

    fn lane(name: &str) -> Lane {
        let plan = PartPlan {
            part_size: 1 << 20,
            max_parts: 10,
            parts_in_flight: 1,
        };
        let store = std::sync::Arc::new(object_store::memory::InMemory::new());
        Lane::new(Target::from_store(name, store, "memory", plan))
    }

    fn refused(target: &str) -> UploadError {
        UploadError {
            target: target.into(),
            message: format!(
                "target {target}: cannot start the upload of app/packs/x: access denied"
            ),
            retryable: false,
            abandoned: false,
        }
    }

    #[test]
    fn every_target_failing_under_a_source_is_reported_on_each_target() {
        let mut lanes = vec![lane("local"), lane("s3"), lane("usb")];
        lanes[2].fail("the directory is missing".into(), true);
        let e: anyhow::Error = AllTargetsFailed {
            source_name: "files".into(),
            failures: vec![refused("s3"), refused("local")],
        }
        .into();
        blame_targets(&mut lanes, &e.context("job app"));
        let errors: Vec<_> = lanes.into_iter().map(|l| l.into_report().error).collect();
        assert!(
            errors[0]
                .as_deref()
                .is_some_and(|m| m.contains("target local")),
            "{errors:?}"
        );
        assert!(
            errors[1]
                .as_deref()
                .is_some_and(|m| m.contains("access denied")),
            "{errors:?}"
        );
        assert_eq!(errors[2].as_deref(), Some("the directory is missing"));
    }

    #[test]
    fn another_failure_names_no_target() {
        let mut lanes = vec![lane("local")];
        blame_targets(&mut lanes, &anyhow::anyhow!("source db: pg_dump exited 1"));
        assert!(lanes[0].is_in());
    }
}
