//! Snapshot ids: `YYYYMMDDTHHMMSSZ-xxxx`, the UTC second a run started, then 16
//! bits in four hex digits: the millisecond within that second (0-999) in the top
//! 10 bits and 6 random bits below. So ids sort by time to the millisecond and
//! retention can work from ids alone.
//!
//! Ids made before the millisecond was recorded have four random hex digits: the
//! same shape, so every reader takes both (and an older coffer reads new ids as
//! ids: a prune host or a restore host running an older version still sees every
//! snapshot, and its packs stay referenced). Only among ids of the same second
//! does an old id sort anywhere; `latest` goes by the marker's `finished_at` first.

use std::collections::HashSet;
use time::OffsetDateTime;
use time::macros::format_description;

/// Random bits below the millisecond.
const RANDOM_BITS: u32 = 6;

/// The id's parts for a run started at `at`: its second, and its millisecond.
fn stamp_of(at: OffsetDateTime) -> (String, u16) {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = at.to_offset(time::UtcOffset::UTC);
    let stamp = at
        .format(fmt)
        .unwrap_or_else(|_| "00000000T000000Z".to_string());
    (stamp, at.millisecond())
}

fn id_of(stamp: &str, millis: u16, random: u16) -> String {
    let low = random & ((1 << RANDOM_BITS) - 1);
    format!("{stamp}-{:04x}", (millis << RANDOM_BITS) | low)
}

pub fn new_id(at: OffsetDateTime) -> String {
    let (stamp, millis) = stamp_of(at);
    id_of(&stamp, millis, rand::random::<u16>())
}

/// A new id for a run started at `at` that no folder in `taken` has: a run must
/// never write into another's folder (its objects would replace the other's, and
/// its clean-up after a failure would delete them). Two runs of a job get the
/// same millisecond only when the clock was set back or another host writes the
/// same job to the same target. `None` when all 64 ids of that millisecond are
/// taken.
pub fn new_id_avoiding(at: OffsetDateTime, taken: &HashSet<String>) -> Option<String> {
    let (stamp, millis) = stamp_of(at);
    let start = rand::random::<u16>();
    (0..1u16 << RANDOM_BITS)
        .map(|i| id_of(&stamp, millis, start.wrapping_add(i)))
        .find(|id| !taken.contains(id))
}

/// Whether a folder name on a target looks like a snapshot id (either kind).
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

/// The UTC second an id was taken at (retention works from ids alone). Whole
/// seconds: an old id's digits are random, so they cannot say more.
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
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ids_have_the_documented_shape_and_sort_by_time() {
        let a = new_id(datetime!(2026-01-02 03:04:05 UTC));
        let b = new_id(datetime!(2026-01-02 03:04:06 UTC));
        assert!(a.starts_with("20260102T030405Z-"), "{a}");
        assert!(is_id(&a) && is_id(&b));
        assert!(a < b);
        assert!(!is_id("20260102T030405Z"));
        assert!(!is_id("manifest.json.zst.age"));
    }

    #[test]
    fn ids_of_one_second_sort_by_the_millisecond() {
        let at = datetime!(2026-01-02 03:04:05 UTC);
        // Many tries: the random bits must never outweigh a millisecond.
        for _ in 0..200 {
            let ids: Vec<String> = [0, 1, 2, 500, 998, 999]
                .iter()
                .map(|ms| new_id(at + time::Duration::milliseconds(*ms)))
                .collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
            assert!(ids.iter().all(|id| is_id(id)), "{ids:?}");
            assert!(ids.iter().all(|id| time_of(id) == Some(at)), "{ids:?}");
        }
        // The last millisecond of a second still sorts before the next second.
        assert!(
            new_id(datetime!(2026-01-02 03:04:05.999999 UTC))
                < new_id(datetime!(2026-01-02 03:04:06 UTC))
        );
        // Another time zone names the same instant.
        let local = datetime!(2026-01-02 04:04:05.250 +01:00);
        assert!(
            new_id(local).starts_with("20260102T030405Z-3e"),
            "{}",
            new_id(local)
        );
    }

    #[test]
    fn old_ids_still_parse_and_sort_by_their_second() {
        // Made by earlier binaries: four random hex digits, `ffff` beyond any
        // millisecond.
        let old = ["20261130T033801Z-451d", "20261130T033802Z-ffff"];
        for id in old {
            assert!(is_id(id), "{id}");
        }
        assert_eq!(time_of(old[0]), Some(datetime!(2026-11-30 03:38:01 UTC)));
        let new_before = new_id(datetime!(2026-11-30 03:38:00.999 UTC));
        let new_after = new_id(datetime!(2026-11-30 03:38:02.001 UTC));
        let new_later = new_id(datetime!(2026-11-30 03:38:03 UTC));
        let mut all = [
            new_later.clone(),
            old[1].to_string(),
            new_after.clone(),
            old[0].to_string(),
            new_before.clone(),
        ];
        all.sort();
        assert_eq!(all[0], new_before);
        assert_eq!(all[1], old[0]);
        // In one second an old id's random digits say nothing: only seconds order
        // old against new.
        assert!(all[2..4].contains(&new_after) && all[2..4].contains(&old[1].to_string()));
        assert_eq!(all[4], new_later);
    }

    #[test]
    fn a_taken_id_is_avoided() {
        let at = datetime!(2026-01-02 03:04:05.007 UTC);
        let mut taken = HashSet::new();
        for _ in 0..64 {
            let id = new_id_avoiding(at, &taken).expect("a free id is left");
            assert!(id.starts_with("20260102T030405Z-"), "{id}");
            assert_eq!(
                u16::from_str_radix(&id[17..], 16).ok().map(|x| x >> 6),
                Some(7)
            );
            assert!(taken.insert(id));
        }
        assert_eq!(
            new_id_avoiding(at, &taken),
            None,
            "every id of that ms is taken"
        );
        // The next millisecond is free again.
        assert!(new_id_avoiding(at + time::Duration::milliseconds(1), &taken).is_some());
    }

    #[test]
    fn ids_give_back_their_time() {
        let t = time_of("20240229T235959Z-0a1b").expect("parses");
        assert_eq!(t, datetime!(2024-02-29 23:59:59 UTC));
        assert!(time_of("20240229T235959Z").is_none());
    }
}
