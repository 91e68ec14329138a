//! Compares a directory on disk with a snapshot's manifest: missing and extra files,
//! changed content, wrong type, mode, owner, link target or extended attributes
//! (user.*, POSIX ACLs, file capabilities; see `xattrs`).
//!
//! Used by `coffer check` on a live system (re-reading every file) and by restore on
//! what it just wrote (whose content was hashed and matched while writing, so there
//! it checks presence and metadata only).

use super::in_order::InOrder;
use super::privileges::{self, OwnerIs};
use super::xattr_check::XattrCheck;
use coffer_config::RestorePolicy;
use coffer_plugins::exclude::Excludes;
use coffer_plugins::ids::IdCache;
use coffer_plugins::stat::Stat;
use coffer_plugins::walk_ahead::{self, Entry, WalkError, WalkOptions};
use coffer_plugins::{EntryKind, FileEntry, RawPath};
use serde::Serialize;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whose ownership a file should have: what a restore sets and a check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// By the recorded user/group name, the recorded id when the name is unknown here.
    ByName,
    /// The recorded numeric ids.
    Numeric,
    /// Do not compare owners (not root, or asked to skip).
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Read every file and compare its BLAKE3.
    Rehash,
    /// Sizes only: the content was verified another way.
    SizeOnly,
}

#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub policy: &'a RestorePolicy,
    pub owners: Owners,
    pub content: Content,
    pub excludes: Option<&'a Excludes>,
}

#[derive(Debug, Default, Serialize)]
pub struct TreeReport {
    pub source: String,
    pub path: String,
    pub checked: usize,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub content: Vec<String>,
    #[serde(rename = "type")]
    pub kind: Vec<String>,
    pub mode: Vec<String>,
    pub owner: Vec<String>,
    pub link: Vec<String>,
    /// Extended attributes missing, different or not in the snapshot.
    pub xattrs: Vec<String>,
    /// Files the snapshot itself marks `changed`: they kept changing while the
    /// backup read them, so what it holds of them is not one instant.
    pub changed: Vec<String>,
    pub notes: Vec<String>,
}

impl TreeReport {
    pub fn consistent(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.content.is_empty()
            && self.kind.is_empty()
            && self.mode.is_empty()
            && self.owner.is_empty()
            && self.link.is_empty()
            && self.xattrs.is_empty()
            && self.changed.is_empty()
    }

    /// The report for people, one line each: the differences, then the verdict.
    pub fn lines(&self) -> Vec<String> {
        let problems = [
            ("missing", &self.missing),
            ("extra", &self.extra),
            ("content", &self.content),
            ("type", &self.kind),
            ("mode", &self.mode),
            ("owner", &self.owner),
            ("link", &self.link),
            ("xattr", &self.xattrs),
        ];
        let mut out = Vec::new();
        for (what, list) in problems {
            for item in list {
                out.push(format!(
                    "  {what}: {}",
                    coffer_plugins::escape_controls(item)
                ));
            }
        }
        for c in &self.changed {
            out.push(format!(
                "  changed during backup: {}",
                coffer_plugins::escape_controls(c)
            ));
        }
        for n in &self.notes {
            out.push(format!("  note: {}", coffer_plugins::escape_controls(n)));
        }
        let count: usize = problems.iter().map(|(_, l)| l.len()).sum();
        let changed = match self.changed.len() {
            0 => String::new(),
            n => format!(
                "{n} file(s) kept changing while the backup read them: the snapshot holds \
                 them as last read, not as of one instant"
            ),
        };
        let (source, path, checked) = (&self.source, &self.path, self.checked);
        out.push(match (count, changed.is_empty()) {
            (0, true) => format!("source {source}: {path} consistent ({checked} entries checked)"),
            (0, false) => format!(
                "source {source}: {path} INCONSISTENT: as in the snapshot ({checked} entries \
                 checked), but {changed}"
            ),
            (_, true) => format!(
                "source {source}: {path} INCONSISTENT: {count} difference(s) in {checked} entries"
            ),
            (_, false) => format!(
                "source {source}: {path} INCONSISTENT: {count} difference(s) in {checked} \
                 entries, and {changed}"
            ),
        });
        out
    }
}

