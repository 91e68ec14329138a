//! The restore side of a source that is one stream (every type but a directory,
//! whose tree restore is the agent's): a `Restore` is planned from the configured
//! source and the command line before anything is written, so that every refusal
//! comes first, and then fed the decrypted stream.
//!
//! Also the one way a single file is put back (`FileRestore`): written beside the
//! destination, checked, given its owner and mode, fsynced, then renamed over it,
//! so that a failure leaves the old file as it was.

use crate::fs::ids::IdCache;
use crate::sources::dbquery::Endpoint;
use crate::sources::source::SourceError;
use coffer_config::RestorePolicy;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a restore was asked for, beyond the configured source.
#[derive(Debug, Clone)]
pub struct RestoreRequest<'a> {
    /// `--db-url`: the server database to restore into instead of the configured one.
    pub db_url: Option<&'a str>,
    /// Facts the manifest recorded (server version, where the RDB was).
    pub facts: &'a BTreeMap<String, String>,
    /// The snapshot carries a trusted signature: a path it records may be a destination.
    pub signed: bool,
    /// Replace the database's existing objects (pg_restore `--clean`).
    pub clean: bool,
    /// Running as root, so owners can be set.
    pub can_chown: bool,
    /// The snapshot id; names the temporary file beside a file being replaced.
    pub snapshot: &'a str,
    /// Owner and mode of a restored file.
    pub policy: RestorePolicy,
}

/// One source's restore, planned and ready to be fed the decrypted stream.
pub trait Restore: Send + std::fmt::Debug {
    /// Where the data goes, for the plan and the report (never a credential).
    fn describe(&self) -> String;
    /// A file that exists and would be replaced (refused without `--force`).
    fn existing_file(&self) -> Option<&Path> {
        None
    }
    /// True only when nothing of the input takes effect before its end has been
    /// read (a file written to a private name and renamed into place after the
    /// last byte): such a restore may be fed the stream while it is still being
    /// checked against the signed marker. Every other restore (a program fed on
    /// its stdin: pg_restore, the mysql client, a `restore_command`) runs
    /// statements as they arrive, so the caller hands it an object already read
    /// to its end and authenticated. The default is the safe one.
    fn waits_for_the_end(&self) -> bool {
        false
    }
    /// The database a `[check]` query reaches once the restore is done.
    fn endpoint(&self) -> Option<Endpoint<'_>> {
        None
    }
    /// Restores from `input`; returns what the operator should hear.
    fn restore(&self, input: &mut dyn Read) -> Result<Vec<String>, SourceError>;
}

/// Validates a restored file before it replaces anything (SQLite's integrity_check).
pub type FileCheck = Box<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;

/// One restored file, put in place atomically.
pub struct FileRestore {
    pub source: String,
    pub path: PathBuf,
    pub policy: RestorePolicy,
    pub can_chown: bool,
    pub snapshot: String,
    /// Run on the complete copy before it replaces anything.
    pub check: Option<FileCheck>,
    /// Said once the file is in place (what the operator must do next).
    pub note: Option<String>,
    /// The file is an SQLite database a check query can open.
    pub is_sqlite: bool,
}

impl std::fmt::Debug for FileRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRestore")
            .field("source", &self.source)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileRestore {
    /// The plain stream as a file (`--to DIR`).
    pub fn plain(source: &str, path: PathBuf, req: &RestoreRequest<'_>) -> FileRestore {
        FileRestore {
            source: source.to_string(),
            path,
            policy: req.policy.clone(),
            can_chown: req.can_chown,
            snapshot: req.snapshot.to_string(),
            check: None,
            note: None,
            is_sqlite: false,
        }
    }
}

impl Restore for FileRestore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn existing_file(&self) -> Option<&Path> {
        std::fs::symlink_metadata(&self.path)
            .is_ok()
            .then_some(self.path.as_path())
    }

    /// The copy goes to a private temporary name and is renamed over the
    /// destination only after the input ended, which it does only once verified.
    fn waits_for_the_end(&self) -> bool {
        true
    }

    fn endpoint(&self) -> Option<Endpoint<'_>> {
        self.is_sqlite
            .then_some(Endpoint::Sqlite { path: &self.path })
    }

    fn restore(&self, input: &mut dyn Read) -> Result<Vec<String>, SourceError> {
        let mut warnings = Vec::new();
        place_file(self, input, &mut warnings)?;
        warnings.extend(self.note.clone());
        Ok(warnings)
    }
}

