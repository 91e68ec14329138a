//! The Source trait: one thing a job backs up.
//!
//! A run calls `freeze` on every source of a job concurrently, waits until all have
//! reached their consistency point, then calls `stream` on each in parallel. Sources
//! write plaintext; compression, encryption and upload are the agent's business.

use crate::FileEntry;
use crate::directory::DirectorySource;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

/// Live counters a progress display or metrics may read while a source streams.
#[derive(Debug, Default)]
pub struct Progress {
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
    /// Directory sources: every entry written, in stream order.
    pub entries: Vec<FileEntry>,
    /// Facts for the manifest (server version, schema version, ...).
    pub facts: BTreeMap<String, String>,
    /// Things the operator should hear about that did not fail the run.
    pub warnings: Vec<String>,
    pub bytes_read: u64,
    pub changed: u64,
    pub vanished: u64,
    pub skipped: u64,
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
    #[error("source {name}: {message}")]
    Invalid { name: String, message: String },
}

impl SourceError {
    /// Whether running the job again could help without anyone changing anything.
    pub fn retryable(&self) -> bool {
        match self {
            SourceError::Unreadable { .. } | SourceError::Invalid { .. } => false,
            SourceError::Io { err, .. } | SourceError::Output { err, .. } => !matches!(
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
    fn kind(&self) -> &'static str;
    /// File extension of the plaintext stream (`tar`, `dump`, `sql`, ...).
    fn extension(&self) -> &'static str;
    /// Reach the consistency point. Returns the instant the data is frozen at, or
    /// `None` when the source is frozen by starting to read (a directory walk), in
    /// which case the run's barrier release time is the instant.
    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError>;
    /// Write the frozen state as plaintext to `out`.
    fn stream(
        &mut self,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError>;
}

/// Builds the source a config entry describes.
pub fn open_source(source: &coffer_config::Source) -> Result<Box<dyn Source>, SourceError> {
    match &source.kind {
        coffer_config::SourceKind::Directory(d) => {
            Ok(Box::new(DirectorySource::new(&source.name, d)?))
        }
    }
}
