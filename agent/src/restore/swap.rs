//! Over 400 lines: the journal, the swap and its recovery are one crash-safe protocol, read together.
//!
//! Replacing a destination's contents with a fully unpacked staging folder
//! (`restore --force`) so that a crash at any instant leaves something the next
//! `coffer restore` can turn into exactly the old or exactly the new contents.
//!
//! Nothing is deleted until the swap is committed: the old top-level entries are
//! renamed into `dest/.coffer-old-<id>/`, the staged ones renamed into `dest`, and a
//! small journal `dest/.coffer-swap-<id>.json` records the phase. Renames stay inside
//! `dest` (which may be a mount point, so nothing can go next to it) and cost one
//! metadata update per top-level entry, however large the trees are. The journal
//! lives beside the data rather than in `state_dir` so that it travels with the
//! destination and is found by whoever restores into it next, whatever config or
//! state directory they use. The restored data is flushed (syncfs) before the first
//! journal, and each phase change is made durable (the directories touched so far
//! are fsync'd, then the journal is written to a temporary name, fsync'd, renamed and
//! the directory fsync'd), so after a power cut the journal never claims more than
//! the disk holds.
//!
//! Recovery: before the commit the swap is rolled back (the previous contents were
//! what the application ran on, and the new tree has not been checked in place or
//! given its root attributes), after it the removal of the old tree is finished.
//! Rolling back first records that the new entries are out of the way, so a crash
//! during recovery is itself recoverable and never takes an old entry for a new one.
//! The destination is locked (flock on the directory) while any of this runs, so two
//! restores into one place cannot undo each other's work.
//!
//! Over 400 lines on purpose: the swap and its recovery are one state machine
//! (every phase the swap writes is a phase recovery must read back), and they are
//! kept in one file so that they change together.

