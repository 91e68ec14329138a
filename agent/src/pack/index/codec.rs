//! How values are stored in the index's columns: u64 as SQLite's i64 (bit for
//! bit), hashes and pack ids as bytes (parsed from and written back to lowercase
//! hex exactly as given).

use anyhow::{Result, anyhow};

/// SQLite integers are i64. Reinterpreting the bits is a bijection, so two different
/// inodes, devices or sizes can never be stored as the same value and compare equal,
/// and the huge inode numbers some filesystems hand out are kept rather than refused.
pub(super) fn signed(v: u64) -> i64 {
    v.cast_signed()
}

pub(super) fn unsigned(v: i64) -> u64 {
    v.cast_unsigned()
}

pub(super) fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let bad = || anyhow!("{what} {s:?} is not {} lowercase hex digits", N * 2);
    // Lowercase only, so that a stored id reads back exactly as it was given.
    if !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
    Ok(out)
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
