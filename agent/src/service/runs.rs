//! Starting a job's run from the service: never two runs of one job at once (a
//! run that comes due while the last one runs is skipped and counted; the job
//! lock also keeps out a `coffer backup` started by hand). The run itself is
//! blocking work and goes to a blocking thread; its outcome is logged and the
//! status the metrics show is refreshed when it ends.

use super::state::Shared;
use crate::run::{RunStatus, run_job};
use std::sync::Arc;
use tracing::{error, info, warn};

/// Starts a run unless the job is already running; returns whether it started.
pub(super) fn trigger(shared: &Arc<Shared>, job: &str, why: &str) -> bool {
    start(shared, job, why, 0)
}

/// `attempt` counts the retries before this run (0 for the first).
fn start(shared: &Arc<Shared>, job: &str, why: &str, attempt: u32) -> bool {
    if crate::cancel::requested() {
        return false;
    }
    if !shared.start_running(job) {
        warn!(
            job,
            "skipped a {why} run: the previous one is still running"
        );
        let (s, name) = (shared.clone(), job.to_string());
        shared
            .rt
            .spawn(async move { s.update_status(&name, |st| st.skipped += 1).await });
        return false;
    }
    shared.notify_status();
    info!(job, "starting a {why} run");
    let (s, name) = (shared.clone(), job.to_string());
    let blocking = shared.rt.spawn_blocking(move || {
        let cfg = s.config();
        match cfg.jobs.get(&name) {
            Some(j) => run_job(&s.rt, &cfg, j, &crate::report::Logged),
            None => Err(anyhow::anyhow!("job {name} is no longer configured")),
        }
    });
    let (s, name) = (shared.clone(), job.to_string());
    shared.rt.spawn(async move {
        let mut retry = false;
        match blocking.await {
            Ok(Ok(run)) if run.status == RunStatus::Success && run.hook_errors.is_empty() => {
                if let Some(c) = run.check.as_ref().filter(|c| !c.consistent()) {
                    warn!(
                        job = name,
                        snapshot = run.snapshot,
                        missing = c.missing.len(),
                        wrong_size = c.size.len(),
                        orphans = c.orphans.len(),
                        "the snapshot's database references files it does not hold"
                    );
                }
                for n in &run.notes {
                    info!(job = name, "{n}");
                }
                info!(
                    job = name,
                    snapshot = run.snapshot,
                    duration = run.duration_seconds,
                    "run succeeded"
                );
            }
            Ok(Ok(run)) => {
                error!(
                    job = name,
                    status = run.status.as_str(),
                    error = run.error.as_deref().unwrap_or(""),
                    hooks = run.hook_errors.join("; "),
                    "run did not succeed"
                );
                retry = run.status == RunStatus::Failed && run.retryable;
            }
            // The lock was held (a `coffer backup` by hand) or the run could not start.
            // Refused by the config (an identity that is none of the recipients):
            // recorded as a failed run already, and no retry can help.
            Ok(Err(e)) if crate::exit::code_for(&e) == crate::exit::USAGE => {
                error!(job = name, "run refused: {e:#}");
            }
            Ok(Err(e)) => {
                warn!(job = name, "run not started: {e:#}");
                s.update_status(&name, |st| st.skipped += 1).await;
            }
            Err(e) => error!(job = name, "run panicked: {e}"),
        }
        s.stop_running(&name);
        s.notify_status();
        s.refresh_statuses().await;
        if retry {
            retry_later(&s, &name, attempt);
        }
    });
    true
}

/// Runs a job again after a failure a later run could get past (a database or
/// target that was down), `retry_wait` later, at most `retries` times in a row.
/// A partial run is not retried: its snapshot is on some targets already.
fn retry_later(shared: &Arc<Shared>, job: &str, attempt: u32) {
    let cfg = shared.config();
    let Some(j) = cfg.jobs.get(job) else { return };
    if attempt >= j.retries || crate::cancel::requested() {
        return;
    }
    let wait = j.retry_wait;
    warn!(
        job,
        "the failure may pass: running the job again in {}s (retry {} of {})",
        wait.as_secs(),
        attempt + 1,
        j.retries
    );
    let (s, name) = (shared.clone(), job.to_string());
    shared.rt.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                start(&s, &name, "retry", attempt + 1);
            }
            _ = crate::cancel::wait() => {}
        }
    });
}
