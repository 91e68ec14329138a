//! The metrics' tests (a sibling file: with them `metrics.rs` would pass 400
//! lines): every series by its exact exposition line, label escaping, and what a
//! status from an older or a newer coffer exports.

use super::*;
use crate::status::{Outcome, RecordedVerifyMode};

fn render(jobs: &[(String, JobStatus)], running: &BTreeSet<String>) -> String {
    super::render(jobs, running).expect("every family is valid")
}

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
        last_verify_mode: Some(VerifyMode::Stored.into()),
        last_verify_ok: Some(false),
        ..JobStatus::default()
    };
    let text = render(&[("app".to_string(), failed)], &BTreeSet::new());
    assert!(
        text.lines()
            .any(|l| l == "coffer_verify_last_run_success{coffer_job=\"app\",mode=\"stored\"} 0"),
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
            .any(|l| l == "coffer_backup_first_success_timestamp_seconds{coffer_job=\"app\"} 500"),
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
        last_outcome: Some(RunStatus::Success.into()),
        runs: [(RunStatus::Success.into(), 2)].into(),
        bytes_read: [("data".to_string(), 10)].into(),
        bytes_stored: [("local".to_string(), 5)].into(),
        snapshots: [("local".to_string(), 2)].into(),
        dead_bytes: [("local".to_string(), 0)].into(),
        last_verify_mode: Some(VerifyMode::Deep.into()),
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

/// Label values come from the config (job, source and target names): quotes,
/// backslashes and newlines in them are escaped, never break a line.
#[test]
fn label_values_are_escaped() {
    let status = JobStatus {
        bytes_read: [("a\\b\n\"c\"".to_string(), 1)].into(),
        ..JobStatus::default()
    };
    let text = render(&[("app".to_string(), status)], &BTreeSet::new());
    let line = "coffer_backup_bytes_read_total{coffer_job=\"app\",source=\"a\\\\b\\n\\\"c\\\"\"} 1";
    assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
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
        completed: 4,
    });
    let text = render(&[("app".to_string(), st)], &BTreeSet::new());
    for line in [
        "coffer_snapshot_check_missing_files{coffer_job=\"app\"} 2",
        "coffer_snapshot_check_wrong_size_files{coffer_job=\"app\"} 1",
        "coffer_snapshot_check_orphan_files{coffer_job=\"app\"} 3",
        "coffer_snapshot_check_completed_files{coffer_job=\"app\"} 4",
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
    let with = |outcome: Outcome| {
        let st = JobStatus {
            last_outcome: Some(outcome),
            ..JobStatus::default()
        };
        render(&[("app".to_string(), st)], &BTreeSet::new())
    };
    let failed = "coffer_backup_last_run_success{coffer_job=\"app\"} 0\n";
    assert!(with(RunStatus::Failed.into()).contains(failed));
    assert!(with(RunStatus::Partial.into()).contains(failed));
    assert!(
        with(RunStatus::Success.into())
            .contains("coffer_backup_last_run_success{coffer_job=\"app\"} 1\n")
    );
    assert!(
        !with(RunStatus::Cancelled.into()).contains("coffer_backup_last_run_success{"),
        "a restart would page someone"
    );
    assert!(
        !render(
            &[("app".to_string(), JobStatus::default())],
            &BTreeSet::new()
        )
        .contains("coffer_backup_last_run_success{"),
        "never ran"
    );
}

/// An outcome or verify mode only a newer coffer knows (read from a status file
/// it wrote) is counted under its own word, and the last run counts as no
/// success, as before the words were types.
#[test]
fn words_from_a_newer_coffer_are_exported_as_read() {
    let st = JobStatus {
        last_outcome: Some(Outcome::from_word("deferred")),
        runs: [
            (Outcome::from_word("deferred"), 2),
            (RunStatus::Success.into(), 1),
        ]
        .into(),
        last_verify_ok: Some(true),
        last_verify_mode: Some(RecordedVerifyMode::from_word("sampled")),
        ..JobStatus::default()
    };
    let text = render(&[("app".to_string(), st)], &BTreeSet::new());
    for line in [
        "coffer_backup_last_run_success{coffer_job=\"app\"} 0",
        "coffer_backup_runs_total{coffer_job=\"app\",status=\"deferred\"} 2",
        "coffer_backup_runs_total{coffer_job=\"app\",status=\"success\"} 1",
        "coffer_verify_last_run_success{coffer_job=\"app\",mode=\"sampled\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}
