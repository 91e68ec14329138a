//! What a run tells the job's `notify` URLs, and when (see `crate::notify` for the
//! sending). The rules, also in docs/monitoring.md and the example config:
//!
//! - `start`: once the run holds the job lock, before the `before` hooks. It is
//!   sent in the background while the run goes on, and the end notification waits
//!   for it, so the monitor sees them in order and a slow monitor delays nothing.
//! - `success`: every target committed the snapshot and every hook succeeded
//!   (what `coffer backup` exits 0 or 3 for); the body is a short summary.
//! - `failure`: anything else that ran, with the reason in the body: a failed run,
//!   a failed hook, a run refused because the identity matches no recipient, and a
//!   *partial* run (some targets did not get the snapshot: a monitor must hear
//!   that a copy is missing, and these services know only up and down).
//! - A *cancelled* run (SIGTERM: `systemctl stop` or a restart) sends no end
//!   notification: it neither failed nor backed anything up. If the agent stays
//!   down, the monitor's own deadline raises the alarm, which is the point of a
//!   dead man's switch. A run that never started (the job's lock is held by
//!   another run) sends nothing either: that other run reports.
//! - `coffer backup --dry-run` sends nothing.

use super::{JobRun, RunStatus};
use crate::notify::{Kind, send};
use crate::units::bytes;
use coffer_config::Job;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The start notification on its way.
pub(super) struct Started(Option<JoinHandle<Result<(), String>>>);

pub(super) fn start(rt: &Handle, job: &Job) -> Started {
    let Some(url) = job.notify.start.clone() else {
        return Started(None);
    };
    let name = job.name.clone();
    let body = format!("coffer: job {name} started on {}", host());
    Started(Some(rt.spawn(async move {
        send(&name, Kind::Start, &url, body).await
    })))
}

/// Waits for the start notification, then sends the one the outcome calls for.
/// Failures are warnings in the log (`send` logs them), the same for the CLI and
/// the agent; the run's report stays about the backup.
pub(super) fn finish(rt: &Handle, job: &Job, started: Started, run: &JobRun, outcome: RunStatus) {
    if let Some(handle) = started.0 {
        let _ = rt.block_on(handle);
    }
    let (kind, url) = match outcome {
        RunStatus::Cancelled => return,
        RunStatus::Success if run.hook_errors.is_empty() => (Kind::Success, &job.notify.success),
        _ => (Kind::Failure, &job.notify.failure),
    };
    let Some(url) = url else { return };
    let body = match kind {
        Kind::Success => success_body(run),
        _ => failure_body(run, outcome),
    };
    let _ = rt.block_on(send(&job.name, kind, url, body));
}

/// A run refused before it started (it has no `JobRun` to show).
pub(super) fn refused(rt: &Handle, job: &Job, reason: &str) {
    if let Some(url) = &job.notify.failure {
        let body = format!("coffer: job {} on {} FAILED: {reason}", job.name, host());
        let _ = rt.block_on(send(&job.name, Kind::Failure, url, body));
    }
}

fn host() -> String {
    crate::host::name().unwrap_or_else(|| "this host".into())
}

fn success_body(run: &JobRun) -> String {
    let files: usize = run.sources.iter().map(|s| s.files).sum();
    let read: u64 = run.sources.iter().map(|s| s.bytes_read).sum();
    let stored: u64 = run.sources.iter().map(|s| s.stored_size).sum();
    let targets: Vec<&str> = run.targets.iter().map(|t| t.name.as_str()).collect();
    let mut body = format!(
        "coffer: job {} on {}: snapshot {} committed to {} in {:.1}s; {}, {} read, {} stored",
        run.job,
        host(),
        run.snapshot,
        targets.join(", "),
        run.duration_seconds,
        crate::units::count(files as u64, "file"),
        bytes(read),
        bytes(stored)
    );
    if let Some(c) = run.check.as_ref().filter(|c| !c.consistent()) {
        body.push_str(&format!(
            "\ndatabase check: {} referenced file(s) missing, {} of wrong size, {} orphan(s)",
            c.missing.len(),
            c.size.len(),
            c.orphans.len()
        ));
    }
    if !run.warnings.is_empty() {
        body.push_str(&format!("\n{} warning(s)", run.warnings.len()));
    }
    body
}

fn failure_body(run: &JobRun, outcome: RunStatus) -> String {
    let mut body = match outcome {
        RunStatus::Partial => format!(
            "coffer: job {} on {}: PARTIAL: snapshot {} is missing on some targets",
            run.job,
            host(),
            run.snapshot
        ),
        RunStatus::Success => format!(
            "coffer: job {} on {}: snapshot {} committed, but a hook failed",
            run.job,
            host(),
            run.snapshot
        ),
        _ => format!(
            "coffer: job {} on {}: FAILED, no snapshot written: {}",
            run.job,
            host(),
            run.error.as_deref().unwrap_or("unknown error")
        ),
    };
    for t in &run.targets {
        match &t.error {
            Some(e) => body.push_str(&format!("\ntarget {}: FAILED: {e}", t.name)),
            None if t.committed => body.push_str(&format!("\ntarget {}: committed", t.name)),
            None => {}
        }
    }
    for h in &run.hook_errors {
        body.push_str(&format!("\nhook: {h}"));
    }
    body
}
