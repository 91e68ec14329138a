//! Retention: `policy` decides which snapshots a job keeps; `prune` forgets the
//! others on a target, markers first, under the job lock; `by_hand` is
//! `coffer prune`'s job: the lock taken or the job left alone, the status kept.

pub(crate) mod by_hand;
pub(crate) mod policy;
pub(crate) mod prune;
