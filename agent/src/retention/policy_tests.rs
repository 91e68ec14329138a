//! More cases for `decide`: ties, bucket edges at month, year and ISO-year ends,
//! the `keep_within` window's edge, an empty list, and the reasons given.

use super::*;
use time::macros::datetime;

fn policy(f: impl FnOnce(&mut Retention)) -> Retention {
    let mut r = Retention::default();
    f(&mut r);
    r
}

/// The kept times, newest first.
fn kept(times: &[OffsetDateTime], policy: &Retention) -> Vec<OffsetDateTime> {
    let mut k: Vec<_> = times
        .iter()
        .zip(decide(times, policy))
        .filter(|(_, r)| !r.is_empty())
        .map(|(t, _)| *t)
        .collect();
    k.sort_by(|a, b| b.cmp(a));
    k
}

#[test]
fn an_empty_list_keeps_nothing_and_gives_no_reasons() {
    let every_rule = policy(|r| {
        r.keep_last = 3;
        r.keep_hourly = 3;
        r.keep_daily = 3;
        r.keep_weekly = 3;
        r.keep_monthly = 3;
        r.keep_yearly = 3;
        r.keep_within = Some(std::time::Duration::from_secs(3600));
    });
    assert!(decide(&[], &every_rule).is_empty());
}

#[test]
fn keep_last_counts_snapshots_not_distinct_times() {
    // Ids keep whole seconds: three runs in the same second are three snapshots.
    let t = datetime!(2024-06-01 12:00:00 UTC);
    let times = [t, datetime!(2024-06-01 11:00:00 UTC), t, t];
    let r = decide(&times, &policy(|r| r.keep_last = 2));
    assert_eq!(r.iter().filter(|r| !r.is_empty()).count(), 2, "{r:?}");
    assert!(r[1].is_empty(), "the older one is not among the last two");
    // Exactly as many as asked for, whatever the input order.
    let r = decide(&[t, t, t, t], &policy(|r| r.keep_last = 3));
    assert_eq!(r.iter().filter(|r| r == &&["last"]).count(), 3, "{r:?}");
}

#[test]
fn tied_snapshots_are_kept_by_every_rule_on_the_same_one() {
    // keep_last 1 and keep_daily 1 must pick the same one of two tied snapshots,
    // not one each.
    let t = datetime!(2024-06-01 12:00:00 UTC);
    let r = decide(
        &[t, t],
        &policy(|r| {
            r.keep_last = 1;
            r.keep_daily = 1;
        }),
    );
    let kept: Vec<_> = r.iter().filter(|r| !r.is_empty()).collect();
    assert_eq!(kept, [&vec!["last", "daily"]], "{r:?}");
}

#[test]
fn of_tied_snapshots_the_later_in_the_list_is_the_newer() {
    // Three runs in one second, passed in the order they finished: the last one
    // is the newest for every rule, the first the oldest.
    let t = datetime!(2024-06-01 12:00:00 UTC);
    let r = decide(
        &[t, t, t],
        &policy(|r| {
            r.keep_last = 1;
            r.keep_hourly = 2;
        }),
    );
    assert_eq!(r[2], ["last", "hourly"], "{r:?}");
    assert_eq!(r[0], ["oldest"], "{r:?}");
    assert!(r[1].is_empty(), "{r:?}");
}

#[test]
fn daily_buckets_split_at_utc_midnight_across_a_month_end() {
    let times = [
        datetime!(2024-01-31 00:00:00 UTC),
        datetime!(2024-01-31 23:59:59 UTC),
        datetime!(2024-02-01 00:00:00 UTC),
    ];
    assert_eq!(
        kept(&times, &policy(|r| r.keep_daily = 2)),
        [
            datetime!(2024-02-01 00:00:00 UTC),
            datetime!(2024-01-31 23:59:59 UTC),
        ]
    );
}

#[test]
fn hourly_buckets_split_at_the_hour_across_new_year() {
    let times = [
        datetime!(2023-12-31 23:00:00 UTC),
        datetime!(2023-12-31 23:59:59 UTC),
        datetime!(2024-01-01 00:00:00 UTC),
        datetime!(2024-01-01 00:30:00 UTC),
    ];
    let r = decide(&times, &policy(|r| r.keep_hourly = 2));
    assert_eq!(r, [vec![], vec!["hourly"], vec![], vec!["hourly"]]);
}

#[test]
fn monthly_buckets_across_a_year_boundary() {
    let times = [
        datetime!(2023-11-15 12:00 UTC),
        datetime!(2023-12-01 00:00 UTC),
        datetime!(2023-12-31 23:59:59 UTC),
        datetime!(2024-01-01 00:00 UTC),
        datetime!(2024-01-20 12:00 UTC),
    ];
    // January 2024, December 2023, November 2023: the newest of each.
    assert_eq!(
        kept(&times, &policy(|r| r.keep_monthly = 3)),
        [
            datetime!(2024-01-20 12:00 UTC),
            datetime!(2023-12-31 23:59:59 UTC),
            datetime!(2023-11-15 12:00 UTC),
        ]
    );
    // Same month number, another year: two buckets.
    let times = [
        datetime!(2023-01-10 00:00 UTC),
        datetime!(2024-01-10 00:00 UTC),
    ];
    assert_eq!(kept(&times, &policy(|r| r.keep_monthly = 2)).len(), 2);
}

