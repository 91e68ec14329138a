//! Small, driver-neutral queries through sqlx: a version string for the manifest,
//! and the list of files a database references for the consistency check.
//! Values are read as text whatever their SQL type, since both uses want text.

use coffer_config::Secret;
use sqlx::{AssertSqlSafe, Connection, Row};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Which database, and how to reach it (URL without password, password apart). Not
/// a storage `Target`: the database a query or a restore talks to.
#[derive(Debug, Clone)]
pub enum Endpoint<'a> {
    Postgres {
        url: &'a str,
        password: Option<&'a Secret>,
    },
    Mysql {
        url: &'a str,
        password: Option<&'a Secret>,
    },
    Sqlite {
        path: &'a std::path::Path,
    },
}

pub enum Db {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
    Lite(sqlx::SqliteConnection),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Pg(_) => "Db::Pg",
            Db::My(_) => "Db::My",
            Db::Lite(_) => "Db::Lite",
        })
    }
}

/// sqlx errors may quote the URL; ours hold no credential (the config loader took
/// them out, see `coffer_config::display_url`), so they are safe to show.
pub fn describe(e: &sqlx::Error) -> (String, bool) {
    let retryable = matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
    );
    (e.to_string(), retryable)
}

pub async fn connect(target: &Endpoint<'_>) -> Result<Db, sqlx::Error> {
    Ok(match target {
        Endpoint::Postgres { url, password } => {
            let mut opts = sqlx::postgres::PgConnectOptions::from_str(url)?;
            if let Some(p) = password {
                opts = opts.password(p.expose());
            }
            Db::Pg(sqlx::PgConnection::connect_with(&opts).await?)
        }
        Endpoint::Mysql { url, password } => {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let mut opts = sqlx::mysql::MySqlConnectOptions::from_str(&url)?;
            if let Some(p) = password {
                opts = opts.password(p.expose());
            }
            Db::My(sqlx::MySqlConnection::connect_with(&opts).await?)
        }
        Endpoint::Sqlite { path } => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true);
            Db::Lite(sqlx::SqliteConnection::connect_with(&opts).await?)
        }
    })
}

fn cell<'r, R: Row>(row: &'r R, i: usize) -> Option<String>
where
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(|n| n.to_string());
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return v.map(|n| n.to_string());
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return v.map(|n| n.to_string());
    }
    None
}

fn rows_as_text<R: Row>(rows: &[R]) -> Vec<Vec<Option<String>>>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
        .collect()
}

impl Db {
    /// Every row of `sql`, each column as text (`None` for NULL or an unreadable type).
    pub async fn text_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        Ok(match self {
            // Operator-written SQL from the config, run as written.
            Db::Pg(c) => rows_as_text(
                &sqlx::query(AssertSqlSafe(sql.to_string()))
                    .fetch_all(c)
                    .await?,
            ),
            Db::My(c) => rows_as_text(
                &sqlx::query(AssertSqlSafe(sql.to_string()))
                    .fetch_all(c)
                    .await?,
            ),
            Db::Lite(c) => rows_as_text(
                &sqlx::query(AssertSqlSafe(sql.to_string()))
                    .fetch_all(c)
                    .await?,
            ),
        })
    }

    /// The first column of the first row, if any.
    pub async fn scalar(&mut self, sql: &str) -> Result<Option<String>, sqlx::Error> {
        Ok(self
            .text_rows(sql)
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }

    pub async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Db::Pg(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                .execute(c)
                .await
                .map(|_| ()),
            Db::My(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                .execute(c)
                .await
                .map(|_| ()),
            Db::Lite(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                .execute(c)
                .await
                .map(|_| ()),
        }
    }

    pub async fn close(self) {
        let _ = match self {
            Db::Pg(c) => c.close().await,
            Db::My(c) => c.close().await,
            Db::Lite(c) => c.close().await,
        };
    }
}

/// One file the database says should exist, relative to the files source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referenced {
    pub path: String,
    pub size: Option<u64>,
}

/// Runs the job's check query: column 1 the path, optional column 2 the size.
pub async fn referenced_files(
    target: &Endpoint<'_>,
    query: &str,
) -> Result<Vec<Referenced>, sqlx::Error> {
    let mut db = connect(target).await?;
    let rows = referenced_on(&mut db, query).await;
    db.close().await;
    rows
}

/// The check query on an open connection: inside a source's snapshot at backup
/// time (the transaction that exported it, or a consistent copy).
pub async fn referenced_on(db: &mut Db, query: &str) -> Result<Vec<Referenced>, sqlx::Error> {
    Ok(db
        .text_rows(query)
        .await?
        .into_iter()
        .filter_map(|r| {
            let mut cols = r.into_iter();
            let path = cols.next().flatten()?;
            let size = cols.next().flatten().and_then(|s| s.parse().ok());
            Some(Referenced { path, size })
        })
        .collect())
}

/// Runs the configured version query; no row is recorded as "unknown" with a warning.
pub async fn version_fact(
    db: &mut Db,
    query: &str,
    facts: &mut BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<(), sqlx::Error> {
    match db.scalar(query).await? {
        Some(v) => {
            facts.insert("schema_version".into(), v);
        }
        None => {
            warnings.push(format!(
                "version_query returned no row; schema version recorded as unknown ({query})"
            ));
            facts.insert("schema_version".into(), "unknown".into());
        }
    }
    Ok(())
}
