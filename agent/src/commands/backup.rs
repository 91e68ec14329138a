//! `coffer backup`: one run of each named job.
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

use crate::cli::BackupArgs;
use crate::commands::prune::{Mode, prune_target};
use crate::commands::{job as find_job, targets_of};
use crate::format::{
    FormatVersion, MANIFEST, MARKER, Manifest, Marker, ObjectBinding, ObjectRecord, SourceManifest,
    WarningCounts, object_path, snapshot_dir, source_key,
};
use crate::hooks::run_hooks_timed;
use crate::keys::{self, Recipients};
use crate::lock::lock_job;
use crate::pipeline::{Finished, ObjectWriter, Uploaded};
use crate::run_status::RunStatus;
use crate::snapshot_id::new_id;
use crate::units::bytes;
use anyhow::{Context, Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::{Op, Progress, Source, SourceContext, SourceOutcome, Target, open_source};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// The result of one job run, for output and (later) metrics.
#[derive(Debug, Serialize)]
pub struct JobRun {
    pub job: String,
    pub snapshot: String,
    /// `success`, `partial` (some targets failed) or `failed`.
    pub status: RunStatus,
    pub error: Option<String>,
    pub duration_seconds: f64,
    pub skew_seconds: f64,
    pub sources: Vec<SourceRun>,
    pub targets: Vec<TargetRun>,
    pub warnings: Vec<String>,
    /// Hooks that failed after the snapshot (the snapshot itself stands).
    pub hook_errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SourceRun {
    pub name: String,
    pub files: usize,
    pub bytes_read: u64,
    pub plaintext_size: u64,
    pub stored_size: u64,
}

#[derive(Debug, Serialize)]
pub struct TargetRun {
    pub name: String,
    pub description: String,
    pub committed: bool,
    pub error: Option<String>,
    /// How each object reached this target (parts, largest part), for operators
    /// tuning `part_size` and `max_parts`.
    pub uploads: Vec<ObjectUpload>,
}

#[derive(Debug, Serialize)]
pub struct ObjectUpload {
    pub key: String,
    #[serde(flatten)]
    pub upload: Uploaded,
}

pub fn run(rt: &Handle, cfg: &Config, config_path: &Path, args: &BackupArgs) -> Result<u8> {
    let jobs: Vec<&Job> = if args.jobs.is_empty() {
        cfg.jobs.values().collect()
    } else {
        args.jobs
            .iter()
            .map(|j| find_job(cfg, j))
            .collect::<Result<_>>()?
    };
    crate::cancel::watch(rt).context("cannot install the SIGTERM and SIGINT handlers")?;
    let mut runs = Vec::new();
    for job in jobs {
        if crate::cancel::requested() {
            break;
        }
        let run = run_job(rt, cfg, job)?;
        if !args.json {
            print_run(&run, config_path);
        }
        runs.push(run);
    }
    if args.json {
        let json = serde_json::to_string_pretty(&runs)?;
        // A reader that went away has what it wanted; a file that cannot take the
        // report is a failure a script must see.
        if let Err(e) = writeln!(std::io::stdout().lock(), "{json}")
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(e).context("cannot print the JSON report");
        }
    }
    // A signal may have stopped the loop before some jobs ran.
    Ok(
        if runs
            .iter()
            .all(|r| r.status == RunStatus::Success && r.hook_errors.is_empty())
            && !crate::cancel::requested()
        {
            crate::exit::OK
        } else {
            crate::exit::FAILED
        },
    )
}

fn print_run(run: &JobRun, config_path: &Path) {
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    for h in &run.hook_errors {
        eprintln!("error: {h}");
    }
    match run.status {
        RunStatus::Failed | RunStatus::Cancelled => {
            eprintln!(
                "job {}: FAILED, no snapshot written: {}",
                run.job,
                run.error.as_deref().unwrap_or("unknown error")
            );
            return;
        }
        RunStatus::Partial => eprintln!(
            "job {}: PARTIAL, some targets did not get snapshot {}",
            run.job, run.snapshot
        ),
        RunStatus::Success => {}
    }
    say(format_args!(
        "snapshot {} of job {} ({:.1}s, skew {:.3}s)",
        run.snapshot, run.job, run.duration_seconds, run.skew_seconds
    ));
    for s in &run.sources {
        say(format_args!(
            "  source {}: {} files, {} read, {} in the stream, {} stored",
            s.name,
            s.files,
            bytes(s.bytes_read),
            bytes(s.plaintext_size),
            bytes(s.stored_size)
        ));
    }
    for t in &run.targets {
        match &t.error {
            None => say(format_args!(
                "  target {}: committed to {}",
                t.name, t.description
            )),
            Some(e) => say(format_args!("  target {}: FAILED: {e}", t.name)),
        }
    }
    if run.targets.iter().any(|t| t.committed) {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| {
                let cwd = std::env::current_dir().ok()?;
                Some(p.strip_prefix(&cwd).map(Path::to_path_buf).unwrap_or(p))
            })
            .map_or_else(|| "coffer".to_string(), |p| p.display().to_string());
        say(format_args!("restore it with:"));
        say(format_args!(
            "  {exe} --config {} restore --job {} --snapshot {} --to ./coffer-restore",
            config_path.display(),
            run.job,
            run.snapshot
        ));
    }
}

