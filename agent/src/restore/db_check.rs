//! The check between a database and its files: every file the database references
//! exists with the recorded size, and every file on disk is referenced (the way
//! `kadi files check` compares its database with its storage).

use coffer_config::{FileCheck, Orphans};
use coffer_plugins::dbquery::{Endpoint, Referenced, referenced_files};
use coffer_plugins::exclude::Excludes;
use coffer_plugins::walk_ahead::{self, WalkError, WalkOptions};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use tokio::runtime::Handle;

#[derive(Debug, Default, Serialize)]
pub struct DbCheckReport {
    pub database: String,
    pub files: String,
    pub path: String,
    pub referenced: usize,
    pub on_disk: usize,
    /// Referenced by the database, absent from disk.
    pub missing: Vec<String>,
    /// Present with another size than the database records.
    pub size: Vec<String>,
    /// On disk, referenced by nothing.
    pub orphans: Vec<String>,
    /// Whether orphans make the result inconsistent (`orphans = "fail"`).
    pub orphans_fail: bool,
    /// At backup time: referenced files the filesystem snapshot lacked (or held
    /// at another size) that the backup took from elsewhere, each with where from.
    pub completed: Vec<String>,
    /// At backup time, when rows lack their file: what in the application or in
    /// the run makes that (see `run::check::cause`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl DbCheckReport {
    /// No row without its file or with another size; no orphan either when the
    /// job says orphans fail.
    pub fn consistent(&self) -> bool {
        self.missing.is_empty()
            && self.size.is_empty()
            && (!self.orphans_fail || self.orphans.is_empty())
    }

    /// The report for people, one line each. Orphans are usually harmless (an upload in flight, a
    /// thumbnail cache) and can be thousands, so a few are named and the rest
    /// counted; what is broken (missing, wrong size) is named in full up to
    /// `LIMIT_BROKEN`, enough to repair by hand, beyond which a wrong query (a
    /// path prefix, a column) is the likelier cause than that many lost files.
    /// `--json` always carries every name.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let db = &self.database;
        listed(&mut out, &self.completed, LIMIT_ORPHANS, "completed", |c| {
            format!("  completed: {c}")
        });
        listed(&mut out, &self.missing, LIMIT_BROKEN, "missing", |m| {
            format!("  missing: {m} (referenced by {db})")
        });
        listed(&mut out, &self.size, LIMIT_BROKEN, "of wrong size", |s| {
            format!("  size: {s}")
        });
        listed(&mut out, &self.orphans, LIMIT_ORPHANS, "orphans", |o| {
            format!("  orphan: {o} (not referenced by {db})")
        });
        if self.consistent() {
            out.push(format!(
                "database {} and files {}: consistent ({} referenced, {} on disk{}{})",
                self.database,
                self.files,
                self.referenced,
                self.on_disk,
                if self.completed.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} of them completed from outside the filesystem snapshot",
                        self.completed.len()
                    )
                },
                if self.orphans.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} orphans, a warning: set orphans = \"fail\" in [check] to fail on them",
                        self.orphans.len()
                    )
                }
            ));
        } else {
            out.push(format!(
                "database {} and files {}: INCONSISTENT: {} missing, {} wrong size, {} orphans",
                self.database,
                self.files,
                self.missing.len(),
                self.size.len(),
                self.orphans.len()
            ));
            out.extend(self.cause.iter().map(|c| format!("  cause: {c}")));
        }
        out
    }
}

/// Orphans named in the text output; the rest are counted.
const LIMIT_ORPHANS: usize = 10;
/// Missing and wrong-size files named in the text output; the rest are counted.
const LIMIT_BROKEN: usize = 100;

/// One line per item up to `limit`, then one that counts the others.
fn listed(
    out: &mut Vec<String>,
    items: &[String],
    limit: usize,
    what: &str,
    line: impl Fn(&str) -> String,
) {
    out.extend(items.iter().take(limit).map(|i| line(i)));
    if items.len() > limit {
        out.push(format!(
            "  ... and {} more {what} (all in --json)",
            items.len() - limit
        ));
    }
}

