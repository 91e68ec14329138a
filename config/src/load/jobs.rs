//! Validation of `[jobs.NAME]`: what a job refers to (defined targets, its own
//! sources for `check`), and the settings of when and how it runs (compression,
//! hooks, schedules, jitter, retention). Its own module because a job is where the
//! sections meet: it is checked after the targets, and its sources are checked by
//! `sources`.

use super::Validator;
use crate::locate::{Seg, child, item, keys};
use crate::raw::{RawCheck, RawJob, RawNotify, RawRetention};
use crate::source_types::*;
use crate::types::*;
use crate::{HookCommand, Schedule};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A failed scheduled run that could succeed later (a server or the network was
/// down) is run once more, ten minutes later: a night's backup is not lost to a
/// blip, and an outage does not become a loop of runs and failure hooks.
const DEFAULT_RETRIES: u32 = 1;
const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(600);

/// How long an unfinished run's folder is kept when `incomplete_after` is not set.
const DAY: Duration = Duration::from_secs(24 * 3600);

impl Validator<'_> {
    /// Every job; `invalid` are targets defined with a problem, which a job may
    /// name without being told that they are undefined.
    pub(super) fn jobs(
        &mut self,
        raw: BTreeMap<String, RawJob>,
        targets: &BTreeMap<String, Target>,
        invalid: &BTreeSet<String>,
    ) -> BTreeMap<String, Job> {
        if raw.is_empty() {
            self.problem(
                &[],
                "no jobs defined: add a [jobs.NAME] table with targets and sources",
            );
        }
        raw.into_iter()
            .map(|(name, j)| {
                let job = self.job(name.clone(), j, targets, invalid);
                (name, job)
            })
            .collect()
    }

    fn job(
        &mut self,
        name: String,
        j: RawJob,
        targets: &BTreeMap<String, Target>,
        invalid: &BTreeSet<String>,
    ) -> Job {
        let at = keys(&["jobs", &name]);
        self.name_ok(&at, &name);
        if j.targets.is_empty() {
            self.problem(
                &at,
                "a job needs `targets = [\"...\"]` naming at least one [targets.NAME]",
            );
        }
        for (i, t) in j.targets.iter().enumerate() {
            if !targets.contains_key(t) && !invalid.contains(t) {
                let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                self.problem(
                    &item(&child(&at, "targets"), i),
                    format!(
                        "target \"{t}\" is not defined; define [targets.{t}] or use one of: {}",
                        if known.is_empty() {
                            "(none defined)".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        if !(1..=19).contains(&j.compression.level) {
            self.problem(
                &keys(&["jobs", &name, "compression", "level"]),
                format!(
                    "zstd level {} is out of range; use 1 to 19 (3 is a good default)",
                    j.compression.level
                ),
            );
        }
        // A job without sources is how a new host reaches the snapshots of one that
        // is gone (disaster recovery): it restores, lists, verifies and repairs,
        // and has nothing to back up, so nothing to schedule.
        if j.sources.is_empty() && j.schedule.is_some() {
            self.problem(
                &child(&at, "schedule"),
                format!(
                    "job {name} has no [[jobs.{name}.sources]], so there is nothing to back up \
                     on a schedule: add its sources, or remove schedule (a job without sources \
                     only restores, lists, verifies and repairs what its targets hold)"
                ),
            );
        }
        let mut seen = BTreeSet::new();
        let mut sources = Vec::new();
        for (i, s) in j.sources.into_iter().enumerate() {
            let sp = item(&child(&at, "sources"), i);
            if !seen.insert(s.name.clone()) {
                self.problem(
                    &child(&sp, "name"),
                    format!("source name \"{}\" is used twice in this job", s.name),
                );
            }
            if let Some(src) = self.source(&sp, s) {
                sources.push(src);
            }
        }
        let check = j.check.and_then(|c| self.file_check(&at, c, &sources));
        let (retention, incomplete_after) = self.retention(&at, j.retention);
        let [after_restore, before, after, on_success, on_failure] = [
            ("after_restore", j.after_restore),
            ("before", j.before),
            ("after", j.after),
            ("on_success", j.on_success),
            ("on_failure", j.on_failure),
        ]
        .map(|(key, lines)| self.hook_lines(&child(&at, key), lines));
        let schedule = self.schedule(&child(&at, "schedule"), j.schedule.as_deref());
        let verify_schedule =
            self.schedule(&child(&at, "verify_schedule"), j.verify_schedule.as_deref());
        let jitter = j
            .jitter
            .as_deref()
            .and_then(|d| self.duration(&child(&at, "jitter"), d))
            .unwrap_or_default();
        if j.catch_up && j.schedule.is_none() {
            self.problem(&child(&at, "catch_up"), "catch_up needs a schedule");
        }
        let retry_wait = j
            .retry_wait
            .as_deref()
            .and_then(|d| self.duration(&child(&at, "retry_wait"), d))
            .unwrap_or(DEFAULT_RETRY_WAIT);
        let format = match j.format {
            None => crate::DEFAULT_FORMAT,
            Some(f @ (1 | 2)) => f,
            Some(f) => {
                self.problem(
                    &child(&at, "format"),
                    format!("there is no snapshot format {f}; use 2 (the default) or 1"),
                );
                crate::DEFAULT_FORMAT
            }
        };
        let pack_size = match j.pack_size.as_ref().map(crate::units::size) {
            None => crate::DEFAULT_PACK_SIZE,
            Some(Ok(n)) if (1 << 20..=4 << 30).contains(&n) => n,
            Some(Ok(n)) => {
                self.problem(
                    &child(&at, "pack_size"),
                    format!("{n} bytes is out of range; use 1MiB to 4GiB (64MiB is the default)"),
                );
                crate::DEFAULT_PACK_SIZE
            }
            Some(Err(msg)) => {
                self.problem(&child(&at, "pack_size"), msg);
                crate::DEFAULT_PACK_SIZE
            }
        };
        let repack_unused = match j.repack_unused {
            None => crate::DEFAULT_REPACK_UNUSED,
            Some(r) if r > 0.0 && r <= 1.0 => r,
            Some(r) => {
                self.problem(
                    &child(&at, "repack_unused"),
                    format!(
                        "{r} is not a share of a pack; use a number above 0 and up to 1 \
                         (0.5 is the default, 1 never repacks)"
                    ),
                );
                crate::DEFAULT_REPACK_UNUSED
            }
        };
        let notify = self.notify(&child(&at, "notify"), j.notify.unwrap_or_default());
        let hook_timeout = j
            .hook_timeout
            .as_deref()
            .and_then(|d| self.duration(&child(&at, "hook_timeout"), d))
            .unwrap_or(Duration::from_secs(600));
        Job {
            name,
            targets: j.targets,
            compression: Compression {
                level: j.compression.level,
                threads: j.compression.threads,
            },
            sources,
            after_restore,
            schedule,
            verify_schedule,
            jitter,
            catch_up: j.catch_up,
            retries: j.retries.unwrap_or(DEFAULT_RETRIES),
            retry_wait,
            hooks: Hooks {
                before,
                after,
                on_success,
                on_failure,
                timeout: hook_timeout,
            },
            notify,
            check,
            retention,
            incomplete_after,
            format,
            pack_size,
            repack_unused,
            recheck_packs: j.recheck_packs.unwrap_or(crate::DEFAULT_RECHECK_PACKS),
        }
    }

    fn schedule(&mut self, at: &[Seg], text: Option<&str>) -> Option<Schedule> {
        match text?.parse() {
            Ok(s) => Some(s),
            Err(msg) => {
                self.problem(at, msg);
                None
            }
        }
    }

    /// Each URL must be http(s); a bad one is named by its key, never shown.
    fn notify(&mut self, at: &[Seg], raw: RawNotify) -> crate::Notify {
        let mut url = |key: &str, text: Option<String>| {
            text.and_then(|t| match t.parse() {
                Ok(u) => Some(u),
                Err(msg) => {
                    self.problem(&child(at, key), msg);
                    None
                }
            })
        };
        crate::Notify {
            start: url("start", raw.start),
            success: url("success", raw.success),
            failure: url("failure", raw.failure),
        }
    }

    /// Hook command lines are split like a shell would, but run without one.
    fn hook_lines(&mut self, at: &[Seg], lines: Vec<String>) -> Vec<HookCommand> {
        let mut hooks = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            match line.parse::<HookCommand>() {
                Ok(hook) => hooks.push(hook),
                Err(msg) => self.problem(&item(at, i), msg),
            }
        }
        // `["systemctl", "stop", "app"]` (an argv array, as `command` takes) would
        // run three commands, the first `systemctl` alone: single words of which
        // one after the first is an option or no program is the sign of it.
        let single = |h: &HookCommand| h.words().len() == 1;
        if hooks.len() > 1
            && hooks.iter().all(single)
            && hooks[1..]
                .iter()
                .any(|h| h.words()[0].starts_with('-') || !is_program(&h.words()[0]))
        {
            let joined: Vec<&str> = hooks.iter().map(|h| h.as_str()).collect();
            self.problem(
                at,
                format!(
                    "each element is a whole command line, run on its own, and {:?} is no program; write [{:?}] (one element per command)",
                    hooks[1..]
                        .iter()
                        .map(|h| h.as_str())
                        .find(|w| w.starts_with('-') || !is_program(w))
                        .unwrap_or_default(),
                    joined.join(" ")
                ),
            );
        }
        hooks
    }

    /// `[jobs.NAME.check]` names two sources of the same job: a database and a directory.
    fn file_check(&mut self, job: &[Seg], c: RawCheck, sources: &[Source]) -> Option<FileCheck> {
        let at = child(job, "check");
        let find = |n: &str| sources.iter().find(|s| s.name == n).map(|s| &s.kind);
        let mut ok = true;
        if !find(&c.source).is_some_and(|k| k.source_type().answers_check_query()) {
            ok = false;
            self.problem(
                &child(&at, "source"),
                format!(
                    "\"{}\" is not a postgres, mysql or sqlite source of this job",
                    c.source
                ),
            );
        }
        if find(&c.files).and_then(SourceKind::directory).is_none() {
            ok = false;
            self.problem(
                &child(&at, "files"),
                format!("\"{}\" is not a directory source of this job", c.files),
            );
        }
        let orphans = match c.orphans.as_deref() {
            None | Some("warn") => Orphans::Warn,
            Some("fail") => Orphans::Fail,
            Some(other) => {
                ok = false;
                self.problem(
                    &child(&at, "orphans"),
                    format!("\"{other}\" is not a choice: \"warn\" (the default) or \"fail\""),
                );
                Orphans::Warn
            }
        };
        ok.then_some(FileCheck {
            source: c.source,
            files: c.files,
            query: c.query,
            orphans,
        })
    }

    fn retention(
        &mut self,
        job: &[Seg],
        raw: Option<RawRetention>,
    ) -> (Option<Retention>, Duration) {
        let Some(r) = raw else { return (None, DAY) };
        let at = child(job, "retention");
        let keep_within = r
            .keep_within
            .as_deref()
            .and_then(|d| self.duration(&child(&at, "keep_within"), d));
        if keep_within.is_some_and(|d| d.is_zero()) {
            self.problem(
                &child(&at, "keep_within"),
                "a keep_within of 0 keeps no snapshot, not even the newest; give a window such as \"7d\" or remove it",
            );
        }
        let incomplete_after = r
            .incomplete_after
            .as_deref()
            .and_then(|d| self.incomplete_after(&child(&at, "incomplete_after"), d))
            .unwrap_or(DAY);
        let policy = Retention {
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_within,
        };
        if policy == Retention::default() && r.keep_within.is_none() {
            self.problem(
                &at,
                "a retention that keeps nothing would delete every snapshot; set at least one keep_* rule",
            );
            return (None, incomplete_after);
        }
        (Some(policy), incomplete_after)
    }

    /// How long a folder without a marker is taken for a run in progress. The job
    /// lock keeps prune away from this host's own runs; this grace period is what
    /// protects a run the lock cannot see (the same job on another host, or with
    /// another state_dir, writing to the same target), so it must outlast any real
    /// run: below an hour a large first backup would lose its objects to a prune
    /// and fail its commit. Too large only costs disk space until the next prune.
    fn incomplete_after(&mut self, at: &[Seg], text: &str) -> Option<Duration> {
        const MIN: Duration = Duration::from_secs(3600);
        let d = self.duration(at, text)?;
        if d < MIN {
            self.problem(
                at,
                format!(
                    "\"{text}\" is too short: the minimum is 1h (a folder without \
                     snapshot.json younger than this may be a run still writing); \
                     the default is 24h"
                ),
            );
            return None;
        }
        Some(d)
    }
}

/// Whether `word` names a program a hook could run: a path that exists, or a name
/// found in `PATH`.
fn is_program(word: &str) -> bool {
    if word.contains('/') {
        return std::path::Path::new(word).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|dir| dir.join(word).exists()))
}
