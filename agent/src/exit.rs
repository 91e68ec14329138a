//! Exit codes, as documented in `--help`: 0 fine, 1 the work failed, 2 bad usage or
//! config, 3 a check found inconsistencies.

use std::fmt;

pub const OK: u8 = 0;
pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const INCONSISTENT: u8 = 3;

/// An error caused by how coffer was called (unknown job, non-empty destination
/// without --force, ...): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<UsageError>() || cause.is::<coffer_config::ConfigError>() {
            return USAGE;
        }
        // A target directory that is not there is a setup problem (a disk not
        // mounted, a wrong path), like a bad config: the work was not even tried.
        if cause
            .downcast_ref::<coffer_plugins::TargetError>()
            .is_some_and(coffer_plugins::TargetError::is_missing_root)
        {
            return USAGE;
        }
    }
    FAILED
}
