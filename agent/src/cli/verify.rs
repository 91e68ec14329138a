//! `coffer verify`: are the stored snapshots intact? The checks are
//! `crate::verify`; this module picks the mode from the flags and prints.

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
    let verdicts = verdicts?;
    if args.json {
        print_json(&verdicts)?;
    } else {
        for v in &verdicts {
            if v.ok {
                println!(
                    "{} on {}: ok ({} objects{} checked, {})",
                    v.snapshot,
                    v.target,
                    v.objects,
                    if v.mode == VerifyMode::Deep {
                        format!(", {} files", v.files)
                    } else {
                        String::new()
                    },
                    if v.mode == VerifyMode::Deep {
                        "decrypted"
                    } else {
                        "stored bytes only"
                    }
                );
            } else {
                println!("{} on {}: DAMAGED", v.snapshot, v.target);
                for p in &v.problems {
                    println!("  {p}");
                }
            }
        }
    }
    Ok(if verdicts.iter().all(|v| v.ok) {
        exit::OK
    } else {
        exit::INCONSISTENT
    })
}
