//! The one place that maps a config `type` to its module: what a type says about
//! a configured source (`kind`: opening it, a dry run, the paths `config check`
//! looks for), the extension of its stream, the source a snapshot names when the
//! job no longer configures it, and the file a stream goes to with `--to DIR`.
//! Adding a source type means a module beside this one (implementing `Source`
//! and `Kind`) and an arm in each match here; docs/development.md has the list,
//! and `tests/one_place.rs` fails when a type is named anywhere else.

use crate::sources::kind::Kind;
use crate::sources::restore::{FileRestore, Restore, RestoreRequest};
use crate::sources::source::{Source, SourceContext, SourceError};
use crate::sources::{command, directory, mysql, postgres, redis, sqlite};
use coffer_config::{SourceKind, SourceType};
use std::path::PathBuf;

/// What the type of `kind` says about it before it is opened.
pub fn kind(kind: &SourceKind) -> Box<dyn Kind + '_> {
    match kind {
        SourceKind::Directory(c) => Box::new(directory::Configured(c)),
        SourceKind::Postgres(c) => Box::new(postgres::Configured(c)),
        SourceKind::Mysql(c) => Box::new(mysql::Configured(c)),
        SourceKind::Sqlite(c) => Box::new(sqlite::Configured(c)),
        SourceKind::Redis(c) => Box::new(redis::Configured(c)),
        SourceKind::Command(c) => Box::new(command::Configured(c)),
    }
}

/// Builds the source a config entry describes.
pub fn open_source(
    source: &coffer_config::Source,
    ctx: &SourceContext,
) -> Result<Box<dyn Source>, SourceError> {
    kind(&source.kind).open(&source.name, ctx)
}

/// The extension of a type's stream (`<source>.<ext>.zst.age`); `None` for
/// `command`, whose extension the operator configures.
pub fn fixed_extension(kind: SourceType) -> Option<&'static str> {
    match kind {
        SourceType::Directory => Some(directory::EXTENSION),
        SourceType::Postgres => Some(postgres::EXTENSION),
        SourceType::Mysql => Some(mysql::EXTENSION),
        SourceType::Sqlite => Some(sqlite::EXTENSION),
        SourceType::Redis => Some(redis::EXTENSION),
        SourceType::Command => None,
    }
}

/// A server database of `kind` at `url` (`--db-url`) for a source this job no
/// longer configures: restored with no password (none is known for it).
pub fn database_at(kind: SourceType, name: &str, url: &str) -> Option<coffer_config::Source> {
    let db = coffer_config::DatabaseSource {
        url: url.to_string(),
        password: None,
        version_query: None,
    };
    let kind = match kind {
        SourceType::Postgres => SourceKind::Postgres(db),
        SourceType::Mysql => SourceKind::Mysql(db),
        SourceType::Directory | SourceType::Sqlite | SourceType::Redis | SourceType::Command => {
            return None;
        }
    };
    Some(coffer_config::Source {
        name: name.to_string(),
        kind,
    })
}

/// Where a directory or file source came from, as a path to restore it to: only
/// an absolute path without `..` (a manifest is the snapshot's word, and even a
/// signed one names a place, never a way around one).
pub fn origin_path(origin: &str) -> Option<PathBuf> {
    let p = PathBuf::from(origin);
    let plain = p
        .components()
        .all(|c| !matches!(c, std::path::Component::ParentDir));
    (p.is_absolute() && plain).then_some(p)
}

/// The source a signed snapshot says it took, for a job that does not configure
/// it (a new host restoring what one that is gone wrote): it goes back where it
/// came from, the manifest's `origin`. An SQLite file to that absolute path, a server database to that URL (no password: PGPASSWORD or MYSQL_PWD from
/// the environment, or the server's own files), Redis's RDB where the server read
/// it. `None` when the origin does not say where: a command's output, or a path
/// that is not absolute.
pub fn at_origin(kind: SourceType, name: &str, origin: &str) -> Option<coffer_config::Source> {
    let kind = match kind {
        SourceType::Postgres | SourceType::Mysql => return database_at(kind, name, origin),
        SourceType::Sqlite => SourceKind::Sqlite(coffer_config::SqliteSource {
            path: origin_path(origin)?,
            version_query: None,
            restore: Default::default(),
        }),
        SourceType::Redis => SourceKind::Redis(coffer_config::RedisSource {
            url: origin.to_string(),
            password: None,
            rdb_path: None,
            restore: Default::default(),
        }),
        // A directory needs no source to be restored: see `origin_path`.
        SourceType::Directory | SourceType::Command => return None,
    };
    Some(coffer_config::Source {
        name: name.to_string(),
        kind,
    })
}

/// A source's stream written as a plain file (`--to DIR`), whatever its type. An
/// SQLite copy is a database: it must pass integrity_check before it replaces a
/// file, and a check query can open it afterwards.
pub fn restore_as_file(
    kind: SourceType,
    source: &str,
    path: PathBuf,
    req: &RestoreRequest<'_>,
    ctx: &SourceContext,
) -> Box<dyn Restore> {
    let mut file = FileRestore::plain(source, path, req);
    if kind == SourceType::Sqlite {
        let rt = ctx.rt.clone();
        file.check = Some(Box::new(move |copy: &std::path::Path| {
            crate::sources::sqlite::integrity_check(&rt, copy)
        }));
        file.is_sqlite = true;
    }
    Box::new(file)
}
