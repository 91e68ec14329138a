//! What `/proc/meminfo` says of this host's memory, for what coffer sizes to the
//! machine: the largest file staged for a re-read (`stable_read`), whether the
//! index is worth reading into the page cache before its check (the agent).

/// The value of `field` (`MemTotal`, `MemAvailable`, ...) in bytes; `None` when
/// `/proc/meminfo` cannot be read or does not have it (a chroot without /proc).
pub fn bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    of(&text, field)
}

fn of(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib = value
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib.saturating_mul(1024))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_field_is_read_in_bytes_and_a_missing_or_odd_one_is_none() {
        let text = "MemTotal:       24683520 kB\nMemFree:        20107564 kB\nMemAvailable:   24081356 kB\nHugePages_Total:       0\n";
        assert_eq!(super::of(text, "MemTotal"), Some(24683520 * 1024));
        assert_eq!(super::of(text, "MemAvailable"), Some(24081356 * 1024));
        assert_eq!(super::of(text, "HugePages_Total"), Some(0));
        assert_eq!(
            super::of(text, "Mem"),
            None,
            "a prefix of a field is not the field"
        );
        assert_eq!(super::of(text, "SwapTotal"), None);
        assert_eq!(super::of("MemTotal: lots kB\n", "MemTotal"), None);
    }

    #[test]
    fn this_host_has_memory() {
        assert!(super::bytes("MemTotal").is_some_and(|b| b > 0));
    }
}
