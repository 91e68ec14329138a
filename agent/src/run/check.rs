//! The job's `[check]` at backup time: the database source answers the check
//! query inside the very state it backs up (PostgreSQL in the transaction that
//! exported its snapshot, SQLite on its consistent copy), and the answer is
//! compared with the files the directory source actually captured. A row whose
//! file is missing from the snapshot is the "vanished while the backup ran"
//! case: the snapshot still commits, and the run says so and exits 3. Files the
//! directory completed from outside its filesystem snapshot (`complete`) are
//! among those captured, and listed as completed.

use super::stream::Streamed;
use crate::restore::db_check::{DbCheckReport, compare};
use coffer_config::Job;
use coffer_plugins::{EntryKind, Source};
use std::collections::HashMap;

/// Asks the check's database source to answer inside its snapshot; a note when
/// its type cannot (MySQL's dump snapshot cannot be shared with another query).
pub(super) fn ask(job: &Job, sources: &mut [Box<dyn Source>]) -> Option<String> {
    let check = job.check.as_ref()?;
    let source = sources.iter_mut().find(|s| s.name() == check.source)?;
    if source.check_in_snapshot(&check.query) {
        None
    } else {
        Some(format!(
            "check not run at backup time: a {} source cannot answer inside its snapshot; run `coffer check --job {}`",
            source.kind(),
            job.name
        ))
    }
}

/// Compares the answer with the captured files; `Err` says why it could not.
pub(super) fn compare_captured(
    job: &Job,
    streamed: &[Streamed],
) -> Option<Result<DbCheckReport, String>> {
    let check = job.check.as_ref()?;
    let db = streamed.iter().find(|s| s.name == check.source)?;
    let files = streamed.iter().find(|s| s.name == check.files)?;
    let referenced = match db.outcome.referenced.as_ref()? {
        Ok(r) => r,
        Err(e) => {
            return Some(Err(format!(
                "the check query failed inside the snapshot: {e}"
            )));
        }
    };
    let mut captured: HashMap<Vec<u8>, u64> = HashMap::new();
    let entries = match files.outcome.entries.iter() {
        Ok(e) => e,
        Err(e) => return Some(Err(format!("cannot read the captured file list: {e}"))),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return Some(Err(format!("cannot read the captured file list: {e}"))),
        };
        let size = match entry.kind {
            EntryKind::File => entry.size,
            // A second name of a file captured earlier: same content, same size.
            EntryKind::Hardlink => entry
                .link
                .as_ref()
                .and_then(|l| captured.get(l.as_bytes()).copied())
                .unwrap_or(0),
            _ => continue,
        };
        captured.insert(entry.path.as_bytes().to_vec(), size);
    }
    let mut report = compare(check, &files.origin, referenced, &captured);
    report.completed = files
        .outcome
        .completed
        .iter()
        .map(|c| format!("{} ({})", c.path, c.from.describe()))
        .collect();
    if !report.missing.is_empty() || !report.size.is_empty() {
        report.cause = Some(cause(files.frozen).to_string());
    }
    Some(Ok(report))
}

/// Why rows lack their file at backup time, by how the files were taken ("The
/// order of the two instants" in docs/consistency.md).
fn cause(frozen: bool) -> &'static str {
    if frozen {
        "the filesystem snapshot, the one before the database's (btrfs) and the live \
         tree lack these files whole: the application removes a file before it commits \
         the deletion of its row, or writes it after it commits the row (or the file \
         lived only between the two snapshots); make it commit first and remove or \
         write the file after"
    } else {
        "the files were read live, after the database's instant: a file removed (or \
         rewritten) after its row's deletion was committed is gone by the time the walk \
         reaches it; a filesystem snapshot (snapshot = \"btrfs\") with this [check] \
         completes those files, or make the application commit first and remove the \
         file after"
    }
}
