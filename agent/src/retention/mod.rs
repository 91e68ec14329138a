//! Retention: `policy` decides which snapshots a job keeps; `prune` forgets the
//! others on a target, markers first, under the job lock; `by_hand` is
//! `coffer prune`'s job: the lock taken or the job left alone, the status kept;
//! `held` is S3 Object Lock's part: what a snapshot holds, and until when.

pub(crate) mod by_hand;
pub(crate) mod held;
pub(crate) mod policy;
pub(crate) mod prune;
