//! coffer, the binary's library. The domain (a snapshot's format, the repository
//! on a target, the pipeline, one backup run, restore, verify, retention) is kept
//! apart from its two front ends: `cli` turns arguments into domain calls and
//! prints the results, `service` schedules runs and serves HTTP. Both call the
//! same domain functions; neither holds a rule of its own about snapshots.
//!
//! Only what the fuzz crate (fuzz/) exercises is public: the format readers and
//! the restore extractor. Everything else is crate-private, so the compiler
//! reports what nothing uses (one reason the domain is not a crate of its own:
//! everything the front ends call would have to be public, and unused code would
//! go unreported). The front ends are behind the default feature `front-ends`;
//! the build without it is the compiler's proof that the domain never reaches
//! them.

// Without the front ends (feature `front-ends`) nothing calls most of the domain:
// that build exists to prove the domain never reaches them, not to be used.
#![cfg_attr(not(feature = "front-ends"), allow(dead_code, unused_imports))]

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
pub mod malloc;
#[cfg(feature = "front-ends")]
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
#[cfg(feature = "front-ends")]
pub mod cli;
pub mod exit;
#[cfg(feature = "front-ends")]
pub(crate) mod service;
#[cfg(feature = "front-ends")]
pub(crate) mod when;