use super::remove_tree::remove_tree;
use crate::report::{Report, Work};
use anyhow::{Context, Result, bail};
use coffer_plugins::RawPath;
use nix::fcntl::{OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const STAGING_PREFIX: &str = ".coffer-restore-";
const OLD_PREFIX: &str = ".coffer-old-";
const JOURNAL_PREFIX: &str = ".coffer-swap-";
const JOURNAL_SUFFIX: &str = ".json";
const JOURNAL_VERSION: u32 = 1;

/// Name of the staging folder for snapshot `id` inside the destination.
pub fn staging_name(id: &str) -> String {
    format!("{STAGING_PREFIX}{id}")
}

fn old_name(id: &str) -> String {
    format!("{OLD_PREFIX}{id}")
}

fn journal_name(id: &str) -> String {
    format!("{JOURNAL_PREFIX}{id}{JOURNAL_SUFFIX}")
}

/// Whether a top-level name is one of coffer's own bookkeeping entries, which are
/// never part of the old or new contents.
pub fn is_own(name: &OsStr) -> bool {
    let b = name.as_bytes();
    [STAGING_PREFIX, OLD_PREFIX, JOURNAL_PREFIX]
        .iter()
        .any(|p| b.starts_with(p.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Phase {
    /// Old entries are being renamed into the old folder; no new entry is in `dest`.
    MovingAside,
    /// Every old entry is in the old folder; new entries are being renamed in.
    MovingIn,
    /// Recovery: every new entry is back in staging; old entries are going back.
    RollingBack,
    /// Every new entry is in `dest`; what is left is removing the old folder.
    Committed,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::MovingAside => "moving the previous contents aside",
            Phase::MovingIn => "moving the new contents in",
            Phase::RollingBack => "rolling back",
            Phase::Committed => "removing the previous contents after the swap",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// An unknown version is refused rather than guessed at.
    version: u32,
    snapshot: String,
    phase: Phase,
    /// Top-level names of the previous contents.
    old: Vec<RawPath>,
    /// Top-level names of the new contents.
    new: Vec<RawPath>,
}

/// An exclusive lock on a destination directory, held while its contents may be
/// swapped or recovered; released by the kernel if the process dies.
#[derive(Debug)]
pub struct DestLock {
    pub(super) dir: File,
    pub(super) path: PathBuf,
    /// The restore's progress: each step names its phase there.
    pub(super) work: Arc<Work>,
}

impl DestLock {
    pub fn take(dest: &Path, work: &Arc<Work>) -> Result<DestLock> {
        let dir = File::open(dest).with_context(|| format!("cannot open {}", dest.display()))?;
        match dir.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another coffer restore is writing into {}; wait for it to finish",
                dest.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", dest.display()));
            }
        }
        Ok(DestLock {
            dir,
            path: dest.to_path_buf(),
            work: work.clone(),
        })
    }

    fn sync(&self) -> Result<()> {
        self.dir
            .sync_all()
            .with_context(|| format!("cannot fsync {}", self.path.display()))
    }
}

/// Opens coffer's own folder `name` in the destination without following a symlink
/// put in its place.
fn open_sub(lock: &DestLock, name: &str) -> Result<File> {
    openat(
        &lock.dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .with_context(|| format!("cannot open {}", lock.path.join(name).display()))
}

/// Renames `name` from one directory to another, refusing to replace anything: a
/// name that is unexpectedly taken must stop the swap, not silently lose an entry.
fn move_entry(
    from: &File,
    from_path: &Path,
    to: &File,
    to_path: &Path,
    name: &OsStr,
) -> Result<()> {
    renameat2(from, name, to, name, RenameFlags::RENAME_NOREPLACE).with_context(|| {
        format!(
            "cannot move {} to {}",
            from_path.join(name).display(),
            to_path.join(name).display()
        )
    })
}

fn list(dir: &Path, keep: impl Fn(&OsStr) -> bool) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for item in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = item
            .with_context(|| format!("cannot read {}", dir.display()))?
            .file_name();
        if keep(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn write_journal(lock: &DestLock, j: &Journal) -> Result<()> {
    let name = journal_name(&j.snapshot);
    let tmp = lock.path.join(format!("{name}.tmp"));
    let path = lock.path.join(&name);
    let bytes = serde_json::to_vec_pretty(j).context("cannot encode the swap journal")?;
    // A fresh file, never through a name someone else left there (a symlink would
    // have root write wherever it points).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", tmp.display()));
        }
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename {}", tmp.display()))?;
    lock.sync()
}

fn remove_journal(lock: &DestLock, id: &str) -> Result<()> {
    let path = lock.path.join(journal_name(id));
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    lock.sync()
}

/// A swap whose new contents are in place and recorded as such; the old tree still
/// waits in its folder until `finish`.
#[derive(Debug)]
pub struct Committed<'a> {
    lock: &'a DestLock,
    id: String,
}

impl Committed<'_> {
    /// Removes the old contents and the journal: the swap is then complete.
    pub fn finish(self) -> Result<()> {
        finish_commit(self.lock, &self.id)
    }
}

fn finish_commit(lock: &DestLock, id: &str) -> Result<()> {
    lock.work.set_phase("removing old contents");
    remove_tree(lock, &old_name(id))?;
    remove_tree(lock, &staging_name(id))?;
    remove_journal(lock, id)
}

/// Swaps the complete staging folder `dest/.coffer-restore-<id>` into `dest`; every
/// other top-level entry (except coffer's own) is the old contents. On an error the
/// swap is rolled back before returning, so the old contents are in place again.
pub fn swap_in<'a>(lock: &'a DestLock, id: &str) -> Result<Committed<'a>> {
    let dest = &lock.path;
    let staging = staging_name(id);
    let old = old_name(id);
    let mut journal = Journal {
        version: JOURNAL_VERSION,
        snapshot: id.to_string(),
        phase: Phase::MovingAside,
        old: list(dest, |n| !is_own(n))?
            .iter()
            .map(|n| RawPath::from_bytes(n.as_bytes()))
            .collect(),
        new: list(&dest.join(&staging), |_| true)?
            .iter()
            .map(|n| RawPath::from_bytes(n.as_bytes()))
            .collect(),
    };
    // The new files' data must be on disk before the commit lets the old tree go,
    // or a power cut right after it could leave neither. One syncfs now, before the
    // first journal, keeps the swap window itself short; its cost is writing back
    // what the restore wrote, which the kernel would otherwise do a little later.
    lock.work.set_phase("writing to disk");
    nix::unistd::syncfs(&lock.dir)
        .with_context(|| format!("cannot sync the file system of {}", dest.display()))?;
    lock.work.set_phase("swapping");
    write_journal(lock, &journal)?;
    let moved = (|| -> Result<()> {
        std::fs::create_dir(dest.join(&old))
            .with_context(|| format!("cannot create {}", dest.join(&old).display()))?;
        let old_dir = open_sub(lock, &old)?;
        for name in &journal.old {
            move_entry(
                &lock.dir,
                dest,
                &old_dir,
                &dest.join(&old),
                name.as_path().as_os_str(),
            )?;
            lock.work.phase_done(1);
        }
        lock.sync()?;
        old_dir
            .sync_all()
            .with_context(|| format!("cannot fsync {}", dest.join(&old).display()))?;
        journal.phase = Phase::MovingIn;
        write_journal(lock, &journal)?;
        let staging_dir = open_sub(lock, &staging)?;
        for name in &journal.new {
            move_entry(
                &staging_dir,
                &dest.join(&staging),
                &lock.dir,
                dest,
                name.as_path().as_os_str(),
            )?;
            lock.work.phase_done(1);
        }
        lock.sync()?;
        staging_dir
            .sync_all()
            .with_context(|| format!("cannot fsync {}", dest.join(&staging).display()))?;
        journal.phase = Phase::Committed;
        write_journal(lock, &journal)
    })();
    if let Err(e) = moved {
        return Err(match roll_back(lock, journal) {
            Ok(()) => e.context(format!(
                "could not swap the restored contents into {}; the previous contents were put back",
                dest.display()
            )),
            Err(r) => e.context(format!(
                "could not swap the restored contents into {}, and rolling back failed too ({r:#}); \
                 the journal {} is kept: run coffer restore again to finish rolling back",
                dest.display(),
                dest.join(journal_name(id)).display()
            )),
        });
    }
    Ok(Committed {
        lock,
        id: id.to_string(),
    })
}

