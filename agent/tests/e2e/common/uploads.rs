//! An application under load, as the one-instant tests need it: uploads written
//! whole into a folder, then the row naming each committed to PostgreSQL or
//! SQLite (a `sqlite://` URL), in that order (write, then commit), as fast as it goes until stopped; with a delete
//! statement, it also deletes older uploads the usual way (row deleted and
//! committed, then the file removed).

use super::noise;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How many uploads later a churning writer deletes one. Unhurried, this writer
/// commits about 4 uploads a millisecond, so an upload lives about 500 ms (longer
/// when the machine is loaded, as the writer slows too): far shorter than in any
/// application, and still longer than the 8-188 ms measured between a run's two
/// btrfs snapshots. A file written and removed inside that gap is in neither
/// snapshot (the README says so); that is not what this writer tests.
pub const KEPT_FOR: u64 = 2000;

/// The application's database connection.
enum Db {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Db {
    async fn connect(url: &str) -> Db {
        use sqlx::Connection;
        if url.starts_with("sqlite:") {
            Db::Sqlite(sqlx::SqliteConnection::connect(url).await.expect("connect"))
        } else {
            Db::Postgres(sqlx::PgConnection::connect(url).await.expect("connect"))
        }
    }

    /// Runs `sql` with the path ($1) and, when given, the size ($2); each
    /// statement commits on its own.
    async fn run(&mut self, sql: &'static str, path: &str, size: Option<i64>) {
        let result = match self {
            Db::Postgres(c) => {
                let q = sqlx::query(sql).bind(path);
                match size {
                    Some(n) => q.bind(n).execute(c).await.map(|_| ()),
                    None => q.execute(c).await.map(|_| ()),
                }
            }
            Db::Sqlite(c) => {
                let q = sqlx::query(sql).bind(path);
                match size {
                    Some(n) => q.bind(n).execute(c).await.map(|_| ()),
                    None => q.execute(c).await.map(|_| ()),
                }
            }
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

pub struct UploadWriter {
    rt: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl UploadWriter {
    /// Writes `<i % folders>/upload-<i>.bin` under `storage`, then runs `insert`
    /// with its relative path ($1) and size ($2) on the database at `url`.
    pub fn start(url: String, storage: PathBuf, insert: &'static str, folders: u64) -> Self {
        Self::run(url, storage, (insert, None), folders)
    }

    /// As `start`, and after every second upload deletes the one written
    /// `KEPT_FOR` uploads earlier: `delete` with its path ($1) committed, then the
    /// file removed.
    pub fn start_churning(
        url: String,
        storage: PathBuf,
        (insert, delete): (&'static str, &'static str),
        folders: u64,
    ) -> Self {
        Self::run(url, storage, (insert, Some((delete, None))), folders)
    }

    /// As `start_churning`, in the unsafe order: the file removed first, then,
    /// `pause` later (an application doing other work in between), the row's
    /// deletion committed.
    pub fn start_removing_files_first(
        url: String,
        storage: PathBuf,
        (insert, delete): (&'static str, &'static str),
        pause: std::time::Duration,
    ) -> Self {
        Self::run(url, storage, (insert, Some((delete, Some(pause)))), 20)
    }

    /// `delete`: the statement, and `None` for row first, or the pause between
    /// removing the file and deleting the row.
    fn run(
        url: String,
        storage: PathBuf,
        (insert, delete): (
            &'static str,
            Option<(&'static str, Option<std::time::Duration>)>,
        ),
        folders: u64,
    ) -> Self {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, written) = (stop.clone(), written.clone());
            rt.spawn(async move {
                let mut conn = Db::connect(&url).await;
                let mut i = 0u64;
                let rel_of = |i: u64| format!("{:02}/upload-{i:06}.bin", i % folders);
                while !stop.load(Ordering::Relaxed) {
                    let rel = rel_of(i);
                    let body = noise(500 + (i as usize % 4000), i);
                    let path = storage.join(&rel);
                    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&path, &body).expect("write upload");
                    conn.run(insert, &rel, Some(body.len() as i64)).await;
                    written.fetch_add(1, Ordering::Relaxed);
                    if delete.is_none() {
                        // An insert-only writer keeps every file: unhurried it filled
                        // the 1 GiB test filesystem on a loaded machine. About one
                        // upload a millisecond still commits rows inside every gap
                        // between two instants.
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    if let Some((delete, file_first)) =
                        delete.filter(|_| i >= KEPT_FOR && i % 2 == 1)
                    {
                        let old = rel_of(i - KEPT_FOR);
                        let remove = || std::fs::remove_file(storage.join(&old));
                        if let Some(pause) = file_first {
                            remove().expect("remove upload");
                            tokio::time::sleep(pause).await;
                        }
                        conn.run(delete, &old, None).await;
                        if file_first.is_none() {
                            remove().expect("remove upload");
                        }
                    }
                    i += 1;
                }
            })
        };
        UploadWriter {
            rt,
            stop,
            written,
            task,
        }
    }

    /// Uploads committed so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` uploads are committed.
    pub fn wait_for(&self, n: u64) {
        while self.written() < n {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Stops the writer after its current upload.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rt.block_on(self.task).expect("writer");
    }
}
