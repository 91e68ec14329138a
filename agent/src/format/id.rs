//! Snapshot ids: `YYYYMMDDTHHMMSSZ-xxxx`, UTC time plus four random hex digits, so
//! ids sort by time and retention can work from ids alone.

use time::OffsetDateTime;
use time::macros::format_description;

pub fn new_id(at: OffsetDateTime) -> String {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = at
        .to_offset(time::UtcOffset::UTC)
        .format(fmt)
        .unwrap_or_else(|_| "00000000T000000Z".to_string());
    format!("{stamp}-{:04x}", rand::random::<u16>())
}

/// Whether a folder name on a target looks like a snapshot id.
pub fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 21
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape_and_sort_by_time() {
        let a = new_id(time::macros::datetime!(2026-01-02 03:04:05 UTC));
        let b = new_id(time::macros::datetime!(2026-01-02 03:04:06 UTC));
        assert!(a.starts_with("20260102T030405Z-"), "{a}");
        assert!(is_id(&a) && is_id(&b));
        assert!(a < b);
        assert!(!is_id("20260102T030405Z"));
        assert!(!is_id("manifest.json.zst.age"));
    }
}

/// The UTC time an id was taken at (retention works from ids alone).
pub fn time_of(id: &str) -> Option<time::OffsetDateTime> {
    if !is_id(id) {
        return None;
    }
    let fmt = format_description!("[year][month][day]T[hour][minute][second]");
    time::PrimitiveDateTime::parse(&id[..15], fmt)
        .ok()
        .map(|t| t.assume_utc())
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn ids_give_back_their_time() {
        let t = super::time_of("20240229T235959Z-0a1b").expect("parses");
        assert_eq!(t, time::macros::datetime!(2024-02-29 23:59:59 UTC));
        assert!(super::time_of("20240229T235959Z").is_none());
    }
}
