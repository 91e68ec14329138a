//! `coffer ls`: flags -> `crate::browse::ls` on the snapshot asked for, each
//! entry shown as an `ls -l` style line or a JSON object.

use crate::browse::ls::{Request, ls};
use crate::cli::entries::{EntryJson, Out, link_suffix, mode_string, mtime, owner, shown_path};
use crate::cli::{LsArgs, Opened, Wanted, job as find_job, open_snapshot};
use crate::exit;
use anyhow::Result;
use coffer_config::Config;
use std::os::unix::ffi::OsStrExt;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &LsArgs) -> Result<u8> {
    let job = find_job(cfg, &args.from.job)?;
    let Opened { manifest, .. } = open_snapshot(
        rt,
        cfg,
        job,
        &Wanted {
            command: "ls",
            target: args.from.target.as_deref(),
            identity: args.from.identity.as_deref(),
            snapshot: &args.snapshot,
            trust: &args.from.trust,
        },
    )?;
    let req = Request {
        source: args.source.as_deref(),
        path: args.path.as_ref().map(|p| p.as_os_str().as_bytes()),
    };
    let mut out = Out::new();
    let listed = ls(&manifest, &req, |source, e| {
        if args.json {
            out.json(&EntryJson::of(source, e))
        } else {
            out.line(format_args!(
                "{} {:<17} {:>12} {} {}{}",
                mode_string(e.kind, e.mode),
                owner(e),
                e.size,
                mtime(e.mtime),
                shown_path(source, &e.path),
                link_suffix(e)
            ))
        }
    });
    // On an error `out` is dropped, which writes what was listed before it.
    listed?;
    out.flush()?;
    Ok(exit::OK)
}
