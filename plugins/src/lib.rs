//! coffer's plugins: the sources that produce a backup stream and the targets that
//! store it. Nothing here knows about scheduling, encryption, or HTTP; the agent
//! composes sources and targets into a run.

pub mod directory;
pub mod entry;
pub mod exclude;
pub mod ids;
pub mod parts;
mod s3;
pub mod source;
pub mod tar_writer;
pub mod target;

pub use entry::{EntryKind, FileEntry, RawPath};
pub use parts::PartPlan;
pub use source::{Progress, Source, SourceError, SourceOutcome, open_source};
pub use target::{Explained, Op, Target, TargetError, open_target};
