//! Writes a POSIX (ustar + pax) tar stream, entry by entry, into any `Write`.
//!
//! Hand-rolled around `tar::Header` because the directory source must write the
//! header, then the bytes it reads and hashes in one pass, and must be able to pad a
//! file that shrank while being read; `tar::Builder` wants a reader up front.
//! Anything that does not fit ustar (long names and link targets, big sizes, ids,
//! negative times) goes into a pax extended header, which GNU tar and bsdtar read.
//! So do extended attributes, as `SCHILY.xattr.<name>` records with the raw value
//! (what `tar --xattrs` writes and reads), and POSIX ACLs a second time as text in
//! `SCHILY.acl.access` / `SCHILY.acl.default`: GNU tar restores ACLs only from
//! those (`--acls`), never from the `system.posix_acl_*` attributes.
//!
//! The `tar` crate reads pax records line by line, not by their length, so a value
//! holding a newline (binary ACLs and capabilities often do; a user's attribute
//! can hold `\n14 path=x\n` on purpose) reads as broken or forged records. Hence
//! attribute records come last, after a `path` (and `linkpath`) record always
//! written with them: the crate takes the first `path` it finds, and stops looking
//! for `size`, `uid` and the others at the first broken record. coffer's restore
//! takes attribute values from the manifest, never from these records.

use crate::fs::acl;
use crate::fs::xattr::{self, Xattrs};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tar::{EntryType, Header};

const BLOCK: u64 = 512;
const USTAR_MAX_NUM: u64 = 0o7777777; // 7 octal digits: uid, gid
const USTAR_MAX_SIZE: u64 = 0o77777777777; // 11 octal digits: size, mtime
/// An ACL's text form is left out above this (thousands of entries): the raw
/// attribute is still there, and the pax header stays well under what a restore
/// accepts (`tar_guard::MAX_META`, 1 MiB).
const MAX_ACL_TEXT: usize = 64 << 10;

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
    pub xattrs: &'a Xattrs,
    /// Names of the ids the ACLs name, for their text form.
    pub acl_names: &'a BTreeMap<String, String>,
}

impl<'a> HeaderSpec<'a> {
    /// The header of a recorded entry, as the directory source writes it (and as
    /// format 2's restore writes it again from the manifest).
    pub fn of(e: &'a crate::tree::entry::FileEntry) -> HeaderSpec<'a> {
        use crate::tree::entry::EntryKind;
        let path = if e.path.is_root() {
            b"./".as_slice()
        } else {
            e.path.as_bytes()
        };
        HeaderSpec {
            path,
            kind: match e.kind {
                EntryKind::Dir => EntryType::Directory,
                EntryKind::File => EntryType::Regular,
                EntryKind::Symlink => EntryType::Symlink,
                EntryKind::Hardlink => EntryType::Link,
                EntryKind::Fifo => EntryType::Fifo,
                EntryKind::Char => EntryType::Char,
                EntryKind::Block => EntryType::Block,
            },
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            user: e.user.as_deref(),
            group: e.group.as_deref(),
            mtime: e.mtime,
            size: e.size,
            link: e.link.as_ref().map(crate::tree::entry::RawPath::as_bytes),
            rdev: e.rdev,
            xattrs: &e.xattrs,
            acl_names: &e.acl_names,
        }
    }
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

/// The `SCHILY.acl.*` and `SCHILY.xattr.*` records of an entry.
fn xattr_records(pax: &mut Vec<u8>, spec: &HeaderSpec<'_>) {
    for (name, key) in [
        (xattr::ACCESS_ACL, "SCHILY.acl.access"),
        (xattr::DEFAULT_ACL, "SCHILY.acl.default"),
    ] {
        let Some(entries) = spec.xattrs.get(name).and_then(|v| acl::parse(&v.0)) else {
            continue;
        };
        let text = acl::to_text(&entries, |tag, id| {
            acl::name_key(tag, id).and_then(|k| spec.acl_names.get(&k).cloned())
        });
        if text.len() <= MAX_ACL_TEXT {
            pax_record(pax, key, text.as_bytes());
        }
    }
    for (name, value) in spec.xattrs {
        pax_record(pax, &format!("SCHILY.xattr.{name}"), &value.0);
    }
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out, pending: 0 }
    }

    /// Writes the header(s) for an entry; its `size` bytes of data follow via `data`.
    pub fn header(&mut self, spec: &HeaderSpec<'_>) -> io::Result<()> {
        self.header_with(spec, Vec::new())
    }

    /// The header of a sparse file in the PAX 1.0 sparse format (what GNU tar
    /// writes with `--sparse --sparse-version=1.0` and GNU tar and bsdtar restore
    /// as sparse files), and the map of its data that starts the entry. `map` is
    /// (offset, length) of each piece of data; `spec.size` is the file's size. The
    /// pieces' bytes, one after the other, follow via `data`.
    pub fn sparse_header(&mut self, spec: &HeaderSpec<'_>, map: &[(u64, u64)]) -> io::Result<()> {
        let mut block = format!("{}\n", map.len());
        for (off, len) in map {
            block.push_str(&format!("{off}\n{len}\n"));
        }
        let mut block = block.into_bytes();
        block.resize(block.len().div_ceil(BLOCK as usize) * BLOCK as usize, 0);
        let data: u64 = map.iter().map(|(_, len)| len).sum();
        let real = Path::new(std::ffi::OsStr::from_bytes(spec.path));
        let name = real.file_name().map(|n| n.as_bytes()).unwrap_or(b"file");
        let mut fake = match real.parent().map(|p| p.as_os_str().as_bytes()) {
            Some(p) if !p.is_empty() => [p, b"/"].concat(),
            _ => Vec::new(),
        };
        fake.extend_from_slice(b"GNUSparseFile.0/");
        fake.extend_from_slice(name);
        let mut pax = Vec::new();
        pax_record(&mut pax, "GNU.sparse.major", b"1");
        pax_record(&mut pax, "GNU.sparse.minor", b"0");
        pax_record(&mut pax, "GNU.sparse.name", spec.path);
        pax_record(
            &mut pax,
            "GNU.sparse.realsize",
            spec.size.to_string().as_bytes(),
        );
        let stored = HeaderSpec {
            path: &fake,
            size: block.len() as u64 + data,
            ..spec.clone()
        };
        self.header_with(&stored, pax)?;
        self.data(&block)
    }

    fn header_with(&mut self, spec: &HeaderSpec<'_>, mut pax: Vec<u8>) -> io::Result<()> {
        let mut h = Header::new_ustar();
        h.set_entry_type(spec.kind);
        let xattrs = !spec.xattrs.is_empty();
        if h.set_path(Path::new(std::ffi::OsStr::from_bytes(spec.path)))
            .is_err()
        {
            pax_record(&mut pax, "path", spec.path);
            h.set_path("coffer-long-name")?;
        } else if xattrs {
            pax_record(&mut pax, "path", spec.path);
        }
        if let Some(link) = spec.link {
            if h.set_link_name(Path::new(std::ffi::OsStr::from_bytes(link)))
                .is_err()
            {
                pax_record(&mut pax, "linkpath", link);
                h.set_link_name("coffer-long-link")?;
            } else if xattrs {
                pax_record(&mut pax, "linkpath", link);
            }
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
        xattr_records(&mut pax, spec);

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

    /// The writer entries go to (format 2's pack writer says where it is).
    pub fn get_ref(&self) -> &W {
        &self.out
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
#[path = "tar_writer_tests.rs"]
mod tests;
