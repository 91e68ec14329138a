//! The snapshot itself, in the order it is taken: open the targets (as lanes,
//! `lane.rs`) and the sources, list the targets and choose the id, prepare the
//! run's packs, freeze and stream the sources, build the manifest and the signed
//! marker, and commit per target. Each step is a function below; a step that
//! fails for the whole run returns through `Taking::failed`, which undoes what
//! was written.

use super::RunStatus;
use super::assemble::{Assembled, Shown, assemble};
use super::commit::{commit, manifest_to, marker_of, record_uploads};
use super::context::RunContext;
use super::lane::{Lane, Taking, abort_recorded_uploads, list_targets, live, open_lanes};
use super::packs::prepare_packs;
use super::report::JobRun;
use super::stream::{Streamed, stream_sources};
use crate::format::id::{new_id, new_id_avoiding};
use crate::format::{CheckCounts, Marker};
use crate::keys;
use anyhow::{Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::{Source, SourceContext, Target, open_source};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::runtime::Handle;

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
        packs: None,
    };
    let recipients = Arc::new(keys::recipients(&cfg.encryption, report)?);
    let signing_key = crate::format::seal::host_key(&cfg.encryption)?;
    let mut lanes = open_lanes(cfg, job)?;
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
    let taken = list_targets(rt, job, &mut lanes);
    if !lanes.iter().any(Lane::is_in) {
        let why: Vec<String> = lanes.iter().filter_map(|l| l.out.clone()).collect();
        let retryable = lanes.iter().all(|l| l.retryable);
        let e = anyhow!("no target can be written: {}", why.join("; "));
        let mut run = taking.failed(lanes, Shown::default(), e);
        run.retryable = retryable && !crate::cancel::requested();
        return Ok(run);
    }
    let upload_notes = abort_recorded_uploads(rt, job, &mut lanes, &mut leftovers);
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
    // Format 2: the index, checked against the packs every live target holds; a
    // target whose packs cannot be listed is out of the run.
    if super::packs::wanted(job) {
        match prepare_packs(rt, cfg, job, &mut lanes) {
            Ok(packs) => taking.packs = Some(packs),
            Err(e) => return Ok(taking.failed(lanes, Shown::default(), e)),
        }
    }
    let taking = taking;
    let id = taking.id.as_str();
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
    let run = RunContext {
        rt,
        job,
        id,
        targets: &targets,
        recipients: &recipients,
        packs: taking.packs.as_ref(),
        failed: Default::default(),
        progress: &work.counts,
    };
    let shown = report.start(work.clone());
    let streamed = match stream_sources(&run, sources) {
        Ok(s) => s,
        Err(e) => return Ok(taking.failed(lanes, Shown::default(), e)),
    };
    // The display follows the streaming only, as it always did.
    drop(shown);
    // Every pack the snapshot references, with the bytes its files take in it.
    let mut used: BTreeMap<String, u64> = BTreeMap::new();
    for p in streamed.iter().filter_map(|s| s.packed.as_ref()) {
        for (id, n) in &p.used {
            *used.entry(id.clone()).or_default() += n;
        }
    }
    let packed_sources: Vec<String> = streamed
        .iter()
        .filter(|s| s.packed.is_some() && s.chunked.is_none())
        .map(|s| s.name.clone())
        .collect();
    let packed_size: u64 = streamed
        .iter()
        .filter(|s| s.packed.is_some() && s.chunked.is_none())
        .map(|s| s.outcome.entries.bytes())
        .sum();
    record_uploads(&mut streaming, &streamed);
    let checked = super::check::compare_captured(job, &streamed);
    let skew = skew_of(&streamed);
    let window = window_of(&streamed);
    let Assembled {
        mut objects,
        streams,
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

    // Format 2: the manifest as chunks in packs (what did not change since the
    // last snapshot is not stored again); format 1: an object.
    let manifest_chunks = match &taking.packs {
        Some(packs) => match super::commit::manifest_chunked(&run, packs, &mut lanes, &manifest) {
            Ok((chunks, packed)) => {
                for (id, n) in &packed.used {
                    *used.entry(id.clone()).or_default() += n;
                }
                Some(chunks)
            }
            Err(e) => return Ok(taking.failed(lanes, shown, e)),
        },
        None => match manifest_to(&taking, &mut lanes, &manifest, &recipients) {
            Ok(record) => {
                objects.push(record);
                None
            }
            Err(e) => return Ok(taking.failed(lanes, shown, e)),
        },
    };
    let packs = match taking
        .packs
        .as_ref()
        .map(|p| super::packs::records(&p.index, &used))
    {
        None => Vec::new(),
        Some(Ok(p)) => p,
        Some(Err(e)) => return Ok(taking.failed(lanes, shown, e)),
    };
    let marker = Marker {
        objects,
        packs,
        packed_size,
        packed_sources: packed_sources.clone(),
        streams,
        manifest: manifest_chunks,
        warnings: totals,
        check: check.as_ref().map(|report| crate::format::MarkerCheck {
            consistent: report.consistent(),
            counts: CheckCounts::of(report),
        }),
        ..marker_of(&taking, manifest.host, (skew, window), &signing_key)
    };
    if crate::cancel::requested() {
        return Ok(taking.failed(lanes, shown, anyhow!("no snapshot committed")));
    }
    let marker_bytes = crate::format::seal::seal(&marker, &signing_key)?;
    let committed = commit(
        rt,
        job,
        &mut lanes,
        &marker,
        marker_bytes,
        &cfg.agent.state_dir,
    );
    if let Some(packs) = &taking.packs {
        let names: Vec<&str> = packed_sources.iter().map(String::as_str).collect();
        let written: Vec<Target> = lanes
            .iter()
            .filter(|l| l.written)
            .map(|l| l.target.clone())
            .collect();
        let id = (committed > 0).then_some(id);
        if let Some(why) = packs.finish(rt, &written, &job.name, id, &names) {
            shown.warnings.push(why);
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
    if let Some(p) = &taking.packs {
        run.notes.extend(p.notes.iter().cloned());
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
