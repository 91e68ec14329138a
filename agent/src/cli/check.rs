//! `coffer check`: flags -> `crate::check`, its reports printed (or one JSON
//! object). Exit 3 when anything differs.

use crate::check::{LiveCheck, Request, check};
use crate::cli::CheckArgs;
use crate::cli::{Opened, Wanted, job as find_job, open_snapshot, print_json};
use crate::exit;
use crate::restore::tree_check::Owners;
use anyhow::Result;
use coffer_config::Config;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &CheckArgs) -> Result<u8> {
    let job = find_job(cfg, &args.job)?;
    let req = Request {
        db_only: args.db_only,
        source: args.source.as_deref(),
        path: args.path.as_deref(),
    };
    let found = check(rt, cfg, job, &req, || {
        let wanted = Wanted {
            command: "check",
            target: args.target.as_deref(),
            identity: args.identity.as_deref(),
            snapshot: &args.snapshot,
            trust: &args.trust,
        };
        let Opened {
            marker, manifest, ..
        } = open_snapshot(rt, cfg, job, &wanted)?;
        Ok((marker, manifest))
    })?;
    let consistent = found.consistent();
    let LiveCheck {
        snapshot,
        owners,
        sources,
        db,
    } = found;
    if args.json {
        print_json(&serde_json::json!({
            "job": job.name,
            "snapshot": snapshot,
            "consistent": consistent,
            "sources": sources,
            "db_check": db,
        }))?;
    } else {
        if owners == Owners::Ignore && !sources.is_empty() {
            eprintln!("warning: not running as root: owners are not compared");
        }
        for line in sources.iter().flat_map(|r| r.lines()) {
            crate::say!("{line}");
        }
        for line in db.iter().flat_map(|d| d.lines()) {
            crate::say!("{line}");
        }
    }
    Ok(if consistent {
        exit::OK
    } else {
        exit::INCONSISTENT
    })
}
