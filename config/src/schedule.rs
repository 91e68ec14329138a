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
                "not a cron expression: {}; write e.g. \"0 3 * * *\" (minute hour day month weekday, seconds first optional)",
                explain(text, &e.to_string())
            )),
        }
    }
}

/// Nicknames croner takes only with their `@`.
const NICKNAMES: [&str; 7] = [
    "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly",
];

/// What is wrong, in the operator's terms: croner says "Pattern must have between
/// 5 and 7 fields." or "Number out of bounds." without naming the field.
fn explain(text: &str, croner: &str) -> String {
    let croner = croner.trim().trim_end_matches('.');
    let t = text.trim();
    if let Some(nick) = NICKNAMES
        .iter()
        .find(|n| t.trim_start_matches('@').eq_ignore_ascii_case(n))
    {
        return format!("\"{t}\" is written \"@{nick}\", with the @");
    }
    let fields: Vec<&str> = t.split_whitespace().collect();
    let names: &[(&str, &str)] = match fields.len() {
        5 => &FIELDS[1..],
        6 => &FIELDS,
        _ if t.starts_with('@') => return croner.to_string(),
        7 => return croner.to_string(),
        n => {
            return format!(
                "it has {n} field{}, a schedule has 5 (or 6 with seconds first)",
                if n == 1 { "" } else { "s" }
            );
        }
    };
    // Each field alone, the others `*`: the first that fails is the culprit.
    for (i, (name, range)) in names.iter().enumerate() {
        let probe: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { fields[i] } else { "*" })
            .collect();
        if probe.join(" ").parse::<croner::Cron>().is_err() {
            let what = if croner.contains("out of bounds") {
                "is out of range".to_string()
            } else {
                format!("is not valid ({croner})")
            };
            return format!(
                "field {} ({name}) \"{}\" {what}: {name} takes {range}",
                i + 1,
                fields[i]
            );
        }
    }
    croner.to_string()
}

/// The fields of a six-field expression and what each takes.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("weekday", "0-7 or SUN-SAT (0 and 7 are Sunday)"),
];

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
    fn a_bad_expression_names_the_field_and_the_fix() {
        let e = |t: &str| t.parse::<Schedule>().expect_err(t);
        let hour = e("0 25 * * *");
        assert!(hour.contains("field 2 (hour) \"25\""), "{hour}");
        assert!(hour.contains("hour takes 0-23"), "{hour}");
        let second = e("61 0 3 * * *");
        assert!(second.contains("field 1 (second) \"61\""), "{second}");
        let weekday = e("0 3 * * 9");
        assert!(weekday.contains("field 5 (weekday)"), "{weekday}");
        let few = e("* * *");
        assert!(few.contains("it has 3 fields, a schedule has 5"), "{few}");
        assert!(!few.contains(".;"), "{few}");
        for nick in ["daily", "Daily", "hourly"] {
            let n = e(nick);
            assert!(
                n.contains(&format!("is written \"@{}\"", nick.to_lowercase())),
                "{n}"
            );
        }
        "@daily"
            .parse::<Schedule>()
            .expect("the nickname croner takes");
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
