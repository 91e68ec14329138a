//! `coffer backup`: one run of each named job, reported as text or JSON. The run
//! itself is `crate::run`; this module only chooses the jobs and prints.

use crate::cli::BackupArgs;
use crate::cli::job as find_job;
use crate::run::{JobRun, RunStatus, run_job};
use crate::units::bytes;
use anyhow::{Context, Result};
use coffer_config::{Config, Job};
use std::io::Write;
use std::path::Path;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, config_path: &Path, args: &BackupArgs) -> Result<u8> {
    let jobs: Vec<&Job> = if args.jobs.is_empty() {
        // Jobs without sources only restore: "all jobs" means those that back up.
        let all: Vec<&Job> = cfg.jobs.values().filter(|j| !j.restore_only()).collect();
        if all.is_empty() {
            return Err(crate::exit::usage(format!(
                "no job in {} has sources: there is nothing to back up (jobs without \
                 sources only restore, list, verify and repair)",
                cfg.file.display()
            )));
        }
        all
    } else {
        args.jobs
            .iter()
            .map(|j| find_job(cfg, j))
            .collect::<Result<_>>()?
    };
    if args.dry_run {
        if let Some(j) = jobs.iter().find(|j| j.restore_only()) {
            return Err(crate::exit::usage(format!(
                "job {} has no sources: it backs up nothing; add [[jobs.{}.sources]] to back up",
                j.name, j.name
            )));
        }
        return super::dry_run::run(cfg, &jobs, args.json);
    }
    crate::cancel::watch(rt).context("cannot install the SIGTERM and SIGINT handlers")?;
    let mut runs = Vec::new();
    for job in jobs {
        if crate::cancel::requested() {
            break;
        }
        let run = run_job(rt, cfg, job, &super::report::Terminal::new(false))?;
        if !args.json {
            print_run(&run, job, config_path);
        }
        runs.push(run);
    }
    if args.json {
        let json = serde_json::to_string_pretty(&runs)?;
        // A reader that went away has what it wanted; a file that cannot take the
        // report is a failure a script must see.
        if let Err(e) = writeln!(std::io::stdout().lock(), "{json}")
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(e).context("cannot print the JSON report");
        }
    }
    // A signal may have stopped the loop before some jobs ran.
    Ok(
        if runs.iter().any(|r| r.missing_root) && !crate::cancel::requested() {
            // A target directory that is not there (a disk not mounted): fix the
            // setup, as for a bad config; the other targets' results are reported.
            crate::exit::USAGE
        } else if !runs
            .iter()
            .all(|r| r.status == RunStatus::Success && r.hook_errors.is_empty())
            || crate::cancel::requested()
        {
            crate::exit::FAILED
        } else if runs
            .iter()
            .any(|r| r.check.as_ref().is_some_and(|c| !c.consistent()))
        {
            // Committed, but the database references files the snapshot lacks.
            crate::exit::INCONSISTENT
        } else {
            crate::exit::OK
        },
    )
}

fn print_run(run: &JobRun, job: &Job, config_path: &Path) {
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    for h in &run.hook_errors {
        eprintln!("error: {h}");
    }
    match run.status {
        RunStatus::Failed | RunStatus::Cancelled => {
            eprintln!(
                "job {}: FAILED, no snapshot written: {}",
                run.job,
                run.error.as_deref().unwrap_or("unknown error")
            );
            return;
        }
        RunStatus::Partial => eprintln!(
            "job {}: PARTIAL, some targets did not get snapshot {}",
            run.job, run.snapshot
        ),
        RunStatus::Success => {}
    }
    say(format_args!(
        "snapshot {} of job {} ({:.1}s, skew {:.3}s, window {:.3}s)",
        run.snapshot, run.job, run.duration_seconds, run.skew_seconds, run.window_seconds
    ));
    for s in &run.sources {
        // A database or a command gives one dump, not files: "0 files" said nothing.
        let kind = job
            .sources
            .iter()
            .find(|c| c.name == s.name)
            .map(|c| c.kind.source_type());
        let what = match kind.and_then(coffer_config::SourceType::output_name) {
            Some(output) => output.to_string(),
            None => crate::units::count(s.files as u64, "file"),
        };
        say(format_args!(
            "  source {}: {what}, {} read, {} in the stream, {} stored, window {:.3}s",
            s.name,
            bytes(s.bytes_read),
            bytes(s.plaintext_size),
            bytes(s.stored_size),
            s.window_seconds
        ));
        if let Some(p) = &s.packed {
            say(format_args!(
                "    {} unchanged (not read), {} already stored, {} new ({}) in {} new pack(s); {} pack(s) in all",
                p.unchanged_files,
                p.known_files,
                p.new_files,
                bytes(p.new_bytes),
                p.new_packs,
                p.packs
            ));
        }
    }
    if let Some(c) = &run.check {
        for line in c.lines() {
            crate::say!("{line}");
        }
    }
    for t in &run.targets {
        match &t.error {
            None => say(format_args!(
                "  target {}: committed to {}",
                t.name, t.description
            )),
            Some(e) => say(format_args!("  target {}: FAILED: {e}", t.name)),
        }
    }
    for n in &run.notes {
        say(format_args!("  {n}"));
    }
    if run.targets.iter().any(|t| t.committed) {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| {
                let cwd = std::env::current_dir().ok()?;
                Some(p.strip_prefix(&cwd).map(Path::to_path_buf).unwrap_or(p))
            })
            .map_or_else(|| "coffer".to_string(), |p| p.display().to_string());
        say(format_args!("restore it with:"));
        say(format_args!(
            "  {exe} --config {} restore --job {} --snapshot {} --to ./coffer-restore",
            config_path.display(),
            run.job,
            run.snapshot
        ));
    }
}

/// Prints a line of the run's report. A reader that went away (`coffer backup |
/// head`) ends the report, not the run: further jobs still run and the exit code
/// still says how they went.
fn say(line: std::fmt::Arguments) {
    crate::cli::output::say(line);
}