/// Prints a line of the run's report. A reader that went away (`coffer backup |
/// head`) ends the report, not the run: further jobs still run and the exit code
/// still says how they went.
fn say(line: std::fmt::Arguments) {
    crate::output::say(line);
}

/// One source's result inside the run.
struct Streamed {
    name: String,
    kind: coffer_config::SourceType,
    key: String,
    origin: String,
    instant: OffsetDateTime,
    outcome: SourceOutcome,
    finished: Finished,
}

/// Where a source's data came from, for the manifest: URLs in their shown form,
/// never with a credential.
fn origin_of(job: &Job, name: &str) -> String {
    use coffer_config::SourceKind as K;
    job.sources
        .iter()
        .find(|s| s.name == name)
        .map(|s| match &s.kind {
            K::Directory(d) => d.path.display().to_string(),
            K::Sqlite(d) => d.path.display().to_string(),
            K::Postgres(d) | K::Mysql(d) => coffer_config::display_url(&d.url),
            K::Redis(r) => coffer_config::display_url(&r.url),
            K::Command(c) => c.command.join(" "),
        })
        .unwrap_or_default()
}

/// Facts safe and useful to show without the private key (`list`).
const PUBLIC_FACTS: [&str; 2] = ["server_version", "schema_version"];

/// A source that was not read because another one failed: an echo of the root
/// cause, never reported as the cause itself.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: not read because another source failed")]
struct NotRead {
    source_name: String,
}

/// The freeze barrier: every source waits here until all have frozen, so their
/// instants are as close as they can be. Unlike `std::sync::Barrier`, a source
/// that fails or panics before it gets there still counts as arrived (its `Pass`
/// arrives when dropped, also while unwinding), so the others are released and
/// learn that the run failed instead of waiting forever with the job lock held.
struct Gate {
    state: Mutex<GateState>,
    all_arrived: Condvar,
}

struct GateState {
    missing: usize,
    failed: bool,
}

/// One source's way through the gate; arrives (as failed) when dropped unused.
struct Pass<'a> {
    gate: &'a Gate,
    arrived: bool,
}

impl Gate {
    fn new(sources: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                missing: sources,
                failed: false,
            }),
            all_arrived: Condvar::new(),
        }
    }

    fn pass(&self) -> Pass<'_> {
        Pass {
            gate: self,
            arrived: false,
        }
    }

    fn arrive(&self, ok: bool) -> std::sync::MutexGuard<'_, GateState> {
        // Nothing runs under this lock that could panic; a poisoned one is still sound.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.missing = state.missing.saturating_sub(1);
        state.failed |= !ok;
        if state.missing == 0 {
            self.all_arrived.notify_all();
        }
        state
    }
}

impl Pass<'_> {
    /// Arrives and waits for every other source; true when all of them froze.
    fn wait(mut self, ok: bool) -> bool {
        self.arrived = true;
        let mut state = self.gate.arrive(ok);
        while state.missing > 0 {
            state = self
                .gate
                .all_arrived
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.failed
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            drop(self.gate.arrive(false));
        }
    }
}

