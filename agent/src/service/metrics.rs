//! Prometheus text exposition (format 0.0.4) of the jobs' persisted status.
//! Labels stay low-cardinality (coffer_job, source, target, status, mode): never
//! snapshot ids or paths.
//!
//! Written by hand rather than with the `prometheus-client` crate: that crate
//! writes only OpenMetrics text, whose counters (`# TYPE x counter` over samples
//! named `x_total`) a 0.0.4 parser such as `promtool check metrics` reads as
//! untyped families without help. The rendering is a few lines of escaping.

use crate::status::JobStatus;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The job's label. Not `job`: Prometheus sets `job` to the scrape job's name
/// and would rename ours to `exported_job`.
const JOB: &str = "coffer_job";

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}=\"{}\"",
                    v.replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n")
                )
            })
            .collect();
        let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
    }
}

/// Renders every metric for `jobs` (name, status) and the jobs running now.
pub fn render(jobs: &[(String, JobStatus)], running: &BTreeSet<String>) -> String {
    let mut o = Out(String::new());
    o.family("coffer_build_info", "gauge", "coffer version.");
    o.sample(
        "coffer_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    let each = |o: &mut Out,
                name: &str,
                kind: &str,
                help: &str,
                f: &dyn Fn(&mut Out, &str, &JobStatus)| {
        o.family(name, kind, help);
        for (job, s) in jobs {
            f(o, job, s);
        }
    };
    each(
        &mut o,
        "coffer_backup_last_success_timestamp_seconds",
        "gauge",
        "End of the last run committed on every target.",
        &|o, j, s| {
            if let Some(t) = s.last_success {
                o.sample(
                    "coffer_backup_last_success_timestamp_seconds",
                    &[(JOB, j)],
                    t,
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_backup_last_run_timestamp_seconds",
        "gauge",
        "End of the last run, whatever its outcome.",
        &|o, j, s| {
            if let Some(t) = s.last_run {
                o.sample("coffer_backup_last_run_timestamp_seconds", &[(JOB, j)], t);
            }
        },
    );
    each(
        &mut o,
        "coffer_backup_last_run_success",
        "gauge",
        "1 if the last run committed on every target.",
        &|o, j, s| {
            // A run stopped by a signal (an ordinary restart of the service) says
            // nothing about the job's health: no sample, so the failed-run alert
            // does not fire for it; the staleness alert still watches the job.
            if let Some(out) = s
                .last_outcome
                .as_ref()
                .filter(|o| o.as_str() != crate::run::status::RunStatus::Cancelled.as_str())
            {
                o.sample(
                    "coffer_backup_last_run_success",
                    &[(JOB, j)],
                    if out == crate::run::status::RunStatus::Success.as_str() {
                        1.0
                    } else {
                        0.0
                    },
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_backup_runs_total",
        "counter",
        "Runs by outcome (success, partial, failed, cancelled).",
        &|o, j, s| {
            for (status, n) in &s.runs {
                o.sample(
                    "coffer_backup_runs_total",
                    &[(JOB, j), ("status", status)],
                    *n as f64,
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_backup_skipped_total",
        "counter",
        "Scheduled runs skipped because the job was still running.",
        &|o, j, s| {
            o.sample("coffer_backup_skipped_total", &[(JOB, j)], s.skipped as f64);
        },
    );
    each(
        &mut o,
        "coffer_backup_duration_seconds",
        "gauge",
        "Duration of the last run.",
        &|o, j, s| {
            if s.last_run.is_some() {
                o.sample(
                    "coffer_backup_duration_seconds",
                    &[(JOB, j)],
                    s.last_duration_seconds,
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_backup_bytes_read_total",
        "counter",
        "Bytes read from each source.",
        &|o, j, s| {
            for (src, n) in &s.bytes_read {
                o.sample(
                    "coffer_backup_bytes_read_total",
                    &[(JOB, j), ("source", src)],
                    *n as f64,
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_backup_bytes_stored_total",
        "counter",
        "Bytes stored on each target.",
        &|o, j, s| {
            for (t, n) in &s.bytes_stored {
                o.sample(
                    "coffer_backup_bytes_stored_total",
                    &[(JOB, j), ("target", t)],
                    *n as f64,
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_snapshot_skew_seconds",
        "gauge",
        "Latest minus earliest consistency instant of the last run's sources.",
        &|o, j, s| {
            if s.last_run.is_some() {
                o.sample(
                    "coffer_snapshot_skew_seconds",
                    &[(JOB, j)],
                    s.last_skew_seconds,
                );
            }
        },
    );
    for (name, help, pick) in [
        (
            "coffer_snapshot_check_missing_files",
            "Rows of the job's [check] whose file the last snapshot does not hold (vanished while the backup ran).",
            (|c: &crate::format::CheckCounts| c.missing) as fn(&crate::format::CheckCounts) -> u64,
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
    ] {
        each(&mut o, name, "gauge", help, &|o, j, s| {
            if let Some(c) = &s.last_check {
                o.sample(name, &[(JOB, j)], pick(c) as f64);
            }
        });
    }
    each(
        &mut o,
        "coffer_snapshot_window_seconds",
        "gauge",
        "Span of the last run's snapshot: from the earliest source instant to the latest moment a source's state could still change (instant plus its read time, 0 for sources fixed at their instant).",
        &|o, j, s| {
            if s.last_run.is_some() {
                o.sample(
                    "coffer_snapshot_window_seconds",
                    &[(JOB, j)],
                    s.last_window_seconds,
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_snapshots",
        "gauge",
        "Committed snapshots per target after the last retention.",
        &|o, j, s| {
            for (t, n) in &s.snapshots {
                o.sample("coffer_snapshots", &[(JOB, j), ("target", t)], *n as f64);
            }
        },
    );
    each(
        &mut o,
        "coffer_repository_dead_bytes",
        "gauge",
        "Stored bytes of packs (format 2) no kept snapshot uses, per target, after the last retention: an estimate that repack_unused and garbage collection bring down.",
        &|o, j, s| {
            for (t, n) in &s.dead_bytes {
                o.sample(
                    "coffer_repository_dead_bytes",
                    &[(JOB, j), ("target", t)],
                    *n as f64,
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_verify_last_success_timestamp_seconds",
        "gauge",
        "End of the last successful verify, by mode: deep (decrypted, every file checked against the manifest) or stored (stored bytes against snapshot.json only); 0 when the job was never verified in that mode.",
        &|o, j, s| {
            // Every job has both modes, 0 for never: an absent series would keep
            // the stale-verify alert silent for a job that was never verified.
            for (mode, t) in [
                ("deep", s.last_deep_verify_success),
                ("stored", s.last_stored_verify_success),
            ] {
                o.sample(
                    "coffer_verify_last_success_timestamp_seconds",
                    &[(JOB, j), ("mode", mode)],
                    t.unwrap_or(0.0),
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_verify_last_run_success",
        "gauge",
        "1 if the last verify found every snapshot intact, 0 if it found damage or a snapshot it could not read, labelled by the mode it ran in; absent before the first verify.",
        &|o, j, s| {
            if let (Some(ok), Some(mode)) = (s.last_verify_ok, &s.last_verify_mode) {
                o.sample(
                    "coffer_verify_last_run_success",
                    &[(JOB, j), ("mode", mode)],
                    if ok { 1.0 } else { 0.0 },
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_backup_first_success_timestamp_seconds",
        "gauge",
        "End of the job's first run committed on every target (for a status kept from before this metric, the earliest time coffer still knows of); from then on there is something to verify.",
        &|o, j, s| {
            if let Some(t) = s.first_success_known() {
                o.sample(
                    "coffer_backup_first_success_timestamp_seconds",
                    &[(JOB, j)],
                    t,
                );
            }
        },
    );
    each(
        &mut o,
        "coffer_job_running",
        "gauge",
        "1 while the job runs.",
        &|o, j, _| {
            o.sample(
                "coffer_job_running",
                &[(JOB, j)],
                if running.contains(j) { 1.0 } else { 0.0 },
            );
        },
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored-bytes verify is exported as such and never as a deep one.
    #[test]
    fn verify_successes_are_exported_by_mode() {
        let mut st = JobStatus {
            last_stored_verify_success: Some(100.0),
            ..JobStatus::default()
        };
        let stored = render(&[("app".to_string(), st.clone())], &BTreeSet::new());
        assert!(
            stored.contains(
                "coffer_verify_last_success_timestamp_seconds{coffer_job=\"app\",mode=\"stored\"} 100\n"
            ),
            "{stored}"
        );
        assert!(
            stored.contains(
                "coffer_verify_last_success_timestamp_seconds{coffer_job=\"app\",mode=\"deep\"} 0\n"
            ),
            "a stored verify is no deep one: {stored}"
        );
        st.last_deep_verify_success = Some(50.0);
        let both = render(&[("app".to_string(), st)], &BTreeSet::new());
        assert!(
            both.contains(
                "coffer_verify_last_success_timestamp_seconds{coffer_job=\"app\",mode=\"deep\"} 50\n"
            ),
            "{both}"
        );
    }

    /// A job never verified still has its verify series, at 0, so that an alert
    /// on their age can fire; the outcome appears with the first verify, in the
    /// mode it ran.
    #[test]
    fn a_never_verified_job_exports_zero_and_no_outcome() {
        let never = render(
            &[("new".to_string(), JobStatus::default())],
            &BTreeSet::new(),
        );
        for mode in ["deep", "stored"] {
            let line = format!(
                "coffer_verify_last_success_timestamp_seconds{{coffer_job=\"new\",mode=\"{mode}\"}} 0"
            );
            assert!(never.lines().any(|l| l == line), "{line} not in\n{never}");
        }
        assert!(
            !never.contains("coffer_verify_last_run_success{"),
            "{never}"
        );
        assert!(
            !never.contains("coffer_backup_first_success_timestamp_seconds{"),
            "{never}"
        );
        let failed = JobStatus {
            last_verify: Some(10.0),
            last_verify_mode: Some("stored".into()),
            last_verify_ok: Some(false),
            ..JobStatus::default()
        };
        let text = render(&[("app".to_string(), failed)], &BTreeSet::new());
        assert!(
            text.lines().any(
                |l| l == "coffer_verify_last_run_success{coffer_job=\"app\",mode=\"stored\"} 0"
            ),
            "{text}"
        );
    }

    /// A status file from before `first_success` counts from the earliest time it
    /// holds, never from nothing (which would hide the job from the alert) nor
    /// from 0 (which would fire it at once).
    #[test]
    fn the_first_success_of_an_older_status_is_the_earliest_known() {
        let older = JobStatus {
            last_success: Some(900.0),
            last_stored_verify_success: Some(500.0),
            ..JobStatus::default()
        };
        let text = render(&[("app".to_string(), older)], &BTreeSet::new());
        assert!(
            text.lines()
                .any(|l| l
                    == "coffer_backup_first_success_timestamp_seconds{coffer_job=\"app\"} 500"),
            "{text}"
        );
    }

    /// No series carries Prometheus's own `job` label: a scrape would rename it.
    #[test]
    fn every_job_series_is_labelled_coffer_job() {
        let status = JobStatus {
            last_run: Some(2.0),
            last_success: Some(2.0),
            first_success: Some(1.0),
            last_outcome: Some("success".into()),
            runs: [("success".to_string(), 2)].into(),
            bytes_read: [("data".to_string(), 10)].into(),
            bytes_stored: [("local".to_string(), 5)].into(),
            snapshots: [("local".to_string(), 2)].into(),
            dead_bytes: [("local".to_string(), 0)].into(),
            last_verify_mode: Some("deep".into()),
            last_verify_ok: Some(true),
            last_deep_verify_success: Some(3.0),
            ..JobStatus::default()
        };
        let text = render(&[("app".to_string(), status)], &["app".to_string()].into());
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(samples.len() >= 15, "{text}");
        for l in samples {
            assert!(
                !l.contains("{job=") && !l.contains(",job="),
                "a job label: {l}"
            );
            assert!(
                l.starts_with("coffer_build_info{") || l.contains("coffer_job=\"app\""),
                "{l}"
            );
        }
    }

    #[test]
    fn the_backup_time_check_is_exported_only_once_it_ran() {
        let mut st = JobStatus::default();
        let none = render(&[("app".to_string(), st.clone())], &BTreeSet::new());
        assert!(
            !none.contains("coffer_snapshot_check_missing_files{"),
            "{none}"
        );
        st.last_check = Some(crate::format::CheckCounts {
            referenced: 10,
            captured: 11,
            missing: 2,
            wrong_size: 1,
            orphans: 3,
        });
        let text = render(&[("app".to_string(), st)], &BTreeSet::new());
        for line in [
            "coffer_snapshot_check_missing_files{coffer_job=\"app\"} 2",
            "coffer_snapshot_check_wrong_size_files{coffer_job=\"app\"} 1",
            "coffer_snapshot_check_orphan_files{coffer_job=\"app\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn window_and_skew_are_exported_beside_each_other() {
        let status = JobStatus {
            last_run: Some(1.0),
            last_skew_seconds: 0.002,
            last_window_seconds: 1.75,
            ..JobStatus::default()
        };
        let text = render(&[("app".to_string(), status)], &BTreeSet::new());
        assert!(
            text.contains("# TYPE coffer_snapshot_window_seconds gauge"),
            "{text}"
        );
        assert!(
            text.contains("coffer_snapshot_window_seconds{coffer_job=\"app\"} 1.75\n"),
            "{text}"
        );
        assert!(
            text.contains("coffer_snapshot_skew_seconds{coffer_job=\"app\"} 0.002\n"),
            "{text}"
        );
        // A job that never ran has neither.
        let never = render(
            &[("new".to_string(), JobStatus::default())],
            &BTreeSet::new(),
        );
        assert!(
            !never.contains("coffer_snapshot_window_seconds{"),
            "{never}"
        );
    }

    #[test]
    fn a_cancelled_run_is_neither_success_nor_failure() {
        let with = |outcome: &str| {
            let st = JobStatus {
                last_outcome: Some(outcome.to_string()),
                ..JobStatus::default()
            };
            render(&[("app".to_string(), st)], &BTreeSet::new())
        };
        assert!(with("failed").contains("coffer_backup_last_run_success{coffer_job=\"app\"} 0\n"));
        assert!(with("success").contains("coffer_backup_last_run_success{coffer_job=\"app\"} 1\n"));
        assert!(
            !with("cancelled").contains("coffer_backup_last_run_success{"),
            "a restart would page someone"
        );
    }
}
