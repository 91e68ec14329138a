//! `coffer prune`: applies each job's retention per target and removes the folders
//! of runs that never committed once they are older than `incomplete_after`.
//!
//! Needs no private key: it works from snapshot ids and markers. It only ever
//! lists and deletes under `<job>/` of the job's own targets, so another job (or
//! another agent's prefix in a shared bucket) is never touched. A snapshot's
//! marker is deleted first, so a half-deleted snapshot is never listed.

use crate::cli::PruneArgs;
use crate::commands::{job as find_job, print_json, targets_of};
use crate::format::{MARKER, snapshot_dir};
use crate::repo;
use crate::retention::decide;
use crate::snapshot_id::{is_id, time_of};
use anyhow::{Context, Result};
use coffer_config::{Config, Job};
use coffer_plugins::Target;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::runtime::Handle;

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub job: String,
    pub target: String,
    pub kept: Vec<KeptSnapshot>,
    pub forgotten: Vec<String>,
    /// Folders without a marker, older than the grace period.
    pub incomplete_removed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct KeptSnapshot {
    pub id: String,
    pub reasons: Vec<&'static str>,
}

/// Deletes every object under a snapshot folder, the marker first.
async fn delete_snapshot(target: &Target, job: &str, id: &str) -> Result<()> {
    let dir = snapshot_dir(job, id);
    match target.store.delete(&dir.clone().join(MARKER)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot delete {dir}/{MARKER} on {}", target.name));
        }
    }
    let mut listing = target.store.list(Some(&dir));
    let mut objects = Vec::new();
    while let Some(meta) = listing.next().await {
        objects.push(
            meta.with_context(|| format!("cannot list {dir} on {}", target.name))?
                .location,
        );
    }
    for location in objects {
        match target.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot delete {location} on {}", target.name));
            }
        }
    }
    target.remove_empty_folder(&dir);
    Ok(())
}

/// Applies one job's retention on one target.
pub fn prune_target(rt: &Handle, job: &Job, target: &Target, dry_run: bool) -> Result<PruneReport> {
    let mut report = PruneReport {
        job: job.name.clone(),
        target: target.name.clone(),
        ..PruneReport::default()
    };
    let markers = repo::snapshots(rt, target, &job.name)?;
    if let Some(policy) = &job.retention {
        let times: Vec<OffsetDateTime> = markers
            .iter()
            .map(|m| time_of(&m.id).unwrap_or(m.started_at))
            .collect();
        for (m, reasons) in markers.iter().zip(decide(&times, policy)) {
            if reasons.is_empty() {
                report.forgotten.push(m.id.clone());
            } else {
                report.kept.push(KeptSnapshot {
                    id: m.id.clone(),
                    reasons,
                });
            }
        }
    } else {
        report.kept = markers
            .iter()
            .map(|m| KeptSnapshot {
                id: m.id.clone(),
                reasons: vec!["no retention configured"],
            })
            .collect();
    }
    // Folders that never got a marker: crashed or cancelled runs (or one running now,
    // which is why only those older than the grace period go).
    let listing = rt
        .block_on(
            target
                .store
                .list_with_delimiter(Some(&ObjPath::from(job.name.as_str()))),
        )
        .with_context(|| format!("cannot list job {} on target {}", job.name, target.name))?;
    let committed: std::collections::HashSet<&str> =
        markers.iter().map(|m| m.id.as_str()).collect();
    let now = OffsetDateTime::now_utc();
    for dir in &listing.common_prefixes {
        let Some(id) = dir.filename().filter(|f| is_id(f)) else {
            continue;
        };
        if committed.contains(id) {
            continue;
        }
        if let Some(t) = time_of(id)
            && now - t > job.incomplete_after
        {
            report.incomplete_removed.push(id.to_string());
        }
    }
    if !dry_run {
        for id in report.forgotten.iter().chain(&report.incomplete_removed) {
            rt.block_on(delete_snapshot(target, &job.name, id))?;
        }
    }
    Ok(report)
}

pub fn run(rt: &Handle, cfg: &Config, args: &PruneArgs) -> Result<u8> {
    let jobs: Vec<&Job> = match &args.job {
        Some(j) => vec![find_job(cfg, j)?],
        None => cfg.jobs.values().collect(),
    };
    let mut reports = Vec::new();
    for job in jobs {
        for target in targets_of(cfg, job, None)? {
            if args.target.as_ref().is_some_and(|t| *t != target.name) {
                continue;
            }
            reports.push(prune_target(rt, job, &target, args.dry_run)?);
        }
    }
    if args.json {
        print_json(&reports)?;
        return Ok(crate::exit::OK);
    }
    let verb = if args.dry_run {
        "would forget"
    } else {
        "forgot"
    };
    for r in &reports {
        println!(
            "job {} on {}: {} kept, {verb} {}, {} incomplete folder(s) {}",
            r.job,
            r.target,
            r.kept.len(),
            r.forgotten.len(),
            r.incomplete_removed.len(),
            if args.dry_run { "to remove" } else { "removed" }
        );
        for k in &r.kept {
            println!("  keep   {} ({})", k.id, k.reasons.join(", "));
        }
        for f in &r.forgotten {
            println!("  forget {f}");
        }
        for i in &r.incomplete_removed {
            println!("  remove {i} (incomplete)");
        }
    }
    Ok(crate::exit::OK)
}