#[test]
fn weekly_buckets_follow_the_iso_year_through_week_53() {
    // ISO 2020 has 53 weeks: 2020-12-28 to 2021-01-03 is 2020-W53.
    let times = [
        datetime!(2020-12-27 12:00 UTC), // Sunday, 2020-W52
        datetime!(2020-12-31 12:00 UTC), // 2020-W53
        datetime!(2021-01-03 12:00 UTC), // Sunday, still 2020-W53
        datetime!(2021-01-04 12:00 UTC), // Monday, 2021-W01
    ];
    assert_eq!(
        kept(&times, &policy(|r| r.keep_weekly = 3)),
        [
            datetime!(2021-01-04 12:00 UTC),
            datetime!(2021-01-03 12:00 UTC),
            datetime!(2020-12-27 12:00 UTC),
        ]
    );
}

#[test]
fn yearly_buckets_split_at_new_year() {
    let times = [
        datetime!(2023-12-31 23:59:59 UTC),
        datetime!(2024-01-01 00:00:00 UTC),
        datetime!(2024-12-31 23:59:59 UTC),
    ];
    let r = decide(&times, &policy(|r| r.keep_yearly = 2));
    assert_eq!(r, [vec!["yearly"], vec![], vec!["yearly"]]);
}

#[test]
fn within_keeps_what_is_strictly_newer_than_the_window() {
    let newest = datetime!(2024-06-10 12:00:00 UTC);
    let day = time::Duration::days(1);
    let times = [
        newest,
        newest - day + time::Duration::seconds(1),
        newest - day,
        newest - day * 30,
    ];
    let r = decide(
        &times,
        &policy(|r| r.keep_within = Some(std::time::Duration::from_secs(86_400))),
    );
    assert_eq!(r, [vec!["within"], vec!["within"], vec![], vec![]]);
}

#[test]
fn a_zero_window_keeps_nothing() {
    // Why the config refuses `keep_within = "0s"`: on its own it would forget
    // every snapshot, the newest included.
    let t = datetime!(2024-06-10 12:00:00 UTC);
    let r = decide(
        &[t],
        &policy(|r| r.keep_within = Some(std::time::Duration::ZERO)),
    );
    assert_eq!(r, [Reasons::new()]);
}

#[test]
fn only_calendar_rules_short_of_periods_keep_the_oldest() {
    let times = [
        datetime!(2024-06-01 00:00 UTC),
        datetime!(2024-06-02 00:00 UTC),
        datetime!(2024-06-03 00:00 UTC),
    ];
    // keep_last and keep_within with room to spare: no "oldest".
    let r = decide(
        &times,
        &policy(|r| {
            r.keep_last = 10;
            r.keep_within = Some(std::time::Duration::from_secs(3600));
        }),
    );
    assert_eq!(r, [vec!["last"], vec!["last"], vec!["last", "within"]]);
    // Exactly as many days as allowed: not short, no "oldest".
    let r = decide(&times, &policy(|r| r.keep_daily = 3));
    assert_eq!(r, [vec!["daily"], vec!["daily"], vec!["daily"]]);
    // One more allowed than found: the oldest says so too.
    let r = decide(&times, &policy(|r| r.keep_daily = 4));
    assert_eq!(r, [vec!["daily", "oldest"], vec!["daily"], vec!["daily"]]);
}

#[test]
fn each_kept_snapshot_carries_every_rule_that_keeps_it() {
    let times = [
        datetime!(2023-12-31 08:00 UTC),
        datetime!(2024-01-01 09:00 UTC),
        datetime!(2024-01-01 10:00 UTC),
        datetime!(2024-01-01 10:30 UTC),
    ];
    let r = decide(
        &times,
        &policy(|r| {
            r.keep_last = 1;
            r.keep_hourly = 2;
            r.keep_daily = 2;
            r.keep_weekly = 1;
            r.keep_monthly = 2;
            r.keep_yearly = 5;
            r.keep_within = Some(std::time::Duration::from_secs(3600));
        }),
    );
    assert_eq!(
        r,
        [
            // Last day, month and year of 2023; the oldest (5 years allowed, 2 found).
            vec!["daily", "monthly", "yearly", "oldest"],
            vec!["hourly"],
            vec!["within"],
            vec![
                "last", "hourly", "daily", "weekly", "monthly", "yearly", "within"
            ],
        ]
    );
}

