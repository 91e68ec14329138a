//! Validation of `[targets.NAME]`: one flat raw struct for every type, so the keys
//! that belong to another type are refused here with a message naming the key.
//!
//! An S3 secret is read from `secret_access_key_file` at load time, so that it
//! never sits in the config file, in the environment of a child process or in
//! process arguments; it is kept in a `Secret` that does not print.

use super::Validator;
use crate::locate::{Seg, child, keys};
use crate::raw::{RawTarget, TargetType};
use crate::types::*;
use crate::units;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

mod sftp;

/// S3's limits: every part but the last at least 5 MiB, at most 5 GiB, 10,000 parts.
pub const S3_MIN_PART: u64 = 5 << 20;
pub const S3_MAX_PART: u64 = 5 << 30;
pub const S3_MAX_PARTS: u32 = 10_000;

const DEFAULT_PART_SIZE: u64 = 16 << 20;
const DEFAULT_PARTS_IN_FLIGHT: u32 = 2;
const DEFAULT_MAX_RETRIES: u32 = 10;
const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(180);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// S3 accepts retention up to 100 years.
const MAX_LOCK_DAYS: i64 = 36_500;

impl Validator<'_> {
    /// Every valid target, and the names of those defined with a problem (a job
    /// naming one of them is not also told that it is undefined).
    pub(super) fn targets(
        &mut self,
        raw: BTreeMap<String, RawTarget>,
    ) -> (BTreeMap<String, Target>, BTreeSet<String>) {
        let mut targets = BTreeMap::new();
        let mut invalid = BTreeSet::new();
        for (name, t) in raw {
            let at = keys(&["targets", &name]);
            self.name_ok(&at, &name);
            let limit_upload = self.limit_upload(&at, t.limit_upload.as_ref());
            let prune = t.prune.unwrap_or_default();
            match self.target(&at, t) {
                Some(kind) => {
                    targets.insert(
                        name.clone(),
                        Target {
                            name,
                            kind,
                            limit_upload,
                            prune,
                        },
                    );
                }
                None => {
                    invalid.insert(name);
                }
            }
        }
        (targets, invalid)
    }

    fn target(&mut self, at: &[Seg], t: RawTarget) -> Option<TargetKind> {
        let s3_keys = [
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
        ];
        if !self.foreign_keys(at, &t) {
            return None;
        }
        match t.kind {
            TargetType::Local => {
                let mut ok = true;
                for (key, set) in s3_keys {
                    if set {
                        self.problem(
                            &child(at, key),
                            "only an s3 target has this key (this target has type = \"local\")",
                        );
                        ok = false;
                    }
                }
                match t.path {
                    // A relative path is resolved here (against the directory coffer
                    // was started from), so every message shows the absolute path.
                    Some(path) if ok => Some(TargetKind::Local {
                        path: self.abs(&path),
                        create: t.create.unwrap_or(false),
                    }),
                    Some(_) => None,
                    None => {
                        self.problem(at, "a local target needs `path = \"/dir/for/backups\"`");
                        None
                    }
                }
            }
            TargetType::S3 => {
                if t.path.is_some() {
                    self.problem(
                        &child(at, "path"),
                        "an s3 target has no path: name the bucket with `bucket` and a folder in it with `prefix`",
                    );
                }
                if t.create.is_some() {
                    self.problem(
                        &child(at, "create"),
                        "only a local target has this key: create the bucket with your provider's tools",
                    );
                }
                self.s3(at, t).map(TargetKind::S3)
            }
            TargetType::Azure => self.azure(at, t).map(TargetKind::Azure),
            TargetType::Gcs => self.gcs(at, t).map(TargetKind::Gcs),
            TargetType::Webdav => self.webdav(at, t).map(TargetKind::Webdav),
            TargetType::Sftp => self.sftp(at, t).map(TargetKind::Sftp),
        }
    }

    /// `limit_upload = "20MiB/s"`, for every type of target.
    fn limit_upload(&mut self, at: &[Seg], v: Option<&crate::raw::SizeOrText>) -> Option<u64> {
        match units::rate(v?) {
            Ok(n) => Some(n),
            Err(msg) => {
                self.problem(&child(at, "limit_upload"), msg);
                None
            }
        }
    }

    fn s3(&mut self, at: &[Seg], t: RawTarget) -> Option<S3Target> {
        let before = self.problems.len();
        let bucket = match t.bucket {
            Some(b) if bucket_ok(&b) => b,
            Some(b) => {
                self.problem(
                    &child(at, "bucket"),
                    format!(
                        "\"{b}\" is not a bucket name: 3-63 lowercase letters, digits, '.' or '-'"
                    ),
                );
                String::new()
            }
            None => {
                self.problem(at, "an s3 target needs `bucket = \"name\"`");
                String::new()
            }
        };
        let prefix = match t.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => None,
            Some(p) if prefix_ok(p) => Some(p.to_string()),
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
        };
        let region = t.region.unwrap_or_else(|| "us-east-1".to_string());
        if region.is_empty() || region.contains(char::is_whitespace) {
            self.problem(
                &child(at, "region"),
                format!("\"{region}\" is not a region, e.g. \"eu-central-1\""),
            );
        }
        let allow_http = t.allow_http.unwrap_or(false);
        let endpoint = t.endpoint.map(|e| e.trim_end_matches('/').to_string());
        if let Some(e) = &endpoint {
            if e.starts_with("http://") {
                if !allow_http {
                    self.problem(
                        &child(at, "endpoint"),
                        "plain http:// is refused unless you also set `allow_http = true` \
                         (requests are signed and objects are encrypted, but names and sizes travel in the clear)",
                    );
                }
            } else if !e.starts_with("https://") || e.len() <= "https://".len() {
                self.problem(
                    &child(at, "endpoint"),
                    format!(
                        "\"{e}\" is not an endpoint URL; write it like \"https://s3.example.com\""
                    ),
                );
            }
        }
        let credentials = self.credentials(at, t.access_key_id, t.secret_access_key_file);

        let part_size = match &t.part_size {
            None => DEFAULT_PART_SIZE,
            Some(v) => match units::size(v) {
                Ok(n) if (S3_MIN_PART..=S3_MAX_PART).contains(&n) => n,
                Ok(n) => {
                    self.problem(
                        &child(at, "part_size"),
                        format!("{n} bytes is outside what S3 accepts for a part: use 5MiB to 5GiB (16MiB is the default)"),
                    );
                    DEFAULT_PART_SIZE
                }
                Err(msg) => {
                    self.problem(&child(at, "part_size"), msg);
                    DEFAULT_PART_SIZE
                }
            },
        };
        let max_parts = self.int_in(
            &child(at, "max_parts"),
            t.max_parts,
            S3_MAX_PARTS,
            1,
            S3_MAX_PARTS,
            "S3 allows at most 10000 parts; some providers 1000",
        );
        let parts_in_flight = self.int_in(
            &child(at, "parts_in_flight"),
            t.parts_in_flight,
            DEFAULT_PARTS_IN_FLIGHT,
            1,
            32,
            "each part in flight holds one part in memory",
        );
        let max_retries = self.int_in(
            &child(at, "max_retries"),
            t.max_retries,
            DEFAULT_MAX_RETRIES,
            0,
            100,
            "0 disables retries",
        );
        let retry_timeout = self.duration_or(
            &child(at, "retry_timeout"),
            t.retry_timeout.as_ref(),
            DEFAULT_RETRY_TIMEOUT,
        );
        let request_timeout = self.duration_or(
            &child(at, "request_timeout"),
            t.request_timeout.as_ref(),
            DEFAULT_REQUEST_TIMEOUT,
        );
        if request_timeout.is_zero() {
            self.problem(&child(at, "request_timeout"), "must be more than 0");
        }
        let object_lock = t
            .object_lock
            .and_then(|l| self.object_lock(&child(at, "object_lock"), l));
        if self.problems.len() > before {
            return None;
        }
        Some(S3Target {
            bucket,
            prefix,
            region,
            endpoint,
            allow_http,
            credentials,
            upload: UploadLimits {
                part_size,
                max_parts,
                parts_in_flight,
            },
            max_retries,
            retry_timeout,
            request_timeout,
            object_lock,
        })
    }

    /// `object_lock = { mode = "governance" | "compliance", days = N }`.
    fn object_lock(&mut self, at: &[Seg], l: crate::raw::RawObjectLock) -> Option<ObjectLock> {
        let mode = match l.mode.as_deref() {
            Some("governance") => Some(LockMode::Governance),
            Some("compliance") => Some(LockMode::Compliance),
            Some(other) => {
                self.problem(
                    &child(at, "mode"),
                    format!(
                        "\"{other}\" is not a lock mode: \"governance\" (credentials allowed to \
                         bypass it may still delete) or \"compliance\" (no one may, until it ends)"
                    ),
                );
                None
            }
            None => {
                self.problem(
                    at,
                    "needs `mode = \"governance\"` or `mode = \"compliance\"`",
                );
                None
            }
        };
        let days = match l.days {
            Some(d) if (1..=MAX_LOCK_DAYS).contains(&d) => u32::try_from(d).ok(),
            Some(d) => {
                self.problem(
                    &child(at, "days"),
                    format!(
                        "{d} is outside 1..={MAX_LOCK_DAYS}: the number of days each snapshot stays \
                         locked after it is made (at least your retention's shortest period)"
                    ),
                );
                None
            }
            None => {
                self.problem(
                    at,
                    "needs `days = N`: how many days each snapshot stays locked after it is made",
                );
                None
            }
        };
        Some(ObjectLock {
            mode: mode?,
            days: days?,
        })
    }

    fn credentials(
        &mut self,
        at: &[Seg],
        key_id: Option<String>,
        secret_file: Option<std::path::PathBuf>,
    ) -> Option<S3Credentials> {
        match (key_id, secret_file) {
            (None, None) => None,
            (Some(_), None) => {
                self.problem(
                    &child(at, "access_key_id"),
                    "needs `secret_access_key_file` too (a file holding only the secret key), \
                     or remove both and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                );
                None
            }
            (None, Some(_)) => {
                self.problem(
                    &child(at, "secret_access_key_file"),
                    "needs `access_key_id` too",
                );
                None
            }
            (Some(id), Some(file)) => {
                let path = self.abs(&file);
                if id.trim().is_empty() {
                    self.problem(&child(at, "access_key_id"), "is empty");
                }
                // The error names the file, never its contents.
                match std::fs::read_to_string(&path) {
                    Ok(text) if text.trim().is_empty() => {
                        self.problem(
                            &child(at, "secret_access_key_file"),
                            format!("{} is empty", path.display()),
                        );
                        None
                    }
                    Ok(text) => Some(S3Credentials {
                        access_key_id: id.trim().to_string(),
                        secret_access_key: Secret::new(text.trim().to_string()),
                        secret_file: path,
                    }),
                    Err(e) => {
                        self.problem(
                            &child(at, "secret_access_key_file"),
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
    }

    fn int_in(
        &mut self,
        at: &[Seg],
        v: Option<i64>,
        default: u32,
        min: u32,
        max: u32,
        why: &str,
    ) -> u32 {
        match v {
            None => default,
            Some(n) if n >= i64::from(min) && n <= i64::from(max) => n as u32,
            Some(n) => {
                self.problem(
                    at,
                    format!("{n} is out of range: use {min} to {max} ({why})"),
                );
                default
            }
        }
    }

    fn duration_or(
        &mut self,
        at: &[Seg],
        v: Option<&crate::raw::SizeOrText>,
        default: Duration,
    ) -> Duration {
        match v.map(units::duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(msg)) => {
                self.problem(at, msg);
                default
            }
        }
    }
}

/// S3's bucket naming rules, loosely: what every S3-compatible server accepts.
fn bucket_ok(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !b.starts_with(['.', '-'])
        && !b.ends_with(['.', '-'])
}

/// Folders of S3's "safe characters", so a key means the same on every server.
pub(super) fn prefix_ok(p: &str) -> bool {
    p.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.!*'()".contains(c))
    })
}
