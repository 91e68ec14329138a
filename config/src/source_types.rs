//! The validated sources of a job: what each `type` holds once loaded, the
//! `SourceType` a manifest records, and how restored files get owners and modes.
//! Apart from `types` because a new source type changes this file and no other
//! part of the validated config but `load/sources.rs` (its keys). What a type
//! does (its extension, dry run, warnings) is in its module in coffer-plugins.

use crate::types::Secret;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Directory(DirectorySource),
    Postgres(DatabaseSource),
    Mysql(DatabaseSource),
    Sqlite(SqliteSource),
    Redis(RedisSource),
    Command(CommandSource),
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        self.source_type().as_str()
    }

    /// Owner and mode of what a restore writes for this source (directories and
    /// single files); the defaults for sources that write none.
    pub fn restore_policy(&self) -> RestorePolicy {
        match self {
            SourceKind::Directory(d) => d.restore.clone(),
            SourceKind::Sqlite(s) => s.restore.clone(),
            SourceKind::Redis(r) => r.restore.clone(),
            SourceKind::Postgres(_) | SourceKind::Mysql(_) | SourceKind::Command(_) => {
                RestorePolicy::default()
            }
        }
    }

    /// The directory source's settings, when it is one.
    pub fn directory(&self) -> Option<&DirectorySource> {
        match self {
            SourceKind::Directory(d) => Some(d),
            SourceKind::Postgres(_)
            | SourceKind::Mysql(_)
            | SourceKind::Sqlite(_)
            | SourceKind::Redis(_)
            | SourceKind::Command(_) => None,
        }
    }

    pub fn source_type(&self) -> SourceType {
        match self {
            SourceKind::Directory(_) => SourceType::Directory,
            SourceKind::Postgres(_) => SourceType::Postgres,
            SourceKind::Mysql(_) => SourceType::Mysql,
            SourceKind::Sqlite(_) => SourceType::Sqlite,
            SourceKind::Redis(_) => SourceType::Redis,
            SourceKind::Command(_) => SourceType::Command,
        }
    }
}

/// What `coffer config check` shows of a source: where it reads from and its
/// settings, URLs in their shown form and a password only as "(password set)".
impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = |p: &Option<Secret>| if p.is_some() { " (password set)" } else { "" };
        match self {
            SourceKind::Directory(d) => {
                write!(f, "{}", d.path.display())?;
                if !d.exclude.is_empty() {
                    write!(f, "; exclude {}", d.exclude.join(" "))?;
                }
                if !d.exclude_if_present.is_empty() {
                    write!(f, "; exclude_if_present {}", d.exclude_if_present.join(" "))?;
                }
                if d.exclude_caches {
                    write!(f, "; exclude_caches")?;
                }
                if let Some(s) = &d.snapshot {
                    write!(f, "; snapshot {s}")?;
                }
                Ok(())
            }
            SourceKind::Postgres(d) | SourceKind::Mysql(d) => {
                write!(f, "{}{}", crate::display_url(&d.url), password(&d.password))?;
                version_query(f, &d.version_query)
            }
            SourceKind::Sqlite(d) => {
                write!(f, "{}", d.path.display())?;
                version_query(f, &d.version_query)
            }
            SourceKind::Redis(r) => {
                write!(f, "{}{}", crate::display_url(&r.url), password(&r.password))?;
                if let Some(p) = &r.rdb_path {
                    write!(f, "; rdb {}", p.display())?;
                }
                Ok(())
            }
            SourceKind::Command(c) => {
                write!(f, "`{}`", c.command.join(" "))?;
                if let Some(r) = &c.restore_command {
                    write!(f, "; restore `{}`", r.join(" "))?;
                }
                Ok(())
            }
        }
    }
}

fn version_query(f: &mut fmt::Formatter<'_>, query: &Option<String>) -> fmt::Result {
    match query {
        Some(q) => write!(f, "; version_query `{q}`"),
        None => Ok(()),
    }
}

/// The kinds of source, as the config's `type` and a manifest's `type` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Directory,
    Postgres,
    Mysql,
    Sqlite,
    Redis,
    Command,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Directory => "directory",
            SourceType::Postgres => "postgres",
            SourceType::Mysql => "mysql",
            SourceType::Sqlite => "sqlite",
            SourceType::Redis => "redis",
            SourceType::Command => "command",
        }
    }

    /// Database-like sources restored into a server (`--db-url`).
    pub fn is_server_database(self) -> bool {
        match self {
            SourceType::Postgres | SourceType::Mysql => true,
            SourceType::Directory
            | SourceType::Sqlite
            | SourceType::Redis
            | SourceType::Command => false,
        }
    }

    /// What one source of this type gives a snapshot when it is not files: "command
    /// output", "postgres dump"; `None` for a directory (its files are counted).
    pub fn output_name(self) -> Option<&'static str> {
        match self {
            SourceType::Directory => None,
            SourceType::Command => Some("command output"),
            SourceType::Postgres => Some("postgres dump"),
            SourceType::Mysql => Some("mysql dump"),
            SourceType::Sqlite => Some("sqlite dump"),
            SourceType::Redis => Some("redis dump"),
        }
    }

    /// Whether a `[check]` query can be asked of this type (its `source`): a
    /// database a query reaches (`Source::endpoint`).
    pub fn answers_check_query(self) -> bool {
        match self {
            SourceType::Postgres | SourceType::Mysql | SourceType::Sqlite => true,
            SourceType::Directory | SourceType::Redis | SourceType::Command => false,
        }
    }
}

