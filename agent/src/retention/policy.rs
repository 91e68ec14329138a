//! Which snapshots a retention policy keeps, with the meaning of restic's
//! `forget --keep-*`: snapshots newest first; `keep_last` keeps the n newest; each
//! calendar rule (hourly, daily, weekly by ISO week, monthly, yearly) keeps the
//! newest snapshot of each of the last n periods that have one; `keep_within` keeps
//! everything newer than the latest snapshot minus the duration; when a calendar
//! rule finds fewer periods than it may keep, the oldest snapshot is kept as well
//! (restic >= 0.17). A snapshot kept by any rule stays. Periods are UTC, like ids.
//! Works from snapshot times alone: no private key needed.

use coffer_config::Retention;
use time::OffsetDateTime;

/// Why a snapshot is kept (empty: forget it).
pub type Reasons = Vec<&'static str>;

type Bucket = fn(OffsetDateTime) -> i64;

fn hour(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(3600)
}
fn day(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}
fn week(t: OffsetDateTime) -> i64 {
    let (year, week, _) = t.date().to_iso_week_date();
    i64::from(year) * 100 + i64::from(week)
}
fn month(t: OffsetDateTime) -> i64 {
    i64::from(t.year()) * 100 + i64::from(u8::from(t.month()))
}
fn year(t: OffsetDateTime) -> i64 {
    i64::from(t.year())
}

/// `times` in any order, except that of equal times the one later in the slice is
/// the newer (ids keep whole seconds: callers pass snapshots in the order they
/// finished); returns the reasons per snapshot in the same order. Every
/// snapshot counts as consistent (see [`decide_checked`]); the tests' shorthand.
#[cfg(test)]
pub fn decide(times: &[OffsetDateTime], policy: &Retention) -> Vec<Reasons> {
    decide_checked(times, &vec![true; times.len()], policy)
}

