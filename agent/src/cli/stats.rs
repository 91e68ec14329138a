//! `coffer stats`: per job and target, what is stored and what of it is dead
//! (`crate::stats`), as an aligned table or one JSON array. Without a private key
//! from the signed markers alone; with `--identity` (or the configured identity
//! file, when it is on this host) also the logical size and the dedup ratio. One
//! job or target that cannot be read is reported on stderr and the others are
//! still shown; the exit code is the worst.

use crate::cli::{StatsArgs, print_json};
use crate::exit;
use crate::stats::TargetStats;
use crate::units::bytes;
use anyhow::Result;
use coffer_config::Config;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &StatsArgs) -> Result<u8> {
    let jobs = crate::cli::jobs_for(cfg, args.job.as_deref(), args.target.as_deref())?;
    let ids = crate::verify::identities_for(cfg, args.identity.as_deref(), false)?;
    let trust = crate::cli::trust_of(cfg, &args.trust);
    let mut rows = Vec::new();
    let mut worst = exit::OK;
    for job in jobs {
        let targets = match crate::repo::targets_of(
            cfg,
            job,
            args.target.as_deref(),
            coffer_plugins::Access::Read,
        ) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: job {}: {e:#}", job.name);
                worst = worst.max(exit::code_for(&e));
                continue;
            }
        };
        for target in &targets {
            // One unreachable target must not hide what the others hold.
            match crate::stats::of_target(rt, cfg, job, target, &trust, ids.as_ref()) {
                Ok(s) => rows.push(s),
                Err(e) => {
                    let e = not_for_identity(cfg, args, e);
                    eprintln!("error: job {} on target {}: {e:#}", job.name, target.name);
                    worst = worst.max(exit::code_for(&e));
                }
            }
        }
    }
    if args.json {
        print_json(&rows)?;
    } else {
        print_table(&rows, ids.is_some());
    }
    Ok(worst)
}

/// A manifest for other keys is no damage: a usage error naming the identity.
fn not_for_identity(cfg: &Config, args: &StatsArgs, e: anyhow::Error) -> anyhow::Error {
    match (
        crate::key_match::not_for_identity(&e),
        crate::keys::identity_path(args.identity.as_deref(), &cfg.encryption),
    ) {
        (Some(n), Some(file)) => exit::usage(n.with_file(file).to_string()),
        _ => e,
    }
}

/// One row per job and target, columns as wide as their widest cell (names left,
/// numbers right); the logical columns only with the identity.
fn print_table(rows: &[TargetStats], logical: bool) {
    if rows.is_empty() {
        println!("no jobs to show");
        return;
    }
    let mut head = vec![
        "job",
        "target",
        "snapshots",
        "packs",
        "stored",
        "dead",
        "unreferenced",
    ];
    if logical {
        head.extend(["newest", "all snapshots", "dedup"]);
    }
    let mut table: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let mut cells = vec![
            coffer_plugins::escape_controls(&r.job).into_owned(),
            coffer_plugins::escape_controls(&r.target).into_owned(),
            r.snapshots.to_string(),
            r.packs.to_string(),
            bytes(r.stored_bytes),
            bytes(r.dead_bytes),
            bytes(r.unreferenced_bytes),
        ];
        if let Some(l) = &r.logical {
            cells.push(bytes(l.newest_bytes));
            cells.push(bytes(l.all_bytes));
            cells.push(
                l.dedup_ratio
                    .map_or("-".to_string(), |d| format!("{d:.2}x")),
            );
        }
        table.push(cells);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let w = widths[c];
                if c < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    for r in rows.iter().filter(|r| r.untrusted_snapshots > 0) {
        println!(
            "job {} on target {}: {} not signed by a trusted key left out (`coffer list --job {}` shows who signed them)",
            r.job,
            r.target,
            crate::units::count(r.untrusted_snapshots, "snapshot"),
            r.job
        );
    }
}
