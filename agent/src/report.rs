//! What a long operation (backup, restore, verify) tells its caller, and how: the
//! domain never prints. It updates a `Work` (counters a display may follow) and
//! hands lines and notices to the `Report` its caller passed in; the CLI draws
//! bars and prints (`cli::report`), the service logs (`Logged`), tests and API
//! callers stay silent (`Quiet`). So a new front end inherits no terminal output,
//! and two operations in one process never share a progress slot.

use coffer_plugins::Progress;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How much work there is: exact (a restore's stored bytes) or an estimate (a
/// backup's, from the last successful run), with the number of files when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub bytes: u64,
    pub files: Option<u64>,
    pub estimated: bool,
}

/// One operation under way, as a display follows it. The domain updates it; the
/// front end only reads it.
#[derive(Debug)]
pub struct Work {
    /// "backup", "restore" or "verify".
    pub op: &'static str,
    /// What it works on: a job, a snapshot.
    pub name: String,
    /// The total known when the work started.
    pub total: Option<Total>,
    /// Bytes and files done: a backup's bytes read from its sources, a restore's
    /// or verify's stored bytes read from the target (files: 0).
    pub counts: Progress,
    /// Stored bytes that readers count on counters of their own (a packed
    /// source's bytes fetched, also reported per source), added to `counts`.
    also: Mutex<Vec<Arc<AtomicU64>>>,
    /// The total learnt after the display started (verify once it has read the
    /// markers, a first backup once its directories are summed).
    late: Mutex<Option<Total>>,
    /// What the work is doing now, shown after the label; empty for nothing said.
    phase: Mutex<&'static str>,
    /// Items done in the current phase (entries moved, removed, ...).
    phase_done: AtomicU64,
}

impl Work {
    pub fn new(op: &'static str, name: &str, total: Option<Total>) -> Arc<Work> {
        Arc::new(Work {
            op,
            name: name.to_string(),
            total,
            counts: Progress::default(),
            also: Mutex::default(),
            late: Mutex::default(),
            phase: Mutex::new(""),
            phase_done: AtomicU64::new(0),
        })
    }

    /// Counts `n` more stored bytes read.
    pub fn read(&self, n: u64) {
        self.counts.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds a reader's own byte counter to what `done` says.
    pub fn count_also(&self, counter: Arc<AtomicU64>) {
        lock(&self.also).push(counter);
    }

    /// (bytes, files) done so far.
    pub fn done(&self) -> (u64, u64) {
        let also: u64 = lock(&self.also)
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add);
        (
            self.counts
                .bytes
                .load(Ordering::Relaxed)
                .saturating_add(also),
            self.counts.files.load(Ordering::Relaxed),
        )
    }

    /// Says the total learnt since the start, in the units `done` counts.
    pub fn set_total(&self, bytes: u64, estimated: bool) {
        *lock(&self.late) = (bytes > 0).then_some(Total {
            bytes,
            files: None,
            estimated,
        });
    }

    /// The total learnt since the start, if any.
    pub fn late_total(&self) -> Option<Total> {
        *lock(&self.late)
    }

    /// Names the current phase and restarts its count.
    pub fn set_phase(&self, phase: &'static str) {
        *lock(&self.phase) = phase;
        self.phase_done.store(0, Ordering::Relaxed);
    }

    /// Counts `n` more items done in the current phase.
    pub fn phase_done(&self, n: u64) {
        self.phase_done.fetch_add(n, Ordering::Relaxed);
    }

    /// The current phase ("" for none) and the items done in it.
    pub fn phase(&self) -> (&'static str, u64) {
        (*lock(&self.phase), self.phase_done.load(Ordering::Relaxed))
    }
}

