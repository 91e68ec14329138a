//! The end-to-end tests (tier 2): the real `coffer` binary against real files, the
//! real `age`, `zstd` and `tar`, real PostgreSQL, MariaDB, Redis and S3 servers,
//! run as root. One test binary for all of them, so the crate is linked into one
//! test executable instead of one per file. It is built only with the `e2e`
//! feature, which `tests/run` turns on (`--all-features`); a plain
//! `cargo test --workspace` (tier 1) runs the unit tests only and needs neither
//! root nor servers. One module alone, as root with the tools installed:
//! `cargo test -p coffer --features e2e --test e2e s3::`.
//!
//! Every module's tests run in parallel threads of this one process, so no test
//! may change process-wide state (environment, working directory, umask, signal
//! dispositions): what a coffer run needs goes into its `Command` (`World::env`).
//! A missing tool, server or privilege fails the test and names `tests/run`.

mod common;

mod agent;
mod attributes;
mod bandwidth;
mod bounds;
mod browse;
mod changing;
mod chunks;
mod config_cli;
mod conformance;
mod copy;
mod crash;
mod damaged_pack;
mod databases;
mod disaster;
mod dry_run;
mod format2;
mod fs_snapshots;
mod hooks;
mod hostile;
mod identities;
mod instants;
mod interop;
mod kill_trials;
mod killed_uploads;
mod latest;
mod monitoring;
mod mount;
mod my_users;
mod notify;
mod object_lock;
mod pack_cli;
mod pg_roles;
mod privileges;
mod progress;
mod prune;
mod prune_elsewhere;
mod races;
mod repair;
mod restore_crash;
mod restore_reads;
mod restore_trust;
mod roundtrip;
mod s3;
mod safety;
mod secrets;
mod sftp;
mod shell;
mod status_page;
mod status_stats;
mod tag_excludes;
mod targets;
mod unprivileged;
