//! Reaching a restore destination without being redirected: root restores into
//! folders that other users own (an application's `storage/` belongs to the
//! application), and whoever can write to a folder can replace a name in it with a
//! symlink. A path is therefore walked one component at a time from `/` with
//! `O_NOFOLLOW`, and a symlink on the way is followed only where nobody but root
//! (or the user coffer runs as) could have put it there: in a folder owned by one
//! of them that no one else may write to (or a sticky one, for a link of theirs).
//! The last component, the destination itself, is never followed at all. What is
//! returned is a handle on its parent and its name, so that later steps work
//! relative to handles, not to a path someone can change meanwhile.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// Why a destination cannot be reached safely; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "{path} is a symbolic link (to {to}): a restore never writes through a link at its destination; \
         remove the link, or give the real folder (--to DIR restores elsewhere)"
    )]
    LinkAtDestination { path: PathBuf, to: String },
    #[error(
        "{path} is a symbolic link in {dir}, which {who} can change: coffer does not follow it \
         (whoever replaces it could redirect the restore); give the real path instead"
    )]
    UntrustedLink {
        path: PathBuf,
        dir: PathBuf,
        who: String,
    },
    #[error("{path}: more than {MAX_LINKS} symbolic links on the way")]
    TooManyLinks { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: {err}")]
    Io {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
}

/// A destination's parent, open, and the destination's name in it.
#[derive(Debug)]
pub struct Reached {
    pub parent: OwnedFd,
    pub name: OsString,
    /// The path as given, for messages.
    pub shown: PathBuf,
}

/// Opens a folder below an open one, never through a symlink: the walk's step,
/// and the one a caller holding a reached parent takes to open the destination.
pub use crate::fs::open_at::open_dir;

/// An error of a call on `p`, for `map_err`.
fn io<E: Into<std::io::Error>>(p: &Path) -> impl FnOnce(E) -> TrustError {
    let path = p.to_path_buf();
    move |err| TrustError::Io {
        path,
        err: err.into(),
    }
}

/// The walk's start.
fn open_root() -> Result<OwnedFd, TrustError> {
    let root = Path::new("/");
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::open(root, flags, Mode::empty()).map_err(io(root))
}

/// Opens the parent of `path` (made absolute against the current directory),
/// following only trusted symlinks; with `create`, missing folders on the way are
/// made (0755, as `mkdir -p`). The last component, a plain name, must be a
/// directory or absent: a symlink there is refused.
pub fn reach(path: &Path, create: bool) -> Result<Reached, TrustError> {
    let r = reach_parent(path, create)?;
    // The destination itself: a symlink here is refused, whoever owns the folder.
    match rustix::fs::statat(&r.parent, r.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
            let to = rustix::fs::readlinkat(&r.parent, r.name.as_os_str(), Vec::new())
                .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
                .unwrap_or_else(|_| "?".into());
            Err(TrustError::LinkAtDestination {
                path: path.to_path_buf(),
                to,
            })
        }
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
            Err(TrustError::NotADirectory {
                path: path.to_path_buf(),
            })
        }
        Ok(_) | Err(rustix::io::Errno::NOENT) => Ok(r),
        Err(e) => Err(io(path)(e)),
    }
}

