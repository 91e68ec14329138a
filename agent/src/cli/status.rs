//! `coffer status`: what the status page shows of each job, at the prompt: the
//! last run (when, outcome, duration, error), the next scheduled run, the last
//! verify and deep verify, snapshots per target and the last backup-time check.
//! It reads only the jobs' status files (`crate::status`, which the agent and the
//! CLI's runs write) and the config: no target, no key, no lock. It never creates
//! anything, not even the state directory: a job without a status file "never
//! ran" here. Times and durations are `crate::when`'s, as on the page.

use crate::cli::{StatusArgs, print_json};
use crate::format::CheckCounts;
use crate::run::RunStatus;
use crate::status::{JobStatus, Outcome, RecordedVerifyMode};
use crate::verify::VerifyMode;
use crate::when::{in_zone, instant, next_run, plain_duration, relative, time_utc};
use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use coffer_config::{Config, Job};
use serde::Serialize;
use std::collections::BTreeMap;

/// One job in `--json` (one array of these): stable names, times in RFC 3339
/// UTC, `null` for what never happened.
#[derive(Serialize)]
struct JobReport {
    job: String,
    /// `null` when the job never ran on this host (no status file).
    last_run: Option<LastRun>,
    last_success: Option<String>,
    schedule: Option<String>,
    /// From the cron alone (the agent adds up to `jitter`).
    next_run: Option<String>,
    last_verify: Option<LastVerify>,
    last_deep_verify_success: Option<String>,
    last_stored_verify_success: Option<String>,
    verify_schedule: Option<String>,
    next_verify: Option<String>,
    /// Committed snapshots per target after the last run or prune.
    snapshots: BTreeMap<String, u64>,
    /// The job's `[check]` at backup time, on the last committed snapshot.
    last_check: Option<CheckCounts>,
    /// Runs by outcome since the state directory was made.
    runs: BTreeMap<Outcome, u64>,
}

#[derive(Serialize)]
struct LastRun {
    ended_at: Option<String>,
    /// `success`, `partial`, `failed` or `cancelled` (or a newer coffer's word).
    outcome: Option<Outcome>,
    duration_seconds: f64,
    window_seconds: f64,
    /// Bytes the run stored on the targets that committed it; `null` in a status
    /// file from before the run history.
    stored_bytes: Option<u64>,
    /// The id the run wrote: committed when the outcome is `success` or
    /// `partial`, never committed otherwise.
    snapshot: Option<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct LastVerify {
    at: Option<String>,
    /// `deep` or `stored` (or a newer coffer's word).
    mode: Option<RecordedVerifyMode>,
    ok: Option<bool>,
}

pub fn run(cfg: &Config, args: &StatusArgs) -> Result<u8> {
    let jobs = crate::cli::jobs_for(cfg, args.job.as_deref(), None)?;
    let now = Utc::now();
    let mut code = crate::exit::OK;
    let mut reports = Vec::new();
    for job in jobs {
        let status = match crate::status::read(&cfg.agent.state_dir, &job.name) {
            Ok(s) => s,
            Err(e) => {
                // Shown as never run, and said: the file is damaged, not absent.
                eprintln!(
                    "error: job {}: {e:#}; shown as never run (the next run writes it anew)",
                    job.name
                );
                code = crate::exit::FAILED;
                None
            }
        };
        reports.push(report(cfg, job, status.as_ref(), now));
    }
    if args.json {
        print_json(&reports)?;
    } else {
        print_text(cfg, &reports, now);
    }
    Ok(code)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn at(unix: Option<f64>) -> Option<String> {
    unix.and_then(instant).map(rfc3339)
}

fn report(cfg: &Config, job: &Job, st: Option<&JobStatus>, now: DateTime<Utc>) -> JobReport {
    let tz = cfg.agent.timezone;
    let none = JobStatus::default();
    let st = st.unwrap_or(&none);
    let cron = |s: &Option<coffer_config::Schedule>| s.as_ref().map(|s| s.as_str().to_string());
    let next = |s: &Option<coffer_config::Schedule>| {
        s.as_ref().and_then(|s| next_run(s, tz, now)).map(rfc3339)
    };
    JobReport {
        job: job.name.clone(),
        last_run: st.last_run.map(|end| LastRun {
            ended_at: at(Some(end)),
            outcome: st.last_outcome.clone(),
            duration_seconds: st.last_duration_seconds,
            window_seconds: st.last_window_seconds,
            stored_bytes: st.last_record().map(|r| r.bytes_stored),
            snapshot: st.last_snapshot.clone(),
            error: st.last_error.clone(),
        }),
        last_success: at(st.last_success),
        schedule: cron(&job.schedule),
        next_run: next(&job.schedule),
        last_verify: st.last_verify.map(|t| LastVerify {
            at: at(Some(t)),
            mode: st.last_verify_mode.clone(),
            ok: st.last_verify_ok,
        }),
        last_deep_verify_success: at(st.last_deep_verify_success),
        last_stored_verify_success: at(st.last_stored_verify_success),
        verify_schedule: cron(&job.verify_schedule),
        next_verify: next(&job.verify_schedule),
        snapshots: st.snapshots.clone(),
        last_check: st.last_check.clone(),
        runs: st.runs.clone(),
    }
}

/// A time as the page shows it, in words: `2026-05-01 03:00:12 UTC (3 h 2 min ago)`.
fn when(rfc: Option<&str>, now: DateTime<Utc>) -> String {
    match rfc.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => {
            let t = t.with_timezone(&Utc);
            format!("{} ({})", time_utc(t), relative(t, now))
        }
        None => "never".to_string(),
    }
}

/// One block per job, a label column wide enough for the longest label; what
/// comes from a status file is escaped (anyone who can write it could put
/// terminal controls in an error).
fn print_text(cfg: &Config, reports: &[JobReport], now: DateTime<Utc>) {
    let esc = |s: &str| coffer_plugins::escape_controls(s).into_owned();
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let mut rows: Vec<(&str, String)> = Vec::new();
        let headline = match &r.last_run {
            None => "never run".to_string(),
            Some(l) => esc(outcome_text(l)),
        };
        println!("job {}: {headline}", r.job);
        match &r.last_run {
            None => rows.push(("last run", "never run".to_string())),
            Some(l) => {
                let mut text = format!(
                    "{}: {} in {}",
                    when(l.ended_at.as_deref(), now),
                    esc(outcome_text(l)),
                    plain_duration(l.duration_seconds)
                );
                if let Some(b) = l.stored_bytes {
                    text.push_str(&format!(", stored {}", crate::units::bytes(b)));
                }
                if l.window_seconds > 0.0 {
                    text.push_str(&format!(", window {}", plain_duration(l.window_seconds)));
                }
                rows.push(("last run", text));
                // A failed or cancelled run names the id it did not commit.
                if let Some(id) = &l.snapshot
                    && l.outcome
                        .as_ref()
                        .and_then(Outcome::known)
                        .is_some_and(RunStatus::committed)
                {
                    rows.push(("snapshot", esc(id)));
                }
                if let Some(e) = &l.error {
                    rows.push(("error", esc(e)));
                }
                rows.push(("last success", when(r.last_success.as_deref(), now)));
            }
        }
        let next = if cfg.jobs.get(&r.job).is_some_and(Job::restore_only) {
            "never: the job has no sources (it restores, lists and verifies only)".to_string()
        } else {
            next_text(cfg, r.schedule.as_deref(), r.next_run.as_deref(), now)
        };
        rows.push(("next run", next));
        rows.push(("last verify", verify_text(r, now)));
        rows.push((
            "deep verify",
            match &r.last_deep_verify_success {
                Some(t) => format!("last success {}", when(Some(t), now)),
                None => "never succeeded".to_string(),
            },
        ));
        if r.verify_schedule.is_some() {
            rows.push((
                "next verify",
                next_text(
                    cfg,
                    r.verify_schedule.as_deref(),
                    r.next_verify.as_deref(),
                    now,
                ),
            ));
        }
        rows.push(("snapshots", snapshots_text(cfg, r)));
        if let Some(c) = &r.last_check {
            rows.push((
                "check",
                format!(
                    "{} referenced, {} captured, {} missing, {} wrong size, {} orphans",
                    c.referenced, c.captured, c.missing, c.wrong_size, c.orphans
                ),
            ));
        }
        if !r.runs.is_empty() {
            let runs: Vec<String> = r
                .runs
                .iter()
                .map(|(o, n)| format!("{n} {}", esc(o.as_str())))
                .collect();
            rows.push(("runs", runs.join(", ")));
        }
        let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, value) in rows {
            println!("  {label:<width$}  {value}");
        }
    }
}

