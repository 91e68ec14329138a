//! `coffer restore`: the flags become a `restore::job::RestoreRequest`, the domain
//! restores (`restore::job`), and this prints the outcome (the report, or
//! `--json`) before the after_restore rule runs, then picks the exit code.

use crate::cli::{OwnerMode, RestoreArgs, print_json, report::Terminal, trust_of};
use crate::exit;
use crate::restore::job::{RestoreRequest, restore};
use crate::restore::tree_check::Owners;
use anyhow::Result;
use coffer_config::Config;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &RestoreArgs) -> Result<u8> {
    let report = Terminal::new(args.json);
    let done = restore(rt, cfg, &request(cfg, args), &report)?;
    if args.json {
        print_json(&done)?;
    } else {
        for w in &done.warnings {
            eprintln!("warning: {}", coffer_plugins::escape_controls(w));
        }
        let checks = done.sources.iter().flat_map(|r| r.lines());
        for line in checks.chain(done.db_check.iter().flat_map(|c| c.lines())) {
            crate::say!("{line}");
        }
    }
    done.after_restore(&report)?;
    Ok(if done.consistent {
        exit::OK
    } else {
        exit::INCONSISTENT
    })
}

fn request(cfg: &Config, args: &RestoreArgs) -> RestoreRequest {
    RestoreRequest {
        job: args.job.clone(),
        snapshot: args.snapshot.clone(),
        target: args.target.clone(),
        identity: args.identity.clone(),
        trust: trust_of(cfg, &args.trust),
        sources: args.sources.clone(),
        to: args.to.clone(),
        paths: args.paths.clone(),
        force: args.force,
        owner: args.owner.map(|o| match o {
            OwnerMode::Preserve => Owners::ByName,
            OwnerMode::Numeric => Owners::Numeric,
            OwnerMode::Skip => Owners::Ignore,
        }),
        devices: args.devices,
        db_url: args.db_url.clone(),
        clean: args.clean,
        no_hooks: args.no_hooks,
    }
}