/// Like [`decide`], where `passed[i]` says whether snapshot `i` passed its
/// backup-time `[check]` (or had none). A calendar rule keeps, for each period,
/// the newest snapshot that passed, and the newest of the period only when none
/// did: a later run of the same day whose check found rows without their file
/// (exit 3) must not push out the consistent one before it. Such a pick says so
/// in its reason ("daily: newest that passed its check"). `keep_last`,
/// `keep_within` and the oldest are by time alone.
pub fn decide_checked(
    times: &[OffsetDateTime],
    passed: &[bool],
    policy: &Retention,
) -> Vec<Reasons> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|a, b| times[*b].cmp(&times[*a]).then(b.cmp(a)));
    let mut reasons = vec![Reasons::new(); times.len()];
    let Some(&newest) = order.first() else {
        return reasons;
    };
    let passed = |i: usize| passed.get(i).copied().unwrap_or(true);
    let rules: [(&'static str, &'static str, u32, Bucket); 5] = [
        (
            "hourly",
            "hourly: newest that passed its check",
            policy.keep_hourly,
            hour,
        ),
        (
            "daily",
            "daily: newest that passed its check",
            policy.keep_daily,
            day,
        ),
        (
            "weekly",
            "weekly: newest that passed its check",
            policy.keep_weekly,
            week,
        ),
        (
            "monthly",
            "monthly: newest that passed its check",
            policy.keep_monthly,
            month,
        ),
        (
            "yearly",
            "yearly: newest that passed its check",
            policy.keep_yearly,
            year,
        ),
    ];
    for &i in order.iter().take(policy.keep_last as usize) {
        reasons[i].push("last");
    }
    let mut short = false;
    for (name, preferred, n, bucket) in rules {
        let mut left = n;
        // Periods are contiguous in `order`: every bucket grows with time.
        for period in order.chunk_by(|a, b| bucket(times[*a]) == bucket(times[*b])) {
            if left == 0 {
                break;
            }
            let newest_in = period[0];
            match period.iter().copied().find(|&i| passed(i)) {
                Some(i) if i != newest_in => reasons[i].push(preferred),
                Some(i) => reasons[i].push(name),
                None => reasons[newest_in].push(name),
            }
            left -= 1;
        }
        short |= n > 0 && left > 0;
    }
    if let Some(within) = policy.keep_within {
        for &i in &order {
            if times[newest] - times[i] < within {
                reasons[i].push("within");
            }
        }
    }
    if short && let Some(&oldest) = order.last() {
        reasons[oldest].push("oldest");
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Runs the policy on `times` and returns the kept ones, newest first.
    fn kept(times: &[OffsetDateTime], policy: Retention) -> Vec<OffsetDateTime> {
        let r = decide(times, &policy);
        let mut k: Vec<_> = times
            .iter()
            .zip(&r)
            .filter(|(_, r)| !r.is_empty())
            .map(|(t, _)| *t)
            .collect();
        k.sort_by(|a, b| b.cmp(a));
        k
    }

    #[test]
    fn daily_weekly_monthly_across_a_leap_day_and_month_end() {
        let times = [
            datetime!(2024-02-27 10:00 UTC),
            datetime!(2024-02-28 23:59 UTC),
            datetime!(2024-02-29 01:00 UTC),
            datetime!(2024-02-29 22:00 UTC),
            datetime!(2024-03-01 00:30 UTC),
            datetime!(2024-03-03 12:00 UTC), // Sunday: last day of ISO week 9
            datetime!(2024-03-04 08:00 UTC), // Monday: week 10
            datetime!(2024-03-04 20:00 UTC),
        ];
        let policy = Retention {
            keep_daily: 3,
            keep_weekly: 2,
            keep_monthly: 2,
            ..Retention::default()
        };
        // daily: 03-04 20:00, 03-03, 03-01; weekly: W10 03-04 20:00, W09 03-03;
        // monthly: March 03-04 20:00, February 02-29 22:00 (the leap day's last).
        assert_eq!(
            kept(&times, policy),
            [
                datetime!(2024-03-04 20:00 UTC),
                datetime!(2024-03-03 12:00 UTC),
                datetime!(2024-03-01 00:30 UTC),
                datetime!(2024-02-29 22:00 UTC),
            ]
        );
    }

    #[test]
    fn iso_weeks_cross_the_year_boundary() {
        let times = [
            datetime!(2024-12-29 09:00 UTC), // Sunday, 2024-W52
            datetime!(2024-12-30 09:00 UTC), // Monday, already 2025-W01
            datetime!(2025-01-05 09:00 UTC), // Sunday, 2025-W01
        ];
        let policy = Retention {
            keep_weekly: 2,
            ..Retention::default()
        };
        assert_eq!(
            kept(&times, policy),
            [
                datetime!(2025-01-05 09:00 UTC),
                datetime!(2024-12-29 09:00 UTC)
            ]
        );
    }

    #[test]
    fn last_and_yearly_across_new_year() {
        let times = [
            datetime!(2022-12-31 23:00 UTC),
            datetime!(2023-01-01 01:00 UTC),
            datetime!(2023-06-01 00:00 UTC),
            datetime!(2024-02-29 12:00 UTC),
            datetime!(2024-03-01 12:00 UTC),
        ];
        let policy = Retention {
            keep_last: 2,
            keep_yearly: 5,
            ..Retention::default()
        };
        // last: the two 2024 ones; yearly: 2024, 2023-06-01, 2022-12-31 (three years for
        // five allowed: the oldest is kept too, already kept); 2023-01-01 goes.
        assert_eq!(
            kept(&times, policy),
            [
                datetime!(2024-03-01 12:00 UTC),
                datetime!(2024-02-29 12:00 UTC),
                datetime!(2023-06-01 00:00 UTC),
                datetime!(2022-12-31 23:00 UTC),
            ]
        );
    }

    #[test]
    fn too_few_periods_keep_the_oldest_too() {
        let times = [
            datetime!(2024-05-01 08:00 UTC),
            datetime!(2024-05-01 09:00 UTC),
            datetime!(2024-05-02 09:00 UTC),
            datetime!(2024-05-03 09:00 UTC),
        ];
        let r = decide(
            &times,
            &Retention {
                keep_daily: 10,
                ..Retention::default()
            },
        );
        assert_eq!(
            r[0],
            ["oldest"],
            "the oldest is kept because 10 days were allowed and 3 exist"
        );
        assert_eq!(r[1], ["daily"]);
    }

    #[test]
    fn within_counts_back_from_the_latest_snapshot_not_now() {
        let times = [
            datetime!(2020-03-10 12:00 UTC),
            datetime!(2020-03-10 11:30 UTC),
            datetime!(2020-03-10 11:10 UTC),
            datetime!(2020-03-08 12:30 UTC),
            datetime!(2020-03-08 11:00 UTC),
        ];
        let policy = Retention {
            keep_hourly: 2,
            keep_within: Some(std::time::Duration::from_secs(2 * 86_400)),
            ..Retention::default()
        };
        let r = decide(&times, &policy);
        assert_eq!(r[0], ["hourly", "within"]);
        assert_eq!(r[1], ["hourly", "within"]);
        assert_eq!(r[2], ["within"]);
        assert_eq!(r[3], ["within"]);
        assert!(r[4].is_empty(), "{:?}", r[4]);
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod more_tests;
