//! What every part of one backup run shares once its targets are known: the
//! runtime, the job, the snapshot's id, the targets still in the run, the
//! recipients, the run's packs (format 2), the stop flag any failing source sets,
//! and the byte and file counters the caller's display follows. Handed around as
//! one value instead of long parameter lists.

use super::packs::RunPacks;
use crate::keys::Recipients;
use coffer_config::Job;
use coffer_plugins::{Progress, Target};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::runtime::Handle;

pub(super) struct RunContext<'a> {
    pub(super) rt: &'a Handle,
    pub(super) job: &'a Job,
    /// The snapshot's id.
    pub(super) id: &'a str,
    /// The targets the sources stream to, in the order results are reported.
    pub(super) targets: &'a [Target],
    pub(super) recipients: &'a Arc<Recipients>,
    /// Format 2: the index and the packs the run writes; `None` for format 1.
    pub(super) packs: Option<&'a RunPacks>,
    /// Set when any source fails: the others stop writing.
    pub(super) failed: Arc<AtomicBool>,
    /// Bytes and files read, which the caller's display follows.
    pub(super) progress: &'a Progress,
}
