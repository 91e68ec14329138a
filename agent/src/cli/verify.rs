//! `coffer verify`: are the stored snapshots intact? The checks are
//! `crate::verify`; this module picks the mode from the flags and prints, every
//! verdict saying which mode ran (deep, or stored bytes only). Exit 3 for damage,
//! 2 for a snapshot not encrypted to the identity given (use another key).

use crate::cli::VerifyArgs;
use crate::cli::{job as find_job, print_json};
use crate::exit;
use crate::verify::{VerifyMode, identities_for, verify_job_trusting};
use anyhow::Result;
use coffer_config::Config;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &VerifyArgs) -> Result<u8> {
    let job = find_job(cfg, &args.job)?;
    let ids = identities_for(cfg, args.identity.as_deref(), args.stored_only)?;
    let bar = crate::progress::wanted(args.json).then(|| {
        let base = crate::progress::STORED_READ.load(std::sync::atomic::Ordering::Relaxed);
        crate::progress::Follow::start(&format!("verify {}", job.name), None, move || {
            (
                crate::progress::STORED_READ.load(std::sync::atomic::Ordering::Relaxed) - base,
                0,
            )
        })
    });
    let verdicts = verify_job_trusting(
        rt,
        cfg,
        job,
        args.target.as_deref(),
        &args.snapshot,
        ids.as_ref(),
        &crate::cli::trust_of(cfg, &args.trust),
    );
    drop(bar);
    let crate::verify::Verified { verdicts, index } = verdicts?;
    let identity = crate::keys::identity_path(args.identity.as_deref(), &cfg.encryption);
    let mode = if ids.is_some() {
        "deep: decrypted, every file checked"
    } else {
        "stored bytes only: no identity, so the contents were not decrypted"
    };
    if args.json {
        print_json(&verdicts)?;
    } else {
        for v in &verdicts {
            if let Some(n) = &v.not_for_identity {
                let said = match identity {
                    Some(f) => n.with_file(f),
                    None => n.to_string(),
                };
                println!("{} on {}: {said}", v.snapshot, v.target);
            } else if v.ok {
                println!(
                    "{} on {}: ok ({}{} checked; {mode})",
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
                println!("{} on {}: DAMAGED ({mode})", v.snapshot, v.target);
                for p in &v.problems {
                    println!("  {p}");
                }
            }
        }
    }
    // On stderr with --json, which keeps stdout one JSON document.
    if let Some(note) = &index {
        if args.json {
            eprintln!("{note}");
        } else {
            println!("{note}");
        }
    }
    // Damage first; a snapshot for other keys is a question of which key to use.
    Ok(
        if verdicts
            .iter()
            .any(|v| !v.ok && v.not_for_identity.is_none())
        {
            exit::INCONSISTENT
        } else if verdicts.iter().any(|v| v.not_for_identity.is_some()) {
            exit::USAGE
        } else {
            exit::OK
        },
    )
}
