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
}

impl DbCheckReport {
    /// No row without its file or with another size; no orphan either when the
    /// job says orphans fail.
    pub fn consistent(&self) -> bool {
        self.missing.is_empty()
            && self.size.is_empty()
            && (!self.orphans_fail || self.orphans.is_empty())
    }

    pub fn print(&self) {
        for m in &self.missing {
            crate::say!("  missing: {m} (referenced by {})", self.database);
        }
        for s in &self.size {
            crate::say!("  size: {s}");
        }
        for o in &self.orphans {
            crate::say!("  orphan: {o} (not referenced by {})", self.database);
        }
        if self.consistent() {
            crate::say!(
                "database {} and files {}: consistent ({} referenced, {} on disk{})",
                self.database,
                self.files,
                self.referenced,
                self.on_disk,
                if self.orphans.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} orphans, a warning: set orphans = \"fail\" in [check] to fail on them",
                        self.orphans.len()
                    )
                }
            );
        } else {
            crate::say!(
                "database {} and files {}: INCONSISTENT: {} missing, {} wrong size, {} orphans",
                self.database,
                self.files,
                self.missing.len(),
                self.size.len(),
                self.orphans.len()
            );
        }
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
