//! Progress display for backup, restore and verify: drawn only when stderr is a
//! terminal (never in logs, the journal or `--json` output), fed by counters the
//! work updates anyway, redrawn by the bar's own ticker. Work that is not measured
//! in bytes (a restore swapping trees, removing old contents, checking) names its
//! phase through a process-wide slot, so code deep in a restore can say what it is
//! doing without being handed the bar.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Stored bytes read by every object reader of this process (restore, verify).
pub static STORED_READ: AtomicU64 = AtomicU64::new(0);

/// What the running work is doing, shown after the bar's label; empty for none.
static PHASE: Mutex<&'static str> = Mutex::new("");
/// Items done in the current phase (entries moved, removed, ...), shown when non-zero.
static PHASE_DONE: AtomicU64 = AtomicU64::new(0);

/// Names the current phase and restarts its count. Cheap, so callers need not know
/// whether a bar is drawn.
pub fn set_phase(phase: &'static str) {
    // A poisoned slot only means a panicking thread held it; the label is still usable.
    *PHASE.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    PHASE_DONE.store(0, Ordering::Relaxed);
}

/// Counts `n` more items done in the current phase.
pub fn phase_done(n: u64) {
    PHASE_DONE.fetch_add(n, Ordering::Relaxed);
}

fn phase_text() -> String {
    let phase = *PHASE.lock().unwrap_or_else(|e| e.into_inner());
    match PHASE_DONE.load(Ordering::Relaxed) {
        _ if phase.is_empty() => String::new(),
        0 => format!(": {phase}"),
        n => format!(": {phase} {n}"),
    }
}

pub fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// How much work there is: exact (a restore's stored bytes) or an estimate (a
/// backup's, from the last successful run), with the number of files when known.
#[derive(Debug, Clone, Copy)]
pub struct Total {
    pub bytes: u64,
    pub files: Option<u64>,
    pub estimated: bool,
}

/// A bar that follows `count` until dropped; `total` when known.
pub struct Follow {
    bar: ProgressBar,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follow {
    /// `read` returns (bytes, files) so far.
    pub fn start(
        label: &str,
        total: Option<Total>,
        read: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Follow {
        let bar = match total {
            Some(t) => ProgressBar::new(t.bytes).with_style(
                ProgressStyle::with_template(if t.estimated {
                    "{msg} [{bar:30}] {binary_bytes}/~{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}"
                } else {
                    "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}"
                })
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        set_phase("");
        bar.set_message(label.to_string());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, s, label) = (bar.clone(), stop.clone(), label.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let (bytes, files) = read();
                // An estimate may be short: the bar grows rather than sit at 100%.
                if total.is_some() && bytes > b.length().unwrap_or(0) {
                    b.set_length(bytes);
                }
                b.set_position(bytes);
                b.set_message(format!(
                    "{label}{}{}",
                    files_text(files, total.and_then(|t| t.files)),
                    phase_text()
                ));
                b.tick();
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
        });
        Follow {
            bar,
            stop,
            thread: Some(thread),
        }
    }
}

/// ` 1 file`, ` 1,204 of ~20,048 files`, or nothing before the first file.
fn files_text(done: u64, total: Option<u64>) -> String {
    match (done, total) {
        (0, _) => String::new(),
        (n, Some(t)) if t >= n => format!(" {n} of ~{t} file{}", if t == 1 { "" } else { "s" }),
        (n, _) => format!(" {}", crate::units::count(n, "file")),
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::files_text;

    #[test]
    fn files_are_counted_in_words_and_against_the_estimate() {
        assert_eq!(files_text(0, Some(9)), "");
        assert_eq!(files_text(1, None), " 1 file");
        assert_eq!(files_text(2, None), " 2 files");
        assert_eq!(files_text(3, Some(10)), " 3 of ~10 files");
        assert_eq!(files_text(1, Some(1)), " 1 of ~1 file");
        // More files than the last run had: the estimate is dropped, not shown wrong.
        assert_eq!(files_text(11, Some(10)), " 11 files");
    }
}
