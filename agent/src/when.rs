//! Times and durations as an operator reads them, in one place: the status page
//! (which wraps them in HTML), `coffer status` (plain text) and `coffer config
//! check` (a schedule's next run) must say the same thing the same way, so none of
//! them formats a time of its own.

use chrono::{DateTime, Utc};

/// A status file's Unix seconds as an instant; `None` for one that is none (a
/// status file is anyone's who can write the state directory: NaN, infinities).
pub(crate) fn instant(unix: f64) -> Option<DateTime<Utc>> {
    if !unix.is_finite() {
        return None;
    }
    DateTime::from_timestamp(unix.floor() as i64, 0)
}

/// `2026-05-01 03:00:12 UTC`.
pub(crate) fn time_utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `time_utc` of Unix seconds, or `?` for a time that is none.
pub(crate) fn plain_time(unix: f64) -> String {
    instant(unix).map_or_else(|| "?".to_string(), time_utc)
}

/// How far `t` is from `now`: `now`, `3 min ago`, `in 15 h 0 min`.
pub(crate) fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    if secs.abs() < 5 {
        "now".to_string()
    } else if secs < 0 {
        format!("{} ago", span(secs.unsigned_abs()))
    } else {
        format!("in {}", span(secs.unsigned_abs()))
    }
}

/// A rough span for relative times: the largest unit or two.
pub(crate) fn span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A run's duration: `0.01 s`, `12.5 s`, `3 min`; `?` for one that is none.
pub(crate) fn plain_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".to_string();
    }
    if secs < 10.0 {
        format!("{secs:.2} s")
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        span(secs.round() as u64)
    }
}

/// When `schedule` fires next after `now`, in the zone the agent uses.
pub(crate) fn next_run(
    schedule: &coffer_config::Schedule,
    tz: Option<chrono_tz::Tz>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    crate::service::occurrence(schedule.cron(), tz, now, true)
}

/// `t` in the agent's zone (`[agent] timezone`, else the host's), as `config
/// check` and `status` show a schedule's next run.
pub(crate) fn in_zone(t: DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> String {
    match tz {
        Some(tz) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        None => t
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_and_durations_read_the_same_everywhere() {
        let now = Utc
            .with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .single()
            .expect("an instant");
        assert_eq!(relative(now + chrono::Duration::seconds(3), now), "now");
        assert_eq!(
            relative(now - chrono::Duration::minutes(90), now),
            "1 h 30 min ago"
        );
        assert_eq!(relative(now + chrono::Duration::days(2), now), "in 2 d 0 h");
        assert_eq!(plain_duration(0.012), "0.01 s");
        assert_eq!(plain_duration(f64::NAN), "?");
        assert_eq!(plain_duration(125.0), "2 min");
        assert_eq!(plain_time(f64::INFINITY), "?");
        assert_eq!(
            plain_time(now.timestamp() as f64 + 0.7),
            "2026-05-01 12:00:00 UTC"
        );
    }
}
