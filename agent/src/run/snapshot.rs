//! The snapshot itself: open the sources, freeze and stream them, build the
//! manifest and the signed marker, and commit per target.
//!
//! Each target goes through the run as one `Lane`: it is in until something
//! fails for it (listing, an upload, the manifest, the in-place check, the
//! marker), and then out with the first reason, which is what the report shows.

use super::RunStatus;
use super::assemble::{Assembled, Shown, assemble};
use super::commit::{objects_in_place, preflight, remove_partial, write_manifest};
use super::report::{JobRun, ObjectUpload, TargetRun};
use super::stream::{Streamed, stream_sources};
use crate::format::id::{new_id, new_id_avoiding};
use crate::format::{
    CheckCounts, FormatVersion, MANIFEST, MARKER, Marker, ObjectRecord, object_path,
};
use crate::keys;
use anyhow::{Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::{Access, Op, Source, SourceContext, Target, open_source, open_target};
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// One target's way through the run.
struct Lane {
    target: Target,
    report: TargetRun,
    /// Why the target is out of the run; `None` while it is in.
    out: Option<String>,
    /// Whether a later run could get past that reason.
    retryable: bool,
    /// Objects were sent to it, so a failure must remove what it got.
    written: bool,
    /// It is out because its local directory is missing (a setup problem).
    missing_root: bool,
}

impl Lane {
    fn new(target: Target) -> Lane {
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

    fn is_in(&self) -> bool {
        self.out.is_none()
    }

    /// Takes the target out of the run; the first reason is the one reported.
    fn fail(&mut self, why: String, retryable: bool) {
        if self.out.is_none() {
            self.out = Some(why);
            self.retryable = retryable;
        }
    }
}

/// The lanes still in the run, with their targets (in the same order) for the
/// pipeline, which reports one result per target it was given.
fn live(lanes: &mut [Lane]) -> (Vec<&mut Lane>, Vec<Target>) {
    let live: Vec<&mut Lane> = lanes.iter_mut().filter(|l| l.is_in()).collect();
    let targets = live.iter().map(|l| l.target.clone()).collect();
    (live, targets)
}

/// Times and identity of the snapshot being taken.
struct Taking<'a> {
    rt: &'a Handle,
    job: &'a Job,
    id: String,
    started: OffsetDateTime,
}

impl Taking<'_> {
    /// A run that failed: nothing of it may remain that could look like a snapshot.
    fn failed(&self, lanes: Vec<Lane>, shown: Shown, e: anyhow::Error) -> JobRun {
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
        let retryable = !crate::cancel::requested() && super::retry::could_help(&e);
        let mut run = self.report(lanes, shown, (0.0, 0.0), RunStatus::Failed);
        run.error = Some(format!("{e:#}"));
        run.retryable = retryable;
        run
    }

    fn report(
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
            targets: lanes.into_iter().map(|l| l.report).collect(),
            warnings: shown.warnings,
            notes: Vec::new(),
            hook_errors: Vec::new(),
            retryable: false,
            check: None,
        }
    }
}

