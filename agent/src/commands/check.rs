//! `coffer check`: compares directories on disk with a snapshot's manifest, re-reading
//! every file. Works on a live system and after a restore.

use crate::cli::CheckArgs;
use crate::commands::{Opened, job as find_job, open_snapshot, print_json};
use crate::exit::{self, usage};
use crate::tree_check::{Content, Expectations, Owners, check_tree};
use anyhow::Result;
use coffer_config::{Config, RestorePolicy, SourceKind};
use coffer_plugins::exclude::Excludes;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &CheckArgs) -> Result<u8> {
    let job = find_job(cfg, &args.job)?;
    let Opened {
        marker, manifest, ..
    } = open_snapshot(
        rt,
        cfg,
        job,
        args.target.as_deref(),
        args.identity.as_deref(),
        &args.snapshot,
        "check",
    )?;
    let dirs: Vec<_> = manifest
        .sources
        .iter()
        .filter(|s| s.kind == "directory")
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
    let owners = if nix::unistd::geteuid().is_root() {
        Owners::ByName
    } else {
        Owners::Ignore
    };
    let mut reports = Vec::new();
    for src in dirs {
        let configured = job
            .sources
            .iter()
            .find(|s| s.name == src.name)
            .map(|s| match &s.kind {
                SourceKind::Directory(d) => d,
            });
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
        let policy = configured
            .map(|d| d.restore.clone())
            .unwrap_or_else(RestorePolicy::default);
        let excludes = match configured {
            Some(d) => Some(Excludes::new(&d.exclude)?),
            None => None,
        };
        reports.push(check_tree(
            &src.name,
            &path,
            &src.entries,
            &Expectations {
                policy: &policy,
                owners,
                content: Content::Rehash,
                excludes: excludes.as_ref(),
            },
        ));
    }
    let consistent = reports.iter().all(|r| r.consistent());
    if args.json {
        print_json(&serde_json::json!({
            "job": job.name,
            "snapshot": marker.id,
            "consistent": consistent,
            "sources": reports,
        }))?;
    } else {
        if owners == Owners::Ignore {
            eprintln!("warning: not running as root: owners are not compared");
        }
        for r in &reports {
            r.print();
        }
    }
    Ok(if consistent {
        exit::OK
    } else {
        exit::INCONSISTENT
    })
}
