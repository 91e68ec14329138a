//! Sizes (`"16MiB"`, `5242880`) and durations (`"30s"`, `"3m"`, `120`) as written in
//! the config. Kept to a few unambiguous units so that a typo is an error, not a
//! surprise: binary units are spelled `KiB`/`MiB`/`GiB` (or `K`/`M`/`G`), decimal
//! ones `KB`/`MB`/`GB`.

use crate::raw::SizeOrText;
use std::time::Duration;

/// Bytes from an integer or a string with a unit.
pub fn size(v: &SizeOrText) -> Result<u64, String> {
    match v {
        SizeOrText::Int(n) => u64::try_from(*n).map_err(|_| format!("{n} is not a size")),
        SizeOrText::Text(t) => {
            let (num, unit) = split(t);
            let factor: u64 = match unit.to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kib" => 1 << 10,
                "m" | "mib" => 1 << 20,
                "g" | "gib" => 1 << 30,
                "kb" => 1_000,
                "mb" => 1_000_000,
                "gb" => 1_000_000_000,
                _ => {
                    return Err(format!(
                        "\"{t}\" is not a size; write it like \"16MiB\" or as a number of bytes"
                    ));
                }
            };
            num.parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(factor))
                .ok_or_else(|| {
                    format!(
                        "\"{t}\" is not a size; write it like \"16MiB\" or as a number of bytes"
                    )
                })
        }
    }
}

/// Bytes per second from `"20MiB/s"`: a size with its unit, then `/s`. A bare
/// number is refused (bits or bytes? per second or per minute?), and so is 0,
/// which would stop every upload.
pub fn rate(v: &SizeOrText) -> Result<u64, String> {
    let hint = "write it like \"20MiB/s\" (KiB, MiB, GiB, KB, MB, GB or B, then /s)";
    let t = match v {
        SizeOrText::Int(n) => return Err(format!("{n} has no unit; {hint}")),
        SizeOrText::Text(t) => t,
    };
    let Some(amount) = t.trim().strip_suffix("/s") else {
        return Err(format!("\"{t}\" is not a rate; {hint}"));
    };
    if split(amount).1.is_empty() {
        return Err(format!("\"{t}\" has no unit; {hint}"));
    }
    match size(&SizeOrText::Text(amount.to_string())) {
        Ok(0) => Err(format!(
            "\"{t}\" would stop every upload; give a rate above 0, or remove the key for no limit"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("\"{t}\" is not a rate; {hint}")),
    }
}

/// A duration from an integer (seconds) or a string like `"500ms"`, `"30s"`, `"3m"`,
/// `"1h"`, `"2d"`, `"4w"`: one syntax for every duration in the config.
pub fn duration(v: &SizeOrText) -> Result<Duration, String> {
    match v {
        SizeOrText::Int(n) => u64::try_from(*n)
            .map(Duration::from_secs)
            .map_err(|_| format!("{n} is not a duration")),
        SizeOrText::Text(t) => duration_text(t),
    }
}

/// A duration written as text, e.g. `"30s"`, `"36h"`, `"2d"`.
pub fn duration_text(t: &str) -> Result<Duration, String> {
    humantime::parse_duration(t.trim()).map_err(|e| {
        format!("\"{t}\" is not a duration ({e}); write it like \"30s\", \"36h\" or \"2d\"")
    })
}

/// A duration as a sentence says it: `2 days`, `1 day 12 hours`, `90 seconds`
/// stays `1 minute 30 seconds`, under a second `500 ms`. (humantime's own
/// `2days 1h` reads badly in messages.)
pub fn duration_words(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{} ms", d.as_millis());
    }
    let units = [
        (secs / 86_400, "day"),
        (secs / 3600 % 24, "hour"),
        (secs / 60 % 60, "minute"),
        (secs % 60, "second"),
    ];
    let parts: Vec<String> = units
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    parts.join(" ")
}

/// `"16 MiB"` -> `("16", "MiB")`.
fn split(t: &str) -> (&str, &str) {
    let t = t.trim();
    let at = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    (&t[..at], t[at..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> SizeOrText {
        SizeOrText::Text(s.to_string())
    }

    #[test]
    fn durations_in_words() {
        let d = |t: &str| duration_words(duration_text(t).expect(t));
        assert_eq!(d("2d"), "2 days");
        assert_eq!(d("36h"), "1 day 12 hours");
        assert_eq!(d("90s"), "1 minute 30 seconds");
        assert_eq!(d("1h"), "1 hour");
        assert_eq!(d("500ms"), "500 ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(&text("16MiB")), Ok(16 << 20));
        assert_eq!(size(&text("16 M")), Ok(16 << 20));
        assert_eq!(size(&text("5GB")), Ok(5_000_000_000));
        assert_eq!(size(&text("1024")), Ok(1024));
        assert_eq!(size(&SizeOrText::Int(5 << 20)), Ok(5 << 20));
        assert!(size(&text("16 MiBs")).is_err());
        assert!(size(&text("MiB")).is_err());
        assert!(size(&text("1.5GiB")).is_err());
        assert!(size(&SizeOrText::Int(-1)).is_err());
        assert!(size(&text("99999999999999999999GiB")).is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(rate(&text("20MiB/s")), Ok(20 << 20));
        assert_eq!(rate(&text("512 KiB/s")), Ok(512 << 10));
        assert_eq!(rate(&text("1MB/s")), Ok(1_000_000));
        assert_eq!(rate(&text("100B/s")), Ok(100));
        for bad in [
            "0MiB/s",
            "-5MiB/s",
            "20/s",
            "20MiB",
            "20 Mbit/s",
            "fast",
            "1.5MiB/s",
        ] {
            assert!(rate(&text(bad)).is_err(), "{bad}");
        }
        let e = rate(&SizeOrText::Int(1000)).expect_err("a bare number");
        assert!(e.contains("1000 has no unit"), "{e}");
        assert!(rate(&text("0MiB/s")).expect_err("0").contains("above 0"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration(&text("30s")), Ok(Duration::from_secs(30)));
        assert_eq!(duration(&text("3m")), Ok(Duration::from_secs(180)));
        assert_eq!(duration(&text("250ms")), Ok(Duration::from_millis(250)));
        assert_eq!(duration(&SizeOrText::Int(7)), Ok(Duration::from_secs(7)));
        assert_eq!(duration(&text("2d")), Ok(Duration::from_secs(2 * 86_400)));
        assert!(duration(&text("3 parsecs")).is_err());
        assert!(duration(&text("-3s")).is_err());
    }
}
