//! The Source trait: one thing a job backs up, and everything coffer needs to know
//! about it that depends on its type: how to freeze and stream it, where it came
//! from, how it goes back (`plan_restore`), which database a check queries. The
//! agent only ever talks to this trait; a new source type is one module here and
//! one line in `registry`.
//!
//! A run calls `freeze` on every source of a job concurrently, waits until all have
//! reached their consistency point, then calls `stream` on each in parallel. Sources
//! write plaintext; compression, encryption and upload are the agent's business.

use crate::sources::dbquery::Endpoint;
use crate::sources::restore::{Restore, RestoreRequest};
use crate::tree::entry_log::EntryLog;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

/// Live counters a progress display or metrics may read while a source streams.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes read, plus the sizes of files a format-2 run passed over unchanged.
    pub bytes: AtomicU64,
    pub files: AtomicU64,
}

impl Progress {
    pub fn add(&self, bytes: u64, files: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.files.fetch_add(files, Ordering::Relaxed);
    }
}

/// What a source reports once its stream is complete.
#[derive(Debug, Default)]
pub struct SourceOutcome {
    /// Directory sources: every entry written, in stream order, kept on disk.
    pub entries: EntryLog,
    /// Facts for the manifest (server version, schema version, ...).
    pub facts: BTreeMap<String, String>,
    /// Things the operator should hear about that did not fail the run.
    pub warnings: Vec<String>,
    pub bytes_read: u64,
    /// The consistency instant, when the source learns it only while streaming
    /// (mysqldump's transaction starts when it does).
    pub instant: Option<OffsetDateTime>,
    pub changed: u64,
    pub vanished: u64,
    pub skipped: u64,
    /// The job's check query, answered inside this source's snapshot, when the
    /// run asked for it (`Source::check_in_snapshot`) and the type can.
    pub referenced: Option<Result<Vec<crate::sources::dbquery::Referenced>, String>>,
    /// Files a filesystem snapshot lacked (or held at another size) that the
    /// database's snapshot references, read from elsewhere (`complete_from_check`).
    pub completed: Vec<Completed>,
    /// The latest moment the state streamed could come from, when that is after
    /// the instant although the source was frozen (a file completed from the live
    /// tree): the run's window for this source then ends here.
    pub window_end: Option<OffsetDateTime>,
}

/// One file a directory source took from outside its filesystem snapshot,
/// because the database's snapshot references it and the snapshot lacked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// Relative to the source's path, as the check query gave it.
    pub path: String,
    pub from: CompletedFrom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletedFrom {
    /// The snapshot taken just before the database's instant: a file whose row
    /// was deleted, and the file removed, between the two instants.
    EarlierSnapshot,
    /// The live tree, read after both snapshots (an application that writes the
    /// file after committing its row).
    LiveTree,
}

