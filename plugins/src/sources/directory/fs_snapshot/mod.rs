//! Filesystem snapshots for directory sources: `snapshot = "btrfs"`, or a
//! `snapshot_command` and `release_command` pair for LVM, ZFS and the rest.
//!
//! A walk of a live tree is not one instant: files deleted or added while it runs
//! are missing or present depending on where the walk was. So a source that names
//! a snapshot takes it at the freeze barrier, beside the database's exported
//! snapshot, walks the snapshot's counterpart of `path` at leisure, and releases
//! the snapshot afterwards whatever happened: after the stream (success or
//! failure, SIGTERM included, which makes the stream fail), when the source is
//! dropped unread (another source failed) or dropped while a panic unwinds. What
//! a process killed outright held is in the journal (`journal`), and the next run
//! of the job releases it before it takes anything.
//!
//! The backup must not tell: entries are recorded relative to the walked root, the
//! manifest's origin stays the configured path, and messages name live paths.
//!
//! Just over 400 lines: one held snapshot's life (take, the earlier one, release,
//! drop) is one impl; its kinds and journal are already apart.

mod btrfs;
mod command;
mod journal;
mod leftovers;

pub use leftovers::release_leftovers;

use crate::sources::source::{SourceContext, SourceError, SourceOutcome};
use coffer_config::{DirectorySource, FsSnapshot};
use journal::Record;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// A snapshot being held for one source.
#[derive(Debug)]
struct Held {
    record: Record,
    journal: PathBuf,
    /// The counterpart of `path` inside the snapshot.
    read_root: PathBuf,
    /// The walk root is the subvolume's root, whose `.coffer-snapshots` the
    /// snapshot holds (empty): coffer's own, not the operator's data.
    hides_own_dir: bool,
}

/// A directory source's filesystem snapshot: configured or not, taken or not.
#[derive(Debug)]
pub(crate) struct TreeSnapshot {
    kind: Option<FsSnapshot>,
    job: String,
    source: String,
    live: PathBuf,
    state_dir: PathBuf,
    held: Option<Held>,
    /// btrfs: a snapshot taken before the databases froze, and when; the files
    /// their rows name that the later one lacks are read from it (`complete`).
    earlier: Option<(Held, OffsetDateTime)>,
    taken: bool,
    warnings: Vec<String>,
}

/// The name suffix of the snapshot taken before the databases' instant.
const EARLIER: &str = ".before";

impl TreeSnapshot {
    pub(crate) fn new(source: &str, cfg: &DirectorySource, ctx: &SourceContext) -> TreeSnapshot {
        TreeSnapshot {
            kind: cfg.snapshot.clone(),
            job: ctx.job.clone(),
            source: source.to_string(),
            live: cfg.path.clone(),
            state_dir: ctx.state_dir.clone(),
            held: None,
            earlier: None,
            taken: false,
            warnings: Vec::new(),
        }
    }

    /// Whether the tree read was fixed at one instant (a snapshot was taken).
    pub(crate) fn taken(&self) -> bool {
        self.taken
    }

    /// Takes the snapshot, if one is configured; returns the instant its contents
    /// are fixed at (once the snapshot exists, nothing written later is in it).
    pub(crate) fn take(&mut self) -> Result<Option<OffsetDateTime>, SourceError> {
        let held = match self.kind.clone() {
            None => return Ok(None),
            Some(FsSnapshot::Btrfs) => self.take_btrfs("")?,
            Some(FsSnapshot::Command { create, release }) => self.take_command(&create, release)?,
        };
        let instant = OffsetDateTime::now_utc();
        self.held = Some(held);
        self.taken = true;
        Ok(Some(instant))
    }

    /// btrfs only: a snapshot before the databases freeze. A row deleted, and
    /// then its file removed, between the databases' instant and the later
    /// snapshot is still in the database's snapshot; its file is in this one.
    /// (A `snapshot_command` is taken once: what it would do twice is the
    /// operator's script's business, and it is not told which one it takes.)
    pub(crate) fn take_earlier(&mut self) -> Result<(), SourceError> {
        if self.kind != Some(FsSnapshot::Btrfs) {
            return Ok(());
        }
        let held = self.take_btrfs(EARLIER)?;
        self.earlier = Some((held, OffsetDateTime::now_utc()));
        Ok(())
    }

    /// The counterpart of `path` in the earlier snapshot, and its instant.
    pub(crate) fn earlier_root(&self) -> Option<(PathBuf, OffsetDateTime)> {
        self.earlier
            .as_ref()
            .map(|(h, at)| (h.read_root.clone(), *at))
    }

