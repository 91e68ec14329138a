//! A watch on a tar stream's framing, in front of the `tar` crate. That crate reads
//! a GNU long name (`L`, `K`) or a pax header (`x`) into memory whole, and sparse
//! maps (`S`) into a growing list: an archive from a target is hostile, and a few
//! KiB of zstd can hold a 8 GiB "long name". The guard follows the 512-byte blocks as
//! they pass, refuses metadata entries larger than `MAX_META` and entry types
//! coffer never writes, before the `tar` crate sees them. It honours a pax `size`
//! record the way the `tar` crate does, so both agree on where the next header is.

use std::io::{self, Read};

/// Largest pax or long-name entry accepted: a path is at most 4 KiB.
pub const MAX_META: u64 = 1 << 20;
const BLOCK: usize = 512;

pub struct TarGuard<R> {
    inner: R,
    header: [u8; BLOCK],
    filled: usize,
    /// Data bytes (with padding) of the current entry still to pass.
    skip: u64,
    /// The current entry is a pax header: its records are kept to find `size`.
    pax: Option<Vec<u8>>,
    pax_left: u64,
    /// A pax `size` for the next real entry.
    next_size: Option<u64>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The size field: octal text, or base-256 when the top bit is set.
fn size_field(f: &[u8]) -> io::Result<u64> {
    if f[0] & 0x80 != 0 {
        if f[..f.len() - 8].iter().skip(1).any(|b| *b != 0) || f[0] != 0x80 {
            return Err(invalid("tar size field too large".into()));
        }
        let mut v = [0u8; 8];
        v.copy_from_slice(&f[f.len() - 8..]);
        return Ok(u64::from_be_bytes(v));
    }
    let text: Vec<u8> = f
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .filter(|b| *b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&text).map_err(|_| invalid("tar size field".into()))?;
    u64::from_str_radix(s, 8).map_err(|_| invalid(format!("tar size field {s:?}")))
}

fn pax_size(records: &[u8]) -> Option<u64> {
    records.split(|b| *b == b'\n').find_map(|rec| {
        let text = std::str::from_utf8(rec).ok()?;
        let (_, kv) = text.split_once(' ')?;
        kv.strip_prefix("size=")?.parse().ok()
    })
}

impl<R> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            header: [0; BLOCK],
            filled: 0,
            skip: 0,
            pax: None,
            pax_left: 0,
            next_size: None,
        }
    }

    fn on_header(&mut self) -> io::Result<()> {
        if self.header.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive blocks
        }
        let kind = self.header[156];
        let mut size = size_field(&self.header[124..136])?;
        match kind {
            b'x' | b'g' | b'L' | b'K' => {
                if size > MAX_META {
                    return Err(invalid(format!(
                        "a tar metadata entry of {size} bytes (at most {MAX_META}): not an archive coffer wrote"
                    )));
                }
                if kind == b'x' {
                    self.pax = Some(Vec::with_capacity(size as usize));
                    self.pax_left = size;
                }
            }
            0 | b'0'..=b'7' => {
                if let Some(s) = self.next_size.take() {
                    size = s;
                }
            }
            other => {
                return Err(invalid(format!(
                    "tar entry type {:?}: coffer never writes it",
                    other as char
                )));
            }
        }
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.skip > 0 {
                let k = (self.skip.min(data.len() as u64)) as usize;
                if let Some(pax) = &mut self.pax {
                    let keep = (self.pax_left.min(k as u64)) as usize;
                    pax.extend_from_slice(&data[..keep]);
                    self.pax_left -= keep as u64;
                }
                self.skip -= k as u64;
                data = &data[k..];
                if self.skip == 0
                    && let Some(pax) = self.pax.take()
                {
                    self.next_size = pax_size(&pax);
                }
                continue;
            }
            let k = (BLOCK - self.filled).min(data.len());
            self.header[self.filled..self.filled + k].copy_from_slice(&data[..k]);
            self.filled += k;
            data = &data[k..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.on_header()?;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(bytes: &[u8]) -> io::Result<()> {
        // Small reads, so headers straddle calls.
        let mut g = TarGuard::new(bytes);
        let mut buf = [0u8; 97];
        while g.read(&mut buf)? > 0 {}
        Ok(())
    }

    #[test]
    fn honest_archives_pass_and_huge_metadata_does_not() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        b.append_data(&mut h, "a", &b"hello"[..]).expect("append");
        let long = "d/".repeat(300) + "f";
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..])
            .expect("long name");
        let honest = b.into_inner().expect("tar");
        pass(&honest).expect("an honest archive passes");
        let mut names = Vec::new();
        for e in tar::Archive::new(TarGuard::new(&honest[..]))
            .entries()
            .expect("entries")
        {
            names.push(
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string(),
            );
        }
        assert_eq!(names, ["a".to_string(), long]);

        // A GNU long name claiming 8 GiB.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_path("././@LongLink").expect("path");
        h.set_size(8 << 30);
        h.set_cksum();
        let err = pass(h.as_bytes()).expect_err("refused");
        assert!(err.to_string().contains("metadata entry"), "{err}");

        // A GNU sparse file.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(0);
        h.set_cksum();
        assert!(pass(h.as_bytes()).is_err());
    }

    #[test]
    fn a_pax_size_moves_the_next_header_as_tar_reads_it() {
        // pax says the file is 1024 bytes although its header says 0: the guard
        // must skip 1024 bytes, then see the next header (a bomb) and refuse it.
        let record = b"13 size=1024\n";
        let mut out = Vec::new();
        let mut ph = tar::Header::new_ustar();
        ph.set_entry_type(tar::EntryType::XHeader);
        ph.set_size(record.len() as u64);
        ph.set_cksum();
        out.extend_from_slice(ph.as_bytes());
        out.extend_from_slice(record);
        out.resize(out.len().div_ceil(512) * 512, 0);
        let mut fh = tar::Header::new_ustar();
        fh.set_size(0);
        fh.set_cksum();
        out.extend_from_slice(fh.as_bytes());
        out.extend_from_slice(&[b'z'; 1024]);
        let mut bomb = tar::Header::new_gnu();
        bomb.set_entry_type(tar::EntryType::GNULongName);
        bomb.set_size(1 << 40);
        bomb.set_cksum();
        out.extend_from_slice(bomb.as_bytes());
        assert!(pass(&out).is_err());
    }
}
