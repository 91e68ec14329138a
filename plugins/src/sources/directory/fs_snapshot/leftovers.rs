//! What a run killed outright (SIGKILL, power loss) still holds: its journal
//! records, released by the next run of the job under the job lock, before that
//! run takes any snapshot of its own.

use super::journal::{self, Record};
use super::release_record;
use std::path::Path;

/// Releases what an earlier run of `job` held when it was killed (its journal
/// records); run under the job lock before the run takes anything. Returns what
/// happened, for the run's warnings.
pub fn release_leftovers(state_dir: &Path, job: &str) -> Vec<String> {
    let mut said = Vec::new();
    for (file, record) in journal::of_job(state_dir, job) {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                said.push(format!(
                    "{}: cannot read this record of a filesystem snapshot ({e}); release the \
                     snapshot it names by hand, then remove the file",
                    file.display()
                ));
                continue;
            }
        };
        let what = match &record {
            Record::Btrfs { snapshot } => snapshot.display().to_string(),
            Record::Command { snapshot_path, .. } => snapshot_path.display().to_string(),
        };
        match release_record(&record).and_then(|()| {
            journal::remove(&file).map_err(|e| format!("cannot remove {}: {e}", file.display()))
        }) {
            Ok(()) => said.push(format!(
                "released {what}, a filesystem snapshot left by an earlier run that did not finish"
            )),
            Err(e) => said.push(format!(
                "a filesystem snapshot left by an earlier run is still there: {e}"
            )),
        }
    }
    said
}
