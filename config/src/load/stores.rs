//! Validation of the target types `azure`, `gcs` and `webdav` (their keys beside
//! `local`'s and `s3`'s in the one flat `RawTarget`), and of which type owns which
//! key, so that a key of another type is refused with a message naming its owners.
//!
//! Secrets (an account key, a SAS token, a service account's JSON key, a WebDAV
//! password) are read from files at load time, as the S3 secret is: never in the
//! config file, in a child's environment or in process arguments.

use super::Validator;
use crate::locate::{Seg, child};
use crate::raw::{RawTarget, TargetType};
use crate::stores::*;
use crate::types::Secret;
use std::path::{Path, PathBuf};

/// The keys only some target types have, and which. `limit_upload` and `prune`
/// belong to every type; `local`'s and `s3`'s own refusals of each other's keys
/// stay in `targets.rs`.
const OWNERS: &[(&str, &[&str])] = &[
    ("path", &["local", "sftp"]),
    ("create", &["local"]),
    ("bucket", &["s3", "gcs"]),
    ("prefix", &["s3", "azure", "gcs"]),
    ("region", &["s3"]),
    ("endpoint", &["s3", "azure"]),
    ("allow_http", &["s3", "azure", "webdav"]),
    ("access_key_id", &["s3"]),
    ("secret_access_key_file", &["s3"]),
    ("part_size", &["s3"]),
    ("max_parts", &["s3"]),
    ("parts_in_flight", &["s3"]),
    ("max_retries", &["s3"]),
    ("retry_timeout", &["s3"]),
    ("request_timeout", &["s3"]),
    ("object_lock", &["s3"]),
    ("container", &["azure"]),
    ("account", &["azure"]),
    ("account_key_file", &["azure"]),
    ("sas_token_file", &["azure"]),
    ("service_account_file", &["gcs"]),
    ("url", &["webdav"]),
    ("user", &["webdav", "sftp"]),
    ("password_file", &["webdav"]),
    ("host", &["sftp"]),
    ("port", &["sftp"]),
    ("key_file", &["sftp"]),
    ("known_hosts", &["sftp"]),
    ("host_key_fingerprint", &["sftp"]),
];

/// The keys of `OWNERS` that `local` and `s3` knew nothing of: those two check
/// only these here (their own messages cover each other's keys).
const NEW_KEYS: &[&str] = &[
    "container",
    "account",
    "account_key_file",
    "sas_token_file",
    "service_account_file",
    "url",
    "user",
    "password_file",
    "host",
    "port",
    "key_file",
    "known_hosts",
    "host_key_fingerprint",
];

fn type_name(kind: TargetType) -> &'static str {
    match kind {
        TargetType::Local => "local",
        TargetType::S3 => "s3",
        TargetType::Azure => "azure",
        TargetType::Gcs => "gcs",
        TargetType::Webdav => "webdav",
        TargetType::Sftp => "sftp",
    }
}

/// Which keys of `OWNERS` the table sets.
fn set_keys(t: &RawTarget) -> Vec<&'static str> {
    let set = [
        ("path", t.path.is_some()),
        ("create", t.create.is_some()),
        ("bucket", t.bucket.is_some()),
        ("prefix", t.prefix.is_some()),
        ("region", t.region.is_some()),
        ("endpoint", t.endpoint.is_some()),
        ("allow_http", t.allow_http.is_some()),
        ("access_key_id", t.access_key_id.is_some()),
        ("secret_access_key_file", t.secret_access_key_file.is_some()),
        ("part_size", t.part_size.is_some()),
        ("max_parts", t.max_parts.is_some()),
        ("parts_in_flight", t.parts_in_flight.is_some()),
        ("max_retries", t.max_retries.is_some()),
        ("retry_timeout", t.retry_timeout.is_some()),
        ("request_timeout", t.request_timeout.is_some()),
        ("object_lock", t.object_lock.is_some()),
        ("container", t.container.is_some()),
        ("account", t.account.is_some()),
        ("account_key_file", t.account_key_file.is_some()),
        ("sas_token_file", t.sas_token_file.is_some()),
        ("service_account_file", t.service_account_file.is_some()),
        ("url", t.url.is_some()),
        ("user", t.user.is_some()),
        ("password_file", t.password_file.is_some()),
        ("host", t.host.is_some()),
        ("port", t.port.is_some()),
        ("key_file", t.key_file.is_some()),
        ("known_hosts", t.known_hosts.is_some()),
        ("host_key_fingerprint", t.host_key_fingerprint.is_some()),
    ];
    set.into_iter()
        .filter(|(_, s)| *s)
        .map(|(k, _)| k)
        .collect()
}

