//! coffer's plugins: the sources that produce a backup stream and the targets that
//! store it. Nothing here knows about scheduling, encryption, or HTTP; the agent
//! composes sources and targets into a run.
//!
//! The folders are the plug-in points: `sources/` (one module per source type and
//! the registry), `targets/` (local and S3), and the machinery both share:
//! `tree/` (entries, walking and writing a tree), `fs/` (file-system calls),
//! `process/` (child processes). docs/development.md says what a new type touches.

pub mod fs;
pub mod process;
pub mod sources;
pub mod targets;
pub mod tree;

// The module paths the agent imports, kept as they were before the folders (one
// word after `coffer_plugins::`), so that the agent's imports needed no change.
pub use fs::{acl, ids, inode_flags, meminfo, stat, trusted_dir, xattr};
pub use process::{child, dump_stop};
pub use sources::directory::fs_snapshot;
pub use sources::postgres::auth as pg_auth;
pub use sources::{dbquery, registry};
pub use tree::{chunked, chunker, entry_log, exclude, sparse, tar_writer, walk_ahead};

pub use sources::registry::{open_source, restore_as_file};
pub use sources::restore::{Restore, RestoreRequest};
pub use sources::source::{
    Completed, CompletedFrom, Progress, Source, SourceContext, SourceError, SourceOutcome,
};
pub use targets::parts::PartPlan;
pub use targets::{Access, Explained, LockError, ObjectLock, Op, Target, TargetError, open_target};
pub use tree::content::{ContentSink, FileStat, KnownContent};
pub use tree::entry::{
    Chunk, ContentRef, EntryKind, FileEntry, MAX_SPARSE_PIECES, RawPath, Stored, escape_controls,
    is_safe_relative, is_valid_chunk_list, is_valid_sparse_map,
};