#[test]
fn reasons_follow_the_input_order() {
    let sorted = [
        datetime!(2024-03-01 00:00 UTC),
        datetime!(2024-03-02 00:00 UTC),
        datetime!(2024-03-02 06:00 UTC),
        datetime!(2024-03-05 00:00 UTC),
    ];
    let p = policy(|r| {
        r.keep_last = 1;
        r.keep_daily = 2;
    });
    let expect = decide(&sorted, &p);
    let order = [2, 0, 3, 1];
    let shuffled: Vec<_> = order.iter().map(|&i| sorted[i]).collect();
    let got = decide(&shuffled, &p);
    for (pos, &i) in order.iter().enumerate() {
        assert_eq!(got[pos], expect[i], "{}", sorted[i]);
    }
    assert_eq!(expect[3], ["last", "daily"]);
    assert_eq!(expect[2], ["daily"]);
}

/// The retention of `config/examples/kinto.toml`, as shipped.
fn kinto_example() -> Retention {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/examples/kinto.toml"
    ))
    .expect("the Kinto example");
    // Only the retention matters: the files it names are not on this host.
    let recipients = "recipients_file = \"/etc/coffer/recipients.txt\"";
    assert!(text.contains(recipients), "the example's recipients line");
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "x").expect("password file");
    let text = text
        .replace(recipients, "create_identity_if_missing = true")
        .replace(
            "/etc/coffer/kinto-db-password",
            &password.display().to_string(),
        );
    let cfg = coffer_config::load_str(&text, std::path::Path::new("kinto.toml"), dir.path())
        .expect("the example loads");
    cfg.jobs["kinto"].retention.clone().expect("a retention")
}

#[test]
fn the_kinto_example_keeps_every_snapshot_of_the_day() {
    // The nightly run, one by hand before an upgrade, a second one after it (its
    // check failed: committed all the same), and the nights before.
    let today = [
        datetime!(2026-12-06 02:30 UTC),
        datetime!(2026-12-06 14:00 UTC),
        datetime!(2026-12-06 14:20 UTC),
    ];
    let nights: Vec<_> = (1..=20)
        .map(|d| datetime!(2026-12-06 02:30 UTC) - time::Duration::days(d))
        .collect();
    let times: Vec<_> = nights.iter().rev().chain(&today).copied().collect();
    let kept = kept(&times, &kinto_example());
    for t in today {
        assert!(kept.contains(&t), "{t} forgotten: kept {kept:#?}");
    }
    // The thirteen nights before stay too (keep_daily = 14 with today).
    for t in &nights[..13] {
        assert!(kept.contains(t), "{t} forgotten: kept {kept:#?}");
    }
}

/// A later run of the same day whose backup-time check failed (exit 3: rows
/// without their file) must not push out the consistent run before it: each
/// period keeps its newest snapshot that passed, saying so; a period where none
/// passed keeps its newest; `keep_last` and `keep_within` go by time alone.
#[test]
fn a_period_keeps_its_newest_snapshot_that_passed_its_check() {
    let times = [
        datetime!(2026-05-01 02:00 UTC), // passed
        datetime!(2026-05-01 14:00 UTC), // failed its check
        datetime!(2026-05-02 02:00 UTC), // failed
        datetime!(2026-05-02 14:00 UTC), // failed
        datetime!(2026-05-03 02:00 UTC), // passed
    ];
    let passed = [true, false, false, false, true];
    let daily = policy(|r| r.keep_daily = 3);
    let r = decide_checked(&times, &passed, &daily);
    assert_eq!(r[0], ["daily: newest that passed its check"]);
    assert!(r[1].is_empty(), "the failed later run of 05-01: {:?}", r[1]);
    assert!(r[2].is_empty(), "{:?}", r[2]);
    assert_eq!(r[3], ["daily"], "05-02 has no run that passed: its newest");
    assert_eq!(r[4], ["daily"]);
    // Without the checks, the later run of 05-01 was kept instead.
    let plain = decide(&times, &daily);
    assert_eq!(plain[1], ["daily"]);
    assert!(plain[0].is_empty());
    // Weekly and monthly the same way; last and within by time.
    let all_failed_but_first = [true, false, false, false, false];
    let r = decide_checked(
        &times,
        &all_failed_but_first,
        &policy(|r| {
            r.keep_last = 1;
            r.keep_weekly = 1;
            r.keep_monthly = 1;
            r.keep_within = Some(std::time::Duration::from_secs(3600));
        }),
    );
    assert_eq!(
        r[0],
        [
            "weekly: newest that passed its check",
            "monthly: newest that passed its check"
        ]
    );
    assert_eq!(r[4], ["last", "within"]);
    assert!(r[1..4].iter().all(Vec::is_empty), "{r:?}");
    // A snapshot with no check counts as passed, as does a missing entry.
    assert_eq!(decide_checked(&times, &[], &daily), decide(&times, &daily));
}
