//! What a repair found and did, per target and for the job, as `coffer repair`
//! prints it (and `--json` serializes it), and the exit code it settles on.

use super::Kind;
use super::lost::Lost;
use super::rebuild::Rebuilt;
use serde::Serialize;

/// Copied back (or, in a dry run, to be copied back) from another target.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    pub kind: Kind,
    pub name: String,
    pub from: String,
    /// Why it was damaged.
    pub was: String,
}

/// An item and what is wrong with it.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: Kind,
    pub name: String,
    pub why: String,
}

/// One target's check and repair.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    /// Snapshots whose markers a trusted signer signed: what drove the check.
    pub snapshots: usize,
    /// Markers not signed by a trusted signer: ignored.
    pub untrusted_snapshots: usize,
    pub packs_checked: usize,
    pub objects_checked: usize,
    /// Copied back from another target (dry run: would be).
    pub repaired: Vec<Repaired>,
    /// Proven damaged or missing, and no target holds a good copy.
    pub unrepairable: Vec<Problem>,
    /// Could not be read to the end: not known to be damaged, left alone.
    pub unreadable: Vec<Problem>,
    /// What could not be done (a copy that failed, a target that cannot be listed).
    pub failures: Vec<String>,
}

/// A snapshot that stays damaged on a target.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedSnapshot {
    pub target: String,
    pub snapshot: String,
    pub host: String,
    /// RFC 3339.
    pub finished_at: String,
    /// Keys of its own objects that stay damaged.
    pub objects: Vec<String>,
    pub packs: Vec<String>,
    /// With the identity: what it loses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Lost>,
}

/// A whole repair of one job.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub job: String,
    pub dry_run: bool,
    pub targets: Vec<TargetReport>,
    /// Packs the local index forgot (dry run: would forget): no good copy anywhere.
    pub forgotten_packs: Vec<String>,
    /// File rows of the last backup that pointed into them; None without an index
    /// on this host or in a dry run.
    pub forgotten_files: Option<u64>,
    pub damaged_snapshots: Vec<DamagedSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuilt_index: Option<Rebuilt>,
    /// Failures outside one target's check (the index, the rebuild).
    pub failures: Vec<String>,
    /// 0 nothing damaged or everything repaired, 3 snapshots stay damaged (a dry
    /// run: anything damaged), 1 something could not be read or written.
    pub exit_code: u8,
}

impl Report {
    pub(super) fn settle_exit_code(&mut self) {
        let damaged = !self.damaged_snapshots.is_empty()
            || (self.dry_run
                && self
                    .targets
                    .iter()
                    .any(|t| !t.repaired.is_empty() || !t.unrepairable.is_empty()));
        let failed = !self.failures.is_empty()
            || self
                .targets
                .iter()
                .any(|t| !t.failures.is_empty() || !t.unreadable.is_empty());
        self.exit_code = if damaged {
            crate::exit::INCONSISTENT
        } else if failed {
            crate::exit::FAILED
        } else {
            crate::exit::OK
        };
    }
}