fn roll_back(lock: &DestLock, mut journal: Journal) -> Result<()> {
    let dest = &lock.path;
    let id = journal.snapshot.clone();
    let staging = staging_name(&id);
    let old = old_name(&id);
    lock.work.set_phase("rolling back");
    if journal.phase == Phase::MovingIn {
        // Every old entry is aside, so each new name found in `dest` is a new entry.
        let staging_path = dest.join(&staging);
        let staging_dir = open_sub(lock, &staging)?;
        for name in &journal.new {
            match renameat2(
                &lock.dir,
                name.as_path(),
                &staging_dir,
                name.as_path(),
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot move {} back to {}",
                            dest.join(name.as_path()).display(),
                            staging_path.display()
                        )
                    });
                }
            }
        }
        staging_dir
            .sync_all()
            .with_context(|| format!("cannot fsync {}", staging_path.display()))?;
        lock.sync()?;
    }
    if journal.phase != Phase::RollingBack {
        journal.phase = Phase::RollingBack;
        write_journal(lock, &journal)?;
    }
    let old_path = dest.join(&old);
    if old_path.exists() {
        let old_dir = open_sub(lock, &old)?;
        for name in list(&old_path, |_| true)? {
            move_entry(&old_dir, &old_path, &lock.dir, dest, &name)?;
        }
        lock.sync()?;
        std::fs::remove_dir(&old_path)
            .with_context(|| format!("cannot remove {}", old_path.display()))?;
    }
    lock.work.set_phase("removing unpacked contents");
    remove_tree(lock, &staging)?;
    remove_journal(lock, &id)
}

