//! coffer, the binary's library. The domain (a snapshot's format, the repository
//! on a target, the pipeline, one backup run, restore, verify, retention) is kept
//! apart from its two front ends: `cli` turns arguments into domain calls and
//! prints the results, `service` schedules runs and serves HTTP. Both call the
//! same domain functions; neither holds a rule of its own about snapshots.
//!
//! Only what the fuzz crate (fuzz/) exercises is public: the format readers and
//! the restore extractor. Everything else is crate-private, so the compiler
//! reports what nothing uses.

// Domain
pub(crate) mod browse;
pub(crate) mod cancel;
pub(crate) mod check;
pub(crate) mod copy;
pub mod format;
pub(crate) mod hooks;
pub(crate) mod host;
pub(crate) mod key_match;
pub(crate) mod keys;
pub(crate) mod lock;
pub(crate) mod mount;
pub(crate) mod notify;
pub(crate) mod open;
pub(crate) mod pack;
pub(crate) mod pipeline;
pub(crate) mod repair;
pub(crate) mod repo;
pub(crate) mod report;
pub mod restore;
pub(crate) mod retention;
pub(crate) mod run;
pub(crate) mod stats;
pub(crate) mod status;
pub(crate) mod units;
pub(crate) mod verify;

// Front ends and what they share
pub mod cli;
pub mod exit;
pub(crate) mod service;
pub(crate) mod when;
