//! Reading and validating a config file.
//!
//! All problems found are reported together, each as `file:line:col: key: what is
//! wrong and what to do`, so an operator fixes a config in one round.
//!
//! This module holds what every section shares: the error types, the `Validator`
//! that collects problems located in the file, and the helpers every section uses
//! (paths resolved against the base, files the config names, names, durations).
//! Each section is checked by its own submodule, in the order of the file, so that
//! problems are reported in that order.

mod agent;
mod encryption;
mod jobs;
mod restore_policy;
pub(crate) mod sources;
pub(crate) mod stores;
pub(crate) mod targets;

use crate::locate::{Seg, dotted, line_col, offset_of};
use crate::raw::RawConfig;
use crate::types::*;
use std::fmt;
use std::path::Path;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {err} (pass --config FILE or set COFFER_CONFIG)", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One thing wrong with a config, located in the file.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<(usize, usize)>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.line {
            write!(f, ":{line}:{col}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Loads and validates the config file at `file`.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|err| ConfigError::Read {
        path: file.to_path_buf(),
        err,
    })?;
    let cwd = std::env::current_dir().map_err(|err| ConfigError::Read {
        path: file.to_path_buf(),
        err,
    })?;
    load_str(&text, file, &cwd)
}

/// Validates config text; `file` is only used in messages, relative paths resolve against `base`.
/// serde's "unknown field `x`, expected one of ..." for a key of
/// `jobs.J.sources[N]`, with the keys of that source's type only (found in `text`).
fn unknown_source_key(text: &str, key: &str, message: &str) -> Option<String> {
    let name = message.strip_prefix("unknown field `")?.split_once('`')?.0;
    let (job, rest) = key.strip_prefix("jobs.")?.split_once(".sources[")?;
    let index: usize = rest.split_once(']')?.0.parse().ok()?;
    let table: toml::Table = text.parse().ok()?;
    let kind: crate::SourceType = table
        .get("jobs")?
        .get(job)?
        .get("sources")?
        .get(index)?
        .get("type")?
        .clone()
        .try_into()
        .ok()?;
    let keys: Vec<String> = sources::keys_of(kind)
        .iter()
        .map(|k| format!("`{k}`"))
        .collect();
    Some(format!(
        "unknown field `{name}`, expected one of {}",
        keys.join(", ")
    ))
}

pub fn load_str(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
    let syntax = |e: toml::de::Error, key: String| {
        let line = e.span().map(|s| line_col(text, s.start));
        ConfigError::Invalid(vec![Problem {
            file: file.to_path_buf(),
            line,
            message: crate::hints::explain(e.message().trim(), &key),
            key,
        }])
    };
    let de = toml::Deserializer::parse(text).map_err(|e| syntax(e, String::new()))?;
    // The path to the value that did not fit (`jobs.app.retention.keep_last`), which
    // serde's own message ("invalid type: string, expected u32") does not name.
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let err = e.into_inner();
        // One flat struct holds every source type's keys: an unknown key in a
        // source is offered only the keys of its own type.
        match unknown_source_key(text, &key, err.message()) {
            Some(message) => ConfigError::Invalid(vec![Problem {
                file: file.to_path_buf(),
                line: err.span().map(|s| line_col(text, s.start)),
                message: crate::hints::explain(&message, &key),
                key,
            }]),
            None => syntax(err, if key == "." { String::new() } else { key }),
        }
    })?;
    let mut v = Validator {
        text,
        file,
        base,
        problems: Vec::new(),
        relative: std::cell::RefCell::new(Vec::new()),
    };
    let config = v.config(raw);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(v.problems))
    }
}

pub(crate) struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
    base: &'a Path,
    pub(crate) problems: Vec<Problem>,
    /// Relative paths as written, for [`Config::relative_paths`]; a cell because
    /// `abs` is called from closures that borrow the validator shared.
    relative: std::cell::RefCell<Vec<PathBuf>>,
}

impl Validator<'_> {
    pub(crate) fn problem(&mut self, path: &[Seg], message: impl Into<String>) {
        let line = offset_of(self.text, path).map(|o| line_col(self.text, o));
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            key: dotted(path),
            message: message.into(),
        });
    }

    /// A path from the config, relative ones resolved against the base directory.
    pub(crate) fn abs(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.relative.borrow_mut().push(path.to_path_buf());
            self.base.join(path)
        }
    }

    /// Reads a file the config names at `at` (resolved with `abs`); when it cannot
    /// be read, the problem names the file and the reason, never its contents.
    fn read_file(&mut self, at: &[Seg], file: &Path) -> Option<(PathBuf, String)> {
        let path = self.abs(file);
        match std::fs::read_to_string(&path) {
            Ok(content) => Some((path, content)),
            Err(e) => {
                self.problem(
                    at,
                    format!(
                        "cannot read {}: {e}; check the path and that coffer's user may read it",
                        path.display()
                    ),
                );
                None
            }
        }
    }

    /// Names end up in object keys and file names: keep them to a safe alphabet.
    fn name_ok(&mut self, at: &[Seg], name: &str) {
        if !crate::names::is_name(name) {
            self.problem(
                at,
                format!("name \"{name}\" must be 1-64 letters, digits, '-' or '_'"),
            );
        }
    }

    fn duration(&mut self, at: &[Seg], text: &str) -> Option<std::time::Duration> {
        match crate::units::duration_text(text) {
            Ok(d) => Some(d),
            Err(msg) => {
                self.problem(at, msg);
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let agent = self.agent(raw.agent);
        let restore_only = !raw.jobs.is_empty() && raw.jobs.values().all(|j| j.sources.is_empty());
        let encryption = self.encryption(raw.encryption, &agent.state_dir, restore_only);
        let (targets, invalid) = self.targets(raw.targets);
        let jobs = self.jobs(raw.jobs, &targets, &invalid);
        Config {
            file: self.file.to_path_buf(),
            agent,
            encryption,
            targets,
            jobs,
            relative_paths: self.relative.take(),
        }
    }
}