/// `reach` without looking at the last component (a file about to be replaced
/// by a rename, which replaces a symlink and never writes through it).
pub fn reach_parent(path: &Path, create: bool) -> Result<Reached, TrustError> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|err| TrustError::Io {
                path: path.to_path_buf(),
                err,
            })?
            .join(path)
    };
    let name = match absolute.components().next_back() {
        Some(Component::Normal(n)) => n.to_os_string(),
        _ => {
            return Err(TrustError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
    };
    let parent_path = absolute.parent().unwrap_or(Path::new("/"));
    let parent = open_trusted(parent_path, create)?;
    Ok(Reached {
        parent,
        name,
        shown: path.to_path_buf(),
    })
}

/// Opens the directory `path` (absolute) itself, following only trusted symlinks.
pub fn open_trusted(path: &Path, create: bool) -> Result<OwnedFd, TrustError> {
    let mut cur = open_root()?;
    // Where `cur` is, for messages; components still to walk, in order.
    let mut at = PathBuf::from("/");
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut links = 0;
    let me = nix::unistd::geteuid().as_raw();
    while let Some(c) = todo.pop() {
        if c == "." || c.is_empty() {
            continue;
        }
        if c == ".." {
            cur = open_dir(&cur, OsStr::new("..")).map_err(io(&at))?;
            at.pop();
            continue;
        }
        let here = at.join(&c);
        let st = match rustix::fs::statat(&cur, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&cur, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io(&here)(e)),
                }
                rustix::fs::statat(&cur, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io(&here))?
            }
            other => other.map_err(io(&here))?,
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                cur = open_dir(&cur, &c).map_err(io(&here))?;
                at = here;
            }
            FileType::Symlink => {
                let dir_st = rustix::fs::fstat(&cur).map_err(io(&at))?;
                if let Some(who) = untrusted(&dir_st, &st, me) {
                    return Err(TrustError::UntrustedLink {
                        path: here,
                        dir: at,
                        who,
                    });
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(TrustError::TooManyLinks {
                        path: path.to_path_buf(),
                    });
                }
                let to =
                    rustix::fs::readlinkat(&cur, c.as_os_str(), Vec::new()).map_err(io(&here))?;
                let to = PathBuf::from(OsStr::from_bytes(to.as_bytes()));
                if to.is_absolute() {
                    cur = open_root()?;
                    at = PathBuf::from("/");
                }
                push_components(&mut todo, &to);
            }
            _ => return Err(TrustError::NotADirectory { path: here }),
        }
    }
    Ok(cur)
}

/// Pushes `p`'s components so that popping gives them in order.
fn push_components(todo: &mut Vec<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// Who other than root and `me` could have replaced a symlink in a folder with
/// stat `dir`, or `None` when nobody could.
fn untrusted(dir: &Stat, link: &Stat, me: u32) -> Option<String> {
    let trusted = |uid: u32| uid == 0 || uid == me;
    if !trusted(dir.st_uid) {
        return Some(format!("its owner (uid {})", dir.st_uid));
    }
    let writable_by_others = dir.st_mode & 0o022 != 0;
    let sticky = dir.st_mode & 0o1000 != 0;
    if writable_by_others && !(sticky && trusted(link.st_uid)) {
        return Some(if dir.st_mode & 0o002 != 0 {
            "every user".to_string()
        } else {
            format!("group {}", dir.st_gid)
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn a_link_at_the_destination_is_refused_and_a_plain_folder_is_reached() {
        let t = tempfile::tempdir().expect("tempdir");
        let real = t.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        symlink(&real, t.path().join("link")).expect("symlink");
        let err = reach(&t.path().join("link"), false).expect_err("a link is refused");
        assert!(matches!(err, TrustError::LinkAtDestination { .. }), "{err}");
        let ok = reach(&real, false).expect("a folder is reached");
        assert_eq!(ok.name, "real");
        // Missing folders on the way are made with `create`.
        let deep = t.path().join("a/b/c");
        assert!(reach(&deep, false).is_err());
        let r = reach(&deep, true).expect("made");
        assert_eq!(r.name, "c");
        assert!(t.path().join("a/b").is_dir());
    }

    #[test]
    fn links_on_the_way_are_followed_only_from_folders_nobody_else_can_change() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("real")).expect("mkdir");
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        symlink("real", t.path().join("via")).expect("symlink");
        let r = reach(&t.path().join("via/dest"), false).expect("a trusted link is followed");
        assert_eq!(r.name, "dest");
        // The same link in a folder every user can write to (not sticky) is not.
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = reach(&t.path().join("via/dest"), false).expect_err("refused");
        assert!(matches!(err, TrustError::UntrustedLink { .. }), "{err}");
        assert!(err.to_string().contains("every user"), "{err}");
        // Sticky (as /tmp): a link of ours is trusted.
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        reach(&t.path().join("via/dest"), false).expect("sticky folder, our link");
    }
}
