//! `coffer copy`: picks the jobs and the snapshots from the flags, runs
//! `crate::copy` for each job and prints what each snapshot became on the
//! destination. Several jobs: one's failure is reported and the others still run;
//! the exit code is the highest.

use crate::cli::{TrustArgs, print_json};
use crate::copy::{Copied, Outcome, Request, copy};
use anyhow::Result;
use clap::Args;
use coffer_config::Config;
use tokio::runtime::Handle;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The target to copy from (a [targets.NAME] of the config).
    #[arg(long, value_name = "TARGET")]
    pub from: String,
    /// The target to copy to; any configured target, in the job's list or not.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// Only this job (default: every job of the config).
    #[arg(long)]
    pub job: Option<String>,
    /// `all`, `latest`, or a snapshot id.
    #[arg(long, default_value = "all", value_name = "ID")]
    pub snapshot: String,
    /// Say what would be copied; write nothing, take no lock.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as one JSON object per job.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

pub fn run(rt: &Handle, cfg: &Config, args: &CopyArgs) -> Result<u8> {
    let jobs: Vec<&coffer_config::Job> = match &args.job {
        Some(name) => vec![crate::cli::job(cfg, name)?],
        None => cfg.jobs.values().collect(),
    };
    let trust = crate::cli::trust_of(cfg, &args.trust);
    let req = Request {
        from: &args.from,
        to: &args.to,
        which: &args.snapshot,
        trust: &trust,
        dry_run: args.dry_run,
    };
    let mut code = 0;
    for job in jobs {
        match copy(rt, cfg, job, &req) {
            Ok(copied) => {
                code = code.max(copied.exit_code());
                if args.json {
                    print_json(&copied)?;
                } else {
                    print_text(&copied);
                }
            }
            // One job alone: its error is the command's (exit 2 for usage).
            Err(e) if args.job.is_some() => return Err(e),
            Err(e) => {
                eprintln!("error: job {}: {e:#}", job.name);
                code = code.max(1);
            }
        }
    }
    Ok(code)
}

fn print_text(c: &Copied) {
    let verb = if c.dry_run { "would copy" } else { "copied" };
    crate::say!("job {}: from target {} to target {}", c.job, c.from, c.to);
    if c.snapshots.is_empty() {
        crate::say!("  no snapshot to copy");
    }
    for s in &c.snapshots {
        let sizes = || {
            format!(
                "{} object(s), {}; {} already there",
                s.objects_copied,
                crate::units::bytes(s.bytes_copied),
                s.objects_present
            )
        };
        match s.outcome {
            Outcome::Copied => crate::say!("  {}: {verb} ({})", s.id, sizes()),
            Outcome::AlreadyThere => crate::say!("  {}: already on target {}", s.id, c.to),
            Outcome::Failed => crate::say!(
                "  {}: NOT copied: {}",
                s.id,
                coffer_plugins::escape_controls(s.error.as_deref().unwrap_or("?"))
            ),
        }
    }
    if c.untrusted > 0 {
        crate::say!(
            "  {} snapshot(s) on target {} not signed by a trusted key: not copied",
            c.untrusted,
            c.from
        );
    }
}