/// Writes `input` to a temporary file beside the destination, runs the check on
/// it, gives it the owner and mode (the policy's, else those of the file it
/// replaces), fsyncs and renames it over the destination.
///
/// The folder may belong to the application's user, who can rename or replace
/// names in it at any moment: the folder is reached by handle (`trusted_dir`),
/// the temporary file is created there with `O_EXCL | O_NOFOLLOW` and given its
/// owner and mode through its own handle (chown by path would follow a symlink
/// put in its place, and give root's files away), and a symlink at the
/// destination is replaced by the rename, never written through.
fn place_file(
    f: &FileRestore,
    input: &mut dyn Read,
    warnings: &mut Vec<String>,
) -> Result<(), SourceError> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let dest = &f.path;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |err: std::io::Error| SourceError::Io {
            name: f.source.clone(),
            path,
            err,
        }
    };
    let errno = |path: &Path| {
        let io = io(path);
        move |e: rustix::io::Errno| io(e.into())
    };
    let invalid = |message: String| SourceError::Invalid {
        name: f.source.clone(),
        message,
    };
    let reached = crate::fs::trusted_dir::reach_parent(dest, true).map_err(|e| match e {
        crate::fs::trusted_dir::TrustError::Io { path, err } => io(&path)(err),
        e => invalid(e.to_string()),
    })?;
    let (parent, name) = (&reached.parent, reached.name.as_os_str());
    let file_name = name.to_string_lossy().into_owned();
    let tmp_name = format!(".{file_name}.coffer-restore-{}", f.snapshot);
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(&tmp_name);
    // The copy as the check opens it: through the folder's handle.
    let via_handle = PathBuf::from(format!(
        "/proc/self/fd/{}/{tmp_name}",
        std::os::fd::AsRawFd::as_raw_fd(parent)
    ));
    match rustix::fs::unlinkat(parent, tmp_name.as_str(), AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(errno(&tmp)(e)),
    }
    let result = (|| -> Result<(), SourceError> {
        let fd = rustix::fs::openat(
            parent,
            tmp_name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(errno(&tmp))?;
        let mut out = std::fs::File::from(fd);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf).map_err(|err| SourceError::Input {
                name: f.source.clone(),
                err,
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(io(&tmp))?;
        }
        out.sync_all().map_err(io(&tmp))?;
        if let Some(check) = &f.check {
            check(&via_handle).map_err(|e| invalid(format!("restored copy is damaged: {e}")))?;
        }
        // What it replaces, never through a symlink: a link's target says nothing
        // about the file that belongs here.
        let old = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .filter(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        let mut ids = IdCache::default();
        let owner = match (&f.policy.owner, &old) {
            (Some(o), _) => {
                let uid = ids
                    .uid(&o.user)
                    .ok_or_else(|| invalid(format!("no user {} on this host", o.user)))?;
                let gid = match &o.group {
                    Some(g) => Some(
                        ids.gid(g)
                            .ok_or_else(|| invalid(format!("no group {g} on this host")))?,
                    ),
                    None => None,
                };
                Some((uid, gid))
            }
            (None, Some(st)) => Some((st.st_uid, Some(st.st_gid))),
            (None, None) => None,
        };
        if let Some((uid, gid)) = owner {
            if f.can_chown {
                std::os::unix::fs::fchown(&out, Some(uid), gid).map_err(io(&tmp))?;
            } else {
                warnings.push(format!(
                    "not root: {} keeps the restoring user as owner",
                    dest.display()
                ));
            }
        }
        // No setuid, setgid or sticky bit from a file that was there: only
        // permissions carry over.
        let mode = f
            .policy
            .file_mode
            .or(old.map(|st| st.st_mode & 0o777))
            .unwrap_or(0o600);
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        drop(out);
        rustix::fs::renameat(parent, tmp_name.as_str(), parent, name).map_err(errno(dest))?;
        let _ = rustix::fs::fsync(parent);
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(parent, tmp_name.as_str(), AtFlags::empty());
    }
    result
}