/// The mode a restored entry should end up with, once it is owned as `owner_is`
/// says (setuid, setgid and sticky bits need the recorded owner: `privileges`).
pub fn expected_mode(e: &FileEntry, policy: &RestorePolicy, owner_is: OwnerIs) -> u32 {
    let recorded = privileges::recorded_mode(e, owner_is);
    match e.kind {
        EntryKind::Dir => policy.dir_mode.unwrap_or(recorded),
        EntryKind::File | EntryKind::Hardlink => policy.file_mode.unwrap_or(recorded),
        _ => recorded,
    }
}

/// The uid/gid an entry should end up with, or `None` when owners are not compared.
pub fn expected_owner(
    e: &FileEntry,
    policy: &RestorePolicy,
    owners: Owners,
    ids: &mut IdCache,
) -> Option<(u32, u32)> {
    match owners {
        Owners::Ignore => None,
        Owners::Numeric => Some((e.uid, e.gid)),
        Owners::ByName => {
            if let Some(o) = &policy.owner {
                let uid = ids.uid(&o.user).unwrap_or(e.uid);
                let gid = o.group.as_deref().and_then(|g| ids.gid(g)).unwrap_or(e.gid);
                return Some((uid, gid));
            }
            let uid = e.user.as_deref().and_then(|u| ids.uid(u)).unwrap_or(e.uid);
            let gid = e.group.as_deref().and_then(|g| ids.gid(g)).unwrap_or(e.gid);
            Some((uid, gid))
        }
    }
}

fn kind_of(md: &Stat) -> EntryKind {
    let ft = md.file_type();
    if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_char_device() {
        EntryKind::Char
    } else if ft.is_block_device() {
        EntryKind::Block
    } else {
        EntryKind::File
    }
}

fn hash_file(mut f: std::fs::File) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Compares the tree under `root` with the manifest's entries. Both are in walk
/// order, so they are merged side by side: memory does not grow with the number of
/// files.
pub fn check_tree(
    source: &str,
    root: &Path,
    entries: impl Iterator<Item = std::io::Result<FileEntry>>,
    exp: &Expectations<'_>,
) -> anyhow::Result<TreeReport> {
    let mut report = TreeReport {
        source: source.to_string(),
        path: root.display().to_string(),
        ..TreeReport::default()
    };
    let mut manifest = InOrder::new(entries)?;
    let mut ids = IdCache::default();
    let mut xa = XattrCheck::default();
    let no_excludes = Excludes::default();
    // Walked ahead on another thread; when rehashing, files are opened and read in
    // ahead too, as in a backup.
    let walk = WalkOptions {
        root,
        one_file_system: false,
        excludes: exp.excludes.unwrap_or(&no_excludes),
        open_files: exp.content == Content::Rehash,
    };
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for item in walk_ahead::spawn(scope, walk) {
            let entry = match item {
                Ok(entry) => entry,
                Err(WalkError { path, err }) => {
                    report
                        .notes
                        .push(format!("cannot read {}: {err}", path.display()));
                    continue;
                }
            };
            // Calls that take a path get one that works at any depth.
            let sys = entry.sys_path().into_owned();
            let link = entry.md.is_symlink().then(|| entry.read_link());
            let Entry { rel, md, file, .. } = entry;
            let found = manifest.find(rel.as_bytes(), |w| {
                report.missing.push(w.path.to_string());
            })?;
            let shown = rel.to_string();
            let Some(w) = found else {
                report.extra.push(shown);
                continue;
            };
            report.checked += 1;
            if w.kind == EntryKind::File && w.changed {
                report.changed.push(format!(
                    "{shown}: changed while the backup read it; stored as last read \
                     ({} bytes)",
                    w.size
                ));
            }
            // Whether its recorded setuid/setgid bits and capability are expected
            // depends on the owner it has (`privileges`); looked up only for the
            // few entries that have any.
            let owner_is = match privileges::at_stake(&w, exp.policy).is_empty() {
                true => OwnerIs::Recorded,
                false => privileges::owner_is(&w, (md.uid(), md.gid()), exp.owners, &mut ids),
            };
            let found = Found {
                path: &sys,
                md: &md,
                file,
                link,
                owner_is,
            };
            compare(&mut report, found, &shown, &w, exp, &mut ids);
            if w.kind != EntryKind::Hardlink && kind_of(&md) == w.kind {
                xa.compare(&mut report, (&sys, &shown), &w, exp, owner_is, &mut ids);
            }
        }
        Ok(())
    })?;
    manifest.rest(|w| report.missing.push(w.path.to_string()))?;
    if xa.unsupported > 0 {
        report.notes.push(format!(
            "{} extended attributes (ACLs, capabilities, user.*) not compared: the \
             filesystem does not support them",
            xa.unsupported
        ));
    }
    Ok(report)
}

