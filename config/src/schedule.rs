//! A job's `schedule` or `verify_schedule`: a cron expression parsed once, when the
//! config is loaded. `coffer agent` works from the parsed expression and never
//! parses the text again (a second parse could only fail silently, the schedule
//! then never firing); the text as written stays with it for `config check`, the
//! HTTP API and messages.
//!
//! Seconds are optional, as croner reads an expression by default: five fields
//! (minute hour day month weekday) or six with seconds first.

use std::fmt;
use std::str::FromStr;

#[derive(Clone)]
pub struct Schedule {
    cron: croner::Cron,
    text: String,
}

impl Schedule {
    /// The parsed expression, to find its occurrences (in the zone of
    /// [`crate::Agent::timezone`]).
    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }

    /// The expression as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(text: &str) -> Result<Schedule, String> {
        match text.parse::<croner::Cron>() {
            Ok(cron) => Ok(Schedule {
                cron,
                text: text.to_string(),
            }),
            Err(e) => Err(format!(
                "not a cron expression: {e}; write e.g. \"0 3 * * *\" (minute hour day month weekday, seconds first optional)"
            )),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The text: croner's own `Debug` spells out every bit of every field.
impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.text).finish()
    }
}

/// Serialised as the text written in the config (the HTTP API's `"schedule"`).
impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keeps_the_text_and_finds_occurrences() {
        let s: Schedule = "*/15 3 * * *".parse().expect("a cron expression");
        assert_eq!(s.as_str(), "*/15 3 * * *");
        assert_eq!(s.to_string(), "*/15 3 * * *");
        assert_eq!(format!("{s:?}"), "Schedule(\"*/15 3 * * *\")");
        let from = chrono::Utc
            .with_ymd_and_hms(2025, 1, 1, 3, 1, 0)
            .single()
            .expect("a valid instant");
        let next = s
            .cron()
            .find_next_occurrence(&from, false)
            .expect("fires again");
        assert_eq!(next.to_rfc3339(), "2025-01-01T03:15:00+00:00");
    }

    #[test]
    fn seconds_are_optional() {
        let s: Schedule = "*/5 * * * * *".parse().expect("six fields");
        assert_eq!(s.as_str(), "*/5 * * * * *");
    }

    #[test]
    fn a_bad_expression_says_how_to_write_one() {
        for bad in ["", "61 * * * *", "every day", "* * *"] {
            let e = bad.parse::<Schedule>().expect_err(bad);
            assert!(e.starts_with("not a cron expression: "), "{bad}: {e}");
            assert!(e.contains("\"0 3 * * *\""), "{bad}: {e}");
        }
    }
}
