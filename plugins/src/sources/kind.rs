//! What a source type says about a source as configured, before anything is
//! opened: what a dry run describes, which configured paths `config check` looks
//! for, and how it is opened for a run. Each type's module implements `Kind`
//! (every method required, so a new type answers every question or does not
//! compile) and `registry::kind` picks the implementation: the agent asks these
//! questions without naming a type.

use crate::sources::source::{Source, SourceContext, SourceError};
use std::path::Path;

pub trait Kind {
    /// Builds the source for a run (or a check, or a restore).
    fn open(&self, name: &str, ctx: &SourceContext) -> Result<Box<dyn Source>, SourceError>;
    /// `coffer backup --dry-run`: what a backup would read, without reading it.
    fn dry_run(&self) -> DryRun;
    /// The configured paths a backup needs to exist, each with its config key,
    /// for the warnings of `coffer config check`.
    fn needed_paths(&self) -> Vec<(&'static str, &Path)>;
}

/// A dry run's description of one source.
#[derive(Debug, Default)]
pub struct DryRun {
    /// What a backup reads, completed by the source as `config check` shows it:
    /// "a pg_dump (custom format) of" `postgres://db@host/app`.
    pub reads: &'static str,
    /// The size of what would be read, when one stat tells it (an SQLite file).
    pub bytes_now: Option<u64>,
    /// How the backup would differ from what the dry run looked at.
    pub note: Option<String>,
}
