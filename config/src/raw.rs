//! The config file exactly as written: serde structures that reject unknown keys.
//!
//! Targets and sources are flat structs with a `type` field rather than tagged enums:
//! serde buffers tagged enums and loses TOML's spans, and errors must name the line.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub agent: RawAgent,
    pub encryption: Option<RawEncryption>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    pub jobs: BTreeMap<String, RawJob>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub state_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub timezone: Option<String>,
    pub api_token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    #[serde(default)]
    pub recipients: Vec<String>,
    pub recipients_file: Option<PathBuf>,
    pub identity_file: Option<PathBuf>,
    #[serde(default)]
    pub create_identity_if_missing: bool,
    pub signing_key: Option<PathBuf>,
    #[serde(default)]
    pub trusted_signers: Vec<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Local,
    S3,
    Azure,
    Gcs,
    Webdav,
    Sftp,
}

/// One flat struct for every target type (see the header); `load` refuses keys that
/// do not belong to the target's type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    #[serde(rename = "type")]
    pub kind: TargetType,
    // both
    pub limit_upload: Option<SizeOrText>,
    pub prune: Option<crate::types::Prune>,
    // local
    pub path: Option<PathBuf>,
    pub create: Option<bool>,
    // s3
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub allow_http: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
    pub part_size: Option<SizeOrText>,
    pub max_parts: Option<i64>,
    pub parts_in_flight: Option<i64>,
    pub max_retries: Option<i64>,
    pub retry_timeout: Option<SizeOrText>,
    pub request_timeout: Option<SizeOrText>,
    pub object_lock: Option<RawObjectLock>,
    // azure (also prefix, endpoint, allow_http)
    pub container: Option<String>,
    pub account: Option<String>,
    pub account_key_file: Option<PathBuf>,
    pub sas_token_file: Option<PathBuf>,
    // gcs (also bucket, prefix)
    pub service_account_file: Option<PathBuf>,
    // webdav (also allow_http)
    pub url: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    // sftp (and `path`, the folder on the server; `user`, as webdav's)
    pub host: Option<String>,
    pub port: Option<i64>,
    pub key_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub host_key_fingerprint: Option<String>,
}

/// `object_lock = { mode = "governance", days = 30 }` on an s3 target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjectLock {
    pub mode: Option<String>,
    pub days: Option<i64>,
}

/// A value written either as an integer (bytes, seconds) or as text with a unit
/// (`"16MiB"`, `"3m"`); `load` parses the text so that a bad unit names its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeOrText {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for SizeOrText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SizeOrText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or a string with a unit, like \"16MiB\" or \"30s\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SizeOrText, E> {
                Ok(SizeOrText::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SizeOrText, E> {
                i64::try_from(v)
                    .map(SizeOrText::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SizeOrText, E> {
                Ok(SizeOrText::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub compression: RawCompression,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub after_restore: Vec<String>,
    #[serde(default)]
    pub before: Vec<String>,
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub on_success: Vec<String>,
    #[serde(default)]
    pub on_failure: Vec<String>,
    pub hook_timeout: Option<String>,
    pub schedule: Option<String>,
    pub verify_schedule: Option<String>,
    pub jitter: Option<String>,
    #[serde(default)]
    pub catch_up: bool,
    pub retries: Option<u32>,
    pub retry_wait: Option<String>,
    pub format: Option<u32>,
    pub pack_size: Option<SizeOrText>,
    pub repack_unused: Option<f64>,
    pub recheck_packs: Option<u32>,
    pub check: Option<RawCheck>,
    pub retention: Option<RawRetention>,
    pub notify: Option<RawNotify>,
}

/// `notify = { start = URL, success = URL, failure = URL }`: each optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub start: Option<String>,
    pub success: Option<String>,
    pub failure: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_hourly: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    #[serde(default)]
    pub keep_yearly: u32,
    pub keep_within: Option<String>,
    pub incomplete_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompression {
    #[serde(default = "default_level")]
    pub level: i32,
    #[serde(default)]
    pub threads: u32,
}

impl Default for RawCompression {
    fn default() -> Self {
        RawCompression {
            level: default_level(),
            threads: 0,
        }
    }
}

fn default_level() -> i32 {
    3
}

pub use crate::source_types::SourceType;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SourceType,
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    #[serde(default)]
    pub exclude_caches: bool,
    #[serde(default)]
    pub skip_unreadable: bool,
    #[serde(default)]
    pub one_file_system: bool,
    pub snapshot: Option<String>,
    pub snapshot_command: Option<Vec<String>>,
    pub release_command: Option<Vec<String>>,
    pub restore: Option<RawRestorePolicy>,
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub version_query: Option<String>,
    pub rdb_path: Option<PathBuf>,
    pub command: Option<Vec<String>>,
    pub restore_command: Option<Vec<String>>,
    pub extension: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub source: String,
    pub files: String,
    pub query: String,
    pub orphans: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestorePolicy {
    pub owner: Option<String>,
    pub dir_mode: Option<String>,
    pub file_mode: Option<String>,
}
