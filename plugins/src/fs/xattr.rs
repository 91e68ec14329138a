//! Extended attributes: which ones coffer keeps, the calls that read and set them
//! without following symlinks, and the bounds a snapshot's attributes must keep.
//!
//! Kept: `user.*`, the POSIX ACLs (`system.posix_acl_access`,
//! `system.posix_acl_default`) and file capabilities (`security.capability`).
//! Not kept, and counted in a warning at backup time:
//! - `trusted.*`: filesystem internals (overlayfs keeps its redirects and opaque
//!   markers there) that only root can read, and a snapshot able to set them could
//!   forge them;
//! - the other `security.*` names (SELinux, Smack, IMA/EVM): labels belong to the
//!   destination's policy (`restorecon` sets them), and a snapshot must not choose
//!   a label;
//! - other `system.*` names (NFSv4 ACLs, ...).
//!
//! A snapshot read back from a target is hostile: a manifest naming anything else,
//! a value over Linux's 64 KiB or more than `MAX_TOTAL` per entry is refused.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const ACCESS_ACL: &str = "system.posix_acl_access";
pub const DEFAULT_ACL: &str = "system.posix_acl_default";
pub const CAPABILITY: &str = "security.capability";
/// Linux's `XATTR_SIZE_MAX`: no value is larger.
pub const MAX_VALUE: usize = 64 << 10;
/// Linux's `XATTR_LIST_MAX`: every name of one file, NUL-terminated.
pub const MAX_LIST: usize = 64 << 10;
/// Linux's `XATTR_NAME_MAX`.
pub const MAX_NAME: usize = 255;
/// All values of one entry. They travel in one pax header, which a restore refuses
/// above 1 MiB (`tar_guard::MAX_META`), with the ACLs a second time as text.
pub const MAX_TOTAL: usize = 256 << 10;

/// Whether coffer keeps attributes of this name.
pub fn is_kept(name: &str) -> bool {
    matches!(name, ACCESS_ACL | DEFAULT_ACL | CAPABILITY)
        || name.strip_prefix("user.").is_some_and(|n| !n.is_empty())
}

/// Whether a kept name can be stored as a pax record (`SCHILY.xattr.<name>=`) and
/// shown in a message: no `=`, no control characters, at most 255 bytes.
pub fn is_storable(name: &str) -> bool {
    is_kept(name)
        && name.len() <= MAX_NAME
        && !name.contains('=')
        && !name.chars().any(char::is_control)
}

/// An attribute's value: bytes, written as hex in the manifest.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Value(pub Vec<u8>);

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        if text.len() > 2 * MAX_VALUE {
            return Err(serde::de::Error::custom(
                "an extended attribute value over 64 KiB",
            ));
        }
        hex::decode(text.as_bytes())
            .map(Value)
            .map_err(|e| serde::de::Error::custom(format!("extended attribute value: {e}")))
    }
}

/// The kept attributes of one entry, by name.
pub type Xattrs = BTreeMap<String, Value>;

/// Checks the attributes of an entry read from a manifest (hostile input).
pub fn check(xattrs: &Xattrs, acl_names: &BTreeMap<String, String>) -> Result<(), String> {
    let mut names = 0usize;
    let mut total = 0usize;
    for (name, value) in xattrs {
        if !is_storable(name) {
            return Err(format!(
                "extended attribute {:?} is not one coffer keeps",
                crate::escape_controls(name)
            ));
        }
        if value.0.len() > MAX_VALUE {
            return Err(format!("extended attribute {name} is over 64 KiB"));
        }
        names += name.len() + 1;
        total += value.0.len();
    }
    if names > MAX_LIST || total > MAX_TOTAL {
        return Err("more extended attributes than one file can hold".into());
    }
    if acl_names.len() > 2 * MAX_VALUE / 8 {
        return Err("more ACL names than two ACLs can hold".into());
    }
    for (key, name) in acl_names {
        let id_ok = key
            .strip_prefix("user:")
            .or_else(|| key.strip_prefix("group:"))
            .is_some_and(|id| id.parse::<u32>().is_ok());
        if !id_ok || name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return Err(format!(
                "ACL name {:?} for {:?} is not one a backup records",
                crate::escape_controls(name),
                crate::escape_controls(key)
            ));
        }
    }
    Ok(())
}

