//! `coffer find`: flags -> `crate::browse::find`, each match shown as a line
//! (snapshot, mode, size, mtime, path) or a JSON object, an unreadable snapshot
//! reported on stderr (and as a record with `--json`), then the summary; exit 1
//! when a snapshot could not be read.

use crate::browse::Snapshots;
use crate::browse::find::{Found, Pattern, Summary, find};
use crate::cli::entries::{EntryJson, Out, link_suffix, mode_string, mtime, shown_path};
use crate::cli::{FindArgs, Reader, job as find_job, open_reader, trust_of};
use crate::exit;
use anyhow::Result;
use coffer_config::Config;
use serde::Serialize;
use tokio::runtime::Handle;

#[derive(Serialize)]
struct MatchJson<'a> {
    record: &'static str,
    snapshot: &'a str,
    #[serde(flatten)]
    entry: EntryJson<'a>,
}

#[derive(Serialize)]
#[serde(tag = "record", rename_all = "lowercase")]
enum Record<'a> {
    Unreadable {
        snapshot: &'a str,
        error: String,
    },
    Summary {
        matches: u64,
        snapshots_matched: u64,
        snapshots: u64,
        unreadable: u64,
    },
}

pub fn run(rt: &Handle, cfg: &Config, args: &FindArgs) -> Result<u8> {
    let job = find_job(cfg, &args.from.job)?;
    let pattern = Pattern::new(&args.pattern)?;
    let Reader { target, ids } = open_reader(
        cfg,
        job,
        "find",
        args.from.target.as_deref(),
        args.from.identity.as_deref(),
    )?;
    let trust = trust_of(cfg, &args.from.trust);
    let tmp_dir = cfg.agent.state_dir.join("tmp");
    let snaps = Snapshots {
        rt,
        target: &target,
        job: &job.name,
        ids: &ids,
        trust: &trust,
        tmp_dir: &tmp_dir,
    };
    let mut out = Out::new();
    let found = find(&snaps, job, &pattern, args.source.as_deref(), |f| {
        show(f, &target.name, args.json, &mut out)
    });
    // On an error `out` is dropped, which writes what was found before it.
    let Summary {
        matches,
        snapshots_matched,
        snapshots,
        unreadable,
    } = found?;
    if args.json {
        out.json(&Record::Summary {
            matches,
            snapshots_matched,
            snapshots,
            unreadable,
        })?;
    } else {
        out.line(format_args!(
            "{}{}",
            summary(matches, snapshots_matched, snapshots),
            match unreadable {
                0 => String::new(),
                n => format!(" ({n} could not be read)"),
            }
        ))?;
    }
    out.flush()?;
    Ok(if unreadable == 0 {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// Prints a match, or says a snapshot was skipped.
fn show(found: Found<'_>, target: &str, json: bool, out: &mut Out) -> Result<()> {
    match found {
        Found::Match {
            snapshot,
            source,
            entry: e,
        } => {
            if json {
                out.json(&MatchJson {
                    record: "match",
                    snapshot,
                    entry: EntryJson::of(source, e),
                })
            } else {
                out.line(format_args!(
                    "{} {} {:>12} {} {}{}",
                    snapshot,
                    mode_string(e.kind, e.mode),
                    e.size,
                    mtime(e.mtime),
                    shown_path(source, &e.path),
                    link_suffix(e)
                ))
            }
        }
        Found::Unreadable { snapshot, error } => {
            out.flush()?;
            eprintln!("error: snapshot {snapshot} on target {target}: {error:#}; skipped");
            if json {
                out.json(&Record::Unreadable {
                    snapshot,
                    error: format!("{error:#}"),
                })?;
            }
            Ok(())
        }
    }
}

/// "3 matches in 2 of 5 snapshots".
fn summary(matches: u64, matched: u64, total: u64) -> String {
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    format!(
        "{} in {matched} of {}",
        plural(matches, "match", "matches"),
        plural(total, "snapshot", "snapshots")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_in_words() {
        assert_eq!(summary(0, 0, 0), "0 matches in 0 of 0 snapshots");
        assert_eq!(summary(1, 1, 1), "1 match in 1 of 1 snapshot");
        assert_eq!(summary(5, 2, 3), "5 matches in 2 of 3 snapshots");
    }
}
