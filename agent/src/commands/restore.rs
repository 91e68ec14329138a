//! `coffer restore`: puts a snapshot's directory sources back, with owners and
//! modes, and checks the result. Every destination is validated before anything is
//! written, so a refused restore changes nothing.

use crate::cli::{OwnerMode, RestoreArgs};
use crate::commands::{Opened, job as find_job, open_snapshot, print_json};
use crate::exit::{self, usage};
use crate::restore::attrs::{OwnerPlan, check_policy_owner};
use crate::restore::{SourceRestore, non_empty, restore_source};
use anyhow::Result;
use coffer_config::{Config, RestorePolicy, SourceKind};
use serde::Serialize;
use tokio::runtime::Handle;

#[derive(Serialize)]
struct Output {
    job: String,
    snapshot: String,
    target: String,
    sources: Vec<crate::tree_check::TreeReport>,
    warnings: Vec<String>,
    consistent: bool,
}

pub fn run(rt: &Handle, cfg: &Config, args: &RestoreArgs) -> Result<u8> {
    let job = find_job(cfg, &args.job)?;
    let Opened {
        target,
        ids,
        marker,
        manifest,
    } = open_snapshot(
        rt,
        cfg,
        job,
        args.target.as_deref(),
        args.identity.as_deref(),
        &args.snapshot,
        "restore",
    )?;

    for s in &args.sources {
        if manifest.source(s).is_none() {
            let have: Vec<&str> = manifest.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(usage(format!(
                "snapshot {} has no source \"{s}\"; it has: {}",
                marker.id,
                have.join(", ")
            )));
        }
    }
    let is_root = nix::unistd::geteuid().is_root();
    let mut plans = Vec::new();
    for src in &manifest.sources {
        if !args.sources.is_empty() && !args.sources.contains(&src.name) {
            continue;
        }
        if src.kind != "directory" {
            continue;
        }
        let configured = job.sources.iter().find(|s| s.name == src.name);
        let policy = match configured.map(|s| &s.kind) {
            Some(SourceKind::Directory(d)) => d.restore.clone(),
            None => RestorePolicy::default(),
        };
        let dest = match (&args.to, configured) {
            (Some(dir), _) => dir.join(&src.name),
            (None, Some(s)) => match &s.kind {
                SourceKind::Directory(d) => d.path.clone(),
            },
            (None, None) => {
                return Err(usage(format!(
                    "source {} is no longer in the config; pass --to DIR to restore it elsewhere",
                    src.name
                )));
            }
        };
        if non_empty(&dest)? && !args.force {
            return Err(usage(format!(
                "{} is not empty; restore elsewhere with --to DIR, or pass --force to replace its contents \
                 (they are removed only after the snapshot is completely unpacked and matched)",
                dest.display()
            )));
        }
        let owners = match args.owner {
            _ if !is_root => OwnerPlan::NotRoot,
            Some(OwnerMode::Skip) => OwnerPlan::Skip,
            Some(OwnerMode::Numeric) => OwnerPlan::Numeric,
            Some(OwnerMode::Preserve) => OwnerPlan::ByName,
            None => OwnerPlan::ByName,
        };
        // `--owner` overrides the policy's owner, not its modes.
        let mut policy = policy;
        if args.owner.is_some() {
            policy.owner = None;
        }
        if owners == OwnerPlan::ByName {
            check_policy_owner(&policy)
                .map_err(|e| usage(format!("source {}: {e:#}", src.name)))?;
        }
        plans.push(SourceRestore {
            source: src,
            dest,
            policy,
            owners,
            force: args.force,
            devices: args.devices,
        });
    }
    if plans.is_empty() {
        return Err(usage(format!(
            "snapshot {} has no directory source to restore",
            marker.id
        )));
    }
    let mut warnings = Vec::new();
    if !is_root {
        warnings.push("not running as root: owners are not restored and not checked".to_string());
    }
    let mut reports = Vec::new();
    for plan in &plans {
        let (report, w) = restore_source(rt, &target, &marker, &ids, plan)?;
        warnings.extend(
            w.into_iter()
                .map(|w| format!("source {}: {w}", plan.source.name)),
        );
        if !args.json {
            println!(
                "restored source {} of snapshot {} into {}",
                plan.source.name,
                marker.id,
                plan.dest.display()
            );
        }
        reports.push(report);
    }
    let consistent = reports.iter().all(|r| r.consistent());
    if args.json {
        print_json(&Output {
            job: job.name.clone(),
            snapshot: marker.id.clone(),
            target: target.name.clone(),
            sources: reports,
            warnings,
            consistent,
        })?;
    } else {
        for w in &warnings {
            eprintln!("warning: {w}");
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