impl CompletedFrom {
    pub fn describe(self) -> &'static str {
        match self {
            CompletedFrom::EarlierSnapshot => "from the snapshot taken before the database's",
            CompletedFrom::LiveTree => "from the live tree",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {name}: {}: cannot read: {err}; fix the permissions or set skip_unreadable = true", path.display())]
    Unreadable {
        name: String,
        path: PathBuf,
        err: io::Error,
    },
    #[error("source {name}: {}: {err}", path.display())]
    Io {
        name: String,
        path: PathBuf,
        err: io::Error,
    },
    #[error("source {name}: writing the backup stream failed: {err}")]
    Output { name: String, err: io::Error },
    #[error("source {name}: reading the snapshot failed: {err}")]
    Input { name: String, err: io::Error },
    #[error("source {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("source {name}: {program} failed ({detail})")]
    Dump {
        name: String,
        program: String,
        detail: String,
    },
    #[error("source {name}: {message}")]
    Database {
        name: String,
        message: String,
        retryable: bool,
    },
}

impl SourceError {
    /// Whether running the job again could help without anyone changing anything.
    pub fn retryable(&self) -> bool {
        match self {
            SourceError::Unreadable { .. } | SourceError::Invalid { .. } => false,
            SourceError::Dump { .. } => true,
            SourceError::Database { retryable, .. } => *retryable,
            SourceError::Io { err, .. }
            | SourceError::Output { err, .. }
            | SourceError::Input { err, .. } => !matches!(
                err.kind(),
                io::ErrorKind::PermissionDenied
                    | io::ErrorKind::NotFound
                    | io::ErrorKind::InvalidInput
            ),
        }
    }
}

pub trait Source: Send {
    fn name(&self) -> &str;
    /// The config `type`, recorded in the manifest.
    fn kind(&self) -> coffer_config::SourceType;
    /// File extension of the plaintext stream (`tar`, `dump`, `sql`, ...).
    fn extension(&self) -> &str;
    /// Reach the consistency point. Returns the instant the data is frozen at, or
    /// `None` when the source is frozen by starting to read (a directory walk), in
    /// which case the run's barrier release time is the instant.
    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError>;
    /// Whether the state `stream` reads was fixed at the consistency instant (an
    /// exported database snapshot, an RDB, a filesystem snapshot), so that reading
    /// it may take as long as it likes. `false` (the default, and the honest answer
    /// when in doubt) means the read itself spans time, as a walk of a live tree
    /// does: the run then records the read's duration as the source's window.
    fn frozen_at_instant(&self) -> bool {
        false
    }
    /// Write the frozen state as plaintext to `out`.
    fn stream(
        &mut self,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError>;
    /// Whether the source can keep its files in format 2's shared packs
    /// (`stream_packed`): a directory can, a database dump is one stream.
    fn packs(&self) -> bool {
        false
    }
    /// Format 2: walks the frozen state, putting new file contents into `sink`
    /// and recording every entry with where its content is.
    fn stream_packed(
        &mut self,
        _sink: &mut dyn crate::tree::content::ContentSink,
        _progress: &Progress,
    ) -> Result<SourceOutcome, SourceError> {
        Err(SourceError::Invalid {
            name: self.name().to_string(),
            message: format!("a {} source is not stored in packs", self.kind()),
        })
    }
    /// Where the data comes from, for the manifest: a path, a URL in its shown
    /// form, a command; never a credential.
    fn origin(&self) -> String;
    /// Plans putting a stream of this source back where it belongs, refusing
    /// before anything is written. A directory is restored as a tree by the
    /// agent, not through this.
    fn plan_restore(&self, _req: &RestoreRequest<'_>) -> Result<Box<dyn Restore>, SourceError> {
        Err(SourceError::Invalid {
            name: self.name().to_string(),
            message: format!("a {} source is not restored as one stream", self.kind()),
        })
    }
    /// The database a `[check]` query reaches, for a database source.
    fn endpoint(&self) -> Option<Endpoint<'_>> {
        None
    }
    /// Asks the source to run the job's check query inside the state it backs up
    /// (answered in `SourceOutcome::referenced`); false when its type cannot.
    fn check_in_snapshot(&mut self, _query: &str) -> bool {
        false
    }
    /// The work before the instant, so that `freeze` is as short as it can be.
    /// Called on every source before any freezes: databases first (connecting),
    /// then directories. `for_check`: the job's `[check]` names the directory as
    /// its files; with a btrfs snapshot it then takes an earlier one here, so that
    /// a file whose row is in the database's snapshot is in this one or in the one
    /// taken at the gate (see `complete_from_check`).
    fn prepare(&mut self, _for_check: bool) -> Result<(), SourceError> {
        Ok(())
    }
    /// The check query asked for by `check_in_snapshot`, answered now, after every
    /// source froze and before any streams; `None` when the type answers only
    /// while streaming (the answer then comes in `SourceOutcome::referenced`).
    fn answer_check(&mut self) -> Option<Result<Vec<crate::sources::dbquery::Referenced>, String>> {
        None
    }
    /// The files the check's database snapshot references (path relative to this
    /// source, size when known), given to the check's directory source before it
    /// streams: what its filesystem snapshot lacks or holds at another size is
    /// taken from the earlier snapshot or the live tree when found there whole.
    fn complete_from_check(&mut self, _referenced: &[crate::sources::dbquery::Referenced]) {}
}

/// Streams a whole file (an online copy, an RDB) into the backup with large reads.
pub(crate) fn copy_file(
    name: &str,
    path: &std::path::Path,
    out: &mut dyn Write,
    progress: &Progress,
) -> Result<u64, SourceError> {
    let io = |err| SourceError::Io {
        name: name.to_string(),
        path: path.to_path_buf(),
        err,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|err| SourceError::Output {
                name: name.to_string(),
                err,
            })?;
        total += n as u64;
        progress.add(n as u64, 0);
    }
    Ok(total)
}

/// What sources may need from the run: the async runtime (database drivers), a
/// private scratch directory (online copies), and the job and state directory a
/// filesystem snapshot is named after and recorded in (`fs_snapshot`).
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub rt: tokio::runtime::Handle,
    pub tmp_dir: PathBuf,
    pub job: String,
    pub state_dir: PathBuf,
}

impl SourceContext {
    /// The context of `job`, whose scratch directory is `state_dir/tmp`.
    pub fn for_job(rt: &tokio::runtime::Handle, state_dir: &std::path::Path, job: &str) -> Self {
        SourceContext {
            rt: rt.clone(),
            tmp_dir: state_dir.join("tmp"),
            job: job.to_string(),
            state_dir: state_dir.to_path_buf(),
        }
    }
}
