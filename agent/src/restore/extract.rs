//! Safe unpacking of a tar stream into a directory.
//!
//! The archive is untrusted input: absolute paths, `..` components, writing through
//! a symlink (a link to `/etc` followed by `link/passwd`), hard links to outside
//! files and device nodes are refused. Parents are opened one at a time with
//! O_NOFOLLOW (`dir_cursor`) and entries made relative to them, files with
//! O_EXCL|O_NOFOLLOW, so nothing is ever written outside `dest`, at any depth.
//!
//! The archive must hold exactly the manifest's entries, in the manifest's order (the
//! backup wrote both from one walk), with the manifest's content: regular files are
//! hashed as they are written. Matching in order needs no map of paths, so memory
//! does not grow with the number of files. A mismatch does not stop the unpacking at
//! once: every later entry still gets the safety checks, and the mismatch is the
//! error at the end; but from the first mismatch on no file content is written, so
//! the destination never grows past the sizes the manifest declares. In front of
//! the `tar` crate, `tar_guard` bounds what it would hold in memory. Extended
//! attributes are set from the manifest (`xattrs`), not from the archive's
//! `SCHILY.*` records, which the `tar` crate cannot read reliably (it splits them
//! at newlines) and which are there for GNU tar and bsdtar.
//!
//! Over 400 lines only with its unit tests; the code itself is under.

use super::dir_cursor::DirCursor;
use anyhow::{Context, Result, bail};
use coffer_plugins::{EntryKind, FileEntry};
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tar::EntryType;

#[derive(Debug)]
pub struct Extracted {
    pub warnings: Vec<String>,
    /// The matched entries other than regular files and hard links (directories,
    /// symlinks, ...), whose attributes are set after unpacking: kept on disk,
    /// since a manifest may list millions.
    pub others: super::others::Others,
}

/// Walks the manifest's entries alongside the archive's.
struct Expected<I> {
    entries: I,
    /// The first difference found; matching stops there.
    mismatch: Option<String>,
}

fn kind_name(kind: EntryType) -> Option<EntryKind> {
    Some(match kind {
        EntryType::Directory => EntryKind::Dir,
        EntryType::Regular | EntryType::Continuous => EntryKind::File,
        EntryType::Symlink => EntryKind::Symlink,
        EntryType::Link => EntryKind::Hardlink,
        EntryType::Fifo => EntryKind::Fifo,
        EntryType::Char => EntryKind::Char,
        EntryType::Block => EntryKind::Block,
        _ => return None,
    })
}

impl<I: Iterator<Item = io::Result<FileEntry>>> Expected<I> {
    /// The manifest entry for the next archive entry, if it is the same path and type.
    fn take(&mut self, key: &[u8], kind: EntryType, shown: &str) -> Result<Option<FileEntry>> {
        if self.mismatch.is_some() {
            return Ok(None);
        }
        let Some(want) = self
            .entries
            .next()
            .transpose()
            .context("cannot read the manifest")?
        else {
            self.mismatch = Some(format!("{shown}: in the archive but not in the manifest"));
            return Ok(None);
        };
        if want.path.as_bytes() != key {
            self.mismatch = Some(format!(
                "{shown}: in the archive where the manifest lists {}",
                want.path
            ));
            return Ok(None);
        }
        if kind_name(kind) != Some(want.kind) {
            self.mismatch = Some(format!(
                "{shown}: a {kind:?} in the archive, {:?} in the manifest",
                want.kind
            ));
            return Ok(None);
        }
        Ok(Some(want))
    }

    fn content(&mut self, want: &FileEntry, size: u64, hash: &str, shown: &str) -> bool {
        if want.size == size && want.blake3.as_deref() == Some(hash) {
            return true;
        }
        if self.mismatch.is_none() {
            self.mismatch = Some(format!("{shown}: content does not match the manifest"));
        }
        false
    }

    fn finish(mut self) -> Result<()> {
        if let Some(m) = self.mismatch {
            bail!("{m}");
        }
        if let Some(e) = self
            .entries
            .next()
            .transpose()
            .context("cannot read the manifest")?
        {
            bail!("{}: in the manifest but not in the archive", e.path);
        }
        Ok(())
    }
}

/// Whether a piece of a file is zeros only (cheap for the usual piece, which has
/// data at one end or the other).
fn all_zero(b: &[u8]) -> bool {
    b.first() == Some(&0) && b.last() == Some(&0) && b.iter().all(|&x| x == 0)
}

/// A relative path with no `..`, no root, no empty parts; `None` for the root itself.
pub fn safe_relative(raw: &[u8]) -> Result<Option<PathBuf>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let mut out = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path contains `..`".into()),
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// A safe relative path's parent (empty for a top-level name) and its last name.
fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or(rel.as_os_str()),
    )
}

fn is_type(st: &FileStat, t: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == t
}