pub(super) fn take_snapshot(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    report: &dyn crate::report::Report,
) -> Result<JobRun> {
    let started = OffsetDateTime::now_utc();
    // Nothing is written under this id before the targets are listed: it changes
    // there if a folder of that name exists.
    let mut taking = Taking {
        rt,
        job,
        id: new_id(started),
        started,
    };
    let recipients = Arc::new(keys::recipients(&cfg.encryption, report)?);
    let signing_key = crate::format::seal::host_key(&cfg.encryption)?;
    // A target that cannot be opened (a local directory that is missing: a disk
    // not mounted) is out of the run from the start, like one that cannot be
    // listed below: the job's other targets still get the snapshot.
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
    let ctx = SourceContext::for_job(rt, &cfg.agent.state_dir, &job.name);
    // What a run killed outright (SIGKILL) still holds is released first: under
    // the job lock, so no run of this job can be using it.
    let mut leftovers =
        coffer_plugins::fs_snapshot::release_leftovers(&cfg.agent.state_dir, &job.name);
    for w in &leftovers {
        tracing::warn!("job {}: {w}", job.name);
    }
    let mut sources: Vec<Box<dyn Source>> = job
        .sources
        .iter()
        .map(|s| open_source(s, &ctx))
        .collect::<Result<_, _>>()?;
    let check_note = super::check::ask(job, &mut sources);

    // Fail fast: a target that cannot even be listed (wrong credentials, no bucket,
    // server down) gets no uploads, and when no target is left no source is read.
    let (mut listing, all) = live(&mut lanes);
    let mut taken = std::collections::HashSet::new();
    for (lane, listed) in listing.iter_mut().zip(preflight(rt, &all, &job.name)) {
        match listed {
            Ok(folders) => taken.extend(folders),
            Err(why) => {
                lane.report.error = Some(why.message.clone());
                lane.fail(why.message, why.retryable);
            }
        }
    }
    if !lanes.iter().any(Lane::is_in) {
        let why: Vec<String> = lanes.iter().filter_map(|l| l.out.clone()).collect();
        let retryable = lanes.iter().all(|l| l.retryable);
        let e = anyhow!("no target can be written: {}", why.join("; "));
        let mut run = taking.failed(lanes, Shown::default(), e);
        run.retryable = retryable && !crate::cancel::requested();
        return Ok(run);
    }
    // The S3 uploads a killed run of this job left unfinished (parts the provider
    // keeps and bills, seen by no listing) are aborted, now that the targets
    // answer: under the job lock, so none of them is still being written here.
    let mut upload_notes = Vec::new();
    for t in live(&mut lanes).1 {
        let aborted = rt.block_on(t.abort_recorded_uploads(&job.name));
        if !aborted.keys.is_empty() {
            upload_notes.push(format!(
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
    if taken.contains(&taking.id) {
        match new_id_avoiding(started, &taken) {
            Some(free) => {
                tracing::warn!(
                    "job {}: a folder {} is already on a target (the clock set back, or \
                     another host writing this job there?); this run is snapshot {free}",
                    job.name,
                    taking.id
                );
                taking.id = free;
            }
            None => {
                let e = anyhow!(
                    "every snapshot id of this millisecond is already a folder on the job's \
                     targets; is another host writing job {} to the same target?",
                    job.name
                );
                return Ok(taking.failed(lanes, Shown::default(), e));
            }
        }
    }
    let taking = taking;
    let id = taking.id.as_str();
    // Format 2: the index, checked against the packs every live target holds; a
    // target whose packs cannot be listed is out of the run.
    let run_index = if super::packs::wanted(job) {
        let (listing, targets) = live(&mut lanes);
        let listed = super::packs::listings(rt, &targets, &job.name);
        let mut ok = Vec::new();
        for (lane, l) in listing.into_iter().zip(&listed) {
            match l {
                Ok(l) => ok.push(l),
                Err(why) => {
                    lane.report.error = Some(why.clone());
                    lane.fail(why.clone(), true);
                }
            }
        }
        if ok.is_empty() {
            let e = anyhow!("no target can be written: cannot list their packs");
            return Ok(taking.failed(lanes, Shown::default(), e));
        }
        let prepared = super::packs::prepare(cfg, job, &ok).and_then(|mut r| {
            let (_, targets) = live(&mut lanes);
            super::packs::recheck(rt, &targets, job, &mut r)?;
            Ok(r)
        });
        match prepared {
            Ok(r) => Some(r),
            Err(e) => return Ok(taking.failed(lanes, Shown::default(), e)),
        }
    } else {
        None
    };
    let index = run_index.as_ref().map(|r| &r.index);
    let (mut streaming, targets) = live(&mut lanes);
    for lane in &mut streaming {
        lane.written = true;
    }
    // Only a drawn bar needs the last run's size: no status read otherwise.
    let estimate = report
        .follows()
        .then(|| crate::status::load(&cfg.agent.state_dir, &job.name))
        .filter(|last| last.last_data_bytes > 0)
        .map(|last| crate::report::Total {
            bytes: last.last_data_bytes,
            files: (last.last_files > 0).then_some(last.last_files),
            estimated: true,
        });
    let work = crate::report::Work::new("backup", &job.name, estimate);
    // A first run has no last run to estimate from: the directories' sizes, counted
    // while the backup runs, give the display a total a little later.
    let _first_total = (estimate.is_none() && report.follows()).then(|| {
        crate::report::TreeTotal::start(
            job.sources
                .iter()
                .filter_map(|s| s.kind.directory())
                .map(|d| d.path.clone())
                .collect(),
            work.clone(),
        )
    });
    let shown = report.start(work.clone());
    let streamed = match stream_sources(rt, job, id, sources, &targets, &recipients, (index, &work))
    {
        Ok(s) => s,
        Err(e) => {
            if let Some(index) = index {
                let _ = super::packs::settle(index, None, &[]);
            }
            return Ok(taking.failed(lanes, Shown::default(), e));
        }
    };
    // The display follows the streaming only, as it always did.
    drop(shown);
    // Everything a failed run wrote to packs is garbage at once.
    let new_packs: Vec<String> = streamed
        .iter()
        .filter_map(|s| s.packed.as_ref())
        .flat_map(|p| p.written.iter().map(|w| w.info.id.clone()))
        .collect();
    // Every pack the snapshot references, with the bytes its files take in it.
    let mut used: std::collections::BTreeMap<String, u64> = Default::default();
    for p in streamed.iter().filter_map(|s| s.packed.as_ref()) {
        for (id, n) in &p.used {
            *used.entry(id.clone()).or_default() += n;
        }
    }
    let packed_size: u64 = streamed
        .iter()
        .filter(|s| s.packed.is_some())
        .map(|s| s.outcome.entries.bytes())
        .sum();
    let packed_sources: Vec<String> = streamed
        .iter()
        .filter(|s| s.packed.is_some())
        .map(|s| s.name.clone())
        .collect();
    let give_up = |lanes: Vec<Lane>, shown: Shown, e: anyhow::Error| {
        if let Some(index) = index {
            let _ = super::packs::settle(index, None, &[]);
            let all: Vec<Target> = lanes.iter().map(|l| l.target.clone()).collect();
            crate::pack::gc::delete_packs(rt, &all, &job.name, &new_packs);
        }
        taking.failed(lanes, shown, e)
    };
    // A target commits only if it holds every source object.
    for s in &streamed {
        for (lane, result) in streaming.iter_mut().zip(&s.finished.targets) {
            match result {
                Ok(up) => lane.report.uploads.push(ObjectUpload {
                    key: if s.packed.is_some() {
                        format!("{}: new packs", s.name)
                    } else {
                        s.key.clone()
                    },
                    upload: *up,
                }),
                Err(e) => lane.fail(e.to_string(), e.retryable),
            }
        }
    }
    let checked = super::check::compare_captured(job, &streamed);
    let skew = skew_of(&streamed);
    let window = window_of(&streamed);
    let Assembled {
        mut objects,
        mut manifest,
        totals,
        mut shown,
    } = assemble(job, id, started, (skew, window), streamed);
    shown.warnings.splice(0..0, leftovers);
    shown.warnings.extend(check_note);
    let check = match checked {
        Some(Ok(report)) => {
            manifest.check = Some(CheckCounts::of(&report));
            Some(report)
        }
        Some(Err(why)) => {
            shown.warnings.push(why);
            None
        }
        None => None,
    };

    let (mut live_lanes, live_targets) = live(&mut lanes);
    let manifest_fin = match write_manifest(rt, &live_targets, job, id, &manifest, &recipients) {
        Ok(f) => f,
        Err(e) => return Ok(give_up(lanes, shown, e)),
    };
    for (lane, result) in live_lanes.iter_mut().zip(&manifest_fin.targets) {
        match result {
            Ok(up) => lane.report.uploads.push(ObjectUpload {
                key: MANIFEST.to_string(),
                upload: *up,
            }),
            Err(e) => lane.fail(e.to_string(), e.retryable),
        }
    }
    objects.push(ObjectRecord {
        key: MANIFEST.to_string(),
        source: None,
        plaintext_size: manifest_fin.plaintext_size,
        stored_size: manifest_fin.stored_size,
        blake3: manifest_fin.blake3.clone(),
        facts: BTreeMap::new(),
    });
    let packs = match index.map(|i| super::packs::records(i, &used)) {
        None => Vec::new(),
        Some(Ok(p)) => p,
        Some(Err(e)) => return Ok(give_up(lanes, shown, e)),
    };
    let marker = Marker {
        format: if index.is_some() {
            FormatVersion::V2
        } else {
            FormatVersion::V1
        },
        id: id.to_string(),
        job: job.name.clone(),
        host: manifest.host,
        coffer_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started,
        finished_at: OffsetDateTime::now_utc(),
        skew_seconds: skew,
        window_seconds: Some(window),
        objects,
        packs,
        packed_size,
        packed_sources: packed_sources.clone(),
        warnings: totals,
        check: check.as_ref().map(|report| crate::format::MarkerCheck {
            consistent: report.consistent(),
            counts: CheckCounts::of(report),
        }),
        seal: crate::format::seal::Seal::Signed(signing_key.public),
    };
    if crate::cancel::requested() {
        return Ok(give_up(lanes, shown, anyhow!("no snapshot committed")));
    }

    // The commit, per target: a target gets the signed marker only if it holds
    // every object the marker lists, with the size written.
    let marker_bytes = crate::format::seal::seal(&marker, &signing_key)?;
    let marker_path = object_path(&job.name, id, MARKER);
    let (mut live_lanes, live_targets) = live(&mut lanes);
    let checked = objects_in_place(rt, &live_targets, &job.name, id, &marker.objects);
    let packs_checked = super::packs::packs_in_place(rt, &live_targets, &job.name, &marker.packs);
    for ((lane, problem), packs_problem) in live_lanes.iter_mut().zip(checked).zip(packs_checked) {
        let problem = problem.or(packs_problem);
        if let Some(why) = problem {
            // An object gone or cut short (a prune from elsewhere, a full disk):
            // a new run writes everything afresh.
            lane.fail(format!("not committed: {why}"), true);
            continue;
        }
        let written = rt.block_on(
            lane.target
                .store
                .put(&marker_path, PutPayload::from(marker_bytes.clone())),
        );
        if let Err(e) = written {
            let x = lane.target.explain(Op::Write, &e);
            lane.fail(
                format!("cannot write {marker_path}: {}", x.message),
                x.retryable,
            );
        }
    }
    let mut committed = 0;
    for lane in &mut lanes {
        match &lane.out {
            None => {
                lane.report.committed = true;
                committed += 1;
            }
            Some(e) => {
                lane.report.error = Some(e.clone());
                if lane.written {
                    remove_partial(rt, std::slice::from_ref(&lane.target), &job.name, id);
                }
            }
        }
    }
    if let Some(index) = index {
        let names: Vec<&str> = packed_sources.iter().map(String::as_str).collect();
        if let Err(e) = super::packs::settle(index, (committed > 0).then_some(id), &names) {
            shown.warnings.push(format!("{e:#}"));
        }
        if committed == 0 {
            let all: Vec<Target> = lanes.iter().map(|l| l.target.clone()).collect();
            crate::pack::gc::delete_packs(rt, &all, &job.name, &new_packs);
        }
    }
    let status = if committed == lanes.len() {
        RunStatus::Success
    } else if committed > 0 {
        RunStatus::Partial
    } else {
        RunStatus::Failed
    };
    let retryable = committed == 0
        && !crate::cancel::requested()
        && lanes.iter().all(|l| l.out.is_none() || l.retryable);
    let mut run = taking.report(lanes, shown, (skew, window), status);
    run.retryable = retryable;
    run.check = check;
    run.notes.extend(upload_notes);
    if let Some(r) = &run_index {
        run.notes.extend(r.notes.iter().cloned());
    }
    if committed == 0 {
        let why: Vec<String> = run
            .targets
            .iter()
            .filter_map(|t| Some(format!("target {}: {}", t.name, t.error.as_deref()?)))
            .collect();
        run.error = Some(format!(
            "no target accepted the snapshot: {}",
            why.join("; ")
        ));
    }
    Ok(run)
}

/// The spread of the sources' consistency instants.
fn skew_of(streamed: &[Streamed]) -> f64 {
    let instants = streamed.iter().map(|s| s.instant);
    match (instants.clone().min(), instants.max()) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64(),
        _ => 0.0,
    }
}

/// The span of time the snapshot's contents may come from: from the earliest
/// source's instant to the latest moment any source's state could still change
/// (its instant plus its window). Equal to the skew when every source was fixed
/// at an instant; at least the skew always.
fn window_of(streamed: &[Streamed]) -> f64 {
    let earliest = streamed.iter().map(|s| s.instant).min();
    let latest = streamed
        .iter()
        .map(|s| s.instant + time::Duration::seconds_f64(s.window_seconds))
        .max();
    match (earliest, latest) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64(),
        _ => 0.0,
    }
}
