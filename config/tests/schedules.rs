//! Schedules and the agent's time zone are parsed when the config is loaded: a bad
//! one is a problem naming its file, line and key; a good one is the value the
//! agent schedules with, in the configured zone.

use chrono::{TimeZone, Timelike, Utc};
use coffer_config::{Config, ConfigError, load_str};
use std::path::Path;

const RECIPIENT: &str = "age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf";

/// A valid config with `agent` as the keys of `[agent]` and `job` added to `[jobs.kadi]`.
fn config(agent: &str, job: &str) -> String {
    format!(
        "[agent]\n{agent}\n\n[encryption]\nrecipients = [\"{RECIPIENT}\"]\n\n[targets.local]\ntype = \"local\"\npath = \"/b\"\n\n\
         [jobs.kadi]\ntargets = [\"local\"]\n{job}\n\n[[jobs.kadi.sources]]\nname = \"storage\"\ntype = \"directory\"\npath = \"/s\"\n"
    )
}

fn load(text: &str) -> Config {
    load_str(text, Path::new("t.toml"), Path::new("/base")).unwrap_or_else(|e| panic!("{e}"))
}

fn noon(year: i32, month: u32, day: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 12, 0, 0)
        .single()
        .expect("a valid instant")
}

fn errors(text: &str) -> String {
    match load_str(text, Path::new("test.toml"), Path::new("/base")) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e @ ConfigError::Invalid(_)) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn a_bad_cron_expression_names_line_and_key() {
    let e = errors(&config("", "schedule = \"0 25 * * *\""));
    assert!(e.starts_with("test.toml:13:1: jobs.kadi.schedule: "), "{e}");
    assert!(e.contains("not a cron expression"), "{e}");
    assert!(e.contains("field 2 (hour) \"25\""), "{e}");
    let e = errors(&config("", "verify_schedule = \"daily\""));
    assert!(
        e.starts_with("test.toml:13:1: jobs.kadi.verify_schedule: not a cron expression"),
        "{e}"
    );
    assert!(e.contains("\"@daily\""), "{e}");
}

#[test]
fn a_bad_time_zone_names_line_and_key() {
    let e = errors(&config("timezone = \"Europe/Atlantis\"", ""));
    assert_eq!(
        e,
        "test.toml:2:1: agent.timezone: unknown time zone \"Europe/Atlantis\"; \
         use an IANA name like \"Europe/Berlin\" or \"UTC\""
    );
}

#[test]
fn a_schedule_fires_in_the_configured_zone() {
    let cfg = load(&config(
        "timezone = \"Europe/Berlin\"",
        "schedule = \"0 3 * * *\"\nverify_schedule = \"30 */6 * * * *\"",
    ));
    let zone = cfg.agent.timezone.expect("a time zone");
    assert_eq!(zone, chrono_tz::Europe::Berlin);
    let job = &cfg.jobs["kadi"];
    let schedule = job.schedule.as_ref().expect("a schedule");
    assert_eq!(schedule.as_str(), "0 3 * * *");
    let next = |from: chrono::DateTime<Utc>| {
        schedule
            .cron()
            .find_next_occurrence(&from.with_timezone(&zone), false)
            .expect("fires again")
    };
    // 03:00 in Berlin: 01:00 UTC in summer (CEST), 02:00 UTC in winter (CET).
    let summer = next(noon(2025, 7, 1));
    assert_eq!(summer.to_rfc3339(), "2025-07-02T03:00:00+02:00");
    assert_eq!(summer.with_timezone(&Utc).hour(), 1);
    let winter = next(noon(2025, 1, 1));
    assert_eq!(winter.to_rfc3339(), "2025-01-02T03:00:00+01:00");
    assert_eq!(winter.with_timezone(&Utc).hour(), 2);
    let verify = job.verify_schedule.as_ref().expect("a verify schedule");
    assert_eq!(verify.as_str(), "30 */6 * * * *");
}

#[test]
fn no_time_zone_means_the_hosts_local_time() {
    let cfg = load(&config("", "schedule = \"0 3 * * *\""));
    assert_eq!(cfg.agent.timezone, None);
    assert!(cfg.jobs["kadi"].verify_schedule.is_none());
}