    /// The configured, live path.
    pub(crate) fn live_root(&self) -> &Path {
        &self.live
    }

    fn invalid(&self, message: String) -> SourceError {
        SourceError::Invalid {
            name: self.source.clone(),
            message,
        }
    }

    fn io(&self, path: &Path, message: String) -> SourceError {
        SourceError::Io {
            name: self.source.clone(),
            path: path.to_path_buf(),
            err: std::io::Error::other(message),
        }
    }

    /// `suffix` tells the earlier snapshot's name and record from the later's.
    fn take_btrfs(&mut self, suffix: &str) -> Result<Held, SourceError> {
        let live = std::fs::canonicalize(&self.live).map_err(|err| SourceError::Io {
            name: self.source.clone(),
            path: self.live.clone(),
            err,
        })?;
        let root = btrfs::subvolume_root(&live).map_err(|e| {
            self.invalid(format!(
                "snapshot = \"btrfs\": {}: {e}",
                self.live.display()
            ))
        })?;
        let rel = live
            .strip_prefix(&root)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let named = format!("{}{suffix}", self.source);
        let snapshot = btrfs::snapshot_path(&root, &self.job, &named);
        if snapshot.exists() {
            // Our name, and the job lock is held: a crashed run's, its record lost.
            btrfs::delete(&snapshot).map_err(|e| {
                self.io(
                    &snapshot,
                    format!(
                        "a snapshot left by an earlier run is in the way and cannot be removed: {e}"
                    ),
                )
            })?;
            self.warnings.push(format!(
                "removed {}, a snapshot left by an earlier run that did not finish",
                snapshot.display()
            ));
        }
        let record = Record::Btrfs {
            snapshot: snapshot.clone(),
        };
        let journal = journal::path_of(&self.state_dir, &self.job, &named);
        journal::write(&journal, &record).map_err(|err| SourceError::Io {
            name: self.source.clone(),
            path: journal.clone(),
            err,
        })?;
        if let Err(e) = btrfs::create(&root, &snapshot) {
            let _ = journal::remove(&journal);
            return Err(self.io(&self.live, format!("cannot take a btrfs snapshot: {e}")));
        }
        Ok(Held {
            record,
            journal,
            read_root: snapshot.join(&rel),
            hides_own_dir: rel.as_os_str().is_empty(),
        })
    }