/// What a panicking thread said, for the error that replaces it.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Freeze all sources behind a barrier, then stream them in parallel.
fn stream_sources(
    rt: &Handle,
    job: &Job,
    id: &str,
    sources: Vec<Box<dyn Source>>,
    targets: &[Target],
    recipients: &Arc<Recipients>,
) -> Result<Vec<Streamed>> {
    let gate = Gate::new(sources.len());
    let failed = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let _bar = crate::progress::wanted(false).then(|| {
        let p = progress.clone();
        crate::progress::Follow::start(&format!("backup {}", job.name), None, move || {
            (
                p.bytes.load(Ordering::Relaxed),
                p.files.load(Ordering::Relaxed),
            )
        })
    });
    let results: Vec<Result<Streamed>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .into_iter()
            .map(|mut src| {
                let gate = &gate;
                let failed = failed.clone();
                let progress = &*progress;
                let name = src.name().to_string();
                let handle = scope.spawn(move || -> Result<Streamed> {
                    let pass = gate.pass();
                    let frozen = src.freeze();
                    let all_frozen = pass.wait(frozen.is_ok());
                    let released = OffsetDateTime::now_utc();
                    if !all_frozen {
                        failed.store(true, Ordering::SeqCst);
                    }
                    let frozen = frozen?;
                    if !all_frozen {
                        return Err(NotRead {
                            source_name: src.name().to_string(),
                        }
                        .into());
                    }
                    let frozen_at = frozen.unwrap_or(released);
                    let key = source_key(src.name(), src.extension());
                    let path = object_path(&job.name, id, &key);
                    let mut writer = ObjectWriter::start(
                        rt,
                        targets,
                        &path,
                        recipients.clone(),
                        job.compression,
                        failed.clone(),
                    )
                    .with_context(|| format!("source {}: cannot start the pipeline", src.name()))?;
                    let outcome = match src.stream(&mut writer, progress) {
                        Ok(o) => o,
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            // When every target failed, they are the cause, not the
                            // source's "cannot write".
                            let own = writer.abandon();
                            if !own.is_empty() && own.len() == targets.len() {
                                let why: Vec<String> = own.iter().map(|u| u.to_string()).collect();
                                return Err(anyhow!(
                                    "source {}: every target failed: {}",
                                    src.name(),
                                    why.join("; ")
                                ));
                            }
                            return Err(e.into());
                        }
                    };
                    let finished = writer.finish().map_err(|e| {
                        failed.store(true, Ordering::SeqCst);
                        anyhow!("source {}: {e}", src.name())
                    })?;
                    Ok(Streamed {
                        name: src.name().to_string(),
                        kind: src.kind(),
                        key,
                        origin: origin_of(job, src.name()),
                        instant: outcome.instant.unwrap_or(frozen_at),
                        outcome,
                        finished,
                    })
                });
                (name, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                h.join().unwrap_or_else(|payload| {
                    failed.store(true, Ordering::SeqCst);
                    Err(anyhow!(
                        "source {name}: coffer failed (a panic: {}); please report this",
                        panic_message(payload.as_ref())
                    ))
                })
            })
            .collect()
    });
    // Report the root cause, not the "another source failed" echoes.
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(s) => ok.push(s),
            Err(e) => errors.push(e),
        }
    }
    if let Some(first) = errors
        .iter()
        .position(|e| !e.is::<NotRead>())
        .or(if errors.is_empty() { None } else { Some(0) })
    {
        return Err(errors.swap_remove(first));
    }
    Ok(ok)
}

/// Removes whatever a failed run left under the snapshot folder (best effort; prune
/// removes anything left after its grace period).
fn remove_partial(rt: &Handle, targets: &[Target], job: &str, id: &str) {
    let dir = snapshot_dir(job, id);
    for t in targets {
        rt.block_on(async {
            let mut listing = t.store.list(Some(&dir));
            while let Some(Ok(meta)) = listing.next().await {
                let _ = t.store.delete(&meta.location).await;
            }
        });
        t.remove_empty_folder(&dir);
    }
}

