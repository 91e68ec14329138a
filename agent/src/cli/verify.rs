//! `coffer verify`: are the stored snapshots intact? The flags become a
//! `verify::job::VerifyRequest`; the domain (`crate::verify`) verifies, and this
//! prints, every verdict saying which mode ran (deep, or stored bytes only).
//! Without `--job` every job is verified: one job's error (a target unreachable,
//! no snapshot yet) is reported and the others' verdicts still printed.
//! Exit 3 for damage, 2 for a snapshot not encrypted to the identity given (use
//! another key) or bad usage, 1 for a job that could not be verified; with several
//! jobs, the highest of these.

use crate::cli::{VerifyArgs, print_json, report::Terminal, trust_of};
use crate::exit;
use crate::verify::job::{VerifyRequest, verify};
use crate::verify::{Verdict, Verified, VerifyMode};
use anyhow::Result;
use coffer_config::Config;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &VerifyArgs) -> Result<u8> {
    let done = verify(rt, cfg, &request(cfg, args), &Terminal::new(args.json))?;
    let (mut all, mut worst) = (Vec::new(), exit::OK);
    for (job, verified) in done.jobs {
        match verified {
            Ok(Verified { verdicts, index }) => {
                if !args.json {
                    let prefix = match done.every_job {
                        true => format!("job {job}: "),
                        false => String::new(),
                    };
                    print_verdicts(cfg, args, done.deep, &verdicts, &prefix);
                }
                print_index_note(args, index.as_deref());
                worst = worst.max(code_for(&verdicts));
                all.extend(verdicts);
            }
            // On stderr: with --json stdout stays one JSON document.
            Err(e) => {
                eprintln!("job {job}: not verified: {e:#}");
                worst = worst.max(exit::code_for(&e));
            }
        }
    }
    if args.json {
        print_json(&all)?;
    }
    Ok(worst)
}

fn request(cfg: &Config, args: &VerifyArgs) -> VerifyRequest {
    VerifyRequest {
        job: args.job.clone(),
        target: args.target.clone(),
        snapshot: args.snapshot.clone(),
        identity: args.identity.clone(),
        stored_only: args.stored_only,
        trust: trust_of(cfg, &args.trust),
    }
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
