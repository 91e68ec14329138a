//! The one place that maps a config `type` to its implementation: building a
//! source from its config entry, and the file a stream goes to with `--to DIR`.
//! Adding a source type means a module beside this one and a line here.

use crate::restore::{FileRestore, Restore, RestoreRequest};
use crate::source::{Source, SourceContext, SourceError};
use coffer_config::SourceType;
use std::path::PathBuf;

/// Builds the source a config entry describes.
pub fn open_source(
    source: &coffer_config::Source,
    ctx: &SourceContext,
) -> Result<Box<dyn Source>, SourceError> {
    use coffer_config::SourceKind as K;
    let name = source.name.clone();
    Ok(match &source.kind {
        K::Directory(d) => Box::new(crate::directory::DirectorySource::new(&name, d, ctx)?),
        K::Postgres(d) => Box::new(crate::postgres::PostgresSource::new(
            name,
            d.clone(),
            ctx.clone(),
        )),
        K::Mysql(d) => Box::new(crate::mysql::MysqlSource::new(name, d.clone(), ctx.clone())),
        K::Sqlite(s) => Box::new(crate::sqlite::SqliteSource::new(
            name,
            s.clone(),
            ctx.clone(),
        )),
        K::Redis(r) => Box::new(crate::redis_rdb::RedisSource::new(name, r.clone())),
        K::Command(c) => Box::new(crate::command::CommandSource::new(name, c.clone())),
    })
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
        SourceType::Postgres => coffer_config::SourceKind::Postgres(db),
        SourceType::Mysql => coffer_config::SourceKind::Mysql(db),
        _ => return None,
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
    use coffer_config::SourceKind as K;
    let kind = match kind {
        SourceType::Postgres | SourceType::Mysql => return database_at(kind, name, origin),
        SourceType::Sqlite => K::Sqlite(coffer_config::SqliteSource {
            path: origin_path(origin)?,
            version_query: None,
            restore: Default::default(),
        }),
        SourceType::Redis => K::Redis(coffer_config::RedisSource {
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
            crate::sqlite::integrity_check(&rt, copy)
        }));
        file.is_sqlite = true;
    }
    Box::new(file)
}
