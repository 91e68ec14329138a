//! Retention: `policy` decides which snapshots a job keeps; `prune` forgets the
//! others on a target, markers first, under the job lock.

pub(crate) mod policy;
pub(crate) mod prune;
