//! One backup run of a job, the same for `coffer backup` and the service.
//!
//! A run: take the job lock; list every target (one that cannot be listed is out
//! before anything is read); freeze every source concurrently behind a barrier;
//! stream all sources in parallel through the pipeline to every target; write the
//! manifest, then `snapshot.json` last, per target that holds every object. A source
//! that fails, or SIGTERM, stops the whole run: no target gets a marker, uploads are
//! aborted and the partial folder is removed, so a failed backup never looks like a
//! good one. A target that fails alone is reported; the run is then `partial`.
//!
//! The commit is per target and checks before it writes: every object the marker
//! lists must be there with the size written (a prune from elsewhere, or an
//! operator, may have removed one while the run went on). Decisions about errors
//! are made on types, never on their text; the freeze barrier lets a failing or
//! panicking source through, so the others never wait forever with the lock held.

//!
//! `snapshot` takes the snapshot itself (freeze behind `gate`, `stream`, then
//! `commit` per target); this module wraps it in the job lock, the hooks,
//! retention and the persisted status. `report` is what a run tells its caller.

mod assemble;
mod check;
mod check_answer;
mod commit;
mod context;
mod gate;
mod lane;
mod notify;
mod pack_copy;
mod packs;
mod report;
pub(crate) mod retry;
mod snapshot;
pub(crate) mod status;
mod stream;

// The commit's check that a target holds what a marker lists, also `coffer copy`'s.
pub(crate) use commit::objects_in_place;
pub(crate) use packs::packs_in_place;
pub(crate) use report::JobRun;
pub(crate) use status::RunStatus;

use crate::hooks::run_hooks_timed;
use crate::lock::lock_job;
use crate::repo::targets_of;
use crate::report::Report;
use crate::retention::prune::{Mode, prune_target};
use anyhow::Result;
use coffer_config::{Config, Job};
use snapshot::take_snapshot;
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// One run of a job, the same for the CLI and the agent: the job lock, `before`
/// hooks (a failure there means nothing is read), the snapshot, `on_success` or
/// `on_failure`, `after` whatever happened, retention after a success, and the
/// persisted status that metrics are made from.
/// `report` follows the snapshot's progress and hears the hooks start.
pub fn run_job(rt: &Handle, cfg: &Config, job: &Job, report: &dyn Report) -> Result<JobRun> {
    if job.restore_only() {
        // Not a failed run: nothing was attempted, and no status or metric says so.
        return Err(crate::exit::usage(format!(
            "job {} has no sources in {}: it restores, lists, verifies and repairs what its \
             targets hold, and backs up nothing; add [[jobs.{}.sources]] to back up",
            job.name,
            cfg.file.display(),
            job.name
        )));
    }
    if let Err(e) = refuse_unrestorable(cfg, job) {
        notify::refused(rt, job, &format!("{e:#}"));
        return Err(e);
    }
    // Held to the end: retention below deletes under it.
    let lock = lock_job(&cfg.agent.state_dir, &job.name)?;
    let notified = notify::start(rt, job);
    let started = OffsetDateTime::now_utc();
    let timeout = Some(job.hooks.timeout);
    let job_env = [("COFFER_JOB", job.name.as_str())];
    let mut run = match run_hooks_timed("before", &job.hooks.before, &job_env, timeout, report) {
        Err(e) => failed_before_reading(
            job,
            started,
            e.context("a before hook failed; nothing was read"),
        ),
        Ok(()) => match take_snapshot(rt, cfg, job, report) {
            Ok(run) => run,
            Err(e) => failed_before_reading(job, started, e),
        },
    };
    let outcome = if run.status != RunStatus::Success && crate::cancel::requested() {
        RunStatus::Cancelled
    } else {
        run.status
    };
    let env = [
        ("COFFER_JOB", job.name.as_str()),
        ("COFFER_SNAPSHOT", run.snapshot.as_str()),
        ("COFFER_OUTCOME", outcome.as_str()),
    ];
    let (which, lines) = if run.status == RunStatus::Success {
        ("on_success", &job.hooks.on_success)
    } else {
        ("on_failure", &job.hooks.on_failure)
    };
    for (what, lines) in [(which, lines), ("after", &job.hooks.after)] {
        if let Err(e) = run_hooks_timed(what, lines, &env, timeout, report) {
            run.hook_errors.push(format!("{e:#}"));
        }
    }
    let retained = apply_retention(rt, cfg, job, &lock, &mut run);
    record_status(cfg, job, &run, outcome, retained);
    // Last: the monitor hears of the run once everything it did is done.
    notify::finish(rt, job, notified, &run, outcome);
    Ok(run)
}