impl Validator<'_> {
    /// Refuses the keys of other target types; for `local` and `s3` only the keys
    /// of the types added after them. False when one was refused.
    pub(super) fn foreign_keys(&mut self, at: &[Seg], t: &RawTarget) -> bool {
        let me = type_name(t.kind);
        let only_new = matches!(t.kind, TargetType::Local | TargetType::S3);
        let mut ok = true;
        for key in set_keys(t) {
            if only_new && !NEW_KEYS.contains(&key) {
                continue;
            }
            let owners = OWNERS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, o)| *o)
                .unwrap_or(&[]);
            if !owners.contains(&me) {
                let list = owners
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.problem(
                    &child(at, key),
                    format!(
                        "a target of type = \"{me}\" has no such key (only these types have it: {list})"
                    ),
                );
                ok = false;
            }
        }
        ok
    }

    pub(super) fn azure(&mut self, at: &[Seg], t: RawTarget) -> Option<AzureTarget> {
        let before = self.problems.len();
        let account = match t.account {
            Some(a) if account_ok(&a) => a,
            Some(a) => {
                self.problem(
                    &child(at, "account"),
                    format!(
                        "\"{a}\" is not a storage account name: 3-24 lowercase letters and digits"
                    ),
                );
                String::new()
            }
            None => {
                self.problem(
                    at,
                    "an azure target needs `account = \"storage-account-name\"`",
                );
                String::new()
            }
        };
        let container = match t.container {
            Some(c) if container_ok(&c) => c,
            Some(c) => {
                self.problem(
                    &child(at, "container"),
                    format!(
                        "\"{c}\" is not a container name: 3-63 lowercase letters, digits and \
                         single '-' between them"
                    ),
                );
                String::new()
            }
            None => {
                self.problem(at, "an azure target needs `container = \"name\"`");
                String::new()
            }
        };
        let prefix = self.store_prefix(at, t.prefix);
        let allow_http = t.allow_http.unwrap_or(false);
        let endpoint = self.endpoint(at, t.endpoint, allow_http);
        let credentials = match (t.account_key_file, t.sas_token_file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &child(at, "sas_token_file"),
                    "set either `account_key_file` or `sas_token_file`, not both",
                );
                None
            }
            (Some(f), None) => self
                .secret_file(at, "account_key_file", &f)
                .map(|(key, file)| AzureCredentials::AccountKey { key, file }),
            (None, Some(f)) => self
                .secret_file(at, "sas_token_file", &f)
                .map(|(token, file)| AzureCredentials::SasToken { token, file }),
            (None, None) => None,
        };
        (self.problems.len() == before).then_some(AzureTarget {
            account,
            container,
            prefix,
            endpoint,
            allow_http,
            credentials,
        })
    }

    pub(super) fn gcs(&mut self, at: &[Seg], t: RawTarget) -> Option<GcsTarget> {
        let before = self.problems.len();
        let bucket = match t.bucket {
            Some(b) if gcs_bucket_ok(&b) => b,
            Some(b) => {
                self.problem(
                    &child(at, "bucket"),
                    format!(
                        "\"{b}\" is not a bucket name: 3-63 lowercase letters, digits, '-', '_' or '.'"
                    ),
                );
                String::new()
            }
            None => {
                self.problem(at, "a gcs target needs `bucket = \"name\"`");
                String::new()
            }
        };
        let prefix = self.store_prefix(at, t.prefix);
        let service_account = t
            .service_account_file
            .and_then(|f| self.secret_file(at, "service_account_file", &f));
        (self.problems.len() == before).then_some(GcsTarget {
            bucket,
            prefix,
            service_account,
        })
    }

    pub(super) fn webdav(&mut self, at: &[Seg], t: RawTarget) -> Option<WebdavTarget> {
        let before = self.problems.len();
        let allow_http = t.allow_http.unwrap_or(false);
        let url = match t.url {
            Some(u) => self.webdav_url(at, &u, allow_http),
            None => {
                self.problem(
                    at,
                    "a webdav target needs `url = \"https://dav.example.com/remote.php/dav/files/me/backups\"`",
                );
                String::new()
            }
        };
        let user = t.user.map(|u| u.trim().to_string());
        if user.as_deref() == Some("") {
            self.problem(&child(at, "user"), "is empty");
        }
        let password = match (&user, t.password_file) {
            (None, Some(_)) => {
                self.problem(&child(at, "password_file"), "needs `user` too");
                None
            }
            (_, Some(f)) => self.secret_file(at, "password_file", &f),
            (_, None) => None,
        };
        (self.problems.len() == before).then_some(WebdavTarget {
            url,
            user,
            password,
        })
    }

    fn webdav_url(&mut self, at: &[Seg], u: &str, allow_http: bool) -> String {
        let u = u.trim_end_matches('/').to_string();
        match url::Url::parse(&u) {
            Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
                // Never echo it: the password may be in it.
                self.problem(
                    &child(at, "url"),
                    "holds a user or password: put the user in `user` and the password in a \
                     file named by `password_file`",
                );
            }
            Ok(parsed) if parsed.query().is_some() || parsed.fragment().is_some() => {
                self.problem(
                    &child(at, "url"),
                    "has a query or fragment; name the folder only",
                );
            }
            Ok(parsed) if parsed.scheme() == "http" && !allow_http => {
                self.problem(
                    &child(at, "url"),
                    "plain http:// is refused unless you also set `allow_http = true` (objects \
                     are encrypted, but the password, names and sizes travel in the clear)",
                );
            }
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => {
                self.problem(
                    &child(at, "url"),
                    format!("\"{u}\" is not an http(s) URL; write it like \"https://dav.example.com/backups\""),
                );
            }
        }
        u
    }

    /// `prefix`, as for S3: folders of safe characters.
    fn store_prefix(&mut self, at: &[Seg], prefix: Option<String>) -> Option<String> {
        match prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => None,
            Some(p) if super::targets::prefix_ok(p) => Some(p.to_string()),
            Some(p) => {
                self.problem(
                    &child(at, "prefix"),
                    format!(
                        "\"{p}\" is not a usable prefix: folders separated by '/', each of letters, \
                         digits and -_.!*'() (no empty folder, no \".\" or \"..\")"
                    ),
                );
                None
            }
        }
    }

    /// An endpoint URL: https, or http with `allow_http`.
    fn endpoint(&mut self, at: &[Seg], e: Option<String>, allow_http: bool) -> Option<String> {
        let e = e?.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&e).ok();
        match parsed.as_ref().map(|p| p.scheme()) {
            Some("http") if !allow_http => self.problem(
                &child(at, "endpoint"),
                "plain http:// is refused unless you also set `allow_http = true` (requests are \
                 signed and objects are encrypted, but names and sizes travel in the clear)",
            ),
            Some("http" | "https") if parsed.as_ref().is_some_and(|p| p.host().is_some()) => {}
            _ => self.problem(
                &child(at, "endpoint"),
                format!("\"{e}\" is not an endpoint URL; write it like \"https://account.blob.core.windows.net\""),
            ),
        }
        Some(e)
    }

    /// Reads the secret in the file `key` names; the error names the file, never
    /// what it holds.
    fn secret_file(&mut self, at: &[Seg], key: &str, file: &Path) -> Option<(Secret, PathBuf)> {
        let path = self.abs(file);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => {
                self.problem(&child(at, key), format!("{} is empty", path.display()));
                None
            }
            Ok(text) => Some((Secret::new(text.trim().to_string()), path)),
            Err(e) => {
                self.problem(
                    &child(at, key),
                    format!(
                        "cannot read {}: {}; check the path and that coffer's user may read it",
                        path.display(),
                        e.kind()
                    ),
                );
                None
            }
        }
    }
}

/// Azure storage account names: 3-24 lowercase letters and digits.
fn account_ok(a: &str) -> bool {
    (3..=24).contains(&a.len())
        && a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Azure container names: 3-63 lowercase letters, digits and single hyphens
/// between them.
fn container_ok(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--")
}

/// Google Cloud Storage bucket names, loosely (dotted names may be up to 222).
fn gcs_bucket_ok(b: &str) -> bool {
    (3..=222).contains(&b.len())
        && b.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_providers_rules() {
        assert!(account_ok("devstoreaccount1"));
        assert!(!account_ok("Dev") && !account_ok("ab") && !account_ok("a-b-c"));
        assert!(container_ok("backups") && container_ok("a-b1"));
        assert!(!container_ok("a--b") && !container_ok("-ab") && !container_ok("Ab1"));
        assert!(gcs_bucket_ok("my_bucket.example") && !gcs_bucket_ok("_ab"));
    }

    #[test]
    fn every_new_key_has_its_owners() {
        for key in NEW_KEYS {
            assert!(OWNERS.iter().any(|(k, _)| k == key), "{key}");
        }
    }
}
