//! Sources: what a job backs up. One module per source type (its `Source`
//! implementation, and what else only that type needs), the `Source` trait they
//! implement, and `registry`, the one place that maps a config `type` to its module.
//! What more than one type uses (the check query of a database, the restore of a
//! stream as a file) sits beside them here; machinery that is not about sources
//! (walking a tree, file attributes, child processes) is in `tree`, `fs`, `process`.

pub mod dbquery;
pub mod kind;
pub mod registry;
pub mod restore;
pub mod source;

pub(crate) mod command;
pub(crate) mod directory;
pub mod mysql;
pub mod postgres;
pub(crate) mod redis;
pub(crate) mod sqlite;
