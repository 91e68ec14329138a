//! Reading and validating a config file.
//!
//! All problems found are reported together, each as `file:line:col: key: what is
//! wrong and what to do`, so an operator fixes a config in one round.

use crate::locate::{Seg, dotted, line_col, offset_of};
use crate::raw::{RawConfig, RawRestorePolicy, RawSource, SourceType};
use crate::recipients;
use crate::types::*;
use std::collections::{BTreeMap, BTreeSet};
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
pub fn load_str(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_col(text, s.start));
        ConfigError::Invalid(vec![Problem {
            file: file.to_path_buf(),
            line,
            key: String::new(),
            message: e.message().trim().to_string(),
        }])
    })?;
    let mut v = Validator {
        text,
        file,
        base,
        problems: Vec::new(),
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
}

fn p(parts: &[&str]) -> Vec<Seg> {
    parts.iter().map(|k| Seg::key(k)).collect()
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

    pub(crate) fn abs(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let state_dir = raw
            .agent
            .state_dir
            .as_deref()
            .map_or_else(|| PathBuf::from("/var/lib/coffer"), |d| self.abs(d));
        let listen = match raw
            .agent
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:9187")
            .parse()
        {
            Ok(a) => a,
            Err(e) => {
                self.problem(
                    &p(&["agent", "listen"]),
                    format!("not an address like \"127.0.0.1:9187\": {e}"),
                );
                std::net::SocketAddr::from(([127, 0, 0, 1], 9187))
            }
        };
        if let Some(tz) = &raw.agent.timezone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            self.problem(
                &p(&["agent", "timezone"]),
                format!(
                    "unknown time zone \"{tz}\"; use an IANA name like \"Europe/Berlin\" or \"UTC\""
                ),
            );
        }
        let api_token = raw.agent.api_token_file.as_deref().and_then(|f| {
            let path = self.abs(f);
            match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => Some(Secret::new(s.trim().to_string())),
                Ok(_) => {
                    self.problem(
                        &p(&["agent", "api_token_file"]),
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(e) => {
                    self.problem(
                        &p(&["agent", "api_token_file"]),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        });
        let encryption = self.encryption(raw.encryption, &state_dir);
        let mut targets = BTreeMap::new();
        let mut invalid = BTreeSet::new();
        for (name, t) in raw.targets {
            let at = p(&["targets", &name]);
            self.name_ok(&at, &name);
            let Some(kind) = self.target(&at, t) else {
                // Defined but wrong: jobs naming it are not told it is undefined.
                invalid.insert(name);
                continue;
            };
            targets.insert(name.clone(), Target { name, kind });
        }
        let mut jobs = BTreeMap::new();
        if raw.jobs.is_empty() {
            self.problem(
                &[],
                "no jobs defined: add a [jobs.NAME] table with targets and sources",
            );
        }
        for (name, j) in raw.jobs {
            let at = p(&["jobs", &name]);
            self.name_ok(&at, &name);
            if j.targets.is_empty() {
                self.problem(
                    &at,
                    "a job needs `targets = [\"...\"]` naming at least one [targets.NAME]",
                );
            }
            for (i, t) in j.targets.iter().enumerate() {
                if !targets.contains_key(t) && !invalid.contains(t) {
                    let mut tp = p(&["jobs", &name, "targets"]);
                    tp.push(Seg::Index(i));
                    let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                    self.problem(
                        &tp,
                        format!(
                            "target \"{t}\" is not defined; define [targets.{t}] or use one of: {}",
                            if known.is_empty() {
                                "(none defined)".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
            if !(1..=19).contains(&j.compression.level) {
                self.problem(
                    &p(&["jobs", &name, "compression", "level"]),
                    format!(
                        "zstd level {} is out of range; use 1 to 19 (3 is a good default)",
                        j.compression.level
                    ),
                );
            }
            if j.sources.is_empty() {
                self.problem(&at, "a job needs at least one [[jobs.NAME.sources]] entry");
            }
            let mut seen = BTreeSet::new();
            let mut sources = Vec::new();
            for (i, s) in j.sources.into_iter().enumerate() {
                let mut sp = p(&["jobs", &name, "sources"]);
                sp.push(Seg::Index(i));
                if !seen.insert(s.name.clone()) {
                    let mut np = sp.clone();
                    np.push(Seg::key("name"));
                    self.problem(
                        &np,
                        format!("source name \"{}\" is used twice in this job", s.name),
                    );
                }
                if let Some(src) = self.source(&sp, s) {
                    sources.push(src);
                }
            }
            let check = j.check.and_then(|c| self.file_check(&name, c, &sources));
            let (retention, incomplete_after) = self.retention(&name, j.retention);
            for (key, lines) in [
                ("after_restore", &j.after_restore),
                ("before", &j.before),
                ("after", &j.after),
                ("on_success", &j.on_success),
                ("on_failure", &j.on_failure),
            ] {
                for (i, hook) in lines.iter().enumerate() {
                    let mut hp = p(&["jobs", &name, key]);
                    hp.push(Seg::Index(i));
                    if hook.trim().is_empty() {
                        self.problem(&hp, "empty command");
                    } else if let Err(e) = shell_words::split(hook) {
                        self.problem(
                            &hp,
                            format!("cannot split into words: {e} (check the quotes)"),
                        );
                    }
                }
            }
            for (key, s) in [
                ("schedule", &j.schedule),
                ("verify_schedule", &j.verify_schedule),
            ] {
                if let Some(s) = s
                    && let Err(e) = s.parse::<croner::Cron>()
                {
                    self.problem(
                        &p(&["jobs", &name, key]),
                        format!("not a cron expression: {e}; write e.g. \"0 3 * * *\" (minute hour day month weekday, seconds first optional)"),
                    );
                }
            }
            let jitter = j
                .jitter
                .as_deref()
                .and_then(|d| self.duration(&p(&["jobs", &name, "jitter"]), d))
                .unwrap_or_default();
            if j.catch_up && j.schedule.is_none() {
                self.problem(
                    &p(&["jobs", &name, "catch_up"]),
                    "catch_up needs a schedule",
                );
            }
            let hook_timeout = j
                .hook_timeout
                .as_deref()
                .and_then(|d| self.duration(&p(&["jobs", &name, "hook_timeout"]), d))
                .unwrap_or(std::time::Duration::from_secs(600));
            jobs.insert(
                name.clone(),
                Job {
                    name,
                    targets: j.targets,
                    compression: Compression {
                        level: j.compression.level,
                        threads: j.compression.threads,
                    },
                    sources,
                    after_restore: j.after_restore,
                    schedule: j.schedule,
                    verify_schedule: j.verify_schedule,
                    jitter,
                    catch_up: j.catch_up,
                    hooks: Hooks {
                        before: j.before,
                        after: j.after,
                        on_success: j.on_success,
                        on_failure: j.on_failure,
                        timeout: hook_timeout,
                    },
                    check,
                    retention,
                    incomplete_after,
                },
            );
        }
        Config {
            file: self.file.to_path_buf(),
            agent: Agent {
                state_dir,
                listen,
                timezone: raw.agent.timezone,
                api_token,
            },
            encryption,
            targets,
            jobs,
        }
    }

    fn file_check(
        &mut self,
        job: &str,
        c: crate::raw::RawCheck,
        sources: &[Source],
    ) -> Option<FileCheck> {
        let find = |n: &str| sources.iter().find(|s| s.name == n).map(|s| &s.kind);
        let mut ok = true;
        match find(&c.source) {
            Some(SourceKind::Postgres(_) | SourceKind::Mysql(_) | SourceKind::Sqlite(_)) => {}
            _ => {
                ok = false;
                self.problem(
                    &p(&["jobs", job, "check", "source"]),
                    format!(
                        "\"{}\" is not a postgres, mysql or sqlite source of this job",
                        c.source
                    ),
                );
            }
        }
        if !matches!(find(&c.files), Some(SourceKind::Directory(_))) {
            ok = false;
            self.problem(
                &p(&["jobs", job, "check", "files"]),
                format!("\"{}\" is not a directory source of this job", c.files),
            );
        }
        ok.then_some(FileCheck {
            source: c.source,
            files: c.files,
            query: c.query,
        })
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

    fn retention(
        &mut self,
        job: &str,
        raw: Option<crate::raw::RawRetention>,
    ) -> (Option<Retention>, std::time::Duration) {
        const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
        let Some(r) = raw else { return (None, DAY) };
        let keep_within = r
            .keep_within
            .as_deref()
            .and_then(|d| self.duration(&p(&["jobs", job, "retention", "keep_within"]), d));
        if keep_within.is_some_and(|d| d.is_zero()) {
            self.problem(
                &p(&["jobs", job, "retention", "keep_within"]),
                "a keep_within of 0 keeps no snapshot, not even the newest; give a window such as \"7d\" or remove it",
            );
        }
        let incomplete_after = r
            .incomplete_after
            .as_deref()
            .and_then(|d| self.incomplete_after(job, d))
            .unwrap_or(DAY);
        let policy = Retention {
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_within,
        };
        if policy == Retention::default() && r.keep_within.is_none() {
            self.problem(
                &p(&["jobs", job, "retention"]),
                "a retention that keeps nothing would delete every snapshot; set at least one keep_* rule",
            );
            return (None, incomplete_after);
        }
        (Some(policy), incomplete_after)
    }

    /// How long a folder without a marker is taken for a run in progress. The job
    /// lock keeps prune away from this host's own runs; this grace period is what
    /// protects a run the lock cannot see (the same job on another host, or with
    /// another state_dir, writing to the same target), so it must outlast any real
    /// run: below an hour a large first backup would lose its objects to a prune
    /// and fail its commit. Too large only costs disk space until the next prune.
    fn incomplete_after(&mut self, job: &str, text: &str) -> Option<std::time::Duration> {
        const MIN: std::time::Duration = std::time::Duration::from_secs(3600);
        let at = p(&["jobs", job, "retention", "incomplete_after"]);
        let d = self.duration(&at, text)?;
        if d < MIN {
            self.problem(
                &at,
                format!(
                    "\"{text}\" is too short: the minimum is 1h (a folder without \
                     snapshot.json younger than this may be a run still writing); \
                     the default is 24h"
                ),
            );
            return None;
        }
        Some(d)
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

    fn encryption(
        &mut self,
        raw: Option<crate::raw::RawEncryption>,
        state_dir: &Path,
    ) -> Encryption {
        let Some(raw) = raw else {
            self.problem(
                &[],
                "missing [encryption] section: add `recipients = [\"age1...\"]` (create a key with `coffer keygen`)",
            );
            return Encryption {
                recipients: Vec::new(),
                identity_file: None,
                create_identity_if_missing: false,
                signing_key: state_dir.join("signing.key"),
                trusted_signers: Vec::new(),
            };
        };
        let mut recipients = Vec::new();
        for (i, r) in raw.recipients.iter().enumerate() {
            let mut at = p(&["encryption", "recipients"]);
            at.push(Seg::Index(i));
            match recipients::check(r.trim()) {
                Ok(()) => recipients.push(Recipient {
                    text: r.trim().to_string(),
                    origin: format!("{} ({})", self.file.display(), dotted(&at)),
                }),
                Err(msg) => self.problem(&at, msg),
            }
        }
        if let Some(rf) = &raw.recipients_file {
            let path = self.abs(rf);
            let at = p(&["encryption", "recipients_file"]);
            match std::fs::read_to_string(&path) {
                Ok(content) => {
                    let before = recipients.len();
                    for (line, text) in recipients::lines(&content) {
                        match recipients::check(text) {
                            Ok(()) => recipients.push(Recipient {
                                text: text.to_string(),
                                origin: format!("{}:{line}", path.display()),
                            }),
                            Err(msg) => {
                                self.problem(&at, format!("{}:{line}: {msg}", path.display()))
                            }
                        }
                    }
                    if recipients.len() == before {
                        self.problem(&at, format!("{} holds no recipients", path.display()));
                    }
                }
                Err(e) => self.problem(
                    &at,
                    format!(
                        "cannot read {}: {e}; check the path and that coffer's user may read it",
                        path.display()
                    ),
                ),
            }
        }
        let identity_file = raw.identity_file.as_deref().map(|f| self.abs(f));
        if raw.create_identity_if_missing && identity_file.is_none() {
            self.problem(
                &p(&["encryption", "create_identity_if_missing"]),
                "needs identity_file: the path where the new identity is written",
            );
        }
        if recipients.is_empty() && !raw.create_identity_if_missing && self.problems.is_empty() {
            self.problem(
                &p(&["encryption"]),
                "no recipients: set `recipients = [\"age1...\"]` or `recipients_file`; `coffer keygen` makes a key pair",
            );
        }
        let mut trusted_signers = Vec::new();
        for (i, text) in raw.trusted_signers.iter().enumerate() {
            let mut at = p(&["encryption", "trusted_signers"]);
            at.push(Seg::Index(i));
            match text.parse::<crate::Signer>() {
                Ok(s) => trusted_signers.push(s),
                Err(msg) => self.problem(&at, msg),
            }
        }
        Encryption {
            recipients,
            identity_file,
            create_identity_if_missing: raw.create_identity_if_missing,
            signing_key: raw
                .signing_key
                .as_deref()
                .map_or_else(|| state_dir.join("signing.key"), |f| self.abs(f)),
            trusted_signers,
        }
    }

    fn source(&mut self, at: &[Seg], s: RawSource) -> Option<Source> {
        let sub = |k: &str| {
            let mut v = at.to_vec();
            v.push(Seg::key(k));
            v
        };
        self.name_ok(&sub("name"), &s.name);
        let type_name = format!("{:?}", s.kind).to_lowercase();
        // Keys given, and the source types they mean something for.
        let given: [(&str, bool, &[SourceType]); 13] = [
            (
                "path",
                s.path.is_some(),
                &[SourceType::Directory, SourceType::Sqlite],
            ),
            ("exclude", !s.exclude.is_empty(), &[SourceType::Directory]),
            (
                "skip_unreadable",
                s.skip_unreadable,
                &[SourceType::Directory],
            ),
            (
                "one_file_system",
                s.one_file_system,
                &[SourceType::Directory],
            ),
            (
                "restore",
                s.restore.is_some(),
                &[SourceType::Directory, SourceType::Sqlite, SourceType::Redis],
            ),
            (
                "url",
                s.url.is_some(),
                &[SourceType::Postgres, SourceType::Mysql, SourceType::Redis],
            ),
            (
                "password_file",
                s.password_file.is_some(),
                &[SourceType::Postgres, SourceType::Mysql, SourceType::Redis],
            ),
            (
                "password_env",
                s.password_env.is_some(),
                &[SourceType::Postgres, SourceType::Mysql, SourceType::Redis],
            ),
            (
                "version_query",
                s.version_query.is_some(),
                &[SourceType::Postgres, SourceType::Mysql, SourceType::Sqlite],
            ),
            ("rdb_path", s.rdb_path.is_some(), &[SourceType::Redis]),
            ("command", s.command.is_some(), &[SourceType::Command]),
            (
                "restore_command",
                s.restore_command.is_some(),
                &[SourceType::Command],
            ),
            ("extension", s.extension.is_some(), &[SourceType::Command]),
        ];
        for (key, is_given, types) in given {
            if is_given && !types.contains(&s.kind) {
                self.problem(
                    &sub(key),
                    format!("`{key}` does not apply to a {type_name} source; remove it"),
                );
            }
        }
        let restore = match s.restore {
            Some(r) => self.restore_policy(&sub("restore"), r),
            None => RestorePolicy::default(),
        };
        let kind = match s.kind {
            SourceType::Directory => {
                let Some(path) = s.path else {
                    self.problem(at, "a directory source needs `path = \"/dir/to/back/up\"`");
                    return None;
                };
                for (i, pat) in s.exclude.iter().enumerate() {
                    if pat.trim().is_empty() {
                        let mut ep = sub("exclude");
                        ep.push(Seg::Index(i));
                        self.problem(&ep, "empty exclude pattern");
                    }
                }
                SourceKind::Directory(DirectorySource {
                    path: self.abs(&path),
                    exclude: s.exclude,
                    skip_unreadable: s.skip_unreadable,
                    one_file_system: s.one_file_system,
                    restore,
                })
            }
            SourceType::Postgres | SourceType::Mysql => {
                let schemes: &[&str] = if s.kind == SourceType::Postgres {
                    &["postgres", "postgresql"]
                } else {
                    &["mysql", "mariadb"]
                };
                let (url, in_url) = self.url(&sub("url"), s.url.as_deref(), schemes, &type_name)?;
                let password = self.password(
                    at,
                    in_url,
                    s.password_file.as_deref(),
                    s.password_env.as_deref(),
                );
                let db = DatabaseSource {
                    url,
                    password,
                    version_query: s.version_query,
                };
                if s.kind == SourceType::Postgres {
                    SourceKind::Postgres(db)
                } else {
                    SourceKind::Mysql(db)
                }
            }
            SourceType::Sqlite => {
                let Some(path) = s.path else {
                    self.problem(
                        at,
                        "a sqlite source needs `path = \"/var/lib/app/db.sqlite\"`",
                    );
                    return None;
                };
                SourceKind::Sqlite(SqliteSource {
                    path: self.abs(&path),
                    version_query: s.version_query,
                    restore,
                })
            }
            SourceType::Redis => {
                let (url, in_url) =
                    self.url(&sub("url"), s.url.as_deref(), &["redis"], &type_name)?;
                let password = self.password(
                    at,
                    in_url,
                    s.password_file.as_deref(),
                    s.password_env.as_deref(),
                );
                SourceKind::Redis(RedisSource {
                    url,
                    password,
                    rdb_path: s.rdb_path.as_deref().map(|p| self.abs(p)),
                    restore,
                })
            }
            SourceType::Command => {
                let Some(command) = s.command.filter(|c| !c.is_empty()) else {
                    self.problem(
                        at,
                        "a command source needs `command = [\"program\", \"arg\", ...]` writing the backup to stdout",
                    );
                    return None;
                };
                let extension = s.extension.unwrap_or_else(|| "bin".to_string());
                if !crate::names::is_extension(&extension) {
                    self.problem(
                        &sub("extension"),
                        "use 1-16 letters and digits, e.g. \"dump\"",
                    );
                }
                SourceKind::Command(CommandSource {
                    command,
                    restore_command: s.restore_command.filter(|c| !c.is_empty()),
                    extension,
                })
            }
        };
        Some(Source { name: s.name, kind })
    }

    /// Checks a connection URL and takes every credential out of it (see `urls`),
    /// so that the URL itself can be shown and passed to a child process. Returns
    /// the password found and where it was, for the conflict check in `password`.
    fn url(
        &mut self,
        at: &[Seg],
        raw: Option<&str>,
        schemes: &[&str],
        type_name: &str,
    ) -> Option<(String, Option<(Secret, String)>)> {
        let Some(raw) = raw else {
            self.problem(
                &at[..at.len() - 1],
                format!(
                    "a {type_name} source needs `url = \"{}://user@host:port/...\"`",
                    schemes[0]
                ),
            );
            return None;
        };
        let mut parsed = match url::Url::parse(raw) {
            Ok(u) => u,
            // The message of the url crate does not repeat the input: safe to show.
            Err(e) => {
                self.problem(at, format!("not a valid URL: {e}"));
                return None;
            }
        };
        if !schemes.contains(&parsed.scheme()) {
            self.problem(
                at,
                format!(
                    "scheme `{}` is not one of: {}",
                    parsed.scheme(),
                    schemes.join(", ")
                ),
            );
            return None;
        }
        match crate::urls::take_password(&mut parsed) {
            Ok(password) => Some((parsed.to_string(), password)),
            Err(msg) => {
                self.problem(at, msg);
                None
            }
        }
    }

    fn password(
        &mut self,
        at: &[Seg],
        in_url: Option<(Secret, String)>,
        file: Option<&Path>,
        env: Option<&str>,
    ) -> Option<Secret> {
        let sub = |k: &str| {
            let mut v = at.to_vec();
            v.push(Seg::key(k));
            v
        };
        if let Some(var) = env {
            // Known even when unset: the variable must never reach a child.
            crate::types::note_secret_env(var);
        }
        if let Some((_, place)) = &in_url
            && let Some(key) = [
                ("password_file", file.is_some()),
                ("password_env", env.is_some()),
            ]
            .iter()
            .find_map(|(k, given)| given.then_some(*k))
        {
            // Two passwords: which one is meant cannot be guessed.
            self.problem(
                &sub("url"),
                format!("the URL carries a password ({place}) and {key} is set too; remove the password from the URL"),
            );
            return None;
        }
        if let Some(file) = file {
            let path = self.abs(file);
            return match std::fs::read_to_string(&path) {
                Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']).to_string())),
                Err(e) => {
                    self.problem(
                        &sub("password_file"),
                        format!("cannot read {}: {e}; check the path and that coffer's user may read it", path.display()),
                    );
                    None
                }
            };
        }
        if let Some(var) = env {
            return match std::env::var(var) {
                Ok(v) => Some(Secret::new(v)),
                Err(_) => {
                    self.problem(
                        &sub("password_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            };
        }
        in_url.map(|(secret, _)| secret)
    }

    fn restore_policy(&mut self, at: &[Seg], r: RawRestorePolicy) -> RestorePolicy {
        let sub = |k: &str| {
            let mut v = at.to_vec();
            v.push(Seg::key(k));
            v
        };
        let owner = r.owner.as_deref().and_then(|o| match parse_owner(o) {
            Ok(spec) => Some(spec),
            Err(msg) => {
                self.problem(&sub("owner"), msg);
                None
            }
        });
        let mut mode = |key: &str, value: Option<&str>| {
            value.and_then(|m| match parse_mode(m) {
                Ok(v) => Some(v),
                Err(msg) => {
                    self.problem(&sub(key), msg);
                    None
                }
            })
        };
        let dir_mode = mode("dir_mode", r.dir_mode.as_deref());
        let file_mode = mode("file_mode", r.file_mode.as_deref());
        RestorePolicy {
            owner,
            dir_mode,
            file_mode,
        }
    }
}

/// `"0750"` -> 0o750. Only octal strings: a TOML integer 750 would silently be decimal.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!(
            "\"{s}\" is not an octal mode; write it like \"0750\" (up to four octal digits)"
        ));
    }
    u32::from_str_radix(digits, 8).map_err(|e| format!("\"{s}\": {e}"))
}

/// `"kadi:www-data"` or `"kadi"`.
pub fn parse_owner(s: &str) -> Result<OwnerSpec, String> {
    let valid = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '$'))
    };
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if !valid(user) || group.is_some_and(|g| !valid(g)) {
        return Err(format!(
            "\"{s}\" is not an owner; write \"user:group\" or \"user\" (names or numeric ids)"
        ));
    }
    Ok(OwnerSpec {
        user: user.to_string(),
        group: group.map(str::to_string),
    })
}
