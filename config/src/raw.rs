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
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Local,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    #[serde(rename = "type")]
    pub kind: TargetType,
    pub path: Option<PathBuf>,
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
    pub check: Option<RawCheck>,
    pub retention: Option<RawRetention>,
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

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Directory,
    Postgres,
    Mysql,
    Sqlite,
    Redis,
    Command,
}

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
    pub skip_unreadable: bool,
    #[serde(default)]
    pub one_file_system: bool,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestorePolicy {
    pub owner: Option<String>,
    pub dir_mode: Option<String>,
    pub file_mode: Option<String>,
}
