//! What one run reports to its caller: printed by `coffer backup`, kept by the
//! service for its API, and recorded as the job's status.

use super::RunStatus;
use crate::pipeline::Uploaded;
use serde::Serialize;

/// The result of one job run, for output and (later) metrics.
#[derive(Debug, Serialize)]
pub struct JobRun {
    pub job: String,
    pub snapshot: String,
    /// `success`, `partial` (some targets failed) or `failed`.
    pub status: RunStatus,
    pub error: Option<String>,
    pub duration_seconds: f64,
    /// Latest minus earliest consistency instant of the sources.
    pub skew_seconds: f64,
    /// From the earliest instant to the latest moment any source's state could
    /// still change (instant + the source's window): what the snapshot spans.
    pub window_seconds: f64,
    pub sources: Vec<SourceRun>,
    pub targets: Vec<TargetRun>,
    pub warnings: Vec<String>,
    /// What the run did besides the snapshot that the operator may want to know,
    /// but need not act on (the snapshots retention forgot).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Hooks that failed after the snapshot (the snapshot itself stands).
    pub hook_errors: Vec<String>,
    /// The run failed in a way a later run could get past (`run::retry`).
    #[serde(skip)]
    pub retryable: bool,
    /// A target was out because its local directory is missing: `coffer backup`
    /// exits 2 (a setup problem, like a bad config) rather than 1.
    #[serde(skip)]
    pub missing_root: bool,
    /// The job's `[check]` on what this snapshot captured (`run::check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::restore::db_check::DbCheckReport>,
}

#[derive(Debug, Serialize)]
pub struct SourceRun {
    pub name: String,
    pub files: usize,
    pub bytes_read: u64,
    /// What the snapshot holds of the source: its files' sizes, or the dump's
    /// bytes; the next run's progress estimate.
    pub data_bytes: u64,
    pub plaintext_size: u64,
    pub stored_size: u64,
    /// When the source's state was fixed (or its read began).
    #[serde(with = "time::serde::rfc3339")]
    pub consistency_instant: time::OffsetDateTime,
    /// 0 when the state was fixed at that instant, else how long it was read.
    pub window_seconds: f64,
    /// Format 2: how the files' contents were found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packed: Option<PackedRun>,
}

/// A packed source's files by what the run did with them.
#[derive(Debug, Clone, Serialize)]
pub struct PackedRun {
    /// Same path and stat as in the last snapshot: not read.
    pub unchanged_files: u64,
    /// Read, and their content was stored already: not stored again.
    pub known_files: u64,
    /// Read and stored, with their bytes.
    pub new_files: u64,
    pub new_bytes: u64,
    /// Packs written, and packs the snapshot references in all.
    pub new_packs: u64,
    pub packs: u64,
}

#[derive(Debug, Serialize)]
pub struct TargetRun {
    pub name: String,
    pub description: String,
    pub committed: bool,
    pub error: Option<String>,
    /// How each object reached this target (parts, largest part), for operators
    /// tuning `part_size` and `max_parts`.
    pub uploads: Vec<ObjectUpload>,
}

#[derive(Debug, Serialize)]
pub struct ObjectUpload {
    pub key: String,
    #[serde(flatten)]
    pub upload: Uploaded,
}
