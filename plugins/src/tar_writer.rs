//! Writes a POSIX (ustar + pax) tar stream, entry by entry, into any `Write`.
//!
//! Hand-rolled around `tar::Header` because the directory source must write the
//! header, then the bytes it reads and hashes in one pass, and must be able to pad a
//! file that shrank while being read; `tar::Builder` wants a reader up front.
//! Anything that does not fit ustar (long names and link targets, big sizes, ids,
//! negative times) goes into a pax extended header, which GNU tar and bsdtar read.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tar::{EntryType, Header};

const BLOCK: u64 = 512;
const USTAR_MAX_NUM: u64 = 0o7777777; // 7 octal digits: uid, gid
const USTAR_MAX_SIZE: u64 = 0o77777777777; // 11 octal digits: size, mtime

/// Everything a header says about one entry.
#[derive(Debug, Clone)]
pub struct HeaderSpec<'a> {
    pub path: &'a [u8],
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub mtime: i64,
    pub size: u64,
    pub link: Option<&'a [u8]>,
    pub rdev: Option<(u32, u32)>,
}

#[derive(Debug)]
pub struct TarWriter<W: Write> {
    out: W,
    /// Bytes of data written for the current entry, to pad it to a block.
    pending: u64,
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "LEN key=value\n" where LEN counts itself.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out, pending: 0 }
    }

    /// Writes the header(s) for an entry; its `size` bytes of data follow via `data`.
    pub fn header(&mut self, spec: &HeaderSpec<'_>) -> io::Result<()> {
        let mut h = Header::new_ustar();
        let mut pax = Vec::new();
        h.set_entry_type(spec.kind);
        if h.set_path(Path::new(std::ffi::OsStr::from_bytes(spec.path)))
            .is_err()
        {
            pax_record(&mut pax, "path", spec.path);
            h.set_path("coffer-long-name")?;
        }
        if let Some(link) = spec.link
            && h.set_link_name(Path::new(std::ffi::OsStr::from_bytes(link)))
                .is_err()
        {
            pax_record(&mut pax, "linkpath", link);
            h.set_link_name("coffer-long-link")?;
        }
        h.set_mode(spec.mode & 0o7777);
        for (key, id, setter) in [
            ("uid", spec.uid, Header::set_uid as fn(&mut Header, u64)),
            ("gid", spec.gid, Header::set_gid),
        ] {
            if u64::from(id) > USTAR_MAX_NUM {
                pax_record(&mut pax, key, id.to_string().as_bytes());
                setter(&mut h, 0);
            } else {
                setter(&mut h, u64::from(id));
            }
        }
        for (key, name, setter) in [
            (
                "uname",
                spec.user,
                Header::set_username as fn(&mut Header, &str) -> io::Result<()>,
            ),
            ("gname", spec.group, Header::set_groupname),
        ] {
            if let Some(name) = name
                && setter(&mut h, name).is_err()
            {
                pax_record(&mut pax, key, name.as_bytes());
            }
        }
        if spec.mtime < 0 || spec.mtime as u64 > USTAR_MAX_SIZE {
            pax_record(&mut pax, "mtime", spec.mtime.to_string().as_bytes());
            h.set_mtime(0);
        } else {
            h.set_mtime(spec.mtime as u64);
        }
        if spec.size > USTAR_MAX_SIZE {
            pax_record(&mut pax, "size", spec.size.to_string().as_bytes());
        }
        h.set_size(spec.size);
        if let Some((major, minor)) = spec.rdev {
            h.set_device_major(major)?;
            h.set_device_minor(minor)?;
        }
        h.set_cksum();

        if !pax.is_empty() {
            let mut ph = Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            ph.set_path("PaxHeaders/coffer")?;
            ph.set_mode(0o644);
            ph.set_size(pax.len() as u64);
            ph.set_mtime(h.mtime().unwrap_or(0));
            ph.set_cksum();
            self.out.write_all(ph.as_bytes())?;
            self.out.write_all(&pax)?;
            self.pending = pax.len() as u64;
            self.pad()?;
        }
        self.out.write_all(h.as_bytes())?;
        self.pending = 0;
        Ok(())
    }

    pub fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)?;
        self.pending += buf.len() as u64;
        Ok(())
    }

    /// Zero bytes, for a file that shrank while it was read.
    pub fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        const Z: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(Z.len() as u64) as usize;
            self.data(&Z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Pads the current entry's data to the block size.
    pub fn pad(&mut self) -> io::Result<()> {
        let rem = self.pending % BLOCK;
        if rem != 0 {
            const Z: [u8; 512] = [0; 512];
            self.out.write_all(&Z[..(BLOCK - rem) as usize])?;
        }
        self.pending = 0;
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.pad()?;
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn spec<'a>(path: &'a [u8], size: u64) -> HeaderSpec<'a> {
        HeaderSpec {
            path,
            kind: EntryType::Regular,
            mode: 0o640,
            uid: 3_000_000,
            gid: 7,
            user: Some("a-very-long-user-name-that-does-not-fit-ustar"),
            group: Some("g"),
            mtime: 1_700_000_000,
            size,
            link: None,
            rdev: None,
        }
    }

    #[test]
    fn long_names_and_ids_round_trip_through_pax() {
        let long = "d/".repeat(80) + "file.txt";
        let mut w = TarWriter::new(Vec::new());
        w.header(&spec(long.as_bytes(), 5)).expect("header");
        w.data(b"hello").expect("data");
        w.pad().expect("pad");
        let bytes = w.finish().expect("finish");
        let mut a = tar::Archive::new(&bytes[..]);
        let mut entries = a.entries().expect("entries");
        let mut e = entries.next().expect("one entry").expect("entry ok");
        assert_eq!(e.path_bytes().as_ref(), long.as_bytes());
        // The ustar field cannot hold it; readers take it from the pax record.
        assert_eq!(e.header().uid().expect("uid"), 3_000_000);
        let pax: Vec<(String, String)> = e
            .pax_extensions()
            .expect("pax")
            .expect("has pax")
            .map(|x| {
                let x = x.expect("record");
                (
                    x.key().expect("k").to_string(),
                    x.value().expect("v").to_string(),
                )
            })
            .collect();
        assert!(pax.contains(&("uid".into(), "3000000".into())), "{pax:?}");
        assert!(
            pax.iter()
                .any(|(k, v)| k == "uname" && v.starts_with("a-very-long"))
        );
        let mut s = String::new();
        e.read_to_string(&mut s).expect("read");
        assert_eq!(s, "hello");
        assert!(entries.next().is_none());
    }
}
