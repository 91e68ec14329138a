//! What the agent knows about each job, persisted in `state_dir/status/<job>.json`
//! after every run, so that metrics survive a restart and the CLI's runs count too.
//! Written atomically (temp file + rename); labels stay low-cardinality: job,
//! source, target, status; never snapshot ids or paths. The agent and CLI runs
//! update the same file, so every read-modify-write holds an exclusive lock on
//! `status/<job>.lock` (a separate file: the JSON is replaced by rename, and a lock
//! on a file that gets replaced would lock nothing).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod history;
mod recorded;
pub use history::{HISTORY, RunRecord, bounded_error};
pub use recorded::{Outcome, RecordedVerifyMode};

/// Fields missing from a file an older coffer wrote take their defaults, so that
/// adding a counter never resets the others.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct JobStatus {
    /// Unix seconds of the last run's end, whatever its outcome.
    pub last_run: Option<f64>,
    /// Unix seconds of the last run whose every target committed.
    pub last_success: Option<f64>,
    /// Unix seconds of the first such run (since issue 14; see
    /// `first_success_known` for a file from before).
    pub first_success: Option<f64>,
    /// `success`, `partial`, `failed` or `cancelled` (or a newer coffer's word).
    pub last_outcome: Option<Outcome>,
    pub last_error: Option<String>,
    pub last_snapshot: Option<String>,
    pub last_duration_seconds: f64,
    pub last_skew_seconds: f64,
    /// Written since issue 13; a status file from before reads as 0.
    #[serde(default)]
    pub last_window_seconds: f64,
    /// Files and data bytes (files' sizes, dumps' bytes) of the last snapshot a
    /// target committed: the next backup's progress estimate.
    #[serde(default)]
    pub last_files: u64,
    #[serde(default)]
    pub last_data_bytes: u64,
    /// Runs by outcome, since the state directory was created.
    pub runs: BTreeMap<Outcome, u64>,
    /// Runs skipped because the previous one was still going.
    pub skipped: u64,
    pub bytes_read: BTreeMap<String, u64>,
    pub bytes_stored: BTreeMap<String, u64>,
    /// Committed snapshots per target after the last run or prune.
    pub snapshots: BTreeMap<String, u64>,
    /// Format 2: stored bytes per target of packs no kept snapshot uses (an
    /// estimate), after the last run or prune.
    #[serde(default)]
    pub dead_bytes: BTreeMap<String, u64>,
    /// The job's `[check]` on the last committed snapshot, when it ran at backup time.
    pub last_check: Option<crate::format::CheckCounts>,
    pub last_verify: Option<f64>,
    /// `deep` or `stored`: what the last verify read.
    pub last_verify_mode: Option<RecordedVerifyMode>,
    /// Whether the last verify found every snapshot it read intact.
    pub last_verify_ok: Option<bool>,
    /// The last successful deep verify (decrypted, every file checked). Replaces
    /// `last_verify_success`, which counted stored-bytes verifies too: a file from
    /// before keeps that value unread rather than pass it off as a deep one.
    pub last_deep_verify_success: Option<f64>,
    /// The last successful stored-bytes verify (bytes against `snapshot.json`).
    pub last_stored_verify_success: Option<f64>,
    /// The last runs, oldest first, at most [`HISTORY`] (since the status page;
    /// a file from before reads as none).
    #[serde(deserialize_with = "history::bounded")]
    pub history: Vec<RunRecord>,
}

impl JobStatus {
    /// Adds a finished run to the history, which keeps the last [`HISTORY`].
    pub fn record_run(&mut self, run: RunRecord) {
        history::push(&mut self.history, run);
    }

    /// The history's record of the last run, when the file has one (written with
    /// it); a file from before the history has only the `last_*` fields.
    pub fn last_record(&self) -> Option<&RunRecord> {
        self.history.last().filter(|r| Some(r.end) == self.last_run)
    }
}

impl JobStatus {
    /// When the job first had a committed snapshot, or, for a status written
    /// before `first_success` existed, the earliest later time this file holds (a
    /// success or a verify, none of which can precede the first success): late
    /// rather than early, so that an alert counting from it never fires too soon.
    pub fn first_success_known(&self) -> Option<f64> {
        self.first_success.or_else(|| {
            [
                self.last_success,
                self.last_deep_verify_success,
                self.last_stored_verify_success,
            ]
            .into_iter()
            .flatten()
            .reduce(f64::min)
        })
    }
}

fn path_of(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join("status").join(format!("{job}.json"))
}

pub fn load(state_dir: &Path, job: &str) -> JobStatus {
    read(state_dir, job).ok().flatten().unwrap_or_default()
}

/// The job's status as its file holds it: `None` when there is no file (the job
/// never ran here), an error naming the file when it cannot be read or parsed.
/// Only reads: `coffer status` must not create the state directory.
pub fn read(state_dir: &Path, job: &str) -> Result<Option<JobStatus>> {
    let path = path_of(state_dir, job);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("{} is not a coffer status file", path.display()))
}

pub fn save(state_dir: &Path, job: &str, status: &JobStatus) -> Result<()> {
    let path = path_of(state_dir, job);
    coffer_plugins::fs::durable::replace_file(&path, &serde_json::to_vec_pretty(status)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Reads, changes and writes back one job's status, under the job's status lock so
/// that concurrent updates (the agent's scheduler, a CLI backup, a skipped run
/// counted while another finishes) never lose each other's changes.
pub fn update(
    state_dir: &Path,
    job: &str,
    change: impl FnOnce(&mut JobStatus),
) -> Result<JobStatus> {
    let dir = state_dir.join("status");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock_path = dir.join(format!("{job}.lock"));
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    // Blocking: an update takes milliseconds; the kernel drops the lock of a dead holder.
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let mut s = load(state_dir, job);
    change(&mut s);
    save(state_dir, job, &s)?;
    drop(lock);
    Ok(s)
}

pub fn now() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
