//! `check` on a live system or after a restore: the directories compared with a
//! snapshot's manifest (every file re-read), and the database compared with its
//! files as they are now (`[jobs.NAME.check]`). The comparisons themselves are
//! the restore's (`restore::tree_check`, `restore::db_check`, the same query the
//! backup-time check in `run/check.rs` asks inside the snapshot); this module
//! decides which directories and which database, and returns one typed result
//! for the front end to show.

use crate::exit::usage;
use crate::format::{Manifest, Marker};
use crate::restore::db_check::{self, DbCheckReport};
use crate::restore::tree_check::{Content, Expectations, Owners, TreeReport, check_tree};
use anyhow::Result;
use coffer_config::{Config, DirectorySource, Job, SourceType};
use coffer_plugins::exclude::Excludes;
use coffer_plugins::{SourceContext, open_source};
use std::path::{Path, PathBuf};
use tokio::runtime::Handle;

/// What to compare.
pub(crate) struct Request<'a> {
    /// Only the database against its files; no snapshot is read.
    pub db_only: bool,
    /// One source of the snapshot instead of all its directory sources.
    pub source: Option<&'a str>,
    /// The directory to compare instead of the configured one (one source only).
    pub path: Option<&'a Path>,
}

/// What a check found; `consistent` is its verdict.
pub(crate) struct LiveCheck {
    /// The snapshot compared with; none with `db_only`.
    pub snapshot: Option<String>,
    /// How owners were compared: not at all unless running as root.
    pub owners: Owners,
    pub sources: Vec<TreeReport>,
    pub db: Option<DbCheckReport>,
}

impl LiveCheck {
    pub(crate) fn consistent(&self) -> bool {
        self.sources.iter().all(TreeReport::consistent)
            && self.db.as_ref().is_none_or(DbCheckReport::consistent)
    }
}

/// Runs the check `req` asks for on `job`. `open` reads the snapshot to compare
/// with (the caller picks it); it is called only when directories are compared.
pub(crate) fn check(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    req: &Request<'_>,
    open: impl FnOnce() -> Result<(Marker, Manifest)>,
) -> Result<LiveCheck> {
    if req.db_only && job.check.is_none() {
        return Err(usage(format!(
            "--db-only: job {} has no [jobs.{}.check]",
            job.name, job.name
        )));
    }
    let owners = if nix::unistd::geteuid().is_root() {
        Owners::ByName
    } else {
        Owners::Ignore
    };
    let mut sources = Vec::new();
    let mut snapshot = None;
    if !req.db_only {
        let (marker, manifest) = open()?;
        sources = check_trees(job, req, &marker, &manifest, owners)?;
        snapshot = Some(marker.id);
    }
    let db = live_db_check(rt, cfg, job, req, &sources)?;
    Ok(LiveCheck {
        snapshot,
        owners,
        sources,
        db,
    })
}

fn directory<'a>(job: &'a Job, name: &str) -> Option<&'a DirectorySource> {
    job.sources
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.kind.directory())
}

/// Each directory source of the snapshot (or the one asked for) against its
/// directory: `--path`, else the configured one.
fn check_trees(
    job: &Job,
    req: &Request<'_>,
    marker: &Marker,
    manifest: &Manifest,
    owners: Owners,
) -> Result<Vec<TreeReport>> {
    let dirs: Vec<_> = manifest
        .sources
        .iter()
        .filter(|s| s.kind == SourceType::Directory)
        .filter(|s| req.source.is_none_or(|n| n == s.name))
        .collect();
    if dirs.is_empty() {
        return Err(usage(match req.source {
            Some(s) => format!("snapshot {} has no directory source \"{s}\"", marker.id),
            None => format!("snapshot {} has no directory source", marker.id),
        }));
    }
    if req.path.is_some() && dirs.len() > 1 {
        return Err(usage(
            "--path needs --source: the job has several directory sources",
        ));
    }
    let mut reports = Vec::new();
    for src in dirs {
        let configured = directory(job, &src.name);
        let path: PathBuf = match (req.path, configured) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(d)) => d.path.clone(),
            (None, None) => {
                return Err(usage(format!(
                    "source {} is not in the config; pass --path DIR",
                    src.name
                )));
            }
        };
        let policy = configured.map(|d| d.restore.clone()).unwrap_or_default();
        let excludes = configured.map(Excludes::for_source).transpose()?;
        reports.push(check_tree(
            &src.name,
            &path,
            src.entries.iter()?,
            &Expectations {
                policy: &policy,
                owners,
                content: Content::Rehash,
                excludes: excludes.as_ref(),
            },
        )?);
    }
    Ok(reports)
}

/// The configured database against the files as they are now.
fn live_db_check(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    req: &Request<'_>,
    trees: &[TreeReport],
) -> Result<Option<DbCheckReport>> {
    let Some(check) = &job.check else {
        return Ok(None);
    };
    if req.source.is_some_and(|s| s != check.files) {
        return Ok(None);
    }
    let Some(files) = directory(job, &check.files) else {
        return Ok(None);
    };
    let dir = match (req.path, trees.iter().find(|t| t.source == check.files)) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(t)) => t.path.clone().into(),
        (None, None) => files.path.clone(),
    };
    let Some(db) = job.sources.iter().find(|s| s.name == check.source) else {
        return Ok(None);
    };
    let ctx = SourceContext::for_job(rt, &cfg.agent.state_dir, &job.name);
    let db = open_source(db, &ctx)?;
    let Some(target) = db.endpoint() else {
        return Ok(None);
    };
    let excludes = Excludes::for_source(files)?;
    Ok(Some(db_check::check(
        rt,
        check,
        &target,
        &dir,
        Some(&excludes),
    )?))
}
