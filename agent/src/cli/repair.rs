//! `coffer repair`: picks the identity from the flags, runs `crate::repair` and
//! prints its report, per target what was checked, copied back from where and
//! left damaged, then what the index forgot and the snapshots that stay damaged.

use crate::cli::RepairArgs;
use crate::cli::{job as find_job, print_json};
use crate::exit::usage;
use crate::repair::{Kind, Lost, Options, Report, repair};
use anyhow::Result;
use coffer_config::Config;
use tokio::runtime::Handle;

/// File names printed per lost source; `--json` has up to 1000.
const SHOWN_PATHS: usize = 20;

pub fn run(rt: &Handle, cfg: &Config, args: &RepairArgs) -> Result<u8> {
    let job = find_job(cfg, &args.job)?;
    let mut notes = Vec::new();
    // --identity must work; the configured file is used when it can be read.
    let ids = match (&args.identity, cfg.encryption.identity_file.as_deref()) {
        (Some(f), _) => Some(crate::keys::identities(f).map_err(|e| usage(format!("{e:#}")))?),
        (None, Some(f)) if f.exists() => match crate::keys::identities(f) {
            Ok(ids) => Some(ids),
            Err(e) => {
                notes.push(format!(
                    "the configured identity could not be read ({e:#}): the files the damaged \
                     snapshots lose are not listed"
                ));
                None
            }
        },
        _ => None,
    };
    let trust = crate::cli::trust_of(cfg, &args.trust);
    let report = repair(
        rt,
        cfg,
        job,
        &Options {
            only: args.target.as_deref(),
            dry_run: args.dry_run,
            ids: ids.as_ref(),
            rebuild_index: args.rebuild_index,
            trust: &trust,
        },
    )?;
    if args.json {
        print_json(&report)?;
        for n in &notes {
            eprintln!("{n}");
        }
    } else {
        print_text(&report, ids.is_some());
        for n in &notes {
            println!("{n}");
        }
    }
    Ok(report.exit_code)
}

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Pack => "pack",
        Kind::Object => "object",
    }
}

fn print_text(r: &Report, with_identity: bool) {
    let would = if r.dry_run { "would copy" } else { "copied" };
    for t in &r.targets {
        println!(
            "target {}: checked {} pack(s) and {} object(s) of {} trusted snapshot(s){}",
            t.target,
            t.packs_checked,
            t.objects_checked,
            t.snapshots,
            if t.untrusted_snapshots > 0 {
                format!(
                    "; ignored {} snapshot(s) not signed by a trusted signer",
                    t.untrusted_snapshots
                )
            } else {
                String::new()
            }
        );
        for x in &t.repaired {
            println!(
                "  {} {} {} back from target {} (was: {})",
                would,
                kind(x.kind),
                x.name,
                x.from,
                x.was
            );
        }
        for x in &t.unrepairable {
            println!(
                "  DAMAGED {} {}: no target holds a good copy ({})",
                kind(x.kind),
                x.name,
                x.why
            );
        }
        for x in &t.unreadable {
            println!(
                "  could not read {} {} (not taken for damage, left alone): {}",
                kind(x.kind),
                x.name,
                x.why
            );
        }
        for f in &t.failures {
            println!("  FAILED: {f}");
        }
        if t.repaired.is_empty() && t.unrepairable.is_empty() && t.unreadable.is_empty() {
            println!("  all intact: nothing to do");
        }
    }
    for f in &r.failures {
        println!("FAILED: {f}");
    }
    if !r.forgotten_packs.is_empty() {
        let verb = if r.dry_run { "would forget" } else { "forgot" };
        println!(
            "the index of job {} {verb} {} pack(s) no target holds intact: {}{}; the next \
             backup reads those files and stores them again",
            r.job,
            r.forgotten_packs.len(),
            r.forgotten_packs.join(", "),
            r.forgotten_files
                .map(|n| format!(" ({n} file(s) of the last backup were stored in them)"))
                .unwrap_or_default()
        );
    }
    for d in &r.damaged_snapshots {
        println!(
            "snapshot {} on target {} (host {}, finished {}) stays DAMAGED: {}",
            d.snapshot,
            d.target,
            d.host,
            d.finished_at,
            d.objects
                .iter()
                .map(|o| format!("object {o}"))
                .chain(d.packs.iter().map(|p| format!("pack {p}")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        match &d.lost {
            None if !with_identity => println!(
                "  (pass --identity, or set [encryption] identity_file, to list the files it loses)"
            ),
            None => {}
            Some(Lost::WholeSnapshot) => println!(
                "  its manifest is damaged: the whole snapshot is lost (nothing says what it held)"
            ),
            Some(Lost::Unknown { why }) => {
                println!("  which files it loses is unknown: {why}")
            }
            Some(Lost::Sources { sources }) => {
                for s in sources {
                    if s.whole {
                        println!(
                            "  source {}: lost whole (its dump or archive is damaged)",
                            s.source
                        );
                        continue;
                    }
                    println!(
                        "  source {}: loses {} file(s), {}",
                        s.source,
                        s.files,
                        crate::units::count(s.bytes, "byte")
                    );
                    for p in s.paths.iter().take(SHOWN_PATHS) {
                        println!("    {p}");
                    }
                    if s.files > SHOWN_PATHS as u64 {
                        println!(
                            "    ... and {} more (--json lists up to 1000)",
                            s.files - SHOWN_PATHS as u64
                        );
                    }
                }
            }
        }
    }
    if let Some(b) = &r.rebuilt_index {
        println!(
            "index {} from snapshot {} (manifest read on target {}): {} pack(s) intact on every \
             target, {} file content(s) counted as stored{}{}; {}",
            if b.dry_run {
                "would be rebuilt"
            } else {
                "rebuilt"
            },
            b.snapshot,
            b.target,
            b.packs,
            b.contents,
            if b.packs_left_out.is_empty() {
                String::new()
            } else {
                format!(
                    "; left out {} pack(s) not intact on every target: {}",
                    b.packs_left_out.len(),
                    b.packs_left_out.join(", ")
                )
            },
            if b.files_left_out > 0 {
                format!(
                    "; {} file(s) left out (in those packs, or sparse)",
                    b.files_left_out
                )
            } else {
                String::new()
            },
            b.note
        );
    }
    let damaged = r.damaged_snapshots.len();
    let summary = match (r.exit_code, r.dry_run) {
        (0, _) => "nothing damaged remains".to_string(),
        (3, true) => "damage found; nothing was changed (dry run)".to_string(),
        (3, false) => format!("{damaged} snapshot(s) stay damaged"),
        _ => "some checks or copies failed; run repair again once the targets can be reached"
            .to_string(),
    };
    println!("job {}: {summary}", r.job);
}
