//! The service's schedules: each job's backup (cron with optional seconds, in the
//! configured time zone, with jitter, and catch-up of a run missed while the
//! service was down) and its verify schedule. Schedules come parsed from the
//! config; a reload replaces every schedule task.

use super::runs::trigger;
use super::state::Shared;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// When `cron` fires next after `now` (or last before it, `forward` false), in the
/// configured zone (the host's by default).
pub(crate) fn occurrence(
    cron: &croner::Cron,
    tz: Option<chrono_tz::Tz>,
    now: DateTime<Utc>,
    forward: bool,
) -> Option<DateTime<Utc>> {
    fn at<Z: chrono::TimeZone>(
        cron: &croner::Cron,
        t: DateTime<Z>,
        forward: bool,
    ) -> Option<DateTime<Utc>> {
        let found = if forward {
            cron.find_next_occurrence(&t, false)
        } else {
            cron.find_previous_occurrence(&t, false)
        };
        found.ok().map(|t| t.with_timezone(&Utc))
    }
    match tz {
        Some(tz) => at(cron, now.with_timezone(&tz), forward),
        None => at(cron, now.with_timezone(&chrono::Local), forward),
    }
}

/// Sleeps until the next time `cron` fires (plus jitter); false if it never will.
async fn sleep_until_next(
    shared: &Shared,
    key: &str,
    cron: &croner::Cron,
    tz: Option<chrono_tz::Tz>,
    jitter: Duration,
) -> bool {
    let Some(mut next) = occurrence(cron, tz, Utc::now(), true) else {
        warn!(key, "the schedule never fires again");
        return false;
    };
    if !jitter.is_zero() {
        let extra = rand::random::<u64>() % (jitter.as_millis() as u64).max(1);
        next += chrono::Duration::milliseconds(extra as i64);
    }
    shared.set_next(key, next);
    tokio::time::sleep((next - Utc::now()).to_std().unwrap_or_default()).await;
    true
}

