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

/// The pax `size`, read exactly as the `tar` crate reads it (`pax_extensions_value`
/// in its `archive.rs`): the first record keyed `size`, none at all when a record
/// before it is malformed (a wrong length prefix, no `=`) or its value is not a
/// number, and an empty line ends the records. Any difference lets the guard skip
/// as data a header the crate reads.
fn pax_size(records: &[u8]) -> Option<u64> {
    for record in tar::PaxExtensions::new(records) {
        let record = record.ok()?;
        if record.key() == Ok("size") {
            return record.value().ok()?.parse().ok();
        }
    }
    None
}

/// A header the `tar` crate recognises (ustar or GNU magic): only for those does it
/// treat `x`, `L` and `K` as metadata of the next entry; other headers of any type
/// are entries of their own.
fn recognized(header: &[u8; BLOCK]) -> bool {
    matches!(
        (&header[257..263], &header[263..265]),
        (b"ustar\0", b"00") | (b"ustar ", b" \0")
    )
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
        // The `tar` crate keeps a pax header's records for the next entry it returns:
        // any header but a recognised `x`, `L` or `K`. It applies their `size` to
        // that entry unless its type is one of the metadata types.
        let recognized = recognized(&self.header);
        let metadata = recognized && matches!(kind, b'x' | b'L' | b'K');
        let pending = if metadata {
            self.next_size
        } else {
            self.next_size.take()
        };
        match kind {
            b'x' | b'g' | b'L' | b'K' => {
                if size > MAX_META {
                    return Err(invalid(format!(
                        "a tar metadata entry of {size} bytes (at most {MAX_META}): not an archive coffer wrote"
                    )));
                }
                if kind == b'x' && recognized {
                    self.pax = Some(Vec::with_capacity(size as usize));
                    self.pax_left = size;
                }
            }
            0 | b'0'..=b'7' => {
                if let Some(s) = pending {
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
        // The crate fails on a size this large; so does the guard, without wrapping.
        self.skip = size
            .checked_next_multiple_of(BLOCK as u64)
            .ok_or_else(|| invalid(format!("tar entry size {size} is too large")))?;
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

    /// What the `tar` crate reads from `bytes` behind the guard: each entry's path
    /// length, or the first error (the guard's or the crate's).
    fn read_behind_guard(bytes: &[u8]) -> io::Result<Vec<usize>> {
        let mut out = Vec::new();
        for e in tar::Archive::new(TarGuard::new(bytes)).entries()? {
            out.push(e?.path_bytes().len());
        }
        Ok(out)
    }

    fn block(h: &tar::Header) -> Vec<u8> {
        h.as_bytes().to_vec()
    }

    /// The start of a bomb: a header the guard reads as a file of 8 GiB (so it
    /// skips what follows as data) while the `tar` crate reads it as the first
    /// bytes of a GNU long name.
    fn bomb(out: &mut Vec<u8>) {
        let mut ln = tar::Header::new_gnu();
        ln.set_entry_type(tar::EntryType::GNULongName);
        ln.set_size(2 * MAX_META);
        ln.set_cksum();
        out.extend(block(&ln));
        let mut skip = tar::Header::new_gnu();
        skip.set_size(0o77777777777);
        skip.set_cksum();
        out.extend(block(&skip));
        out.resize(out.len() + 2 * MAX_META as usize - 512, b'a');
        let mut f = tar::Header::new_gnu();
        f.set_size(0);
        f.set_cksum();
        out.extend(block(&f));
    }

    fn pax(records: &[u8], kind: tar::EntryType, magic: bool) -> Vec<u8> {
        let mut ph = if magic {
            tar::Header::new_ustar()
        } else {
            tar::Header::new_old()
        };
        ph.set_entry_type(kind);
        ph.set_size(records.len() as u64);
        ph.set_cksum();
        let mut out = block(&ph);
        out.extend_from_slice(records);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn the_guard_reads_pax_sizes_exactly_as_the_tar_crate_does() {
        // Each stream makes the guard apply a pax `size` the `tar` crate ignores,
        // so the guard skips, as file data, the long name header the crate reads.
        let file0 = {
            let mut h = tar::Header::new_ustar();
            h.set_size(0);
            h.set_cksum();
            block(&h)
        };
        // 512: the guard skips the long name's header and reads the next block,
        // the start of the long name, as a header.
        let size = b"12 size=512\n";
        let local = |pre: &[u8]| {
            let records = [pre, &size[..]].concat();
            pax(&records, tar::EntryType::XHeader, true)
        };
        let cases: [(&str, Vec<u8>); 5] = [
            // A pax header without the ustar magic is an ordinary entry to tar.
            ("x without magic", pax(size, tar::EntryType::XHeader, false)),
            // A global header is returned as an entry: it ends the local one.
            ("x then g", {
                let mut v = local(b"");
                v.extend(pax(b"", tar::EntryType::XGlobalHeader, true));
                v
            }),
            // A malformed record before `size` means no size to the crate...
            ("malformed first", local(b"garbage\n")),
            // ... and so does a record whose length prefix is wrong,
            ("wrong length", local(b"29 comment=x\n")),
            // ... and an empty line ends the records.
            ("empty line", local(b"\n")),
        ];
        let mut bypassed = Vec::new();
        for (what, mut stream) in cases {
            stream.extend(&file0);
            bomb(&mut stream);
            if let Ok(lens) = read_behind_guard(&stream)
                && lens.iter().any(|l| *l as u64 > MAX_META)
            {
                bypassed.push(what);
            }
        }
        assert!(
            bypassed.is_empty(),
            "the tar crate read a long name of more than MAX_META behind the guard: {bypassed:?}"
        );
    }
}
