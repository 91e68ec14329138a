//! `coffer check`: on a live system or after a restore, compares directories with a
//! snapshot's manifest (re-reading every file), and the database with its files
//! (`[jobs.NAME.check]`). Exit 3 when anything differs.

use crate::cli::CheckArgs;
use crate::cli::{Opened, job as find_job, open_snapshot, print_json};
use crate::exit::{self, usage};
use crate::restore::db_check::{self, DbCheckReport};
use crate::restore::tree_check::{Content, Expectations, Owners, TreeReport, check_tree};
use anyhow::Result;
use coffer_config::{Config, DirectorySource, Job};
use coffer_plugins::exclude::Excludes;
use coffer_plugins::{SourceContext, open_source};
use tokio::runtime::Handle;

fn directory<'a>(job: &'a Job, name: &str) -> Option<&'a DirectorySource> {
    job.sources
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.kind.directory())
}

pub fn run(rt: &Handle, cfg: &Config, args: &CheckArgs) -> Result<u8> {
    let job = find_job(cfg, &args.job)?;
    if args.db_only && job.check.is_none() {
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
    let mut reports = Vec::new();
    let mut snapshot = None;
    if !args.db_only {
        let Opened {
            marker, manifest, ..
        } = open_snapshot(
            rt,
            cfg,
            job,
            &crate::cli::Wanted {
                command: "check",
                target: args.target.as_deref(),
                identity: args.identity.as_deref(),
                snapshot: &args.snapshot,
                trust: &args.trust,
            },
        )?;
        let dirs: Vec<_> = manifest
            .sources
            .iter()
            .filter(|s| s.kind == coffer_config::SourceType::Directory)
            .filter(|s| args.source.as_ref().is_none_or(|n| *n == s.name))
            .collect();
        if dirs.is_empty() {
            return Err(usage(match &args.source {
                Some(s) => format!("snapshot {} has no directory source \"{s}\"", marker.id),
                None => format!("snapshot {} has no directory source", marker.id),
            }));
        }
        if args.path.is_some() && dirs.len() > 1 {
            return Err(usage(
                "--path needs --source: the job has several directory sources",
            ));
        }
        for src in dirs {
            let configured = directory(job, &src.name);
            let path = match (&args.path, configured) {
                (Some(p), _) => p.clone(),
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
        snapshot = Some(marker.id);
    }
    let db = live_db_check(rt, cfg, job, args, &reports)?;
    let consistent = reports.iter().all(TreeReport::consistent)
        && db.as_ref().is_none_or(DbCheckReport::consistent);
    if args.json {
        print_json(&serde_json::json!({
            "job": job.name,
            "snapshot": snapshot,
            "consistent": consistent,
            "sources": reports,
            "db_check": db,
        }))?;
    } else {
        if owners == Owners::Ignore && !reports.is_empty() {
            eprintln!("warning: not running as root: owners are not compared");
        }
        for line in reports.iter().flat_map(|r| r.lines()) {
            crate::say!("{line}");
        }
        for line in db.iter().flat_map(|d| d.lines()) {
            crate::say!("{line}");
        }
    }
    Ok(if consistent {
        exit::OK
    } else {
        exit::INCONSISTENT
    })
}

/// The configured database against the files as they are now.
fn live_db_check(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    args: &CheckArgs,
    trees: &[TreeReport],
) -> Result<Option<DbCheckReport>> {
    let Some(check) = &job.check else {
        return Ok(None);
    };
    if args.source.as_ref().is_some_and(|s| *s != check.files) {
        return Ok(None);
    }
    let Some(files) = directory(job, &check.files) else {
        return Ok(None);
    };
    let dir = match (&args.path, trees.iter().find(|t| t.source == check.files)) {
        (Some(p), _) => p.clone(),
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
