//! The command line, as clap types. Each subcommand's behaviour lives in
//! `commands/<name>.rs`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "Exit codes: 0 fine, 1 the work failed, 2 bad usage or config, \
3 a check found inconsistencies.";

#[derive(Debug, Parser)]
#[command(name = "coffer", version, about = "Backs up a database and its files at one instant: zstd, age, local and S3 targets", after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "COFFER_CONFIG", default_value = coffer_config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log lines as text (stderr; without timestamps under systemd) or JSON objects.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up jobs now (all jobs when none is named).
    Backup(BackupArgs),
    /// List committed snapshots.
    List(ListArgs),
    /// Restore a snapshot's sources, apply owners and modes, then check the result.
    Restore(RestoreArgs),
    /// Check stored snapshots: stored bytes against snapshot.json, or with an identity every file's content.
    Verify(VerifyArgs),
    /// Compare a directory on disk with a snapshot's manifest (exit 3 when anything differs).
    Check(CheckArgs),
    /// Run as a service: schedules, retention, /metrics, /healthz and /api/v1/jobs.
    Agent,
    /// Forget snapshots by each job's retention, remove folders of runs that never committed.
    Prune(PruneArgs),
    /// Create a new age identity (mode 0600) and print its public recipient.
    Keygen(KeygenArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout: `coffer man > /usr/local/share/man/man1/coffer.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Jobs to run; all jobs when none is given.
    pub jobs: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OwnerMode {
    /// By user and group name from the manifest, numeric id when the name is unknown here.
    Preserve,
    /// The numeric uid and gid recorded in the manifest.
    Numeric,
    /// Leave files owned by the user running the restore.
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
    /// (`uploads/2024/*.pdf`; a matching folder brings its contents). Repeatable;
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
    /// How to set owners; overrides a source's `restore.owner` policy.
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
    /// Job name, as in [jobs.NAME] of the config.
    #[arg(long)]
    pub job: String,
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

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the identity here (mode 0600, never overwritten); default: stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Make a snapshot signing key (ed25519) instead of an age identity: the backup
    /// host signs every snapshot with it; restores trust its public key. Needs
    /// --output (a backup also creates one at [encryption] signing_key on first use).
    #[arg(long, requires = "output")]
    pub signing: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print the resolved jobs.
    Check,
}
