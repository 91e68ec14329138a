//! Stopping a run on SIGTERM or Ctrl-C without leaving anything behind.
//!
//! systemd stops a `coffer backup` (or a timer's run) with SIGTERM; dying at once
//! would leave multipart uploads that S3 keeps (and bills) and a snapshot folder
//! without a marker. So the first signal only asks the run to stop: the pipeline
//! refuses further writes, every upload aborts its multipart upload, running dump
//! programs get SIGTERM (`coffer_plugins::dump_stop`), the partial folder is
//! removed, and the run fails with exit status 1. A second signal ends the process
//! at once, for when the cleanup itself cannot reach a server.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::runtime::Handle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static WAKE: Notify = Notify::const_new();

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Resolves once a stop is asked for.
pub async fn wait() {
    loop {
        let notified = WAKE.notified();
        tokio::pin!(notified);
        // Registered before the check, so a signal in between is not missed.
        notified.as_mut().enable();
        if requested() {
            return;
        }
        notified.await;
    }
}

/// Installs the SIGTERM and SIGINT handlers for this process.
pub fn watch(rt: &Handle) -> std::io::Result<()> {
    let _ctx = rt.enter();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if requested() {
                tracing::warn!("second signal, stopping now");
                std::process::exit(i32::from(crate::exit::FAILED));
            }
            // Through the log, so that `--log-format json` and the journal get it
            // in their own form.
            tracing::warn!(
                "stopping: aborting uploads and removing the unfinished snapshot \
                 (signal again to stop at once)"
            );
            REQUESTED.store(true, Ordering::SeqCst);
            WAKE.notify_waiters();
            // A dump that writes nothing would not notice the refused writes.
            coffer_plugins::dump_stop::stop_all();
        }
    });
    Ok(())
}
