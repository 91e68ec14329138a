//! coffer, the binary's library: everything the `coffer` command does, split so
//! that each subcommand and each stage of a run has its own module.

pub mod cancel;
pub mod cli;
pub mod commands;
pub mod db_check;
pub mod exit;
pub mod format;
pub mod hooks;
pub mod keys;
pub mod lock;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod reader;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod run_status;
pub mod seal;
pub mod snapshot_id;
pub mod status;
pub mod tree_check;
pub mod units;
pub mod untrusted;
pub mod upload;
