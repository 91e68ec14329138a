//! coffer's configuration: the TOML schema as plain data.
//!
//! `raw` mirrors the file (serde, unknown keys rejected); `load` turns it into the
//! validated types below, whose invariants the rest of coffer relies on (every
//! job names defined targets, every mode is a valid octal mode, recipients parse).
//! A value with a richer type (a schedule, a time zone, a recipient's key, a hook's
//! words, a mode, a size, a duration) is kept in that type: parsed once here, not
//! again by the rest of coffer. Connection URLs stay text (see `urls`).
//! This crate has no behaviour beyond reading the files the config points at.

mod hints;
mod hook;
mod job_names;
mod load;
mod locate;
pub mod names;
mod notify;
mod raw;
mod recipients;
pub mod reference;
mod schedule;
pub mod schema;
mod signers;
mod source_types;
mod stores;
mod types;
mod units;
mod urls;

pub use hook::HookCommand;
pub use job_names::job_names;
pub use load::targets::{S3_MAX_PART, S3_MAX_PARTS, S3_MIN_PART};
pub use load::{ConfigError, Problem, load, load_str};
pub use notify::{Notify, NotifyUrl};
pub use recipients::{EXAMPLE_KEYS, RecipientKey};
pub use schedule::Schedule;
pub use schema::{ConfigKey, config_keys, source_keys, source_types};
pub use signers::{SIGNER_PREFIX, Signer};
pub use source_types::*;
pub use stores::*;
pub use types::*;
pub use units::duration_words;
pub use urls::{display_url, url_credentials};

/// Where coffer looks for its config when neither `--config` nor `COFFER_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/coffer/coffer.toml";

/// The annotated reference config (config/examples/coffer.toml), compiled in for
/// coffer.toml(5); config/tests/reference.rs proves it shows every key.
pub const REFERENCE_CONFIG: &str = include_str!("../examples/coffer.toml");
