//! The command line, as clap types. Each subcommand's behaviour lives in
//! `cli/<name>.rs`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "Exit codes: 0 fine, 1 the work failed, 2 bad usage or config \
(or a local target's directory is missing: a disk not mounted), 3 a check found inconsistencies.\n\n\
Only backup (and the agent's runs) may create a local target's directory, and only with \
create = true in its [targets.NAME]; no other command creates anything on a target.";

#[derive(Debug, Parser)]
#[command(name = "coffer", version, about = "Backs up a database and its files at one instant: zstd, age, local and S3 targets", after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "COFFER_CONFIG", default_value = coffer_config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log lines as text (stderr; without timestamps under systemd) or JSON objects.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Progress of backup, restore and verify: a bar on a terminal (auto, and not
    /// with --json), JSON lines on stderr every second and at the end (json:
    /// progress, name, bytes, total_bytes, total_estimated, files, total_files,
    /// phase, elapsed_seconds, eta_seconds, done), or nothing.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub progress: crate::cli::progress::Mode,
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
    /// Show each job's last run, next run, last verify and snapshots per target.
    ///
    /// What the agent's status page shows, from the jobs' status files in the
    /// state directory (written by the agent's and the command line's runs): the
    /// last run (when, outcome, duration, error), the last success, the next
    /// scheduled run (from the cron; the agent adds up to `jitter`), the last
    /// verify (mode, result) and the last successful deep verify, the snapshots per
    /// target after the last run or prune, and the last backup-time check. Reads
    /// no target and needs no key; creates nothing (a job without a status file
    /// "never ran").
    #[command(after_help = STATUS_EXIT)]
    Status(StatusArgs),
    /// Show per job and target what is stored, and with the identity how much it holds.
    ///
    /// From the markers signed by a trusted key (no private key needed): snapshots,
    /// packs and their stored bytes, the snapshots' own objects, dead bytes (what no
    /// kept snapshot uses in the packs they reference, as prune estimates it) and
    /// unreferenced packs (prune deletes them once older than incomplete_after).
    /// With the identity (--identity, or [encryption] identity_file when that file
    /// is on this host), every snapshot's manifest is read too: the logical size of
    /// the newest snapshot and of all of them (files' and dumps' sizes), and the
    /// dedup ratio (logical size of all snapshots / stored bytes).
    #[command(after_help = STATS_EXIT)]
    Stats(StatsArgs),
    /// Restore a snapshot's sources, apply owners and modes, then check the result.
    Restore(RestoreArgs),
    /// Check stored snapshots of one job or every job: stored bytes against snapshot.json, or with an identity every file's content.
    Verify(VerifyArgs),
    /// Compare a directory on disk with a snapshot's manifest (exit 3 when anything differs).
    Check(CheckArgs),
    /// List the files and folders a snapshot holds, without restoring it.
    ///
    /// One line per entry: mode (`-rw-r-----`), owner (user:group by name as
    /// recorded, the number where there was none), size in bytes, mtime (UTC), and
    /// `<source>/<path>` (`-> target` for a symlink, `link to NAME` for a hard
    /// link). Control characters in names are shown escaped (`\n`). Needs the
    /// private identity: file names are in the encrypted manifest.
    #[command(after_help = BROWSE_EXIT)]
    Ls(LsArgs),
    /// Find the snapshots that hold files whose path matches a glob, oldest first.
    ///
    /// Reads every snapshot of the job on the target once. One line per match:
    /// snapshot id, mode, size, mtime (UTC), `<source>/<path>`; then "N matches in
    /// M of K snapshots". Needs the private identity.
    #[command(after_help = FIND_EXIT)]
    Find(FindArgs),
    /// Show what was added, removed and changed between two snapshots.
    ///
    /// One line per difference, in walk order: `+` added, `-` removed, `M` changed
    /// with what changed in parentheses (content, mode, owner, type, link target,
    /// device numbers, extended attributes), `T` only the mtime changed. A renamed
    /// file is removed and added. Then a summary: the counts, and the bytes of file
    /// content added (new and changed files' new content) and removed (removed and
    /// changed files' old content). Needs the private identity.
    #[command(after_help = BROWSE_EXIT)]
    Diff(DiffArgs),
    /// Run as a service: schedules, retention, status page at /, /metrics, /healthz, /api/v1/jobs.
    Agent,
    /// Forget snapshots by each job's retention, remove folders of runs that never committed.
    Prune(PruneArgs),
    /// Check a job's targets against their signed markers; copy damaged or missing packs and objects back from another target.
    ///
    /// Reads every pack and object that snapshots signed by a trusted signer
    /// reference, whole, and compares its size and BLAKE3 with the marker (no
    /// private key needed). One proven damaged or missing (not merely unreadable)
    /// is copied from another target of the job that holds a good copy, checked
    /// while copied and again once written; what no target holds intact is
    /// forgotten by the local index, so the next backup stores those files again.
    /// Lists the snapshots that stay damaged, and with the identity which files of
    /// which source they lose. Never deletes anything from a target. Takes the job
    /// lock (a running backup or prune of the job: exit 1, nothing done), except
    /// with --dry-run, which changes nothing.
    #[command(after_help = REPAIR_EXIT)]
    Repair(RepairArgs),
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
    /// Show a job's snapshots as read-only folders (FUSE), until unmounted.
    ///
    /// One folder per snapshot signed by a trusted key, holding one folder per
    /// directory source (format 2) with its files, owners, modes and times as
    /// stored; the kernel checks permissions against them. A snapshot's file list
    /// is read when its folder is first opened; a file's content is fetched from
    /// its pack when the file is opened and checked against the manifest's BLAKE3
    /// (a file that does not match gives an I/O error). Database dumps and format 1
    /// snapshots are not shown: restore them. Runs in the foreground; `umount
    /// MOUNTPOINT` (or `fusermount3 -u`) ends it, and so does ending the process.
    /// Needs /dev/fuse and fusermount3 (Debian: fuse3).
    #[command(after_help = BROWSE_EXIT)]
    Mount(MountArgs),
    /// Print the man page (roff) on stdout, or write one page per subcommand into a directory.
    ///
    /// `coffer man > /usr/local/share/man/man1/coffer.1` prints the main page only;
    /// `coffer man --dir /usr/local/share/man/man1` writes it with every page it refers
    /// to (`coffer-backup.1`, `coffer-config-check.1`, ...) and prints their paths;
    /// `coffer man --config-file > /usr/local/share/man/man5/coffer.toml.5` prints
    /// the config file's page, every key with the annotated example config.
    Man(ManArgs),
    /// Print the job names of the config, one per line, for shell completion.
    /// Prints nothing (and exits 0) when the config cannot be read.
    #[command(name = "complete-jobs", hide = true)]
    CompleteJobs,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write coffer.1 and a page per subcommand into DIR (it must exist).
    #[arg(long, value_name = "DIR", conflicts_with = "config_file")]
    pub dir: Option<PathBuf>,
    /// Print coffer.toml(5), the config file's page, instead of coffer(1).
    #[arg(long)]
    pub config_file: bool,
}

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