/// What an attribute call works on: an open file, or a path whose last component
/// is never followed (the `l*xattr` calls), or a name in an open directory.
#[derive(Debug, Clone, Copy)]
pub enum On<'a> {
    File(&'a File),
    Path(&'a Path),
    /// `name` in the directory `dir`, never followed; `path` reaches the same
    /// entry (`/proc/self/fd/<dir>/<name>`) for the calls that have no `*at`
    /// form on this kernel. Listing and `statx` through `dir` skip that path's
    /// lookup through /proc, which an unchanged run otherwise makes per file.
    At {
        dir: BorrowedFd<'a>,
        name: &'a OsStr,
        path: &'a Path,
    },
}

/// `On` as the `f*xattr` and `l*xattr` calls take it.
enum Plain<'a> {
    File(&'a File),
    Path(&'a Path),
}

impl<'a> On<'a> {
    /// `At` as its path.
    fn plain(self) -> Plain<'a> {
        match self {
            On::File(f) => Plain::File(f),
            On::Path(p) | On::At { path: p, .. } => Plain::Path(p),
        }
    }
}

/// `listxattrat(2)` (Linux 6.13): the attribute names of `name` in `dir`, not
/// followed, into `buf` (an empty one asks for the size). `None` when the kernel
/// has no such call, remembered for the rest of the process.
fn list_at(dir: BorrowedFd<'_>, name: &OsStr, buf: &mut [u8]) -> Option<io::Result<usize>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // The number every architecture's table gives it since 6.13.
    const SYS_LISTXATTRAT: nix::libc::c_long = 465;
    static MISSING: AtomicBool = AtomicBool::new(false);
    if MISSING.load(Ordering::Relaxed) {
        return None;
    }
    let Ok(name) = std::ffi::CString::new(name.as_bytes()) else {
        return Some(Err(io::Error::from_raw_os_error(nix::libc::EINVAL)));
    };
    let (ptr, len) = if buf.is_empty() {
        (std::ptr::null_mut(), 0)
    } else {
        (buf.as_mut_ptr(), buf.len())
    };
    // SAFETY: `name` is NUL-terminated and outlives the call; `ptr` is null with
    // a length of 0, or `buf`, writable for `len` bytes; the kernel writes no more.
    #[allow(unsafe_code)]
    let n = unsafe {
        nix::libc::syscall(
            SYS_LISTXATTRAT,
            dir.as_raw_fd(),
            name.as_ptr(),
            nix::libc::AT_SYMLINK_NOFOLLOW as nix::libc::c_uint,
            ptr,
            len,
        )
    };
    if n >= 0 {
        return Some(Ok(n as usize));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(nix::libc::ENOSYS) {
        MISSING.store(true, Ordering::Relaxed);
        return None;
    }
    Some(Err(err))
}

/// Whether an error says the filesystem does not support the attribute at all.
pub fn unsupported(err: &io::Error) -> bool {
    err.raw_os_error() == Some(nix::libc::EOPNOTSUPP)
}

/// Whether an error says the attribute is not there.
pub fn absent(err: &io::Error) -> bool {
    err.raw_os_error() == Some(nix::libc::ENODATA)
}

/// The value of `name` into `buf` (of `MAX_VALUE` bytes); its length.
pub fn get(on: On<'_>, name: &str, buf: &mut [u8]) -> io::Result<usize> {
    Ok(match on.plain() {
        Plain::File(f) => rustix::fs::fgetxattr(f, name, buf)?,
        Plain::Path(p) => rustix::fs::lgetxattr(p, name, buf)?,
    })
}

pub fn set(on: On<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let flags = rustix::fs::XattrFlags::empty();
    match on.plain() {
        Plain::File(f) => rustix::fs::fsetxattr(f, name, value, flags)?,
        Plain::Path(p) => rustix::fs::lsetxattr(p, name, value, flags)?,
    }
    Ok(())
}

pub fn remove(on: On<'_>, name: &str) -> io::Result<()> {
    match on.plain() {
        Plain::File(f) => rustix::fs::fremovexattr(f, name)?,
        Plain::Path(p) => rustix::fs::lremovexattr(p, name)?,
    }
    Ok(())
}

/// Every attribute name, as listed by the kernel (`MAX_LIST` bytes at most). Asks
/// for the size first: most files have none, and need no buffer.
pub fn list(on: On<'_>) -> io::Result<Vec<Vec<u8>>> {
    let read = |buf: &mut [u8]| -> io::Result<usize> {
        if let On::At { dir, name, .. } = on
            && let Some(n) = list_at(dir, name, buf)
        {
            return n;
        }
        Ok(match on.plain() {
            Plain::File(f) if buf.is_empty() => rustix::fs::flistxattr_query(f)?,
            Plain::File(f) => rustix::fs::flistxattr(f, buf)?,
            Plain::Path(p) if buf.is_empty() => rustix::fs::llistxattr_query(p)?,
            Plain::Path(p) => rustix::fs::llistxattr(p, buf)?,
        })
    };
    let size = read(&mut [])?;
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; (size + 256).min(MAX_LIST)];
    let n = match read(&mut buf) {
        // It grew since: the whole list Linux allows.
        Err(e) if e.raw_os_error() == Some(nix::libc::ERANGE) => {
            buf = vec![0u8; MAX_LIST];
            read(&mut buf)?
        }
        other => other?,
    };
    Ok(buf[..n.min(buf.len())]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// The kept names among an entry's attributes; none where the filesystem has no
/// attributes at all.
pub fn list_kept(on: On<'_>) -> io::Result<Vec<String>> {
    match list(on) {
        Ok(names) => Ok(names
            .into_iter()
            .filter_map(|n| String::from_utf8(n).ok())
            .filter(|n| is_kept(n))
            .collect()),
        Err(e) if unsupported(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Reads the kept attributes of walked entries, counting what is not kept.
#[derive(Debug)]
pub struct Reader {
    value: Vec<u8>,
    /// Entries carrying attributes coffer does not keep, by kind of name.
    pub not_kept: BTreeMap<String, u64>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            value: vec![0u8; MAX_VALUE],
            not_kept: BTreeMap::new(),
        }
    }
}

/// How a name that is not kept is counted: `trusted.*`, or the name itself for the
/// few well-known others.
fn kind_of_name(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    match text.split_once('.') {
        Some(("trusted", _)) => "trusted.*".into(),
        Some(("user", _)) => "user.* names that a tar header cannot hold".into(),
        Some(("security" | "system", _)) if text.len() <= 64 => {
            crate::escape_controls(&text).into_owned()
        }
        _ => "other names".into(),
    }
}

impl Reader {
    /// The kept attributes of the entry at `on`; what could not be read or kept is
    /// added to `warnings` (per entry) or counted (per kind of name). `shown` names
    /// the entry in warnings.
    pub fn read(&mut self, on: On<'_>, shown: &Path, warnings: &mut Vec<String>) -> Xattrs {
        let mut out = Xattrs::new();
        let names = match list(on) {
            Ok(n) => n,
            Err(e) if unsupported(&e) => return out,
            Err(e) => {
                warnings.push(format!(
                    "{}: cannot list extended attributes, none kept: {e}",
                    shown.display()
                ));
                return out;
            }
        };
        let mut skipped = std::collections::BTreeSet::new();
        let mut total = 0usize;
        for raw in names {
            let name = match std::str::from_utf8(&raw) {
                Ok(n) if is_storable(n) => n,
                _ => {
                    skipped.insert(kind_of_name(&raw));
                    continue;
                }
            };
            match get(on, name, &mut self.value) {
                Ok(n) if total + n > MAX_TOTAL => warnings.push(format!(
                    "{}: extended attribute {name} not kept: the entry's attributes exceed {} KiB",
                    shown.display(),
                    MAX_TOTAL >> 10
                )),
                Ok(n) => {
                    total += n;
                    out.insert(name.to_string(), Value(self.value[..n].to_vec()));
                }
                // Removed since it was listed.
                Err(e) if absent(&e) => {}
                Err(e) => warnings.push(format!(
                    "{}: extended attribute {name} not kept: {e}",
                    shown.display()
                )),
            }
        }
        for kind in skipped {
            *self.not_kept.entry(kind).or_default() += 1;
        }
        out
    }

    /// One line for the source's warnings, when any attribute was not kept.
    pub fn summary(&self) -> Option<String> {
        if self.not_kept.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .not_kept
            .iter()
            .map(|(kind, n)| format!("{kind} on {n}"))
            .collect();
        Some(format!(
            "extended attributes not kept (coffer keeps user.*, POSIX ACLs and file capabilities): {}",
            parts.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kept_namespaces_are_storable() {
        for ok in [
            "user.comment",
            ACCESS_ACL,
            DEFAULT_ACL,
            CAPABILITY,
            "user.a.b",
        ] {
            assert!(is_storable(ok), "{ok}");
        }
        for no in [
            "user.",
            "trusted.overlay.redirect",
            "security.selinux",
            "system.nfs4_acl",
            "user.a=b",
            "user.a\nb",
            "other",
        ] {
            assert!(!is_storable(no), "{no:?}");
        }
        assert!(!is_storable(&format!("user.{}", "x".repeat(251))));
    }

    #[test]
    fn manifest_attributes_are_bounded_and_named() {
        let mut x = Xattrs::new();
        x.insert("user.a".into(), Value(vec![1; MAX_VALUE]));
        let names = BTreeMap::new();
        check(&x, &names).expect("64 KiB is allowed");
        x.insert("trusted.x".into(), Value(vec![]));
        assert!(check(&x, &names).is_err(), "trusted.* is never set");
        x.remove("trusted.x");
        x.insert("user.b".into(), Value(vec![1; MAX_VALUE + 1]));
        assert!(check(&x, &names).is_err());
        let x: Xattrs = (0..5)
            .map(|i| (format!("user.{i}"), Value(vec![0; MAX_VALUE])))
            .collect();
        assert!(check(&x, &names).is_err(), "over MAX_TOTAL");
        let mut names = BTreeMap::new();
        names.insert("user:1001".into(), "kadi".into());
        check(&Xattrs::new(), &names).expect("a name");
        names.insert("root:0".into(), "x".into());
        assert!(check(&Xattrs::new(), &names).is_err());

        // Values are hex in JSON, and a bad one is refused.
        let v: Value = serde_json::from_str("\"00ff\"").expect("hex");
        assert_eq!(v.0, [0, 255]);
        assert_eq!(serde_json::to_string(&v).expect("json"), "\"00ff\"");
        assert!(serde_json::from_str::<Value>("\"0g\"").is_err());
    }

    #[test]
    fn a_user_attribute_is_read_without_following_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        set(On::Path(&f), "user.coffer-test", b"v")
            .expect("this filesystem must support user xattrs (ext4, xfs, btrfs and tmpfs do)");
        let l = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &l).expect("symlink");
        let mut r = Reader::default();
        let mut w = Vec::new();
        let got = r.read(On::Path(&f), &f, &mut w);
        assert_eq!(got.get("user.coffer-test"), Some(&Value(b"v".to_vec())));
        assert!(r.read(On::Path(&l), &l, &mut w).is_empty(), "not followed");
        let opened = File::open(&f).expect("open");
        assert_eq!(r.read(On::File(&opened), &f, &mut w), got);
        assert!(w.is_empty(), "{w:?}");
    }
}
