//! `coffer prune`: each job's retention on each of its targets (the work, and the
//! rule that a job a backup holds is left alone, is
//! `crate::retention::by_hand`); prints what each target kept and removed. Exit 1
//! when a job was busy or something could not be removed.

use crate::cli::PruneArgs;
use crate::cli::{job as find_job, print_json};
use crate::retention::by_hand::{JobPruned, Request, prune_job};
use crate::retention::prune::PruneReport;
use anyhow::Result;
use coffer_config::{Config, Job};
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &PruneArgs) -> Result<u8> {
    let jobs: Vec<&Job> = match &args.job {
        Some(j) => vec![find_job(cfg, j)?],
        None => cfg.jobs.values().collect(),
    };
    let trust = crate::format::seal::Trust::new(&cfg.encryption, &[], args.allow_unsigned);
    let req = Request {
        target: args.target.as_deref(),
        dry_run: args.dry_run,
        trust: &trust,
    };
    let mut reports = Vec::new();
    let mut busy = Vec::new();
    for job in jobs {
        let pruned = prune_job(rt, cfg, job, &req, |t| {
            if let Some(e) = &t.status_error {
                eprintln!(
                    "warning: cannot record the status of job {}: {e:#}",
                    job.name
                );
            }
            match &t.repack {
                // With --json stdout holds the JSON alone.
                Some(Ok(note)) if args.json => {
                    eprintln!("job {} on {}: repack: {note}", job.name, t.report.target)
                }
                Some(Ok(note)) => {
                    println!("job {} on {}: repack: {note}", job.name, t.report.target)
                }
                Some(Err(e)) => eprintln!("warning: job {}: repack: {e:#}", job.name),
                None => {}
            }
            reports.push(t.report);
        })?;
        if let JobPruned::Busy(why) = pruned {
            busy.push(why);
        }
    }
    let errors: Vec<&String> = busy
        .iter()
        .chain(reports.iter().flat_map(|r| &r.errors))
        .collect();
    let code = if errors.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::FAILED
    };
    if args.json {
        print_json(&reports)?;
    } else {
        print_text(&reports, args.dry_run);
    }
    for r in &reports {
        for w in &r.uploads_not_aborted {
            eprintln!("warning: job {} on {}: {w}", r.job, r.target);
        }
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(code)
}

fn print_text(reports: &[PruneReport], dry_run: bool) {
    let (forgot, removed) = if dry_run {
        ("would forget", "to remove")
    } else {
        ("forgot", "removed")
    };
    for r in reports {
        println!(
            "job {} on {}: {} kept, {forgot} {}, {} incomplete folder(s) {removed}",
            r.job,
            r.target,
            r.kept.len(),
            r.forgotten.len(),
            r.incomplete_removed.len(),
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
        if !r.packs_removed.is_empty() || r.packs_live > 0 {
            println!(
                "  packs: {} in use ({}, of which about {} unused by the kept snapshots), \
                 {} no snapshot references {removed} ({})",
                r.packs_live,
                crate::units::bytes(r.packs_live_bytes),
                crate::units::bytes(r.packs_dead_bytes),
                r.packs_removed.len(),
                crate::units::bytes(r.packs_freed_bytes),
            );
        }
        if !r.staging_removed.is_empty() {
            println!(
                "  staging files of uploads a killed run left: {} {removed} ({})",
                r.staging_removed.len(),
                crate::units::bytes(r.staging_freed_bytes),
            );
        }
        if !r.uploads_aborted.is_empty() {
            println!(
                "  unfinished S3 uploads a killed run of this host left: {} aborted",
                r.uploads_aborted.len()
            );
        }
        if let Some(line) = waiting_line(&r.kept_for_grace) {
            println!("  {line}");
        }
        for l in &r.locked {
            match &l.unknown {
                None => println!(
                    "  locked {} (Object Lock holds it until {})",
                    l.what, l.until
                ),
                Some(why) => println!(
                    "  locked {} (its retention could not be read, left for the next prune: {why})",
                    l.what
                ),
            }
        }
    }
}

/// What the grace period keeps, and from when it may go; `None` when nothing.
fn waiting_line(w: &crate::pack::gc::Waiting) -> Option<String> {
    let (Some(from), Some(by)) = (w.removable_from, w.all_removable_by) else {
        return None;
    };
    let what: Vec<String> = [
        (w.packs, "pack(s) no snapshot references"),
        (w.staging_files, "staging file(s) of unfinished uploads"),
        (w.incomplete_folders, "incomplete folder(s)"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let when = if from == by {
        format!("removable from {}", at(from))
    } else {
        format!("removable from {} (all by {})", at(from), at(by))
    };
    Some(format!(
        "kept until older than incomplete_after: {} ({}); {when}",
        what.join(", "),
        crate::units::bytes(w.bytes),
    ))
}