/// One entry found on disk.
struct Found<'a> {
    /// A path to it for calls (see `walk_ahead::Entry::sys_path`).
    path: &'a Path,
    md: &'a Stat,
    /// A regular file opened ahead, when its content is to be rehashed.
    file: Option<std::io::Result<std::fs::File>>,
    /// A symlink's target, read relative to its directory.
    link: Option<std::io::Result<std::path::PathBuf>>,
    /// Whether its owner on disk is the recorded one.
    owner_is: OwnerIs,
}

/// Compares one entry found on disk with its manifest entry.
fn compare(
    report: &mut TreeReport,
    found: Found<'_>,
    shown: &str,
    want: &FileEntry,
    exp: &Expectations<'_>,
    ids: &mut IdCache,
) {
    let md = found.md;
    let want_kind = if want.kind == EntryKind::Hardlink {
        EntryKind::File
    } else {
        want.kind
    };
    let got_kind = kind_of(md);
    if got_kind != want_kind {
        report
            .kind
            .push(format!("{shown}: is {got_kind:?}, expected {want_kind:?}").to_lowercase());
        return;
    }
    match want.kind {
        EntryKind::File => {
            if md.len() != want.size {
                report.content.push(format!(
                    "{shown}: size {} bytes, expected {}",
                    md.len(),
                    want.size
                ));
            } else if exp.content == Content::Rehash {
                let opened = found
                    .file
                    .unwrap_or_else(|| walk_ahead::open_nofollow(found.path));
                match opened.and_then(hash_file) {
                    Ok(h) if Some(&h) == want.blake3.as_ref() => {}
                    Ok(_) => report
                        .content
                        .push(format!("{shown}: content differs (BLAKE3)")),
                    Err(err) => report.notes.push(format!("{shown}: cannot read: {err}")),
                }
            }
        }
        EntryKind::Symlink => {
            let target = found.link.and_then(Result::ok);
            let got = target.as_ref().map(|t| t.as_os_str().as_bytes());
            if got != want.link.as_ref().map(RawPath::as_bytes) {
                report.link.push(format!(
                    "{shown}: points to {}, expected {}",
                    got.map(|g| String::from_utf8_lossy(g).into_owned())
                        .unwrap_or_default(),
                    want.link
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ));
            }
        }
        _ => {}
    }
    if want.kind != EntryKind::Symlink {
        let mode = md.mode() & 0o7777;
        let expected = expected_mode(want, exp.policy, found.owner_is);
        if mode != expected {
            // Bits the snapshot holds but this owner may not have: say why.
            let why = match found.owner_is == OwnerIs::Other && mode & !0o7000 == expected {
                true => {
                    " (setuid, setgid and a file's sticky bit are kept only with the \
                     recorded owner and group)"
                }
                false => "",
            };
            report
                .mode
                .push(format!("{shown}: {mode:04o}, expected {expected:04o}{why}"));
        }
    }
    if let Some((uid, gid)) = expected_owner(want, exp.policy, exp.owners, ids)
        && (md.uid() != uid || md.gid() != gid)
    {
        report.owner.push(format!(
            "{shown}: {}:{}, expected {uid}:{gid}",
            md.uid(),
            md.gid()
        ));
    }
}