/// Finds what an interrupted restore left in `dest` and completes or rolls back its
/// swap; leftovers of an interrupted unpack are removed. Returns what was done, one
/// line per item, for the caller to tell the user.
pub fn recover_locked(lock: &DestLock) -> Result<Vec<String>> {
    let dest = &lock.path;
    let mut done = Vec::new();
    let names = list(dest, is_own)?;
    let mut journals = Vec::new();
    for n in &names {
        let s = n.to_string_lossy();
        if let Some(id) = s
            .strip_prefix(JOURNAL_PREFIX)
            .and_then(|r| r.strip_suffix(JOURNAL_SUFFIX))
            && crate::format::id::is_id(id)
        {
            journals.push(id.to_string());
        }
    }
    for id in &journals {
        let path = dest.join(journal_name(id));
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let journal: Journal = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a coffer swap journal", path.display()))?;
        if journal.version != JOURNAL_VERSION || journal.snapshot != *id {
            bail!(
                "{} was written by another coffer version (journal version {}, snapshot {}); \
                 recover with that version, or sort the folder out by hand",
                path.display(),
                journal.version,
                journal.snapshot
            );
        }
        let phase = journal.phase;
        if phase == Phase::Committed {
            finish_commit(lock, id).with_context(|| {
                format!(
                    "cannot finish the interrupted restore of snapshot {id} into {}",
                    dest.display()
                )
            })?;
            done.push(format!(
                "{}: an interrupted restore of snapshot {id} had already swapped its contents in; \
                 finished removing the previous contents (the root folder's owner, mode and times \
                 may not be the snapshot's; `coffer check` compares)",
                dest.display()
            ));
        } else {
            roll_back(lock, journal).with_context(|| {
                format!(
                    "cannot roll back the interrupted restore of snapshot {id} into {} (it was {}); \
                     the journal {} is kept",
                    dest.display(),
                    phase.describe(),
                    path.display()
                )
            })?;
            done.push(format!(
                "{}: an interrupted restore of snapshot {id} was {}; rolled it back, the previous \
                 contents are in place again",
                dest.display(),
                phase.describe()
            ));
        }
    }
    // Without a journal, a staging folder is an unpack that never reached the swap,
    // and a journal's temporary file one that was never renamed into force.
    for n in &names {
        let s = n.to_string_lossy();
        let path = dest.join(n);
        if let Some(id) = s.strip_prefix(STAGING_PREFIX)
            && crate::format::id::is_id(id)
            && !journals.iter().any(|j| j == id)
            && path.exists()
        {
            lock.work.set_phase("removing an unfinished unpack");
            remove_tree(lock, &staging_name(id))?;
            done.push(format!(
                "{}: removed {} left by an interrupted unpack of snapshot {id}",
                dest.display(),
                path.display()
            ));
        } else if s.starts_with(JOURNAL_PREFIX) && s.ends_with(".json.tmp") {
            // Possibly renamed into place by the recovery above meanwhile.
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()));
                }
                _ => {}
            }
        }
    }
    Ok(done)
}

/// `recover_locked` for a destination not yet locked by the caller, reached
/// through `work` (see `dest_root`) and known to the operator as `shown`. Says
/// what was done in notices.
pub fn recover(work: &Path, shown: &Path, report: &dyn Report) -> Result<()> {
    let progress = Work::new("restore", "", None);
    let lock = DestLock::take(work, &progress)?;
    let work = work.to_string_lossy();
    let shown = shown.to_string_lossy();
    for line in recover_locked(&lock)? {
        report.notice(&format!(
            "recovered: {}",
            line.replace(work.as_ref(), &shown)
        ));
    }
    Ok(())
}
