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