/// Called with each regular file that matched its manifest entry, still open, and
/// its path on disk.
pub type OnFile<'a> = dyn FnMut(&std::fs::File, &FileEntry, &Path) -> Result<()> + 'a;

/// Unpacks `stream` into `dest`, matching it against `entries`; `on_file` is called
/// with each regular file still open after its content is written (to set its owner,
/// mode and times). The other entries are listed in an unnamed file in `spill`.
pub fn extract(
    stream: impl Read,
    dest: &Path,
    allow_devices: bool,
    entries: impl Iterator<Item = io::Result<FileEntry>>,
    on_file: &mut OnFile<'_>,
    spill: &Path,
) -> Result<Extracted> {
    let mut out = Extracted {
        warnings: Vec::new(),
        others: super::others::Others::new(spill),
    };
    let mut expected = Expected {
        entries,
        mismatch: None,
    };
    // Parents are opened one component at a time, never following a symlink, and
    // entries are made relative to them: safe, and at any depth (PATH_MAX).
    let mut cursor =
        DirCursor::open(dest).with_context(|| format!("cannot open {}", dest.display()))?;
    // Hard link targets, looked up the same way.
    let mut targets: Option<DirCursor> = None;
    let mut archive = tar::Archive::new(super::tar_guard::TarGuard::new(stream));
    let mut buf = vec![0u8; 1 << 20];
    let entries = archive.entries().context("cannot read the archive")?;
    for entry in entries {
        let mut entry = entry.context("cannot read the archive")?;
        let raw = entry.path_bytes().into_owned();
        let shown = coffer_plugins::escape_controls(&String::from_utf8_lossy(&raw)).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let refuse =
            |why: String| anyhow::anyhow!("archive entry {shown:?}: {why}; refusing to restore");
        let rel = safe_relative(&raw).map_err(refuse)?;
        let Some(rel) = rel else {
            if kind != EntryType::Directory {
                return Err(refuse("the root is not a directory".into()));
            }
            if let Some(root) = expected.take(b".", kind, &shown)? {
                out.others.push(root)?;
            }
            continue;
        };
        let want = expected.take(rel.as_os_str().as_bytes(), kind, &shown)?;
        let (parent, name) = split(&rel);
        cursor.enter(parent, true).map_err(refuse)?;
        let dir = cursor.dir();
        let path = cursor.shown(name);
        match kind {
            EntryType::Directory => match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if is_type(&st, SFlag::S_IFDIR) => {}
                Ok(_) => return Err(refuse("exists and is not a directory".into())),
                Err(_) => mkdirat(dir, name, Mode::from_bits_truncate(0o700))
                    .with_context(|| format!("cannot create {}", path.display()))?,
            },
            EntryType::Regular | EntryType::Continuous => {
                let f = std::fs::File::from(
                    openat(
                        dir,
                        name,
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(|e| refuse(format!("cannot create: {e}")))?,
                );
                // Content is written only for an entry that matches its manifest
                // entry in name, type and size: after a mismatch, or for a size the
                // manifest does not list, nothing is written, so a hostile archive
                // cannot fill the disk beyond what the manifest declares.
                let Some(want) = want else { continue };
                if let Some(map) = &want.sparse {
                    let data: u64 = map.iter().map(|(_, len)| len).sum();
                    if !coffer_plugins::is_valid_sparse_map(map, want.size) || entry.size() != data
                    {
                        expected.content(&want, entry.size(), "", &shown);
                        continue;
                    }
                    // The length first: a size this filesystem cannot hold fails
                    // here, before the holes are hashed.
                    f.set_len(want.size)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    let (got, hash) = coffer_plugins::sparse::read_pieces(
                        map,
                        want.size,
                        &mut entry,
                        &mut buf,
                        &mut |off, b| f.write_all_at(b, off),
                    )
                    .with_context(|| format!("cannot restore {}", path.display()))?;
                    let size = if got == data { want.size } else { got };
                    if expected.content(&want, size, hash.to_hex().as_str(), &shown) {
                        on_file(&f, &want, &path)?;
                    }
                    continue;
                }
                // A file that shrank while a backup read it into the stream has
                // zeros after its content (`padding`), which are not written.
                if want.size.checked_add(want.padding) != Some(entry.size()) {
                    expected.content(&want, entry.size(), "", &shown);
                    continue;
                }
                let mut h = blake3::Hasher::new();
                let mut size = 0u64;
                while size < want.size {
                    let room = (want.size - size).min(buf.len() as u64) as usize;
                    let n = entry
                        .read(&mut buf[..room])
                        .context("cannot read the archive")?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    // Zeros are left as a hole (the length is set below): a sparse
                    // file comes back sparse, not as gigabytes of zeros on disk.
                    if !all_zero(&buf[..n]) {
                        f.write_all_at(&buf[..n], size)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                    }
                    size += n as u64;
                }
                f.set_len(size)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                let hash = h.finalize().to_hex();
                if expected.content(&want, size, hash.as_str(), &shown) {
                    on_file(&f, &want, &path)?;
                }
                continue; // its attributes are set: not one of `others`
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("symlink without a target".into()))?;
                nix::unistd::symlinkat(OsStr::from_bytes(&target), dir, name)
                    .map_err(|e| refuse(format!("cannot create symlink: {e}")))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("hard link without a target".into()))?;
                let trel = safe_relative(&target)
                    .map_err(|why| refuse(format!("hard link target: {why}")))?
                    .ok_or_else(|| refuse("hard link to the root".into()))?;
                let (tparent, tname) = split(&trel);
                let found = match &mut targets {
                    Some(t) => t,
                    None => targets.insert(
                        DirCursor::open(dest)
                            .with_context(|| format!("cannot open {}", dest.display()))?,
                    ),
                };
                found.enter(tparent, false).map_err(refuse)?;
                match fstatat(found.dir(), tname, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if is_type(&st, SFlag::S_IFREG) => {}
                    _ => {
                        return Err(refuse(format!(
                            "hard link target {} is not a restored file",
                            trel.display()
                        )));
                    }
                }
                // linkat without AT_SYMLINK_FOLLOW links the name itself.
                nix::unistd::linkat(found.dir(), tname, dir, name, AtFlags::empty())
                    .map_err(|e| refuse(format!("cannot create hard link: {e}")))?;
            }
            EntryType::Fifo => {
                nix::unistd::mkfifoat(dir, name, Mode::from_bits_truncate(0o600))
                    .map_err(|e| refuse(format!("cannot create fifo: {e}")))?;
            }
            EntryType::Char | EntryType::Block => {
                if !allow_devices {
                    out.warnings.push(format!(
                        "{shown}: device node not created (pass --devices to restore it)"
                    ));
                    continue;
                }
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let sflag = if kind == EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                nix::sys::stat::mknodat(
                    dir,
                    name,
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| refuse(format!("cannot create device node: {e}")))?;
            }
            other => {
                bail!("archive entry {shown:?}: unsupported type {other:?}; refusing to restore")
            }
        }
        if let Some(want) = want
            && want.kind != EntryKind::Hardlink
        {
            out.others.push(want)?;
        }
    }
    // Read to the end, so the stored bytes are checked against snapshot.json.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).context("cannot read the archive")?;
    expected.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_relative(b"/etc/passwd").is_err());
        assert!(safe_relative(b"a/../../x").is_err());
        assert!(safe_relative(b"..").is_err());
        assert_eq!(safe_relative(b"./").expect("root"), None);
        assert_eq!(
            safe_relative(b"./a//b/").expect("ok"),
            Some(PathBuf::from("a/b"))
        );
    }

    fn entry(path: &str, kind: EntryKind, content: &[u8]) -> FileEntry {
        FileEntry {
            size: content.len() as u64,
            mode: 0o640,
            blake3: (kind == EntryKind::File).then(|| blake3::hash(content).to_hex().to_string()),
            ..FileEntry::bare(path, kind)
        }
    }

    type Files<'a> = &'a [(&'a str, &'a [u8])];

    fn archive(files: Files<'_>) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "./", io::empty()).expect("root");
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn run(tar: &[u8], entries: &[FileEntry]) -> (Result<Extracted>, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut applied = Vec::new();
        let spill = tempfile::tempdir().expect("tempdir");
        let r = extract(
            tar,
            dir.path(),
            false,
            entries.iter().cloned().map(Ok),
            &mut |_, e, _| {
                applied.push(e.path.to_string());
                Ok(())
            },
            spill.path(),
        );
        (r, applied)
    }

    #[test]
    fn the_archive_must_match_the_manifest_in_order() {
        let want = vec![
            entry(".", EntryKind::Dir, b""),
            entry("a", EntryKind::File, b"alpha"),
            entry("b", EntryKind::File, b"beta"),
        ];
        let (r, applied) = run(&archive(&[("a", b"alpha"), ("b", b"beta")]), &want);
        r.expect("matching archive");
        assert_eq!(applied, ["a", "b"]);

        let cases: [(Files<'_>, &str); 4] = [
            (
                &[("a", b"alpha"), ("b", b"BETA")],
                "b: content does not match the manifest",
            ),
            (
                &[("a", b"alpha")],
                "b: in the manifest but not in the archive",
            ),
            (
                &[("a", b"alpha"), ("b", b"beta"), ("c", b"x")],
                "c: in the archive but not in the manifest",
            ),
            (
                &[("b", b"beta"), ("a", b"alpha")],
                "b: in the archive where the manifest lists a",
            ),
        ];
        for (files, msg) in cases {
            let (r, _) = run(&archive(files), &want);
            let err = format!("{:#}", r.expect_err(msg));
            assert!(err.contains(msg), "{msg}: {err}");
        }
    }
}