/// A poisoned slot only means a panicking thread held it; the value is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps a front end's display of one `Work` going; dropping it ends the display.
#[must_use = "the display ends when this is dropped"]
pub struct Following(#[allow(dead_code)] Option<Box<dyn Send>>);

impl Following {
    /// No display.
    pub fn none() -> Following {
        Following(None)
    }

    /// A display held by `guard` (its drop ends it).
    pub fn by(guard: impl Send + 'static) -> Following {
        Following(Some(Box::new(guard)))
    }
}

/// What the domain tells the caller of a long operation.
pub trait Report: Send + Sync {
    /// Whether the caller shows progress: what costs something only for a
    /// display (reading the last status for an estimate, summing the trees,
    /// listing the packs a restore needs) is skipped otherwise.
    fn follows(&self) -> bool;
    /// Follows `work` until the returned guard drops.
    fn start(&self, work: Arc<Work>) -> Following;
    /// One line of the report meant for people (what a restore did and checked),
    /// where the caller shows results.
    fn line(&self, text: &str);
    /// A notice on the side: recovered debris, hooks running, a key created.
    fn notice(&self, text: &str);
}

/// What a long operation hands down to the code doing its parts: its `Work`
/// (phases, counters) and its caller's `Report` (notices, lines).
#[derive(Clone, Copy)]
pub struct Told<'a> {
    pub work: &'a Arc<Work>,
    pub report: &'a dyn Report,
}

/// Says nothing and shows nothing: tests, and callers that only want the result.
// No production caller yet (the service logs): kept for tests and the next front end.
#[cfg_attr(not(test), allow(dead_code))]
pub struct Quiet;

impl Report for Quiet {
    fn follows(&self) -> bool {
        false
    }
    fn start(&self, _: Arc<Work>) -> Following {
        Following::none()
    }
    fn line(&self, _: &str) {}
    fn notice(&self, _: &str) {}
}

/// The service's: one log event per line or notice, no progress (a log line per
/// byte would bury everything else).
pub struct Logged;

impl Report for Logged {
    fn follows(&self) -> bool {
        false
    }
    fn start(&self, _: Arc<Work>) -> Following {
        Following::none()
    }
    fn line(&self, text: &str) {
        tracing::info!("{text}");
    }
    fn notice(&self, text: &str) {
        // A warning keeps its level, so filters and alerts on warnings see it.
        match text.strip_prefix("warning: ") {
            Some(w) => tracing::warn!("{w}"),
            None => tracing::info!("{text}"),
        }
    }
}

/// Counts, in a thread of its own, the bytes of the regular files under `trees`
/// and says the sum as `work`'s estimated total: a first backup has no last run
/// to estimate from. Only what the files' sizes say (no database, no excludes),
/// hence an estimate; stops when dropped.
pub struct TreeTotal {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TreeTotal {
    pub fn start(trees: Vec<std::path::PathBuf>, work: Arc<Work>) -> TreeTotal {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut sum = 0u64;
            let mut todo = trees;
            while let Some(dir) = todo.pop() {
                let Ok(list) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in list.flatten() {
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                    // Not following symlinks, as the backup does not.
                    match e.metadata() {
                        Ok(md) if md.is_dir() => todo.push(e.path()),
                        Ok(md) if md.is_file() => sum = sum.saturating_add(md.len()),
                        _ => {}
                    }
                }
            }
            if !s.load(Ordering::Relaxed) {
                work.set_total(sum, true);
            }
        });
        TreeTotal { stop }
    }
}

impl Drop for TreeTotal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_adds_the_readers_counters_and_restarts_the_phase_count() {
        let work = Work::new("restore", "s1", None);
        let fetched = Arc::new(AtomicU64::new(0));
        work.count_also(fetched.clone());
        work.read(10);
        fetched.fetch_add(5, Ordering::Relaxed);
        assert_eq!(work.done(), (15, 0));
        work.set_phase("swapping");
        work.phase_done(3);
        assert_eq!(work.phase(), ("swapping", 3));
        work.set_phase("checking");
        assert_eq!(work.phase(), ("checking", 0));
        assert_eq!(work.late_total(), None);
        work.set_total(100, true);
        assert_eq!(work.late_total().map(|t| t.bytes), Some(100));
    }
}
