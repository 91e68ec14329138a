//! The entry model of a directory source and how a tree is read and written:
//! the entries and their log (what a manifest lists), walking a tree ahead of the
//! reader, reading a file that may change, excludes, sparse files, the tar stream
//! of format 1 and the content sink of format 2's packs. Shared by the directory
//! source and by the agent (restore, verify, browse, dry run).

pub mod chunked;
pub mod chunker;
pub mod content;
pub mod entry;
pub(crate) mod entry_attrs;
pub mod entry_log;
pub mod exclude;
pub mod sparse;
pub(crate) mod stable_read;
pub mod tar_writer;
pub mod walk_ahead;
