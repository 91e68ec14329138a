//! The end-to-end tests: the real `coffer` binary against real files, the
//! real `age`, `zstd` and `tar`, real PostgreSQL, MariaDB, Redis and S3 servers,
//! run as root. One test binary for all of them, so the crate is linked into one
//! test executable instead of one per file.
//!
//! Every module's tests run in parallel threads of this one process, so no test
//! may change process-wide state (environment, working directory, umask, signal
//! dispositions): what a coffer run needs goes into its `Command` (`World::env`).
//! A missing tool, server or privilege fails the test and names `tests/run`.

mod common;

mod agent;
mod changing;
mod config_cli;
mod crash;
mod databases;
mod hooks;
mod hostile;
mod interop;
mod prune;
mod races;
mod restore_crash;
mod roundtrip;
mod s3;
mod safety;
mod secrets;
mod unprivileged;
