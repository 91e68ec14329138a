//! Arguments of the commands that look after a job's targets: prune, repair.

use super::TrustArgs;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this job (default: all).
    #[arg(long)]
    pub job: Option<String>,
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Let retention count and forget unsigned snapshots too (those made before
    /// coffer signed them); without it they are left alone.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) const COPY_EXIT: &str = "Exit codes: 0 every snapshot asked for is on the \
destination; 1 a snapshot was not copied (the destination refused, a read stopped: run it again \
to resume); 2 bad usage; 3 the source holds damage (coffer repair copies good copies back from \
another target).";

pub(super) const REPAIR_EXIT: &str = "Exit codes: 0 nothing damaged, or everything repaired; \
1 something could not be read or written (an unreachable target, a failed copy, the \
index); 2 bad usage (unknown job or target, --rebuild-index without an identity); 3 \
snapshots stay damaged (with --dry-run: anything is damaged). Run it again after a \
successful repair: it reports nothing to do.";

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Job name, as in [jobs.NAME] of the config.
    #[arg(long)]
    pub job: String,
    /// Check and repair only this target (the job's other targets still serve as
    /// sources of good copies).
    #[arg(long)]
    pub target: Option<String>,
    /// Report what would be copied and forgotten; write nothing to any target or
    /// to the index, take no lock.
    #[arg(long)]
    pub dry_run: bool,
    /// Private identity (default: [encryption] identity_file when it is readable):
    /// lists the files the damaged snapshots lose; needed by --rebuild-index.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Rebuild the job's local index from the newest trusted snapshot whose
    /// manifest reads, counting only packs intact on every target of the job (after
    /// a lost state_dir). The manifest lacks inode numbers and change times, so only
    /// "already stored" rows are made: the next backup reads every file once and
    /// stores only what is not in those packs. Replaces the index there is.
    #[arg(long)]
    pub rebuild_index: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}
