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
pub(super) fn occurrence(
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
    let backups = cfg.jobs.values().filter(|j| j.schedule.is_some());
    let verifies = cfg.jobs.values().filter(|j| j.verify_schedule.is_some());
    backups
        .map(|j| shared.rt.spawn(job_loop(shared.clone(), j.name.clone())))
        .chain(verifies.map(|j| shared.rt.spawn(verify_loop(shared.clone(), j.name.clone()))))
        .collect()
}