/// What retention left on each target after a run: the snapshots kept, and the
/// stored bytes of referenced packs no kept snapshot uses.
#[derive(Default)]
struct Retained {
    kept: std::collections::BTreeMap<String, u64>,
    dead_bytes: std::collections::BTreeMap<String, u64>,
}

/// Retention on every target after a successful run, under the run's lock, and
/// the packs to rewrite noted for the next run. The snapshot is committed: a
/// retention problem is a warning in the run, never a reason to lose its result.
fn apply_retention(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    lock: &crate::lock::JobLock,
    run: &mut JobRun,
) -> Retained {
    let mut retained = Retained::default();
    let mut rewrite = std::collections::BTreeSet::new();
    // The snapshot is committed: a retention problem is a warning, never a reason
    // to lose the run's result or its recorded status.
    let targets = match run.status {
        // Retention only deletes: a target whose directory went away since the
        // snapshot was committed is not created again.
        RunStatus::Success => targets_of(cfg, job, None, coffer_plugins::Access::Read)
            .unwrap_or_else(|e| {
                run.warnings.push(format!("retention not applied: {e:#}"));
                Vec::new()
            }),
        _ => Vec::new(),
    };
    let trust = crate::format::seal::Trust::new(&cfg.encryption, &[], false);
    for target in targets {
        if !target.prunes_here {
            // Said once per run as news: the prune host's job, not a problem here.
            run.notes.push(format!(
                "retention on {}: left to the host that prunes it (prune = \"elsewhere\")",
                target.name
            ));
            continue;
        }
        match prune_target(rt, job, &target, Mode::Delete(lock), &trust) {
            Ok(r) => {
                retained
                    .kept
                    .insert(target.name.clone(), r.kept.len() as u64);
                retained
                    .dead_bytes
                    .insert(target.name.clone(), r.packs_dead_bytes);
                rewrite.extend(r.packs_to_rewrite.iter().cloned());
                if !r.forgotten.is_empty() {
                    // Retention doing its job is news, not a warning: a warning on
                    // every run would mail the operator every night.
                    run.notes.push(format!(
                        "retention on {}: forgot {}",
                        target.name,
                        r.forgotten.join(", ")
                    ));
                }
                if !r.packs_removed.is_empty() {
                    run.notes.push(format!(
                        "retention on {}: deleted {} pack(s) no snapshot references ({})",
                        target.name,
                        r.packs_removed.len(),
                        crate::units::bytes(r.packs_freed_bytes)
                    ));
                }
                if !r.staging_removed.is_empty() {
                    run.notes.push(format!(
                        "retention on {}: removed {} staging file(s) of uploads a killed run left ({})",
                        target.name,
                        r.staging_removed.len(),
                        crate::units::bytes(r.staging_freed_bytes)
                    ));
                }
                run.warnings.extend(
                    r.errors
                        .iter()
                        .map(|e| format!("retention on {}: {e}", target.name)),
                );
            }
            Err(e) => run
                .warnings
                .push(format!("retention on {}: {e:#}", target.name)),
        }
    }
    let rewrite: Vec<String> = rewrite.into_iter().collect();
    match crate::pack::gc::rewrite_later(&cfg.agent.state_dir, &job.name, &rewrite) {
        Ok(Some(note)) => run.notes.push(format!("repack: {note}")),
        Ok(None) => {}
        Err(e) => run.warnings.push(format!("repack: {e:#}")),
    }
    retained
}

