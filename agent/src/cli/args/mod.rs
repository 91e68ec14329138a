//! The command line, as clap types. Each subcommand's behaviour lives in
//! `cli/<name>.rs`. The top level and the subcommand list are here; each group of
//! subcommands has its arguments in a file of its own (jobs, restore, browse,
//! maintenance), so that a change to one command's flags is read in one place.
//! The doc comments are the `--help` text and the man pages.

mod browse;
mod jobs;
mod maintenance;
mod restore;

pub use browse::*;
pub use jobs::*;
pub use maintenance::*;
pub use restore::*;

use browse::{BROWSE_EXIT, FIND_EXIT};
use jobs::{STATS_EXIT, STATUS_EXIT};
use maintenance::{COPY_EXIT, REPAIR_EXIT};

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
    /// Copy snapshots from one target to another as stored (no identity needed).
    ///
    /// Copies each snapshot's packs and objects, as ciphertext, checking each
    /// against the size and BLAKE3 its signed marker binds while it streams, and
    /// writes the marker last, once the destination lists everything at its size.
    /// Only snapshots signed by a trusted key are copied. What the destination
    /// holds already at the right size is not sent again: run it again after an
    /// interruption to resume; a second run copies nothing. Takes the job lock,
    /// except with --dry-run.
    #[command(after_help = COPY_EXIT)]
    Copy(crate::cli::copy::CopyArgs),
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
