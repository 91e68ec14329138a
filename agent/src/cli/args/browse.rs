//! Arguments of the commands that look into snapshots without restoring them:
//! ls, find, diff, mount.

use super::TrustArgs;
use clap::Args;
use std::path::PathBuf;

pub(super) const BROWSE_EXIT: &str = "Exit codes: 0 fine, 1 a snapshot could not be read (damaged, \
unreachable target), 2 bad usage (unknown job, source, snapshot or path; a snapshot \
not signed by a trusted key; a local target's directory missing).";

pub(super) const FIND_EXIT: &str = "Exit codes: 0 fine, 1 a snapshot could not be read (damaged, \
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
