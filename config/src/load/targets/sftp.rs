//! Validation of an sftp target (`type = "sftp"`): where the server is, who logs in
//! with which key, and how its host key is pinned. In its own file so that the
//! other target types' validation stays as it was.
//!
//! The private key is not read here: it is read when the target is opened, so a
//! `config check` on another host never holds it, and no message ever shows it.

use super::super::Validator;
use crate::locate::{Seg, child};
use crate::raw::RawTarget;
use crate::types::{HostKeyPin, SftpTarget};

/// How to pin a server's host key, for messages.
const HOW_TO_PIN: &str = "pin the server's host key: `ssh-keyscan -p PORT HOST > FILE` \
     and `known_hosts = \"FILE\"`, or `host_key_fingerprint` set to a SHA256:... line of \
     `ssh-keyscan -p PORT HOST | ssh-keygen -lf -` (compare it with what your provider shows)";

impl Validator<'_> {
    pub(super) fn sftp(&mut self, at: &[Seg], t: RawTarget) -> Option<SftpTarget> {
        let before = self.problems.len();
        let host = match t.host.map(|h| h.trim().to_string()) {
            Some(h) if host_ok(&h) => h,
            Some(h) => {
                self.problem(
                    &child(at, "host"),
                    format!(
                        "\"{h}\" is not a host name or address, e.g. \"u123456.your-storagebox.de\""
                    ),
                );
                String::new()
            }
            None => {
                self.problem(at, "an sftp target needs `host = \"server.example.com\"`");
                String::new()
            }
        };
        let port = match t.port {
            None => 22,
            Some(p) => match u16::try_from(p) {
                Ok(p) if p > 0 => p,
                _ => {
                    self.problem(
                        &child(at, "port"),
                        format!("{p} is not a port: use 1 to 65535 (22 is the default; a Hetzner Storage Box uses 23)"),
                    );
                    22
                }
            },
        };
        let user = match t.user {
            Some(u) if !u.is_empty() && !u.contains(|c: char| c.is_whitespace() || c == '@') => u,
            Some(u) => {
                self.problem(&child(at, "user"), format!("\"{u}\" is not a user name"));
                String::new()
            }
            None => {
                self.problem(
                    at,
                    "an sftp target needs `user = \"name\"` (the login on the server)",
                );
                String::new()
            }
        };
        let path = match t.path.as_ref().map(|p| p.to_str().map(folder)) {
            Some(Some(Some(p))) => p,
            Some(_) => {
                self.problem(
                    &child(at, "path"),
                    "is not a usable folder on the server: folders separated by '/' (absolute, or \
                     relative to the login folder; \".\" for the login folder itself), no \"..\"",
                );
                String::new()
            }
            None => {
                self.problem(
                    at,
                    "an sftp target needs `path = \"backups\"` (the folder on the server; \".\" for the login folder)",
                );
                String::new()
            }
        };
        let key_file = match t.key_file {
            Some(k) => self.abs(&k),
            None => {
                self.problem(
                    at,
                    "an sftp target needs `key_file = \"/etc/coffer/ssh_key\"` (a private key without \
                     passphrase whose public half is in the server's authorized_keys)",
                );
                Default::default()
            }
        };
        let host_key = match (t.known_hosts, t.host_key_fingerprint) {
            (Some(_), Some(_)) => {
                self.problem(
                    &child(at, "host_key_fingerprint"),
                    "set either known_hosts or host_key_fingerprint, not both",
                );
                None
            }
            (Some(file), None) => Some(HostKeyPin::KnownHosts(self.abs(&file))),
            (None, Some(f)) if fingerprint_ok(f.trim()) => {
                Some(HostKeyPin::Fingerprint(f.trim().to_string()))
            }
            (None, Some(f)) => {
                self.problem(
                    &child(at, "host_key_fingerprint"),
                    format!(
                        "\"{f}\" is not a SHA256 fingerprint as `ssh-keygen -lf` prints it \
                         (SHA256: and 43 base64 characters)"
                    ),
                );
                None
            }
            (None, None) => {
                self.problem(
                    at,
                    format!("an sftp target needs its host key pinned (coffer never trusts a key on first use): {HOW_TO_PIN}"),
                );
                None
            }
        };
        if self.problems.len() > before {
            return None;
        }
        Some(SftpTarget {
            host,
            port,
            user,
            path,
            key_file,
            host_key: host_key?,
        })
    }
}

/// A host name or an address (IPv6 without brackets): no spaces, no '/', no '@'.
fn host_ok(h: &str) -> bool {
    !h.is_empty()
        && !h.starts_with('-')
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
}

/// The folder `p` without trailing '/' and empty or `.` segments, or `None` when a
/// segment is `..` or holds a control character. `.` is the login folder.
fn folder(p: &str) -> Option<String> {
    if p.is_empty() || p.chars().any(char::is_control) {
        return None;
    }
    let absolute = p.starts_with('/');
    let mut parts = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s => parts.push(s),
        }
    }
    Some(match (absolute, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => parts.join("/"),
    })
}

/// `SHA256:` and the 43 unpadded base64 characters of a SHA-256 digest.
fn fingerprint_ok(f: &str) -> bool {
    f.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_normalised_and_never_climb() {
        assert_eq!(folder("backups/").as_deref(), Some("backups"));
        assert_eq!(folder("./a//b/.").as_deref(), Some("a/b"));
        assert_eq!(folder("/home/x/").as_deref(), Some("/home/x"));
        assert_eq!(folder("/").as_deref(), Some("/"));
        assert_eq!(folder(".").as_deref(), Some("."));
        assert_eq!(folder("a/../b"), None);
        assert_eq!(folder(""), None);
        assert_eq!(folder("a\nb"), None);
    }

    #[test]
    fn fingerprints_are_sha256_as_ssh_keygen_prints_them() {
        assert!(fingerprint_ok(
            "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
        ));
        assert!(!fingerprint_ok(
            "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8="
        ));
        assert!(!fingerprint_ok(
            "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"
        ));
        assert!(!fingerprint_ok(
            "nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
        ));
    }
}
