//! The runtime every SFTP connection lives on. russh runs a task per connection
//! and russh-sftp times its requests with tokio's timers; both must stay on a
//! runtime that outlives any one call. coffer calls its stores from its own
//! runtime and from plain threads (`Target::leftovers`, opening a target), so the
//! connections get a runtime of their own, started on first use, and callers
//! only await (or block on) the tasks spawned here.

use super::Failure;
use std::future::Future;
use std::sync::OnceLock;

fn runtime() -> Result<&'static tokio::runtime::Runtime, Failure> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("coffer-sftp")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Failure::transient(format!("cannot start the SFTP runtime: {e}")))
}

/// Runs `fut` on the SFTP runtime and waits for it from any executor.
pub(super) async fn run<T, F>(fut: F) -> Result<T, Failure>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    runtime()?
        .spawn(fut)
        .await
        .map_err(|e| Failure::transient(format!("an SFTP request failed: {e}")))
}

/// Runs `fut` on the SFTP runtime and blocks this thread until it is done: for the
/// synchronous callers (opening a target, the leftovers of killed runs).
pub(super) fn block<T, F>(fut: F) -> Result<T, Failure>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    futures::executor::block_on(run(fut))
}

/// Starts `fut` on the SFTP runtime without waiting (closing a handle from `Drop`).
pub(super) fn detach<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(rt) = runtime() {
        rt.spawn(fut);
    }
}