/// The last run's outcome in words, as the file holds it.
fn outcome_text(l: &LastRun) -> &str {
    l.outcome
        .as_ref()
        .map_or("unknown outcome", Outcome::as_str)
}

fn next_text(
    cfg: &Config,
    schedule: Option<&str>,
    next: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let Some(schedule) = schedule else {
        return "not scheduled: runs by hand or through the API".to_string();
    };
    match next.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => {
            let t = t.with_timezone(&Utc);
            format!(
                "{} ({}), schedule \"{schedule}\"",
                in_zone(t, cfg.agent.timezone),
                relative(t, now)
            )
        }
        None => format!("never (schedule \"{schedule}\" has no such time)"),
    }
}

fn verify_text(r: &JobReport, now: DateTime<Utc>) -> String {
    let Some(v) = &r.last_verify else {
        return "never".to_string();
    };
    let mode = match v.mode.as_ref().and_then(RecordedVerifyMode::known) {
        Some(VerifyMode::Deep) => "deep",
        Some(VerifyMode::Stored) => "stored bytes only",
        None => "mode unknown",
    };
    let result = match v.ok {
        Some(true) => "ok",
        Some(false) => "FOUND PROBLEMS",
        None => "result unknown",
    };
    format!("{}: {mode}, {result}", when(v.at.as_deref(), now))
}

/// Every target of the job, with the count its last run or prune left (`?` for
/// one no run has counted yet), then any other the status file names.
fn snapshots_text(cfg: &Config, r: &JobReport) -> String {
    let job = cfg.jobs.get(&r.job);
    let mut parts: Vec<String> = job
        .map(|j| j.targets.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|t| match r.snapshots.get(t) {
            Some(n) => format!("{t} {n}"),
            None => format!("{t} ?"),
        })
        .collect();
    for (t, n) in &r.snapshots {
        if job.is_none_or(|j| !j.targets.contains(t)) {
            parts.push(format!(
                "{} {n} (no longer a target of the job)",
                coffer_plugins::escape_controls(t)
            ));
        }
    }
    if parts.is_empty() {
        "no targets".to_string()
    } else {
        parts.join(", ")
    }
}