    fn env(&self) -> command::Env<'_> {
        command::Env {
            job: &self.job,
            source: &self.source,
            path: &self.live,
        }
    }

    fn take_command(
        &mut self,
        create: &[String],
        release: Vec<String>,
    ) -> Result<Held, SourceError> {
        let printed = command::create(create, &self.env())
            .map_err(|e| self.io(&self.live, format!("snapshot_command: {e}")))?;
        let record = Record::Command {
            release,
            job: self.job.clone(),
            source: self.source.clone(),
            path: self.live.clone(),
            snapshot_path: printed.clone(),
        };
        let journal = journal::path_of(&self.state_dir, &self.job, &self.source);
        let problem = match command::unusable(&printed) {
            Some(why) => Some(self.invalid(format!(
                "snapshot_command `{}`: {why} (read in place of {})",
                create.join(" "),
                self.live.display()
            ))),
            None => journal::write(&journal, &record)
                .err()
                .map(|err| SourceError::Io {
                    name: self.source.clone(),
                    path: journal.clone(),
                    err,
                }),
        };
        if let Some(e) = problem {
            // The command may have made a snapshot all the same: release it now.
            if let Err(why) = release_record(&record) {
                self.warnings.push(why);
            }
            return Err(e);
        }
        Ok(Held {
            record,
            journal,
            read_root: printed,
            hides_own_dir: false,
        })
    }

    /// The directory to walk: inside the snapshot while one is held, else `path`.
    pub(crate) fn read_root(&self) -> PathBuf {
        self.held
            .as_ref()
            .map_or_else(|| self.live.clone(), |h| h.read_root.clone())
    }

    /// An exclude pattern for coffer's own directory, when the walk would meet it.
    pub(crate) fn own_dir_pattern(&self) -> Option<String> {
        self.held
            .as_ref()
            .filter(|h| h.hides_own_dir)
            .map(|_| format!("/{}/", btrfs::DIR))
    }

    /// Refuses to pass off a nested subvolume as an empty directory: a btrfs
    /// snapshot stops at subvolume boundaries, a walk of the live tree does not
    /// (unless `one_file_system`, which stops at both).
    pub(crate) fn check_entry(
        &self,
        abs: &Path,
        md: &crate::fs::stat::Stat,
        one_file_system: bool,
    ) -> Result<(), SourceError> {
        let Some(held) = &self.held else {
            return Ok(());
        };
        if one_file_system
            || !matches!(held.record, Record::Btrfs { .. })
            || !btrfs::is_nested_stub(md)
        {
            return Ok(());
        }
        Err(self.invalid(format!(
            "{} is a btrfs subvolume of its own, which a snapshot of the subvolume above it does not \
             hold; back it up as a source of its own (with snapshot = \"btrfs\") and exclude it \
             here, or set one_file_system = true",
            self.live_path(abs).display()
        )))
    }

    /// A path inside the snapshot as the live path it stands for.
    fn live_path(&self, p: &Path) -> PathBuf {
        match self.held.as_ref().map(|h| p.strip_prefix(&h.read_root)) {
            Some(Ok(rel)) if rel.as_os_str().is_empty() => self.live.clone(),
            Some(Ok(rel)) => self.live.join(rel),
            _ => p.to_path_buf(),
        }
    }

    /// Ends the read: messages name live paths, the snapshot is released, and a
    /// release that fails is a warning (the data read is fine; the next run of the
    /// job tries again).
    pub(crate) fn finish(
        &mut self,
        result: Result<SourceOutcome, SourceError>,
    ) -> Result<SourceOutcome, SourceError> {
        let Some(held) = &self.held else {
            return result;
        };
        let shown_root = held.read_root.display().to_string();
        let live = self.live.display().to_string();
        let result = match result {
            Ok(mut o) => {
                for w in &mut o.warnings {
                    if let Some(rest) = w.strip_prefix(&shown_root) {
                        *w = format!("{live}{rest}");
                    }
                }
                o.facts.insert(
                    "filesystem_snapshot".into(),
                    match held.record {
                        Record::Btrfs { .. } => "btrfs".into(),
                        Record::Command { .. } => "command".into(),
                    },
                );
                Ok(o)
            }
            Err(SourceError::Io { name, path, err }) => Err(SourceError::Io {
                name,
                path: self.live_path(&path),
                err,
            }),
            Err(SourceError::Unreadable { name, path, err }) => Err(SourceError::Unreadable {
                name,
                path: self.live_path(&path),
                err,
            }),
            Err(e) => Err(e),
        };
        let released = self.release();
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.extend(released.err());
        match result {
            Ok(mut o) => {
                o.warnings.extend(warnings);
                Ok(o)
            }
            Err(e) => {
                for w in warnings {
                    tracing::warn!("source {}: {w}", self.source);
                }
                Err(e)
            }
        }
    }

    /// Releases the snapshots held, if any, and forgets their records.
    fn release(&mut self) -> Result<(), String> {
        let later = self.held.take().map(|h| self.release_one(h));
        let earlier = self.earlier.take().map(|(h, _)| self.release_one(h));
        let failed: Vec<String> = [later, earlier]
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    fn release_one(&self, held: Held) -> Result<(), String> {
        release_record(&held.record)
            .map_err(|e| format!("{e}; the next run of job {} tries again", self.job))?;
        journal::remove(&held.journal).map_err(|e| {
            format!(
                "the snapshot is released but its record {} cannot be removed: {e}",
                held.journal.display()
            )
        })
    }
}

impl Drop for TreeSnapshot {
    /// The source was dropped with its snapshot held: it was never read (another
    /// source failed) or a panic is unwinding. Releases it all the same.
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!("source {}: {e}", self.source);
        }
        for w in self.warnings.drain(..) {
            tracing::warn!("source {}: {w}", self.source);
        }
    }
}

pub(super) fn release_record(record: &Record) -> Result<(), String> {
    match record {
        Record::Btrfs { snapshot } => btrfs::delete(snapshot).map_err(|e| {
            format!(
                "cannot remove the snapshot {}: {e}; remove it with `{}`",
                snapshot.display(),
                btrfs::delete_command(snapshot)
            )
        }),
        Record::Command {
            release,
            job,
            source,
            path,
            snapshot_path,
        } => {
            let env = command::Env { job, source, path };
            command::release(release, &env, snapshot_path).map_err(|e| {
                format!(
                    "release_command for the snapshot {}: {e}",
                    snapshot_path.display()
                )
            })
        }
    }
}
