//! Stopping the dump programs a backup is running when coffer is asked to stop.
//!
//! A cancelled run fails its next write, which stops a dump that is writing. A dump
//! that writes nothing for a long time (pg_dump waiting for a table lock, a
//! `command` source that thinks) would keep a stopping `coffer backup` or agent
//! waiting until it ends. So each dump runs in its own process group, registered
//! here while it runs, and [`stop_all`] (called on the first SIGTERM or Ctrl-C)
//! sends the groups SIGTERM; a dump started after that is refused. Its own group
//! also means that Ctrl-C at a terminal reaches coffer, which passes it on, as for
//! hooks.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static STOPPING: AtomicBool = AtomicBool::new(false);
static RUNNING: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Asks every running dump to stop (SIGTERM to its group) and refuses new ones.
pub fn stop_all() {
    STOPPING.store(true, Ordering::SeqCst);
    for pid in running().iter() {
        signal(*pid);
    }
}

/// Whether [`stop_all`] was called: a dump about to start should not.
pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Registers a dump that was started as the leader of its own group, until the
/// guard is dropped. A stop that came between its start and now reaches it too.
pub(crate) fn register(pid: u32) -> Registered {
    running().insert(pid);
    if stopping() {
        signal(pid);
    }
    Registered(pid)
}

pub(crate) struct Registered(u32);

impl Drop for Registered {
    fn drop(&mut self) {
        running().remove(&self.0);
    }
}

fn running() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    // A poisoned set only means a panicking thread held it; the pids are still right.
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

fn signal(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
    }
}