/// Runs the job's check query against `db` and compares with the regular files
/// under `dir`.
pub fn check(
    rt: &Handle,
    check: &FileCheck,
    db: &Endpoint<'_>,
    dir: &Path,
    excludes: Option<&Excludes>,
) -> anyhow::Result<DbCheckReport> {
    let (names, query) = ((check.source.as_str(), check.files.as_str()), &check.query);
    let referenced: Vec<Referenced> = rt.block_on(referenced_files(db, query)).map_err(|e| {
        let said = coffer_plugins::pg_auth::explain_at(&e, db);
        anyhow::anyhow!("check query on {}: {said}", names.0)
    })?;
    let mut on_disk: HashMap<Vec<u8>, u64> = HashMap::new();
    // The backup's own walk, so that patterns and tag files exclude the same files.
    let none = Excludes::default();
    let walk = WalkOptions {
        root: dir,
        one_file_system: false,
        excludes: excludes.unwrap_or(&none),
        open_files: false,
    };
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for item in walk_ahead::spawn(scope, walk) {
            let e = item.map_err(|WalkError { path, err }| {
                anyhow::anyhow!("cannot read {}: {err}", path.display())
            })?;
            if e.md.is_file() {
                on_disk.insert(e.rel.as_bytes().to_vec(), e.md.len());
            }
        }
        Ok(())
    })?;
    Ok(compare(
        check,
        &dir.display().to_string(),
        &referenced,
        &on_disk,
    ))
}

/// Compares what the database references with the regular files found (relative
/// path -> size): on disk now, or as a backup captured them.
pub fn compare(
    check: &FileCheck,
    path: &str,
    referenced: &[Referenced],
    on_disk: &HashMap<Vec<u8>, u64>,
) -> DbCheckReport {
    let mut report = DbCheckReport {
        database: check.source.clone(),
        files: check.files.clone(),
        path: path.to_string(),
        referenced: referenced.len(),
        on_disk: on_disk.len(),
        orphans_fail: check.orphans == Orphans::Fail,
        ..DbCheckReport::default()
    };
    let mut seen = std::collections::HashSet::new();
    for r in referenced {
        let key = r
            .path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .as_bytes()
            .to_vec();
        match on_disk.get(&key) {
            None => report.missing.push(r.path.clone()),
            Some(size) => {
                if let Some(want) = r.size
                    && want != *size
                {
                    report.size.push(format!(
                        "{}: {size} bytes on disk, {want} in the database",
                        r.path
                    ));
                }
            }
        }
        seen.insert(key);
    }
    let mut orphans: Vec<String> = on_disk
        .keys()
        .filter(|k| !seen.contains(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    orphans.sort();
    report.orphans = orphans;
    report.missing.sort();
    report.size.sort();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:04}.png")).collect()
    }

    #[test]
    fn orphans_are_summarized_beyond_ten_and_json_keeps_them_all() {
        let report = DbCheckReport {
            database: "db".into(),
            files: "storage".into(),
            orphans: names("thumbs/", 666),
            ..DbCheckReport::default()
        };
        let lines = report.lines();
        assert_eq!(lines.len(), 10 + 2, "{lines:#?}");
        assert_eq!(lines[0], "  orphan: thumbs/0000.png (not referenced by db)");
        assert_eq!(lines[10], "  ... and 656 more orphans (all in --json)");
        assert!(lines[11].contains("consistent") && lines[11].contains("666 orphans"));
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["orphans"].as_array().map(Vec::len), Some(666));
    }

    #[test]
    fn what_is_broken_is_named_in_full_up_to_a_hundred() {
        let mut report = DbCheckReport {
            database: "db".into(),
            files: "storage".into(),
            missing: names("gone/", 100),
            size: names("short/", 3),
            orphans: names("o/", 10),
            ..DbCheckReport::default()
        };
        let lines = report.lines();
        assert_eq!(lines.len(), 100 + 3 + 10 + 1, "{lines:#?}");
        assert!(!lines.iter().any(|l| l.contains("more")), "{lines:#?}");
        report.missing = names("gone/", 2500);
        let lines = report.lines();
        assert_eq!(lines[100], "  ... and 2400 more missing (all in --json)");
        assert!(
            lines
                .last()
                .is_some_and(|l| l.contains("INCONSISTENT: 2500 missing"))
        );
    }
}
