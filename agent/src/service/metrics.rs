//! Prometheus text exposition (format 0.0.4) of the jobs' persisted status.
//! Labels stay low-cardinality (coffer_job, source, target, status, mode): never
//! snapshot ids or paths.
//!
//! Rendered with the `prometheus` crate (tikv/rust-prometheus): each scrape fills
//! a fresh `Registry` from the persisted statuses, so the values are those of the
//! status files, never counts kept in this process. Its `TextEncoder` writes the
//! 0.0.4 text format that `promtool check metrics` and every Prometheus read. Not
//! `prometheus-client`: that crate writes only OpenMetrics text, whose counters
//! (`# TYPE x counter` over samples named `x_total`) a 0.0.4 parser such as
//! `promtool check metrics` reads as untyped families without help.

use crate::format::CheckCounts;
use crate::run::RunStatus;
use crate::status::JobStatus;
use crate::verify::VerifyMode;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::collections::BTreeSet;

/// The job's label. Not `job`: Prometheus sets `job` to the scrape job's name
/// and would rename ours to `exported_job`.
const JOB: &str = "coffer_job";

/// A fresh registry: each family is registered once, then filled for every job.
struct Families(Registry);

impl Families {
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

/// Renders every metric for `jobs` (name, status) and the jobs running now.
/// An error means a family the code declares is invalid (a name, a duplicate),
/// never anything in the statuses: label values are escaped, not checked.
pub fn render(
    jobs: &[(String, JobStatus)],
    running: &BTreeSet<String>,
) -> prometheus::Result<String> {
    let f = Families(Registry::new());
    f.gauge("coffer_build_info", "coffer version.", &["version"])?
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1.0);
    let last_success = f.gauge(
        "coffer_backup_last_success_timestamp_seconds",
        "End of the last run committed on every target.",
        &[JOB],
    )?;
    let last_run = f.gauge(
        "coffer_backup_last_run_timestamp_seconds",
        "End of the last run, whatever its outcome.",
        &[JOB],
    )?;
    let last_run_success = f.gauge(
        "coffer_backup_last_run_success",
        "1 if the last run committed on every target.",
        &[JOB],
    )?;
    let runs = f.counter(
        "coffer_backup_runs_total",
        "Runs by outcome (success, partial, failed, cancelled).",
        &[JOB, "status"],
    )?;
    let skipped = f.counter(
        "coffer_backup_skipped_total",
        "Scheduled runs skipped because the job was still running.",
        &[JOB],
    )?;
    let duration = f.gauge(
        "coffer_backup_duration_seconds",
        "Duration of the last run.",
        &[JOB],
    )?;
    let bytes_read = f.counter(
        "coffer_backup_bytes_read_total",
        "Bytes read from each source.",
        &[JOB, "source"],
    )?;
    let bytes_stored = f.counter(
        "coffer_backup_bytes_stored_total",
        "Bytes stored on each target.",
        &[JOB, "target"],
    )?;
    let skew = f.gauge(
        "coffer_snapshot_skew_seconds",
        "Latest minus earliest consistency instant of the last run's sources.",
        &[JOB],
    )?;
    let mut checks = Vec::new();
    for (name, help, pick) in [
        (
            "coffer_snapshot_check_missing_files",
            "Rows of the job's [check] whose file the last snapshot does not hold (vanished while the backup ran).",
            (|c: &CheckCounts| c.missing) as fn(&CheckCounts) -> u64,
        ),
        (
            "coffer_snapshot_check_wrong_size_files",
            "Rows of the job's [check] whose file the last snapshot holds with another size.",
            |c| c.wrong_size,
        ),
        (
            "coffer_snapshot_check_orphan_files",
            "Files in the last snapshot that no row of the job's [check] references.",
            |c| c.orphans,
        ),
        (
            "coffer_snapshot_check_completed_files",
            "Files of the job's [check] the last run's filesystem snapshot lacked, taken from the snapshot before the database's or from the live tree.",
            |c| c.completed,
        ),
    ] {
        checks.push((f.gauge(name, help, &[JOB])?, pick));
    }
    let window = f.gauge(
        "coffer_snapshot_window_seconds",
        "Span of the last run's snapshot: from the earliest source instant to the latest moment a source's state could still change (instant plus its read time, 0 for sources fixed at their instant).",
        &[JOB],
    )?;
    let snapshots = f.gauge(
        "coffer_snapshots",
        "Committed snapshots per target after the last retention.",
        &[JOB, "target"],
    )?;
    let dead_bytes = f.gauge(
        "coffer_repository_dead_bytes",
        "Stored bytes of packs (format 2) no kept snapshot uses, per target, after the last retention: an estimate that repack_unused and garbage collection bring down.",
        &[JOB, "target"],
    )?;
    let verify_success = f.gauge(
        "coffer_verify_last_success_timestamp_seconds",
        "End of the last successful verify, by mode: deep (decrypted, every file checked against the manifest) or stored (stored bytes against snapshot.json only); 0 when the job was never verified in that mode.",
        &[JOB, "mode"],
    )?;
    let verify_ok = f.gauge(
        "coffer_verify_last_run_success",
        "1 if the last verify found every snapshot intact, 0 if it found damage or a snapshot it could not read, labelled by the mode it ran in; absent before the first verify.",
        &[JOB, "mode"],
    )?;
    let first_success = f.gauge(
        "coffer_backup_first_success_timestamp_seconds",
        "End of the job's first run committed on every target (for a status kept from before this metric, the earliest time coffer still knows of); from then on there is something to verify.",
        &[JOB],
    )?;
    let job_running = f.gauge("coffer_job_running", "1 while the job runs.", &[JOB])?;

    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    for (j, s) in jobs {
        let j = j.as_str();
        if let Some(t) = s.last_success {
            last_success.with_label_values(&[j]).set(t);
        }
        if let Some(t) = s.last_run {
            last_run.with_label_values(&[j]).set(t);
            duration
                .with_label_values(&[j])
                .set(s.last_duration_seconds);
            skew.with_label_values(&[j]).set(s.last_skew_seconds);
            window.with_label_values(&[j]).set(s.last_window_seconds);
        }
        // A run stopped by a signal (an ordinary restart of the service) says
        // nothing about the job's health: no sample, so the failed-run alert does
        // not fire for it; the staleness alert still watches the job. An outcome
        // only a newer coffer knows is no success as far as this one can tell.
        let succeeded = match s.last_outcome.as_ref().map(|o| o.known()) {
            None | Some(Some(RunStatus::Cancelled)) => None,
            Some(Some(RunStatus::Success)) => Some(true),
            Some(Some(RunStatus::Partial | RunStatus::Failed) | None) => Some(false),
        };
        if let Some(ok) = succeeded {
            last_run_success.with_label_values(&[j]).set(flag(ok));
        }
        for (status, n) in &s.runs {
            runs.with_label_values(&[j, status.as_str()]).inc_by(*n);
        }
        skipped.with_label_values(&[j]).inc_by(s.skipped);
        for (src, n) in &s.bytes_read {
            bytes_read.with_label_values(&[j, src]).inc_by(*n);
        }
        for (t, n) in &s.bytes_stored {
            bytes_stored.with_label_values(&[j, t]).inc_by(*n);
        }
        if let Some(c) = &s.last_check {
            for (gauge, pick) in &checks {
                gauge.with_label_values(&[j]).set(pick(c) as f64);
            }
        }
        for (t, n) in &s.snapshots {
            snapshots.with_label_values(&[j, t]).set(*n as f64);
        }
        for (t, n) in &s.dead_bytes {
            dead_bytes.with_label_values(&[j, t]).set(*n as f64);
        }
        // Every job has both modes, 0 for never: an absent series would keep the
        // stale-verify alert silent for a job that was never verified.
        for (mode, t) in [
            (VerifyMode::Deep, s.last_deep_verify_success),
            (VerifyMode::Stored, s.last_stored_verify_success),
        ] {
            verify_success
                .with_label_values(&[j, mode.as_str()])
                .set(t.unwrap_or(0.0));
        }
        if let (Some(ok), Some(mode)) = (s.last_verify_ok, &s.last_verify_mode) {
            verify_ok
                .with_label_values(&[j, mode.as_str()])
                .set(flag(ok));
        }
        if let Some(t) = s.first_success_known() {
            first_success.with_label_values(&[j]).set(t);
        }
        job_running
            .with_label_values(&[j])
            .set(flag(running.contains(j)));
    }
    TextEncoder::new().encode_to_string(&f.0.gather())
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
