//! Arguments of the commands about runs and what they left: backup, list,
//! status, stats.

use super::TrustArgs;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Jobs to run; all jobs when none is given.
    pub jobs: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show what would be read (per source: files, bytes; format 2: how many the
    /// index says are unchanged; databases: what would be dumped) and write
    /// nothing: no target writes, no state, index, status or lock file, no hooks
    /// run, no notifications sent, no filesystem snapshot taken.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) const STATUS_EXIT: &str = "Exit codes: 0 fine (a job that never ran too), 1 a status \
file could not be read (the job is shown as never run), 2 bad usage (an unknown job).";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this job (default: every job of the config).
    #[arg(long)]
    pub job: Option<String>,
    /// Print one JSON array, an object per job: job, last_run (null when it never
    /// ran: ended_at, outcome, duration_seconds, window_seconds, stored_bytes,
    /// snapshot, error),
    /// last_success, schedule, next_run, last_verify (at, mode, ok),
    /// last_deep_verify_success, last_stored_verify_success, verify_schedule,
    /// next_verify, snapshots (per target), last_check, runs (per outcome); times in
    /// RFC 3339 UTC.
    #[arg(long)]
    pub json: bool,
}

pub(super) const STATS_EXIT: &str = "Exit codes: 0 fine, 1 a target or a manifest could not be read \
(reported, the others still shown), 2 bad usage (an unknown job or target, a local \
target's directory missing, a snapshot not encrypted to the identity).";

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this job (default: every job of the config).
    #[arg(long)]
    pub job: Option<String>,
    /// Only this target (and the jobs that ship to it).
    #[arg(long)]
    pub target: Option<String>,
    /// Private identity: also read the manifests for the logical size and the dedup
    /// ratio (default: [encryption] identity_file, when it is on this host).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Print one JSON array, an object per job and target: job, target, snapshots,
    /// untrusted_snapshots, packs, pack_bytes, objects, object_bytes, stored_bytes,
    /// dead_bytes, unreferenced_packs, unreferenced_bytes, and with the identity
    /// logical (newest_snapshot, newest_bytes, all_bytes, dedup_ratio).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}