/// Periodic verify of the newest snapshot on every target: stored bytes only, or
/// deep when the configured identity file exists on this host.
async fn verify_loop(shared: Arc<Shared>, job: String) {
    let cfg = shared.config();
    let Some(j) = cfg.jobs.get(&job) else { return };
    let Some(schedule) = &j.verify_schedule else {
        return;
    };
    let key = format!("{job}/verify");
    while sleep_until_next(&shared, &key, schedule.cron(), cfg.agent.timezone, j.jitter).await {
        let (s, name) = (shared.clone(), job.clone());
        let outcome = shared
            .rt
            .spawn_blocking(move || {
                let cfg = s.config();
                let j = cfg
                    .jobs
                    .get(&name)
                    .ok_or_else(|| anyhow::anyhow!("job {name} is no longer configured"))?;
                let ids = crate::verify::identities_for(&cfg, None, false)?;
                crate::verify::verify_job(&s.rt, &cfg, j, None, "latest", ids.as_ref())
            })
            .await;
        if let Ok(Ok(crate::verify::Verified {
            index: Some(note), ..
        })) = &outcome
        {
            warn!(job, "{note}");
        }
        let outcome = outcome.map(|r| r.map(|v| v.verdicts));
        match outcome {
            Ok(Ok(v)) if v.iter().all(|v| v.ok) => info!(job, "verify ok ({} target(s))", v.len()),
            Ok(Ok(v)) => error!(
                job,
                "verify found damage: {}",
                v.iter()
                    .flat_map(|v| v.problems.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Ok(Err(e)) => error!(job, "verify could not run: {e:#}"),
            Err(e) => error!(job, "verify panicked: {e}"),
        }
        shared.refresh_statuses().await;
    }
}

async fn job_loop(shared: Arc<Shared>, job: String) {
    let cfg = shared.config();
    let Some(j) = cfg.jobs.get(&job) else { return };
    let Some(schedule) = &j.schedule else {
        return;
    };
    let (cron, tz) = (schedule.cron(), cfg.agent.timezone);
    if j.catch_up {
        let last_success = shared
            .statuses()
            .iter()
            .find(|(name, _)| *name == job)
            .and_then(|(_, st)| st.last_success)
            .unwrap_or(0.0);
        if let Some(prev) = occurrence(cron, tz, Utc::now(), false)
            && (prev.timestamp() as f64) > last_success
        {
            info!(job, "catching up: the run due at {prev} was missed");
            trigger(&shared, &job, "catch-up");
        }
    }
    while sleep_until_next(&shared, &job, cron, tz, j.jitter).await {
        trigger(&shared, &job, "scheduled");
    }
}

/// One task per backup schedule and per verify schedule of the current config.
pub(super) fn spawn_schedules(shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let cfg = shared.config();
    for j in cfg.jobs.values().filter(|j| j.schedule.is_none()) {
        info!(
            job = j.name,
            "no schedule: this job runs only when started by hand (coffer backup) or through POST /api/v1/jobs/{}/run",
            j.name
        );
    }
    let backups = cfg.jobs.values().filter(|j| j.schedule.is_some());
    let verifies = cfg.jobs.values().filter(|j| j.verify_schedule.is_some());
    backups
        .map(|j| shared.rt.spawn(job_loop(shared.clone(), j.name.clone())))
        .chain(verifies.map(|j| shared.rt.spawn(verify_loop(shared.clone(), j.name.clone()))))
        .collect()
}

/// What the agent schedules, for its start and reload lines: `backups of 1 job
/// (app), verifies of 1 job (app)`. Counting the schedule loops said "2 job(s)
/// scheduled" for one job with a backup and a verify schedule.
pub(super) fn summary(cfg: &coffer_config::Config) -> String {
    let of = |what: &str, names: Vec<&str>| {
        format!(
            "{what} of {} ({})",
            crate::units::count(names.len() as u64, "job"),
            names.join(", ")
        )
    };
    let backups: Vec<&str> = cfg
        .jobs
        .values()
        .filter(|j| j.schedule.is_some())
        .map(|j| j.name.as_str())
        .collect();
    let verifies: Vec<&str> = cfg
        .jobs
        .values()
        .filter(|j| j.verify_schedule.is_some())
        .map(|j| j.name.as_str())
        .collect();
    match (backups.is_empty(), verifies.is_empty()) {
        (true, true) => "nothing scheduled (jobs run only when started)".to_string(),
        (false, true) => format!("scheduled: {}", of("backups", backups)),
        (true, false) => format!("scheduled: {}", of("verifies", verifies)),
        (false, false) => format!(
            "scheduled: {}, {}",
            of("backups", backups),
            of("verifies", verifies)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config(jobs: &str) -> coffer_config::Config {
        let text = format!(
            "[encryption]\nidentity_file = \"id.txt\"\ncreate_identity_if_missing = true\n\
             [targets.local]\ntype = \"local\"\npath = \"backups\"\n{jobs}"
        );
        coffer_config::load_str(
            &text,
            std::path::Path::new("test.toml"),
            std::path::Path::new("/"),
        )
        .expect("a valid config")
    }

    fn job(name: &str, keys: &str) -> String {
        format!(
            "[jobs.{name}]\ntargets = [\"local\"]\n{keys}[[jobs.{name}.sources]]\nname = \"files\"\n\
             type = \"directory\"\npath = \"/srv\"\n"
        )
    }

    #[test]
    fn the_summary_counts_jobs_not_schedule_loops() {
        let both = "schedule = \"0 3 * * *\"\nverify_schedule = \"30 5 * * 0\"\n";
        assert_eq!(
            summary(&config(&job("app", both))),
            "scheduled: backups of 1 job (app), verifies of 1 job (app)"
        );
        assert_eq!(
            summary(&config(&format!(
                "{}{}",
                job("app", both),
                job("web", "schedule = \"0 4 * * *\"\n")
            ))),
            "scheduled: backups of 2 jobs (app, web), verifies of 1 job (app)"
        );
        assert_eq!(
            summary(&config(&job("app", ""))),
            "nothing scheduled (jobs run only when started)"
        );
    }

    fn cron(text: &str) -> croner::Cron {
        let s: coffer_config::Schedule = text.parse().expect("a cron expression");
        s.cron().clone()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("a valid instant")
    }

    #[test]
    fn next_and_last_occurrence_for_catch_up() {
        let c = cron("0 3 * * *");
        let now = utc(2026, 11, 29, 10, 0, 0);
        let utc_zone = Some(chrono_tz::UTC);
        assert_eq!(
            occurrence(&c, utc_zone, now, true),
            Some(utc(2026, 11, 30, 3, 0, 0))
        );
        assert_eq!(
            occurrence(&c, utc_zone, now, false),
            Some(utc(2026, 11, 29, 3, 0, 0)),
            "catch-up compares the last success with this"
        );
    }

    #[test]
    fn the_time_zone_decides_the_instant_in_winter_and_summer() {
        let c = cron("0 3 * * *");
        let berlin = Some(chrono_tz::Europe::Berlin);
        assert_eq!(
            occurrence(&c, berlin, utc(2026, 1, 10, 12, 0, 0), true),
            Some(utc(2026, 1, 11, 2, 0, 0))
        );
        assert_eq!(
            occurrence(&c, berlin, utc(2026, 7, 10, 12, 0, 0), true),
            Some(utc(2026, 7, 11, 1, 0, 0))
        );
    }

    #[test]
    fn a_seconds_field_is_honoured() {
        let c = cron("*/10 * * * * *");
        assert_eq!(
            occurrence(&c, Some(chrono_tz::UTC), utc(2026, 5, 1, 10, 0, 1), true),
            Some(utc(2026, 5, 1, 10, 0, 10))
        );
    }

    /// 02:30 does not exist in Berlin on the night clocks go forward: the
    /// schedule must still fire soon after, not stop or run in the past.
    #[test]
    fn a_missing_local_hour_does_not_stop_the_schedule() {
        let c = cron("30 2 * * *");
        let berlin = Some(chrono_tz::Europe::Berlin);
        let now = utc(2026, 3, 28, 23, 0, 0); // 00:00 local on 29 March
        let next = occurrence(&c, berlin, now, true).expect("fires again");
        assert!(next > now, "{next} is not after {now}");
        assert!(next - now < chrono::Duration::hours(48), "{next}");
        let after = occurrence(&c, berlin, next, true).expect("and again");
        assert_eq!(after, utc(2026, 3, 30, 0, 30, 0), "02:30 CEST on the 30th");
    }
}
