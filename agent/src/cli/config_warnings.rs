//! What `coffer config check` warns about: settings that validate but are likely
//! mistakes an operator finds only when a backup fails or a restore is needed
//! (a source path that does not exist, an identity file missing on the host that
//! will restore, a relative path that means another folder under systemd).
//! Warnings, not errors: a disk may be mounted later, an identity may be kept
//! off this host on purpose.

use crate::key_match::IdentityCheck;
use coffer_config::{Config, SourceKind};
use std::path::Path;

/// One line per warning, without the `warning: ` prefix.
pub(super) fn warnings(cfg: &Config, identity: &IdentityCheck) -> Vec<String> {
    let mut out = Vec::new();
    for job in cfg.jobs.values() {
        for s in &job.sources {
            let (what, path) = match &s.kind {
                SourceKind::Directory(d) => ("path", Some(&d.path)),
                SourceKind::Sqlite(d) => ("path", Some(&d.path)),
                SourceKind::Redis(r) => ("rdb_path", r.rdb_path.as_ref()),
                _ => ("", None),
            };
            if let Some(path) = path.filter(|p| !exists(p)) {
                out.push(format!(
                    "job {}, source {}: {what} {} does not exist; a backup fails until it does (is it mounted? is the path right?)",
                    job.name,
                    s.name,
                    path.display()
                ));
            }
        }
    }
    if let IdentityCheck::Absent(file) = identity {
        out.push(format!(
            "identity_file {} does not exist on this host: restore and deep verify need it where they run{}",
            file.display(),
            if cfg.jobs.values().any(|j| j.verify_schedule.is_some()) {
                ", and verify_schedule verifies only the stored bytes without it"
            } else {
                ""
            }
        ));
    }
    if !cfg.relative_paths.is_empty() {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "the current directory".to_string());
        let written: Vec<String> = cfg
            .relative_paths
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        out.push(format!(
            "relative path(s) {} resolved against {cwd}, where coffer was started; `coffer agent` under systemd starts in /, where they mean other folders: write absolute paths",
            written.join(", ")
        ));
    }
    out
}

/// A path that cannot be checked (no permission) counts as there: the warning is
/// for paths that are missing, not for a check run as another user.
fn exists(path: &Path) -> bool {
    !matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}