/// Lists the job's folder on every target at once; `Some(why)` for each that failed.
fn preflight(rt: &Handle, targets: &[Target], job: &str) -> Vec<Option<String>> {
    let folder = object_store::path::Path::from(job);
    rt.block_on(futures::future::join_all(targets.iter().map(|t| {
        let folder = &folder;
        async move {
            t.store
                .list_with_delimiter(Some(folder))
                .await
                .err()
                .map(|e| format!("cannot list: {}", t.explain(Op::List, &e).message))
        }
    })))
}

/// One run of a job, the same for the CLI and the agent: the job lock, `before`
/// hooks (a failure there means nothing is read), the snapshot, `on_success` or
/// `on_failure`, `after` whatever happened, retention after a success, and the
/// persisted status that metrics are made from.
pub fn run_job(rt: &Handle, cfg: &Config, job: &Job) -> Result<JobRun> {
    // Held to the end: retention below deletes under it.
    let lock = lock_job(&cfg.agent.state_dir, &job.name)?;
    let started = OffsetDateTime::now_utc();
    let timeout = Some(job.hooks.timeout);
    let job_env = [("COFFER_JOB", job.name.as_str())];
    let mut run = match run_hooks_timed("before", &job.hooks.before, &job_env, timeout) {
        Err(e) => failed_before_reading(
            job,
            started,
            e.context("a before hook failed; nothing was read"),
        ),
        Ok(()) => match take_snapshot(rt, cfg, job) {
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
        if let Err(e) = run_hooks_timed(what, lines, &env, timeout) {
            run.hook_errors.push(format!("{e:#}"));
        }
    }
    let mut kept = std::collections::BTreeMap::new();
    // The snapshot is committed: a retention problem is a warning, never a reason
    // to lose the run's result or its recorded status.
    let targets = match run.status {
        RunStatus::Success => targets_of(cfg, job, None).unwrap_or_else(|e| {
            run.warnings.push(format!("retention not applied: {e:#}"));
            Vec::new()
        }),
        _ => Vec::new(),
    };
    let trust = crate::seal::Trust::new(&cfg.encryption, &[], false);
    for target in targets {
        match prune_target(rt, job, &target, Mode::Delete(&lock), &trust) {
            Ok(r) => {
                kept.insert(target.name.clone(), r.kept.len() as u64);
                if !r.forgotten.is_empty() {
                    run.warnings.push(format!(
                        "retention on {}: forgot {}",
                        target.name,
                        r.forgotten.join(", ")
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
    record_status(cfg, job, &run, outcome, kept);
    Ok(run)
}

/// A run that failed before it had anything to show.
fn failed_before_reading(job: &Job, started: OffsetDateTime, e: anyhow::Error) -> JobRun {
    JobRun {
        job: job.name.clone(),
        snapshot: String::new(),
        status: RunStatus::Failed,
        error: Some(format!("{e:#}")),
        duration_seconds: (OffsetDateTime::now_utc() - started).as_seconds_f64(),
        skew_seconds: 0.0,
        sources: Vec::new(),
        targets: Vec::new(),
        warnings: Vec::new(),
        hook_errors: Vec::new(),
    }
}

/// Updates the job's persisted status; a status that cannot be written is only a
/// warning (the backup itself is what matters).
fn record_status(
    cfg: &Config,
    job: &Job,
    run: &JobRun,
    outcome: RunStatus,
    kept: std::collections::BTreeMap<String, u64>,
) {
    let result = crate::status::update(&cfg.agent.state_dir, &job.name, |s| {
        let now = crate::status::now();
        s.last_run = Some(now);
        if run.status == RunStatus::Success {
            s.last_success = Some(now);
        }
        s.last_outcome = Some(outcome.to_string());
        s.last_error = run.error.clone();
        if !run.snapshot.is_empty() {
            s.last_snapshot = Some(run.snapshot.clone());
        }
        s.last_duration_seconds = run.duration_seconds;
        s.last_skew_seconds = run.skew_seconds;
        *s.runs.entry(outcome.to_string()).or_default() += 1;
        for src in &run.sources {
            *s.bytes_read.entry(src.name.clone()).or_default() += src.bytes_read;
        }
        for t in run.targets.iter().filter(|t| t.committed) {
            *s.bytes_stored.entry(t.name.clone()).or_default() +=
                t.uploads.iter().map(|u| u.upload.bytes).sum::<u64>();
        }
        s.snapshots.extend(kept);
    });
    if let Err(e) = result {
        tracing::warn!("cannot record the status of job {}: {e:#}", job.name);
    }
}

/// The snapshot itself: freeze, stream, commit per target.
fn take_snapshot(rt: &Handle, cfg: &Config, job: &Job) -> Result<JobRun> {
    let started = OffsetDateTime::now_utc();
    let id = new_id(started);
    let recipients = Arc::new(keys::recipients(&cfg.encryption)?);
    let signing_key = crate::seal::host_key(&cfg.encryption)?;
    let targets = targets_of(cfg, job, None)?;
    let ctx = SourceContext {
        rt: rt.clone(),
        tmp_dir: cfg.agent.state_dir.join("tmp"),
    };
    let sources: Vec<Box<dyn Source>> = job
        .sources
        .iter()
        .map(|s| open_source(s, &ctx))
        .collect::<Result<_, _>>()?;

    let mut run = JobRun {
        job: job.name.clone(),
        snapshot: id.clone(),
        status: RunStatus::Failed,
        error: None,
        duration_seconds: 0.0,
        skew_seconds: 0.0,
        sources: Vec::new(),
        targets: targets
            .iter()
            .map(|t| TargetRun {
                name: t.name.clone(),
                description: t.description.clone(),
                committed: false,
                error: None,
                uploads: Vec::new(),
            })
            .collect(),
        warnings: Vec::new(),
        hook_errors: Vec::new(),
    };
    // Nothing of a failed run may remain that could look like a snapshot.
    let failed = |mut run: JobRun, written: &[Target], e: anyhow::Error| {
        let e = if crate::cancel::requested() {
            e.context("stopped by a signal; uploads aborted")
        } else {
            e
        };
        remove_partial(rt, written, &job.name, &id);
        run.error = Some(format!("{e:#}"));
        run.duration_seconds = (OffsetDateTime::now_utc() - started).as_seconds_f64();
        run
    };

    // Fail fast: a target that cannot even be listed (wrong credentials, no bucket,
    // server down) gets no uploads, and when no target is left no source is read.
    let mut target_ok = preflight(rt, &targets, &job.name);
    let reachable: Vec<usize> = (0..targets.len())
        .filter(|i| target_ok[*i].is_none())
        .collect();
    if reachable.is_empty() {
        let why: Vec<String> = target_ok.iter().flatten().cloned().collect();
        for (t, e) in run.targets.iter_mut().zip(&target_ok) {
            t.error = e.clone();
        }
        let e = anyhow!("no target can be written: {}", why.join("; "));
        return Ok(failed(run, &[], e));
    }
    let streaming: Vec<Target> = reachable.iter().map(|i| targets[*i].clone()).collect();
    let streamed = match stream_sources(rt, job, &id, sources, &streaming, &recipients) {
        Ok(s) => s,
        Err(e) => return Ok(failed(run, &streaming, e)),
    };

    // A target commits only if it holds every source object.
    for s in &streamed {
        for (k, r) in s.finished.targets.iter().enumerate() {
            let i = reachable[k];
            match r {
                Ok(up) => run.targets[i].uploads.push(ObjectUpload {
                    key: s.key.clone(),
                    upload: *up,
                }),
                Err(e) if target_ok[i].is_none() => target_ok[i] = Some(e.to_string()),
                Err(_) => {}
            }
        }
    }
    let instants: Vec<OffsetDateTime> = streamed.iter().map(|s| s.instant).collect();
    let skew = match (instants.iter().min(), instants.iter().max()) {
        (Some(a), Some(b)) => (*b - *a).as_seconds_f64(),
        _ => 0.0,
    };
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut objects = Vec::new();
    let mut totals = WarningCounts::default();
    let mut sources_manifest = Vec::new();
    for s in streamed {
        let o = &s.outcome;
        totals.changed += o.changed;
        totals.vanished += o.vanished;
        totals.skipped += o.skipped;
        run.warnings
            .extend(o.warnings.iter().map(|w| format!("source {}: {w}", s.name)));
        run.sources.push(SourceRun {
            name: s.name.clone(),
            files: o.entries.files() as usize,
            bytes_read: o.bytes_read,
            plaintext_size: s.finished.plaintext_size,
            stored_size: s.finished.stored_size,
        });
        objects.push(ObjectRecord {
            key: s.key.clone(),
            source: Some(s.name.clone()),
            plaintext_size: s.finished.plaintext_size,
            stored_size: s.finished.stored_size,
            blake3: s.finished.blake3.clone(),
            facts: s
                .outcome
                .facts
                .iter()
                .filter(|(k, _)| PUBLIC_FACTS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        sources_manifest.push(SourceManifest {
            name: s.name,
            kind: s.kind,
            object: s.key,
            origin: s.origin,
            consistency_instant: s.instant,
            facts: s.outcome.facts,
            bytes_read: s.outcome.bytes_read,
            warnings: WarningCounts {
                changed: s.outcome.changed,
                vanished: s.outcome.vanished,
                skipped: s.outcome.skipped,
            },
            entries: s.outcome.entries,
        });
    }
    let manifest = Manifest {
        format: FormatVersion::V1,
        snapshot: id.clone(),
        job: job.name.clone(),
        host: host.clone(),
        started_at: started,
        skew_seconds: skew,
        sources: sources_manifest,
        objects: objects
            .iter()
            .map(|o| ObjectBinding {
                key: o.key.clone(),
                plaintext_size: o.plaintext_size,
                stored_size: o.stored_size,
                blake3: o.blake3.clone(),
            })
            .collect(),
    };

    let live: Vec<usize> = (0..targets.len())
        .filter(|i| target_ok[*i].is_none())
        .collect();
    let live_targets: Vec<Target> = live.iter().map(|i| targets[*i].clone()).collect();
    let manifest_result = write_manifest(rt, &live_targets, job, &id, &manifest, &recipients);
    let manifest_fin = match manifest_result {
        Ok(f) => f,
        Err(e) => return Ok(failed(run, &streaming, e)),
    };
    for (k, r) in manifest_fin.targets.iter().enumerate() {
        match r {
            Ok(up) => run.targets[live[k]].uploads.push(ObjectUpload {
                key: MANIFEST.to_string(),
                upload: *up,
            }),
            Err(e) => target_ok[live[k]] = Some(e.to_string()),
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
    let marker = Marker {
        format: FormatVersion::V1,
        id: id.clone(),
        job: job.name.clone(),
        host,
        coffer_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started,
        finished_at: OffsetDateTime::now_utc(),
        skew_seconds: skew,
        objects,
        warnings: totals,
        seal: crate::seal::Seal::Signed(signing_key.public),
    };
    if crate::cancel::requested() {
        return Ok(failed(run, &streaming, anyhow!("no snapshot committed")));
    }

    // The commit, per target: a target gets the signed marker only if it holds
    // every object the marker lists, with the size written.
    let marker_bytes = crate::seal::seal(&marker, &signing_key)?;
    let marker_path = object_path(&job.name, &id, MARKER);
    let checked = objects_in_place(rt, &targets, &target_ok, &job.name, &id, &marker.objects);
    for (i, t) in targets.iter().enumerate() {
        if target_ok[i].is_some() {
            continue;
        }
        if let Some(why) = &checked[i] {
            target_ok[i] = Some(format!("not committed: {why}"));
            continue;
        }
        let written = rt.block_on(
            t.store
                .put(&marker_path, PutPayload::from(marker_bytes.clone())),
        );
        if let Err(e) = written {
            let x = t.explain(Op::Write, &e);
            target_ok[i] = Some(format!("cannot write {marker_path}: {}", x.message));
        }
    }
    let mut committed = 0;
    for (i, t) in targets.iter().enumerate() {
        match &target_ok[i] {
            None => {
                run.targets[i].committed = true;
                committed += 1;
            }
            Some(e) => {
                run.targets[i].error = Some(e.clone());
                if reachable.contains(&i) {
                    remove_partial(rt, std::slice::from_ref(t), &job.name, &id);
                }
            }
        }
    }
    run.skew_seconds = skew;
    run.status = if committed == targets.len() {
        RunStatus::Success
    } else if committed > 0 {
        RunStatus::Partial
    } else {
        RunStatus::Failed
    };
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
    run.duration_seconds = (OffsetDateTime::now_utc() - started).as_seconds_f64();
    Ok(run)
}

/// Asks every target still in the run for each object the marker will list
/// (concurrently); per target, `Some(why)` when one is missing or has another size
/// than was written. Targets already out of the run are not asked.
fn objects_in_place(
    rt: &Handle,
    targets: &[Target],
    out: &[Option<String>],
    job: &str,
    id: &str,
    objects: &[ObjectRecord],
) -> Vec<Option<String>> {
    rt.block_on(futures::future::join_all(targets.iter().zip(out).map(
        |(t, out)| async move {
            if out.is_some() {
                return None;
            }
            let heads = objects.iter().map(|o| async move {
                let path = object_path(job, id, &o.key);
                match t.store.head(&path).await {
                    Ok(meta) if meta.size == o.stored_size => None,
                    Ok(meta) => Some(format!(
                        "{path} holds {} bytes, {} were written",
                        meta.size, o.stored_size
                    )),
                    Err(object_store::Error::NotFound { .. }) => {
                        Some(format!("{path} is gone (deleted while the run went on?)"))
                    }
                    Err(e) => Some(format!(
                        "cannot check {path}: {}",
                        t.explain(Op::Read, &e).detail
                    )),
                }
            });
            let problems: Vec<String> = futures::future::join_all(heads)
                .await
                .into_iter()
                .flatten()
                .collect();
            (!problems.is_empty()).then(|| problems.join("; "))
        },
    )))
}

fn write_manifest(
    rt: &Handle,
    targets: &[Target],
    job: &Job,
    id: &str,
    manifest: &Manifest,
    recipients: &Arc<Recipients>,
) -> Result<Finished> {
    if targets.is_empty() {
        return Err(anyhow!("every target failed"));
    }
    let path = object_path(&job.name, id, MANIFEST);
    let mut w = ObjectWriter::start(
        rt,
        targets,
        &path,
        recipients.clone(),
        job.compression,
        Arc::new(AtomicBool::new(false)),
    )?;
    serde_json::to_writer(&mut w, manifest).context("cannot write the manifest")?;
    Ok(w.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A deadlock detector, not a timing claim: only a gate that never opens hits it.
    const HANG: Duration = Duration::from_secs(120);

    #[test]
    fn the_gate_holds_every_source_until_the_last_arrives() {
        let gate = Gate::new(3);
        let arrived = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    let pass = gate.pass();
                    arrived.fetch_add(1, Ordering::SeqCst);
                    assert!(pass.wait(true), "every source froze");
                    assert_eq!(arrived.load(Ordering::SeqCst), 3, "released early");
                });
            }
        });
    }

    /// Sources 1 and 2 freeze fine; source 0 fails (`panics` false) or panics.
    fn others_see(panics: bool) -> Vec<bool> {
        let gate = Arc::new(Gate::new(3));
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for i in 0..3 {
            let gate = gate.clone();
            let tx = tx.clone();
            threads.push(std::thread::spawn(move || {
                let pass = gate.pass();
                if i == 0 {
                    if panics {
                        panic!("a freeze that panics");
                    }
                    let _ = pass.wait(false);
                } else {
                    let _ = tx.send(pass.wait(true));
                }
            }));
        }
        let seen = (0..2)
            .map(|_| {
                rx.recv_timeout(HANG)
                    .expect("the other sources were never released")
            })
            .collect();
        let panicked = threads
            .into_iter()
            .map(std::thread::JoinHandle::join)
            .filter(Result::is_err)
            .count();
        assert_eq!(panicked, usize::from(panics));
        seen
    }

    #[test]
    fn a_failed_freeze_releases_the_others_as_failed() {
        assert_eq!(others_see(false), vec![false, false]);
    }

    #[test]
    fn a_panicking_freeze_releases_the_others_as_failed() {
        assert_eq!(others_see(true), vec![false, false]);
    }

    #[test]
    fn an_echo_is_told_from_its_cause_by_type() {
        let echo: anyhow::Error = NotRead {
            source_name: "files".into(),
        }
        .into();
        let cause = anyhow!("source db: pg_dump failed because another source failed");
        assert!(echo.is::<NotRead>());
        assert!(!cause.is::<NotRead>(), "a cause that reads like an echo");
    }
}
