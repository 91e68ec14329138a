//! `coffer backup --dry-run`: what a backup of each job would read, without
//! writing anything. It walks each directory source as the backup would (same
//! patterns, tag files, `one_file_system`) but only stats, never opens a file;
//! for format 2 it asks the job's index, opened read-only, which files a backup
//! would find unchanged and not read; a database source is described, not
//! dumped. It takes no job lock, runs no hook, sends no notification, takes no
//! filesystem snapshot, opens targets only to read, and writes no state, index
//! or status: a dry run changes nothing anywhere.

use crate::pack::index::{Index, Stat};
use crate::units::{bytes, count, counted};
use anyhow::Result;
use coffer_config::{Config, DirectorySource, Job, SourceKind};
use coffer_plugins::exclude::Excludes;
use coffer_plugins::walk_ahead::{self, WalkError, WalkOptions};
use coffer_plugins::{Access, open_target};
use serde::Serialize;
use std::collections::HashSet;

/// At most this many walk problems are listed per source; the count is exact.
const MAX_PROBLEMS: usize = 20;

#[derive(Debug, Serialize)]
struct JobPlan {
    job: String,
    dry_run: bool,
    format: u32,
    sources: Vec<SourcePlan>,
    targets: Vec<TargetPlan>,
    /// Hooks a backup would run; a dry run runs none.
    hooks_not_run: usize,
    /// Notification URLs a backup would tell; a dry run tells none.
    notifications_not_sent: usize,
    warnings: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct SourcePlan {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    /// What would be read or dumped, as `config check` shows it.
    what: String,
    /// Directory sources: regular files (a hard link's first name) and their bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirs: Option<u64>,
    /// Symlinks, further names of hard links, devices, FIFOs.
    #[serde(skip_serializing_if = "Option::is_none")]
    other_entries: Option<u64>,
    /// Format 2 with an index: files the index has with the same stat (not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    unchanged_files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unchanged_bytes: Option<u64>,
    /// Format 2: the files a backup would open and read.
    #[serde(skip_serializing_if = "Option::is_none")]
    read_files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_bytes: Option<u64>,
    /// What the walk could not reach (a backup would fail on it unless
    /// `skip_unreadable`), the first few.
    problems: Vec<String>,
    problem_count: usize,
}

#[derive(Debug, Serialize)]
struct TargetPlan {
    name: String,
    description: String,
    error: Option<String>,
}

pub fn run(cfg: &Config, jobs: &[&Job], json: bool) -> Result<u8> {
    let mut plans = Vec::new();
    for job in jobs {
        let plan = plan(cfg, job);
        if !json {
            print(&plan);
        }
        plans.push(plan);
    }
    if json {
        super::print_json(&plans)?;
    }
    let trouble = plans.iter().any(|p| {
        p.sources.iter().any(|s| s.problem_count > 0) || p.targets.iter().any(|t| t.error.is_some())
    });
    Ok(if trouble {
        crate::exit::FAILED
    } else {
        crate::exit::OK
    })
}

fn plan(cfg: &Config, job: &Job) -> JobPlan {
    let mut warnings = Vec::new();
    if let crate::key_match::IdentityCheck::Mismatch { message, .. } =
        crate::key_match::check_identity(&cfg.encryption)
    {
        warnings.push(format!("a backup would be refused: {message}"));
    }
    let mut index = None;
    if job.format == 2 {
        match Index::open_read_only(&cfg.agent.state_dir, &job.name) {
            Ok(Some(i)) => index = Some(i),
            Ok(None) => warnings.push(format!(
                "no index in {}: a backup would read every file",
                cfg.agent.state_dir.display()
            )),
            Err(e) => warnings.push(format!("{e:#}; a backup would read every file")),
        }
    }
    let sources = job
        .sources
        .iter()
        .map(|s| source_plan(&s.name, &s.kind, index.as_mut(), &mut warnings))
        .collect();
    let targets = job
        .targets
        .iter()
        .map(
            |name| match cfg.targets.get(name).map(|t| open_target(t, Access::Read)) {
                Some(Ok(t)) => TargetPlan {
                    name: name.clone(),
                    description: t.description.clone(),
                    error: None,
                },
                Some(Err(e)) => TargetPlan {
                    name: name.clone(),
                    description: String::new(),
                    error: Some(e.to_string()),
                },
                None => TargetPlan {
                    name: name.clone(),
                    description: String::new(),
                    error: Some("not defined".into()),
                },
            },
        )
        .collect();
    let h = &job.hooks;
    let n = &job.notify;
    JobPlan {
        job: job.name.clone(),
        dry_run: true,
        format: job.format,
        sources,
        targets,
        hooks_not_run: h.before.len() + h.after.len() + h.on_success.len() + h.on_failure.len(),
        notifications_not_sent: [&n.start, &n.success, &n.failure]
            .iter()
            .filter(|u| u.is_some())
            .count(),
        warnings,
    }
}

fn source_plan(
    name: &str,
    kind: &SourceKind,
    index: Option<&mut Index>,
    warnings: &mut Vec<String>,
) -> SourcePlan {
    let described = coffer_plugins::registry::kind(kind).dry_run();
    if let Some(note) = described.note {
        warnings.push(format!("source {name}: {note}"));
    }
    let mut p = SourcePlan {
        name: name.to_string(),
        kind: kind.type_name(),
        what: format!("{} {kind}", described.reads),
        bytes: described.bytes_now,
        ..SourcePlan::default()
    };
    // A directory is walked as a backup would walk it (stat only), counting.
    if let Some(d) = kind.directory() {
        walk(name, d, index, &mut p);
    }
    p
}

/// Walks the tree as a backup would, stat only, counting.
fn walk(name: &str, d: &DirectorySource, mut index: Option<&mut Index>, p: &mut SourcePlan) {
    let excludes = match Excludes::for_source(d) {
        Ok(e) => e,
        Err(e) => {
            p.problem_count += 1;
            p.problems.push(format!("bad exclude pattern: {e}"));
            return;
        }
    };
    let (mut files, mut size, mut dirs, mut other) = (0u64, 0u64, 0u64, 0u64);
    let (mut same, mut same_bytes) = (0u64, 0u64);
    let mut first_names = HashSet::new();
    let opts = WalkOptions {
        root: &d.path,
        one_file_system: d.one_file_system,
        excludes: &excludes,
        open_files: false,
    };
    std::thread::scope(|scope| {
        for item in walk_ahead::spawn(scope, opts) {
            let e = match item {
                Ok(e) => e,
                Err(WalkError { path, err }) => {
                    p.problem_count += 1;
                    if p.problems.len() < MAX_PROBLEMS {
                        p.problems.push(format!("{}: {err}", path.display()));
                    }
                    continue;
                }
            };
            let md = &e.md;
            if md.is_dir() {
                dirs += 1;
            } else if md.is_file() && (md.nlink() == 1 || first_names.insert((md.dev(), md.ino())))
            {
                files += 1;
                size += md.len();
                if let Some(ix) = index.as_deref_mut() {
                    match ix.unchanged(name, e.rel.as_bytes(), &Stat::of(md)) {
                        Ok(Some(_)) => {
                            same += 1;
                            same_bytes += md.len();
                        }
                        Ok(None) => {}
                        Err(err) => {
                            p.problem_count += 1;
                            p.problems.push(format!("{err:#}"));
                            index = None;
                        }
                    }
                }
            } else {
                other += 1;
            }
        }
    });
    p.files = Some(files);
    p.bytes = Some(size);
    p.dirs = Some(dirs);
    p.other_entries = Some(other);
    if index.is_some() {
        p.unchanged_files = Some(same);
        p.unchanged_bytes = Some(same_bytes);
        p.read_files = Some(files - same);
        p.read_bytes = Some(size - same_bytes);
    }
}

fn print(plan: &JobPlan) {
    for w in &plan.warnings {
        eprintln!("warning: job {}: {w}", plan.job);
    }
    crate::say!(
        "dry run of job {} (format {}): nothing written, no lock taken, {} hook(s) not run, {} notification(s) not sent",
        plan.job,
        plan.format,
        plan.hooks_not_run,
        plan.notifications_not_sent
    );
    for s in &plan.sources {
        crate::say!("  source {} ({}): {}", s.name, s.kind, s.what);
        if let (Some(f), Some(b), Some(d)) = (s.files, s.bytes, s.dirs) {
            crate::say!(
                "    {}, {} in {}, {}",
                count(f, "file"),
                bytes(b),
                count(d, "folder"),
                counted(s.other_entries.unwrap_or(0), "other entry", "other entries")
            );
        } else if let Some(b) = s.bytes {
            crate::say!("    {} now", bytes(b));
        }
        if let (Some(u), Some(ub), Some(r), Some(rb)) = (
            s.unchanged_files,
            s.unchanged_bytes,
            s.read_files,
            s.read_bytes,
        ) {
            crate::say!(
                "    {u} unchanged per the index ({}, not read), {r} to read ({})",
                bytes(ub),
                bytes(rb)
            );
        }
        for problem in &s.problems {
            crate::say!("    cannot read: {problem}");
        }
        if s.problem_count > s.problems.len() {
            crate::say!("    ... {} more", s.problem_count - s.problems.len());
        }
    }
    for t in &plan.targets {
        match &t.error {
            None => crate::say!("  target {}: {}", t.name, t.description),
            Some(e) => crate::say!("  target {}: {e}", t.name),
        }
    }
}
