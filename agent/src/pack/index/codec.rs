//! How values are stored in the index's columns: u64 as SQLite's i64 (bit for
//! bit), hashes and pack ids as bytes (parsed from and written back to lowercase
//! hex exactly as given).

use anyhow::{Result, anyhow, bail};
use coffer_plugins::Chunk;

/// SQLite integers are i64. Reinterpreting the bits is a bijection, so two different
/// inodes, devices or sizes can never be stored as the same value and compare equal,
/// and the huge inode numbers some filesystems hand out are kept rather than refused.
pub(super) fn signed(v: u64) -> i64 {
    v.cast_signed()
}

pub(super) fn unsigned(v: i64) -> u64 {
    v.cast_unsigned()
}

/// One pass over the digits: a run converts a few hashes and ids per file, and
/// checking then decoding (the `hex` crate) was 2% of an unchanged run's CPU.
pub(super) fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let bad = || anyhow!("{what} {s:?} is not {} lowercase hex digits", N * 2);
    // Lowercase only, so that a stored id reads back exactly as it was given.
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if s.len() != N * 2 {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = (digit(pair[0]).ok_or_else(bad)? << 4) | digit(pair[1]).ok_or_else(bad)?;
    }
    Ok(out)
}

/// Through a buffer: `hex::encode` builds its string a char at a time.
pub(super) fn to_hex(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice as long, the only way encode_to_slice fails.
    let _ = hex::encode_to_slice(bytes, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// One chunk in a list: hash, pack id (bytes 32..48), offset and size.
pub(super) const CHUNK_LEN: usize = 32 + 16 + 8 + 8;

/// A chunked file's list of chunks as one column.
pub(super) fn encode_chunks(chunks: &[Chunk]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(chunks.len() * CHUNK_LEN);
    for c in chunks {
        out.extend_from_slice(&parse_hex::<32>(&c.blake3, "chunk hash")?);
        out.extend_from_slice(&parse_hex::<16>(&c.pack, "pack id")?);
        out.extend_from_slice(&c.offset.to_be_bytes());
        out.extend_from_slice(&c.size.to_be_bytes());
    }
    Ok(out)
}

pub(super) fn decode_chunks(bytes: &[u8]) -> Result<Vec<Chunk>> {
    if !bytes.len().is_multiple_of(CHUNK_LEN) {
        bail!(
            "a stored list of chunks has {} bytes, not a multiple of {CHUNK_LEN}",
            bytes.len()
        );
    }
    let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    Ok(bytes
        .chunks_exact(CHUNK_LEN)
        .map(|c| Chunk {
            blake3: to_hex(&c[..32]),
            pack: to_hex(&c[32..48]),
            offset: word(&c[48..56]),
            size: word(&c[56..64]),
        })
        .collect())
}
