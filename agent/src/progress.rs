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
        total: Option<u64>,
        read: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Follow {
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}")
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
                b.set_position(bytes);
                let phase = phase_text();
                if files > 0 {
                    b.set_message(format!("{label} {files} files{phase}"));
                } else {
                    b.set_message(format!("{label}{phase}"));
                }
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

impl Drop for Follow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}