/// Refuses the run, before any hook or read, when the identity file on this host
/// belongs to none of the recipients: the snapshot would be one nobody here can
/// restore, and would look like a good backup until the day it is needed. The
/// refusal is recorded as a failed run (so the metrics and alerts see it) and
/// returned as a usage error (exit 2), with the message `config check` gives.
fn refuse_unrestorable(cfg: &Config, job: &Job) -> Result<()> {
    let crate::key_match::IdentityCheck::Mismatch { message, .. } =
        crate::key_match::check_identity(&cfg.encryption)
    else {
        return Ok(());
    };
    let message = format!(
        "job {}: refusing to back up: {}: {message}",
        job.name,
        cfg.file.display()
    );
    let mut run = failed_before_reading(
        job,
        OffsetDateTime::now_utc(),
        anyhow::anyhow!(message.clone()),
    );
    // Retrying cannot help: only a config change can.
    run.retryable = false;
    record_status(cfg, job, &run, RunStatus::Failed, Default::default());
    Err(crate::exit::usage(message))
}

/// A run that failed before it had anything to show.
fn failed_before_reading(job: &Job, started: OffsetDateTime, e: anyhow::Error) -> JobRun {
    JobRun {
        job: job.name.clone(),
        snapshot: String::new(),
        status: RunStatus::Failed,
        retryable: !crate::cancel::requested() && retry::could_help(&e),
        error: Some(format!("{e:#}")),
        duration_seconds: (OffsetDateTime::now_utc() - started).as_seconds_f64(),
        skew_seconds: 0.0,
        window_seconds: 0.0,
        sources: Vec::new(),
        targets: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
        hook_errors: Vec::new(),
        missing_root: false,
        check: None,
    }
}

/// Updates the job's persisted status; a status that cannot be written is only a
/// warning (the backup itself is what matters).
fn record_status(cfg: &Config, job: &Job, run: &JobRun, outcome: RunStatus, retained: Retained) {
    let result = crate::status::update(&cfg.agent.state_dir, &job.name, |s| {
        let now = crate::status::now();
        s.last_run = Some(now);
        if run.status == RunStatus::Success {
            s.first_success = s.first_success_known().or(Some(now));
            s.last_success = Some(now);
        }
        s.last_outcome = Some(outcome.into());
        s.last_error = run.error.clone();
        if !run.snapshot.is_empty() {
            s.last_snapshot = Some(run.snapshot.clone());
        }
        s.last_duration_seconds = run.duration_seconds;
        s.last_skew_seconds = run.skew_seconds;
        if run.targets.iter().any(|t| t.committed) {
            s.last_check = run.check.as_ref().map(crate::format::CheckCounts::of);
            s.last_files = run.sources.iter().map(|src| src.files as u64).sum();
            s.last_data_bytes = run.sources.iter().map(|src| src.data_bytes).sum();
        }
        s.last_window_seconds = run.window_seconds;
        *s.runs.entry(outcome.into()).or_default() += 1;
        for src in &run.sources {
            *s.bytes_read.entry(src.name.clone()).or_default() += src.bytes_read;
        }
        let mut stored = 0u64;
        for t in run.targets.iter().filter(|t| t.committed) {
            let bytes = t.uploads.iter().map(|u| u.upload.bytes).sum::<u64>();
            *s.bytes_stored.entry(t.name.clone()).or_default() += bytes;
            stored += bytes;
        }
        s.snapshots.extend(retained.kept);
        s.dead_bytes.extend(retained.dead_bytes);
        s.record_run(crate::status::RunRecord {
            end: now,
            outcome: outcome.into(),
            duration_seconds: run.duration_seconds,
            bytes_stored: stored,
            window_seconds: run.window_seconds,
            error: run.error.as_deref().map(crate::status::bounded_error),
        });
    });
    if let Err(e) = result {
        tracing::warn!("cannot record the status of job {}: {e:#}", job.name);
    }
}
