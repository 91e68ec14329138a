//! Verify's domain entry point: what the user asked (`VerifyRequest`: one job or
//! every job, which snapshots, which target, deep or stored bytes) in, each job's
//! verdicts out, the progress of each job followed through the caller's `Report`.
//! Without a job every job is verified, as backup and prune do: one job's error
//! (a target unreachable, no snapshot yet) is that job's outcome and the others
//! still run.

use super::{Verified, identities_for, verify_job_trusting};
use crate::exit;
use crate::report::{Report, Work};
use anyhow::Result;
use coffer_config::{Config, Job};
use std::path::PathBuf;
use tokio::runtime::Handle;

/// What the user asked a verify to do.
pub(crate) struct VerifyRequest {
    /// One job; `None`: every job of the config (with `target`, those that have it).
    pub job: Option<String>,
    /// Only this target (every target of the job when `None`).
    pub target: Option<String>,
    /// A snapshot id, `latest` or `all`.
    pub snapshot: String,
    /// The private identity (the configured one when it exists, for deep mode).
    pub identity: Option<PathBuf>,
    /// Read the stored bytes only, even with an identity at hand.
    pub stored_only: bool,
    pub trust: crate::format::seal::Trust,
}

/// Each job's outcome, in the config's order.
pub(crate) struct Verifies {
    /// Deep mode (an identity was used).
    pub deep: bool,
    /// Every job was asked for (no `job` in the request).
    pub every_job: bool,
    pub jobs: Vec<(String, Result<Verified>)>,
}

/// Verifies what `req` asks. With one job, that job's error is the error; with
/// every job, each job's error is its outcome.
pub(crate) fn verify(
    rt: &Handle,
    cfg: &Config,
    req: &VerifyRequest,
    report: &dyn Report,
) -> Result<Verifies> {
    let ids = identities_for(cfg, req.identity.as_deref(), req.stored_only)?;
    let one = |job: &Job| {
        let work = Work::new("verify", &job.name, None);
        let _shown = report.start(work.clone());
        verify_job_trusting(
            rt,
            cfg,
            (job, req.target.as_deref(), &req.snapshot),
            ids.as_ref(),
            &req.trust,
            &work,
        )
    };
    let deep = ids.is_some();
    if let Some(name) = &req.job {
        let job = crate::open::job(cfg, name)?;
        return Ok(Verifies {
            deep,
            every_job: false,
            jobs: vec![(job.name.clone(), Ok(one(job)?))],
        });
    }
    // Restore-only jobs too: their snapshots are worth checking.
    let jobs: Vec<&Job> = cfg
        .jobs
        .values()
        .filter(|j| req.target.as_ref().is_none_or(|t| j.targets.contains(t)))
        .collect();
    if jobs.is_empty() {
        return Err(exit::usage(match &req.target {
            Some(t) => format!("no job in {} uses target {t}", cfg.file.display()),
            None => format!("no job in {}: nothing to verify", cfg.file.display()),
        }));
    }
    Ok(Verifies {
        deep,
        every_job: true,
        jobs: jobs.into_iter().map(|j| (j.name.clone(), one(j))).collect(),
    })
}
