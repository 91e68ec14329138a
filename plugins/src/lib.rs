//! coffer's plugins: the sources that produce a backup stream and the targets that
//! store it. Nothing here knows about scheduling, encryption, or HTTP; the agent
//! composes sources and targets into a run.

pub mod acl;
pub mod child;
pub(crate) mod command;
pub mod content;
pub mod dbquery;
pub(crate) mod directory;
pub mod dump_stop;
pub mod entry;
pub(crate) mod entry_attrs;
pub mod entry_log;
pub mod exclude;
pub mod fs_snapshot;
pub mod ids;
pub mod inode_flags;
pub mod leftovers;
pub mod my_auth;
pub(crate) mod mysql;
pub mod no_delete;
pub(crate) mod open_at;
pub(crate) mod parts;
pub mod pg_auth;
mod pg_create;
pub(crate) mod postgres;
pub(crate) mod redis_rdb;
pub mod registry;
pub mod restore;
mod s3;
pub mod source;
pub mod sparse;
pub(crate) mod sqlite;
pub(crate) mod stable_read;
pub mod tar_writer;
pub mod target;
pub mod throttle;
pub mod trusted_dir;
pub mod upload_journal;
pub mod walk_ahead;
pub mod xattr;

pub use content::{ContentSink, FileStat, KnownContent};
pub use entry::{
    ContentRef, EntryKind, FileEntry, MAX_SPARSE_PIECES, RawPath, escape_controls,
    is_safe_relative, is_valid_sparse_map,
};
pub use parts::PartPlan;
pub use registry::{open_source, restore_as_file};
pub use restore::{Restore, RestoreRequest};
pub use source::{
    Completed, CompletedFrom, Progress, Source, SourceContext, SourceError, SourceOutcome,
};
pub use target::{Access, Explained, Op, Target, TargetError, open_target};