const STATUS_EXIT: &str = "Exit codes: 0 fine (a job that never ran too), 1 a status \
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

const STATS_EXIT: &str = "Exit codes: 0 fine, 1 a target or a manifest could not be read \
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

const BROWSE_EXIT: &str = "Exit codes: 0 fine, 1 a snapshot could not be read (damaged, \
unreachable target), 2 bad usage (unknown job, source, snapshot or path; a snapshot \
not signed by a trusted key; a local target's directory missing).";

const FIND_EXIT: &str = "Exit codes: 0 fine, 1 a snapshot could not be read (damaged, \
not signed by a trusted key: reported, skipped, the others still searched), 2 bad \
usage (unknown job or source, bad pattern; a local target's directory missing).";

/// What ls, find and diff read from: a job's snapshots on one target, decrypted
/// with the identity, accepted only when signed by a trusted key.
#[derive(Debug, Args)]
pub struct BrowseArgs {
    /// Job name, as in [jobs.NAME] of the config.
    #[arg(long)]
    pub job: String,
    /// Target to read from (default: the job's first target).
    #[arg(long)]
    pub target: Option<String>,
    /// Private identity that decrypts the manifest (default: [encryption] identity_file).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    #[command(flatten)]
    pub from: BrowseArgs,
    /// An existing, empty folder to show the snapshots in.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub from: BrowseArgs,
    /// Snapshot id or `latest`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Only this directory source (default: all of them).
    #[arg(long)]
    pub source: Option<String>,
    /// Only this entry and what is under it: a path inside the source
    /// (`uploads/2024`), or `<source>/<path>`.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// One JSON object per line (JSON Lines), per entry: source, path (a string, or
    /// an array of bytes when the name is not UTF-8), type, mode (octal), uid, gid,
    /// user, group, size, mtime (RFC 3339), blake3, link.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    #[command(flatten)]
    pub from: BrowseArgs,
    /// Glob (`*` does not cross `/`): without a `/` it matches the file name at any
    /// depth (`*.pdf`), with one the path inside the source (`uploads/*/a.pdf`).
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// One JSON object per line (JSON Lines): `"record": "match"` (snapshot and the
    /// entry's fields, as in `ls --json`), `"unreadable"` (snapshot, error) and a
    /// last `"summary"` (matches, snapshots_matched, snapshots, unreadable).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub from: BrowseArgs,
    /// The snapshot compared from (usually the older): id or `latest`.
    #[arg(value_name = "A")]
    pub a: String,
    /// The snapshot compared to: id or `latest`.
    #[arg(value_name = "B")]
    pub b: String,
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// One JSON object per line (JSON Lines): `"record": "change"` (change: `+`, `-`,
    /// `M` or `T`; source, path, what changed, the entry before and after, as in
    /// `ls --json`) and a last `"summary"` with the counts and bytes.
    #[arg(long)]
    pub json: bool,
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

const REPAIR_EXIT: &str = "Exit codes: 0 nothing damaged, or everything repaired; \
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
