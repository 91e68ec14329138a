//! Arguments of the commands that read a snapshot back and compare: restore,
//! verify, check; and which snapshots they accept (`TrustArgs`, shared by every
//! reading command).

use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OwnerMode {
    /// By user and group name from the manifest, numeric id when the name is unknown here.
    Preserve,
    /// The numeric uid and gid recorded in the manifest.
    Numeric,
    /// Leave files owned by the user running the restore (setuid/setgid bits and
    /// capabilities of files recorded with another owner are not restored).
    Skip,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Job name, as in [jobs.NAME] of the config.
    #[arg(long)]
    pub job: String,
    /// Snapshot id or `latest`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Target to restore from (default: the job's first target).
    #[arg(long)]
    pub target: Option<String>,
    /// Restore only these sources (repeatable; default: all).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Restore into DIR/<source> instead of each source's configured path.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Restore only the files and folders matching GLOB, a path inside the source
    /// (`uploads/2024/*.pdf`; a matching folder brings its contents), or
    /// `<source>/<path>` as ls and find print it (`storage/uploads/2024/*.pdf`). Repeatable;
    /// needs --to DIR and a format-2 snapshot. Only the matching files are read from
    /// the target.
    #[arg(long = "path", value_name = "GLOB")]
    pub paths: Vec<String>,
    /// Private identity (default: [encryption] identity_file).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Replace the contents of a non-empty destination (after the new contents are complete).
    #[arg(long)]
    pub force: bool,
    /// How to set owners; overrides a source's `restore.owner` policy. Setuid and
    /// setgid bits and file capabilities come back only where the owner and group
    /// end up as recorded.
    #[arg(long, value_enum)]
    pub owner: Option<OwnerMode>,
    /// Create device nodes found in the snapshot (refused by default).
    #[arg(long)]
    pub devices: bool,
    /// Restore the PostgreSQL or MySQL source into this database instead of the configured one.
    #[arg(long, value_name = "URL")]
    pub db_url: Option<String>,
    /// Let pg_restore drop and recreate existing objects (`--clean --if-exists`, in one transaction).
    #[arg(long)]
    pub clean: bool,
    /// Do not run the job's after_restore hooks.
    #[arg(long)]
    pub no_hooks: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// Which snapshots a reading command accepts (see `seal.rs`).
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Also accept snapshots signed by this key (`ed25519:...`, as printed by the
    /// backup host); for a new host that has no trusted_signers yet. Repeatable.
    #[arg(long = "trust-signer", value_name = "KEY")]
    pub trust_signers: Vec<coffer_config::Signer>,
    /// Accept snapshots without a signature (made by coffer before 0.2). Anyone who
    /// can write to the target can make one: use it only for snapshots you know.
    #[arg(long)]
    pub allow_unsigned: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Job name, as in [jobs.NAME] of the config (default: every job, each reported
    /// on its own; the exit code is the worst of them).
    #[arg(long)]
    pub job: Option<String>,
    /// Snapshot id, `latest` or `all`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Target to verify (default: every target of the job).
    #[arg(long)]
    pub target: Option<String>,
    /// Private identity: decrypt and check every file's size and BLAKE3 (default: [encryption] identity_file).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Only check stored bytes against snapshot.json, even when an identity is configured.
    #[arg(long)]
    pub stored_only: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Job name, as in [jobs.NAME] of the config.
    #[arg(long)]
    pub job: String,
    /// Source to check (default: every directory source).
    #[arg(long)]
    pub source: Option<String>,
    /// Snapshot id or `latest`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Target to read the snapshot from (default: the job's first target).
    #[arg(long)]
    pub target: Option<String>,
    /// Directory to check instead of the source's configured path (needs --source when the job has several).
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Only the database check ([jobs.NAME.check]): needs no snapshot and no identity.
    #[arg(long)]
    pub db_only: bool,
    /// Private identity (default: [encryption] identity_file).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}
