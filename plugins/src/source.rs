//! The Source trait: one thing a job backs up.
//!
//! A run calls `freeze` on every source of a job concurrently, waits until all have
//! reached their consistency point, then calls `stream` on each in parallel. Sources
//! write plaintext; compression, encryption and upload are the agent's business.

use crate::directory::DirectorySource;
use crate::entry_log::EntryLog;
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
    fn kind(&self) -> coffer_config::SourceType;
    /// File extension of the plaintext stream (`tar`, `dump`, `sql`, ...).
    fn extension(&self) -> &str;
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

/// What sources may need from the run: the async runtime (database drivers) and a
/// private scratch directory (online copies).
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub rt: tokio::runtime::Handle,
    pub tmp_dir: PathBuf,
}

/// Builds the source a config entry describes.
pub fn open_source(
    source: &coffer_config::Source,
    ctx: &SourceContext,
) -> Result<Box<dyn Source>, SourceError> {
    use coffer_config::SourceKind as K;
    let name = source.name.clone();
    Ok(match &source.kind {
        K::Directory(d) => Box::new(DirectorySource::new(&name, d, ctx)?),
        K::Postgres(d) => Box::new(crate::postgres::PostgresSource::new(
            name,
            d.clone(),
            ctx.clone(),
        )),
        K::Mysql(d) => Box::new(crate::mysql::MysqlSource::new(name, d.clone(), ctx.clone())),
        K::Sqlite(s) => Box::new(crate::sqlite::SqliteSource::new(
            name,
            s.clone(),
            ctx.clone(),
        )),
        K::Redis(r) => Box::new(crate::redis_rdb::RedisSource::new(name, r.clone())),
        K::Command(c) => Box::new(crate::command::CommandSource::new(name, c.clone())),
    })
}
