//! `coffer verify`: are the stored snapshots intact? The checks are
//! `crate::verify`; this module picks the jobs and the mode from the flags and
//! prints, every verdict saying which mode ran (deep, or stored bytes only).
//! Without `--job` every job is verified, as backup and prune do: one job's error
//! (a target unreachable, no snapshot yet) is reported and the others still run.
//! Exit 3 for damage, 2 for a snapshot not encrypted to the identity given (use
//! another key) or bad usage, 1 for a job that could not be verified; with several
//! jobs, the highest of these.

use crate::cli::VerifyArgs;
use crate::cli::{job as find_job, print_json};
use crate::exit;
use crate::keys::Identities;
use crate::verify::{Verdict, VerifyMode, identities_for, verify_job_trusting};
use anyhow::Result;
use coffer_config::{Config, Job};
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &VerifyArgs) -> Result<u8> {
    let ids = identities_for(cfg, args.identity.as_deref(), args.stored_only)?;
    let Some(only) = &args.job else {
        return every_job(rt, cfg, args, ids.as_ref());
    };
    let job = find_job(cfg, only)?;
    let (verdicts, index) = one_job(rt, cfg, job, args, ids.as_ref())?;
    if args.json {
        print_json(&verdicts)?;
    } else {
        print_verdicts(cfg, args, ids.is_some(), &verdicts, "");
    }
    print_index_note(args, index.as_deref());
    Ok(code_for(&verdicts))
}

/// Every job of the config (restore-only ones too: their snapshots are worth
/// checking), each reported on its own; with `--target`, only the jobs that have it.
fn every_job(rt: &Handle, cfg: &Config, args: &VerifyArgs, ids: Option<&Identities>) -> Result<u8> {
    let jobs: Vec<&Job> = cfg
        .jobs
        .values()
        .filter(|j| args.target.as_ref().is_none_or(|t| j.targets.contains(t)))
        .collect();
    if jobs.is_empty() {
        return Err(exit::usage(match &args.target {
            Some(t) => format!("no job in {} uses target {t}", cfg.file.display()),
            None => format!("no job in {}: nothing to verify", cfg.file.display()),
        }));
    }
    let mut all = Vec::new();
    let mut worst = exit::OK;
    for job in jobs {
        match one_job(rt, cfg, job, args, ids) {
            Ok((verdicts, index)) => {
                if !args.json {
                    print_verdicts(
                        cfg,
                        args,
                        ids.is_some(),
                        &verdicts,
                        &format!("job {}: ", job.name),
                    );
                }
                print_index_note(args, index.as_deref());
                worst = worst.max(code_for(&verdicts));
                all.extend(verdicts);
            }
            Err(e) => {
                // On stderr: with --json stdout stays one JSON document.
                eprintln!("job {}: not verified: {e:#}", job.name);
                worst = worst.max(exit::code_for(&e));
            }
        }
    }
    if args.json {
        print_json(&all)?;
    }
    Ok(worst)
}

fn one_job(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    args: &VerifyArgs,
    ids: Option<&Identities>,
) -> Result<(Vec<Verdict>, Option<String>)> {
    let bar = crate::progress::wanted(args.json).then(|| {
        let base = crate::progress::STORED_READ.load(std::sync::atomic::Ordering::Relaxed);
        crate::progress::Follow::start("verify", &job.name, None, move || {
            (
                crate::progress::STORED_READ.load(std::sync::atomic::Ordering::Relaxed) - base,
                0,
            )
        })
    });
    let verified = verify_job_trusting(
        rt,
        cfg,
        job,
        args.target.as_deref(),
        &args.snapshot,
        ids,
        &crate::cli::trust_of(cfg, &args.trust),
    );
    drop(bar);
    let crate::verify::Verified { verdicts, index } = verified?;
    Ok((verdicts, index))
}

/// One line per snapshot and target, each prefixed with `prefix` (the job's name
/// when several jobs are reported).
fn print_verdicts(cfg: &Config, args: &VerifyArgs, deep: bool, verdicts: &[Verdict], prefix: &str) {
    let identity = crate::keys::identity_path(args.identity.as_deref(), &cfg.encryption);
    // Why stored bytes only: asked for, or no identity here (never "no identity"
    // when there is one and --stored-only chose not to use it).
    let mode = if deep {
        "deep: decrypted, every file checked"
    } else if args.stored_only {
        "stored bytes only, as --stored-only asks: the contents were not decrypted"
    } else {
        "stored bytes only: no identity, so the contents were not decrypted"
    };
    for v in verdicts {
        if let Some(n) = &v.not_for_identity {
            let said = match identity {
                Some(f) => n.with_file(f),
                None => n.to_string(),
            };
            println!("{prefix}{} on {}: {said}", v.snapshot, v.target);
        } else if v.ok {
            println!(
                "{prefix}{} on {}: ok ({}{} checked; {mode})",
                v.snapshot,
                v.target,
                crate::units::count(v.objects as u64, "object"),
                if v.mode == VerifyMode::Deep {
                    format!(", {}", crate::units::count(v.files as u64, "file"))
                } else {
                    String::new()
                },
            );
        } else {
            println!("{prefix}{} on {}: DAMAGED ({mode})", v.snapshot, v.target);
            for p in &v.problems {
                println!("  {p}");
            }
        }
    }
}

/// What the local index did about packs proven bad; on stderr with --json, which
/// keeps stdout one JSON document.
fn print_index_note(args: &VerifyArgs, note: Option<&str>) {
    if let Some(note) = note {
        if args.json {
            eprintln!("{note}");
        } else {
            println!("{note}");
        }
    }
}

/// Damage first; a snapshot for other keys is a question of which key to use.
fn code_for(verdicts: &[Verdict]) -> u8 {
    if verdicts
        .iter()
        .any(|v| !v.ok && v.not_for_identity.is_none())
    {
        exit::INCONSISTENT
    } else if verdicts.iter().any(|v| v.not_for_identity.is_some()) {
        exit::USAGE
    } else {
        exit::OK
    }
}