impl std::fmt::Display for SourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PostgreSQL or MySQL/MariaDB database.
#[derive(Debug, Clone)]
pub struct DatabaseSource {
    /// Connection URL without any credential (the loader moved a password from the
    /// user info or the query into `password`); still shown through
    /// [`crate::display_url`] so that a URL from elsewhere gets the same treatment.
    pub url: String,
    pub password: Option<Secret>,
    /// Recorded in the manifest, e.g. the application's schema version.
    pub version_query: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SqliteSource {
    pub path: PathBuf,
    pub version_query: Option<String>,
    pub restore: RestorePolicy,
}

#[derive(Debug, Clone)]
pub struct RedisSource {
    /// `redis://host:port/` without any credential, like [`DatabaseSource::url`].
    pub url: String,
    pub password: Option<Secret>,
    /// Where the server writes its RDB; asked from the server when unset.
    pub rdb_path: Option<PathBuf>,
    pub restore: RestorePolicy,
}

/// Any program whose standard output is the backup.
#[derive(Debug, Clone)]
pub struct CommandSource {
    pub command: Vec<String>,
    /// Reads the backup on standard input to restore it.
    pub restore_command: Option<Vec<String>>,
    /// File extension of the stream, for the object name (`<source>.<ext>.zst.age`).
    pub extension: String,
}

#[derive(Debug, Clone)]
pub struct DirectorySource {
    pub path: PathBuf,
    /// gitignore-like patterns: `*.tmp` matches a name anywhere, `cache/` only directories,
    /// a pattern with an inner `/` is anchored at the source root.
    pub exclude: Vec<String>,
    /// A directory holding a file of one of these names is kept with that file,
    /// and nothing else of it (restic's `--exclude-if-present`).
    pub exclude_if_present: Vec<String>,
    /// The same for a `CACHEDIR.TAG` that starts with the Cache Directory Tagging
    /// signature.
    pub exclude_caches: bool,
    /// Skip (and report) files that cannot be read instead of failing the run.
    pub skip_unreadable: bool,
    /// Do not descend into other file systems (mount points inside the tree).
    pub one_file_system: bool,
    /// How the tree is frozen at the barrier; `None`: the walk starts there.
    pub snapshot: Option<FsSnapshot>,
    pub restore: RestorePolicy,
}

/// A filesystem snapshot taken at the freeze barrier and walked instead of the
/// live tree (`snapshot = "btrfs"`, or `snapshot_command` + `release_command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsSnapshot {
    /// A read-only snapshot of the btrfs subvolume holding `path`.
    Btrfs,
    /// `create` makes a snapshot and prints the directory to read in place of
    /// `path`; `release` removes it. Both as argv, run without a shell.
    Command {
        create: Vec<String>,
        release: Vec<String>,
    },
}

impl fmt::Display for FsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsSnapshot::Btrfs => f.write_str("btrfs"),
            FsSnapshot::Command { create, release } => {
                write!(
                    f,
                    "`{}`, released by `{}`",
                    create.join(" "),
                    release.join(" ")
                )
            }
        }
    }
}

/// How restored files get their owner and mode; unset fields come from the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePolicy {
    pub owner: Option<OwnerSpec>,
    pub dir_mode: Option<u32>,
    pub file_mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSpec {
    pub user: String,
    pub group: Option<String>,
}

impl fmt::Display for OwnerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{}", self.user, g),
            None => write!(f, "{}", self.user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_check_shows_the_version_query_and_never_the_password() {
        let db = DatabaseSource {
            url: "postgres://kinto@127.0.0.1/kinto".into(),
            password: Some(Secret::new("hunter2".into())),
            version_query: Some("SELECT value FROM metadata".into()),
        };
        let shown = SourceKind::Postgres(db).to_string();
        assert_eq!(
            shown,
            "postgres://kinto@127.0.0.1/kinto (password set); version_query `SELECT value FROM metadata`"
        );
        assert!(!shown.contains("hunter2"));
    }
}
