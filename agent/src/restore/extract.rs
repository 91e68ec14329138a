//! Safe unpacking of a tar stream into a directory.
//!
//! The archive is untrusted input: absolute paths, `..` components, writing through
//! a symlink (a link to `/etc` followed by `link/passwd`), hard links to outside
//! files and device nodes are refused. Parents are checked with lstat and files are
//! created with O_EXCL|O_NOFOLLOW, so nothing is ever written outside `dest`.
//! Regular files are hashed as they are written.

use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tar::EntryType;

#[derive(Debug, Default)]
pub struct Extracted {
    /// Regular files: path -> (size, BLAKE3 hex).
    pub files: HashMap<Vec<u8>, (u64, String)>,
    /// Every other entry written (dirs, links, fifos, the root).
    pub others: HashSet<Vec<u8>>,
    /// Entries deliberately not created (device nodes without --devices).
    pub skipped: HashSet<Vec<u8>>,
    pub warnings: Vec<String>,
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

/// Makes sure every ancestor of `rel` below `dest` is a real directory (creating
/// missing ones), never a symlink. `verified` is the last parent found good:
/// archive order keeps siblings together, and nothing but this unpacking writes in
/// the private staging folder, so it stays good and need not be checked again.
fn prepare_parents(
    dest: &Path,
    rel: &Path,
    create: bool,
    verified: &mut Option<PathBuf>,
) -> Result<(), String> {
    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
    let Some(parent) = parent else { return Ok(()) };
    if verified.as_deref() == Some(parent) {
        return Ok(());
    }
    let mut cur = dest.to_path_buf();
    for c in parent.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_dir() => {}
            Ok(md) if md.file_type().is_symlink() => {
                return Err(format!(
                    "parent {} is a symlink: refusing to write through it",
                    cur.display()
                ));
            }
            Ok(_) => return Err(format!("parent {} is not a directory", cur.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&cur)
                    .map_err(|e| format!("cannot create {}: {e}", cur.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    *verified = Some(parent.to_path_buf());
    Ok(())
}

/// Called with each regular file, still open, its path in the archive and on disk.
pub type OnFile<'a> = dyn FnMut(&std::fs::File, &[u8], &Path) -> Result<()> + 'a;

/// Unpacks `stream` into `dest`; `on_file` is called with each regular file still
/// open after its content is written (to set its owner, mode and times).
pub fn extract(
    stream: impl Read,
    dest: &Path,
    allow_devices: bool,
    on_file: &mut OnFile<'_>,
) -> Result<Extracted> {
    let mut out = Extracted::default();
    let mut verified: Option<PathBuf> = None;
    let mut archive = tar::Archive::new(stream);
    let mut buf = vec![0u8; 1 << 20];
    let entries = archive.entries().context("cannot read the archive")?;
    for entry in entries {
        let mut entry = entry.context("cannot read the archive")?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
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
            out.others.insert(b".".to_vec());
            continue;
        };
        let key = rel.as_os_str().as_bytes().to_vec();
        prepare_parents(dest, &rel, true, &mut verified).map_err(refuse)?;
        let path = dest.join(&rel);
        match kind {
            EntryType::Directory => {
                match std::fs::symlink_metadata(&path) {
                    Ok(md) if md.is_dir() => {}
                    Ok(_) => return Err(refuse("exists and is not a directory".into())),
                    Err(_) => std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                }
                out.others.insert(key);
            }
            EntryType::Regular | EntryType::Continuous => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&path)
                    .map_err(|e| refuse(format!("cannot create: {e}")))?;
                let mut h = blake3::Hasher::new();
                let mut size = 0u64;
                loop {
                    let n = entry.read(&mut buf).context("cannot read the archive")?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    f.write_all(&buf[..n])
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    size += n as u64;
                }
                on_file(&f, &key, &path)?;
                out.files
                    .insert(key, (size, h.finalize().to_hex().to_string()));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("symlink without a target".into()))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| refuse(format!("cannot create symlink: {e}")))?;
                out.others.insert(key);
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("hard link without a target".into()))?;
                let trel = safe_relative(&target)
                    .map_err(|why| refuse(format!("hard link target: {why}")))?
                    .ok_or_else(|| refuse("hard link to the root".into()))?;
                prepare_parents(dest, &trel, false, &mut None).map_err(refuse)?;
                let tpath = dest.join(&trel);
                match std::fs::symlink_metadata(&tpath) {
                    Ok(md) if md.file_type().is_file() => {}
                    _ => {
                        return Err(refuse(format!(
                            "hard link target {} is not a restored file",
                            trel.display()
                        )));
                    }
                }
                std::fs::hard_link(&tpath, &path)
                    .map_err(|e| refuse(format!("cannot create hard link: {e}")))?;
                out.others.insert(key);
            }
            EntryType::Fifo => {
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| refuse(format!("cannot create fifo: {e}")))?;
                out.others.insert(key);
            }
            EntryType::Char | EntryType::Block => {
                if !allow_devices {
                    out.warnings.push(format!(
                        "{shown}: device node not created (pass --devices to restore it)"
                    ));
                    out.skipped.insert(key);
                    continue;
                }
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let sflag = if kind == EntryType::Char {
                    nix::sys::stat::SFlag::S_IFCHR
                } else {
                    nix::sys::stat::SFlag::S_IFBLK
                };
                nix::sys::stat::mknod(
                    &path,
                    sflag,
                    nix::sys::stat::Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| refuse(format!("cannot create device node: {e}")))?;
                out.others.insert(key);
            }
            other => {
                bail!("archive entry {shown:?}: unsupported type {other:?}; refusing to restore")
            }
        }
    }
    // Read to the end, so the stored bytes are checked against snapshot.json.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).context("cannot read the archive")?;
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
}
