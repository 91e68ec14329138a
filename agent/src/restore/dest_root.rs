//! A directory restore's destination, held by handle from planning to the end: the
//! folder an application's user owns (or its parent) can be swapped for a symlink
//! at any moment, and root must never write, chown or delete through it.
//!
//! The destination is reached with `trusted_dir` (a symlink at the destination is
//! refused, one on the way followed only where nobody else could have planted it),
//! opened with `O_NOFOLLOW`, and from then on every step works through
//! `/proc/self/fd/N/.`: a path the kernel resolves to the opened folder itself,
//! whatever has since been renamed or replaced, so the existing path-based steps
//! (unpack, swap, attributes, check) cannot be redirected. Messages show the path
//! the operator gave. At the end the destination's name is looked up again: if it
//! no longer names the folder restored into, the restore says so and fails.

use crate::exit::usage;
use anyhow::{Context, Result, anyhow};
use coffer_plugins::trusted_dir::{self, Reached, TrustError};
use rustix::fs::{AtFlags, Mode};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A refusal that is the operator's to fix (exit 2), or an I/O failure.
fn refusal(e: TrustError) -> anyhow::Error {
    match e {
        TrustError::Io { .. } => anyhow!(e),
        e => usage(e.to_string()),
    }
}

/// A destination as planned: reached and, when it exists, open.
#[derive(Debug)]
pub struct DestRoot {
    shown: PathBuf,
    /// `None` when a folder on the way does not exist yet: reached again, making
    /// what is missing, when the restore starts.
    reached: Option<Reached>,
    dir: Option<OwnedFd>,
}

impl DestRoot {
    /// Reaches `path` without creating anything; refuses a symlink at it or an
    /// untrusted one on the way (usage errors: nothing is written).
    pub fn plan(path: &Path) -> Result<DestRoot> {
        let reached = match trusted_dir::reach(path, false) {
            Ok(r) => Some(r),
            Err(TrustError::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(refusal(e)),
        };
        let dir = match &reached {
            Some(r) => open_in(r)?,
            None => None,
        };
        Ok(DestRoot {
            shown: path.to_path_buf(),
            reached,
            dir,
        })
    }

    /// The opened folder's working path, when it exists.
    pub fn existing(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(work_path)
    }

    /// The folder to restore into: the one opened at planning, or made now (0700
    /// until the snapshot's root attributes are applied).
    pub fn open(&self) -> Result<OpenDest> {
        let (parent, name, dir) = match (&self.reached, &self.dir) {
            (Some(r), Some(d)) => (
                r.parent.try_clone().context("cannot duplicate a handle")?,
                r.name.clone(),
                d.try_clone().context("cannot duplicate a handle")?,
            ),
            _ => {
                let r = match &self.reached {
                    Some(r) => Reached {
                        parent: r.parent.try_clone().context("cannot duplicate a handle")?,
                        name: r.name.clone(),
                        shown: r.shown.clone(),
                    },
                    None => trusted_dir::reach(&self.shown, true).map_err(refusal)?,
                };
                match rustix::fs::mkdirat(&r.parent, r.name.as_os_str(), Mode::from_raw_mode(0o700))
                {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => {
                        return Err(std::io::Error::from(e))
                            .with_context(|| format!("cannot create {}", self.shown.display()));
                    }
                }
                let dir = open_in(&r)?.ok_or_else(|| {
                    anyhow!("{} disappeared while it was created", self.shown.display())
                })?;
                (r.parent, r.name, dir)
            }
        };
        Ok(OpenDest {
            work: work_path(&dir),
            shown: self.shown.clone(),
            parent,
            name,
            dir,
        })
    }
}

/// Opens `r`'s destination itself, never through a symlink; `None` when absent.
fn open_in(r: &Reached) -> Result<Option<OwnedFd>> {
    match trusted_dir::open_dir(&r.parent, &r.name) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // Replaced by a symlink (or something else) since it was reached.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::ELOOP | nix::libc::ENOTDIR)
            ) =>
        {
            Err(refusal(
                trusted_dir::reach(&r.shown, false)
                    .err()
                    .unwrap_or(TrustError::NotADirectory {
                        path: r.shown.clone(),
                    }),
            ))
        }
        Err(e) => Err(e).with_context(|| format!("cannot open {}", r.shown.display())),
    }
}

/// `/proc/self/fd/N/.`: the kernel resolves it to the open folder itself; the
/// trailing `.` lets `O_NOFOLLOW` opens of the path work too.
fn work_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/.", fd.as_raw_fd()))
}

/// The destination folder, open for the restore.
#[derive(Debug)]
pub struct OpenDest {
    parent: OwnedFd,
    name: std::ffi::OsString,
    dir: OwnedFd,
    work: PathBuf,
    shown: PathBuf,
}

impl OpenDest {
    /// The path every restore step uses: it always reaches the opened folder.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// `text` with the working path replaced by the one the operator gave.
    pub fn unproc(&self, text: &str) -> String {
        let work = self.work.to_string_lossy();
        let shown = self.shown.to_string_lossy();
        text.replace(work.as_ref(), &shown)
            .replace(work.trim_end_matches("/."), &shown)
    }

    /// An error whose messages name the destination as the operator gave it.
    /// Errors whose type decides the exit code or the explanation (usage, an
    /// identity the snapshot is not for) are about the target, not the
    /// destination, and are kept as they are.
    pub fn unproc_err(&self, e: anyhow::Error) -> anyhow::Error {
        if crate::exit::code_for(&e) != crate::exit::FAILED
            || crate::key_match::not_for_identity(&e).is_some()
        {
            return e;
        }
        let message = self.unproc(&format!("{e:#}"));
        // The pack a failed read names stays typed: the caller checks it (`pack::damage`).
        match crate::pack::damage::suspects(&e).into_iter().next() {
            Some(pack) => crate::pack::damage::Suspect { pack, message }.into(),
            None => anyhow!(message),
        }
    }

    /// Fails when the destination's name no longer leads to the folder restored
    /// into: someone renamed it away or put a symlink in its place meanwhile. The
    /// restored contents are then in that folder, wherever it went; nothing was
    /// written through what replaced it.
    pub fn still_in_place(&self) -> Result<()> {
        let ours = rustix::fs::fstat(&self.dir)
            .with_context(|| format!("cannot stat {}", self.shown.display()))?;
        let now = rustix::fs::statat(
            &self.parent,
            self.name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        match now {
            Ok(st) if st.st_dev == ours.st_dev && st.st_ino == ours.st_ino => Ok(()),
            Ok(st) => {
                let what = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                    rustix::fs::FileType::Symlink => "a symbolic link",
                    rustix::fs::FileType::Directory => "another folder",
                    _ => "something else",
                };
                Err(anyhow!(
                    "{} was replaced by {what} while coffer restored into it: nothing was written \
                     through it; the restored contents are in the folder that was there, wherever \
                     it was moved. Find out who replaced it before using either",
                    self.shown.display()
                ))
            }
            Err(e) => Err(anyhow!(
                "{} was moved away while coffer restored into it ({}): the restored contents are \
                 in the folder that was there, wherever it was moved",
                self.shown.display(),
                std::io::Error::from(e)
            )),
        }
    }
}
